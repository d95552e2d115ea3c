#!/usr/bin/env python3
"""Switchboard wire-contract conformance runner.

Needs only the Python 3.9+ standard library.  Runs every case found in the
cases folder (JSON files, see README.md) against one gateway reached over one
transport:

    python3 run.py --stdio "switchboard serve --stdio"     # fresh process per case
    python3 run.py --tcp 127.0.0.1:7400                    # fresh connection per case
    python3 run.py --unix /run/switchboard.sock            # fresh connection per case
    python3 run.py --http http://127.0.0.1:8080            # /mcp, a fresh client per connection
    python3 run.py --spawn "switchboard serve --listen tcp://127.0.0.1:0" --tcp auto
    python3 run.py --spawn "switchboard serve --listen http://127.0.0.1:0" --http auto

A case may open several connections to the gateway (sockets and HTTP only) and
may act as an agent: expect requests from the gateway and answer them.  Over
HTTP each connection is an MCP Streamable HTTP client (see HTTPBridge and
--help).

Prints one line per case (PASS/FAIL), the number of cases run, the number that
do not apply to the chosen transport (by reason), and finally the line
"N passed, M failed".  Exit status 0 when nothing failed, 1 when a case failed,
2 on a usage or case-file error.
"""

import argparse
import base64
import glob
import http.client
import json
import os
import queue
import re
import select
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

TRANSPORTS = ("stdio", "tcp", "unix", "http")
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
MAX_REPLY_BYTES = 64 * 1024 * 1024      # a reply line longer than this is a failure
GEN_CHUNK = 1 << 20                     # generated payloads are written in 1 MiB pieces
WRITE_SLICE = 256 * 1024
DEFAULT_DELAY_MS = 20                   # pause between explicit chunks (split reads)

STEP_KINDS = ("send", "send_raw", "send_bytes_hex", "send_many", "send_parts",
              "expect", "expect_unordered", "expect_none_before_next",
              "expect_closed", "close_write", "signal",
              "expect_request", "respond", "poll", "disconnect")
SEND_OPTIONS = ("split_at", "chunk_size", "delay_ms", "total_bytes")
STEP_OPTIONS = ("timeout", "comment", "connection")
KIND_OPTIONS = {"expect_request": ("as",), "poll": ("until", "interval_ms")}
ENDING_KINDS = ("close_write", "signal", "expect_closed", "disconnect")
DEFAULT_CONNECTION = "a"
CONNECTION_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,15}$")
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_POLL_INTERVAL_MS = 50

HTTP_ACCEPT = "application/json, text/event-stream"
HTTP_SESSION_VERSION = "2025-03-26"     # the hidden initialize's version: batches allowed
MODERN_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
HTTP_ORDER_GRACE = 0.2                  # seconds a POST's reply is awaited before the next line goes
HTTP_NAME_MEMBERS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


class CaseFormatError(Exception):
    """A case file does not follow the documented format."""


class Failure(Exception):
    """The implementation did not behave as the case requires."""


# --------------------------------------------------------------------------
# helpers

def preview(data, limit=300):
    """Short printable form of bytes / a JSON value for messages."""
    if isinstance(data, (bytes, bytearray)):
        text = bytes(data[:limit]).decode("utf-8", "backslashreplace")
        text = text.replace("\n", "\\n").replace("\r", "\\r")
        more = len(data) - limit
    else:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        more = len(text) - limit
        text = text[:limit]
    if more > 0:
        text += "... (%d more)" % more
    return text


