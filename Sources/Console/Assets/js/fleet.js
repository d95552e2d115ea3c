// The fleet: every agent instance the gateway knows (`agents/list`), a summary per template, and
// a detail panel with the actions an operator takes on an instance or a template.
//
// It stays current without a reload: the gateway publishes every instance's status changes on
// `switchboard.agents.AGENT_ID` (chapter 09, 9.3.7), which are applied as they come; a full
// listing every 5 seconds brings the figures that change without an event (load, latency, CPU).

import { h, replace, badge, confirmButton, errorText, formatBytes, formatDuration, formatPercent, formatTime,
         formatNumber, prettyJSON, throttle, debounce } from './dom.js';
import { VirtualTable } from './virtual-list.js';

const AGENT_STATES = ['STARTING', 'IDLE', 'BUSY', 'OVERLOADED', 'MAINTENANCE', 'ERROR', 'OFFLINE'];
const RUNNING_STATES = new Set(['IDLE', 'BUSY', 'OVERLOADED']);
const PROBLEM_STATES = new Set(['STARTING', 'ERROR']);
const FULL_REFRESH_MS = 5000;
const EVENT_RENDER_MS = 500;
const TEMPLATES_SHOWN = 100;
const PROBLEMS_SHOWN = 5;
const INSTANCES_LISTED = 200;
// search#2 before search#10.
const byName = new Intl.Collator(undefined, { numeric: true });

