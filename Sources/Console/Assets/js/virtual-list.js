// A table that keeps only the rows in view in the DOM, so that 10,000 agents or tasks scroll as
// smoothly as 10. Rows have one fixed height: the position of row i is i × rowHeight, and a spacer
// as tall as every row gives the scroll bar its true length.
//
// new VirtualTable(container, {columns: [{key, title, width, render(row), sort(row)}], rowHeight,
//                              rowKey(row), onRowClick(row), rowAttributes(row)})
//   .setRows(rows)   .setSelected(key)   .destroy()
//
// The viewport takes the keyboard: arrows, Page Up/Down, Home and End move the active row,
// Enter opens it (as a click does).

import { h } from './dom.js';

const OVERSCAN_ROWS = 8;
const DEFAULT_COLUMN_WIDTH = 'minmax(6rem, 1fr)';

export class VirtualTable {
  constructor(container, { columns, rowHeight = 30, rowKey = null, onRowClick = null, rowAttributes = null,
                           emptyText = 'Nothing to show.', label = null } = {}) {
    this.columns = columns;
    this.rowHeight = rowHeight;
    this.rowKey = rowKey || ((row) => row);
    this.onRowClick = onRowClick;
    this.rowAttributes = rowAttributes;
    this.sourceRows = [];
    this.rows = [];
    this.rendered = new Map();      // key -> {element, row, index, attributeNames}
    this.activeIndex = -1;
    this.selectedKey = null;
    this.sortColumn = null;
    this.sortDescending = false;
    this.frame = 0;

    this.header = h('div', { class: 'vtable-head', role: 'row' },
      columns.map((column) => this.headerCell(column)));
    this.body = h('div', { class: 'vtable-body', role: 'rowgroup' });
    this.empty = h('div', { class: 'vtable-empty muted', hidden: true }, emptyText);
    this.viewport = h('div', {
      class: 'vtable-viewport', tabindex: '0', role: 'presentation',
      onscroll: () => this.scheduleRender(),
      onkeydown: (event) => this.keydown(event),
    }, this.header, this.body, this.empty);
    this.root = h('div', { class: 'vtable', role: 'table', 'aria-label': label || undefined, 'aria-rowcount': '0' }, this.viewport);
    this.root.style.setProperty('--vtable-columns', columns.map((column) => widthOf(column.width)).join(' '));
    this.root.style.setProperty('--vtable-row-height', `${rowHeight}px`);
    this.root.style.setProperty('--vtable-min-width', `${columns.reduce((sum, column) => sum + minimumWidthOf(column.width), 0)}px`);
    container.append(this.root);

    this.resizeObserver = new ResizeObserver(() => this.scheduleRender());
    this.resizeObserver.observe(this.viewport);
  }

  headerCell(column) {
    const sortable = typeof column.sort === 'function';
    const cell = h('div', {
      class: `vtable-cell vtable-header-cell${sortable ? ' sortable' : ''}${column.className ? ` ${column.className}` : ''}`, role: 'columnheader',
      title: sortable ? `Sort by ${column.title}` : undefined,
      onclick: sortable ? () => this.sortBy(column) : undefined,
    }, column.title);
    column.headerElement = cell;
    return cell;
  }

  sortBy(column) {
    if (this.sortColumn === column) this.sortDescending = !this.sortDescending;
    else { this.sortColumn = column; this.sortDescending = false; }
    for (const other of this.columns) {
      if (!other.headerElement) continue;
      other.headerElement.classList.toggle('sorted', other === column);
      other.headerElement.classList.toggle('descending', other === column && this.sortDescending);
      other.headerElement.setAttribute('aria-sort', other === column ? (this.sortDescending ? 'descending' : 'ascending') : 'none');
    }
    this.setRows(this.sourceRows);
  }

  /// Replaces the rows; rows whose object is unchanged (===) and still in view are not redrawn.
  setRows(rows) {
    this.sourceRows = rows;
    if (this.sortColumn) {
      const value = this.sortColumn.sort;
      const direction = this.sortDescending ? -1 : 1;
      this.rows = rows.map((row) => ({ row, value: value(row) }))
        .sort((a, b) => direction * compare(a.value, b.value))
        .map((entry) => entry.row);
    } else {
      this.rows = rows;
    }
    this.body.style.height = `${this.rows.length * this.rowHeight}px`;
    this.root.setAttribute('aria-rowcount', String(this.rows.length));
    this.empty.hidden = this.rows.length > 0;
    if (this.activeIndex >= this.rows.length) this.activeIndex = this.rows.length - 1;
    this.render();
  }

  setSelected(key) {
    this.selectedKey = key;
    for (const [rowKey, entry] of this.rendered) entry.element.classList.toggle('selected', rowKey === key);
  }

