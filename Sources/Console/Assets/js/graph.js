// A workflow's top-level steps as a graph: laid out in layers (a step's column is the longest
// path to it from a step without dependencies, its place in the column chosen to cross few
// edges), drawn as SVG. The execution page colours the nodes by the steps' states; the builder
// makes them movable and connectable. Steps nested in a `parallel` or a `loop` are listed inside
// their parent's node: they run in the order written and take no dependencies (11.2.3).

export const STEP_TYPES = ['agent_task', 'condition', 'parallel', 'loop', 'human_approval'];

export const STEP_TYPE_LABELS = {
  agent_task: 'Agent task',
  condition: 'Condition',
  parallel: 'Parallel',
  loop: 'Loop',
  human_approval: 'Human approval',
};

// ---------------------------------------------------------------------------------------------
// Reading steps. A definition may use the seed's spellings (stepId, stepType, dependsOn, the
// type's members inside `configuration`), so every read goes through these.

/// A member of a step, wherever the definition put it: on the step or in its `configuration`,
/// under its name or one of its aliases.
export function stepMember(step, ...names) {
  if (!step || typeof step !== 'object') return undefined;
  for (const name of names) if (Object.hasOwn(step, name)) return step[name];
  const configuration = step.configuration;
  if (configuration && typeof configuration === 'object') {
    for (const name of names) if (Object.hasOwn(configuration, name)) return configuration[name];
  }
  return undefined;
}

export function stepIdOf(step) {
  const id = stepMember(step, 'id', 'stepId');
  return typeof id === 'string' ? id : id === undefined ? '' : String(id);
}

export function stepTypeOf(step) {
  const type = stepMember(step, 'type', 'stepType');
  return typeof type === 'string' ? type : '';
}

/// A list of step ids as written: one id or a list of them.
export function idList(value) {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value.filter((item) => typeof item === 'string');
  return typeof value === 'string' ? [value] : [];
}

export function dependenciesOf(step) {
  return idList(stepMember(step, 'dependencies', 'dependsOn'));
}

export function branchesOf(step) {
  if (stepTypeOf(step) !== 'condition') return { then: [], else: [] };
  return { then: idList(stepMember(step, 'then')), else: idList(stepMember(step, 'else')) };
}

/// The steps inside a step, as lists that run in order: a parallel's branches, a loop's body.
export function nestedSequencesOf(step) {
  const type = stepTypeOf(step);
  if (type === 'parallel') {
    const branches = stepMember(step, 'branches');
    if (!Array.isArray(branches)) return [];
    return branches.map((branch) => (Array.isArray(branch) ? branch : [branch]).filter(isObject));
  }
  if (type === 'loop') {
    const body = stepMember(step, 'steps');
    return Array.isArray(body) ? [body.filter(isObject)] : [];
  }
  return [];
}

/// Every step id of a list of steps, nested ones included.
export function allStepIds(steps, into = new Set()) {
  for (const step of steps || []) {
    if (!isObject(step)) continue;
    const id = stepIdOf(step);
    if (id) into.add(id);
    for (const sequence of nestedSequencesOf(step)) allStepIds(sequence, into);
  }
  return into;
}

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/// The graph's edges between top-level steps, by index: a dependency runs from the step depended
/// on to the step that waits; a condition's branch from the condition to the step it names.
export function graphEdges(steps) {
  const indexOf = new Map();
  steps.forEach((step, index) => {
    const id = stepIdOf(step);
    if (id && !indexOf.has(id)) indexOf.set(id, index);
  });
  const edges = [];
  steps.forEach((step, index) => {
    for (const dependency of dependenciesOf(step)) {
      if (indexOf.has(dependency)) edges.push({ from: indexOf.get(dependency), to: index, kind: 'dependency' });
    }
    const branches = branchesOf(step);
    for (const kind of ['then', 'else']) {
      for (const target of branches[kind]) {
        if (indexOf.has(target)) edges.push({ from: index, to: indexOf.get(target), kind });
      }
    }
  });
  return edges;
}

// ---------------------------------------------------------------------------------------------
// Layout

export const NODE_WIDTH = 196;
const NODE_BASE_HEIGHT = 62;
const NESTED_LINE_HEIGHT = 15;
const MAX_NESTED_LINES = 6;
const GAP_X = 76;
const GAP_Y = 26;
export const MARGIN = 28;

