// Tasks: the queue (by priority), the tasks by state, every task the gateway still holds
// (`tasks/list`, walked page by page) with its attempts, a form to submit one, and cancellation.
//
// The gateway publishes no event when a task changes (chapter 10), so the view polls every two
// seconds while the page is visible; a walk that takes longer simply delays the next one.

import { h, replace, badge, confirmButton, errorText, formatDuration, formatNumber, formatTime, prettyJSON, debounce } from './dom.js';
import { VirtualTable } from './virtual-list.js';

const TASK_STATES = ['PENDING', 'ASSIGNED', 'RUNNING', 'COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED'];
const FINAL_STATES = new Set(['COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED']);
const PRIORITIES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
const REFRESH_MS = 2000;
// 100 tasks a page: 10,000 tasks at most per refresh. A gateway holding more is asked to narrow.
const MAX_PAGES = 100;

export function mount(root, ctx) {
  let disposed = false;
  let timer = null;
  let refreshing = false;
  let refreshAgain = false;
  let tasks = [];
  let truncated = false;
  let stateFilter = '';
  let toolFilter = '';
  let selectedId = null;
  let selectedTask = null;
  let selectedError = null;
  let panelSignature = null;

  const countsLine = h('span', { class: 'muted' }, 'Loading…');
  const statusError = h('p', { class: 'error-text', hidden: true });
  const queuePanel = h('div', { class: 'queue', 'data-test': 'queue-by-priority' });
  const statesPanel = h('div', { class: 'state-counts', 'data-test': 'tasks-by-state' });
  const dispatchPanel = h('dl', { class: 'fields compact' });
  const listNote = h('span', { class: 'muted' });
  const listError = h('p', { class: 'error-text', hidden: true });
  const tableHolder = h('div', { class: 'table-holder' });
  const panel = h('aside', { class: 'detail-panel', hidden: true, 'data-test': 'task-panel', 'aria-label': 'Task details' });

  const stateSelect = h('select', {
    'data-test': 'task-state-filter', 'aria-label': 'State',
    onchange: () => { stateFilter = stateSelect.value; refreshNow(); },
  }, h('option', { value: '' }, 'Every state'), TASK_STATES.map((state) => h('option', { value: state }, state)));
  const toolInput = h('input', {
    type: 'search', class: 'filter', placeholder: 'Filter: task id, tool, agent…', 'aria-label': 'Filter tasks',
    oninput: debounce(() => { toolFilter = toolInput.value.trim().toLowerCase(); renderTable(); }, 120),
  });

  replace(root,
    h('div', { class: 'view-header' }, h('h2', {}, 'Tasks'), countsLine),
    statusError,
    h('div', { class: 'panels three' },
      h('section', { class: 'panel' }, h('h3', {}, 'Queue by priority'), h('p', { class: 'muted small' }, '1 is the highest'), queuePanel),
      h('section', { class: 'panel' }, h('h3', {}, 'Tasks by state'), statesPanel),
      h('section', { class: 'panel' }, h('h3', {}, 'Dispatch'), dispatchPanel)),
    ctx.may('tasks/submit') ? submitForm() : null,
    h('section', { class: 'panel table-panel' },
      h('div', { class: 'toolbar' }, h('h3', {}, 'Tasks, newest first'), h('span', { class: 'spacer' }), listNote, stateSelect, toolInput),
      listError,
      tableHolder),
    panel);

  const columns = [
    { key: 'taskId', title: 'Task', width: 'minmax(11rem, 1.2fr)', sort: (t) => t.createdAt, render: (t) => h('span', { class: 'mono' }, t.taskId) },
    { key: 'taskType', title: 'Tool', width: 'minmax(8rem, 1fr)', sort: (t) => t.taskType },
    { key: 'state', title: 'State', width: 112, sort: (t) => TASK_STATES.indexOf(t.state),
      render: (t) => h('span', { 'data-test': 'task-state', 'data-state': t.state }, badge(t.state)) },
    { key: 'priority', title: 'Priority', width: 72, className: 'number', sort: (t) => t.priority },
    { key: 'attempts', title: 'Attempts', width: 80, className: 'number', sort: (t) => (t.attempts || []).length,
      render: (t) => `${(t.attempts || []).length} / ${(t.maxRetries ?? 0) + 1}` },
    { key: 'agent', title: 'Agent', width: 'minmax(7rem, 1fr)', sort: (t) => (t.assignedAgent ? t.assignedAgent.agentId : ''),
      render: (t) => (t.assignedAgent ? h('span', { class: 'mono' }, t.assignedAgent.agentId) : '–') },
    { key: 'createdAt', title: 'Submitted', width: 150, sort: (t) => t.createdAt, render: (t) => formatTime(t.createdAt) },
    { key: 'duration', title: 'Duration', width: 84, className: 'number', sort: (t) => t.duration,
      render: (t) => (typeof t.duration === 'number' ? formatDuration(t.duration * 1000) : '–') },
    { key: 'message', title: 'Message', width: 'minmax(10rem, 2fr)',
      render: (t) => { const text = t.errorMessage || t.statusMessage; return text ? h('span', { class: FINAL_STATES.has(t.state) && t.state !== 'COMPLETED' ? 'error-text' : 'muted', title: text }, text) : ''; } },
  ];
  if (ctx.may('tasks/cancel')) {
    columns.push({ key: 'actions', title: '', width: 96, render: (t) => (FINAL_STATES.has(t.state) ? '' : cancelButton(t.taskId)) });
  }
  const table = new VirtualTable(tableHolder, {
    label: 'Tasks', rowHeight: 30, columns, rowKey: (t) => t.taskId,
    rowAttributes: (t) => ({ 'data-test': 'task-row', 'data-task-id': t.taskId }),
    onRowClick: (t) => openTask(t.taskId),
    emptyText: 'No task matches.',
  });

  const onVisibility = () => { if (!document.hidden) refreshNow(); };
  document.addEventListener('visibilitychange', onVisibility);
  loadTools();
  refreshNow();

  // One refresh at a time; a request for one while another runs makes it run once more after.
  function refreshNow() {
    clearTimeout(timer);
    if (refreshing) { refreshAgain = true; return; }
    refreshing = true;
    refresh().finally(() => {
      refreshing = false;
      if (disposed) return;
      if (refreshAgain) { refreshAgain = false; refreshNow(); return; }
      // While the page is hidden the loop stops; becoming visible starts it again.
      timer = setTimeout(() => { if (!document.hidden) refreshNow(); }, REFRESH_MS);
    });
  }

  async function refresh() {
    await Promise.all([loadStatus(), loadTasks(), selectedId ? loadSelected() : null]);
  }

  async function loadStatus() {
    if (!ctx.may('gateway/status')) return;
    try {
      const status = await ctx.gw.call('gateway/status');
      if (disposed) return;
      statusError.hidden = true;
      renderStatus(status.tasks || {});
    } catch (error) {
      if (disposed) return;
      statusError.hidden = false;
      statusError.textContent = `Cannot read the gateway's status: ${errorText(error)}`;
    }
  }

  async function loadTasks() {
    if (!ctx.may('tasks/list')) {
      listError.hidden = false;
      listError.textContent = 'This principal may not list tasks.';
      return;
    }
    try {
      const collected = [];
      let cursor;
      let pages = 0;
      do {
        const params = {};
        if (stateFilter) params.state = stateFilter;
        if (cursor) params.cursor = cursor;
        const page = await ctx.gw.call('tasks/list', params);
        if (disposed) return;
        collected.push(...(page.tasks || []));
        cursor = page.nextCursor;
        pages += 1;
      } while (cursor && pages < MAX_PAGES);
      truncated = Boolean(cursor);
      // Newest first: the gateway lists tasks in the order they were submitted.
      tasks = collected.reverse();
      listError.hidden = true;
      renderTable();
    } catch (error) {
      if (disposed) return;
      listError.hidden = false;
      listError.textContent = `Cannot list the tasks: ${errorText(error)}`;
    }
  }

  function renderStatus(taskFigures) {
    const byPriority = taskFigures.queuedByPriority;
    if (byPriority && typeof byPriority === 'object') {
      const counts = PRIORITIES.map((priority) => Number(byPriority[String(priority)] || 0));
      const highest = Math.max(1, ...counts);
      replace(queuePanel, h('div', { class: 'priority-bars' }, PRIORITIES.map((priority, index) => {
        const fill = h('span', { class: 'priority-fill' });
        fill.style.height = `${(counts[index] / highest) * 100}%`;
        return h('div', { class: 'priority-bar', 'data-priority': String(priority), title: `priority ${priority}: ${counts[index]} queued` },
          h('span', { class: 'priority-count' }, formatNumber(counts[index])),
          h('span', { class: 'priority-track' }, fill),
          h('span', { class: 'priority-label' }, String(priority)));
      })));
    } else {
      replace(queuePanel, h('p', {}, h('span', { class: 'big-number' }, formatNumber(taskFigures.queued ?? 0)), ' queued'),
        h('p', { class: 'muted small' }, 'This gateway does not report its queue by priority.'));
    }
    const byState = taskFigures.byState || {};
    replace(statesPanel, TASK_STATES.map((state) => h('button', {
      type: 'button', class: `state-count${stateFilter === state ? ' selected' : ''}`, 'data-state': state,
      title: `Show ${state} tasks`,
      onclick: () => { stateSelect.value = stateFilter === state ? '' : state; stateFilter = stateSelect.value; refreshNow(); },
    }, badge(state), h('span', { class: 'count' }, formatNumber(byState[state] || 0)))));
    const latency = taskFigures.assignmentLatencyMs || {};
    replace(dispatchPanel,
      h('dt', {}, 'Queued'), h('dd', { 'data-test': 'tasks-queued' }, formatNumber(taskFigures.queued ?? 0)),
      h('dt', {}, 'Submit to assignment, p50'), h('dd', {}, formatDuration(latency.p50)),
      h('dt', {}, 'Submit to assignment, p99'), h('dd', {}, formatDuration(latency.p99)),
      taskFigures.deadLettered !== undefined ? [h('dt', {}, 'Dead-lettered'), h('dd', {}, formatNumber(taskFigures.deadLettered))] : null);
  }

  function renderTable() {
    if (disposed) return;
    const shown = toolFilter
      ? tasks.filter((t) => `${t.taskId} ${t.taskType} ${t.assignedAgent ? t.assignedAgent.agentId : ''}`.toLowerCase().includes(toolFilter))
      : tasks;
    table.setRows(shown);
    countsLine.textContent = `${formatNumber(tasks.length)} tasks held${shown.length !== tasks.length ? `, ${formatNumber(shown.length)} shown` : ''}`;
    listNote.textContent = truncated ? `Only the first ${formatNumber(tasks.length)}: choose a state to narrow.` : '';
  }

  function cancelButton(taskId) {
    return confirmButton({
      label: 'Cancel', confirmLabel: 'Confirm', key: `cancel:${taskId}`,
      attributes: { 'data-test': 'task-cancel', 'data-task-id': taskId, class: 'small' },
      onConfirm: () => cancelTask(taskId),
    });
  }

  async function cancelTask(taskId) {
    try {
      const task = await ctx.gw.call('tasks/cancel', { taskId });
      ctx.notify(task.state === 'CANCELLED' ? `Task ${taskId} cancelled` : `Task ${taskId} had already ended ${task.state}`, 'info');
      replaceTask(task);
      if (selectedId === taskId) { selectedTask = task; renderPanel(); }
    } catch (error) {
      ctx.notify(`Cancelling ${taskId} failed: ${errorText(error)}`, 'error');
    }
  }

  function replaceTask(task) {
    const index = tasks.findIndex((candidate) => candidate.taskId === task.taskId);
    if (index >= 0) tasks = [...tasks.slice(0, index), task, ...tasks.slice(index + 1)];
    else tasks = [task, ...tasks];
    renderTable();
  }

  function openTask(taskId) {
    selectedId = taskId;
    selectedTask = tasks.find((t) => t.taskId === taskId) || null;
    selectedError = null;
    table.setSelected(taskId);
    renderPanel();
    loadSelected();
  }

  async function loadSelected() {
    const taskId = selectedId;
    try {
      const task = await ctx.gw.call('tasks/get', { taskId });
      if (disposed || selectedId !== taskId) return;
      selectedTask = task;
      selectedError = null;
    } catch (error) {
      if (disposed || selectedId !== taskId) return;
      selectedError = errorText(error);
    }
    renderPanel();
  }

  function renderPanel() {
    if (!selectedId) { panel.hidden = true; replace(panel); panelSignature = null; return; }
    const signature = JSON.stringify([selectedId, selectedTask, selectedError]);
    if (signature === panelSignature) return;
    panelSignature = signature;
    panel.hidden = false;
    const task = selectedTask;
    const header = h('div', { class: 'panel-header' },
      h('h3', { class: 'mono' }, selectedId), task ? badge(task.state) : null, h('span', { class: 'spacer' }),
      h('button', { class: 'button ghost', type: 'button', 'aria-label': 'Close', 'data-test': 'detail-close',
                    onclick: () => { selectedId = null; table.setSelected(null); renderPanel(); } }, '×'));
    if (!task) {
      replace(panel, header, selectedError ? h('p', { class: 'error-text' }, selectedError) : h('p', { class: 'muted' }, 'Loading…'));
      return;
    }
    const attempts = task.attempts || [];
    replace(panel, header,
      selectedError ? h('p', { class: 'error-text' }, selectedError) : null,
      ctx.may('tasks/cancel') && !FINAL_STATES.has(task.state) ? h('div', { class: 'toolbar' }, cancelButton(task.taskId)) : null,
      task.errorMessage ? h('p', { class: 'error-box' }, task.errorMessage)
        : task.statusMessage ? h('p', { class: 'muted' }, task.statusMessage) : null,
      h('dl', { class: 'fields' },
        [['Tool', task.taskType], ['Priority', String(task.priority)], ['Retries', `${task.retryCount} of ${task.maxRetries}`],
         ['Submitted', formatTime(task.createdAt)], ['Started', formatTime(task.startTime)], ['Ended', formatTime(task.completionTime)],
         ['Duration', typeof task.duration === 'number' ? formatDuration(task.duration * 1000) : '–'],
         ['Agent', task.assignedAgent ? task.assignedAgent.agentId : '–'],
         task.dependsOn ? ['Depends on', task.dependsOn.join(', ')] : null,
         task.idempotencyKey ? ['Idempotency key', task.idempotencyKey] : null,
         task.submittedBy ? ['Submitted by', task.submittedBy] : null]
          .filter(Boolean).map(([name, value]) => [h('dt', {}, name), h('dd', {}, value)])),
      h('h4', {}, `Attempts (${attempts.length})`),
      attempts.length === 0 ? h('p', { class: 'muted' }, 'None yet.') : h('table', { class: 'grid compact', 'data-test': 'task-attempts' },
        h('thead', {}, h('tr', {}, ['#', 'Agent', 'Started', 'Took', 'Outcome'].map((title) => h('th', {}, title)))),
        h('tbody', {}, attempts.map((attempt, index) => h('tr', {},
          h('td', {}, String(index + 1)),
          h('td', { class: 'mono' }, attempt.agentId),
          h('td', {}, formatTime(attempt.startTime)),
          h('td', {}, attempt.endTime ? formatDuration(new Date(attempt.endTime) - new Date(attempt.startTime)) : 'running'),
          h('td', { class: attempt.error ? 'error-text' : '' }, attempt.error || (attempt.endTime ? 'succeeded' : '–')))))),
      task.result !== undefined ? [h('h4', {}, 'Result'), h('pre', { class: 'json' }, prettyJSON(task.result))] : null,
      h('details', { class: 'raw' }, h('summary', {}, 'TaskStatus as JSON'), h('pre', { class: 'json' }, prettyJSON(task))));
  }

  function submitForm() {
    const tool = h('input', { type: 'text', required: true, list: 'task-tools', 'data-test': 'task-tool', placeholder: 'a tool, as tools/list names it', spellcheck: 'false' });
    const argumentsField = h('textarea', { rows: '3', 'data-test': 'task-arguments', spellcheck: 'false', class: 'mono' }, '{}');
    const priority = h('input', { type: 'number', min: '1', max: '10', step: '1', value: '5', class: 'narrow', 'data-test': 'task-priority' });
    const timeout = h('input', { type: 'number', min: '0.001', max: '86400', step: 'any', value: '300', class: 'narrow', 'data-test': 'task-timeout' });
    const error = h('p', { class: 'error-text', hidden: true, 'data-test': 'task-submit-error' });
    const button = h('button', { class: 'button primary', type: 'submit', 'data-test': 'task-submit' }, 'Submit task');
    const form = h('form', {
      class: 'panel submit-form',
      onsubmit: async (event) => {
        event.preventDefault();
        error.hidden = true;
        let taskArguments;
        try {
          taskArguments = argumentsField.value.trim() ? JSON.parse(argumentsField.value) : {};
        } catch (parseError) {
          showError(`The arguments are not JSON: ${parseError.message}`);
          return;
        }
        if (!taskArguments || typeof taskArguments !== 'object' || Array.isArray(taskArguments)) {
          showError('The arguments must be a JSON object, such as {"text": "hello"}.');
          return;
        }
        const params = { tool: tool.value.trim(), arguments: taskArguments, priority: Number(priority.value), timeout: Number(timeout.value) };
        button.disabled = true;
        try {
          const task = await ctx.gw.call('tasks/submit', params);
          ctx.notify(`Task ${task.taskId} submitted (${task.state})`, 'info');
          replaceTask(task);
          openTask(task.taskId);
        } catch (submitError) {
          showError(errorText(submitError));
        } finally {
          button.disabled = false;
        }
      },
    },
    h('h3', {}, 'Submit a task'),
    h('div', { class: 'form-row' },
      h('label', { class: 'grow' }, 'Tool', tool),
      h('label', {}, 'Priority', priority),
      h('label', {}, 'Timeout (s)', timeout)),
    h('div', { class: 'form-row' }, h('label', { class: 'grow' }, 'Arguments (JSON)', argumentsField)),
    h('div', { class: 'form-row' }, button, error),
    h('datalist', { id: 'task-tools' }));
    function showError(message) {
      error.textContent = message;
      error.hidden = false;
    }
    return form;
  }

  async function loadTools() {
    if (!ctx.may('tools/list')) return;
    try {
      const names = [];
      let cursor;
      let pages = 0;
      do {
        const page = await ctx.gw.call('tools/list', cursor ? { cursor } : {});
        names.push(...(page.tools || []).map((tool) => tool.name));
        cursor = page.nextCursor;
        pages += 1;
      } while (cursor && pages < 20);
      const list = root.querySelector('#task-tools');
      if (list && !disposed) replace(list, names.map((name) => h('option', { value: name })));
    } catch {
      // The list only helps typing; the field works without it.
    }
  }

  return () => {
    disposed = true;
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisibility);
    table.destroy();
  };
}
