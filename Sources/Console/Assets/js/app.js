// The console's shell: the login screen, the header (who is logged in, as what, and whether the
// connection is up), the navigation, hash routing between views, and toasts.
//
// Each view is a module with `mount(root, ctx, route) → unmount()`; the shell mounts one at a time
// and unmounts it on the way out, so that a view's timers and subscriptions end with it.

import { Gateway } from './rpc.js';
import { h, replace, errorText } from './dom.js';
import * as fleet from './fleet.js';
import * as tasks from './tasks.js';
import * as workflows from './workflows.js';
import * as builder from './builder.js';
import * as charts from './charts.js';
import * as events from './events.js';

const VIEWS = [
  { name: 'fleet', title: 'Fleet', module: fleet },
  { name: 'tasks', title: 'Tasks', module: tasks },
  { name: 'workflows', title: 'Workflows', module: workflows },
  { name: 'builder', title: 'Builder', module: builder },
  { name: 'charts', title: 'Charts', module: charts },
  { name: 'events', title: 'Events', module: events },
];
const DEFAULT_VIEW = 'fleet';

// Every method the console may call: the gateway answers, for each, whether this principal may
// (`auth/whoami` `may`), and the console leaves out what it may not.
const METHODS_OFFERED = [
  'agents/list', 'agents/get', 'agents/drain', 'agents/setState', 'agents/scale', 'agents/rollback', 'agents/activate',
  'tasks/list', 'tasks/get', 'tasks/submit', 'tasks/cancel',
  'workflows/list', 'workflows/get', 'workflows/status', 'workflows/executions', 'workflows/create',
  'workflows/validate', 'workflows/execute', 'workflows/approve', 'workflows/cancel',
  'events/subscribe', 'events/subscribe:*', 'events/subscribe:switchboard.agents.*', 'events/subscribe:workflows.*',
  'events/publish', 'metrics/history', 'gateway/status', 'tools/list',
];

// The credential lives for the browser tab only: a reload stays logged in, closing the tab forgets.
const TOKEN_KEY = 'switchboard.console.credential';
const TOAST_LIMIT = 5;

const app = document.getElementById('app');
const toasts = document.getElementById('toasts');

// Read by the browser tests: the page's gateway connection, and when things first showed.
const marks = {};
window.switchboardConsole = {
  gw: null,
  marks,
  mark(name) {
    if (!(name in marks)) marks[name] = performance.now();
  },
};

let session = null;   // {gw, principal, ctx, main, navigation, current: {name, unmount}, stopListening: [fn]}

start();

function start() {
  const stored = sessionStorage.getItem(TOKEN_KEY);
  if (stored === null) {
    showLogin();
  } else {
    replace(app, h('main', { class: 'login' }, h('div', { class: 'login-card' },
      h('h1', {}, 'Switchboard'), h('p', { class: 'muted' }, 'Connecting…'))));
    logIn(stored);
  }
}

function showLogin(message) {
  const field = h('input', {
    id: 'login-token', type: 'password', 'data-test': 'login-token', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'API key or JWT',
  });
  const error = h('p', { class: 'error-text', 'data-test': 'login-error', role: 'alert', hidden: !message }, message || '');
  const submit = h('button', { class: 'button primary', type: 'submit', 'data-test': 'login-submit' }, 'Log in');
  const form = h('form', {
    class: 'login-card',
    onsubmit: (event) => {
      event.preventDefault();
      window.switchboardConsole.marks.loginSubmitted = performance.now();
      submit.disabled = true;
      submit.textContent = 'Logging in…';
      error.hidden = true;
      logIn(field.value.trim()).finally(() => {
        submit.disabled = false;
        submit.textContent = 'Log in';
      });
    },
  },
  h('h1', {}, 'Switchboard'),
  h('p', { class: 'muted' }, 'Log in with an API key or a JWT. On a gateway without access control, leave it empty.'),
  h('label', { for: 'login-token' }, 'Credential'),
  field,
  error,
  submit);
  replace(app, h('main', { class: 'login' }, form));
  field.focus();
}