/// What a node lists of the steps inside it: one line per nested step, at most MAX_NESTED_LINES.
function nestedLines(step) {
  const type = stepTypeOf(step);
  const lines = [];
  nestedSequencesOf(step).forEach((sequence, branchIndex) => {
    for (const nested of sequence) {
      const inner = allStepIds(nestedSequencesOf(nested).flat()).size;
      lines.push({
        id: stepIdOf(nested),
        prefix: type === 'parallel' ? `${branchIndex + 1}` : '↻',
        text: stepIdOf(nested) + (inner ? ` (+${inner} inside)` : ''),
      });
    }
  });
  if (lines.length > MAX_NESTED_LINES) {
    const hidden = lines.length - (MAX_NESTED_LINES - 1);
    return lines.slice(0, MAX_NESTED_LINES - 1).concat({ id: null, prefix: '', text: `+${hidden} more` });
  }
  return lines;
}

export function nodeHeight(step) {
  const lines = nestedLines(step).length;
  return NODE_BASE_HEIGHT + (lines ? lines * NESTED_LINE_HEIGHT + 6 : 0);
}

/// Positions ({x, y} of the top-left corner, by step index) for the top-level steps.
export function layoutSteps(steps) {
  const count = steps.length;
  const edges = graphEdges(steps);
  const predecessors = Array.from({ length: count }, () => []);
  const successors = Array.from({ length: count }, () => []);
  for (const edge of edges) {
    if (edge.from === edge.to) continue;
    predecessors[edge.to].push(edge.from);
    successors[edge.from].push(edge.to);
  }

  // Column: the longest path from a root. An edge that closes a cycle is left out.
  const layer = new Array(count).fill(-1);
  const visiting = new Array(count).fill(false);
  const layerOf = (node) => {
    if (layer[node] >= 0) return layer[node];
    visiting[node] = true;
    let value = 0;
    for (const predecessor of predecessors[node]) {
      if (visiting[predecessor]) continue;
      value = Math.max(value, layerOf(predecessor) + 1);
    }
    visiting[node] = false;
    layer[node] = value;
    return value;
  };
  for (let node = 0; node < count; node += 1) layerOf(node);

  const layerCount = count ? Math.max(...layer) + 1 : 0;
  const layers = Array.from({ length: layerCount }, () => []);
  for (let node = 0; node < count; node += 1) layers[layer[node]].push(node);

  // Order within a column: barycentre sweeps, down then up, keeping the order with the fewest
  // crossings between neighbouring columns.
  const position = new Array(count).fill(0);
  const renumber = () => layers.forEach((nodes) => nodes.forEach((node, index) => { position[node] = index; }));
  renumber();
  const crossings = () => {
    let total = 0;
    const spans = edges.filter((edge) => layer[edge.to] === layer[edge.from] + 1);
    for (let i = 0; i < spans.length; i += 1) {
      for (let j = i + 1; j < spans.length; j += 1) {
        const a = spans[i];
        const b = spans[j];
        if (layer[a.from] !== layer[b.from]) continue;
        if ((position[a.from] - position[b.from]) * (position[a.to] - position[b.to]) < 0) total += 1;
      }
    }
    return total;
  };
  let best = layers.map((nodes) => nodes.slice());
  let bestCrossings = crossings();
  for (let sweep = 0; sweep < 8 && bestCrossings > 0; sweep += 1) {
    const downward = sweep % 2 === 0;
    const order = downward ? layers.keys() : [...layers.keys()].reverse();
    for (const index of order) {
      const neighbours = downward ? predecessors : successors;
      const keyed = layers[index].map((node) => {
        const around = neighbours[node].filter((other) => (downward ? layer[other] < index : layer[other] > index));
        const key = around.length ? around.reduce((sum, other) => sum + position[other], 0) / around.length : position[node];
        return { node, key, was: position[node] };
      });
      keyed.sort((a, b) => a.key - b.key || a.was - b.was);
      layers[index] = keyed.map((entry) => entry.node);
      layers[index].forEach((node, place) => { position[node] = place; });
    }
    const now = crossings();
    if (now < bestCrossings) {
      bestCrossings = now;
      best = layers.map((nodes) => nodes.slice());
    }
  }
  best.forEach((nodes, index) => { layers[index] = nodes; });
  renumber();

  // Coordinates: columns left to right, each column centred on the tallest.
  const heights = steps.map(nodeHeight);
  const columnHeight = (nodes) => nodes.reduce((sum, node) => sum + heights[node], 0) + Math.max(0, nodes.length - 1) * GAP_Y;
  const tallest = Math.max(0, ...layers.map(columnHeight));
  const positions = new Array(count);
  layers.forEach((nodes, index) => {
    let y = MARGIN + (tallest - columnHeight(nodes)) / 2;
    for (const node of nodes) {
      positions[node] = { x: MARGIN + index * (NODE_WIDTH + GAP_X), y: Math.round(y) };
      y += heights[node] + GAP_Y;
    }
  });
  return positions;
}

