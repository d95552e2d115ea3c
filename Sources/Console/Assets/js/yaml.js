// A YAML emitter for workflow definitions, and nothing else: the gateway parses YAML
// (workflows/validate), so the console only has to write it.
//
// The output is block style throughout, with `{}` and `[]` for empty collections. A string is
// written bare only when no YAML reader could take it for anything else (a number, a boolean, a
// null, a date, an alias, a comment...); every other string is double-quoted with JSON's escapes,
// which are also YAML's. The gateway reads YAML 1.1 scalars (`yes`, `on`, `1_000`, `0x1F` and
// `1:30` are not strings there), so the bare form is kept to a conservative shape.

const bareString = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const wordsReadAsOtherScalars = new Set(['true', 'false', 'yes', 'no', 'on', 'off', 'y', 'n', 'null']);

/// The preferred order of a definition's members; members not named here follow in their own order.
const documentOrder = ['workflowName', 'name', 'version', 'description', 'inputs', 'triggers', 'timeout',
  'errorHandling', 'steps', 'compensations', 'outputs', 'definition'];
const stepOrder = ['id', 'stepId', 'type', 'stepType', 'description', 'dependencies', 'dependsOn'];

export function quoteIfNeeded(text) {
  if (bareString.test(text) && !wordsReadAsOtherScalars.has(text.toLowerCase())) return text;
  return quote(text);
}

/// A YAML double-quoted scalar. JSON.stringify gives the escapes; characters it leaves as they are
/// but YAML would not read back as written (C1 controls, line and paragraph separators, the byte
/// order mark, lone surrogates) are escaped too.
export function quote(text) {
  return JSON.stringify(text).replace(/[\u007f-\u009f\u2028\u2029\ufeff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
    (character) => '\\u' + character.charCodeAt(0).toString(16).padStart(4, '0'));
}

function scalar(value) {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return number(value);
  return quoteIfNeeded(String(value));
}

function number(value) {
  if (!Number.isFinite(value)) return value > 0 ? '.inf' : value < 0 ? '-.inf' : '.nan';
  const text = JSON.stringify(value);
  // YAML 1.1 reads `1e+21` as a string: its floats need a dot before the exponent.
  if (/e/i.test(text) && !text.includes('.')) return text.replace(/e/i, '.0e');
  return text;
}

function isCollection(value) {
  return value !== null && typeof value === 'object';
}

function isEmptyCollection(value) {
  return Array.isArray(value) ? value.length === 0 : Object.keys(value).length === 0;
}

function orderedKeys(object, order) {
  const keys = Object.keys(object);
  if (!order) return keys;
  const first = order.filter((key) => keys.includes(key));
  return first.concat(keys.filter((key) => !order.includes(key)));
}

function keyOrderFor(path) {
  if (path.length === 0 || (path.length === 1 && path[0] === 'definition')) return documentOrder;
  const last = path[path.length - 1];
  const parent = path[path.length - 2];
  // A step: an item of `steps`, `compensations`, `branches` (or of a branch that is a list).
  if (typeof last === 'number' && ['steps', 'compensations', 'branches'].includes(parent)) return stepOrder;
  if (typeof last === 'number' && typeof parent === 'number') return stepOrder;
  return null;
}

/// Lines of a mapping or a sequence at `indent` spaces; `path` is where it is in the document
/// (it decides the order of a step's or the document's members).
function block(value, indent, path) {
  const pad = ' '.repeat(indent);
  const lines = [];
  if (Array.isArray(value)) {
    value.forEach((item, index) => {
      if (isCollection(item) && !isEmptyCollection(item)) {
        // The item's first line goes after the dash; the rest are indented under it.
        const inner = block(item, indent + 2, path.concat(index));
        lines.push(pad + '- ' + inner[0].slice(indent + 2));
        lines.push(...inner.slice(1));
      } else {
        lines.push(pad + '- ' + inline(item));
      }
    });
    return lines;
  }
  for (const key of orderedKeys(value, keyOrderFor(path))) {
    const item = value[key];
    if (item === undefined) continue;
    const head = pad + quoteIfNeeded(key) + ':';
    if (isCollection(item) && !isEmptyCollection(item)) {
      lines.push(head);
      // A sequence under a key is indented too, so that the structure reads plainly.
      lines.push(...block(item, indent + 2, path.concat(key)));
    } else {
      lines.push(head + ' ' + inline(item));
    }
  }
  return lines;
}

function inline(value) {
  if (Array.isArray(value)) return '[]';
  if (isCollection(value)) return '{}';
  return scalar(value);
}

/// The YAML text of a JSON value (a workflow definition, usually), ending with a newline.
export function toYAML(value) {
  if (!isCollection(value) || isEmptyCollection(value)) return inline(value) + '\n';
  return block(value, 0, []).join('\n') + '\n';
}
