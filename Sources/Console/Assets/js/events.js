// A live tail of the events the gateway delivers (chapter 09, 9.3): a topic pattern, newest
// first, the last 1,000 kept. Pausing freezes the list; what arrives meanwhile waits (within the
// same bound) and shows on resume.

import { h, replace, badge, errorText, formatClock, formatNumber, prettyJSON, debounce } from './dom.js';
import { VirtualTable } from './virtual-list.js';

const KEPT_EVENTS = 1000;
// Every topic for a principal whose roles allow it; the agents' status events otherwise (what
// the built-in viewer and operator roles may follow).
const DEFAULT_PATTERNS = ['*', 'switchboard.agents.*'];
const RENDER_MS = 100;

export function mount(root, ctx, route) {
  let disposed = false;
  const defaultPattern = DEFAULT_PATTERNS.find((candidate) => ctx.may(`events/subscribe:${candidate}`)) || DEFAULT_PATTERNS[0];
  let pattern = route.query.get('pattern') || defaultPattern;
  let unsubscribe = () => {};
  let shown = [];          // newest first, at most KEPT_EVENTS
  let waiting = [];        // arrived while paused, newest first, at most KEPT_EVENTS
  let paused = false;
  let received = 0;
  let dropped = 0;
  let sequence = 0;
  let renderTimer = null;
  let selected = null;

  const filter = h('input', {
    type: 'text', class: 'filter mono', value: pattern, 'data-test': 'event-filter', spellcheck: 'false',
    'aria-label': 'Topic pattern', placeholder: 'a topic pattern: *, switchboard.agents.*, market.?',
    oninput: debounce(() => applyPattern(filter.value.trim()), 500),
    onkeydown: (event) => { if (event.key === 'Enter') applyPattern(filter.value.trim()); },
  });
  const pauseButton = h('button', { class: 'button', type: 'button', 'data-test': 'event-pause', onclick: () => setPaused(!paused) }, 'Pause');
  const clearButton = h('button', { class: 'button', type: 'button', 'data-test': 'event-clear',
    onclick: () => { shown = []; waiting = []; selected = null; renderNow(); } }, 'Clear');
  const status = h('span', { class: 'muted', 'data-test': 'event-status' });
  const errorLine = h('p', { class: 'error-text', hidden: true });
  const tableHolder = h('div', { class: 'table-holder' });
  const detail = h('aside', { class: 'detail-panel', hidden: true, 'aria-label': 'Event' });

  replace(root,
    h('div', { class: 'view-header' }, h('h2', {}, 'Events'), status, h('span', { class: 'spacer' }),
      h('div', { class: 'toolbar' }, h('label', { class: 'inline' }, 'Topics ', filter), pauseButton, clearButton)),
    errorLine,
    h('section', { class: 'panel table-panel' }, tableHolder),
    detail);

  const table = new VirtualTable(tableHolder, {
    label: 'Events', rowHeight: 30, rowKey: (event) => event.sequence,
    rowAttributes: (event) => ({ 'data-test': 'event-row', 'data-topic': event.topic }),
    onRowClick: (event) => { selected = event; table.setSelected(event.sequence); renderDetail(); },
    emptyText: 'No event yet. Events published to matching topics appear here as they come.',
    columns: [
      { key: 'time', title: 'Time', width: 112, render: (event) => h('span', { class: 'mono' }, formatClock(event.publishedAt)) },
      { key: 'topic', title: 'Topic', width: 'minmax(12rem, 1.2fr)', render: (event) => h('span', { class: 'mono', title: event.topic }, event.topic) },
      { key: 'publisher', title: 'Publisher', width: 'minmax(7rem, 0.6fr)',
        render: (event) => (event.publisher ? h('span', { class: 'mono' }, event.publisher) : h('span', { class: 'muted' }, 'a client')) },
      { key: 'data', title: 'Data', width: 'minmax(16rem, 3fr)',
        render: (event) => {
          const summary = event.data && typeof event.data === 'object' && event.data.eventType
            ? [badge(event.data.eventType, { class: 'event-type' }), ' ']
            : null;
          return h('span', { class: 'json-inline', title: event.dataText }, summary, event.dataText);
        } },
    ],
  });

  if (!ctx.may('events/subscribe')) {
    errorLine.hidden = false;
    errorLine.textContent = 'This principal may not subscribe to events (events/subscribe).';
  } else {
    subscribe();
  }
  renderNow();

  function subscribe() {
    unsubscribe();
    errorLine.hidden = true;
    const stopErrors = ctx.gw.on('error', (error) => {
      errorLine.hidden = false;
      errorLine.textContent = `Subscribing to ${pattern} failed: ${errorText(error)}`;
    });
    const stop = ctx.gw.subscribe(pattern, receive);
    unsubscribe = () => { stop(); stopErrors(); };
  }

  function applyPattern(next) {
    const wanted = next || defaultPattern;
    if (wanted === pattern || disposed) return;
    pattern = wanted;
    // The pattern is part of the address: a reload or a shared link tails the same topics.
    history.replaceState(null, '', `#/events${pattern === defaultPattern ? '' : `?pattern=${encodeURIComponent(pattern)}`}`);
    if (ctx.may('events/subscribe')) subscribe();
    renderNow();
  }

  function receive(params) {
    if (disposed) return;
    received += 1;
    if (typeof params.dropped === 'number') dropped = params.dropped;
    let dataText;
    try { dataText = JSON.stringify(params.data); } catch { dataText = String(params.data); }
    sequence += 1;
    const event = { sequence, topic: params.topic, publishedAt: params.publishedAt, publisher: params.publisher, data: params.data, dataText: dataText ?? 'null' };
    if (paused) {
      waiting.unshift(event);
      if (waiting.length > KEPT_EVENTS) waiting.length = KEPT_EVENTS;
    } else {
      shown.unshift(event);
      if (shown.length > KEPT_EVENTS) shown.length = KEPT_EVENTS;
    }
    scheduleRender();
  }

  function setPaused(value) {
    paused = value;
    if (!paused && waiting.length) {
      shown = waiting.concat(shown).slice(0, KEPT_EVENTS);
      waiting = [];
    }
    pauseButton.textContent = paused ? 'Resume' : 'Pause';
    pauseButton.classList.toggle('primary', paused);
    renderNow();
  }

  function scheduleRender() {
    if (renderTimer) return;
    renderTimer = setTimeout(renderNow, RENDER_MS);
  }

  function renderNow() {
    clearTimeout(renderTimer);
    renderTimer = null;
    if (disposed) return;
    table.setRows(shown);
    status.textContent = `${pattern} · ${formatNumber(received)} received`
      + (dropped ? ` · ${formatNumber(dropped)} dropped by the gateway (this page read too slowly)` : '')
      + (paused ? ` · paused, ${formatNumber(waiting.length)} waiting` : '')
      + (shown.length >= KEPT_EVENTS ? ` · the last ${formatNumber(KEPT_EVENTS)} kept` : '');
  }

  function renderDetail() {
    if (!selected) { detail.hidden = true; return; }
    detail.hidden = false;
    replace(detail,
      h('div', { class: 'panel-header' }, h('h3', { class: 'mono' }, selected.topic), h('span', { class: 'spacer' }),
        h('button', { class: 'button ghost', type: 'button', 'aria-label': 'Close', 'data-test': 'detail-close',
                      onclick: () => { selected = null; table.setSelected(null); renderDetail(); } }, '×')),
      h('dl', { class: 'fields' },
        h('dt', {}, 'Published'), h('dd', {}, `${new Date(selected.publishedAt).toLocaleString()} (${formatClock(selected.publishedAt)})`),
        h('dt', {}, 'Publisher'), h('dd', {}, selected.publisher || 'a client connection')),
      h('h4', {}, 'Data'),
      h('pre', { class: 'json' }, prettyJSON(selected.data)));
  }

  return () => {
    disposed = true;
    clearTimeout(renderTimer);
    unsubscribe();
    table.destroy();
  };
}