export function mount(root, ctx) {
  const agents = new Map();           // agentId -> AgentStatus
  let loaded = false;
  let loading = false;
  let loadAgain = false;
  let lastLoaded = null;
  let filterTerms = [];
  let selection = null;               // {kind: 'agent', id} | {kind: 'template', name}
  let templatesSignature = null;
  let panelSignature = null;
  let rawOpen = false;
  const scaleDrafts = new Map();      // template -> the instance count being typed
  let disposed = false;

  const filter = h('input', {
    type: 'search', class: 'filter', placeholder: 'Filter: agent, template, state, version…', 'data-test': 'fleet-filter',
    'aria-label': 'Filter agents',
    oninput: debounce(() => { filterTerms = terms(filter.value); render(); }, 120),
  });
  const summaryLine = h('span', { class: 'muted', 'data-test': 'fleet-count' }, 'Loading agents…');
  const errorLine = h('p', { class: 'error-text', hidden: true });
  const templatesBody = h('div', { class: 'templates', 'data-test': 'templates' });
  const tableHolder = h('div', { class: 'table-holder' });
  const panel = h('aside', { class: 'detail-panel', hidden: true, 'data-test': 'detail-panel', 'aria-label': 'Details' });

  replace(root,
    h('div', { class: 'view-header' },
      h('h2', {}, 'Fleet'), summaryLine, h('span', { class: 'spacer' }), filter),
    errorLine,
    h('section', { class: 'panel templates-panel' }, h('h3', {}, 'Templates'), templatesBody),
    h('section', { class: 'panel table-panel' }, tableHolder),
    panel);

  const table = new VirtualTable(tableHolder, {
    label: 'Agent instances',
    rowHeight: 30,
    rowKey: (agent) => agent.agentId,
    onRowClick: (agent) => select({ kind: 'agent', id: agent.agentId }),
    rowAttributes: (agent) => ({ 'data-test': 'agent-row', 'data-agent-id': agent.agentId, class: agent.currentState === 'OFFLINE' ? 'dim' : '' }),
    emptyText: 'No agent instance matches.',
    columns: [
      { key: 'agentId', title: 'Agent', width: 'minmax(9rem, 1.6fr)', sort: (a) => a.agentId,
        render: (a) => h('span', { class: 'mono', title: a.agentId }, a.agentId) },
      { key: 'template', title: 'Template', width: 'minmax(6rem, 1fr)', sort: (a) => a.template },
      { key: 'kind', title: 'Kind', width: 82, sort: (a) => a.kind },
      { key: 'state', title: 'State', width: 120, sort: (a) => AGENT_STATES.indexOf(a.currentState),
        render: (a) => h('span', { 'data-test': 'agent-state', 'data-state': a.currentState },
          badge(a.currentState), a.draining ? h('span', { class: 'tag' }, 'draining') : null) },
      { key: 'health', title: 'Health', width: 92, sort: (a) => a.healthStatus, render: (a) => badge(a.healthStatus) },
      { key: 'load', title: 'Load', width: 92, sort: (a) => (a.inFlight || 0) / (a.maxConcurrency || 1), render: loadCell },
      { key: 'latency', title: 'Latency', width: 84, className: 'number',
        sort: (a) => (calls(a) ? metric(a, 'averageResponseTime') : undefined),
        render: (a) => (calls(a) ? h('span', { title: 'average over every call' }, formatDuration(metric(a, 'averageResponseTime'))) : '–') },
      { key: 'success', title: 'Success', width: 70, className: 'number',
        sort: (a) => metric(a, 'successRate'), render: (a) => formatPercent(metric(a, 'successRate')) },
      { key: 'version', title: 'Version', width: 'minmax(8rem, 0.8fr)', sort: (a) => a.version, render: versionCell },
      { key: 'circuit', title: 'Circuit', width: 84, sort: (a) => (a.circuit ? a.circuit.state : ''),
        render: (a) => (a.circuit ? badge(a.circuit.state) : '–') },
      { key: 'cpu', title: 'CPU', width: 62, className: 'number', sort: (a) => usage(a, 'cpu'),
        render: (a) => (usage(a, 'cpu') === undefined ? '–' : `${usage(a, 'cpu').toFixed(1)} %`) },
      { key: 'memory', title: 'Memory', width: 78, className: 'number', sort: (a) => usage(a, 'memory'),
        render: (a) => (usage(a, 'memory') ? formatBytes(usage(a, 'memory')) : '–') },
    ],
  });

  const renderSoon = throttle(() => render(), EVENT_RENDER_MS);
  const stopEvents = ctx.may('events/subscribe:switchboard.agents.*')
    ? ctx.gw.subscribe('switchboard.agents.*', (event) => {
      // The topics are not reserved: only the gateway's own events say what an agent is.
      if (event.publisher !== 'gateway' || !event.data || event.data.eventType !== 'agent_status_changed') return;
      const status = event.data.data;
      if (!status || typeof status.agentId !== 'string' || typeof status.currentState !== 'string') return;
      apply(status);
      // A listing under way may have been taken before this change: it is applied again after.
      if (loading) changedWhileLoading.set(status.agentId, status);
      renderSoon();
    })
    : () => {};
  let timer = null;
  const changedWhileLoading = new Map();
  load();

  function apply(status) {
    if (status.removed) agents.delete(status.agentId);
    else agents.set(status.agentId, status);
  }

  async function load() {
    if (loading) { loadAgain = true; return; }
    loading = true;
    clearTimeout(timer);
    changedWhileLoading.clear();
    const started = performance.now();
    try {
      const result = await ctx.gw.call('agents/list');
      if (disposed) return;
      window.switchboardConsole?.mark('fleetListed');
      agents.clear();
      for (const agent of result.agents || []) agents.set(agent.agentId, agent);
      for (const status of changedWhileLoading.values()) apply(status);
      loaded = true;
      lastLoaded = new Date();
      errorLine.hidden = true;
      render();
    } catch (error) {
      if (disposed) return;
      errorLine.hidden = false;
      errorLine.textContent = `Cannot list the agents: ${errorText(error)}`;
      if (!loaded) summaryLine.textContent = 'Agents could not be listed.';
    } finally {
      loading = false;
      if (loadAgain && !disposed) { loadAgain = false; load(); }
      // A large fleet costs the gateway time to list: never spend more than a tenth of it on this
      // page's refreshes (status changes come as events meanwhile).
      else if (!disposed) timer = setTimeout(tick, Math.max(FULL_REFRESH_MS, (performance.now() - started) * 10));
    }
  }

  function tick() {
    if (document.hidden) timer = setTimeout(tick, FULL_REFRESH_MS);
    else load();
  }

  function render() {
    if (disposed) return;
    const all = [...agents.values()].sort((a, b) => byName.compare(a.agentId, b.agentId));
    const shown = filterTerms.length ? all.filter((agent) => matches(agent, filterTerms)) : all;
    table.setRows(shown);
    // For the first-paint measurement: the frame after the first rows went in, once painted.
    if (shown.length > 0 && window.switchboardConsole && !('fleetFirstRows' in window.switchboardConsole.marks)) {
      requestAnimationFrame(() => setTimeout(() => window.switchboardConsole.mark('fleetFirstRows'), 0));
    }
    const templates = summarize(all);
    summaryLine.textContent = loaded
      ? `${formatNumber(all.length)} instances · ${formatNumber(templates.size)} templates`
        + (shown.length !== all.length ? ` · ${formatNumber(shown.length)} shown` : '')
        + (lastLoaded ? ` · listed ${formatTime(lastLoaded.toISOString())}` : '')
      : 'Loading agents…';
    renderTemplates(templates);
    renderPanel(templates);
  }

  function renderTemplates(templates) {
    const names = [...templates.keys()].sort();
    const shownNames = filterTerms.length
      ? names.filter((name) => templates.get(name).instances.some((agent) => matches(agent, filterTerms)))
      : names;
    // Redrawn only when what it shows changed, so that a click on it is never lost to a redraw.
    const signature = JSON.stringify([loaded, selection, shownNames.length,
      shownNames.slice(0, TEMPLATES_SHOWN).map((name) => templateSignature(templates.get(name)))]);
    if (signature === templatesSignature) return;
    templatesSignature = signature;
    if (names.length === 0) {
      replace(templatesBody, h('p', { class: 'muted' }, loaded ? 'No agent has joined yet.' : 'Loading…'));
      return;
    }
    const rows = shownNames.slice(0, TEMPLATES_SHOWN).map((name) => templateRow(templates.get(name)));
    replace(templatesBody, h('table', { class: 'grid compact' },
      h('thead', {}, h('tr', {}, ['Template', 'Instances by state', 'Healthy', 'Versions', 'Starting or failing']
        .map((title) => h('th', { class: title === 'Healthy' ? 'number' : undefined }, title)))),
      h('tbody', {}, rows)),
    shownNames.length > TEMPLATES_SHOWN
      ? h('p', { class: 'muted' }, `${formatNumber(shownNames.length - TEMPLATES_SHOWN)} more templates: narrow the filter to see them.`)
      : null);
  }

  function templateRow(template) {
    const problems = template.instances.filter((agent) => PROBLEM_STATES.has(agent.currentState));
    const selected = selection && selection.kind === 'template' && selection.name === template.name;
    return h('tr', { 'data-test': 'template-row', 'data-template': template.name, class: `clickable${selected ? ' selected' : ''}`,
                     onclick: () => select({ kind: 'template', name: template.name }) },
      h('td', {}, h('a', { href: '#/fleet', class: 'link', onclick: (event) => event.preventDefault() }, template.name)),
      h('td', {}, AGENT_STATES.filter((state) => template.byState[state])
        .map((state) => h('span', { class: 'count-badge' }, badge(state), h('span', { class: 'count' }, String(template.byState[state]))))),
      h('td', { class: 'number' }, `${template.healthy} / ${template.instances.length}`),
      h('td', {}, versionsSummary(template)),
      h('td', { class: 'problems' }, problems.length === 0 ? h('span', { class: 'muted' }, '–') : [
        problems.slice(0, PROBLEMS_SHOWN).map((agent) => h('div', { class: 'problem' },
          h('span', { class: 'mono' }, agent.agentId), ' ', badge(agent.currentState),
          agent.error ? h('span', { class: 'error-text' }, ` ${agent.error}`) : null)),
        problems.length > PROBLEMS_SHOWN ? h('div', { class: 'muted' }, `and ${problems.length - PROBLEMS_SHOWN} more`) : null,
      ]));
  }

  function select(next) {
    selection = next;
    table.setSelected(next && next.kind === 'agent' ? next.id : null);
    render();
  }

  function renderPanel(templates) {
    if (!selection) { panel.hidden = true; replace(panel); panelSignature = null; return; }
    // Redrawn only when what it shows changed, so that a field being typed in keeps its text.
    const subject = selection.kind === 'agent' ? agents.get(selection.id) : templates.get(selection.name);
    const signature = JSON.stringify([selection, selection.kind === 'agent' ? subject
      : subject && [templateSignature(subject), subject.instances.slice(0, INSTANCES_LISTED).map((agent) => [agent.agentId, agent.currentState, agent.error])],
      subject && selection.kind === 'agent' ? templateSignature(templates.get(subject.template)) : null]);
    if (signature === panelSignature) return;
    panelSignature = signature;
    panel.hidden = false;
    if (selection.kind === 'agent') {
      const agent = agents.get(selection.id);
      if (!agent) {
        replace(panel, panelHeader(selection.id, null), h('p', { class: 'muted' }, 'This instance has left the registry.'));
        return;
      }
      replace(panel, panelHeader(agent.agentId, badge(agent.currentState)), agentDetail(agent),
        templateSection(templates.get(agent.template) || summarize([agent]).get(agent.template)),
        h('details', { class: 'raw', open: rawOpen, ontoggle: (event) => { rawOpen = event.target.open; } },
          h('summary', {}, 'AgentStatus as JSON'), h('pre', { class: 'json' }, prettyJSON(agent))));
    } else {
      const template = templates.get(selection.name);
      if (!template) {
        replace(panel, panelHeader(selection.name, null), h('p', { class: 'muted' }, 'No instance of this template is left.'));
        return;
      }
      replace(panel, panelHeader(`Template ${template.name}`, null), templateSection(template),
        h('h4', {}, 'Instances'),
        template.instances.length > INSTANCES_LISTED ? h('p', { class: 'muted' }, `The first ${INSTANCES_LISTED} of ${formatNumber(template.instances.length)}; filter the table for the others.`) : null,
        h('ul', { class: 'plain' }, template.instances.slice(0, INSTANCES_LISTED).map((agent) => h('li', {},
          h('a', { href: '#/fleet', class: 'link mono', onclick: (event) => { event.preventDefault(); select({ kind: 'agent', id: agent.agentId }); } }, agent.agentId),
          ' ', badge(agent.currentState), agent.error ? h('span', { class: 'error-text' }, ` ${agent.error}`) : null))));
    }
  }

  function panelHeader(title, stateBadge) {
    return h('div', { class: 'panel-header' },
      h('h3', { class: 'mono' }, title), stateBadge, h('span', { class: 'spacer' }),
      h('button', { class: 'button ghost', type: 'button', 'aria-label': 'Close', 'data-test': 'detail-close', onclick: () => select(null) }, '×'));
  }

  function agentDetail(agent) {
    const actions = [];
    const draining = agent.draining === true;
    if (ctx.may('agents/drain') && agent.currentState !== 'OFFLINE' && !draining) {
      actions.push(confirmButton({
        label: 'Drain', confirmLabel: 'Confirm drain', key: `drain:${agent.agentId}`,
        attributes: { 'data-test': 'agent-drain', title: 'Finish the calls in flight, take no new ones, then stop' },
        onConfirm: () => act(`Draining ${agent.agentId}`, 'agents/drain', { agentId: agent.agentId }, true),
      }));
    }
    if (ctx.may('agents/setState') && RUNNING_STATES.has(agent.currentState) && !draining) {
      actions.push(h('button', {
        class: 'button', type: 'button', 'data-test': 'agent-maintenance', title: 'Take out of rotation; calls in flight finish',
        onclick: () => act(`${agent.agentId} is in maintenance`, 'agents/setState', { agentId: agent.agentId, state: 'MAINTENANCE' }, true),
      }, 'Maintenance'));
    }
    if (ctx.may('agents/setState') && agent.currentState === 'MAINTENANCE') {
      actions.push(h('button', {
        class: 'button primary', type: 'button', 'data-test': 'agent-resume',
        onclick: () => act(`${agent.agentId} is back in service`, 'agents/setState', { agentId: agent.agentId, state: 'IDLE' }, true),
      }, 'Back to service'));
    }
    const metrics = agent.performanceMetrics || {};
    const usageFigures = agent.resourceUsage || {};
    const fields = [
      ['Template', agent.template],
      ['Kind', `${agent.kind || '–'}${agent.agentType && agent.agentType !== 'mcp' ? ` (${agent.agentType})` : ''}`],
      ['Health', badge(agent.healthStatus)],
      ['Version', versionCell(agent)],
      ['Load', `${agent.inFlight ?? 0} of ${agent.maxConcurrency ?? '–'} calls in flight`],
      ['Calls', `${formatNumber(metrics.tasksCompleted)} answered, ${formatNumber(metrics.tasksFailed)} failed`],
      ['Average latency', calls(agent) ? formatDuration(metrics.averageResponseTime) : 'no call yet'],
      ['Success rate', formatPercent(metrics.successRate)],
      ['Circuit', agent.circuit ? [badge(agent.circuit.state),
        agent.circuit.consecutiveFailures ? ` ${agent.circuit.consecutiveFailures} failures in a row` : '',
        agent.circuit.retryInSeconds !== undefined ? ` · retry in ${agent.circuit.retryInSeconds} s` : ''] : '–'],
      ['CPU', usageFigures.cpu === undefined ? '–' : `${Number(usageFigures.cpu).toFixed(1)} % of a core`],
      ['Memory', usageFigures.memory ? formatBytes(usageFigures.memory) : '–'],
      ['Registered', formatTime(agent.registeredAt)],
      ['Last heartbeat', formatTime(agent.lastHeartbeat)],
      agent.processId ? ['Process', String(agent.processId)] : null,
      agent.capabilities && agent.capabilities.length ? ['Capabilities', agent.capabilities.join(', ')] : null,
      agent.tools && agent.tools.length ? ['Tools', agent.tools.join(', ')] : null,
      agent.tenants ? ['Tenants', agent.tenants.join(', ')] : null,
    ].filter(Boolean);
    return [
      agent.error ? h('p', { class: 'error-box', 'data-test': 'agent-error' }, agent.error) : null,
      actions.length ? h('div', { class: 'toolbar' }, actions) : null,
      h('dl', { class: 'fields' }, fields.map(([name, value]) => [h('dt', {}, name), h('dd', {}, value)])),
    ];
  }

  function templateSection(template) {
    if (!template) return null;
    const controls = [];
    if (ctx.may('agents/scale') && template.instances.some((agent) => agent.kind === 'spawned')) {
      const running = template.instances.filter((agent) => agent.currentState !== 'OFFLINE').length;
      const count = h('input', {
        type: 'number', min: '0', max: '1000', step: '1', class: 'narrow',
        value: scaleDrafts.has(template.name) ? scaleDrafts.get(template.name) : String(running),
        'data-test': 'template-scale-count', 'aria-label': `Instances of ${template.name}`,
        oninput: () => scaleDrafts.set(template.name, count.value),
      });
      controls.push(h('form', {
        class: 'inline-form',
        onsubmit: (event) => {
          event.preventDefault();
          const instances = Number(count.value);
          if (!Number.isInteger(instances) || instances < 0 || instances > 1000) {
            ctx.notify('Instances must be a whole number from 0 to 1000.', 'error');
            return;
          }
          scaleDrafts.delete(template.name);
          act(`Scaling ${template.name} to ${instances}`, 'agents/scale', { template: template.name, instances }, false);
        },
      }, h('label', {}, 'Instances ', count), h('button', { class: 'button', type: 'submit', 'data-test': 'template-scale' }, 'Scale')));
    }
    if (ctx.may('agents/rollback')) {
      controls.push(confirmButton({
        label: 'Roll back', confirmLabel: 'Confirm roll back', key: `rollback:${template.name}`,
        attributes: { 'data-test': 'template-rollback', title: 'Make the previous version active again and drain this one' },
        onConfirm: () => act(`Rolling ${template.name} back`, 'agents/rollback', { template: template.name }, false),
      }));
    }
    if (ctx.may('agents/activate')) {
      for (const version of template.awaiting) {
        controls.push(h('button', {
          class: 'button primary', type: 'button', 'data-test': 'template-activate', 'data-version': version,
          onclick: () => act(`Version ${version} of ${template.name} is active`, 'agents/activate', { template: template.name, version }, false),
        }, `Activate version ${version}`));
      }
    }
    return h('section', { class: 'template-section' },
      h('h4', {}, `Template ${template.name}`),
      h('p', {}, versionsSummary(template)),
      h('p', { class: 'muted' }, `${template.healthy} of ${template.instances.length} instances healthy`),
      controls.length ? h('div', { class: 'toolbar wrap' }, controls) : null);
  }

  async function act(success, method, params, returnsStatus) {
    try {
      const result = await ctx.gw.call(method, params);
      if (returnsStatus && result && result.agentId) agents.set(result.agentId, result);
      let message = success;
      if (method === 'agents/rollback' && result) message = `${params.template} rolled back from ${result.from} to ${result.activeVersion}`;
      if (method === 'agents/scale' && result) message = `${result.template}: ${result.instancesBefore} → ${result.instances} instances`;
      ctx.notify(message, 'info');
      render();
      load();
    } catch (error) {
      ctx.notify(`${method} failed: ${errorText(error)}`, 'error');
    }
  }

  return () => {
    disposed = true;
    clearTimeout(timer);
    stopEvents();
    table.destroy();
  };
}

