#!/usr/bin/env python3
"""An MCP server over stdio that joins the caller's trace, as the MCP OpenTelemetry conventions say.

It answers `initialize`, `tools/list`, `tools/call` and `ping`, and offers one tool,
`traced_echo` (arguments: {"text": string}).  A `tools/call` carries W3C trace context in
`params._meta.traceparent` (and `tracestate`); the agent extracts it and records, with the
OpenTelemetry SDK, a SERVER span "tools/call traced_echo" as that context's child, and inside it
an INTERNAL span "traced_echo work".  The spans are exported over OTLP/HTTP (protobuf) and
flushed before the reply goes out, so a receiver has them by the time the caller sees the answer.

The answer is {"content": [{"type": "text", "text": "traced:TEXT:TRACEPARENT"}]}, TRACEPARENT
being the value received or "none".

Environment, read the way the OpenTelemetry SDK reads it:
  OTEL_EXPORTER_OTLP_ENDPOINT         base URL of the collector (spans go to .../v1/traces);
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  or the full traces URL.  With neither set the spans are
                                      recorded but not exported.
  OTEL_SERVICE_NAME                   the resource's service.name (default "traced-agent")

Logging goes to stderr; stdout carries nothing but JSON-RPC.
"""

import json
import logging
import os
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TOOL = "traced_echo"
SUPPORTED_VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")
LATEST_VERSION = "2025-11-25"

logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="traced-agent: %(levelname)s %(name)s: %(message)s")
log = logging.getLogger("traced-agent")

propagator = TraceContextTextMapPropagator()


def make_tracer_provider() -> TracerProvider:
    service_name = os.environ.get("OTEL_SERVICE_NAME") or "traced-agent"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # No endpoint argument: the exporter resolves it from the environment itself.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        log.warning("no OTEL_EXPORTER_OTLP_ENDPOINT: spans are recorded but not exported")
    return provider


provider = make_tracer_provider()
tracer = provider.get_tracer("traced-agent", "1.0.0")


def send(message):
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", **message}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def serve_call(id_, params):
    name = params.get("name")
    if name != TOOL:
        send({"id": id_, "error": {"code": -32602, "message": f"Unknown tool: {name}"}})
        return
    arguments = params.get("arguments")
    arguments = arguments if isinstance(arguments, dict) else {}
    text = arguments.get("text", "")
    if not isinstance(text, str):
        send({"id": id_, "error": {"code": -32602, "message": "Invalid params: text must be a string"}})
        return
    meta = params.get("_meta")
    meta = meta if isinstance(meta, dict) else {}
    carrier = {}
    for key in ("traceparent", "tracestate"):
        if isinstance(meta.get(key), str):
            carrier[key] = meta[key]
    parent = propagator.extract(carrier)

    with tracer.start_as_current_span(
        f"tools/call {TOOL}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={
            "mcp.method.name": "tools/call",
            "gen_ai.tool.name": TOOL,
            "gen_ai.operation.name": "execute_tool",
            "jsonrpc.request.id": str(id_),
            "network.transport": "pipe",
        },
    ):
        with tracer.start_as_current_span(f"{TOOL} work", kind=SpanKind.INTERNAL):
            reply_text = f"traced:{text}:{carrier.get('traceparent', 'none')}"

    if not provider.force_flush(timeout_millis=10_000):
        log.warning("spans not flushed within 10s")
    send({"id": id_, "result": {"content": [{"type": "text", "text": reply_text}]}})


def main():
    try:
        for raw in sys.stdin:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            method = message.get("method")
            id_ = message.get("id")
            if id_ is None or method is None:
                continue  # notifications (initialized, cancelled) and stray responses
            params = message.get("params")
            params = params if isinstance(params, dict) else {}
            if method == "initialize":
                requested = params.get("protocolVersion")
                send({"id": id_, "result": {
                    "protocolVersion": requested if requested in SUPPORTED_VERSIONS else LATEST_VERSION,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "traced-agent", "version": "1.0.0"},
                }})
            elif method == "tools/list":
                send({"id": id_, "result": {"tools": [{
                    "name": TOOL,
                    "description": "Echoes the text, and the traceparent it was called with",
                    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
                }]}})
            elif method == "tools/call":
                serve_call(id_, params)
            elif method == "ping":
                send({"id": id_, "result": {}})
            else:
                send({"id": id_, "error": {"code": -32601, "message": f"Method not found: {method}"}})
    finally:
        provider.shutdown()


if __name__ == "__main__":
    main()
