// Charts of the gateway's history (`metrics/history`, chapter 15): throughput, latency
// percentiles and error rate by minute, hour or day, for the whole gateway, one template, or one
// tool of either. Drawn as SVG by the small chart below: axes, ticks, gaps where nothing was
// recorded, and a readout that follows the pointer.

import { h, replace, errorText, formatNumber, formatTime } from './dom.js';

const REFRESH_MS = 10000;
const TEMPLATES_REFRESH_MS = 60000;
const PERIODS = {
  minute: { label: 'By minute (last hour)', bucketMs: 60000 },
  hour: { label: 'By hour (last day)', bucketMs: 3600000 },
  day: { label: 'By day (last 30 days)', bucketMs: 86400000 },
};
const CHART_HEIGHT = 170;
const MARGIN = { top: 12, right: 16, bottom: 26, left: 58 };

export function mount(root, ctx) {
  let disposed = false;
  // Whose history: '' is the whole gateway, `template:NAME` a template's sum, `agent:ID` one
  // instance. The sums count every tenant's calls: a principal bound to a tenant reads its
  // instances' own histories (chapter 15, 15.4.1).
  const spansTenants = !ctx.principal.accessControl
    || (ctx.principal.roles || []).some((role) => role === 'admin' || role === 'operator');
  let subject = '';
  let tool = '';
  let period = 'minute';
  let history = null;
  let knownTools = new Set();
  let loadError = null;
  let refreshTimer = null;
  let templatesTimer = null;

  const subjectSelect = h('select', { 'data-test': 'chart-subject', 'aria-label': 'Subject',
    onchange: () => { subject = subjectSelect.value; tool = ''; knownTools = new Set(); load(); } },
  spansTenants ? h('option', { value: '' }, 'Whole gateway') : null);
  const toolSelect = h('select', { 'data-test': 'chart-tool', 'aria-label': 'Tool',
    onchange: () => { tool = toolSelect.value; load(); } },
  h('option', { value: '' }, 'Every tool'));
  const periodSelect = h('select', { 'data-test': 'chart-period', 'aria-label': 'Period',
    onchange: () => { period = periodSelect.value; load(); } },
  Object.entries(PERIODS).map(([value, { label }]) => h('option', { value }, label)));
  const totals = h('span', { class: 'muted', 'data-test': 'chart-totals' });
  const errorLine = h('p', { class: 'error-text', hidden: true, 'data-test': 'chart-error' });
  const throughput = chartPanel('Throughput', 'calls per minute', 'chart-throughput');
  const latency = chartPanel('Latency', 'p50, p95 and p99', 'chart-latency');
  const errorRate = chartPanel('Error rate', 'share of calls that failed', 'chart-errors');

  replace(root,
    h('div', { class: 'view-header' }, h('h2', {}, 'Charts'), totals, h('span', { class: 'spacer' }),
      h('div', { class: 'toolbar' }, subjectSelect, toolSelect, periodSelect)),
    errorLine,
    h('div', { class: 'charts' }, throughput.element, latency.element, errorRate.element));

  const resizeObserver = new ResizeObserver(() => drawAll());
  resizeObserver.observe(throughput.body);

  if (!ctx.may('metrics/history')) {
    errorLine.hidden = false;
    errorLine.textContent = 'This principal may not read the history (metrics/history).';
  } else {
    loadTemplates().then(() => { if (!disposed) load(); });
    templatesTimer = setInterval(() => { if (!document.hidden) loadTemplates(); }, TEMPLATES_REFRESH_MS);
  }

  async function loadTemplates() {
    if (!ctx.may('agents/list')) return;
    try {
      const result = await ctx.gw.call('agents/list');
      if (disposed) return;
      const agents = result.agents || [];
      const values = spansTenants
        ? [...new Set(agents.map((agent) => agent.template))].sort().map((name) => [`template:${name}`, `Template ${name}`])
        : agents.map((agent) => agent.agentId).sort().map((id) => [`agent:${id}`, `Instance ${id}`]);
      if (!spansTenants && !subject && values.length) subject = values[0][0];
      if (subject && !values.some(([value]) => value === subject)) values.push([subject, subject.replace(/^[a-z]+:/, '')]);
      replace(subjectSelect, spansTenants ? h('option', { value: '' }, 'Whole gateway') : null,
        values.map(([value, label]) => h('option', { value }, label)));
      subjectSelect.value = subject;
    } catch {
      // Without the list the gateway's own history still shows.
    }
  }

  async function load() {
    clearTimeout(refreshTimer);
    const params = currentParams();
    const asked = JSON.stringify(params);
    try {
      const result = await ctx.gw.call('metrics/history', params);
      if (disposed || asked !== JSON.stringify(currentParams())) return;
      history = result;
      loadError = null;
      for (const point of result.points || []) for (const name of Object.keys(point.tools || {})) knownTools.add(name);
      renderTools();
    } catch (error) {
      if (disposed || asked !== JSON.stringify(currentParams())) return;
      history = null;
      loadError = `metrics/history: ${errorText(error)}`;
    }
    errorLine.hidden = !loadError;
    errorLine.textContent = loadError || '';
    drawAll();
    if (!disposed) refreshTimer = setTimeout(tick, REFRESH_MS);
  }

  // While the page is hidden nothing is asked; the figures catch up at the next tick after.
  function tick() {
    if (document.hidden) refreshTimer = setTimeout(tick, REFRESH_MS);
    else load();
  }

  function currentParams() {
    const params = { period };
    if (subject.startsWith('template:')) params.template = subject.slice('template:'.length);
    else if (subject.startsWith('agent:')) params.agentId = subject.slice('agent:'.length);
    if (tool) params.tool = tool;
    return params;
  }

  function renderTools() {
    const names = [...knownTools].sort();
    if (tool && !names.includes(tool)) names.push(tool);
    const signature = names.join('\n');
    if (toolSelect.dataset.signature === signature) return;
    toolSelect.dataset.signature = signature;
    replace(toolSelect, h('option', { value: '' }, 'Every tool'), names.map((name) => h('option', { value: name }, `Tool ${name}`)));
    toolSelect.value = tool;
  }

  function drawAll() {
    if (disposed) return;
    if (!history) {
      for (const chart of [throughput, latency, errorRate]) replace(chart.body, h('p', { class: 'muted chart-empty' }, loadError ? 'No data.' : 'Loading…'));
      totals.textContent = '';
      return;
    }
    const bucketMs = PERIODS[history.period] ? PERIODS[history.period].bucketMs : PERIODS[period].bucketMs;
    const from = Date.parse(history.from);
    const to = Date.parse(history.to);
    const byStart = new Map((history.points || []).map((point) => [Math.floor(Date.parse(point.start) / bucketMs) * bucketMs, point]));
    const times = [];
    for (let time = Math.floor(from / bucketMs) * bucketMs; time <= to && times.length < 1500; time += bucketMs) times.push(time);
    if (times.length === 0) times.push(Math.floor((Number.isNaN(to) ? Date.now() : to) / bucketMs) * bucketMs);
    const points = times.map((time) => byStart.get(time) || null);
    const minutesPerBucket = bucketMs / 60000;

    let calls = 0;
    let errors = 0;
    for (const point of points) if (point) { calls += point.calls || 0; errors += point.errors || 0; }
    totals.textContent = `${formatNumber(calls)} calls, ${formatNumber(errors)} failed, from ${formatTime(history.from)} to ${formatTime(history.to)}`;

    drawChart(throughput, {
      times, bucketMs,
      // A bucket without a point had no call: throughput is zero there, not unknown.
      series: [{ name: 'calls/min', className: 'series-calls', area: true,
                 values: points.map((point) => (point ? (point.calls || 0) / minutesPerBucket : 0)) }],
      format: (value) => formatNumber(value, value < 10 ? 2 : 0),
    });
    const latencyOf = (key) => points.map((point) => (point && point.latency && typeof point.latency[key] === 'number' ? point.latency[key] * 1000 : null));
    drawChart(latency, {
      times, bucketMs,
      series: [
        { name: 'p50', className: 'series-p50', values: latencyOf('p50') },
        { name: 'p95', className: 'series-p95', values: latencyOf('p95') },
        { name: 'p99', className: 'series-p99', values: latencyOf('p99') },
      ],
      format: formatMilliseconds,
    });
    drawChart(errorRate, {
      times, bucketMs,
      series: [{ name: 'errors', className: 'series-errors', area: true,
                 values: points.map((point) => (point && point.calls ? (point.errorRate ?? point.errors / point.calls) * 100 : null)) }],
      format: (value) => `${formatNumber(value, 1)} %`,
      minimumTop: 1,
    });
  }

  return () => {
    disposed = true;
    clearTimeout(refreshTimer);
    clearInterval(templatesTimer);
    resizeObserver.disconnect();
  };
}

