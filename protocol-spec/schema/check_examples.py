#!/usr/bin/env python3
"""Check the envelope schema against the examples, and the examples in the chapters.

Usage: python3 check_examples.py        (needs the `jsonschema` package)

1. Every file in examples/valid/ MUST pass, every file in examples/invalid/ MUST fail.
   A file holds one line exactly as it travels on the wire, terminated by "\\n".
2. Every gateway-to-client line quoted in the chapters (a line starting "<-- " inside a
   fenced block) MUST pass, and for every error it carries with a code that chapter 03
   defines, the `data` MUST match that code's schema fragment in chapter 03 and the `id`
   MUST follow chapter 03's rule for that code (null for -32700 and -32006; the request's id or null for
   -32003, whose id is read from the oversize line when it can be; the request's id for every
   other code chapter 03 defines). A request the gateway sends (a line with
   `method` and `id`) MUST have a string id beginning "sb-".
3. Within one fenced block, a result whose id is that of a `gateway/status` request quoted
   in the block MUST match the result schema of chapter 05, section 5.5; one whose id is
   that of a `tools/list`, `prompts/list`, `resources/list` or `resources/templates/list`
   request and that carries the modern-era stamp (`resultType`) MUST carry
   "cacheScope": "public" and "ttlMs" 5000, or 1000 while agents start (chapter 05, section 5.3,
   and chapter 07, section 7.3.5); the result of an
   `agents/get`, `agents/setState` or `agents/drain` request, and every entry of the `agents`
   array of an `agents/list` result, MUST match the AgentStatus schema of chapter 07,
   section 7.4; a `fleet/status` result MUST match the schema of chapter 16, section 16.9, a
   `gateway/reload` result that of section 16.15.1, and every entry of the `decisions` of a
   `fleet/decisions` result, of the `allocations` of a `fleet/allocations` result and of the
   `rollouts` of a `fleet/rollouts` result the schemas of sections 16.10, 16.11 and 16.17.
4. Every workflow in examples/workflows/ (YAML; needs the `yaml` package, PyYAML, and is
   skipped with a note without it) MUST match schema/workflow.schema.json (chapter 11).

"Pass" means the wire rules of chapters 01 and 02 that JSON Schema cannot express hold
(UTF-8, one line, no byte order mark, size: at most 8388608 bytes without the "\n" and
one "\r" before it, nesting depth, no duplicate envelope member, integers written without
fraction or exponent), and the envelope schema accepts the value. Member order is not
significant anywhere. Exits 0 when everything holds, 1 otherwise.
"""

import json
import pathlib
import re
import sys

try:
    import jsonschema
except ImportError:
    sys.exit("check_examples.py needs the jsonschema package (pip install jsonschema)")

HERE = pathlib.Path(__file__).resolve().parent
SPEC = HERE.parent
MAX_MESSAGE_BYTES = 8388608
MAX_NESTING_DEPTH = 512
ENVELOPE_MEMBERS = {"jsonrpc", "id", "method", "params", "result", "error"}
NULL_ID_CODES = {-32700, -32006}
ECHOED_ID_CODES = {-32601, -32602, -32603, -32002, -32004, -32005, -32010, -32011, -32012, -32013, -32014, -32015, -32022}
MODERN_LIST_MEMBERS = {"cacheScope": ["public"], "ttlMs": [5000, 1000]}
LIST_METHODS = {"tools/list", "prompts/list", "resources/list", "resources/templates/list"}
AGENT_STATUS_METHODS = {"agents/get", "agents/setState", "agents/drain"}
# method -> (the heading of its section in 16-fleet.md, the result member listing entries, or None
# when the schema is the whole result's)
FLEET_RESULTS = {
    "fleet/status": ("## 16.9 `fleet/status`", None),
    "fleet/decisions": ("## 16.10 `fleet/decisions`", "decisions"),
    "fleet/allocations": ("## 16.11 `fleet/allocations`", "allocations"),
    "fleet/rollouts": ("## 16.17 `fleet/rollouts`", "rollouts"),
    "gateway/reload": ("### 16.15.1 `gateway/reload`", None),
}


class WireError(Exception):
    pass


class Members(dict):
    """A JSON object that remembers which member names it saw more than once.

    Only the envelope's duplicates matter to the wire rules (chapter 02, section 2.1)."""

    duplicates: set


def object_pairs(pairs):
    obj = Members()
    obj.duplicates = set()
    for key, value in pairs:
        if key in obj:
            obj.duplicates.add(key)
        obj[key] = value
    return obj


def reject_constant(name):
    raise WireError(f"{name} is not JSON")