function templateSignature(template) {
  if (!template) return null;
  return [template.name, template.byState, template.healthy, [...template.versions], [...template.activeVersions], [...template.awaiting],
    template.instances.filter((agent) => PROBLEM_STATES.has(agent.currentState)).slice(0, PROBLEMS_SHOWN).map((agent) => [agent.agentId, agent.currentState, agent.error]),
    template.instances.some((agent) => agent.kind === 'spawned')];
}

function calls(agent) {
  const figures = agent.performanceMetrics || {};
  return (figures.tasksCompleted || 0) + (figures.tasksFailed || 0);
}

function metric(agent, name) {
  return agent.performanceMetrics ? agent.performanceMetrics[name] : undefined;
}

function usage(agent, name) {
  const value = agent.resourceUsage ? agent.resourceUsage[name] : undefined;
  return typeof value === 'number' ? value : undefined;
}

function loadCell(agent) {
  const inFlight = agent.inFlight || 0;
  const maximum = agent.maxConcurrency || 1;
  const bar = h('span', { class: 'bar-fill' });
  bar.style.width = `${Math.min(100, (inFlight / maximum) * 100)}%`;
  return h('span', { class: 'load', title: `${inFlight} of ${maximum} calls in flight` },
    h('span', { class: 'bar' }, bar), h('span', { class: 'load-text' }, `${inFlight}/${maximum}`));
}

