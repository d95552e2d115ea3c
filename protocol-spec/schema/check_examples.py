#!/usr/bin/env python3
"""Check the envelope schema against the examples, and the examples in the chapters.

Usage: python3 check_examples.py        (needs the `jsonschema` package)

1. Every file in examples/valid/ MUST pass, every file in examples/invalid/ MUST fail.
   A file holds one line exactly as it travels on the wire, terminated by "\\n".
2. Every gateway-to-client line quoted in the chapters (a line starting "<-- " inside a
   fenced block) MUST pass, and the `data` of every error it carries with a code that
   chapter 03 defines MUST match that code's schema fragment in chapter 03.

"Pass" means the wire rules of chapters 01 and 02 that JSON Schema cannot express hold
(UTF-8, one line, no byte order mark, size, nesting depth, no duplicate envelope member,
integers written without fraction or exponent), and the envelope schema accepts the value.
Exits 0 when everything holds, 1 otherwise.
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


class WireError(Exception):
    pass


class Members(dict):
    """A JSON object that remembers which member names it saw more than once."""

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
        line = line[:-1]
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
        if isinstance(envelope, Members) and envelope.duplicates:
            raise WireError(f"duplicate envelope member {sorted(envelope.duplicates)}")
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


def gateway_lines():
    """(chapter, line number, text) of every "<-- " line inside a fenced block."""
    for chapter in sorted(SPEC.glob("[0-9][0-9]-*.md")):
        fenced = False
        for number, line in enumerate(chapter.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("```"):
                fenced = not fenced
            elif fenced and line.startswith("<-- "):
                yield chapter.name, number, line[4:]


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
    for code in (-32700, -32600, -32601, -32602, -32603, -32003, -32004, -32022):
        if code not in data_schemas:
            failures.append(f"03-errors.md gives no data schema for {code}")
    for chapter, number, text in gateway_lines():
        checked += 1
        where = f"{chapter}:{number}"
        problems, value = problems_of(text.encode("utf-8") + b"\n", validator)
        if problems:
            failures.append(f"{where}: {problems[0]}")
            continue
        for message in value if isinstance(value, list) else [value]:
            if "method" in message and "id" in message and not str(message["id"]).startswith("sb-"):
                failures.append(f"{where}: a gateway request id must be a string starting sb-")
            error = message.get("error")
            if error is None or error["code"] not in data_schemas:
                continue
            if "data" not in error:
                failures.append(f"{where}: error {error['code']} from the gateway carries no data")
                continue
            for problem in StrictValidator(data_schemas[error["code"]]).iter_errors(error["data"]):
                failures.append(f"{where}: data of {error['code']}: {problem.message[:160]}")

    for failure in failures:
        print("FAIL", failure)
    print(f"{checked} checks, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