def depth(value):
    """Nesting depth of arrays and objects; the outermost one is depth 1. Iterative."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def strict_validator():
    """Draft 2020-12, except that an integer must be a JSON integer, not 1.0."""
    base = jsonschema.Draft202012Validator

    def is_integer(_checker, instance):
        return isinstance(instance, int) and not isinstance(instance, bool)

    checker = base.TYPE_CHECKER.redefine("integer", is_integer)
    return jsonschema.validators.extend(base, type_checker=checker)


StrictValidator = strict_validator()


def decode_line(raw: bytes):
    """Apply the framing rules to one line (with its terminator) and parse it."""
    if not raw.endswith(b"\n"):
        raise WireError("a line ends with \\n")
    line = raw[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]  # one "\r" before the "\n" is allowed on top of the size limit
    if b"\n" in line:
        raise WireError("a message must not contain a raw line feed")
    if len(line) > MAX_MESSAGE_BYTES:
        raise WireError(f"longer than {MAX_MESSAGE_BYTES} bytes")
    if line.startswith(b"\xef\xbb\xbf"):
        raise WireError("starts with a byte order mark")
    if not line.strip(b" \t\r"):
        raise WireError("a blank line is not a message")
    try:
        text = line.decode("utf-8", errors="strict")
    except UnicodeDecodeError as error:
        raise WireError(f"invalid UTF-8 at byte {error.start}") from None
    try:
        value = json.loads(text, object_pairs_hook=object_pairs, parse_constant=reject_constant)
    except json.JSONDecodeError as error:
        raise WireError(f"not JSON: {error.msg} at offset {error.pos}") from None
    if depth(value) > MAX_NESTING_DEPTH:
        raise WireError(f"nesting deeper than {MAX_NESTING_DEPTH}")
    envelopes = value if isinstance(value, list) else [value]
    for envelope in envelopes:
        if isinstance(envelope, Members) and envelope.duplicates & ENVELOPE_MEMBERS:
            raise WireError(f"duplicate envelope member {sorted(envelope.duplicates & ENVELOPE_MEMBERS)}")
    return value


def problems_of(raw: bytes, validator):
    try:
        value = decode_line(raw)
    except WireError as error:
        return [str(error)], None
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    return [f"schema: {e.message[:160]}" for e in errors], value


def error_data_schemas():
    """The `data` schema of every code chapter 03 defines, read from its headings."""
    text = (SPEC / "03-errors.md").read_text(encoding="utf-8")
    schemas = {}
    for match in re.finditer(r"^### (-\d+) [^\n]*\n(.*?)^```json\n(.*?)^```", text, re.M | re.S):
        code, fragment = int(match.group(1)), match.group(3)
        schemas[code] = json.loads(fragment)
    return schemas


def status_schema():
    """The result schema of gateway/status, the JSON block of chapter 05, section 5.5."""
    text = (SPEC / "05-methods.md").read_text(encoding="utf-8")
    section = text[text.index("## 5.5 `gateway/status`"):]
    match = re.search(r"^```json\n(.*?)^```", section, re.M | re.S)
    return json.loads(match.group(1))


def agent_status_schema():
    """The AgentStatus schema, the JSON block of chapter 07, section 7.4."""
    text = (SPEC / "07-agents.md").read_text(encoding="utf-8")
    section = text[text.index("## 7.4 The AgentStatus object"):]
    match = re.search(r"^```json\n(.*?)^```", section, re.M | re.S)
    return json.loads(match.group(1))


def fleet_validators():
    """method -> (member or None, validator): the first JSON block of each section of chapter 16
    that FLEET_RESULTS names."""
    text = (SPEC / "16-fleet.md").read_text(encoding="utf-8")
    validators = {}
    for method, (heading, member) in FLEET_RESULTS.items():
        section = text[text.index(heading):]
        match = re.search(r"^```json\n(.*?)^```", section, re.M | re.S)
        schema = json.loads(match.group(1))
        StrictValidator.check_schema(schema)
        validators[method] = (member, StrictValidator(schema))
    return validators


def example_blocks():
    """Every fenced block that quotes messages: (chapter, [(line number, marker, text)])."""
    for chapter in sorted(SPEC.glob("[0-9][0-9]-*.md")):
        fenced, block = False, []
        for number, line in enumerate(chapter.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("```"):
                if fenced and block:
                    yield chapter.name, block
                fenced, block = not fenced, []
            elif fenced and line[:4] in ("--> ", "<-- "):
                block.append((number, line[:3], line[4:]))


def requested_methods(block):
    """id (as JSON text) -> method, for every request the peer sends in one block."""
    methods = {}
    for _, marker, text in block:
        if marker != "-->":
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        for message in value if isinstance(value, list) else [value]:
            if isinstance(message, dict) and "id" in message and isinstance(message.get("method"), str):
                methods[json.dumps(message["id"])] = message["method"]
    return methods


def check_gateway_message(message, methods, data_schemas, status_validator, agent_validator, fleet):
    """The problems of one message the gateway sends, beyond the envelope schema."""
    if "method" in message and "id" in message and not str(message["id"]).startswith("sb-"):
        yield "a gateway request id must be a string starting sb-"
    if "result" in message:
        method = methods.get(json.dumps(message["id"]))
        result = message["result"]
        if method == "gateway/status":
            for problem in status_validator.iter_errors(result):
                yield f"gateway/status result: {problem.message[:160]}"
        if method in LIST_METHODS and isinstance(result, dict) and "resultType" in result:
            for name, allowed in MODERN_LIST_MEMBERS.items():
                if result.get(name) not in allowed:
                    yield f"a modern {method} result needs {name}: one of {json.dumps(allowed)}"
        statuses = []
        if method in AGENT_STATUS_METHODS:
            statuses = [result]
        elif method == "agents/list":
            if not isinstance(result, dict) or not isinstance(result.get("agents"), list):
                yield "an agents/list result needs an agents array"
            else:
                statuses = result["agents"]
        for status in statuses:
            for problem in agent_validator.iter_errors(status):
                yield f"{method} AgentStatus: {problem.message[:160]}"
        if method in fleet:
            member, validator = fleet[method]
            if member is None:
                entries = [result]
            elif not isinstance(result, dict) or not isinstance(result.get(member), list):
                yield f"a {method} result needs a {member} array"
                entries = []
            else:
                entries = result[member]
            for entry in entries:
                for problem in validator.iter_errors(entry):
                    yield f"{method} result: {problem.message[:160]}"
    error = message.get("error")
    if error is None or error["code"] not in data_schemas:
        return
    code = error["code"]
    if code in NULL_ID_CODES and message["id"] is not None:
        yield f"error {code} must have id null"
    if code in ECHOED_ID_CODES and message["id"] is None:
        yield f"error {code} echoes the request id, never null"
    if "data" not in error:
        yield f"error {code} from the gateway carries no data"
        return
    for problem in StrictValidator(data_schemas[code]).iter_errors(error["data"]):
        yield f"data of {code}: {problem.message[:160]}"


def main():
    schema = json.loads((HERE / "envelope.schema.json").read_text(encoding="utf-8"))
    StrictValidator.check_schema(schema)
    validator = StrictValidator(schema)
    failures, checked = [], 0

    for kind, must_pass in (("valid", True), ("invalid", False)):
        files = sorted((HERE / "examples" / kind).glob("*.json"))
        if not files:
            failures.append(f"examples/{kind}/ holds no examples")
        for path in files:
            checked += 1
            problems, _ = problems_of(path.read_bytes(), validator)
            if must_pass and problems:
                failures.append(f"examples/{kind}/{path.name} should pass: {problems[0]}")
            if not must_pass and not problems:
                failures.append(f"examples/{kind}/{path.name} should fail but passes")

    data_schemas = error_data_schemas()
    for code in (-32700, -32600, -32601, -32602, -32603, -32002, -32003, -32004,
                 -32010, -32011, -32012, -32013, -32022):
        if code not in data_schemas:
            failures.append(f"03-errors.md gives no data schema for {code}")
    status_validator = StrictValidator(status_schema())
    agent_schema = agent_status_schema()
    StrictValidator.check_schema(agent_schema)
    agent_validator = StrictValidator(agent_schema)
    fleet = fleet_validators()
    for chapter, block in example_blocks():
        methods = requested_methods(block)
        for number, marker, text in block:
            if marker != "<--":
                continue
            checked += 1
            where = f"{chapter}:{number}"
            problems, value = problems_of(text.encode("utf-8") + b"\n", validator)
            if problems:
                failures.append(f"{where}: {problems[0]}")
                continue
            for message in value if isinstance(value, list) else [value]:
                failures.extend(f"{where}: {problem}" for problem in
                                check_gateway_message(message, methods, data_schemas, status_validator,
                                                      agent_validator, fleet))

    workflow_schema = json.loads((HERE / "workflow.schema.json").read_text(encoding="utf-8"))
    StrictValidator.check_schema(workflow_schema)
    try:
        import yaml
    except ImportError:
        print("note: PyYAML is not installed; the workflows in examples/workflows/ were not checked")
    else:
        workflow_validator = StrictValidator(workflow_schema)
        for path in sorted((SPEC.parent / "examples" / "workflows").glob("*.yaml")):
            checked += 1
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
            for problem in workflow_validator.iter_errors(document):
                failures.append(f"examples/workflows/{path.name}: {problem.message[:160]}")

    for failure in failures:
        print("FAIL", failure)
    print(f"{checked} checks, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