function chartPanel(title, subtitle, testHook) {
  const body = h('div', { class: 'chart-body' });
  const legend = h('div', { class: 'chart-legend' });
  const element = h('figure', { class: 'panel chart', 'data-test': testHook },
    h('figcaption', {}, h('h3', {}, title), h('span', { class: 'muted small' }, subtitle), h('span', { class: 'spacer' }), legend),
    body);
  return { element, body, legend };
}

function formatMilliseconds(value) {
  if (value === null || value === undefined) return '–';
  if (value === 0) return '0 ms';
  if (value < 1) return `${formatNumber(value, 2)} ms`;
  if (value < 1000) return `${formatNumber(value, value < 10 ? 1 : 0)} ms`;
  return `${formatNumber(value / 1000, 2)} s`;
}

/// Draws one chart: series of values (null: nothing recorded) at evenly spaced times.
function drawChart(chart, { times, bucketMs, series, format, minimumTop = 0 }) {
  const width = Math.max(320, chart.body.clientWidth || 640);
  const height = CHART_HEIGHT;
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = height - MARGIN.top - MARGIN.bottom;
  const first = times[0];
  const last = times[times.length - 1];
  const span = Math.max(1, last - first);
  const x = (time) => MARGIN.left + ((time - first) / span) * plotWidth;

  let highest = minimumTop;
  for (const line of series) for (const value of line.values) if (value !== null && value > highest) highest = value;
  const yTicks = niceTicks(highest > 0 ? highest : 1, 5);
  const top = yTicks[yTicks.length - 1];
  const y = (value) => MARGIN.top + plotHeight - (value / top) * plotHeight;

  const grid = yTicks.map((tick) => h('g', { class: 'tick' },
    h('line', { class: 'grid-line', x1: MARGIN.left, x2: width - MARGIN.right, y1: y(tick), y2: y(tick) }),
    h('text', { class: 'axis-label', x: MARGIN.left - 6, y: y(tick) + 4, 'text-anchor': 'end' }, format(tick))));
  const xTicks = timeTicks(first, last, Math.max(2, Math.floor(plotWidth / 90)));
  const xAxis = xTicks.ticks.map((time) => h('g', { class: 'tick' },
    h('line', { class: 'axis-tick', x1: x(time), x2: x(time), y1: MARGIN.top + plotHeight, y2: MARGIN.top + plotHeight + 4 }),
    h('text', { class: 'axis-label', x: x(time), y: height - 8, 'text-anchor': 'middle' }, xTicks.label(time))));

  const shapes = [];
  series.forEach((line) => {
    const segments = [];
    let current = [];
    line.values.forEach((value, index) => {
      if (value === null || value === undefined) {
        if (current.length) segments.push(current);
        current = [];
      } else current.push([x(times[index]), y(value)]);
    });
    if (current.length) segments.push(current);
    const d = segments.filter((segment) => segment.length > 1)
      .map((segment) => segment.map(([px, py], index) => `${index === 0 ? 'M' : 'L'}${px.toFixed(1)},${py.toFixed(1)}`).join('')).join('');
    if (line.area && d) {
      const areas = segments.filter((segment) => segment.length > 1).map((segment) =>
        `M${segment[0][0].toFixed(1)},${y(0).toFixed(1)}${segment.map(([px, py]) => `L${px.toFixed(1)},${py.toFixed(1)}`).join('')}L${segment[segment.length - 1][0].toFixed(1)},${y(0).toFixed(1)}Z`).join('');
      shapes.push(h('path', { class: `area ${line.className}`, d: areas }));
    }
    if (d) shapes.push(h('path', { class: `series ${line.className}`, d, 'data-series': line.name }));
    // A value with no neighbour would be a line of no length: it is drawn as a dot.
    for (const segment of segments) {
      if (segment.length === 1) shapes.push(h('circle', { class: `dot ${line.className}`, cx: segment[0][0], cy: segment[0][1], r: 3, 'data-series': line.name }));
    }
  });

  const cursor = h('line', { class: 'cursor', x1: 0, x2: 0, y1: MARGIN.top, y2: MARGIN.top + plotHeight, visibility: 'hidden' });
  const overlay = h('rect', { class: 'overlay', x: MARGIN.left, y: MARGIN.top, width: plotWidth, height: plotHeight });
  const svg = h('svg', { class: 'chart-svg', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img' },
    grid,
    h('line', { class: 'axis', x1: MARGIN.left, x2: width - MARGIN.right, y1: MARGIN.top + plotHeight, y2: MARGIN.top + plotHeight }),
    xAxis, shapes, cursor, overlay);
  const readout = h('div', { class: 'chart-readout', hidden: true, 'data-test': 'chart-readout' });
  const move = (event) => {
    const bounds = svg.getBoundingClientRect();
    const px = event.clientX - bounds.left;
    const index = Math.max(0, Math.min(times.length - 1, Math.round(((px - MARGIN.left) / plotWidth) * (times.length - 1))));
    const cx = x(times[index]);
    cursor.setAttribute('x1', cx);
    cursor.setAttribute('x2', cx);
    cursor.setAttribute('visibility', 'visible');
    replace(readout,
      h('div', { class: 'readout-time' }, bucketLabel(times[index], bucketMs)),
      series.map((line) => h('div', {}, h('span', { class: `swatch ${line.className}` }), `${line.name}: `,
        h('strong', {}, line.values[index] === null || line.values[index] === undefined ? 'no calls' : format(line.values[index])))));
    readout.hidden = false;
    const left = cx + 12 + 180 > width ? cx - 12 - 180 : cx + 12;
    readout.style.left = `${Math.max(0, left)}px`;
    readout.style.top = `${MARGIN.top}px`;
  };
  overlay.addEventListener('mousemove', move);
  overlay.addEventListener('mouseleave', () => { readout.hidden = true; cursor.setAttribute('visibility', 'hidden'); });
  svg.append(h('title', {}, `${series.map((line) => line.name).join(', ')} from ${new Date(first).toLocaleString()} to ${new Date(last).toLocaleString()}`));
  replace(chart.body, svg, readout);
  replace(chart.legend, series.length > 1 ? series.map((line) => h('span', { class: 'legend-item' }, h('span', { class: `swatch ${line.className}` }), line.name)) : null);
}

/// Round tick values from 0 to at least `highest`: steps of 1, 2 or 5 times a power of ten.
function niceTicks(highest, count) {
  const rough = highest / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((factor) => factor * power).find((candidate) => candidate >= rough) || 10 * power;
  const ticks = [];
  for (let value = 0; value < highest + step * 0.999; value += step) ticks.push(Number(value.toPrecision(12)));
  if (ticks.length < 2) ticks.push(step);
  return ticks;
}

const TIME_STEPS = [60e3, 2 * 60e3, 5 * 60e3, 10 * 60e3, 15 * 60e3, 30 * 60e3, 3600e3, 2 * 3600e3, 3 * 3600e3, 6 * 3600e3,
  12 * 3600e3, 86400e3, 2 * 86400e3, 5 * 86400e3, 7 * 86400e3, 14 * 86400e3];

/// Time ticks at round local times (every 10 minutes, every 3 hours, every 5 days, …).
function timeTicks(first, last, most) {
  const span = Math.max(60e3, last - first);
  const step = TIME_STEPS.find((candidate) => span / candidate <= most) || TIME_STEPS[TIME_STEPS.length - 1];
  const offset = -new Date(first).getTimezoneOffset() * 60e3;
  const ticks = [];
  for (let time = Math.ceil((first + offset) / step) * step - offset; time <= last; time += step) ticks.push(time);
  const label = step >= 86400e3
    ? (time) => new Date(time).toLocaleDateString(undefined, { month: 'short', day: 'numeric' })
    : (time) => new Date(time).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return { ticks, label };
}

function bucketLabel(time, bucketMs) {
  const date = new Date(time);
  if (bucketMs >= 86400e3) return date.toLocaleDateString();
  const clock = (value) => value.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return `${date.toLocaleDateString()} ${clock(date)}–${clock(new Date(time + bucketMs))}`;
}