async function logIn(token) {
  const gw = new Gateway();
  let principal;
  try {
    principal = await gw.connect(token);
    window.switchboardConsole.mark('connected');
    if (principal.accessControl && !principal.authenticated && (!principal.roles || principal.roles.length === 0)) {
      throw new Error('This gateway needs a credential: enter an API key or a JWT.');
    }
    try {
      // The same principal, with what it may do.
      principal = await gw.call('auth/whoami', { methods: METHODS_OFFERED });
    } catch (error) {
      console.warn('auth/whoami with methods failed; every action is offered', error);
    }
  } catch (error) {
    gw.close();
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(errorText(error));
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  window.switchboardConsole.mark('loggedIn');
  startShell(gw, principal);
}

function logOut(message) {
  if (!session) return;
  unmountCurrent();
  for (const stop of session.stopListening) stop();
  session.gw.close();
  session = null;
  window.switchboardConsole.gw = null;
  sessionStorage.removeItem(TOKEN_KEY);
  window.removeEventListener('hashchange', route);
  showLogin(typeof message === 'string' ? message : undefined);
}

function startShell(gw, principal) {
  const may = principal.may && typeof principal.may === 'object' ? principal.may : {};
  const ctx = {
    gw,
    principal,
    may: (method) => may[method] !== false,
    navigate: (hash) => {
      const target = hash.startsWith('#') ? hash : `#${hash}`;
      if (location.hash === target) route();
      else location.hash = target;
    },
    notify,
  };
  const connection = h('span', { class: 'connection', 'data-test': 'connection-state', 'data-state': gw.state, title: `Connection: ${gw.state}` },
    h('span', { class: 'dot' }), h('span', { class: 'connection-label' }, gw.state));
  const navigation = h('nav', { class: 'sidebar', 'aria-label': 'Views' },
    VIEWS.map((view) => h('a', { href: `#/${view.name}`, 'data-test': `nav-${view.name}`, 'data-view': view.name }, view.title)));
  const main = h('main', { class: 'content', id: 'view' });
  const header = h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: `#/${DEFAULT_VIEW}` }, 'Switchboard'),
    h('span', { class: 'spacer' }),
    h('span', { class: 'principal', 'data-test': 'principal' },
      h('span', { class: 'principal-name' }, principal.principal || 'unknown'),
      (principal.roles || []).map((role) => h('span', { class: 'role', 'data-test': 'principal-role' }, role)),
      principal.tenant && principal.tenant !== 'default' ? h('span', { class: 'muted' }, `tenant ${principal.tenant}`) : null),
    connection,
    h('button', { class: 'button', type: 'button', 'data-test': 'logout', onclick: () => logOut() }, 'Log out'));
  replace(app, h('div', { class: 'shell' }, header, navigation, main));

  const stopState = gw.on('state', (state) => {
    connection.dataset.state = state;
    connection.title = `Connection: ${state}`;
    connection.querySelector('.connection-label').textContent = state === 'closed' ? 'reconnecting' : state;
  });
  // The connection gives up only when, reconnecting, the gateway refused the credential (it was
  // revoked, or the gateway restarted with other keys): back to the login screen.
  const stopRefused = gw.on('refused', () => logOut('The gateway no longer accepts this credential: log in again.'));
  const stopErrors = gw.on('error', (error) => notify(errorText(error), 'error'));
  session = { gw, principal, ctx, main, navigation, current: null, stopListening: [stopState, stopRefused, stopErrors] };
  window.switchboardConsole.gw = gw;
  window.addEventListener('hashchange', route);
  route();
}

function parseRoute() {
  const hash = location.hash.replace(/^#/, '');
  const [pathPart, queryPart = ''] = hash.split('?');
  const parts = pathPart.split('/').filter(Boolean).map((part) => {
    try { return decodeURIComponent(part); } catch { return part; }
  });
  return { path: `/${parts.join('/')}`, parts, query: new URLSearchParams(queryPart) };
}

function route() {
  if (!session) return;
  const parsed = parseRoute();
  const view = VIEWS.find((candidate) => candidate.name === parsed.parts[0]);
  if (!view) {
    // `#/` or an unknown view: the default, without leaving a history entry behind.
    history.replaceState(null, '', `#/${DEFAULT_VIEW}`);
    route();
    return;
  }
  unmountCurrent();
  for (const link of session.navigation.querySelectorAll('a')) {
    const active = link.dataset.view === view.name;
    link.classList.toggle('active', active);
    if (active) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
  }
  const root = h('section', { class: `view view-${view.name}`, 'data-test': `view-${view.name}` });
  replace(session.main, root);
  document.title = `${view.title} · Switchboard`;
  let unmount = null;
  try {
    unmount = view.module.mount(root, session.ctx, parsed);
  } catch (error) {
    console.error(error);
    root.append(h('p', { class: 'error-text' }, `This view failed to open: ${errorText(error)}`));
  }
  session.current = { name: view.name, unmount: typeof unmount === 'function' ? unmount : null };
}

function unmountCurrent() {
  const current = session && session.current;
  if (!current) return;
  session.current = null;
  try {
    if (current.unmount) current.unmount();
  } catch (error) {
    console.error(error);
  }
}

function notify(message, kind = 'info') {
  const toast = h('div', { class: `toast ${kind === 'error' ? 'error' : 'info'}`, 'data-test': 'toast', role: kind === 'error' ? 'alert' : 'status' },
    h('span', {}, String(message)),
    h('button', { class: 'toast-close', type: 'button', 'aria-label': 'Dismiss', onclick: () => toast.remove() }, '×'));
  toasts.append(toast);
  while (toasts.children.length > TOAST_LIMIT) toasts.firstElementChild.remove();
  setTimeout(() => toast.remove(), kind === 'error' ? 10000 : 5000);
}
