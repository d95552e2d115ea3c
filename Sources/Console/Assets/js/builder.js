// The visual workflow builder: a palette of step types, a canvas where steps are placed, moved
// and connected, forms for the workflow and the selected step, the gateway's own diagnostics on
// the steps they concern, and the YAML that Save stores.
//
// The model is the whole definition object (what workflows/get or workflows/validate give): the
// forms change only the members they show, so triggers, compensations, nested steps, outputs and
// anything else survive a round trip untouched. The gateway checks every change
// (workflows/validate, the checks of `workflows/create`, 11.4); the console has no validator of
// its own. Node positions are the console's, kept in localStorage per workflow name: they are
// not part of a definition (the gateway refuses unknown members).
//
// Routes: #/builder (a new workflow), #/builder/NAME, #/builder/NAME/VERSION.

import { h, replace, errorText, prettyJSON, debounce } from './dom.js';
import { toYAML } from './yaml.js';
import {
  WorkflowGraph, layoutSteps, placeAfter, freeSpot, nodeHeight, typeIcon, zoomControls, stepIdOf, stepTypeOf, stepMember, dependenciesOf, idList,
  allStepIds, STEP_TYPES, STEP_TYPE_LABELS, NODE_WIDTH,
} from './graph.js';
import { runPanel, executionHash } from './workflows.js';

const STEP_MIME = 'application/x-switchboard-step-type';
const VALIDATE_DELAY_MS = 300;
const POSITIONS_KEY = 'switchboard.builder.positions.';
const STEP_ID = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const DURATION_SECONDS = /^\d+(\.\d+)?$/;
const TOOL_PAGES = 5;

// Where a diagnostic's `path` names a top-level step: `steps[2].retryPolicy`, or inside the
// seed's `definition` wrapper.
const STEP_PATH = /^(?:definition\.)?steps\[(\d+)\]/;

/// A new step of `type` as it is first placed: only what its type requires, so that the
/// gateway's diagnostics say what is still to fill in (a tool, a branch, a loop's body).
function newStep(type, id) {
  switch (type) {
    case 'agent_task': return { id, type, input: {} };
    case 'condition': return { id, type, if: 'true', then: [] };
    case 'parallel': return { id, type, branches: [] };
    case 'loop': return { id, type, maxIterations: 10, steps: [] };
    default: return { id, type };
  }
}

function blankDocument() {
  return { workflowName: 'new-workflow', version: '1', steps: [] };
}

