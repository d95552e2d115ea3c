// Workflows (chapter 11): the stored definitions, the executions, the approvals waiting for a
// person, and one execution's page — its graph coloured by the steps' states, its step records
// and its history — kept current from the execution's events (11.9).
//
// Routes: #/workflows[/definitions|/executions|/approvals], #/workflows/executions/ID,
// #/workflows/definitions/NAME[?version=V].

import { h, replace, badge, errorText, formatDuration, formatTime, prettyJSON, throttle } from './dom.js';
import { VirtualTable } from './virtual-list.js';
import {
  WorkflowGraph, layoutSteps, stepIdOf, stepTypeOf, nestedSequencesOf, statusWord, zoomControls, STEP_TYPE_LABELS,
} from './graph.js';

const FINAL_STATUSES = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT']);
const EXECUTION_STATUSES = ['PENDING', 'RUNNING', 'WAITING_APPROVAL', 'COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT'];
const PAGE_SIZE = 100;
const MAXIMUM_PAGE = 500;
const EVENT_REFRESH_MS = 400;
// Lists are read again at most this often however many executions change.
const LIST_REFRESH_MS = 1000;
// Events may not reach this page (a role without events/subscribe, another tenant's execution
// seen by an operator): a slow poll keeps it right all the same.
const POLL_WITH_EVENTS_MS = 5000;
const POLL_WITHOUT_EVENTS_MS = 2000;
const HISTORY_LIMIT = 500;
// A page of workflows/executions looks at 2,000 executions at most and may come back short with a
// nextCursor (11.8.9): lists that must be whole follow the cursor, this many pages at most.
const MAXIMUM_PAGES = 20;
const DECIDED_SHOWN_MS = 60000;

export function mount(root, ctx, route) {
  const [, section, name] = route.parts;
  if (section === 'executions' && name) return mountExecution(root, ctx, name);
  if (section === 'definitions' && name) return mountDefinition(root, ctx, name, route.query.get('version'));
  const tab = ['definitions', 'executions', 'approvals'].includes(section) ? section
    : ['definitions', 'executions', 'approvals'].includes(route.query.get('tab')) ? route.query.get('tab') : 'definitions';
  return mountOverview(root, ctx, tab, route.query);
}

// ---------------------------------------------------------------------------------------------
// Small shared pieces

export function isFinal(status) {
  return FINAL_STATUSES.has(status);
}

function hashFor(...parts) {
  return '#/' + parts.map((part) => encodeURIComponent(part)).join('/');
}

export function executionHash(executionId) {
  return hashFor('workflows', 'executions', executionId);
}

function definitionHash(workflowName, version) {
  return hashFor('workflows', 'definitions', workflowName) + (version ? `?version=${encodeURIComponent(version)}` : '');
}

function builderHash(workflowName, version) {
  return version ? hashFor('builder', workflowName, version) : hashFor('builder', workflowName);
}

/// A glob that matches `text` only (chapter 09, 9.3.1: `*?[]\` are pattern characters).
function literalPattern(text) {
  return String(text).replace(/[*?[\]\\]/g, (character) => `\\${character}`);
}

function describeTriggers(triggers) {
  if (!Array.isArray(triggers) || triggers.length === 0) return 'manual';
  return triggers.map((trigger) => {
    if (trigger === 'manual' || (trigger && trigger.manual !== undefined)) return 'manual';
    if (trigger && trigger.event) return `event ${trigger.event}`;
    if (trigger && trigger.schedule) {
      const schedule = trigger.schedule;
      const cron = typeof schedule === 'string' ? schedule : schedule.cron;
      const zone = (typeof schedule === 'object' && schedule.timezone) || trigger.timezone || 'UTC';
      return `schedule ${cron} (${zone})`;
    }
    return JSON.stringify(trigger);
  }).join(', ');
}

function durationBetween(start, end) {
  if (!start) return null;
  const from = Date.parse(start);
  const to = end ? Date.parse(end) : Date.now();
  return Number.isNaN(from) || Number.isNaN(to) ? null : Math.max(0, to - from);
}

function progressBar(progress) {
  const finished = progress?.finishedSteps ?? 0;
  const total = progress?.totalSteps ?? 0;
  const bar = h('span', { class: 'wf-progress', title: `${finished} of ${total} steps ended` },
    h('span', { class: 'wf-progress-fill' }));
  bar.firstChild.style.width = `${total ? Math.round((finished / total) * 100) : 0}%`;
  return h('span', { class: 'wf-progress-cell' }, bar, h('span', { class: 'muted' }, `${finished}/${total}`));
}

function statusBadge(status) {
  return h('span', { 'data-test': 'execution-status', 'data-status': status }, badge(status));
}

function jsonBlock(value, label) {
  return h('details', { class: 'wf-json' }, h('summary', {}, label), h('pre', { class: 'mono' }, prettyJSON(value)));
}

