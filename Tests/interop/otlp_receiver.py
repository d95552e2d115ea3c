"""A real OTLP/HTTP trace receiver for the interop tests.

    with OTLPReceiver() as receiver:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
        ...
        spans = receiver.wait_for(lambda spans: any(s["name"] == "tools/call echo" for s in spans))

It listens on 127.0.0.1 (a free port) and takes `POST /v1/traces` the way an OpenTelemetry
collector does (OTLP/HTTP, binary protobuf or OTLP/JSON, optionally gzip-compressed), answering
with an empty ExportTraceServiceResponse in the request's encoding.  Every span received is kept
as a flat dict:

    trace_id        32 lower-case hex digits
    span_id         16 lower-case hex digits
    parent_span_id  16 lower-case hex digits, or "" for a root span
    name            the span name
    kind            the SpanKind enum name, e.g. "SPAN_KIND_SERVER"
    attributes      {key: value}, values as Python str/int/float/bool/bytes/list/dict
    service_name    the resource's `service.name` ("" when it has none)
    status_code     the Status.StatusCode enum name, e.g. "STATUS_CODE_UNSET"
    start_ns        start time, nanoseconds since the epoch
    end_ns          end time, nanoseconds since the epoch

and, for the curious: `trace_state`, `status_message`, `scope_name`, `resource_attributes`,
`events` (list of {"name", "time_ns", "attributes"}) and `links` (list of {"trace_id",
"span_id", "attributes"}).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# Larger bodies are refused (413): no exporter in a test sends anything near this.
MAX_BODY = 64 * 1024 * 1024

# OTLP/JSON writes these bytes fields as hex, not as the base64 of the standard protobuf JSON
# mapping; they are turned into base64 before json_format.Parse sees them.
_HEX_ID_FIELDS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}
_HEX_RE = re.compile(r"\A(?:[0-9a-fA-F]{2})*\Z")


# --------------------------------------------------------------------------- decoding


def any_value(value):
    """An OTLP AnyValue as a plain Python value (None when it holds nothing)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes_dict(value.kvlist_value.values)
    return getattr(value, which)


def attributes_dict(key_values) -> dict:
    return {kv.key: any_value(kv.value) for kv in key_values}


def _enum_name(enum_type, number: int) -> str:
    try:
        return enum_type.Name(number)
    except ValueError:  # a number this proto version does not know
        return str(number)


def span_dicts(request: ExportTraceServiceRequest) -> list[dict]:
    """Every span in an export request, flattened (see the module docstring)."""
    out = []
    for resource_spans in request.resource_spans:
        resource_attributes = attributes_dict(resource_spans.resource.attributes)
        service_name = resource_attributes.get("service.name")
        service_name = service_name if isinstance(service_name, str) else ""
        for scope_spans in resource_spans.scope_spans:
            scope_name = scope_spans.scope.name
            for span in scope_spans.spans:
                out.append({
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": _enum_name(Span.SpanKind, span.kind),
                    "attributes": attributes_dict(span.attributes),
                    "service_name": service_name,
                    "status_code": _enum_name(Status.StatusCode, span.status.code),
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "trace_state": span.trace_state,
                    "status_message": span.status.message,
                    "scope_name": scope_name,
                    "resource_attributes": resource_attributes,
                    "events": [
                        {"name": e.name, "time_ns": e.time_unix_nano, "attributes": attributes_dict(e.attributes)}
                        for e in span.events
                    ],
                    "links": [
                        {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                         "attributes": attributes_dict(link.attributes)}
                        for link in span.links
                    ],
                })
    return out