  scheduleRender() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  render() {
    // The sticky header covers the top of the viewport: what shows of the rows starts at
    // scrollTop and is the viewport's height less the header's.
    const scrollTop = this.viewport.scrollTop;
    // A viewport not laid out yet (a hidden tab) still gets a screenful, not nothing.
    const height = (this.viewport.clientHeight || 800) - this.header.offsetHeight;
    const first = Math.max(0, Math.floor(scrollTop / this.rowHeight) - OVERSCAN_ROWS);
    const last = Math.min(this.rows.length, Math.ceil((scrollTop + height) / this.rowHeight) + OVERSCAN_ROWS);

    const next = new Map();
    const ordered = [];
    let changedSet = false;
    for (let index = first; index < last; index += 1) {
      const row = this.rows[index];
      const key = this.rowKey(row);
      let entry = this.rendered.get(key);
      if (entry) {
        this.rendered.delete(key);
        if (entry.row !== row) this.fill(entry, row);
        if (entry.index !== index) { this.place(entry.element, index); entry.index = index; changedSet = true; }
      } else {
        entry = { element: h('div', { class: 'vtable-row', role: 'row' }), row: null, index, attributeNames: [] };
        entry.element.addEventListener('click', () => this.activate(entry.index, true));
        this.fill(entry, row);
        this.place(entry.element, index);
        changedSet = true;
      }
      entry.element.classList.toggle('active', index === this.activeIndex);
      entry.element.classList.toggle('selected', this.selectedKey !== null && key === this.selectedKey);
      entry.element.setAttribute('aria-rowindex', String(index + 1));
      next.set(key, entry);
      ordered.push(entry.element);
    }
    if (this.rendered.size > 0) changedSet = true;
    this.rendered = next;
    // Document order follows row order, for screen readers and for whoever reads the DOM.
    if (changedSet) this.body.replaceChildren(...ordered);
  }

  fill(entry, row) {
    entry.row = row;
    const element = entry.element;
    for (const name of entry.attributeNames) element.removeAttribute(name);
    entry.attributeNames = [];
    if (this.rowAttributes) {
      for (const [name, value] of Object.entries(this.rowAttributes(row) || {})) {
        if (value === undefined || value === null || value === false) continue;
        if (name === 'class') { element.className = `vtable-row ${value}`; continue; }
        element.setAttribute(name, String(value));
        entry.attributeNames.push(name);
      }
    }
    const cells = this.columns.map((column) => {
      let content;
      try {
        content = column.render ? column.render(row) : row[column.key];
      } catch (error) {
        console.error(error);
        content = '?';
      }
      const cell = h('div', { class: `vtable-cell${column.className ? ` ${column.className}` : ''}`, role: 'cell' });
      if (content instanceof Node) cell.append(content);
      else if (content !== undefined && content !== null) {
        cell.textContent = String(content);
        cell.title = String(content);
      }
      return cell;
    });
    element.replaceChildren(...cells);
  }

  place(element, index) {
    element.style.transform = `translateY(${index * this.rowHeight}px)`;
  }

  activate(index, open) {
    if (index < 0 || index >= this.rows.length) return;
    this.activeIndex = index;
    for (const entry of this.rendered.values()) entry.element.classList.toggle('active', entry.index === index);
    if (open && this.onRowClick) this.onRowClick(this.rows[index]);
  }

  keydown(event) {
    if (event.target !== this.viewport || this.rows.length === 0) return;
    const page = Math.max(1, Math.floor(this.viewport.clientHeight / this.rowHeight) - 1);
    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page };
    let index = this.activeIndex;
    if (event.key in moves) index = Math.max(0, Math.min(this.rows.length - 1, (index < 0 ? 0 : index + moves[event.key])));
    else if (event.key === 'Home') index = 0;
    else if (event.key === 'End') index = this.rows.length - 1;
    else if (event.key === 'Enter' || event.key === ' ') {
      if (index >= 0) this.activate(index, true);
      event.preventDefault();
      return;
    } else return;
    event.preventDefault();
    this.activate(index, false);
    this.scrollToIndex(index);
  }

  scrollToIndex(index) {
    const headerHeight = this.header.offsetHeight;
    const top = index * this.rowHeight;
    const visibleTop = this.viewport.scrollTop;
    const visibleHeight = this.viewport.clientHeight - headerHeight;
    if (top < visibleTop) this.viewport.scrollTop = top;
    else if (top + this.rowHeight > visibleTop + visibleHeight) this.viewport.scrollTop = top + this.rowHeight - visibleHeight;
    this.scheduleRender();
  }

  /// How many row elements are in the DOM now (at most a screenful and the margin).
  get renderedCount() {
    return this.rendered.size;
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.resizeObserver.disconnect();
    this.rendered.clear();
    this.root.remove();
  }
}

function widthOf(width) {
  if (width === undefined || width === null) return DEFAULT_COLUMN_WIDTH;
  return typeof width === 'number' ? `${width}px` : width;
}

// The narrowest a column gets: its pixels, or the minimum of a `minmax(…rem|px, …)`, else 96 px.
// Narrower than all of them together, the table scrolls sideways instead of squeezing.
function minimumWidthOf(width) {
  if (typeof width === 'number') return width;
  const minimum = /^minmax\(\s*([\d.]+)(rem|px)/.exec(width || '');
  if (!minimum) return 96;
  return Number(minimum[1]) * (minimum[2] === 'rem' ? 16 : 1);
}

function compare(a, b) {
  if (a === b) return 0;
  if (a === undefined || a === null) return 1;
  if (b === undefined || b === null) return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}
