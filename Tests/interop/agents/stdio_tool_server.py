#!/usr/bin/env python3
"""A small MCP server over stdio (Python standard library only) whose behaviour the tests choose.

It answers `initialize`, `tools/list`, `tools/call` and `ping` the way any MCP server does, and
can misbehave the ways real servers do:

  --tool NAME          a tool to offer (repeatable; default: echo)
  --label LABEL        put in every answer, to tell instances and templates apart
  --banner TEXT        print TEXT on stdout before anything else (a server that logs to stdout)
  --banner-glued TEXT  print TEXT on stdout without a newline, so that it sticks to the first reply
  --start-delay S      sleep S seconds before reading anything (a slow start)
  --stderr TEXT        print TEXT on stderr once started
  --calls-log PATH     append "NAME ARGS-JSON" to PATH for every call, when it starts

Every tool answers {"content": [{"type": "text", "text": TEXT}]} where TEXT is LABEL:ARGUMENT
for the argument "text" (default ""), and the arguments steer it:

  "bytes": N          the text is N bytes of "x" instead (a large reply)
  "gate": PATH        wait until the file PATH exists first
  "sleep": S          sleep S seconds first
  "fail": "tool"      answer with a tool error (isError: true)
  "fail": "params"    answer with the JSON-RPC error -32602 (invalid params)
  "fail": "crash"     exit at once without answering
"""

import argparse
import json
import os
import sys
import threading
import time

write_lock = threading.Lock()


def send(message):
    line = json.dumps({"jsonrpc": "2.0", **message}, separators=(",", ":")) + "\n"
    with write_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def serve_call(options, id_, params):
    name = params.get("name")
    arguments = params.get("arguments") or {}
    if options.calls_log:
        with open(options.calls_log, "a") as log:
            log.write(f"{name} {json.dumps(arguments, sort_keys=True)}\n")
    if name not in options.tool:
        send({"id": id_, "error": {"code": -32602, "message": f"Unknown tool: {name}"}})
        return
    gate = arguments.get("gate")
    while gate and not os.path.exists(gate):
        time.sleep(0.02)
    time.sleep(float(arguments.get("sleep", 0)))
    fail = arguments.get("fail")
    if fail == "crash":
        os._exit(3)
    if fail == "params":
        send({"id": id_, "error": {"code": -32602, "message": "Invalid params: the tool refuses these arguments"}})
        return
    if "bytes" in arguments:
        text = "x" * int(arguments["bytes"])
    else:
        text = f"{options.label}:{arguments.get('text', '')}"
    result = {"content": [{"type": "text", "text": text}]}
    if fail == "tool":
        result = {"content": [{"type": "text", "text": f"{options.label} failed on purpose"}], "isError": True}
    send({"id": id_, "result": result})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tool", action="append")
    parser.add_argument("--label", default="server")
    parser.add_argument("--banner")
    parser.add_argument("--banner-glued")
    parser.add_argument("--start-delay", type=float, default=0)
    parser.add_argument("--stderr")
    parser.add_argument("--calls-log")
    options = parser.parse_args()
    options.tool = options.tool or ["echo"]

    if options.banner:
        sys.stdout.write(options.banner + "\n")
        sys.stdout.flush()
    if options.banner_glued:
        sys.stdout.write(options.banner_glued)
        sys.stdout.flush()
    if options.stderr:
        sys.stderr.write(options.stderr + "\n")
        sys.stderr.flush()
    time.sleep(options.start_delay)

    for raw in sys.stdin:
        try:
            message = json.loads(raw)
        except ValueError:
            continue
        method = message.get("method")
        id_ = message.get("id")
        if id_ is None:
            continue  # notifications: initialized, cancelled
        if method == "initialize":
            send({"id": id_, "result": {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": f"stdio-tool-server-{options.label}", "version": "1.0.0"},
            }})
        elif method == "tools/list":
            send({"id": id_, "result": {"tools": [
                {"name": name, "description": f"{name} of {options.label}",
                 "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}
                for name in options.tool
            ]}})
        elif method == "tools/call":
            threading.Thread(target=serve_call, args=(options, id_, message.get("params") or {}), daemon=True).start()
        elif method == "ping":
            send({"id": id_, "result": {}})
        else:
            send({"id": id_, "error": {"code": -32601, "message": f"Method not found: {method}"}})


if __name__ == "__main__":
    main()