function shortJSON(value, limit = 80) {
  let text;
  try { text = typeof value === 'string' ? value : JSON.stringify(value); } catch { text = String(value); }
  if (text === undefined) return '';
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

function timeLeft(deadline) {
  const milliseconds = Date.parse(deadline) - Date.now();
  if (Number.isNaN(milliseconds)) return '';
  return milliseconds <= 0 ? 'past' : `in ${formatDuration(milliseconds)}`;
}

/// Every execution `params` selects, following nextCursor (bounded).
async function listExecutions(ctx, params) {
  const executions = [];
  let cursor = null;
  for (let page = 0; page < MAXIMUM_PAGES; page += 1) {
    const result = await ctx.gw.call('workflows/executions', cursor ? { ...params, cursor } : params);
    executions.push(...(result.executions || []));
    cursor = result.nextCursor;
    if (!cursor) break;
  }
  return executions;
}

function tabButton(name, title, onSelect) {
  const count = h('span', { class: 'wf-tab-count', hidden: true });
  const button = h('button', {
    type: 'button', class: 'wf-tab', role: 'tab', 'data-test': `workflows-tab-${name}`, 'data-tab': name,
    onclick: () => onSelect(name),
  }, title, count);
  button.count = count;
  return button;
}

// ---------------------------------------------------------------------------------------------
// The inputs form of a run (11.2.6): one field per declared input, of its type. A field left
// empty is not sent, so the input's default applies (or the gateway says it is required).

export function inputsForm(declared) {
  const fields = [];
  const rows = [];
  for (const [name, specification] of Object.entries(declared || {})) {
    const spec = specification && typeof specification === 'object' ? specification : {};
    const type = spec.type || 'any';
    const hasDefault = Object.hasOwn(spec, 'default');
    const required = spec.required === undefined ? !hasDefault : spec.required;
    const id = `run-input-${name}-${Math.random().toString(36).slice(2, 8)}`;
    const common = { id, 'data-test': `run-input-${name}`, 'data-input': name, name };
    let control;
    if (type === 'boolean') {
      control = h('select', common,
        h('option', { value: '' }, hasDefault ? `default (${JSON.stringify(spec.default)})` : '—'),
        h('option', { value: 'true' }, 'true'), h('option', { value: 'false' }, 'false'));
    } else if (type === 'string' || type === 'number' || type === 'integer') {
      control = h('input', {
        ...common, type: type === 'string' ? 'text' : 'number', step: type === 'integer' ? '1' : 'any',
        placeholder: hasDefault ? `default: ${shortJSON(spec.default, 60)}` : required ? 'required' : 'optional',
        autocomplete: 'off',
      });
    } else {
      control = h('textarea', {
        ...common, rows: 2, class: 'mono', spellcheck: 'false',
        placeholder: `${type === 'any' ? 'JSON, or text' : `JSON ${type}`}${hasDefault ? ` — default: ${shortJSON(spec.default, 60)}` : ''}`,
      });
    }
    const error = h('span', { class: 'error-text', hidden: true });
    fields.push({ name, type, control, error });
    rows.push(h('div', { class: 'wf-field' },
      h('label', { for: id }, name, required ? h('span', { class: 'wf-required', title: 'required' }, ' *') : null,
        h('span', { class: 'muted' }, ` ${type}`)),
      control,
      spec.description ? h('span', { class: 'muted wf-hint' }, spec.description) : null,
      error));
  }

  return {
    element: h('div', { class: 'wf-inputs-form' }, rows.length ? rows : h('p', { class: 'muted' }, 'This workflow declares no inputs.')),
    /// The inputs to send, or null when a field cannot be read (its error is shown).
    values() {
      const inputs = {};
      let ok = true;
      for (const field of fields) {
        field.error.hidden = true;
        const raw = field.control.value.trim();
        if (raw === '') continue;
        try {
          if (field.type === 'string') inputs[field.name] = field.control.value;
          else if (field.type === 'boolean') inputs[field.name] = raw === 'true';
          else if (field.type === 'number' || field.type === 'integer') {
            const number = Number(raw);
            if (!Number.isFinite(number)) throw new Error('not a number');
            inputs[field.name] = number;
          } else if (field.type === 'any') {
            try { inputs[field.name] = JSON.parse(raw); } catch { inputs[field.name] = field.control.value; }
          } else {
            inputs[field.name] = JSON.parse(raw);
          }
        } catch (error) {
          ok = false;
          field.error.hidden = false;
          field.error.textContent = `Not valid ${field.type === 'number' || field.type === 'integer' ? 'as a number' : 'JSON'}: ${error.message}`;
        }
      }
      return ok ? inputs : null;
    },
    /// Marks the field the gateway named in a refusal (`data.input`).
    showError(name, message) {
      const field = fields.find((candidate) => candidate.name === name);
      if (!field) return false;
      field.error.hidden = false;
      field.error.textContent = message;
      field.control.focus();
      return true;
    },
  };
}

/// A panel that runs a workflow: the version, its inputs form, and Run. On success it goes to the
/// new execution's page.
export function runPanel(ctx, { workflowName, version, versions = [], onClose }) {
  const status = h('p', { class: 'error-text', role: 'alert', hidden: true });
  const formHolder = h('div', {}, h('p', { class: 'muted' }, 'Loading the inputs…'));
  let form = null;
  let chosen = version;
  const submit = h('button', { type: 'submit', class: 'button primary', 'data-test': 'run-submit', disabled: true }, 'Run');
  const versionSelect = versions.length > 1
    ? h('select', { 'data-test': 'run-version', onchange: () => { chosen = versionSelect.value; load(); } },
      versions.slice().reverse().map((candidate) => h('option', { value: candidate, selected: candidate === version }, candidate)))
    : null;

  async function load() {
    submit.disabled = true;
    try {
      const stored = await ctx.gw.call('workflows/get', chosen ? { workflowName, version: chosen } : { workflowName });
      chosen = stored.version;
      const document = stored.definition || {};
      form = inputsForm(document.inputs || (document.definition && document.definition.inputs));
      replace(formHolder, form.element);
      submit.disabled = false;
    } catch (error) {
      replace(formHolder, h('p', { class: 'error-text' }, `Cannot read the workflow: ${errorText(error)}`));
    }
  }

  const panel = h('form', {
    class: 'panel wf-run-panel', 'data-test': 'run-panel',
    onsubmit: async (event) => {
      event.preventDefault();
      if (!form) return;
      const inputs = form.values();
      if (!inputs) return;
      status.hidden = true;
      submit.disabled = true;
      try {
        const execution = await ctx.gw.call('workflows/execute', { workflowName, version: chosen, inputs });
        ctx.notify(`Started ${workflowName} ${execution.version}`, 'info');
        ctx.navigate(executionHash(execution.executionId));
      } catch (error) {
        submit.disabled = false;
        const input = error.data && error.data.input;
        if (!(input && form.showError(input, errorText(error)))) {
          status.hidden = false;
          status.textContent = errorText(error);
        }
      }
    },
  },
  h('h3', {}, `Run ${workflowName}`, versionSelect ? null : (version ? ` ${version}` : '')),
  versionSelect ? h('div', { class: 'wf-field' }, h('label', {}, 'Version'), versionSelect) : null,
  formHolder,
  status,
  h('div', { class: 'toolbar' }, submit,
    h('button', { type: 'button', class: 'button', 'data-test': 'run-close', onclick: () => onClose?.() }, 'Close')));
  load();
  return panel;
}

// ---------------------------------------------------------------------------------------------
// Approvals: a card per waiting human_approval step, with Approve and Reject for a principal
// that may decide (11.5.6, 12.6). The decision is the logged-in principal's: no `by` is sent.

function approvalKey(executionId, stepId) {
  return `${executionId}\u0000${stepId}`;
}

export function approvalCard(ctx, execution, approval, { onDecided, showExecution = true } = {}) {
  const { executionId, workflowName, version } = execution;
  const comment = h('input', {
    type: 'text', class: 'wf-approval-comment', 'data-test': 'approval-comment', placeholder: 'Comment (optional)',
    'aria-label': `Comment on ${approval.stepId}`, autocomplete: 'off',
  });
  const outcome = h('p', { class: 'wf-approval-outcome', role: 'status', hidden: true });
  const approvers = Array.isArray(approval.approvers) && approval.approvers.length ? approval.approvers.join(', ') : 'anyone';
  const may = ctx.may('workflows/approve');
  const buttons = [];
  const decide = async (approved) => {
    for (const button of buttons) button.disabled = true;
    outcome.hidden = false;
    outcome.className = 'wf-approval-outcome muted';
    outcome.textContent = approved ? 'Approving…' : 'Rejecting…';
    const params = { executionId, stepId: approval.stepId, approved };
    if (comment.value.trim()) params.comment = comment.value.trim();
    try {
      const result = await ctx.gw.call('workflows/approve', params);
      const record = result.stepResults && result.stepResults[approval.stepId];
      const by = record && record.approval && record.approval.decidedBy;
      outcome.className = 'wf-approval-outcome';
      outcome.textContent = `${approved ? 'Approved' : 'Rejected'}${by ? ` by ${by}` : ''}.`;
      card.classList.add('decided');
      comment.disabled = true;
      ctx.notify(`${approval.stepId} of ${workflowName}: ${approved ? 'approved' : 'rejected'}`, 'info');
      onDecided?.(result);
    } catch (error) {
      for (const button of buttons) button.disabled = false;
      outcome.className = 'wf-approval-outcome error-text';
      outcome.textContent = errorText(error);
    }
  };
  if (may) {
    buttons.push(
      h('button', { type: 'button', class: 'button primary', 'data-test': 'approve', onclick: () => decide(true) }, 'Approve'),
      h('button', { type: 'button', class: 'button danger', 'data-test': 'reject', onclick: () => decide(false) }, 'Reject'));
  }
  const card = h('article', {
    class: 'panel wf-approval', 'data-test': 'approval', 'data-execution-id': executionId, 'data-step-id': approval.stepId,
  },
  h('header', { class: 'wf-approval-head' },
    h('strong', {}, approval.stepId),
    showExecution ? h('span', {}, ' in ', h('a', { href: definitionHash(workflowName, version) }, workflowName),
      h('span', { class: 'muted' }, ` ${version || ''}`)) : null,
    h('span', { class: 'spacer' }),
    showExecution ? h('a', { class: 'mono', href: executionHash(executionId), 'data-test': 'approval-execution' }, executionId) : null),
  h('p', { class: 'wf-approval-message', 'data-test': 'approval-message' }, approval.message || `Approve step ${approval.stepId}?`),
  h('dl', { class: 'fields wf-facts' },
    h('dt', {}, 'Approvers'), h('dd', { 'data-test': 'approval-approvers' }, approvers),
    h('dt', {}, 'Requested'), h('dd', {}, formatTime(approval.requestedAt)),
    h('dt', {}, 'Deadline'), h('dd', {}, approval.deadline ? `${formatTime(approval.deadline)} (${timeLeft(approval.deadline)})` : 'none')),
  may ? h('div', { class: 'toolbar wf-approval-actions' }, comment, buttons)
    : h('p', { class: 'muted', 'data-test': 'approval-not-allowed' }, 'You may see this approval but not decide it.'),
  outcome);
  return card;
}

// ---------------------------------------------------------------------------------------------
// The overview: definitions, executions and approvals as tabs.

function mountOverview(root, ctx, initialTab, query) {
  const cleanups = [];
  let disposed = false;
  let current = null;       // {name, unmount}
  const body = h('div', { class: 'wf-tab-body' });
  const tabs = {
    definitions: tabButton('definitions', 'Definitions', select),
    executions: tabButton('executions', 'Executions', select),
    approvals: tabButton('approvals', 'Approvals', select),
  };
  replace(root,
    h('div', { class: 'view-header' },
      h('h2', {}, 'Workflows'),
      h('span', { class: 'spacer' }),
      ctx.may('workflows/create') ? h('a', { class: 'button', href: '#/builder', 'data-test': 'new-workflow' }, 'New workflow') : null),
    h('div', { class: 'wf-tabs', role: 'tablist' }, Object.values(tabs)),
    body);

  // The number of waiting approvals shows on its tab whichever tab is open (the Approvals tab
  // counts them itself as it lists them).
  const showCount = (count) => {
    tabs.approvals.count.hidden = count === 0;
    tabs.approvals.count.textContent = String(count);
  };
  const countApprovals = throttle(async () => {
    if (disposed || (current && current.name === 'approvals')) return;
    try {
      const executions = await listExecutions(ctx, { status: 'WAITING_APPROVAL', limit: MAXIMUM_PAGE });
      if (disposed) return;
      showCount(executions.reduce((sum, execution) => sum + Math.max(1, (execution.pendingApprovals || []).length), 0));
    } catch { /* the tab itself says why when opened */ }
  }, LIST_REFRESH_MS);
  countApprovals();
  if (ctx.may('events/subscribe:workflows.*')) cleanups.push(ctx.gw.subscribe('workflows.*', () => countApprovals()));
  const countTimer = setInterval(() => { if (!document.hidden) countApprovals(); }, 15000);
  cleanups.push(() => clearInterval(countTimer));

  function select(name) {
    if (current && current.name === name) return;
    if (current) current.unmount();
    for (const [tabName, button] of Object.entries(tabs)) {
      button.classList.toggle('active', tabName === name);
      button.setAttribute('aria-selected', tabName === name ? 'true' : 'false');
    }
    // The tab is part of the address (a reload or a link opens it) without remounting the view.
    const hash = hashFor('workflows', name);
    if (location.hash !== hash && !location.hash.startsWith(`${hash}?`)) history.replaceState(null, '', hash);
    const holder = h('div', { 'data-test': `workflows-${name}` });
    replace(body, holder);
    const mounts = { definitions: mountDefinitions, executions: mountExecutions, approvals: mountApprovals };
    current = { name, unmount: mounts[name](holder, ctx, { query, showCount }) };
  }

  select(initialTab);
  return () => {
    disposed = true;
    if (current) current.unmount();
    for (const cleanup of cleanups) cleanup();
  };
}

function mountDefinitions(holder, ctx) {
  let disposed = false;
  const runHolder = h('div', {});
  const status = h('p', { class: 'muted' }, 'Loading the workflows…');
  const tbody = h('tbody', {});
  const table = h('table', { class: 'grid wf-table', 'data-test': 'definitions-table' },
    h('thead', {}, h('tr', {},
      ['Workflow', 'Latest', 'Versions', 'Steps', 'Triggers', 'Updated', ''].map((title) => h('th', {}, title)))),
    tbody);
  replace(holder, runHolder, h('section', { class: 'panel' }, status, table));

  async function load() {
    try {
      const result = await ctx.gw.call('workflows/list');
      if (disposed) return;
      const workflows = result.workflows || [];
      status.textContent = workflows.length ? `${workflows.length} workflow${workflows.length === 1 ? '' : 's'}` : 'No workflow is stored yet.';
      replace(tbody, workflows.map(row));
    } catch (error) {
      if (disposed) return;
      status.className = 'error-text';
      status.textContent = `Cannot list the workflows: ${errorText(error)}`;
    }
  }

  function row(workflow) {
    const name = workflow.workflowName;
    const actions = [];
    if (ctx.may('workflows/execute')) {
      actions.push(h('button', {
        type: 'button', class: 'button primary', 'data-test': 'run-workflow', 'data-workflow': name,
        onclick: () => replace(runHolder, runPanel(ctx, {
          workflowName: name, version: workflow.latestVersion, versions: workflow.versions || [],
          onClose: () => replace(runHolder),
        })),
      }, 'Run'));
    }
    actions.push(h('a', { class: 'button', href: builderHash(name, workflow.latestVersion), 'data-test': 'edit-workflow' },
      ctx.may('workflows/create') ? 'Edit' : 'Open in builder'));
    return h('tr', { 'data-test': 'definition-row', 'data-workflow': name },
      h('td', {}, h('a', { href: definitionHash(name), class: 'wf-name' }, name),
        workflow.description ? h('div', { class: 'muted wf-description' }, workflow.description) : null),
      h('td', { class: 'mono' }, workflow.latestVersion),
      h('td', {}, (workflow.versions || []).map((version) =>
        h('a', { class: 'tag mono', href: definitionHash(name, version) }, version))),
      h('td', { class: 'number' }, workflow.stepCount ?? '–'),
      h('td', {}, describeTriggers(workflow.triggers)),
      h('td', {}, formatTime(workflow.updatedAt)),
      h('td', { class: 'wf-actions' }, actions));
  }

  load();
  return () => { disposed = true; };
}

function mountExecutions(holder, ctx, { query }) {
  let disposed = false;
  let rows = [];
  let nextCursor = null;
  let loading = false;
  let loadAgain = false;
  const filters = {
    workflowName: query && query.get('workflow') || '',
    status: query && query.get('status') || '',
  };

  const workflowSelect = h('select', {
    'data-test': 'executions-filter-workflow', 'aria-label': 'Workflow',
    onchange: () => { filters.workflowName = workflowSelect.value; reload(); },
  }, h('option', { value: '' }, 'Every workflow'));
  const statusSelect = h('select', {
    'data-test': 'executions-filter-status', 'aria-label': 'Status',
    onchange: () => { filters.status = statusSelect.value; reload(); },
  }, h('option', { value: '' }, 'Every status'),
  EXECUTION_STATUSES.map((status) => h('option', { value: status, selected: status === filters.status }, statusWord(status))));
  const summary = h('span', { class: 'muted', 'data-test': 'executions-count' }, 'Loading…');
  const error = h('p', { class: 'error-text', hidden: true });
  const more = h('button', { type: 'button', class: 'button', 'data-test': 'executions-more', hidden: true, onclick: () => loadMore() }, 'Load more');
  const tableHolder = h('div', { class: 'wf-table-holder' });
  replace(holder,
    h('div', { class: 'toolbar' }, workflowSelect, statusSelect, summary),
    error,
    h('section', { class: 'panel table-panel' }, tableHolder),
    h('div', { class: 'toolbar' }, more));

  const columns = [
    { key: 'executionId', title: 'Execution', width: 'minmax(14rem, 1.4fr)',
      render: (e) => h('a', { class: 'mono', href: executionHash(e.executionId), title: e.executionId }, e.executionId) },
    { key: 'workflowName', title: 'Workflow', width: 'minmax(9rem, 1fr)' },
    { key: 'version', title: 'Version', width: 90 },
    { key: 'status', title: 'Status', width: 170, render: (e) => statusBadge(e.status) },
    { key: 'progress', title: 'Progress', width: 140, render: (e) => progressBar(e.progress) },
    { key: 'currentSteps', title: 'Now', width: 'minmax(8rem, 1fr)',
      render: (e) => (e.currentSteps || []).join(', ') || '–' },
    { key: 'triggerType', title: 'Trigger', width: 90 },
    { key: 'startedAt', title: 'Started', width: 150, render: (e) => formatTime(e.startedAt) },
    { key: 'duration', title: 'Took', width: 100, className: 'number',
      render: (e) => (isFinal(e.status) && !e.completedAt ? '–' : formatDuration(durationBetween(e.startedAt, e.completedAt))) },
  ];
  const rowAttributes = (e) => ({ 'data-test': 'execution-row', 'data-execution-id': e.executionId, 'data-status': e.status });
  const open = (e) => ctx.navigate(executionHash(e.executionId));
  const table = createTable(tableHolder, { columns, rowAttributes, rowKey: (e) => e.executionId, onRowClick: open });

  ctx.gw.call('workflows/list').then((result) => {
    if (disposed) return;
    for (const workflow of result.workflows || []) {
      workflowSelect.append(h('option', { value: workflow.workflowName, selected: workflow.workflowName === filters.workflowName }, workflow.workflowName));
    }
  }).catch(() => {});

  function params(cursor, limit) {
    const result = { limit };
    if (filters.workflowName) result.workflowName = filters.workflowName;
    if (filters.status) result.status = filters.status;
    if (cursor) result.cursor = cursor;
    return result;
  }

  // A refresh reloads as many executions as are shown, so that "Load more" is not undone.
  async function reload() {
    if (loading) { loadAgain = true; return; }
    loading = true;
    try {
      const limit = Math.min(MAXIMUM_PAGE, Math.max(PAGE_SIZE, rows.length));
      const result = await ctx.gw.call('workflows/executions', params(null, limit));
      if (disposed) return;
      rows = result.executions || [];
      nextCursor = result.nextCursor || null;
      error.hidden = true;
      render();
    } catch (failure) {
      if (disposed) return;
      error.hidden = false;
      error.textContent = `Cannot list the executions: ${errorText(failure)}`;
    } finally {
      loading = false;
      if (loadAgain && !disposed) { loadAgain = false; reload(); }
    }
  }

  async function loadMore() {
    if (!nextCursor) return;
    more.disabled = true;
    try {
      const result = await ctx.gw.call('workflows/executions', params(nextCursor, PAGE_SIZE));
      if (disposed) return;
      const known = new Set(rows.map((e) => e.executionId));
      rows = rows.concat((result.executions || []).filter((e) => !known.has(e.executionId)));
      nextCursor = result.nextCursor || null;
      render();
    } catch (failure) {
      ctx.notify(`Cannot list more executions: ${errorText(failure)}`, 'error');
    } finally {
      more.disabled = false;
    }
  }

  function render() {
    table.setRows(rows);
    more.hidden = !nextCursor;
    summary.textContent = `${rows.length}${nextCursor ? '+' : ''} execution${rows.length === 1 ? '' : 's'}`;
  }

  const following = followExecutions(ctx, reload);
  return () => {
    disposed = true;
    following.stop();
    table.destroy();
  };
}

/// Loads now, again on every execution's event (throttled) when the principal may follow them,
/// and on a slow poll besides — a faster one without events. Returns `refresh` (a throttled load,
/// for a change made here) and `stop`.
function followExecutions(ctx, load) {
  const live = ctx.may('events/subscribe:workflows.*');
  const refresh = throttle(() => load(), LIST_REFRESH_MS);
  const stop = live ? ctx.gw.subscribe('workflows.*', () => refresh()) : () => {};
  const timer = setInterval(() => { if (!document.hidden) load(); }, (live ? POLL_WITH_EVENTS_MS : POLL_WITHOUT_EVENTS_MS) * 2);
  load();
  return {
    refresh,
    stop: () => {
      stop();
      clearInterval(timer);
    },
  };
}

function createTable(container, { columns, rowAttributes, rowKey, onRowClick }) {
  return new VirtualTable(container, {
    columns, rowAttributes, rowKey, onRowClick, rowHeight: 34, emptyText: 'No execution.', label: 'Workflow executions',
  });
}

function mountApprovals(holder, ctx, { showCount }) {
  let disposed = false;
  const cards = new Map();   // key -> element, kept while the approval waits so a comment being typed survives
  const list = h('div', { class: 'wf-approvals', 'data-test': 'approvals' });
  const status = h('p', { class: 'muted', 'data-test': 'approvals-status' }, 'Loading the approvals…');
  replace(holder, status, list);

  let loading = false;
  let loadAgain = false;
  async function load() {
    if (loading) { loadAgain = true; return; }
    loading = true;
    try {
      const executions = await listExecutions(ctx, { status: 'WAITING_APPROVAL', limit: MAXIMUM_PAGE });
      // An entry without its approvals (an older gateway) is read whole.
      const full = await Promise.all(executions.map((execution) => (Array.isArray(execution.pendingApprovals)
        ? execution
        : ctx.gw.call('workflows/status', { executionId: execution.executionId }).catch(() => execution))));
      if (disposed) return;
      const wanted = [];
      for (const execution of full) {
        for (const approval of execution.pendingApprovals || []) {
          const key = approvalKey(execution.executionId, approval.stepId);
          let card = cards.get(key);
          if (!card) {
            card = approvalCard(ctx, execution, approval, {
              onDecided: () => { card.decidedAt = Date.now(); refresh(); },
            });
            cards.set(key, card);
          }
          if (!card.decidedAt) wanted.push(card);
        }
      }
      // A decision just taken stays in view for a while, with its outcome and the link to its
      // execution, after the approval has left the list.
      const decided = [];
      for (const [key, card] of cards) {
        if (card.decidedAt && Date.now() - card.decidedAt < DECIDED_SHOWN_MS) decided.push(card);
        else if (!wanted.includes(card)) cards.delete(key);
      }
      replace(list, decided, wanted);
      showCount?.(wanted.length);
      status.textContent = wanted.length
        ? `${wanted.length} approval${wanted.length === 1 ? '' : 's'} waiting${ctx.may('workflows/approve') ? '' : ' (you may not decide them)'}`
        : 'No approval is waiting.';
      status.className = 'muted';
    } catch (error) {
      if (disposed) return;
      status.className = 'error-text';
      status.textContent = `Cannot list the approvals: ${errorText(error)}`;
    } finally {
      loading = false;
      if (loadAgain && !disposed) { loadAgain = false; load(); }
    }
  }

  const following = followExecutions(ctx, load);
  const refresh = following.refresh;
  return () => {
    disposed = true;
    following.stop();
  };
}

// ---------------------------------------------------------------------------------------------
// One definition: its versions, graph, inputs, triggers, source, and recent executions.

function mountDefinition(root, ctx, workflowName, version) {
  let disposed = false;
  let graph = null;
  replace(root, h('p', { class: 'muted' }, `Loading ${workflowName}…`));

  (async () => {
    let stored;
    try {
      stored = await ctx.gw.call('workflows/get', version ? { workflowName, version } : { workflowName });
    } catch (error) {
      if (disposed) return;
      replace(root, h('div', { class: 'view-header' }, h('a', { href: '#/workflows/definitions' }, '← Workflows')),
        h('p', { class: 'error-text' }, `Cannot read ${workflowName}: ${errorText(error)}`));
      return;
    }
    if (disposed) return;
    const document = stored.definition || {};
    const wrapped = document.definition && typeof document.definition === 'object' ? document.definition : {};
    const steps = document.steps || wrapped.steps || [];
    const inputs = document.inputs || wrapped.inputs || {};
    const outputs = document.outputs || wrapped.outputs;
    const versions = stored.versions || [stored.version];
    const runHolder = h('div', {});
    const graphHolder = h('div', { class: 'wf-graph-holder', 'data-test': 'definition-graph' });
    const executionsHolder = h('div', {});
    const zoomHolder = h('span', {});

    const versionSelect = h('select', {
      'data-test': 'definition-version', 'aria-label': 'Version',
      onchange: () => ctx.navigate(definitionHash(workflowName, versionSelect.value)),
    }, versions.slice().reverse().map((candidate) => h('option', { value: candidate, selected: candidate === stored.version }, candidate)));

    replace(root,
      h('div', { class: 'view-header' },
        h('a', { href: '#/workflows/definitions', class: 'wf-back' }, '← Workflows'),
        h('h2', {}, workflowName), versionSelect,
        h('span', { class: 'spacer' }),
        ctx.may('workflows/execute') ? h('button', {
          type: 'button', class: 'button primary', 'data-test': 'run-workflow',
          onclick: () => replace(runHolder, runPanel(ctx, { workflowName, version: stored.version, versions, onClose: () => replace(runHolder) })),
        }, 'Run') : null,
        h('a', { class: 'button', href: builderHash(workflowName, stored.version), 'data-test': 'edit-workflow' },
          ctx.may('workflows/create') ? 'Edit in builder' : 'Open in builder')),
      stored.description ? h('p', { class: 'wf-description' }, stored.description) : null,
      runHolder,
      h('section', { class: 'panel' },
        h('dl', { class: 'fields wf-facts' },
          h('dt', {}, 'Steps'), h('dd', {}, String(stored.stepCount ?? steps.length)),
          h('dt', {}, 'Triggers'), h('dd', {}, describeTriggers(stored.triggers)),
          h('dt', {}, 'Stored'), h('dd', {}, `${formatTime(stored.createdAt)}${stored.createdBy ? ` by ${stored.createdBy}` : ''}`))),
      h('section', { class: 'panel' }, h('div', { class: 'wf-panel-head' }, h('h3', {}, 'Steps'), h('span', { class: 'spacer' }), zoomHolder), graphHolder),
      Object.keys(inputs).length ? h('section', { class: 'panel' }, h('h3', {}, 'Inputs'), inputsTable(inputs)) : null,
      outputs ? h('section', { class: 'panel' }, h('h3', {}, 'Outputs'), h('pre', { class: 'mono json' }, prettyJSON(outputs))) : null,
      h('section', { class: 'panel' }, h('h3', {}, 'Recent executions'), executionsHolder),
      h('section', { class: 'panel' }, h('details', {}, h('summary', {}, 'Source'),
        h('pre', { class: 'mono json', 'data-test': 'definition-source' }, stored.source || ''))));

    graph = new WorkflowGraph(graphHolder, { nodeTest: 'step-node', edgeTest: 'graph-edge' });
    graph.render({ steps, positions: layoutSteps(steps), label: `Steps of ${workflowName}` });
    zoomHolder.append(zoomControls(graph, graphHolder));

    try {
      const result = await ctx.gw.call('workflows/executions', { workflowName, limit: 20 });
      if (disposed) return;
      const executions = result.executions || [];
      replace(executionsHolder, executions.length ? h('table', { class: 'grid wf-table' },
        h('thead', {}, h('tr', {}, ['Execution', 'Version', 'Status', 'Progress', 'Started'].map((title) => h('th', {}, title)))),
        h('tbody', {}, executions.map((execution) => h('tr', { 'data-test': 'execution-row', 'data-execution-id': execution.executionId },
          h('td', {}, h('a', { class: 'mono', href: executionHash(execution.executionId) }, execution.executionId)),
          h('td', { class: 'mono' }, execution.version),
          h('td', {}, statusBadge(execution.status)),
          h('td', {}, progressBar(execution.progress)),
          h('td', {}, formatTime(execution.startedAt))))))
        : h('p', { class: 'muted' }, 'None yet.'));
    } catch (error) {
      if (!disposed) replace(executionsHolder, h('p', { class: 'muted' }, `Cannot list its executions: ${errorText(error)}`));
    }
  })();

  return () => {
    disposed = true;
    graph?.destroy();
  };
}

function inputsTable(inputs) {
  return h('table', { class: 'grid wf-table' },
    h('thead', {}, h('tr', {}, ['Input', 'Type', 'Default', 'Required', 'Description'].map((title) => h('th', {}, title)))),
    h('tbody', {}, Object.entries(inputs).map(([name, spec]) => {
      const s = spec && typeof spec === 'object' ? spec : {};
      const hasDefault = Object.hasOwn(s, 'default');
      return h('tr', {},
        h('td', { class: 'mono' }, name),
        h('td', {}, s.type || 'any'),
        h('td', { class: 'mono' }, hasDefault ? shortJSON(s.default) : '–'),
        h('td', {}, String(s.required === undefined ? !hasDefault : s.required)),
        h('td', {}, s.description || ''));
    })));
}

// ---------------------------------------------------------------------------------------------
// One execution

function mountExecution(root, ctx, executionId) {
  let disposed = false;
  let execution = null;
  let definition = null;       // the version's document, for the graph and the order of steps
  let definitionWanted = null;
  let graph = null;
  let fetching = false;
  let fetchAgain = false;
  let selectedStep = null;
  const events = [];           // the events received while the page is open
  const approvalCards = new Map();

  const header = h('div', { class: 'view-header' },
    h('a', { href: '#/workflows/executions', class: 'wf-back' }, '← Executions'),
    h('h2', {}, 'Execution'),
    h('span', { class: 'mono wf-execution-id', 'data-test': 'execution-id' }, executionId));
  const statusHolder = h('span', {});
  const actions = h('span', { class: 'toolbar' });
  header.append(statusHolder, h('span', { class: 'spacer' }), actions);
  const error = h('p', { class: 'error-text', role: 'alert', hidden: true });
  const facts = h('dl', { class: 'wf-summary' });
  const problem = h('div', {});
  const approvalsHolder = h('div', { class: 'wf-approvals', 'data-test': 'execution-approvals' });
  const graphHolder = h('div', { class: 'wf-graph-holder', 'data-test': 'execution-graph' });
  const recordsBody = h('tbody', {});
  const timeline = h('ol', { class: 'wf-history', 'data-test': 'execution-timeline' });
  const eventList = h('ol', { class: 'wf-history', 'data-test': 'execution-events' });
  const dataHolder = h('div', { class: 'wf-data' });
  const liveNote = h('span', { class: 'muted', 'data-test': 'execution-live' });
  const zoomHolder = h('span', {});
  let revealed = false;

  replace(root, header, error,
    h('section', { class: 'panel' }, facts, problem),
    approvalsHolder,
    h('section', { class: 'panel' }, h('div', { class: 'wf-panel-head' }, h('h3', {}, 'Steps'), liveNote, h('span', { class: 'spacer' }), zoomHolder), graphHolder),
    h('section', { class: 'panel' }, h('h3', {}, 'Step records'),
      h('div', { class: 'wf-scroll' }, h('table', { class: 'grid wf-table wf-records', 'data-test': 'step-records' },
        h('thead', {}, h('tr', {}, ['Step', 'Type', 'Status', 'Attempts', 'Started', 'Ended', 'Took', 'Outcome'].map((title) => h('th', {}, title)))),
        recordsBody))),
    dataHolder,
    h('div', { class: 'wf-history-columns' },
      h('section', { class: 'panel' }, h('h3', {}, 'Timeline'), h('p', { class: 'muted' }, 'From the execution’s record.'), timeline),
      h('section', { class: 'panel' }, h('h3', {}, 'Events received'), h('p', { class: 'muted' }, 'Published while this page is open (workflows.NAME.ID).'), eventList)));

  graph = new WorkflowGraph(graphHolder, {
    nodeTest: 'step-node', edgeTest: 'graph-edge',
    onNodeClick: (index) => {
      const steps = topLevelSteps();
      selectedStep = stepIdOf(steps[index]);
      renderRecords();
      recordsBody.querySelector(`tr[data-step-id="${CSS.escape(selectedStep)}"]`)?.scrollIntoView({ block: 'nearest' });
    },
  });
  zoomHolder.append(zoomControls(graph, graphHolder));

  const refresh = throttle(() => fetchStatus(), EVENT_REFRESH_MS);
  const canSubscribe = ctx.may('events/subscribe:workflows.*');
  const stopEvents = canSubscribe
    ? ctx.gw.subscribe(`workflows.*.${literalPattern(executionId)}`, (event) => {
      if (!event.data || event.data.executionId !== executionId) return;
      events.push({ receivedAt: new Date().toISOString(), publishedAt: event.publishedAt, data: event.data });
      if (events.length > HISTORY_LIMIT) events.shift();
      renderEvents();
      refresh();
    })
    : () => {};
  liveNote.textContent = canSubscribe ? 'live: updated on each event' : 'updated every 2 s (events are not allowed to this principal)';
  const timer = setInterval(() => {
    if (!document.hidden && execution && !isFinal(execution.status)) fetchStatus();
  }, canSubscribe ? POLL_WITH_EVENTS_MS : POLL_WITHOUT_EVENTS_MS);

  async function fetchStatus() {
    if (fetching) { fetchAgain = true; return; }
    fetching = true;
    try {
      const result = await ctx.gw.call('workflows/status', { executionId });
      if (disposed) return;
      execution = result;
      error.hidden = true;
      await loadDefinition();
      if (disposed) return;
      render();
    } catch (failure) {
      if (disposed) return;
      error.hidden = false;
      error.textContent = failure.code === -32002
        ? `No execution ${executionId} (or not one of your tenant’s).`
        : `Cannot read the execution: ${errorText(failure)}`;
    } finally {
      fetching = false;
      if (fetchAgain && !disposed) { fetchAgain = false; fetchStatus(); }
    }
  }

  async function loadDefinition() {
    const key = `${execution.workflowName}\u0000${execution.version}`;
    if (definitionWanted === key) return;
    definitionWanted = key;
    try {
      const stored = await ctx.gw.call('workflows/get', { workflowName: execution.workflowName, version: execution.version });
      definition = stored.definition || {};
    } catch {
      definition = null;
    }
  }

  function topLevelSteps() {
    if (!definition) return [];
    return definition.steps || (definition.definition && definition.definition.steps) || [];
  }

  function compensations() {
    if (!definition) return [];
    return definition.compensations || (definition.definition && definition.definition.compensations) || [];
  }

  function render() {
    const e = execution;
    replace(statusHolder, statusBadge(e.status));
    root.dataset.status = e.status;
    replace(actions,
      ctx.may('workflows/cancel') && !isFinal(e.status)
        ? h('button', { type: 'button', class: 'button danger', 'data-test': 'execution-cancel', onclick: (event) => cancel(event.currentTarget) }, 'Cancel execution')
        : null);
    const took = e.totalDurationMs ?? durationBetween(e.startedAt, e.completedAt);
    const fact = (label, value, attributes = {}) => h('div', { class: 'wf-summary-item' }, h('dt', {}, label), h('dd', attributes, value));
    replace(facts,
      fact('Workflow', [h('a', { href: definitionHash(e.workflowName, e.version) }, e.workflowName), h('span', { class: 'muted' }, ` ${e.version}`)]),
      fact('Progress', progressBar(e.progress)),
      fact('Trigger', e.triggerType || 'manual'),
      fact('Started', formatTime(e.startedAt)),
      fact('Ended', e.completedAt ? formatTime(e.completedAt) : '–'),
      fact(isFinal(e.status) ? 'Took' : 'Running for', formatDuration(took)),
      fact('Now', (e.currentSteps || []).join(', ') || '–', { 'data-test': 'execution-current' }),
      e.executionContext && e.executionContext.tenant ? fact('Tenant', e.executionContext.tenant) : null);
    replace(problem, e.errorDetails ? h('div', { class: 'wf-error-details', 'data-test': 'execution-error' },
      h('strong', {}, e.errorDetails.stepId ? `Step ${e.errorDetails.stepId}: ` : ''),
      e.errorDetails.message || '',
      e.errorDetails.timedOut ? h('span', { class: 'tag' }, 'timed out') : null,
      (e.errorDetails.compensations || []).length
        ? h('ul', {}, e.errorDetails.compensations.map((c) => h('li', {}, `compensation ${c.stepId}: ${c.status}${c.error ? ` — ${c.error}` : ''}`)))
        : null) : null);
    renderApprovals();
    renderGraph();
    renderRecords();
    renderData();
    renderTimeline();
  }

  function renderApprovals() {
    const wanted = [];
    for (const approval of execution.pendingApprovals || []) {
      const key = approvalKey(executionId, approval.stepId);
      let card = approvalCards.get(key);
      if (!card) {
        card = approvalCard(ctx, execution, approval, { showExecution: false, onDecided: () => refresh() });
        approvalCards.set(key, card);
      }
      wanted.push(card);
    }
    for (const [key, card] of approvalCards) if (!wanted.includes(card)) approvalCards.delete(key);
    replace(approvalsHolder, wanted.length ? [h('h3', {}, 'Waiting for a decision'), wanted] : []);
  }

  function renderGraph() {
    const steps = topLevelSteps();
    if (!definition) {
      replace(graphHolder, h('p', { class: 'muted' }, 'The definition of this version cannot be read; the step records are below.'));
      return;
    }
    if (!graphHolder.contains(graph.svg)) replace(graphHolder, graph.svg);
    const records = execution.stepResults || {};
    graph.render({
      steps,
      positions: layoutSteps(steps),
      stateOf: (id) => records[id] || null,
      selectedNode: steps.findIndex((step) => stepIdOf(step) === selectedStep),
      label: `Steps of ${execution.workflowName} and their states`,
    });
    // The first time, what runs now is brought into view (a wide graph scrolls).
    if (!revealed) {
      revealed = true;
      const current = (execution.currentSteps || [])[0];
      const index = steps.findIndex((step) => stepIdOf(step) === current);
      if (index >= 0) graph.reveal(graphHolder, index);
    }
  }

  /// Every step in the order of the definition, nested ones under their parent, then the
  /// compensations, then any record the definition does not explain.
  function orderedSteps() {
    const ordered = [];
    const walk = (steps, depth, group) => {
      for (const step of steps) {
        if (!step || typeof step !== 'object') continue;
        ordered.push({ id: stepIdOf(step), type: stepTypeOf(step), depth, group });
        for (const sequence of nestedSequencesOf(step)) walk(sequence, depth + 1, group);
      }
    };
    walk(topLevelSteps(), 0, 'steps');
    walk(compensations(), 0, 'compensations');
    const known = new Set(ordered.map((entry) => entry.id));
    for (const id of Object.keys(execution.stepResults || {})) {
      if (!known.has(id)) ordered.push({ id, type: '', depth: 0, group: 'steps' });
    }
    return ordered;
  }

  function renderRecords() {
    if (!execution) return;
    const records = execution.stepResults || {};
    const rows = [];
    let lastGroup = 'steps';
    for (const entry of orderedSteps()) {
      const record = records[entry.id];
      if (entry.group === 'compensations' && !record) continue;
      if (entry.group !== lastGroup) {
        rows.push(h('tr', { class: 'wf-group-row' }, h('td', { colspan: 8 }, 'Compensations')));
        lastGroup = entry.group;
      }
      const status = record ? record.status : 'NOT_STARTED';
      const name = h('td', { class: 'mono' }, entry.id);
      name.style.paddingLeft = `${0.5 + entry.depth * 1.25}rem`;
      rows.push(h('tr', {
        'data-test': 'step-record', 'data-step-id': entry.id, 'data-step-status': status,
        class: entry.id === selectedStep ? 'selected' : null,
      },
      name,
      h('td', {}, STEP_TYPE_LABELS[entry.type] || entry.type || '–'),
      h('td', {}, record ? badge(status) : h('span', { class: 'muted' }, 'not started')),
      h('td', { class: 'number' }, record ? String(record.attempts ?? 0) : '–'),
      h('td', {}, record ? formatTime(record.startedAt) : '–'),
      h('td', {}, record ? formatTime(record.completedAt) : '–'),
      h('td', { class: 'number' }, record && record.durationMs !== undefined ? formatDuration(record.durationMs) : '–'),
      h('td', { class: 'wf-outcome' }, record ? outcome(record) : null)));
    }
    replace(recordsBody, rows.length ? rows : h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No step has started.')));
  }

  function outcome(record) {
    const parts = [];
    if (record.error) parts.push(h('div', { class: 'error-text' }, record.timedOut ? `timed out: ${record.error}` : record.error));
    if (record.skipReason) parts.push(h('div', { class: 'muted' }, `skipped: ${record.skipReason}`));
    if (record.branch) parts.push(h('div', {}, `took the ${record.branch} branch`));
    if (record.iterations !== undefined) parts.push(h('div', {}, `${record.iterations} iteration${record.iterations === 1 ? '' : 's'}`));
    const approval = record.approval;
    if (approval) {
      if (approval.decidedAt || approval.approved !== undefined) {
        parts.push(h('div', { 'data-test': 'approval-decision' },
          `${approval.approved ? 'approved' : 'rejected'}${approval.decidedBy ? ` by ${approval.decidedBy}` : ''}`
          + `${approval.decidedAt ? ` at ${formatTime(approval.decidedAt)}` : ''}${approval.timedOut ? ' (deadline passed)' : ''}`,
          approval.comment ? h('span', { class: 'muted' }, ` — “${approval.comment}”`) : null));
      } else {
        parts.push(h('div', {}, `waiting: ${approval.message || ''}`));
      }
    }
    if (record.result !== undefined) parts.push(jsonBlock(record.result, `result ${shortJSON(record.result, 48)}`));
    return parts;
  }

  function renderData() {
    const e = execution;
    const blocks = [];
    if (e.inputs && Object.keys(e.inputs).length) blocks.push(h('section', { class: 'panel' }, h('h3', {}, 'Inputs'), h('pre', { class: 'mono json' }, prettyJSON(e.inputs))));
    if (e.outputs) blocks.push(h('section', { class: 'panel' }, h('h3', {}, 'Outputs'), h('pre', { class: 'mono json', 'data-test': 'execution-outputs' }, prettyJSON(e.outputs))));
    if (e.triggerData && Object.keys(e.triggerData).length) blocks.push(h('section', { class: 'panel' }, h('h3', {}, 'Trigger data'), h('pre', { class: 'mono json' }, prettyJSON(e.triggerData))));
    replace(dataHolder, blocks.length ? h('div', { class: 'wf-data-columns' }, blocks) : null);
  }

  function renderTimeline() {
    const e = execution;
    const entries = [];
    const add = (time, text, status) => { if (time) entries.push({ time, text, status }); };
    add(e.startedAt, `execution accepted (${e.triggerType || 'manual'})`, 'PENDING');
    for (const [id, record] of Object.entries(e.stepResults || {})) {
      add(record.startedAt, `${id} started${record.attempts > 1 ? ` (${record.attempts} attempts)` : ''}`, 'RUNNING');
      if (record.approval) {
        add(record.approval.requestedAt, `${id} asked ${record.approval.approvers?.length ? record.approval.approvers.join(', ') : 'anyone'} for a decision`, 'WAITING_APPROVAL');
        if (record.approval.decidedAt) {
          add(record.approval.decidedAt, `${id} ${record.approval.approved ? 'approved' : 'rejected'}${record.approval.decidedBy ? ` by ${record.approval.decidedBy}` : ''}`, record.approval.approved ? 'COMPLETED' : 'FAILED');
        }
      }
      if (record.completedAt) add(record.completedAt, `${id} ${statusWord(record.status)}${record.error ? `: ${record.error}` : ''}`, record.status);
      else if (record.status === 'SKIPPED') add(record.startedAt || e.startedAt, `${id} skipped${record.skipReason ? `: ${record.skipReason}` : ''}`, 'SKIPPED');
    }
    if (e.completedAt) add(e.completedAt, `execution ${statusWord(e.status)}`, e.status);
    entries.sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
    replace(timeline, entries.map((entry) => h('li', { class: `wf-history-entry state-${entry.status}` },
      h('time', { datetime: entry.time }, formatTime(entry.time)), ' ', entry.text)));
  }

  function renderEvents() {
    replace(eventList, events.length ? events.map(({ publishedAt, receivedAt, data }) => {
      const text = data.event === 'step'
        ? `step ${data.stepId} ${statusWord(data.status)}${data.attempt > 1 ? ` (attempt ${data.attempt})` : ''}${data.error ? `: ${data.error}` : ''}`
        : `execution ${statusWord(data.status)}${data.errorDetails && data.errorDetails.message ? `: ${data.errorDetails.message}` : ''}`;
      return h('li', { class: `wf-history-entry state-${data.status}`, 'data-test': 'execution-event' },
        h('time', { datetime: publishedAt || receivedAt }, formatTime(publishedAt || receivedAt)), ' ', text,
        h('span', { class: 'muted' }, ` · ${data.finishedSteps}/${data.totalSteps}`));
    }) : h('li', { class: 'muted' }, 'None yet.'));
  }

  async function cancel(button) {
    if (!button.classList.contains('armed')) {
      // A second click within a few seconds confirms: cancelling cannot be undone.
      button.classList.add('armed');
      button.textContent = 'Confirm cancel';
      setTimeout(() => { if (button.isConnected) { button.classList.remove('armed'); button.textContent = 'Cancel execution'; } }, 4000);
      return;
    }
    button.disabled = true;
    try {
      execution = await ctx.gw.call('workflows/cancel', { executionId });
      ctx.notify(`Execution ${executionId}: ${statusWord(execution.status)}`, 'info');
      if (!disposed) render();
    } catch (failure) {
      button.disabled = false;
      ctx.notify(`Cannot cancel: ${errorText(failure)}`, 'error');
    }
  }

  renderEvents();
  fetchStatus();
  return () => {
    disposed = true;
    stopEvents();
    clearInterval(timer);
    graph?.destroy();
  };
}