def compact(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def kind_of(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError("duplicate member %r in an object" % k)
        obj[k] = v
    return obj


def _no_constants(name):
    raise ValueError("non-JSON constant %s" % name)


def parse_reply(line):
    """Strictly parse one line received from the gateway."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Failure("reply is not valid UTF-8 (%s): %s" % (e, preview(line)))
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates,
                          parse_constant=_no_constants)
    except (ValueError, RecursionError) as e:
        raise Failure("reply is not one valid JSON text (%s): %s" % (e, preview(line)))


RESPONSE_MEMBERS = {"jsonrpc", "id", "result", "error"}


def envelope_problem(msg):
    """Check a received message against the JSON-RPC 2.0 response envelope.

    Returns a description of the problem, or None.  Arrays (batch replies)
    are checked member by member.
    """
    if isinstance(msg, list):
        if not msg:
            return "empty array sent (JSON-RPC never replies with [])"
        for i, m in enumerate(msg):
            p = envelope_problem(m)
            if p:
                return "batch reply member %d: %s" % (i, p)
        return None
    if not isinstance(msg, dict):
        return "reply is %s, not an object or array" % kind_of(msg)
    if msg.get("jsonrpc") != "2.0":
        return 'member "jsonrpc" is not exactly "2.0"'
    if "method" in msg:
        return message_problem(msg)
    extra = set(msg) - RESPONSE_MEMBERS
    if extra:
        return "response has members outside jsonrpc/id/result/error: %s" % sorted(extra)
    if "id" not in msg:
        return 'response has no "id" member'
    if kind_of(msg["id"]) not in ("string", "integer", "null"):
        return "response id is %s" % kind_of(msg["id"])
    if ("result" in msg) == ("error" in msg):
        return 'response must have exactly one of "result" and "error"'
    if "error" in msg:
        err = msg["error"]
        if not isinstance(err, dict):
            return "error member is not an object"
        if kind_of(err.get("code")) != "integer":
            return "error.code is not an integer"
        if kind_of(err.get("message")) != "string":
            return "error.message is not a string"
        extra = set(err) - {"code", "message", "data"}
        if extra:
            return "error object has members outside code/message/data: %s" % sorted(extra)
    elif msg["id"] is None:
        return "a result response with id null"
    return None


def message_problem(msg):
    """Check a request or notification sent by the gateway; None when well-formed."""
    if not isinstance(msg["method"], str):
        return "method is %s, not a string" % kind_of(msg["method"])
    extra = set(msg) - {"jsonrpc", "id", "method", "params"}
    if extra:
        return "request or notification has members outside jsonrpc/id/method/params: %s" % sorted(extra)
    if "id" in msg and kind_of(msg["id"]) not in ("string", "integer"):
        return "request id is %s (a request id is a string or an integer)" % kind_of(msg["id"])
    if "params" in msg and kind_of(msg["params"]) not in ("object", "array"):
        return "params is %s, not an object or array" % kind_of(msg["params"])
    return None


def is_request(msg):
    return isinstance(msg, dict) and "method" in msg and "id" in msg


def is_var_ref(value):
    return (isinstance(value, dict) and "$var" in value
            and set(value) <= {"$var", "$times", "$plus"})


def substitute(value, variables):
    """Replace every {"$var": NAME} in a value to send by the variable's value."""
    if is_var_ref(value):
        name = value["$var"]
        if name not in variables:
            raise CaseFormatError("variable %r is not set (captured by an earlier step?)" % name)
        v = variables[name]
        if "$times" in value:
            v = int(v * value["$times"])
        if "$plus" in value:
            v = v + value["$plus"]
        return v
    if isinstance(value, dict):
        return {k: substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    return value


# --------------------------------------------------------------------------
# pattern matching

class Matcher:
    def __init__(self, variables):
        self.vars = variables
        self.pending = {}  # captures of the match in progress, kept only if it succeeds

    def for_case(self):
        """A matcher with its own copy of the variables, for one case's captures."""
        return Matcher(dict(self.vars))

    def match_step(self, p, a):
        """Match a whole message; on success keep the values it captured."""
        self.pending = {}
        err = self.match(p, a)
        if err is None:
            self.vars.update(self.pending)
        self.pending = {}
        return err

    def trial(self, p, a, path="$"):
        """Match without keeping captures unless it succeeds."""
        saved = dict(self.pending)
        err = self.match(p, a, path)
        if err is not None:
            self.pending = saved
        return err

    def not_applicable(self, case, transport):
        """Why `case` cannot run here, or None."""
        if transport not in case.transports:
            return case.why_not.get(transport) or "only %s" % ", ".join(case.transports)
        for name, bound in case.requires_min.items():
            if name not in self.vars:
                raise CaseFormatError("%s: unknown variable %r" % (case.full_name, name))
            if self.vars[name] < bound:
                return "needs %s >= %d" % (name, bound)
        for name, bound in case.requires_max.items():
            if name not in self.vars:
                raise CaseFormatError("%s: unknown variable %r" % (case.full_name, name))
            if self.vars[name] > bound:
                return "needs %s <= %d" % (name, bound)
        return None

    @staticmethod
    def is_matcher(p):
        return isinstance(p, dict) and bool(p) and all(k.startswith("$") for k in p)

    def resolve_var(self, spec):
        name = spec["$var"]
        if name in self.pending:
            v = self.pending[name]
        elif name in self.vars:
            v = self.vars[name]
        else:
            raise CaseFormatError("unknown variable %r (not captured by an earlier step?)" % name)
        if "$times" in spec:
            v = int(v * spec["$times"])
        if "$plus" in spec:
            v = v + spec["$plus"]
        return v

    def match(self, p, a, path="$"):
        """Return None when `a` matches pattern `p`, else a message."""
        if self.is_matcher(p):
            return self.match_matcher(p, a, path)
        if isinstance(p, dict):
            if not isinstance(a, dict):
                return "%s: expected an object, got %s %s" % (path, kind_of(a), preview(a, 120))
            return self.match_members(p, a, path)
        if isinstance(p, list):
            if not isinstance(a, list):
                return "%s: expected an array, got %s %s" % (path, kind_of(a), preview(a, 120))
            if len(p) != len(a):
                return "%s: expected an array of %d, got %d: %s" % (path, len(p), len(a), preview(a, 200))
            for i, (pi, ai) in enumerate(zip(p, a)):
                err = self.match(pi, ai, "%s[%d]" % (path, i))
                if err:
                    return err
            return None
        if kind_of(p) != kind_of(a) or p != a:
            return "%s: expected %s %s, got %s %s" % (path, kind_of(p), preview(p, 120),
                                                       kind_of(a), preview(a, 120))
        return None

    def match_members(self, p, a, path):
        for key, sub in p.items():
            sub_path = "%s.%s" % (path, key)
            if self.is_matcher(sub) and "$absent" in sub:
                if key in a:
                    return "%s: expected absent, got %s" % (sub_path, preview(a[key], 120))
                continue
            if self.is_matcher(sub) and "$optional" in sub:
                if key not in a:
                    continue
                sub = sub["$optional"]
            if key not in a:
                return "%s: missing (object has %s)" % (sub_path, sorted(a))
            err = self.match(sub, a[key], sub_path)
            if err:
                return err
        return None

    def match_matcher(self, p, a, path):
        for op, arg in p.items():
            err = self.one_matcher(op, arg, p, a, path)
            if err:
                return err
        return None

    def one_matcher(self, op, arg, whole, a, path):
        if op == "$any":
            return None
        if op == "$capture":
            if not isinstance(arg, str) or not VARIABLE_NAME.match(arg):
                raise CaseFormatError("$capture takes a variable name, got %r" % (arg,))
            self.pending[arg] = a
            return None
        if op == "$not":
            saved = dict(self.pending)
            err = self.match(arg, a, path)
            self.pending = saved
            if err is None:
                return "%s: expected not to match %s, got %s" % (path, preview(arg, 120), preview(a, 120))
            return None
        if op in ("$absent", "$optional"):
            if op == "$optional":
                return self.match(arg, a, path)
            return "%s: present, expected absent" % path
        if op == "$literal":
            if kind_of(arg) != kind_of(a) or arg != a:
                return "%s: expected literally %s, got %s" % (path, preview(arg, 120), preview(a, 120))
            return None
        if op == "$var":
            v = self.resolve_var(whole)
            return self.match({"$literal": v}, a, path)
        if op in ("$plus", "$times"):
            return None
        if op == "$type":
            types = arg if isinstance(arg, list) else [arg]
            k = kind_of(a)
            ok = k in types or (k in ("integer", "float") and "number" in types)
            if not ok:
                return "%s: expected type %s, got %s %s" % (path, "|".join(types), k, preview(a, 120))
            return None
        if op in ("$contains", "$icontains"):
            if not isinstance(a, str):
                return "%s: expected a string containing %r, got %s" % (path, arg, kind_of(a))
            hay, needle = (a.lower(), arg.lower()) if op == "$icontains" else (a, arg)
            if needle not in hay:
                return "%s: expected a string containing %r, got %r" % (path, arg, a)
            return None
        if op == "$regex":
            if not isinstance(a, str) or not re.search(arg, a):
                return "%s: expected a string matching /%s/, got %s" % (path, arg, preview(a, 120))
            return None
        if op in ("$gte", "$lte"):
            if kind_of(a) not in ("integer", "float"):
                return "%s: expected a number, got %s" % (path, kind_of(a))
            if (op == "$gte" and a < arg) or (op == "$lte" and a > arg):
                return "%s: expected %s %s, got %s" % (path, op[1:], arg, a)
            return None
        if op == "$one_of":
            errs = []
            for alt in arg:
                err = self.trial(alt, a, path)
                if err is None:
                    return None
                errs.append(err)
            return "%s: matches none of the alternatives (%s)" % (path, "; ".join(errs))
        if op == "$exact":
            if isinstance(arg, dict) and not self.is_matcher(arg):
                if not isinstance(a, dict):
                    return "%s: expected an object, got %s" % (path, kind_of(a))
                err = self.match_members(arg, a, path)
                if err:
                    return err
                extra = sorted(set(a) - set(arg))
                if extra:
                    return "%s: unexpected members %s (exactly %s expected)" % (path, extra, sorted(arg))
                return None
            return self.match(arg, a, path)
        if op == "$array_of":
            if not isinstance(a, list):
                return "%s: expected an array, got %s" % (path, kind_of(a))
            for i, item in enumerate(a):
                err = self.match(arg, item, "%s[%d]" % (path, i))
                if err:
                    return err
            return None
        if op == "$includes":
            if not isinstance(a, list):
                return "%s: expected an array, got %s" % (path, kind_of(a))
            if any(self.trial(arg, item) is None for item in a):
                return None
            return "%s: no element matches %s in %s" % (path, preview(arg, 120), preview(a, 200))
        if op == "$len":
            if not isinstance(a, (list, str, dict)) or len(a) != arg:
                return "%s: expected length %s, got %s" % (path, arg, preview(a, 120))
            return None
        if op == "$unordered":
            if not isinstance(a, list):
                return "%s: expected an array (unordered), got %s %s" % (path, kind_of(a), preview(a, 200))
            return self.match_unordered(arg, a, path)
        raise CaseFormatError("unknown matcher %r" % op)

    def match_unordered(self, patterns, items, path):
        if len(patterns) != len(items):
            return "%s: expected %d entries (any order), got %d: %s" % (
                path, len(patterns), len(items), preview(items, 400))
        n = len(items)
        saved = dict(self.pending)
        ok = []
        for i in range(n):
            row = []
            for j in range(n):
                row.append(self.match(patterns[i], items[j]) is None)
                self.pending = dict(saved)
            ok.append(row)
        owner = [-1] * n  # item j -> pattern index

        def augment(i, seen):
            for j in range(n):
                if ok[i][j] and not seen[j]:
                    seen[j] = True
                    if owner[j] < 0 or augment(owner[j], seen):
                        owner[j] = i
                        return True
            return False

        unmatched = [i for i in range(n) if not augment(i, [False] * n)]
        if not unmatched:
            for j in range(n):  # once more, pair by pair, to keep what the patterns capture
                self.match(patterns[owner[j]], items[j])
            return None
        leftovers = [items[j] for j in range(n) if owner[j] < 0]
        details = []
        for i in unmatched:
            if leftovers:
                details.append("pattern %s; closest: %s" % (
                    preview(patterns[i], 150), self.match(patterns[i], leftovers[0], "entry")))
            else:
                details.append("pattern %s" % preview(patterns[i], 150))
        return "%s: %d of %d entries unmatched: %s; received %s" % (
            path, len(unmatched), n, " | ".join(details), preview(items, 400))


# --------------------------------------------------------------------------
# payload generation

def hexbytes(s):
    try:
        return bytes.fromhex("".join(s.split()))
    except ValueError as e:
        raise CaseFormatError("bad hex %r: %s" % (s, e))


def size_value(v, variables):
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, dict) and "$var" in v:
        name = v["$var"]
        if name not in variables:
            raise CaseFormatError("unknown variable %r" % name)
        return int(variables[name] * v.get("$times", 1)) + v.get("$plus", 0)
    raise CaseFormatError("a size must be an integer or {\"$var\": ..., \"$times\": F, \"$plus\": N}, got %r" % (v,))


def segment_plan(seg, variables):
    """Return (length, generator-factory) for one send_parts segment."""
    if isinstance(seg, str):
        b = seg.encode("utf-8")
        return len(b), (lambda: iter([b]))
    if not isinstance(seg, dict):
        raise CaseFormatError("bad send_parts segment %r" % (seg,))
    if "text" in seg:
        b = seg["text"].encode("utf-8")
        return len(b), (lambda: iter([b]))
    if "hex" in seg:
        b = hexbytes(seg["hex"])
        return len(b), (lambda: iter([b]))
    if "json" in seg:
        b = compact(seg["json"])
        return len(b), (lambda: iter([b]))
    if "repeat" in seg:
        unit = seg["repeat"].encode("utf-8")
        count = size_value(seg.get("count"), variables)
        if not unit or count < 0:
            raise CaseFormatError("bad repeat segment %r" % (seg,))

        def gen_repeat():
            per = max(1, GEN_CHUNK // len(unit))
            left = count
            while left > 0:
                k = min(per, left)
                yield unit * k
                left -= k
        return len(unit) * count, gen_repeat
    if "fill" in seg:
        unit = seg["fill"].encode("utf-8")
        if not unit:
            raise CaseFormatError("fill needs a non-empty string")
        return ("fill", unit, seg.get("bytes")), None
    raise CaseFormatError("bad send_parts segment %r" % (seg,))


def fill_gen(unit, n):
    def gen():
        block = (unit * (GEN_CHUNK // len(unit) + 1))[:GEN_CHUNK]
        left = n
        while left > 0:
            k = min(left, GEN_CHUNK)
            yield block[:k]
            left -= k
    return gen


def build_parts(parts, total, variables):
    """Return (total_length, generator of byte chunks) for a send_parts list."""
    if not isinstance(parts, list):
        raise CaseFormatError("send_parts takes a list of segments")
    plans = [segment_plan(s, variables) for s in parts]
    known = 0
    auto = None
    resolved = []
    for i, (length, factory) in enumerate(plans):
        if factory is None:  # fill
            _, unit, size = length
            if size == "auto":
                if auto is not None:
                    raise CaseFormatError("only one fill segment may use \"bytes\": \"auto\"")
                auto = i
                resolved.append(None)
                continue
            n = size_value(size, variables)
            resolved.append((n, fill_gen(unit, n)))
            known += n
        else:
            resolved.append((length, factory))
            known += length
    if auto is not None:
        if total is None:
            raise CaseFormatError("\"bytes\": \"auto\" needs \"total_bytes\" on the step")
        t = size_value(total, variables)
        n = t - known
        if n < 0:
            raise CaseFormatError("total_bytes smaller than the fixed segments")
        resolved[auto] = (n, fill_gen(plans[auto][0][1], n))
    length = sum(r[0] for r in resolved)

    def gen():
        for _, factory in resolved:
            for chunk in factory():
                yield chunk
    return length, gen


# --------------------------------------------------------------------------
# channels, reader and writer threads

class SocketChannel:
    def __init__(self, sock):
        self.sock = sock
        sock.setblocking(False)
        self.rfd = self.wfd = sock.fileno()

    def read(self, n):
        return self.sock.recv(n)

    def write(self, b):
        return self.sock.send(b)

    def shutdown_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def wake_reader(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self, abort=False):
        try:
            if abort:
                # A reset, so that the gateway notices at once even while it still waits for
                # this connection (a failed case may leave requests unanswered on both sides).
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass


class PipeChannel:
    def __init__(self, proc):
        self.proc = proc
        self.rfd = proc.stdout.fileno()
        self.wfd = proc.stdin.fileno()
        os.set_blocking(self.rfd, False)
        os.set_blocking(self.wfd, False)
        self.write_closed = False

    def read(self, n):
        return os.read(self.rfd, n)

    def write(self, b):
        return os.write(self.wfd, b)

    def shutdown_write(self):
        if not self.write_closed:
            self.write_closed = True
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def close(self, abort=False):
        self.shutdown_write()
        try:
            self.proc.stdout.close()
        except OSError:
            pass


class HTTPChannel(SocketChannel):
    """The runner's end of an HTTPBridge: read and written like any socket."""

    def __init__(self, bridge):
        super().__init__(bridge.runner_end)
        self.bridge = bridge

    @property
    def eof_note(self):
        return self.bridge.note

    def close(self, abort=False):
        self.bridge.close()
        super().close(abort)


def lenient_json(body):
    """The JSON value of a line about to be sent, or None (it is sent all the same)."""
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return None


def carries_envelope(msg):
    """Whether a message (or a batch member) belongs to the 2026-07-28 era: the envelope in
    params._meta, or server/discover, the request such a client sends first."""
    if isinstance(msg, list):
        return any(carries_envelope(m) for m in msg)
    if not isinstance(msg, dict):
        return False
    if msg.get("method") == "server/discover" and "id" in msg:
        return True
    params = msg.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and MODERN_VERSION_KEY in meta


def is_initialize(msg):
    return isinstance(msg, dict) and msg.get("method") == "initialize" and "id" in msg


def header_value(text):
    """A header value as MCP writes it: as is when printable ASCII, else =?base64?...?=."""
    if text == text.strip() and all(" " <= c <= "~" for c in text):
        return text
    return "=?base64?%s?=" % base64.b64encode(text.encode("utf-8")).decode("ascii")


def stateless_headers(msg):
    """MCP-Protocol-Version, Mcp-Method and Mcp-Name of a 2026-07-28 request, from its body."""
    first = next((m for m in msg if isinstance(m, dict)), None) if isinstance(msg, list) else msg
    if not isinstance(first, dict):
        return {}
    headers = {}
    params = first.get("params") if isinstance(first.get("params"), dict) else {}
    meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
    if isinstance(meta.get(MODERN_VERSION_KEY), str):
        headers["MCP-Protocol-Version"] = header_value(meta[MODERN_VERSION_KEY])
    method = first.get("method")
    if isinstance(method, str):
        headers["Mcp-Method"] = header_value(method)
        name = params.get(HTTP_NAME_MEMBERS.get(method))
        if isinstance(name, str):
            headers["Mcp-Name"] = header_value(name)
    return headers


def event_data(resp):
    """The data of each server-sent event of a response, until it ends (events without data,
    such as the priming event, are skipped)."""
    data = []
    while True:
        raw = resp.readline()
        if not raw:
            return
        line = raw.rstrip(b"\r\n")
        if not line:
            event = b"\n".join(data)
            data = []
            if event.strip():
                yield event
            continue
        field, _, value = line.partition(b":")
        if field == b"data":
            data.append(value[1:] if value.startswith(b" ") else value)


class HTTPExchange:
    """One request of a bridge and what came back."""

    def __init__(self, method, body, headers, quiet):
        self.method = method
        self.body = body
        self.headers = headers
        self.quiet = quiet          # its replies are the bridge's own, not shown to the case
        self.status = None
        self.reply_headers = None
        self.messages = []
        self.error = None
        self.written = threading.Event()
        self.answered = threading.Event()
        self.done = threading.Event()


LIST_CHANGED = ("notifications/tools/list_changed", "notifications/prompts/list_changed",
                "notifications/resources/list_changed")
HIDDEN_INITIALIZE = compact({
    "jsonrpc": "2.0", "id": "conformance-http-initialize", "method": "initialize",
    "params": {"protocolVersion": HTTP_SESSION_VERSION, "capabilities": {},
               "clientInfo": {"name": "conformance-run.py", "version": "1"}}})
INITIALIZED = compact({"jsonrpc": "2.0", "method": "notifications/initialized"})


class HTTPBridge:
    """One connection of a case carried over MCP Streamable HTTP (POST and GET on /mcp).

    The runner reads and writes one end of a socket pair, as it would a socket; the bridge
    serves the other end.  Each complete line written is one POST whose body is the line as
    written (without its LF or CRLF; blank lines are skipped, as the line transports skip
    them).  Each message that comes back is one line read: a JSON body as it came (a batch
    reply, an array, stays one line), or the data of each server-sent event of the POST's
    stream and of the session's GET stream.  A POST's reply is awaited for HTTP_ORDER_GRACE
    seconds before the next line goes, so that the gateway sees the lines in order; a request
    that takes longer (an agent's call) is still in flight while later lines go out.

    The era is chosen per connection, as a client would choose it:
    - a line that carries the 2026-07-28 envelope (params._meta[MODERN_VERSION_KEY]), or is a
      server/discover request, is sent stateless, with the MCP-Protocol-Version, Mcp-Method and
      Mcp-Name headers its body calls for;
    - an initialize request opens a session: its Mcp-Session-Id and negotiated version go with
      every later line;
    - any other line needs a session first: the bridge opens one with a hidden initialize at
      HTTP_SESSION_VERSION (the one version that allows batches, the closest to plain
      JSON-RPC) and notifications/initialized, whose replies the case never sees.  The
      list_changed notifications that handshake subscribed to are dropped too (the gateway
      sends none to a plain connection).  A case's own initialize later replaces that session.
    Once a session is open, its GET stream brings what the gateway sends on its own
    (notifications, events, requests to an agent).  Closing the connection ends the session
    with DELETE, as closing a socket ends a connection.
    """

    def __init__(self, address, timeout, log):
        self.host, self.port, self.path = address
        self.timeout = timeout
        self.log = log
        self.runner_end, self.end = socket.socketpair()
        self.session = None         # Mcp-Session-Id
        self.version = None         # the session's protocol version
        self.hidden = False         # the session is the bridge's, not opened by the case
        self.stream = None          # the connection of the session's GET stream
        self.note = None            # why the bridge ended the stream, if it did
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.idle = []              # keep-alive connections free for the next request
        self.connections = set()    # every connection open, closed at the end
        self.closing = False
        threading.Thread(target=self.run, daemon=True).start()

    # lines in ----------------------------------------------------------
    def run(self):
        buf = bytearray()
        scan = 0
        try:
            while not self.note:
                data = self.end.recv(1 << 20)
                if not data:
                    return
                buf += data
                while not self.note:
                    i = buf.find(b"\n", scan)
                    if i < 0:
                        scan = len(buf)
                        break
                    line = bytes(buf[:i])
                    del buf[:i + 1]
                    scan = 0
                    self.dispatch(line[:-1] if line.endswith(b"\r") else line)
        except OSError:
            pass

    def dispatch(self, body):
        if self.closing or not body.strip(b" \t\r"):
            return
        msg = lenient_json(body)
        if carries_envelope(msg):
            self.post(body, stateless_headers(msg))
        elif is_initialize(msg) and (self.session is None or self.hidden):
            self.end_session()
            self.open_session(body, hidden=False)
        elif self.session or self.open_session(HIDDEN_INITIALIZE, hidden=True):
            self.post(body, self.session_headers())

    # sessions ----------------------------------------------------------
    def session_headers(self):
        headers = {}
        if self.session:
            headers["Mcp-Session-Id"] = self.session
            if self.version:
                headers["MCP-Protocol-Version"] = self.version
        return headers

    def open_session(self, body, hidden):
        ex = self.post(body, {}, wait=None, quiet=hidden)
        if ex.error:
            return False
        session = ex.reply_headers.get("mcp-session-id") if ex.reply_headers else None
        if not session:
            if hidden:
                self.fail("the hidden initialize got HTTP %s without a session: %s" % (
                    ex.status, preview(b" ".join(ex.messages))))
            return False
        self.session, self.hidden, self.version = session, hidden, None
        reply = lenient_json(ex.messages[0]) if ex.messages else None
        if isinstance(reply, dict) and isinstance(reply.get("result"), dict):
            version = reply["result"].get("protocolVersion")
            self.version = version if isinstance(version, str) else None
        self.log("(http: %s session %s, version %s)" % (
            "hidden" if hidden else "the case's", session, self.version))
        if hidden:
            self.post(INITIALIZED, self.session_headers(), wait=None, quiet=True)
        self.open_stream()
        return True

    def open_stream(self):
        """Opens the session's GET stream; returns once the gateway has answered it."""
        ex = HTTPExchange("GET", None, dict(self.session_headers(), Accept="text/event-stream"), False)
        threading.Thread(target=self.exchange, args=(ex, True), daemon=True).start()
        ex.answered.wait(self.timeout)
        if ex.status != 200:
            self.log("(http: the GET stream got %s)" % (ex.error or "HTTP %s" % ex.status))

    def end_session(self):
        if not self.session:
            return
        session, self.session = self.session, None
        with self.lock:
            stream, self.stream = self.stream, None
        if stream:
            self.shut(stream)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("DELETE", self.path, headers={"Mcp-Session-Id": session})
            conn.getresponse().read()
        except (OSError, http.client.HTTPException) as e:
            self.log("(http: DELETE failed: %s)" % e)
        finally:
            conn.close()

    # requests ----------------------------------------------------------
    def post(self, body, headers, wait=HTTP_ORDER_GRACE, quiet=False):
        """POSTs one line on a connection of its own.  Returns once it is written and its
        reply is complete, or `wait` seconds have passed (None: no limit)."""
        ex = HTTPExchange("POST", body, dict(headers, **{"Content-Type": "application/json"}), quiet)
        threading.Thread(target=self.exchange, args=(ex,), daemon=True).start()
        while not ex.written.wait(0.1):
            if self.closing:
                return ex
        deadline = None if wait is None else time.monotonic() + wait
        while not ex.done.wait(0.05) and not self.closing:
            if deadline is not None and time.monotonic() >= deadline:
                break
        return ex

    def exchange(self, ex, stream=False):
        headers = dict(ex.headers)
        headers.setdefault("Accept", HTTP_ACCEPT)
        try:
            for attempt in (1, 2):
                conn, reused = self.take(stream)
                if conn is None:
                    ex.error = "the connection is closed"
                    return
                try:
                    conn.request(ex.method, self.path, body=ex.body, headers=headers)
                    ex.written.set()
                    conn.sock.settimeout(None)
                    resp = conn.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    self.drop(conn)
                    if reused and attempt == 1:
                        continue  # a keep-alive connection the server had closed: once more
                    raise
                break
            ex.status, ex.reply_headers = resp.status, resp.headers
            kind = (resp.getheader("content-type") or "").split(";")[0].strip().lower()
            self.log("(http: %s %d%s)" % (ex.method, resp.status, " " + kind if kind else ""))
            ex.answered.set()
            if kind == "text/event-stream":
                for data in event_data(resp):
                    self.received(data, ex)
                if stream and not self.closing and self.stream is conn:
                    self.log("(http: the gateway ended the GET stream)")
            else:
                data = resp.read().strip(b" \t\r\n")
                if data:
                    self.received(data, ex)
            if stream or resp.will_close:
                self.drop(conn)
            else:
                self.give_back(conn)
        except Exception as e:  # noqa: BLE001 - http.client fails in many ways when a socket closes
            if not self.closing and not (stream and self.stream is not conn):
                ex.error = "%s: %s" % (type(e).__name__, e)
                self.fail("%s failed: %s" % (ex.method, ex.error))
        finally:
            ex.written.set()
            ex.answered.set()
            ex.done.set()

    def received(self, data, ex):
        ex.messages.append(data)
        if self.hidden and b"list_changed" in data:
            msg = lenient_json(data)
            if isinstance(msg, dict) and msg.get("method") in LIST_CHANGED and "id" not in msg:
                self.log("(http: %s dropped: the hidden handshake asked for it)" % msg["method"])
                return
        if not ex.quiet:
            with self.send_lock:
                try:
                    self.end.sendall(data + b"\n")
                except OSError:
                    pass

    # connections -------------------------------------------------------
    def take(self, stream=False):
        with self.lock:
            if self.closing:
                return None, False
            if self.idle and not stream:
                return self.idle.pop(), True
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.connections.add(conn)
            if stream:
                self.stream = conn
            return conn, False

    def give_back(self, conn):
        with self.lock:
            if not self.closing:
                self.idle.append(conn)
                return
        self.drop(conn)

    def drop(self, conn):
        with self.lock:
            self.connections.discard(conn)
        self.shut(conn)

    @staticmethod
    def shut(conn):
        try:
            if conn.sock is not None:
                conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()

    def fail(self, note):
        """Ends the stream the runner reads, saying why."""
        if self.note or self.closing:
            return
        self.note = "http: " + note
        self.log("(%s)" % self.note)
        try:
            self.end.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        """The case closed the connection: the session ends (DELETE), requests in flight are
        abandoned (their connections close)."""
        with self.lock:
            if self.closing:
                return
            self.closing = True
            connections = list(self.connections)
            self.connections.clear()
            self.idle = []
        self.end_session()
        for conn in connections:
            self.shut(conn)
        try:
            self.end.close()
        except OSError:
            pass


class Reader(threading.Thread):
    """Reads lines from the channel into a queue: ("line", bytes) / ("eof", note)."""

    def __init__(self, chan):
        super().__init__(daemon=True)
        self.chan = chan
        self.q = queue.Queue()
        self.stop = threading.Event()

    def run(self):
        buf = bytearray()
        scan = 0
        while not self.stop.is_set():
            try:
                r, _, _ = select.select([self.chan.rfd], [], [], 0.1)
            except (OSError, ValueError):
                self.q.put(("eof", "read side closed"))
                return
            if not r:
                continue
            try:
                data = self.chan.read(1 << 20)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                self.q.put(("eof", "read error: %s" % e))
                return
            if not data:
                note = getattr(self.chan, "eof_note", None) or "end of stream"
                if buf:
                    note += " after %d bytes without a newline: %s" % (len(buf), preview(buf, 120))
                self.q.put(("eof", note))
                return
            buf += data
            while True:
                i = buf.find(b"\n", scan)
                if i < 0:
                    scan = len(buf)
                    break
                self.q.put(("line", bytes(buf[:i])))
                del buf[:i + 1]
                scan = 0
            if len(buf) > MAX_REPLY_BYTES:
                self.q.put(("eof", "a reply line exceeded %d bytes" % MAX_REPLY_BYTES))
                return


class Writer(threading.Thread):
    """Writes queued payloads in order, never blocking the reader."""

    def __init__(self, chan, log):
        super().__init__(daemon=True)
        self.chan = chan
        self.log = log
        self.q = queue.Queue()
        self.lock = threading.Lock()
        self.pending = 0
        self.last_progress = time.monotonic()
        self.error = None
        self.stop = threading.Event()

    def submit(self, item):
        with self.lock:
            self.pending += 1
            self.last_progress = time.monotonic()
        self.q.put(item)

    @property
    def busy(self):
        return self.pending > 0

    def run(self):
        while True:
            item = self.q.get()
            if item is None:
                return
            try:
                if self.error is None and not self.stop.is_set():
                    kind = item[0]
                    if kind == "data":
                        _, chunks, delay = item
                        first = True
                        for chunk in chunks:
                            if self.stop.is_set() or self.error is not None:
                                break
                            if delay and not first:
                                time.sleep(delay)
                            first = False
                            self._write_all(chunk)
                    elif kind == "close_write":
                        self.chan.shutdown_write()
            except Exception as e:  # noqa: BLE001 - report any write failure
                self.error = "%s: %s" % (type(e).__name__, e)
            finally:
                with self.lock:
                    self.pending -= 1
                    self.last_progress = time.monotonic()

    def _write_all(self, data):
        view = memoryview(data)
        while len(view):
            if self.stop.is_set():
                return
            _, w, _ = select.select([], [self.chan.wfd], [], 0.1)
            if not w:
                continue
            try:
                n = self.chan.write(view[:WRITE_SLICE])
            except (BlockingIOError, InterruptedError):
                continue
            view = view[n:]
            self.last_progress = time.monotonic()

    def wait_idle(self, timeout):
        """Wait until everything queued is written; False if writing stalls."""
        while self.busy:
            if time.monotonic() - self.last_progress > timeout:
                return False
            time.sleep(0.01)
        return True


# --------------------------------------------------------------------------
# one connection / process per case

class Session:
    def __init__(self, opts, verbose_prefix="    ", name=DEFAULT_CONNECTION):
        self.opts = opts
        self.proc = None
        self.vp = verbose_prefix
        self.name = name
        self.probe_n = 0
        self.poll_n = 0
        self.closed = False
        self.eof_note = None
        self.exit_checked = False
        self.ended = False  # this side ended the stream: close_write, signal or disconnect
        if opts.transport == "stdio":
            args = shlex.split(opts.target)
            if opts.stderr_log:
                err = open(opts.stderr_log, "ab")
            else:
                err = subprocess.DEVNULL
            try:
                self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=err, start_new_session=True)
            except OSError as e:
                raise Failure("cannot start %r: %s" % (opts.target, e))
            finally:
                if err is not subprocess.DEVNULL:
                    err.close()
            self.chan = PipeChannel(self.proc)
        elif opts.transport == "tcp":
            host, port = opts.address
            try:
                sock = socket.create_connection((host, port), timeout=opts.timeout)
            except OSError as e:
                raise Failure("cannot connect to %s:%s: %s" % (host, port, e))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.chan = SocketChannel(sock)
        elif opts.transport == "http":
            self.chan = HTTPChannel(HTTPBridge(opts.address, opts.timeout, self.log))
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(opts.timeout)
            try:
                sock.connect(opts.address)
            except OSError as e:
                sock.close()
                raise Failure("cannot connect to unix socket %s: %s" % (opts.address, e))
            self.chan = SocketChannel(sock)
        self.reader = Reader(self.chan)
        self.writer = Writer(self.chan, self.log)
        self.reader.start()
        self.writer.start()

    def log(self, text):
        if self.opts.verbose:
            print(self.vp + text, flush=True)

    # sending ------------------------------------------------------------
    def send_bytes(self, data, split_at=None, chunk_size=None, delay_ms=None):
        delay = (DEFAULT_DELAY_MS if delay_ms is None else delay_ms) / 1000.0
        if split_at:
            cuts = [0] + [c for c in split_at] + [len(data)]
            if any(b < a for a, b in zip(cuts, cuts[1:])) or cuts[-2] > len(data):
                raise CaseFormatError("split_at offsets must be ascending and within %d bytes" % len(data))
            chunks = [data[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]
        elif chunk_size:
            chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
        else:
            chunks, delay = [data], 0
        self.log("-> %s%s" % (preview(data), "" if len(chunks) == 1 else " (in %d writes)" % len(chunks)))
        self.writer.submit(("data", chunks, delay))

    def send_stream(self, length, gen, description):
        self.log("-> %s (%d bytes, streamed)" % (description, length))
        self.writer.submit(("data", gen(), 0))

    def close_write(self):
        self.log("-> (end of input)")
        self.ended = True
        self.writer.submit(("close_write",))

    def send_value(self, value):
        self.send_bytes(compact(value) + b"\n")

    def disconnect(self):
        """Close the connection at once, both ways, without reading what is left."""
        if self.proc is not None:
            raise CaseFormatError("disconnect steps need a socket transport")
        self.log("-> (disconnect)")
        self.ended = True
        self.writer.wait_idle(self.opts.timeout)
        self.writer.stop.set()
        self.writer.q.put(None)
        self.reader.stop.set()
        self.chan.wake_reader()
        self.reader.join(2)
        self.chan.close()
        self.closed = True
        self.eof_note = "disconnected by the case"

    # receiving ----------------------------------------------------------
    def next_message(self, timeout, waiting_for):
        """Next non-blank line parsed as JSON; ("eof", note) at end of stream."""
        if self.closed:
            raise Failure("connection already closed (%s) while waiting for %s" % (self.eof_note, waiting_for))
        deadline = time.monotonic() + timeout
        while True:
            try:
                kind, payload = self.reader.q.get(timeout=0.05)
            except queue.Empty:
                now = time.monotonic()
                if self.writer.busy:
                    deadline = max(deadline, self.writer.last_progress + timeout)
                if now >= deadline:
                    extra = ""
                    if self.writer.error:
                        extra = " (write failed: %s)" % self.writer.error
                    raise Failure("no reply within %gs%s; waiting for %s" % (timeout, extra, waiting_for))
                continue
            if kind == "eof":
                self.closed = True
                self.eof_note = payload
                self.log("<- (closed: %s)" % payload)
                return ("eof", payload)
            if not payload.strip(b" \t\r"):
                self.log("<- (blank line, ignored)")
                continue
            self.log("<- %s" % preview(payload))
            msg = parse_reply(payload)
            problem = envelope_problem(msg)
            if problem:
                raise Failure("malformed reply (%s): %s" % (problem, preview(payload)))
            if is_request(msg) and msg["method"] == "ping":
                # The gateway may ping any peer that serves requests (an agent, a legacy
                # client): answer at once, and never show the ping to the steps.
                self.log("-> (answering the gateway's ping)")
                self.send_value({"jsonrpc": "2.0", "id": msg["id"], "result": {}})
                continue
            return ("msg", msg)

    def expect(self, matcher, pattern, timeout):
        kind, msg = self.next_message(timeout, "a reply matching %s" % preview(pattern, 200))
        if kind == "eof":
            extra = " (write failed: %s)" % self.writer.error if self.writer.error else ""
            raise Failure("connection closed (%s)%s; expected %s" % (msg, extra, preview(pattern, 300)))
        err = matcher.match_step(pattern, msg)
        if err:
            raise Failure("%s\n      expected: %s\n      received: %s" % (
                err, preview(pattern, 400), preview(msg, 400)))

    def expect_request(self, matcher, pattern, capture_as, timeout):
        kind, msg = self.next_message(timeout, "a request matching %s" % preview(pattern, 200))
        if kind == "eof":
            raise Failure("connection closed (%s); expected a request matching %s" % (msg, preview(pattern, 300)))
        if not is_request(msg):
            raise Failure("expected a request from the gateway, received %s" % preview(msg, 400))
        err = matcher.match_step(pattern, msg)
        if err:
            raise Failure("%s\n      expected: %s\n      received: %s" % (
                err, preview(pattern, 400), preview(msg, 400)))
        if capture_as:
            matcher.vars[capture_as] = msg["id"]

    def respond(self, matcher, spec):
        to = spec["to"]
        if isinstance(to, str) and to.startswith("$"):
            name = to[1:]
            if name not in matcher.vars:
                raise CaseFormatError("respond: variable %r is not set (no expect_request captured it)" % name)
            to = matcher.vars[name]
        reply = {"jsonrpc": "2.0", "id": to}
        for key in ("result", "error"):
            if key in spec:
                reply[key] = substitute(spec[key], matcher.vars)
        self.send_value(reply)

    def poll(self, matcher, request, until, interval, timeout):
        """Send `request` again and again until its reply matches `until`."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            self.poll_n += 1
            rid = "conformance-poll-%d" % self.poll_n
            message = dict(substitute(request, matcher.vars))
            message["jsonrpc"] = "2.0"
            message["id"] = rid
            self.send_value(message)
            kind, msg = self.next_message(timeout, "the reply to poll request %r" % rid)
            if kind == "eof":
                raise Failure("connection closed (%s) while polling" % msg)
            if not isinstance(msg, dict) or msg.get("id") != rid or "method" in msg:
                raise Failure("expected the reply to poll request %r, received %s" % (rid, preview(msg, 400)))
            last = matcher.match_step(until, msg)
            if last is None:
                return
            if time.monotonic() + interval > deadline:
                raise Failure("no reply matched within %gs; last: %s\n      expected: %s\n      received: %s" % (
                    timeout, last, preview(until, 400), preview(msg, 400)))
            time.sleep(interval)

    def expect_unordered(self, matcher, patterns, timeout):
        got = []
        for i in range(len(patterns)):
            kind, msg = self.next_message(timeout, "reply %d of %d (any order)" % (i + 1, len(patterns)))
            if kind == "eof":
                raise Failure("connection closed (%s) after %d of %d replies; received %s" % (
                    msg, i, len(patterns), preview(got, 400)))
            got.append(msg)
        matcher.pending = {}
        err = matcher.match({"$unordered": patterns}, got, "replies")
        if err is None:
            matcher.vars.update(matcher.pending)
        matcher.pending = {}
        if err:
            raise Failure(err)

    def probe(self, matcher, timeout, what):
        self.probe_n += 1
        pid = "conformance-probe-%d" % self.probe_n
        self.send_bytes(compact({"jsonrpc": "2.0", "id": pid, "method": "ping"}) + b"\n")
        kind, msg = self.next_message(timeout, "the reply to probe ping %r" % pid)
        if kind == "eof":
            raise Failure("connection closed (%s) %s; probe ping %r unanswered" % (msg, what, pid))
        pattern = {"id": pid, "result": {"$type": "object"}}
        if matcher.match(pattern, msg) is not None:
            raise Failure("%s; expected the next reply to be the probe ping %r, received %s" % (
                what, pid, preview(msg, 400)))

    def expect_closed(self, timeout):
        kind, msg = self.next_message(timeout, "the connection to close")
        if kind != "eof":
            raise Failure("expected the connection to close, received %s" % preview(msg, 300))

    # teardown -----------------------------------------------------------
    def finish(self, matcher, final_probe, exit_code):
        """Final checks; raises Failure.  Always call close() afterwards."""
        t = self.opts.timeout
        if final_probe and not self.closed and not self.ended:
            self.probe(matcher, t, "at the end of the case (an unexpected extra reply?)")
        if self.closed and self.eof_note == "disconnected by the case":
            return
        if not self.writer.wait_idle(t):
            raise Failure("writing stalled for %gs: the peer stopped reading" % t)
        if self.writer.error and not self.closed:
            raise Failure("write failed: %s" % self.writer.error)
        if self.proc is None:
            return
        # stdio: EOF on stdin, nothing more on stdout, process exits with exit_code.
        self.chan.shutdown_write()
        while not self.closed:
            kind, msg = self.next_message(t, "stdout to close after EOF on stdin")
            if kind == "msg":
                raise Failure("unexpected message after the case ended: %s" % preview(msg, 300))
        try:
            code = self.proc.wait(timeout=t)
        except subprocess.TimeoutExpired:
            raise Failure("process did not exit within %gs after EOF on stdin" % t)
        self.exit_checked = True
        if exit_code is not None and code != exit_code:
            raise Failure("process exited with status %s, expected %s" % (code, exit_code))

    def signal(self, name):
        if self.proc is None:
            raise CaseFormatError("signal steps need the stdio transport")
        self.writer.wait_idle(self.opts.timeout)
        sig = getattr(signal, "SIG" + name.upper(), None)
        if sig is None:
            raise CaseFormatError("unknown signal %r" % name)
        self.log("-> (signal %s)" % name)
        self.ended = True
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def close(self, abort=False):
        self.writer.stop.set()
        self.writer.q.put(None)
        self.reader.stop.set()
        if isinstance(self.chan, SocketChannel) and not self.closed and not abort:
            self.chan.wake_reader()
        self.writer.join(2)
        self.reader.join(2)
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.chan.shutdown_write()
                    self.proc.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        self.proc.kill()
                    self.proc.wait()
        self.chan.close(abort=abort)


# --------------------------------------------------------------------------
# cases

class Case:
    def __init__(self, group, raw, source):
        if not isinstance(raw, dict):
            raise CaseFormatError("%s: a case must be an object" % source)
        self.group = group
        self.source = source
        self.name = raw.get("name")
        if not isinstance(self.name, str) or not self.name:
            raise CaseFormatError("%s: a case needs a non-empty \"name\"" % source)
        self.full_name = "%s/%s" % (group, self.name)
        self.description = raw.get("description", "")
        self.transports = raw.get("transports", list(TRANSPORTS))
        if not isinstance(self.transports, list) or not set(self.transports) <= set(TRANSPORTS):
            raise CaseFormatError("%s: transports must be a subset of %s" % (self.full_name, TRANSPORTS))
        self.why_not = raw.get("not_applicable", {})
        if not isinstance(self.why_not, dict) or not all(
                t in TRANSPORTS and t not in self.transports and isinstance(why, str) and why
                for t, why in self.why_not.items()):
            raise CaseFormatError("%s: not_applicable maps a transport left out of \"transports\" to why"
                                  % self.full_name)
        self.final_probe = raw.get("final_probe")  # None: probe every connection not ended
        if self.final_probe is not None and not isinstance(self.final_probe, bool):
            raise CaseFormatError("%s: final_probe must be a boolean" % self.full_name)
        self.exit_code = raw.get("exit_code", 0)
        self.requires_min = raw.get("requires_min", {})
        self.requires_max = raw.get("requires_max", {})
        for req in (self.requires_min, self.requires_max):
            if not isinstance(req, dict) or not all(isinstance(v, int) for v in req.values()):
                raise CaseFormatError("%s: requires_min/requires_max map variable names to integers" % source)
        self.steps = raw.get("steps")
        known = {"name", "description", "transports", "not_applicable", "final_probe", "exit_code", "steps",
                 "comment", "requires_min", "requires_max"}
        extra = set(raw) - known
        if extra:
            raise CaseFormatError("%s: unknown case keys %s" % (self.full_name, sorted(extra)))
        if not isinstance(self.steps, list) or not self.steps:
            raise CaseFormatError("%s: \"steps\" must be a non-empty list" % self.full_name)
        for i, st in enumerate(self.steps):
            if not isinstance(st, dict):
                raise CaseFormatError("%s step %d: a step must be an object" % (self.full_name, i + 1))
            kinds = [k for k in st if k in STEP_KINDS]
            if len(kinds) != 1:
                raise CaseFormatError("%s step %d: exactly one of %s expected, got %s" % (
                    self.full_name, i + 1, STEP_KINDS, sorted(st)))
            kind = kinds[0]
            allowed = set(STEP_KINDS) | set(STEP_OPTIONS) | set(KIND_OPTIONS.get(kind, ()))
            if kind.startswith("send"):
                allowed |= set(SEND_OPTIONS)
            bad = set(st) - allowed
            if bad:
                raise CaseFormatError("%s step %d: unknown keys %s" % (self.full_name, i + 1, sorted(bad)))
            where = "%s step %d" % (self.full_name, i + 1)
            conn = st.get("connection", DEFAULT_CONNECTION)
            if not isinstance(conn, str) or not CONNECTION_NAME.match(conn):
                raise CaseFormatError("%s: connection must be a short lower-case name such as \"b\"" % where)
            if conn != DEFAULT_CONNECTION and "stdio" in self.transports:
                raise CaseFormatError("%s: a second connection (%r) needs \"transports\" without stdio" % (where, conn))
            if "signal" in st and self.transports != ["stdio"]:
                raise CaseFormatError("%s: signal steps need \"transports\": [\"stdio\"]" % self.full_name)
            if "disconnect" in st and "stdio" in self.transports:
                raise CaseFormatError("%s: disconnect steps need \"transports\" without stdio" % where)
            if "close_write" in st and "http" in self.transports:
                raise CaseFormatError("%s: close_write steps need \"transports\" without http" % where)
            if kind == "expect_request" and "as" in st and (
                    not isinstance(st["as"], str) or not VARIABLE_NAME.match(st["as"])):
                raise CaseFormatError("%s: \"as\" takes a variable name" % where)
            if kind == "respond":
                spec = st["respond"]
                if (not isinstance(spec, dict) or "to" not in spec
                        or len([k for k in ("result", "error") if k in spec]) != 1
                        or set(spec) - {"to", "result", "error"}):
                    raise CaseFormatError("%s: respond takes {\"to\": ID or \"$var\", and one of \"result\", \"error\"}" % where)
            if kind == "poll":
                if not isinstance(st["poll"], dict) or not isinstance(st["poll"].get("method"), str) or "until" not in st:
                    raise CaseFormatError("%s: poll takes a request object with a method, and \"until\"" % where)
        self.connections = []
        self.ending = set()
        for st in self.steps:
            conn = st.get("connection", DEFAULT_CONNECTION)
            if conn not in self.connections:
                self.connections.append(conn)
            if any(k in st for k in ENDING_KINDS):
                self.ending.add(conn)


def load_cases(folder):
    files = sorted(glob.glob(os.path.join(folder, "*.json")))
    if not files:
        raise CaseFormatError("no case files (*.json) in %s" % folder)
    cases, names = [], set()
    for path in files:
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read().decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (ValueError, OSError) as e:
            raise CaseFormatError("%s: %s" % (path, e))
        base = os.path.splitext(os.path.basename(path))[0]
        if isinstance(doc, dict):
            group = doc.get("group", base)
            items = doc.get("cases")
        else:
            group, items = base, doc
        if not isinstance(items, list):
            raise CaseFormatError("%s: expected {\"group\": ..., \"cases\": [...]} or a list of cases" % path)
        for i, raw in enumerate(items):
            c = Case(group, raw, "%s case %d" % (os.path.basename(path), i + 1))
            if c.full_name in names:
                raise CaseFormatError("duplicate case name %s" % c.full_name)
            names.add(c.full_name)
            cases.append(c)
    return cases


def run_step(sess, matcher, step, opts):
    timeout = step.get("timeout", opts.timeout)
    split = dict(split_at=step.get("split_at"), chunk_size=step.get("chunk_size"),
                 delay_ms=step.get("delay_ms"))
    if "send" in step:
        sess.send_bytes(compact(substitute(step["send"], matcher.vars)) + b"\n", **split)
    elif "send_raw" in step:
        if not isinstance(step["send_raw"], str):
            raise CaseFormatError("send_raw takes a string")
        sess.send_bytes(step["send_raw"].encode("utf-8"), **split)
    elif "send_bytes_hex" in step:
        sess.send_bytes(hexbytes(step["send_bytes_hex"]), **split)
    elif "send_many" in step:
        if not isinstance(step["send_many"], list):
            raise CaseFormatError("send_many takes a list of JSON values")
        sess.send_bytes(b"".join(compact(substitute(v, matcher.vars)) + b"\n"
                                 for v in step["send_many"]), **split)
    elif "send_parts" in step:
        length, gen = build_parts(step["send_parts"], step.get("total_bytes"), matcher.vars)
        if split["split_at"] or split["chunk_size"]:
            if length > 16 * GEN_CHUNK:
                raise CaseFormatError("split_at/chunk_size only for payloads up to 16 MiB")
            sess.send_bytes(b"".join(gen()), **split)
        else:
            sess.send_stream(length, gen, "generated payload")
    elif "expect" in step:
        sess.expect(matcher, step["expect"], timeout)
    elif "expect_unordered" in step:
        if not isinstance(step["expect_unordered"], list):
            raise CaseFormatError("expect_unordered takes a list of patterns")
        sess.expect_unordered(matcher, step["expect_unordered"], timeout)
    elif "expect_none_before_next" in step:
        sess.probe(matcher, timeout, "a reply arrived where none was allowed")
    elif "expect_closed" in step:
        sess.expect_closed(timeout)
    elif "close_write" in step:
        sess.close_write()
    elif "signal" in step:
        sess.signal(step["signal"])
    elif "expect_request" in step:
        sess.expect_request(matcher, step["expect_request"], step.get("as"), timeout)
    elif "respond" in step:
        sess.respond(matcher, step["respond"])
    elif "poll" in step:
        interval = step.get("interval_ms", DEFAULT_POLL_INTERVAL_MS) / 1000.0
        sess.poll(matcher, step["poll"], step["until"], interval, timeout)
    elif "disconnect" in step:
        sess.disconnect()


def run_case(case, opts, matcher):
    """Run one case on fresh connections ("a" first, the others when a step first uses them)."""
    matcher = matcher.for_case()
    sessions = {}
    multi = len(case.connections) > 1

    def session(name):
        if name not in sessions:
            prefix = "    [%s] " % name if multi else "    "
            sessions[name] = Session(opts, verbose_prefix=prefix, name=name)
        return sessions[name]

    failed = True
    try:
        session(DEFAULT_CONNECTION)
        for i, step in enumerate(case.steps):
            conn = step.get("connection", DEFAULT_CONNECTION)
            kind = [k for k in step if k in STEP_KINDS][0]
            try:
                sess = session(conn)
                if sess.closed and sess.eof_note == "disconnected by the case":
                    raise Failure("connection %r was disconnected by an earlier step" % conn)
                run_step(sess, matcher, step, opts)
            except Failure as f:
                label = kind if not multi else "%s on %s" % (kind, conn)
                raise Failure("step %d (%s): %s" % (i + 1, label, f))
        for name, sess in sessions.items():
            probe = case.final_probe if case.final_probe is not None else name not in case.ending
            try:
                sess.finish(matcher, probe, case.exit_code)
            except Failure as f:
                raise Failure("%s%s" % ("connection %s: " % name if multi else "", f))
        failed = False
        return None
    except Failure as f:
        return str(f)
    finally:
        for sess in sessions.values():
            sess.close(abort=failed)


# --------------------------------------------------------------------------
# --spawn support: start a gateway once and learn its listening address

class Spawned:
    def __init__(self, cmd, log_path, timeout):
        self.lines = queue.Queue()
        self.urls = []
        log = open(log_path, "ab") if log_path else None
        self.proc = subprocess.Popen(shlex.split(cmd), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)

        def pump():
            for line in self.proc.stderr:
                if log:
                    log.write(line)
                    log.flush()
                self.lines.put(line.decode("utf-8", "replace"))
            self.lines.put(None)
            if log:
                log.close()
        threading.Thread(target=pump, daemon=True).start()
        self.timeout = timeout

    def wait_for(self, scheme):
        deadline = time.monotonic() + self.timeout
        for url in self.urls:
            if url.startswith(scheme + "://"):
                return url
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            for m in re.finditer(r"listening on ((?:tcp|unix|http)://\S+)", line):
                url = m.group(1).rstrip(".,;\"')")
                self.urls.append(url)
                if url.startswith(scheme + "://"):
                    return url
        raise SystemExit("run.py: the spawned gateway did not log 'listening on %s://...' "
                         "within %gs (exit status %s)" % (scheme, self.timeout, self.proc.poll()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                return "killed after 15s"
        return self.proc.returncode


def parse_tcp(target):
    if target.startswith("tcp://"):
        target = target[len("tcp://"):]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit("run.py: --tcp expects HOST:PORT, got %r" % target)
    return host.strip("[]") or "127.0.0.1", int(port)


HTTP_HELP = """\
over --http, each connection of a case is a client of the gateway's /mcp endpoint
(MCP Streamable HTTP): each line the case writes is one POST whose body is the
line as written; each message that comes back (a JSON body, a batch reply's array
as one line, the data of each event of a POST's stream or of the session's GET
stream) is one line read.  The era is chosen per connection, as a client would:
  - a line carrying the 2026-07-28 envelope in params._meta (or server/discover)
    is sent stateless, with MCP-Protocol-Version, Mcp-Method and Mcp-Name taken
    from its body;
  - initialize opens a real session: Mcp-Session-Id and MCP-Protocol-Version go
    with every later POST;
  - a case speaking plain JSON-RPC (neither) runs in a session opened by a
    hidden initialize at protocol version %s, the only version that allows
    batches and so the closest to plain JSON-RPC, plus notifications/initialized;
    the case sees neither reply, nor the list_changed notifications that this
    handshake subscribes to (a plain connection never gets them).
Once a session is open, its GET stream brings what the gateway sends on its own.
Closing a connection ends its session (DELETE).  Cases that cannot apply over
HTTP (raw framing, oversize lines, half-closed or closed connections, stdio)
leave "http" out of their "transports" and are counted as not applicable.
""" % HTTP_SESSION_VERSION


def parse_http(target):
    url = urllib.parse.urlsplit(target if "://" in target else "http://" + target)
    try:
        port = url.port
    except ValueError:
        port = None
    if url.scheme != "http" or not url.hostname or not port:
        raise SystemExit("run.py: --http expects http://HOST:PORT[/PATH], got %r" % target)
    return url.hostname, port, url.path if url.path not in ("", "/") else "/mcp"


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="Switchboard wire-contract conformance runner",
                                 epilog=HTTP_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--stdio", metavar="CMD", help="command speaking the protocol on stdin/stdout "
                   "(started afresh for every case)")
    g.add_argument("--tcp", metavar="HOST:PORT", help="TCP address (or 'auto' with --spawn)")
    g.add_argument("--unix", metavar="PATH", help="Unix socket path (or 'auto' with --spawn)")
    g.add_argument("--http", metavar="URL", help="the gateway's HTTP listener, http://HOST:PORT[/PATH] "
                   "(PATH defaults to /mcp), or 'auto' with --spawn: each connection of a case is an "
                   "MCP Streamable HTTP client (see below)")
    ap.add_argument("--spawn", metavar="CMD", help="start this gateway once for a --tcp/--unix/--http "
                    "run, wait for its 'listening on URL' log line, stop it with SIGTERM at the end")
    ap.add_argument("--cases", metavar="DIR", default=os.path.join(here, "cases"))
    ap.add_argument("-k", dest="filters", action="append", default=[], metavar="SUBSTRING",
                    help="run only cases whose group/name contains SUBSTRING (repeatable)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each expected reply")
    ap.add_argument("--max-message-size", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                    help="the gateway's configured message size limit (default 8388608)")
    ap.add_argument("--stderr-log", metavar="FILE", help="append the gateway's stderr to FILE "
                    "(default: discarded)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("-v", dest="verbose", action="store_true", help="show the traffic of every case")
    opts = ap.parse_args(argv)

    try:
        cases = load_cases(opts.cases)
    except CaseFormatError as e:
        print("run.py: case error: %s" % e, file=sys.stderr)
        return 2
    if opts.filters:
        cases = [c for c in cases if any(f in c.full_name for f in opts.filters)]
    if opts.list:
        for c in cases:
            print("%-55s %s" % (c.full_name, ",".join(c.transports)))
        print("%d cases" % len(cases))
        return 0

    spawned = None
    if opts.stdio is not None:
        opts.transport, opts.target = "stdio", opts.stdio
        if opts.spawn:
            ap.error("--spawn is for --tcp/--unix/--http")
    else:
        opts.transport = next(t for t in ("tcp", "unix", "http") if getattr(opts, t) is not None)
        target = getattr(opts, opts.transport)
        if opts.spawn:
            spawned = Spawned(opts.spawn, opts.stderr_log, max(10.0, opts.timeout))
        if target == "auto":
            if not spawned:
                ap.error("'auto' needs --spawn")
            url = spawned.wait_for(opts.transport)
            target = url[len(opts.transport + "://"):]
            print("gateway listening on %s" % url, flush=True)
        elif spawned:
            spawned.wait_for(opts.transport)
        opts.target = target
        if opts.transport == "tcp":
            opts.address = parse_tcp(target)
        elif opts.transport == "http":
            opts.address = parse_http(target)
        else:
            opts.address = target

    matcher = Matcher({"max_message_bytes": opts.max_message_size})
    passed = failed = 0
    reasons = {}  # why cases do not apply -> how many
    try:
        for case in cases:
            try:
                why = matcher.not_applicable(case, opts.transport)
            except CaseFormatError as e:
                print("run.py: case error: %s" % e, file=sys.stderr)
                return 2
            if why:
                reasons[why] = reasons.get(why, 0) + 1
                if opts.verbose:
                    print("N/A  %s (%s)" % (case.full_name, why), flush=True)
                continue
            if opts.verbose:
                print("---- %s: %s" % (case.full_name, case.description), flush=True)
            if opts.stderr_log and opts.transport == "stdio":
                with open(opts.stderr_log, "a") as f:
                    f.write("==== %s\n" % case.full_name)
            started = time.monotonic()
            try:
                problem = run_case(case, opts, matcher)
            except CaseFormatError as e:
                problem = "case format error: %s" % e
            took = time.monotonic() - started
            if problem is None:
                passed += 1
                print("PASS %s%s" % (case.full_name, " (%.1fs)" % took if took >= 1 else ""), flush=True)
            else:
                failed += 1
                print(("FAIL %s: %s" % (case.full_name, problem)).encode("utf-8", "backslashreplace").decode("utf-8"), flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        failed += 1
    finally:
        if spawned:
            status = spawned.stop()
            print("spawned gateway stopped (exit status %s)" % status, flush=True)
    print("%d cases run over %s" % (passed + failed, opts.transport))
    print("%d not applicable (transport %s, max_message_bytes %d)%s" % (
        sum(reasons.values()), opts.transport, opts.max_message_size, ":" if reasons else ""))
    for why, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
        print("%5d  %s" % (n, why))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