function clone(value) {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

/// The next version: the last number in it plus one (1.0.0 → 1.0.1, 2 → 3, rc1 → rc2).
export function bumpVersion(version) {
  const text = String(version || '');
  const match = /(\d+)(?!.*\d)/.exec(text);
  if (!match) return text ? `${text}.1` : '1';
  return text.slice(0, match.index) + String(Number(match[1]) + 1) + text.slice(match.index + match[1].length);
}

export function mount(root, ctx, route) {
  const [, routeName, routeVersion] = route.parts;
  const state = {
    document: null,
    positions: new Map(),    // step id -> {x, y}
    selection: null,         // {kind: 'step', index} | {kind: 'edge', from, to, edgeKind}
    problems: [],            // the gateway's diagnostics of the current model
    saved: null,             // {workflowName, version, source} of the last save (or of the opened version)
    tools: [],
    validation: 0,           // the number of the latest validation asked for
  };
  let disposed = false;
  let fieldCount = 0;
  // Where each member a form edits lives (step → member → {configuration, key}; workflow member
  // → the object holding it), so that a field emptied and typed again writes where it was.
  const stepHomes = new WeakMap();
  const documentHomes = new Map();

  // ---- the page -------------------------------------------------------------------------------
  const title = h('span', { class: 'wf-builder-title', 'data-test': 'builder-title' });
  const dirty = h('span', { class: 'tag', 'data-test': 'builder-dirty', hidden: true }, 'unsaved changes');
  const saveButton = ctx.may('workflows/create')
    ? h('button', { type: 'button', class: 'button primary', 'data-test': 'builder-save', onclick: () => save() }, 'Save')
    : null;
  const runButton = ctx.may('workflows/execute')
    ? h('button', { type: 'button', class: 'button', 'data-test': 'builder-run', onclick: () => run() }, 'Run')
    : null;
  const importToggle = h('button', { type: 'button', class: 'button', 'data-test': 'builder-import-toggle', onclick: () => { importPanel.hidden = !importPanel.hidden; } }, 'Import YAML');
  const header = h('div', { class: 'view-header' },
    h('h2', {}, 'Builder'), title, dirty, h('span', { class: 'spacer' }),
    h('a', { class: 'button', href: '#/builder', 'data-test': 'builder-new', onclick: (event) => {
      if (location.hash === '#/builder') { event.preventDefault(); open(blankDocument(), null); }
    } }, 'New'),
    importToggle,
    h('button', { type: 'button', class: 'button', 'data-test': 'builder-arrange', onclick: () => arrange() }, 'Arrange'),
    h('button', { type: 'button', class: 'button', 'data-test': 'builder-download', onclick: () => download() }, 'Download .yaml'),
    saveButton, runButton);

  const saveStatus = h('div', { class: 'wf-save-status', 'data-test': 'builder-save-status', role: 'status', hidden: true });
  const runHolder = h('div', {});

  const importText = h('textarea', {
    class: 'mono', rows: 10, spellcheck: 'false', 'data-test': 'builder-import',
    placeholder: 'Paste a workflow definition (YAML or JSON) here', 'aria-label': 'Workflow definition to import',
  });
  const importFile = h('input', {
    type: 'file', accept: '.yaml,.yml,.json,text/yaml,application/json', 'data-test': 'builder-import-file',
    'aria-label': 'Workflow definition file',
    onchange: async () => {
      const file = importFile.files && importFile.files[0];
      if (!file) return;
      importText.value = await file.text();
      importDocument();
    },
  });
  const importError = h('div', { class: 'error-text', 'data-test': 'builder-import-error', hidden: true });
  const importPanel = h('section', { class: 'panel wf-import', hidden: true },
    h('h3', {}, 'Import a definition'),
    importText,
    h('div', { class: 'toolbar' },
      h('button', { type: 'button', class: 'button primary', 'data-test': 'builder-import-open', onclick: () => importDocument() }, 'Open'),
      h('label', { class: 'button' }, 'Upload a file…', importFile),
      h('button', { type: 'button', class: 'button', onclick: () => { importPanel.hidden = true; } }, 'Close')),
    importError);

  const palette = h('div', { class: 'wf-palette', role: 'toolbar', 'aria-label': 'Step types: drag onto the canvas, or click to add' },
    h('span', { class: 'wf-palette-label muted', title: 'Drag onto the canvas, or click to add' }, 'Add a step'),
    STEP_TYPES.map((type) => h('div', {
      class: `wf-palette-item type-${type}`, draggable: 'true', role: 'button', tabindex: 0,
      'data-test': `palette-${type}`, 'data-step-type': type, title: `Add a ${STEP_TYPE_LABELS[type].toLowerCase()} step`,
      ondragstart: (event) => {
        event.dataTransfer.setData(STEP_MIME, type);
        event.dataTransfer.setData('text/plain', type);
        event.dataTransfer.effectAllowed = 'copy';
        canvas.classList.add('drop-ready');
      },
      ondragend: () => canvas.classList.remove('drop-ready', 'drop-over'),
      onclick: () => addStep(type, null),
      onkeydown: (event) => { if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); addStep(type, null); } },
    }, typeIcon(type), h('span', {}, STEP_TYPE_LABELS[type]))));

  const canvas = h('div', {
    class: 'wf-canvas', 'data-test': 'builder-canvas', tabindex: 0, 'aria-label': 'Workflow canvas',
    ondragover: (event) => {
      if (!event.dataTransfer || !Array.from(event.dataTransfer.types || []).some((t) => t === STEP_MIME || t === 'text/plain')) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = 'copy';
      canvas.classList.add('drop-over');
    },
    ondragleave: (event) => { if (event.target === canvas) canvas.classList.remove('drop-over'); },
    ondrop: (event) => {
      event.preventDefault();
      canvas.classList.remove('drop-ready', 'drop-over');
      const type = event.dataTransfer.getData(STEP_MIME) || event.dataTransfer.getData('text/plain');
      if (!STEP_TYPES.includes(type)) return;
      const point = graph.toGraph(event.clientX, event.clientY);
      addStep(type, { x: Math.max(0, Math.round(point.x - NODE_WIDTH / 2)), y: Math.max(0, Math.round(point.y - 30)) });
    },
  });
  const emptyHint = h('div', { class: 'wf-canvas-empty muted', hidden: true },
    h('p', {}, 'No step yet.'), h('p', {}, 'Drag a step type here from “Add a step” above, or click one.'));
  const canvasFrame = h('div', { class: 'wf-canvas-frame' }, canvas, emptyHint);
  const zoomHolder = h('span', {});
  const canvasHint = h('p', { class: 'wf-canvas-hint muted' },
    'Drag a step from here, or click it. Drag from a step’s right port to another step’s left port to make the second wait for the first; ',
    'select an arrow and press Delete to remove it.');

  const validity = h('div', { class: 'wf-validity', 'data-test': 'builder-validity', role: 'status' }, 'Not checked yet');
  const problemList = h('ul', { class: 'wf-problems', 'data-test': 'builder-problems' });
  const form = h('div', { class: 'wf-form', 'data-test': 'builder-form' });
  const yamlView = h('pre', { class: 'mono wf-yaml', 'data-test': 'builder-yaml' });
  const side = h('aside', { class: 'wf-side' },
    h('section', { class: 'panel' }, validity, problemList),
    h('section', { class: 'panel' }, form));

  const toolList = h('datalist', { id: `builder-tools-${Math.random().toString(36).slice(2, 8)}` });

  replace(root, header, saveStatus, runHolder, importPanel,
    h('div', { class: 'wf-builder' },
      h('div', { class: 'wf-canvas-column' }, h('div', { class: 'wf-canvas-head' }, palette, h('span', { class: 'spacer' }), zoomHolder), canvasHint, canvasFrame,
        h('section', { class: 'panel wf-yaml-panel' }, h('h3', {}, 'YAML'), yamlView)),
      side),
    toolList);

  const graph = new WorkflowGraph(canvas, {
    editable: true,
    nodeTest: 'builder-node',
    edgeTest: 'builder-edge',
    onNodeClick: (index) => select({ kind: 'step', index }),
    onNodeMoved: (index, position) => {
      const id = stepIdOf(steps()[index]);
      state.positions.set(id, position);
      savePositions();
      renderGraph();
    },
    onConnect: (from, to) => connect(from, to),
    onEdgeClick: (edge) => select({ kind: 'edge', from: edge.from, to: edge.to, edgeKind: edge.kind }),
    onBackgroundClick: () => select(null),
  });

  zoomHolder.append(zoomControls(graph, canvas));
  const resize = new ResizeObserver(() => renderGraph());
  resize.observe(canvas);

  const onKey = (event) => {
    if (event.key !== 'Delete' && event.key !== 'Backspace') return;
    const target = event.target;
    if (target && (target.closest('input, textarea, select, [contenteditable]'))) return;
    if (!state.selection) return;
    event.preventDefault();
    if (state.selection.kind === 'edge') removeEdge(state.selection);
    else deleteStep(state.selection.index);
  };
  document.addEventListener('keydown', onKey);

  const validateSoon = debounce(() => validate(), VALIDATE_DELAY_MS);
  loadTools();
  start();

  // ---- the model ------------------------------------------------------------------------------

  /// The top-level steps (in the seed's `definition` wrapper when the document uses one).
  function steps() {
    const document = state.document;
    if (Array.isArray(document.steps)) return document.steps;
    if (document.definition && typeof document.definition === 'object' && Array.isArray(document.definition.steps)) {
      return document.definition.steps;
    }
    document.steps = [];
    return document.steps;
  }

  function compensations() {
    const document = state.document;
    return document.compensations || (document.definition && document.definition.compensations) || [];
  }

  function workflowName() {
    const name = state.document.workflowName ?? state.document.name;
    return typeof name === 'string' ? name : String(name ?? '');
  }

  function version() {
    const value = state.document.version;
    return value === undefined || value === null ? '' : String(value);
  }

  /// Where a workflow-level member lives: on the document, or in its `definition` wrapper.
  function documentHolder(name) {
    const document = state.document;
    if (Object.hasOwn(document, name)) return document;
    if (document.definition && typeof document.definition === 'object' && Object.hasOwn(document.definition, name)) return document.definition;
    return document;
  }

  function setDocumentMember(name, value) {
    // A member emptied and typed again goes back where it was (the `definition` wrapper).
    const holder = Object.hasOwn(state.document, name) || !documentHomes.has(name) ? documentHolder(name) : documentHomes.get(name);
    documentHomes.set(name, holder);
    if (value === undefined) delete holder[name];
    else holder[name] = value;
  }

  /// Writes a member of a step where the step has it (on the step or in its `configuration`,
  /// under whichever alias it uses), or had it before it was emptied, else on the step under
  /// `names[0]`.
  function setStepMember(step, names, value) {
    let homes = stepHomes.get(step);
    if (!homes) stepHomes.set(step, (homes = new Map()));
    const configuration = step.configuration && typeof step.configuration === 'object' ? step.configuration : null;
    const onStep = names.find((name) => Object.hasOwn(step, name));
    const inConfiguration = configuration && names.find((name) => Object.hasOwn(configuration, name));
    const home = onStep ? { configuration: false, key: onStep }
      : inConfiguration ? { configuration: true, key: inConfiguration }
        : homes.get(names[0]) || { configuration: false, key: names[0] };
    homes.set(names[0], home);
    let holder = step;
    if (home.configuration) {
      if (!step.configuration || typeof step.configuration !== 'object') step.configuration = {};
      holder = step.configuration;
    }
    if (value === undefined) delete holder[home.key];
    else holder[home.key] = value;
  }

  function setIdList(step, names, list) {
    setStepMember(step, names, list.length ? list : undefined);
  }

  function everyId() {
    return allStepIds(steps().concat(compensations()));
  }

  function freshId(type) {
    const taken = everyId();
    for (let number = 1; ; number += 1) {
      const candidate = `${type}_${number}`;
      if (!taken.has(candidate)) return candidate;
    }
  }

  function positionsArray() {
    const list = steps();
    let laidOut = null;
    return list.map((step, index) => {
      const id = stepIdOf(step);
      const known = state.positions.get(id);
      if (known) return known;
      laidOut = laidOut || layoutSteps(list);
      state.positions.set(id, laidOut[index]);
      return laidOut[index];
    });
  }

  // ---- opening -------------------------------------------------------------------------------

  async function start() {
    if (!routeName) {
      open(blankDocument(), null);
      return;
    }
    replace(title, `Opening ${routeName}…`);
    try {
      const stored = await ctx.gw.call('workflows/get', routeVersion ? { workflowName: routeName, version: routeVersion } : { workflowName: routeName });
      if (disposed) return;
      open(stored.definition, { workflowName: stored.workflowName, version: stored.version, source: null }, stored.version);
    } catch (error) {
      if (disposed) return;
      open(blankDocument(), null);
      showStatus(`Cannot open ${routeName}${routeVersion ? ` ${routeVersion}` : ''}: ${errorText(error)}`, 'error');
    }
  }

  /// Makes `document` the model: positions laid out, then those the person placed before.
  /// `versionAsRead` is the version as the gateway read it: a YAML number such as 1.10 is the
  /// version "1.10", which the document's JSON (the number 1.1) no longer says.
  function open(document, saved, versionAsRead) {
    state.document = clone(document) || blankDocument();
    documentHomes.clear();
    if (typeof state.document.version === 'number') {
      state.document.version = versionAsRead || String(state.document.version);
    }
    state.saved = saved;
    state.selection = null;
    state.problems = [];
    state.positions = new Map();
    const list = steps();
    const laidOut = layoutSteps(list);
    list.forEach((step, index) => state.positions.set(stepIdOf(step), laidOut[index]));
    for (const [id, position] of Object.entries(readPositions(workflowName()))) {
      if (state.positions.has(id) && position && Number.isFinite(position.x) && Number.isFinite(position.y)) {
        state.positions.set(id, { x: position.x, y: position.y });
      }
    }
    if (saved) state.saved.source = toYAML(state.document);
    changed({ structure: true });
  }

  async function importDocument() {
    const source = importText.value;
    importError.hidden = true;
    if (!source.trim()) {
      importError.hidden = false;
      importError.textContent = 'Paste a definition or choose a file first.';
      return;
    }
    try {
      const result = await ctx.gw.call('workflows/validate', { source });
      if (disposed) return;
      if (!result.definition) {
        importError.hidden = false;
        replace(importError, h('p', {}, 'The text is not a definition the gateway can read:'),
          h('ul', {}, (result.problems || []).map((problem) => h('li', { 'data-test': 'builder-import-problem' }, problemText(problem)))));
        return;
      }
      importPanel.hidden = true;
      open(result.definition, null, result.version);
      showStatus(`Imported ${result.workflowName || workflowName()}${result.valid ? '' : ` with ${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}`}.`, 'info');
    } catch (error) {
      importError.hidden = false;
      importError.textContent = `Cannot check the text: ${errorText(error)}`;
    }
  }

  async function loadTools() {
    if (!ctx.may('tools/list')) return;
    const names = new Set();
    let cursor;
    try {
      for (let page = 0; page < TOOL_PAGES; page += 1) {
        const result = await ctx.gw.call('tools/list', cursor ? { cursor } : {});
        for (const tool of result.tools || []) names.add(tool.name);
        cursor = result.nextCursor;
        if (!cursor) break;
      }
    } catch {
      return;   // suggestions only
    }
    if (disposed) return;
    state.tools = [...names].sort();
    replace(toolList, state.tools.map((name) => h('option', { value: name })));
  }

  // ---- editing -------------------------------------------------------------------------------

  /// Adds a step at `position`, or (added by a click) where the canvas shows free room.
  function addStep(type, position) {
    const id = freshId(type);
    const list = steps();
    let place = position;
    if (!place) {
      const positions = positionsArray();
      const zoom = graph.zoom;
      const view = { x: canvas.scrollLeft / zoom, y: canvas.scrollTop / zoom, width: canvas.clientWidth / zoom, height: canvas.clientHeight / zoom };
      place = freeSpot(positions, list.map(nodeHeight), view) || placeAfter(positions);
    }
    list.push(newStep(type, id));
    state.positions.set(id, place);
    savePositions();
    state.selection = { kind: 'step', index: list.length - 1 };
    changed({ structure: true });
    graph.reveal(canvas, list.length - 1);
  }

  function deleteStep(index) {
    const list = steps();
    const step = list[index];
    if (!step) return;
    const id = stepIdOf(step);
    list.splice(index, 1);
    // Nothing may go on naming a step that is gone.
    for (const other of list) {
      const dependencies = dependenciesOf(other);
      if (dependencies.includes(id)) setIdList(other, ['dependencies', 'dependsOn'], dependencies.filter((d) => d !== id));
      if (stepTypeOf(other) === 'condition') {
        for (const branch of ['then', 'else']) {
          const targets = idList(stepMember(other, branch));
          if (targets.includes(id)) setIdList(other, [branch], targets.filter((t) => t !== id));
        }
      }
    }
    state.positions.delete(id);
    savePositions();
    state.selection = null;
    changed({ structure: true });
  }

  function connect(fromIndex, toIndex) {
    const list = steps();
    const from = stepIdOf(list[fromIndex]);
    const target = list[toIndex];
    if (!from || !target) return;
    const dependencies = dependenciesOf(target);
    if (!dependencies.includes(from)) setIdList(target, ['dependencies', 'dependsOn'], dependencies.concat(from));
    state.selection = { kind: 'edge', from, to: stepIdOf(target), edgeKind: 'dependency' };
    changed({ structure: true });
  }

  function removeEdge(edge) {
    const list = steps();
    if (edge.edgeKind === 'dependency') {
      const target = list.find((step) => stepIdOf(step) === edge.to);
      if (target) setIdList(target, ['dependencies', 'dependsOn'], dependenciesOf(target).filter((d) => d !== edge.from));
    } else {
      const condition = list.find((step) => stepIdOf(step) === edge.from);
      if (condition) setIdList(condition, [edge.edgeKind], idList(stepMember(condition, edge.edgeKind)).filter((t) => t !== edge.to));
    }
    state.selection = null;
    changed({ structure: true });
  }

  /// Renames a step, and every dependency and branch that names it. Expressions that read
  /// `steps.OLD` are left as written: the gateway's diagnostics point at them.
  function rename(index, newId) {
    const list = steps();
    const step = list[index];
    const oldId = stepIdOf(step);
    if (newId === oldId) return null;
    if (!STEP_ID.test(newId)) return 'An id is letters, digits and _, not starting with a digit.';
    if (everyId().has(newId)) return `Another step is already called ${newId}.`;
    setStepMember(step, ['id', 'stepId'], newId);
    for (const other of list) {
      const dependencies = dependenciesOf(other);
      if (dependencies.includes(oldId)) setIdList(other, ['dependencies', 'dependsOn'], dependencies.map((d) => (d === oldId ? newId : d)));
      if (stepTypeOf(other) === 'condition') {
        for (const branch of ['then', 'else']) {
          const targets = idList(stepMember(other, branch));
          if (targets.includes(oldId)) setIdList(other, [branch], targets.map((t) => (t === oldId ? newId : t)));
        }
      }
    }
    if (state.positions.has(oldId)) {
      state.positions.set(newId, state.positions.get(oldId));
      state.positions.delete(oldId);
      savePositions();
    }
    changed({ structure: true });
    return null;
  }

  function select(selection) {
    state.selection = selection;
    renderGraph();
    renderForm();
  }

  function arrange() {
    const list = steps();
    const laidOut = layoutSteps(list);
    state.positions = new Map(list.map((step, index) => [stepIdOf(step), laidOut[index]]));
    savePositions();
    renderGraph();
  }

  /// After any change of the model: redraw, show the YAML, and have the gateway check it.
  /// `structure` redraws the form too (a field being typed in is not redrawn).
  function changed({ structure = false } = {}) {
    if (disposed) return;
    const source = toYAML(state.document);
    yamlView.textContent = source;
    replace(title, h('strong', {}, workflowName() || '(no name)'), ' ', h('span', { class: 'mono' }, version() || '(no version)'));
    dirty.hidden = Boolean(state.saved && state.saved.source === source);
    renderGraph();
    if (structure) renderForm();
    else refreshRawEditor();
    validity.textContent = 'Checking…';
    validity.className = 'wf-validity muted';
    validateSoon();
  }

  // ---- validation ----------------------------------------------------------------------------

  async function validate() {
    if (disposed || !state.document) return;
    const number = (state.validation += 1);
    const source = toYAML(state.document);
    const before = JSON.stringify(state.problems);
    try {
      const result = await ctx.gw.call('workflows/validate', { source });
      if (disposed || number !== state.validation) return;
      state.problems = result.problems || [];
      validity.className = `wf-validity ${result.valid ? 'valid' : 'invalid'}`;
      validity.textContent = result.valid
        ? `Valid: ${result.stepCount ?? steps().length} step${(result.stepCount ?? steps().length) === 1 ? '' : 's'}`
        : `${state.problems.length} problem${state.problems.length === 1 ? '' : 's'}`;
    } catch (error) {
      if (disposed || number !== state.validation) return;
      state.problems = [];
      validity.className = 'wf-validity error-text';
      validity.textContent = `Cannot check the definition: ${errorText(error)}`;
    }
    // The graph shows the problems: it is redrawn only when they changed.
    if (JSON.stringify(state.problems) !== before || problemList.childElementCount !== state.problems.length) {
      renderProblems();
      renderGraph();
    }
  }

  function problemStepIndex(problem) {
    const match = STEP_PATH.exec(problem.path || '');
    if (!match) return null;
    const index = Number(match[1]);
    return index < steps().length ? index : null;
  }

  function problemText(problem) {
    const place = problem.line ? `${problem.line}:${problem.column ?? 1} ` : '';
    return `${place}${problem.path ? `${problem.path}: ` : ''}${problem.message}`;
  }

  function renderProblems() {
    const list = steps();
    replace(problemList, state.problems.map((problem) => {
      const index = problemStepIndex(problem);
      const stepId = index === null ? null : stepIdOf(list[index]);
      return h('li', {
        class: 'wf-problem', 'data-test': 'builder-problem', 'data-path': problem.path || '', 'data-step-id': stepId,
        tabindex: stepId === null ? null : 0,
        onclick: () => { if (index !== null) select({ kind: 'step', index }); },
      },
      stepId !== null ? h('span', { class: 'tag mono' }, stepId) : null,
      h('span', {}, problemText(problem)));
    }));
  }

  function problemsOf(index) {
    return state.problems.filter((problem) => problemStepIndex(problem) === index).map((problem) => problem.message);
  }

  // ---- drawing -------------------------------------------------------------------------------

  function renderGraph() {
    if (disposed || !state.document) return;
    graph.options.minimumSize = { width: Math.max(0, canvas.clientWidth - 2), height: Math.max(0, canvas.clientHeight - 2) };
    emptyHint.hidden = steps().length > 0;
    const selection = state.selection;
    graph.render({
      steps: steps(),
      positions: positionsArray(),
      problemsOf,
      selectedNode: selection && selection.kind === 'step' ? selection.index : null,
      selectedEdge: selection && selection.kind === 'edge' ? { from: selection.from, to: selection.to, kind: selection.edgeKind } : null,
      label: `Steps of ${workflowName()}`,
    });
  }

  function renderForm() {
    const selection = state.selection;
    if (selection && selection.kind === 'step' && steps()[selection.index]) {
      replace(form, stepForm(selection.index));
    } else if (selection && selection.kind === 'edge') {
      replace(form, edgeBox(selection), workflowForm());
    } else {
      state.selection = null;
      replace(form, workflowForm());
    }
  }

  function edgeBox(edge) {
    const text = edge.edgeKind === 'dependency'
      ? `${edge.to} waits for ${edge.from}`
      : `${edge.from} runs ${edge.to} when it takes "${edge.edgeKind}"`;
    return h('div', { class: 'wf-edge-box', 'data-test': 'builder-selected-edge' },
      h('h3', {}, edge.edgeKind === 'dependency' ? 'Dependency' : `Branch (${edge.edgeKind})`),
      h('p', {}, text),
      h('button', { type: 'button', class: 'button danger', 'data-test': 'builder-remove-edge', onclick: () => removeEdge(edge) },
        edge.edgeKind === 'dependency' ? 'Remove dependency' : 'Remove from branch'));
  }

  // ---- forms ---------------------------------------------------------------------------------

  /// A labelled row: the control carries `data-test=field-NAME`.
  function row(name, label, control, hint, error) {
    const id = `builder-field-${name}-${(fieldCount += 1)}`;
    control.id = id;
    control.setAttribute('data-test', `field-${name}`);
    return h('div', { class: 'wf-field' }, h('label', { for: id }, label), control,
      hint ? h('span', { class: 'muted wf-hint' }, hint) : null, error || null);
  }

  function textField(name, label, value, apply, { hint, event = 'input', placeholder, multiline = false, list } = {}) {
    const error = h('span', { class: 'error-text', hidden: true });
    const control = multiline
      ? h('textarea', { rows: 3, spellcheck: 'false', placeholder })
      : h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder, list });
    control.value = value === undefined || value === null ? '' : String(value);
    control.addEventListener(event, () => {
      const problem = apply(control.value);
      error.hidden = !problem;
      error.textContent = problem || '';
    });
    return row(name, label, control, hint, error);
  }

  function selectField(name, label, value, choices, apply) {
    const control = h('select', {}, choices.map(([choice, text]) => h('option', { value: choice, selected: choice === (value ?? '') }, text)));
    control.addEventListener('change', () => apply(control.value));
    return row(name, label, control);
  }

  /// A JSON member: applied as soon as the text parses; an empty field removes the member.
  function jsonField(name, label, value, apply, { hint, rows = 4 } = {}) {
    const error = h('span', { class: 'error-text', hidden: true });
    const control = h('textarea', { class: 'mono', rows, spellcheck: 'false', placeholder: 'JSON' });
    control.value = value === undefined ? '' : prettyJSON(value);
    control.addEventListener('input', () => {
      const text = control.value.trim();
      if (!text) {
        error.hidden = true;
        apply(undefined);
        return;
      }
      try {
        const parsed = JSON.parse(text);
        error.hidden = true;
        apply(parsed);
      } catch (failure) {
        error.hidden = false;
        error.textContent = `Not JSON yet: ${failure.message}`;
      }
    });
    return row(name, label, control, hint, error);
  }

  function listText(list) {
    return list.join(', ');
  }

  function parseList(text) {
    return text.split(/[\s,]+/).map((item) => item.trim()).filter(Boolean);
  }

  /// A duration as written: digits alone are seconds (a number), anything else a string.
  function parseDuration(text) {
    const trimmed = text.trim();
    if (!trimmed) return undefined;
    return DURATION_SECONDS.test(trimmed) ? Number(trimmed) : trimmed;
  }

  /// errorHandling is a word (fail, skip, retry) or a mapping ({"compensate": "ID"}).
  function parseErrorHandling(text) {
    const trimmed = text.trim();
    if (!trimmed) return { value: undefined };
    if (trimmed.startsWith('{')) {
      try { return { value: JSON.parse(trimmed) }; } catch (error) { return { problem: `Not JSON yet: ${error.message}` }; }
    }
    return { value: trimmed };
  }

  function formatErrorHandling(value) {
    if (value === undefined) return '';
    return typeof value === 'string' ? value : JSON.stringify(value);
  }

  function stepForm(index) {
    const step = steps()[index];
    const type = stepTypeOf(step);
    const edit = (names, value) => { setStepMember(step, names, value); changed(); };
    const id = stepIdOf(step);
    const dependencyChips = h('div', { class: 'wf-chips' }, dependenciesOf(step).map((dependency) => h('span', { class: 'tag mono' }, dependency,
      h('button', {
        type: 'button', class: 'wf-chip-remove', 'aria-label': `Remove the dependency on ${dependency}`,
        onclick: () => removeEdge({ from: dependency, to: id, edgeKind: 'dependency' }),
      }, '×'))));
    const fields = [
      h('div', { class: 'wf-form-head' },
        h('h3', {}, STEP_TYPE_LABELS[type] || type || 'Step'),
        h('span', { class: 'spacer' }),
        h('button', { type: 'button', class: 'button', 'data-test': 'builder-workflow-settings', onclick: () => select(null) }, 'Workflow settings')),
      textField('id', 'Id', id, (value) => rename(index, value.trim()), { event: 'change', hint: 'Letters, digits and _; references to it are renamed too.' }),
      selectField('type', 'Type', type, STEP_TYPES.map((t) => [t, STEP_TYPE_LABELS[t]]), (value) => {
        setStepMember(step, ['type', 'stepType'], value);
        changed({ structure: true });
      }),
      textField('description', 'Description', stepMember(step, 'description'), (value) => edit(['description'], value || undefined)),
      textField('dependencies', 'Depends on', listText(dependenciesOf(step)), (value) => {
        setIdList(step, ['dependencies', 'dependsOn'], parseList(value));
        changed();
      }, { hint: 'Step ids, separated by commas.' }),
      dependencyChips,
      textField('timeout', 'Timeout', stepMember(step, 'timeout'), (value) => edit(['timeout'], parseDuration(value)), {
        placeholder: '30s, 5m, 1h30m', hint: type === 'human_approval' ? 'How long to wait for a decision.' : 'The longest one attempt may take.',
      }),
    ];

    if (type === 'agent_task') {
      fields.push(
        textField('tool', 'Tool', stepMember(step, 'tool', 'taskType'), (value) => edit(['tool', 'taskType'], value.trim() || undefined), {
          list: toolList.id, placeholder: state.tools.length ? `e.g. ${state.tools[0]}` : 'tool name',
          hint: state.tools.length ? `${state.tools.length} tools offered now` : null,
        }),
        jsonField('input', 'Input (JSON)', stepMember(step, 'input', 'arguments', 'taskData'), (value) => edit(['input', 'arguments', 'taskData'], value), {
          hint: 'The tool’s arguments; strings may hold ${expressions}.',
        }));
    } else if (type === 'condition') {
      fields.push(
        textField('if', 'If', stepMember(step, 'if', 'condition'), (value) => edit(['if', 'condition'], value.trim() || undefined), { placeholder: 'steps.check.result.approved' }),
        textField('then', 'Then', listText(idList(stepMember(step, 'then'))), (value) => { setIdList(step, ['then'], parseList(value)); changed(); }, { hint: 'Steps to run when true.' }),
        textField('else', 'Else', listText(idList(stepMember(step, 'else'))), (value) => { setIdList(step, ['else'], parseList(value)); changed(); }, { hint: 'Steps to run when false.' }));
    } else if (type === 'loop') {
      const maxIterations = stepMember(step, 'maxIterations');
      fields.push(
        textField('maxIterations', 'Most iterations', maxIterations, (value) => {
          const trimmed = value.trim();
          if (!trimmed) { edit(['maxIterations'], undefined); return null; }
          if (!/^\d+$/.test(trimmed)) return 'A whole number.';
          edit(['maxIterations'], Number(trimmed));
          return null;
        }),
        textField('while', 'While', stepMember(step, 'while'), (value) => edit(['while'], value.trim() || undefined)),
        textField('until', 'Until', stepMember(step, 'until'), (value) => edit(['until'], value.trim() || undefined)),
        textField('forEach', 'For each', stepMember(step, 'forEach'), (value) => edit(['forEach'], value.trim() || undefined), { placeholder: 'inputs.symbols' }),
        selectField('onLimit', 'At the limit', stepMember(step, 'onLimit'), [['', 'default (fail)'], ['fail', 'fail'], ['complete', 'complete']],
          (value) => edit(['onLimit'], value || undefined)),
        jsonField('steps', 'Body (JSON list of steps)', stepMember(step, 'steps'), (value) => edit(['steps'], value), { rows: 8 }));
    } else if (type === 'parallel') {
      fields.push(jsonField('branches', 'Branches (JSON list)', stepMember(step, 'branches'), (value) => edit(['branches'], value), {
        rows: 10, hint: 'Each branch is a step, or a list of steps that run in order.',
      }));
    } else if (type === 'human_approval') {
      const approvers = stepMember(step, 'approvers');
      fields.push(
        textField('message', 'Message', stepMember(step, 'message'), (value) => edit(['message'], value || undefined), { multiline: true, placeholder: `Approve step ${id}?` }),
        textField('approvers', 'Approvers', Array.isArray(approvers) ? approvers.join(', ') : '', (value) => {
          const list = value.split(',').map((item) => item.trim()).filter(Boolean);
          edit(['approvers'], list.length ? list : undefined);
        }, { hint: 'Principals or role:NAME, separated by commas; empty: anyone.' }),
        selectField('onTimeout', 'At the deadline', stepMember(step, 'onTimeout'), [['', 'default (reject)'], ['reject', 'reject'], ['approve', 'approve']],
          (value) => edit(['onTimeout'], value || undefined)));
    }

    if (type !== 'condition' && type !== 'human_approval') {
      fields.push(jsonField('retryPolicy', 'Retry policy (JSON)', stepMember(step, 'retryPolicy'), (value) => edit(['retryPolicy'], value), {
        rows: 2, hint: '{"maxRetries": 3, "backoff": "exponential", "backoffDelay": "1s"}',
      }));
    }
    fields.push(textField('errorHandling', 'On failure', formatErrorHandling(stepMember(step, 'errorHandling')), (value) => {
      const { value: parsed, problem } = parseErrorHandling(value);
      if (problem) return problem;
      edit(['errorHandling'], parsed);
      return null;
    }, { placeholder: 'fail, skip, retry or {"compensate": "ID"}' }));

    const raw = h('textarea', { class: 'mono', rows: 10, spellcheck: 'false', 'data-test': 'field-raw', 'aria-label': 'The step as JSON' });
    raw.value = prettyJSON(step);
    const rawError = h('span', { class: 'error-text', hidden: true });
    fields.push(h('details', { class: 'wf-raw' },
      h('summary', {}, 'The step as JSON'),
      raw, rawError,
      h('div', { class: 'toolbar' }, h('button', {
        type: 'button', class: 'button', 'data-test': 'builder-raw-apply',
        onclick: () => {
          let parsed;
          try { parsed = JSON.parse(raw.value); } catch (error) {
            rawError.hidden = false;
            rawError.textContent = `Not JSON: ${error.message}`;
            return;
          }
          if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
            rawError.hidden = false;
            rawError.textContent = 'A step is a JSON object.';
            return;
          }
          rawError.hidden = true;
          const oldId = stepIdOf(step);
          const newId = stepIdOf(parsed);
          steps()[index] = parsed;
          if (oldId !== newId && state.positions.has(oldId)) {
            state.positions.set(newId, state.positions.get(oldId));
            state.positions.delete(oldId);
          }
          changed({ structure: true });
        },
      }, 'Apply'))));
    fields.push(h('div', { class: 'toolbar' },
      h('button', { type: 'button', class: 'button danger', 'data-test': 'builder-delete-step', onclick: () => deleteStep(index) }, 'Delete step')));
    return h('div', { class: 'wf-step-form', 'data-test': 'builder-step-form', 'data-step-id': id }, fields);
  }

  function refreshRawEditor() {
    const raw = form.querySelector('[data-test=field-raw]');
    const selection = state.selection;
    if (!raw || document.activeElement === raw || !selection || selection.kind !== 'step') return;
    const step = steps()[selection.index];
    if (step) raw.value = prettyJSON(step);
  }

  function workflowForm() {
    const document = state.document;
    const nameKey = Object.hasOwn(document, 'name') && !Object.hasOwn(document, 'workflowName') ? 'name' : 'workflowName';
    const edit = (name, value) => { setDocumentMember(name, value); changed(); };
    const member = (name) => documentHolder(name)[name];
    return h('div', { class: 'wf-workflow-form', 'data-test': 'builder-workflow-form' },
      h('h3', {}, 'Workflow'),
      textField('workflowName', 'Name', document[nameKey], (value) => {
        document[nameKey] = value.trim();
        changed();
      }, { hint: 'Letters, digits, _, - and .' }),
      textField('version', 'Version', document.version, (value) => {
        document.version = value.trim();
        changed();
      }, { hint: 'A stored version never changes: save changes under a new one.' }),
      textField('description', 'Description', member('description'), (value) => edit('description', value || undefined)),
      textField('timeout', 'Timeout', member('timeout'), (value) => edit('timeout', parseDuration(value)), { placeholder: '2h', hint: 'The longest an execution may take.' }),
      textField('errorHandling', 'On failure', formatErrorHandling(member('errorHandling')), (value) => {
        const { value: parsed, problem } = parseErrorHandling(value);
        if (problem) return problem;
        edit('errorHandling', parsed);
        return null;
      }, { placeholder: 'fail (default), skip, retry' }),
      jsonField('inputs', 'Inputs (JSON)', member('inputs'), (value) => edit('inputs', value), {
        hint: '{"symbol": {"type": "string"}, "quantity": {"type": "integer", "default": 100}}',
      }),
      jsonField('outputs', 'Outputs (JSON)', member('outputs'), (value) => edit('outputs', value), { hint: '{"orderId": "steps.order.result.orderId"}' }),
      jsonField('triggers', 'Triggers (JSON)', member('triggers'), (value) => edit('triggers', value), {
        rows: 3, hint: '["manual", {"event": "orders.filled"}, {"schedule": {"cron": "45 16 * * MON-FRI", "timezone": "Europe/London"}}]',
      }),
      jsonField('compensations', 'Compensations (JSON)', member('compensations'), (value) => edit('compensations', value), { rows: 3 }));
  }

  // ---- saving, running -----------------------------------------------------------------------

  function showStatus(message, kind, ...extra) {
    saveStatus.hidden = false;
    saveStatus.className = `wf-save-status ${kind === 'error' ? 'error-text' : ''}`;
    replace(saveStatus, h('span', {}, message), ...extra);
  }

  async function save() {
    const source = toYAML(state.document);
    if (saveButton) saveButton.disabled = true;
    try {
      const result = await ctx.gw.call('workflows/create', { source });
      if (disposed) return false;
      state.saved = { workflowName: result.workflowName, version: result.version, source };
      dirty.hidden = true;
      savePositions();
      showStatus(result.created === false
        ? `${result.workflowName} ${result.version} is stored already with this text.`
        : `Saved ${result.workflowName} ${result.version}.`, 'info');
      ctx.notify(`Saved ${result.workflowName} ${result.version}`, 'info');
      // The address names what is open now, without reopening it.
      history.replaceState(null, '', `#/builder/${encodeURIComponent(result.workflowName)}/${encodeURIComponent(result.version)}`);
      return true;
    } catch (error) {
      if (disposed) return false;
      const data = error.data || {};
      if (Array.isArray(data.problems)) {
        state.problems = data.problems;
        renderProblems();
        renderGraph();
        showStatus(`Not saved: ${errorText(error)}`, 'error');
      } else if (data.workflowName && data.version) {
        const next = bumpVersion(data.version);
        showStatus(`Not saved: ${errorText(error)} A stored version never changes; save this one as a new version.`, 'error',
          h('button', {
            type: 'button', class: 'button', 'data-test': 'builder-bump-version',
            onclick: () => {
              state.document.version = next;
              changed({ structure: true });
              saveStatus.hidden = true;
            },
          }, `Use version ${next}`));
      } else {
        showStatus(`Not saved: ${errorText(error)}`, 'error');
      }
      return false;
    } finally {
      if (saveButton) saveButton.disabled = false;
    }
  }

  async function run() {
    const source = toYAML(state.document);
    if (!state.saved || state.saved.source !== source) {
      if (!ctx.may('workflows/create')) {
        showStatus('Only a saved version can run, and this principal may not save.', 'error');
        return;
      }
      if (!(await save())) return;
    }
    const { workflowName: name, version: savedVersion } = state.saved;
    const inputs = documentHolder('inputs').inputs;
    if (inputs && typeof inputs === 'object' && Object.keys(inputs).length) {
      replace(runHolder, runPanel(ctx, { workflowName: name, version: savedVersion, onClose: () => replace(runHolder) }));
      return;
    }
    try {
      const execution = await ctx.gw.call('workflows/execute', { workflowName: name, version: savedVersion, inputs: {} });
      ctx.navigate(executionHash(execution.executionId));
    } catch (error) {
      showStatus(`Cannot run: ${errorText(error)}`, 'error');
    }
  }

  function download() {
    const source = toYAML(state.document);
    const blob = new Blob([source], { type: 'application/yaml' });
    const url = URL.createObjectURL(blob);
    const link = h('a', { href: url, download: `${workflowName() || 'workflow'}-${version() || 'draft'}.yaml` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // ---- positions -----------------------------------------------------------------------------

  function savePositions() {
    const name = workflowName();
    if (!name) return;
    try {
      localStorage.setItem(POSITIONS_KEY + name, JSON.stringify(Object.fromEntries(state.positions)));
    } catch { /* storage full or refused: positions stay in memory */ }
  }

  return () => {
    disposed = true;
    validateSoon.cancel?.();
    resize.disconnect();
    document.removeEventListener('keydown', onKey);
    graph.destroy();
  };
}

function readPositions(name) {
  try {
    const stored = JSON.parse(localStorage.getItem(POSITIONS_KEY + name) || '{}');
    return stored && typeof stored === 'object' ? stored : {};
  } catch {
    return {};
  }
}