def _hex_ids_to_base64(node):
    """Rewrite OTLP/JSON's hex trace and span ids into the protobuf JSON mapping's base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _HEX_ID_FIELDS and isinstance(value, str) and _HEX_RE.match(value):
                node[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def parse_json_request(body: bytes) -> ExportTraceServiceRequest:
    """An OTLP/JSON ExportTraceServiceRequest body as the protobuf message."""
    document = json.loads(body.decode("utf-8"))
    _hex_ids_to_base64(document)
    # OTLP receivers must ignore fields they do not know (newer senders add some).
    return json_format.Parse(json.dumps(document), ExportTraceServiceRequest(), ignore_unknown_fields=True)


# --------------------------------------------------------------------------- server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as exporters' HTTP clients expect
    server_version = "otlp-test-receiver/1"
    receiver: "OTLPReceiver"  # set on the per-receiver subclass

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # quiet: the tests report what matters

    def _reply(self, code: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8",
               extra_headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering an error."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size_line = self.rfile.readline(1024)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    self._reply(400, b"bad chunked encoding\n")
                    self.close_connection = True
                    return None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    self._reply(413, b"body too large\n")
                    self.close_connection = True
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)  # the CRLF after the chunk
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._reply(413 if length > MAX_BODY else 400, b"bad Content-Length\n")
            self.close_connection = True
            return None
        return self.rfile.read(length)

    def _record_request(self) -> None:
        self.receiver._note_request(self.command, self.path, self.headers)

    def _not_traces(self) -> None:
        self._record_request()
        # Drain a body so that a kept-alive connection stays in step.
        if self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding"):
            if self._read_body() is None:
                return
        path = self.path.split("?", 1)[0]
        if path == TRACES_PATH:
            self._reply(405, b"POST only\n", extra_headers={"Allow": "POST"})
        else:
            self._reply(404, b"not found\n")

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_traces

    def do_POST(self):  # noqa: N802 - the base class's naming
        path = self.path.split("?", 1)[0]
        if path != TRACES_PATH:
            self._not_traces()
            return
        self._record_request()
        body = self._read_body()
        if body is None:
            return
        media_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media_type not in (PROTOBUF, JSON):
            self._reply(415, f"unsupported Content-Type {media_type!r}: use {PROTOBUF} or {JSON}\n".encode())
            return
        encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding not in ("", "identity"):
                self._reply(415, f"unsupported Content-Encoding {encoding!r}\n".encode())
                return
        except (OSError, EOFError, zlib.error) as e:
            self._reply(400, f"body does not decompress as {encoding}: {e}\n".encode())
            return
        try:
            if media_type == PROTOBUF:
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
            else:
                request = parse_json_request(body)
        except (DecodeError, json_format.ParseError, ValueError, UnicodeDecodeError) as e:
            self.receiver._note_bad_body(f"{media_type}: {e}")
            self._reply(400, f"not an ExportTraceServiceRequest: {e}\n".encode())
            return
        self.receiver._add_spans(span_dicts(request))
        response = ExportTraceServiceResponse()
        if media_type == PROTOBUF:
            self._reply(200, response.SerializeToString(), PROTOBUF)
        else:
            self._reply(200, json_format.MessageToJson(response).encode(), JSON)


class OTLPReceiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1, run in a daemon thread.

    endpoint        "http://127.0.0.1:PORT", the base URL for OTEL_EXPORTER_OTLP_ENDPOINT
    traces_url      endpoint + "/v1/traces" (for OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    port            the port it listens on
    spans()         a copy of every span received so far, in arrival order
    wait_for(pred, timeout=10.0)
                    block until pred(spans) is truthy and return those spans; on timeout
                    raise AssertionError with a dump of what did arrive
    clear()         forget the spans, requests and headers received so far
    request_count   how many HTTP requests reached the receiver (any path, any outcome)
    request_headers one dict per request, in order, header names in lower case
    requests        one dict per request: {"method", "path", "headers"}
    bad_bodies      error texts for export requests whose body did not decode
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._host = host
        self._port = port
        self._cond = threading.Condition()
        self._spans: list[dict] = []
        self._requests: list[dict] = []
        self._bad_bodies: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> "OTLPReceiver":
        if self._server is not None:
            return self
        handler = type("OTLPHandler", (_Handler,), {"receiver": self})
        server = ThreadingHTTPServer((self._host, self._port), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="otlp-receiver", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "OTLPReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- addresses

    @property
    def port(self) -> int:
        assert self._server is not None, "the receiver is not running"
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def traces_url(self) -> str:
        return self.endpoint + TRACES_PATH

    # ---- what arrived

    def spans(self) -> list[dict]:
        with self._cond:
            return list(self._spans)

    @property
    def request_count(self) -> int:
        with self._cond:
            return len(self._requests)

    @property
    def request_headers(self) -> list[dict]:
        with self._cond:
            return [dict(r["headers"]) for r in self._requests]

    @property
    def requests(self) -> list[dict]:
        with self._cond:
            return [{**r, "headers": dict(r["headers"])} for r in self._requests]

    @property
    def bad_bodies(self) -> list[str]:
        with self._cond:
            return list(self._bad_bodies)

    def clear(self) -> None:
        with self._cond:
            self._spans.clear()
            self._requests.clear()
            self._bad_bodies.clear()

    def wait_for(self, predicate, timeout: float = 10.0) -> list[dict]:
        """Block until predicate(spans) is truthy; return the spans it accepted."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                spans = list(self._spans)
                if predicate(spans):
                    return spans
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(self._timeout_report(timeout, spans))
                self._cond.wait(remaining)

    def dump(self) -> str:
        """The spans received so far, one line each (for assertion messages)."""
        return _dump_spans(self.spans())

    # ---- called by the handler threads

    def _note_request(self, method: str, path: str, headers) -> None:
        with self._cond:
            self._requests.append({"method": method, "path": path,
                                   "headers": {k.lower(): v for k, v in headers.items()}})
            self._cond.notify_all()

    def _note_bad_body(self, error: str) -> None:
        with self._cond:
            self._bad_bodies.append(error)
            self._cond.notify_all()

    def _add_spans(self, spans: list[dict]) -> None:
        with self._cond:
            self._spans.extend(spans)
            self._cond.notify_all()

    def _timeout_report(self, timeout: float, spans: list[dict]) -> str:
        lines = [f"OTLP receiver: condition not met within {timeout}s; "
                 f"{len(self._requests)} request(s), {len(spans)} span(s) received"]
        if self._bad_bodies:
            lines.append("undecodable export bodies: " + "; ".join(self._bad_bodies))
        lines.append(_dump_spans(spans) if spans else "(no spans)")
        return "\n".join(lines)


def _dump_spans(spans: list[dict]) -> str:
    keys = ("trace_id", "span_id", "parent_span_id", "name", "kind", "service_name", "status_code", "attributes")
    return "\n".join(json.dumps({k: s.get(k) for k in keys}, default=repr, sort_keys=False) for s in spans)