/// A place for one more node inside `view` (a rectangle of the graph) that no node covers, or
/// null when the view is full.
export function freeSpot(positions, heights, view) {
  const overlaps = (x, y) => positions.some((p, index) => x < p.x + NODE_WIDTH + 24 && x + NODE_WIDTH + 24 > p.x
    && y < p.y + heights[index] + 16 && y + NODE_BASE_HEIGHT + 16 > p.y);
  for (let y = view.y + MARGIN; y + NODE_BASE_HEIGHT <= view.y + view.height; y += NODE_BASE_HEIGHT + GAP_Y) {
    for (let x = view.x + MARGIN; x + NODE_WIDTH <= view.x + view.width; x += 40) {
      if (!overlaps(x, y)) return { x: Math.round(x), y: Math.round(y) };
    }
  }
  return null;
}

/// A free place for one more node: right of everything, at the top.
export function placeAfter(positions) {
  if (!positions.length) return { x: MARGIN, y: MARGIN };
  const right = Math.max(...positions.map((p) => p.x));
  const inColumn = positions.filter((p) => p.x === right);
  return { x: right + NODE_WIDTH + GAP_X, y: Math.min(...inColumn.map((p) => p.y)) };
}

// ---------------------------------------------------------------------------------------------
// Drawing

const SVG_NS = 'http://www.w3.org/2000/svg';

/// An SVG element (any tag), with attributes and children; text children become text nodes.
export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const ICONS = {
  agent_task: () => svg('path', { d: 'M4.5 2.5 L13.5 8 L4.5 13.5 Z' }),
  condition: () => svg('path', { d: 'M8 1 L15 8 L8 15 L1 8 Z' }),
  parallel: () => svg('path', { d: 'M2 4 H14 M2 8 H14 M2 12 H14', class: 'wf-icon-stroke' }),
  loop: () => svg('g', {},
    svg('path', { d: 'M13 8 A5 5 0 1 1 10.6 3.7', class: 'wf-icon-stroke' }),
    svg('path', { d: 'M9.2 1.4 L13.4 3.4 L10 6.3 Z' })),
  human_approval: () => svg('g', {},
    svg('circle', { cx: 8, cy: 4.6, r: 3 }),
    svg('path', { d: 'M2 15 C2 9.5 14 9.5 14 15 Z' })),
};

function icon(type) {
  const make = ICONS[type];
  return svg('g', { class: 'wf-icon', transform: 'translate(10 9)' },
    make ? make() : svg('circle', { cx: 8, cy: 8, r: 6, class: 'wf-icon-stroke' }));
}

/// A step type's icon on its own, for the palette.
export function typeIcon(type) {
  const make = ICONS[type];
  return svg('svg', { class: `wf-type-icon type-${type}`, viewBox: '0 0 16 16', width: 16, height: 16, 'aria-hidden': 'true' },
    make ? make() : svg('circle', { cx: 8, cy: 8, r: 6, class: 'wf-icon-stroke' }));
}

/// Cuts a text to what fits in `width` pixels (an estimate: no measuring before it is drawn).
function fit(text, width, characterWidth = 6.6) {
  const room = Math.max(3, Math.floor(width / characterWidth));
  return text.length > room ? text.slice(0, room - 1) + '…' : text;
}