function versionCell(agent) {
  return h('span', { class: 'version' },
    h('span', { class: 'mono' }, agent.version ?? '–'),
    agent.awaitingActivation ? h('span', { class: 'tag warn' }, 'awaiting activation')
      : agent.activeVersion ? h('span', { class: 'tag ok' }, 'active') : h('span', { class: 'tag' }, 'inactive'));
}

function versionsSummary(template) {
  return [...template.versions.keys()].sort().map((version) => h('span', { class: 'version-chip' },
    h('span', { class: 'mono version-name' }, version),
    h('span', { class: 'muted', title: 'instances of this version' }, `×${template.versions.get(version)}`),
    template.activeVersions.has(version) ? h('span', { class: 'tag ok' }, 'active') : null,
    template.awaiting.has(version) ? h('span', { class: 'tag warn' }, 'awaiting activation') : null));
}

/// Per template: its instances, how many in each state, how many healthy, its versions.
function summarize(agents) {
  const templates = new Map();
  for (const agent of agents) {
    let template = templates.get(agent.template);
    if (!template) {
      template = { name: agent.template, instances: [], byState: {}, healthy: 0, versions: new Map(), activeVersions: new Set(), awaiting: new Set() };
      templates.set(agent.template, template);
    }
    template.instances.push(agent);
    template.byState[agent.currentState] = (template.byState[agent.currentState] || 0) + 1;
    if (agent.healthStatus === 'HEALTHY' && agent.currentState !== 'OFFLINE' && agent.currentState !== 'ERROR') template.healthy += 1;
    const version = agent.version ?? '–';
    template.versions.set(version, (template.versions.get(version) || 0) + 1);
    if (agent.activeVersion) template.activeVersions.add(version);
    if (agent.awaitingActivation) template.awaiting.add(version);
  }
  return templates;
}

function terms(text) {
  return text.toLowerCase().split(/\s+/).filter(Boolean);
}

function matches(agent, searchTerms) {
  const haystack = `${agent.agentId} ${agent.template} ${agent.kind} ${agent.currentState} ${agent.healthStatus} ${agent.version} ${agent.draining ? 'draining' : ''} ${(agent.capabilities || []).join(' ')}`.toLowerCase();
  return searchTerms.every((term) => haystack.includes(term));
}
