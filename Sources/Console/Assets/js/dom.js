// Small helpers every view uses: building elements without innerHTML (so that no text from the
// gateway is ever read as markup), and formatting figures for people.

/// h('div', {class: 'row', 'data-test': 'x', onclick: fn}, child, 'text', [more children])
export function h(tag, attributes = {}, ...children) {
  const element = tag === 'svg' || svgTags.has(tag)
    ? document.createElementNS('http://www.w3.org/2000/svg', tag)
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'style' && typeof value === 'object') {
      Object.assign(element.style, value);
    } else if (name === 'value' && 'value' in element && !(element instanceof SVGElement)) {
      element.value = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

const svgTags = new Set(['g', 'path', 'line', 'rect', 'circle', 'text', 'polyline', 'polygon', 'defs', 'marker', 'title', 'tspan']);

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/// Replaces an element's children.
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function formatDuration(milliseconds) {
  if (milliseconds === undefined || milliseconds === null || Number.isNaN(milliseconds)) return '–';
  if (milliseconds < 1) return `${milliseconds.toFixed(2)} ms`;
  if (milliseconds < 1000) return `${Math.round(milliseconds)} ms`;
  if (milliseconds < 60000) return `${(milliseconds / 1000).toFixed(1)} s`;
  const minutes = Math.floor(milliseconds / 60000);
  if (minutes < 60) return `${minutes} min ${Math.round((milliseconds % 60000) / 1000)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function formatBytes(bytes) {
  if (!bytes && bytes !== 0) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value < 10 && unit > 0 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

export function formatPercent(ratio) {
  if (ratio === undefined || ratio === null || Number.isNaN(ratio)) return '–';
  return `${(ratio * 100).toFixed(ratio >= 0.995 || ratio === 0 ? 0 : 1)} %`;
}

/// An ISO 8601 time as the reader's local time of day (with the date when not today).
export function formatTime(iso) {
  if (!iso) return '–';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const today = new Date();
  const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return date.toDateString() === today.toDateString() ? time : `${date.toLocaleDateString()} ${time}`;
}

/// Calls `fn` at most once per `milliseconds`, with the latest arguments (trailing call kept).
export function throttle(fn, milliseconds) {
  let timer = null;
  let lastArgs = null;
  return (...args) => {
    lastArgs = args;
    if (timer) return;
    timer = setTimeout(() => { timer = null; fn(...lastArgs); }, milliseconds);
  };
}

/// A time of day to the millisecond, for streams where several things happen in one second.
export function formatClock(iso) {
  if (!iso) return '–';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const pad = (value, width = 2) => String(value).padStart(width, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

export function formatNumber(value, fractionDigits = 0) {
  if (value === undefined || value === null || Number.isNaN(value)) return '–';
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: fractionDigits });
}

/// Calls `fn` once `milliseconds` have passed without another call (for typing in a field).
export function debounce(fn, milliseconds) {
  let timer = null;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => { timer = null; fn(...args); }, milliseconds);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

/// A state name as a coloured badge: `.badge.state-IDLE`, `.badge.state-half-open`, …
export function badge(state, attributes = {}) {
  const text = state === undefined || state === null ? '–' : String(state);
  const extra = attributes.class ? ` ${attributes.class}` : '';
  return h('span', { ...attributes, class: `badge state-${text.replace(/[^A-Za-z0-9_-]/g, '_')}${extra}` }, text);
}

/// JSON for people: indented, and never throws (a cycle or a BigInt is shown as text).
export function prettyJSON(value) {
  try {
    const text = JSON.stringify(value, null, 2);
    return text === undefined ? String(value) : text;
  } catch {
    return String(value);
  }
}

/// The text an RPCError (or any error) should show a person: the gateway's message, with its
/// `data.reason` when the message does not already say it.
export function errorText(error) {
  if (!error) return 'unknown error';
  const message = error.message || String(error);
  const reason = error.data && typeof error.data.reason === 'string' ? error.data.reason : '';
  return reason && !message.includes(reason) ? `${message}: ${reason}` : message;
}

// Which two-step buttons are armed, by key, so that a row redrawn by a refresh keeps the state
// the person put it in.
const armedUntil = new Map();
const ARMED_MILLISECONDS = 4000;

/// A button for an action that cannot be undone: the first click arms it ("Confirm drain"), a
/// second click within four seconds runs `onConfirm`. Pass a stable `key` when the button may be
/// redrawn while armed (in a table that refreshes).
export function confirmButton({ label, confirmLabel, onConfirm, key, attributes = {} }) {
  const stateKey = key || null;
  const button = h('button', { type: 'button', ...attributes, class: `button danger ${attributes.class || ''}`.trim() }, label);
  let localArmedUntil = 0;
  let timer = null;
  const isArmed = () => (stateKey ? (armedUntil.get(stateKey) || 0) : localArmedUntil) > Date.now();
  const show = () => {
    const armed = isArmed();
    button.textContent = armed ? (confirmLabel || `Confirm ${label.toLowerCase()}`) : label;
    button.classList.toggle('armed', armed);
    button.setAttribute('aria-pressed', armed ? 'true' : 'false');
  };
  const disarmLater = (milliseconds) => {
    clearTimeout(timer);
    timer = setTimeout(show, milliseconds + 20);
  };
  button.addEventListener('click', (event) => {
    event.stopPropagation();
    if (isArmed()) {
      if (stateKey) armedUntil.delete(stateKey); else localArmedUntil = 0;
      show();
      onConfirm();
      return;
    }
    const now = Date.now();
    for (const [other, time] of armedUntil) if (time < now) armedUntil.delete(other);
    const until = now + ARMED_MILLISECONDS;
    if (stateKey) armedUntil.set(stateKey, until); else localArmedUntil = until;
    show();
    disarmLater(ARMED_MILLISECONDS);
  });
  if (isArmed()) disarmLater((armedUntil.get(stateKey) || 0) - Date.now());
  show();
  return button;
}