function short(value) {
  if (value === undefined || value === null) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/// The second line of a node: what the step does, in a few words.
function summary(step) {
  const type = stepTypeOf(step);
  switch (type) {
    case 'agent_task': {
      const tool = stepMember(step, 'tool', 'taskType');
      return tool ? `tool ${short(tool)}` : 'agent task: no tool yet';
    }
    case 'condition': return `if ${short(stepMember(step, 'if', 'condition')) || '…'}`;
    case 'parallel': {
      const count = nestedSequencesOf(step).length;
      return `${count} branch${count === 1 ? '' : 'es'}`;
    }
    case 'loop': {
      const forEach = stepMember(step, 'forEach');
      const max = stepMember(step, 'maxIterations');
      if (forEach !== undefined) return `for each ${short(forEach)}`;
      const whileCondition = stepMember(step, 'while');
      const until = stepMember(step, 'until');
      if (whileCondition !== undefined) return `while ${short(whileCondition)}`;
      if (until !== undefined) return `until ${short(until)}`;
      return `at most ${short(max) || '?'} times`;
    }
    case 'human_approval': {
      const approvers = stepMember(step, 'approvers');
      return Array.isArray(approvers) && approvers.length ? `by ${approvers.join(', ')}` : 'approval by anyone';
    }
    default: return type ? `unknown type ${type}` : 'no type';
  }
}

const STATUS_WORDS = {
  NOT_STARTED: 'not started',
  PENDING: 'pending',
  RUNNING: 'running',
  WAITING_APPROVAL: 'waiting for approval',
  COMPLETED: 'completed',
  FAILED: 'failed',
  SKIPPED: 'skipped',
  CANCELLED: 'cancelled',
};

export function statusWord(status) {
  return STATUS_WORDS[status] || String(status || '').toLowerCase();
}

let graphCount = 0;

/// A graph of a workflow's top-level steps, drawn into `container`.
///
/// options:
///   editable        nodes can be dragged, and have ports to connect dependencies
///   nodeTest        the data-test of a node (`step-node`, `builder-node`)
///   edgeTest        the data-test of an edge
///   onNodeClick(index, event), onNodeMoved(index, {x, y}), onConnect(fromIndex, toIndex),
///   onEdgeClick(edge), onBackgroundClick()
export class WorkflowGraph {
  constructor(container, options = {}) {
    this.container = container;
    this.options = { nodeTest: 'step-node', edgeTest: 'graph-edge', ...options };
    this.prefix = `wf-graph-${(graphCount += 1)}`;
    this.svg = svg('svg', { class: 'wf-graph' + (this.options.editable ? ' editable' : ''), role: 'img' });
    this.svg.addEventListener('pointerdown', (event) => this.pointerDown(event));
    this.svg.addEventListener('pointermove', (event) => this.pointerMove(event));
    this.svg.addEventListener('pointerup', (event) => this.pointerUp(event));
    this.svg.addEventListener('pointercancel', () => this.cancelGesture());
    this.svg.addEventListener('click', (event) => {
      // A gesture on a node ends in a click too (on the svg, which captured the pointer).
      if (this.gestureEnded) return;
      if (event.target === this.svg || event.target.classList.contains('wf-graph-background')) {
        this.options.onBackgroundClick?.();
      }
    });
    this.svg.addEventListener('keydown', (event) => {
      if (event.key !== 'Enter' && event.key !== ' ') return;
      const index = this.nodeIndexAt(event.target);
      if (index === null) return;
      event.preventDefault();
      this.options.onNodeClick?.(index, event);
    });
    container.append(this.svg);
    this.gesture = null;
    this.model = { steps: [], positions: [] };
    this.zoom = 1;
    this.contentSize = { width: 0, height: 0 };
  }

  /// Draws at `zoom` times the natural size (0.3 to 2), keeping the model as it is.
  setZoom(zoom) {
    this.zoom = Math.min(2, Math.max(0.3, zoom));
    if (this.model.steps) this.render(this.model);
    return this.zoom;
  }

  /// The zoom at which the whole graph fits `width` pixels (never above 1).
  fittingZoom(width) {
    return this.contentSize.width ? Math.min(1, Math.max(0.3, (width - 4) / this.contentSize.width)) : 1;
  }

  /// Scrolls `holder` so that step `index` is in view.
  reveal(holder, index) {
    const position = this.model.positions[index];
    if (!position) return;
    const x = position.x * this.zoom;
    const y = position.y * this.zoom;
    if (x < holder.scrollLeft || x + NODE_WIDTH * this.zoom > holder.scrollLeft + holder.clientWidth) {
      holder.scrollLeft = Math.max(0, x - holder.clientWidth / 2 + (NODE_WIDTH * this.zoom) / 2);
    }
    if (y < holder.scrollTop || y > holder.scrollTop + holder.clientHeight - 40) {
      holder.scrollTop = Math.max(0, y - 40);
    }
  }

  destroy() {
    this.svg.remove();
  }

  /// Draws the steps. `positions[i]` is where step i's node goes; `stateOf(id)` gives a step's
  /// record (for its colour), `problemsOf(index)` the problems shown on it.
  render({ steps, positions, stateOf = null, problemsOf = null, selectedNode = null, selectedEdge = null, label = '' }) {
    // A drawing in the middle of a drag would take the node or the line from under the pointer:
    // it waits for the gesture's end.
    if (this.gesture) {
      this.pending = { steps, positions, stateOf, problemsOf, selectedNode, selectedEdge, label };
      return;
    }
    this.pending = null;
    this.model = { steps, positions, stateOf, problemsOf, selectedNode, selectedEdge, label };
    const heights = steps.map(nodeHeight);
    const width = Math.max(0, ...positions.map((p) => p.x + NODE_WIDTH)) + MARGIN;
    const height = Math.max(0, ...positions.map((p, i) => p.y + heights[i])) + MARGIN;
    // The minimum is the holder's size on screen: in graph units it grows as the zoom shrinks.
    const minimum = this.options.minimumSize || { width: 0, height: 0 };
    const zoom = this.zoom;
    const totalWidth = Math.max(width, minimum.width / zoom);
    const totalHeight = Math.max(height, minimum.height / zoom);
    this.contentSize = { width, height };
    this.svg.setAttribute('width', Math.round(totalWidth * zoom));
    this.svg.setAttribute('height', Math.round(totalHeight * zoom));
    this.svg.setAttribute('viewBox', `0 0 ${totalWidth} ${totalHeight}`);
    if (label) this.svg.setAttribute('aria-label', label);

    const edgesLayer = svg('g', { class: 'wf-edges' });
    const nodesLayer = svg('g', { class: 'wf-nodes' });
    this.edgesLayer = edgesLayer;
    graphEdges(steps).forEach((edge) => edgesLayer.append(this.drawEdge(edge, positions, heights)));
    steps.forEach((step, index) => nodesLayer.append(this.drawNode(step, index, positions[index], heights[index])));
    this.svg.replaceChildren(this.defs(),
      svg('rect', { class: 'wf-graph-background', x: 0, y: 0, width: totalWidth, height: totalHeight }),
      edgesLayer, nodesLayer);
  }

  defs() {
    const arrow = (id, kind) => svg('marker', {
      id: `${this.prefix}-${id}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
      orient: 'auto-start-reverse', class: `wf-arrow ${kind}`,
    }, svg('path', { d: 'M0 0 L10 5 L0 10 Z' }));
    return svg('defs', {}, arrow('arrow', 'dependency'), arrow('arrow-branch', 'branch'), arrow('arrow-selected', 'selected'));
  }

  edgeGeometry(edge, positions, heights) {
    const from = positions[edge.from];
    const to = positions[edge.to];
    const x1 = from.x + NODE_WIDTH;
    const y1 = from.y + heights[edge.from] / 2;
    const x2 = to.x;
    const y2 = to.y + heights[edge.to] / 2;
    const apart = Math.abs(y2 - y1) > (heights[edge.from] + heights[edge.to]) / 2 + 12;
    if (x2 < x1 + 24 && apart) {
      // Back to the left, on another row: out to the right, in from the left.
      const reach = Math.max(70, (x1 - x2) / 3);
      const path = `M${x1} ${y1} C${x1 + reach} ${y1}, ${x2 - reach} ${y2}, ${x2 - 1} ${y2}`;
      return { path, middle: { x: (x1 + x2) / 2, y: (y1 + y2) / 2 } };
    }
    if (x2 < x1 + 24) {
      // Back to the left on the same row (a cycle, or nodes moved so): round below both nodes,
      // so that it does not lie on the edges going forward.
      const below = Math.max(from.y + heights[edge.from], to.y + heights[edge.to]) + 28;
      const middle = (x1 + x2) / 2;
      const path = `M${x1} ${y1} C${x1 + 60} ${y1}, ${x1 + 60} ${below}, ${middle} ${below}`
        + ` C${x2 - 60} ${below}, ${x2 - 60} ${y2}, ${x2 - 1} ${y2}`;
      return { path, middle: { x: middle, y: below } };
    }
    // A branch drawn beside a dependency between the same two steps bends a little apart from it.
    const bend = edge.kind === 'dependency' ? 0 : 10;
    const dx = Math.max(40, Math.abs(x2 - x1) / 2);
    const path = `M${x1} ${y1} C${x1 + dx} ${y1 + bend}, ${x2 - dx} ${y2 + bend}, ${x2 - 1} ${y2}`;
    return { path, middle: { x: (x1 + x2) / 2, y: (y1 + y2) / 2 + (bend * 3) / 4 } };
  }

  drawEdge(edge, positions, heights) {
    const { steps, selectedEdge } = this.model;
    const { path, middle } = this.edgeGeometry(edge, positions, heights);
    const from = stepIdOf(steps[edge.from]);
    const to = stepIdOf(steps[edge.to]);
    const selected = selectedEdge && selectedEdge.from === from && selectedEdge.to === to && selectedEdge.kind === edge.kind;
    const branch = edge.kind !== 'dependency';
    const marker = selected ? 'arrow-selected' : branch ? 'arrow-branch' : 'arrow';
    const group = svg('g', {
      class: `wf-edge ${branch ? 'branch' : 'dependency'}${selected ? ' selected' : ''}`,
      'data-test': this.options.edgeTest, 'data-from': from, 'data-to': to, 'data-kind': edge.kind,
    },
    svg('title', {}, branch ? `${from} → ${to} when the condition takes "${edge.kind}"` : `${to} depends on ${from}`),
    svg('path', { class: 'wf-edge-line', d: path, 'marker-end': `url(#${this.prefix}-${marker})` }),
    svg('path', { class: 'wf-edge-hit', d: path }));
    if (branch) {
      const width = edge.kind.length * 7 + 10;
      group.append(svg('g', { class: 'wf-edge-label', transform: `translate(${middle.x} ${middle.y})` },
        svg('rect', { x: -width / 2, y: -9, width, height: 16, rx: 4 }),
        svg('text', { x: 0, y: 3, 'text-anchor': 'middle' }, edge.kind)));
    } else if (this.options.editable) {
      group.append(svg('circle', { class: 'wf-edge-handle', cx: middle.x, cy: middle.y, r: 5 }));
    }
    if (this.options.onEdgeClick) {
      group.addEventListener('click', (event) => {
        event.stopPropagation();
        this.options.onEdgeClick({ from, to, kind: edge.kind });
      });
    }
    return group;
  }

  drawNode(step, index, position, height) {
    const { stateOf, problemsOf, selectedNode } = this.model;
    const id = stepIdOf(step);
    const type = stepTypeOf(step);
    const record = stateOf ? stateOf(id) : null;
    const status = stateOf ? (record?.status || 'NOT_STARTED') : null;
    const problems = problemsOf ? problemsOf(index) : [];
    const classes = ['wf-node', `type-${type || 'unknown'}`];
    if (status) classes.push(`state-${status}`);
    if (problems.length) classes.push('has-problem');
    if (selectedNode === index) classes.push('selected');

    const attributes = {
      class: classes.join(' '),
      transform: `translate(${position.x} ${position.y})`,
      'data-test': this.options.nodeTest,
      'data-step-id': id,
      'data-step-index': index,
      'data-step-type': type,
      tabindex: 0,
    };
    if (status) attributes['data-step-status'] = status;

    const tooltip = [`${id} (${STEP_TYPE_LABELS[type] || type || 'no type'})`];
    const description = stepMember(step, 'description');
    if (typeof description === 'string' && description) tooltip.push(description);
    if (record) {
      tooltip.push(`${statusWord(status)}${record.attempts > 1 ? `, ${record.attempts} attempts` : ''}`);
      if (record.error) tooltip.push(`error: ${record.error}`);
      if (record.skipReason) tooltip.push(`skipped: ${record.skipReason}`);
    }
    for (const problem of problems) tooltip.push(`problem: ${problem}`);

    const group = svg('g', attributes,
      svg('title', {}, tooltip.join('\n')),
      svg('rect', { class: 'wf-node-box', x: 0, y: 0, width: NODE_WIDTH, height, rx: 8 }),
      svg('rect', { class: 'wf-node-band', x: 0, y: 0, width: 5, height, rx: 2 }),
      icon(type),
      svg('text', { class: 'wf-node-id', x: 32, y: 21 }, fit(id || '(no id)', NODE_WIDTH - 44, 7.4)),
      svg('text', { class: 'wf-node-summary', x: 12, y: 39 }, fit(summary(step), NODE_WIDTH - 22)));

    if (status) {
      const attempts = record?.attempts > 1 ? ` · ${record.attempts} attempts` : '';
      const branch = record?.branch ? ` · ${record.branch}` : '';
      const iterations = record?.iterations !== undefined ? ` · ${record.iterations} iterations` : '';
      group.append(svg('text', { class: 'wf-node-status', x: 12, y: 55 }, fit(statusWord(status) + branch + iterations + attempts, NODE_WIDTH - 22)));
    } else if (problems.length) {
      group.append(svg('text', { class: 'wf-node-problem', x: 12, y: 55 }, fit(problems[0], NODE_WIDTH - 22)));
    } else {
      const dependencies = dependenciesOf(step);
      if (dependencies.length) {
        group.append(svg('text', { class: 'wf-node-detail', x: 12, y: 55 }, fit(`after ${dependencies.join(', ')}`, NODE_WIDTH - 22)));
      }
    }

    nestedLines(step).forEach((line, number) => {
      const y = NODE_BASE_HEIGHT + 4 + number * NESTED_LINE_HEIGHT;
      const nestedRecord = stateOf && line.id ? stateOf(line.id) : null;
      const nestedStatus = stateOf && line.id ? (nestedRecord?.status || 'NOT_STARTED') : null;
      const entry = svg('g', {
        class: 'wf-nested' + (nestedStatus ? ` state-${nestedStatus}` : ''),
        transform: `translate(12 ${y})`,
        'data-test': line.id ? 'nested-step' : null,
        'data-step-id': line.id,
        'data-step-status': nestedStatus,
      });
      if (line.id) {
        entry.append(svg('circle', { class: 'wf-nested-dot', cx: 4, cy: 6, r: 3.5 }));
        if (nestedStatus) entry.append(svg('title', {}, `${line.id}: ${statusWord(nestedStatus)}`));
      }
      entry.append(svg('text', { x: 12, y: 10 }, fit(`${line.prefix ? line.prefix + ' ' : ''}${line.text}`, NODE_WIDTH - 36, 6.2)));
      group.append(entry);
    });
    if (nestedLines(step).length) {
      group.append(svg('line', { class: 'wf-nested-rule', x1: 10, x2: NODE_WIDTH - 10, y1: NODE_BASE_HEIGHT, y2: NODE_BASE_HEIGHT }));
    }

    if (this.options.editable) {
      group.append(
        svg('circle', { class: 'wf-port in', cx: 0, cy: height / 2, r: 7, 'data-test': 'port-in', 'data-port': 'in' },
          svg('title', {}, `the steps ${id} depends on end here`)),
        svg('circle', { class: 'wf-port out', cx: NODE_WIDTH, cy: height / 2, r: 7, 'data-test': 'port-out', 'data-port': 'out' },
          svg('title', {}, `drag to a step that depends on ${id}`)));
    }
    return group;
  }

  /// A point of the page (clientX, clientY) in the graph's coordinates.
  toGraph(clientX, clientY) {
    const matrix = this.svg.getScreenCTM();
    if (!matrix) return { x: clientX, y: clientY };
    const point = new DOMPoint(clientX, clientY).matrixTransform(matrix.inverse());
    return { x: point.x, y: point.y };
  }

  nodeIndexAt(element) {
    const node = element?.closest?.('.wf-node');
    if (!node || !this.svg.contains(node)) return null;
    return Number(node.getAttribute('data-step-index'));
  }

  pointerDown(event) {
    this.gestureEnded = false;
    if (event.button !== 0) return;
    const index = this.nodeIndexAt(event.target);
    if (index === null) return;
    const port = event.target.closest('.wf-port');
    if (this.options.editable && port?.classList.contains('out')) {
      event.preventDefault();
      const start = this.toGraph(event.clientX, event.clientY);
      const line = svg('path', { class: 'wf-connecting', d: `M${start.x} ${start.y}` });
      this.svg.append(line);
      this.gesture = { kind: 'connect', from: index, start, line, pointerId: event.pointerId };
      this.svg.setPointerCapture?.(event.pointerId);
      return;
    }
    if (port) return;
    const position = this.model.positions[index];
    this.gesture = {
      kind: 'node', index, pointerId: event.pointerId, moved: false,
      startClient: { x: event.clientX, y: event.clientY }, startPosition: { ...position },
      startGraph: this.toGraph(event.clientX, event.clientY),
    };
    if (this.options.editable) {
      event.preventDefault();
      this.svg.setPointerCapture?.(event.pointerId);
    }
  }

  pointerMove(event) {
    const gesture = this.gesture;
    if (!gesture || event.pointerId !== gesture.pointerId) return;
    if (gesture.kind === 'connect') {
      const point = this.toGraph(event.clientX, event.clientY);
      const { start } = gesture;
      const dx = Math.max(30, Math.abs(point.x - start.x) / 2);
      gesture.line.setAttribute('d', `M${start.x} ${start.y} C${start.x + dx} ${start.y}, ${point.x - dx} ${point.y}, ${point.x} ${point.y}`);
      const target = this.nodeIndexAt(document.elementFromPoint(event.clientX, event.clientY));
      this.markTarget(target !== null && target !== gesture.from ? target : null);
      return;
    }
    if (!this.options.editable) return;
    const distance = Math.hypot(event.clientX - gesture.startClient.x, event.clientY - gesture.startClient.y);
    if (!gesture.moved && distance < 4) return;
    gesture.moved = true;
    const point = this.toGraph(event.clientX, event.clientY);
    const x = Math.max(0, Math.round(gesture.startPosition.x + point.x - gesture.startGraph.x));
    const y = Math.max(0, Math.round(gesture.startPosition.y + point.y - gesture.startGraph.y));
    this.model.positions[gesture.index] = { x, y };
    this.svg.querySelector(`.wf-node[data-step-index="${gesture.index}"]`)?.setAttribute('transform', `translate(${x} ${y})`);
    this.redrawEdges();
  }

  pointerUp(event) {
    const gesture = this.gesture;
    if (!gesture || event.pointerId !== gesture.pointerId) return;
    this.gesture = null;
    this.gestureEnded = true;
    this.svg.releasePointerCapture?.(event.pointerId);
    if (gesture.kind === 'connect') {
      gesture.line.remove();
      this.markTarget(null);
      const target = this.nodeIndexAt(document.elementFromPoint(event.clientX, event.clientY));
      this.drawPending();
      if (target !== null && target !== gesture.from) this.options.onConnect?.(gesture.from, target);
      return;
    }
    const moved = gesture.moved ? { ...this.model.positions[gesture.index] } : null;
    this.drawPending();
    if (moved) this.options.onNodeMoved?.(gesture.index, moved);
    else this.options.onNodeClick?.(gesture.index, event);
  }

  cancelGesture() {
    if (this.gesture?.line) this.gesture.line.remove();
    this.markTarget(null);
    this.gesture = null;
    this.drawPending();
  }

  drawPending() {
    if (this.pending) this.render(this.pending);
  }

  markTarget(index) {
    for (const node of this.svg.querySelectorAll('.wf-node.drop-target')) node.classList.remove('drop-target');
    if (index !== null) this.svg.querySelector(`.wf-node[data-step-index="${index}"]`)?.classList.add('drop-target');
  }

  redrawEdges() {
    const { steps, positions } = this.model;
    const heights = steps.map(nodeHeight);
    this.edgesLayer.replaceChildren(...graphEdges(steps).map((edge) => this.drawEdge(edge, positions, heights)));
  }
}

/// − / + / Fit buttons for a graph drawn in a scrolling `holder`.
export function zoomControls(graph, holder) {
  const label = document.createElement('span');
  label.className = 'wf-zoom-level muted';
  const show = () => { label.textContent = `${Math.round(graph.zoom * 100)} %`; };
  const button = (text, test, title, action) => {
    const element = document.createElement('button');
    element.type = 'button';
    element.className = 'button small';
    element.textContent = text;
    element.title = title;
    element.setAttribute('data-test', test);
    element.addEventListener('click', () => { action(); show(); });
    return element;
  };
  const controls = document.createElement('span');
  controls.className = 'wf-zoom toolbar';
  controls.append(
    button('−', 'zoom-out', 'Smaller', () => graph.setZoom(graph.zoom / 1.25)),
    label,
    button('+', 'zoom-in', 'Larger', () => graph.setZoom(graph.zoom * 1.25)),
    button('Fit', 'zoom-fit', 'Fit the width', () => graph.setZoom(graph.fittingZoom(holder.clientWidth))));
  show();
  controls.refresh = show;
  return controls;
}
