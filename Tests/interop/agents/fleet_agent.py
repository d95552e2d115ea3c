#!/usr/bin/python3
"""A small MCP server over stdio for the fleet tests (Python standard library only).

It must run under /usr/bin/python3 as the user `nobody`, inside a sandbox whose /tmp is an
empty private tmpfs: so it imports nothing from the repository and reads no file but itself.

Tools (each call runs on its own thread, so a waiting call does not hold up pings or others):

  work {"gate": PATH?, "sleep": S?}
      waits until the file PATH exists (polled every 20 ms), sleeps S seconds, answers
      "ok:<pid>" (the pid tells instances apart).
  allocate {"mib": N}
      allocates N MiB and writes to every page of it, so that it is resident (and counts
      against a memory limit), keeps it, answers "allocated".
  probe {"write": [PATH...], "connect": [HOST, PORT]?, "gate": PATH?}
      answers a JSON text: {"uid", "pid", "instance", "environ", "writes": {PATH: "ok" | strerror},
      "connect": "ok" | the error, "cuda": $CUDA_VISIBLE_DEVICES}. "instance" is random per process:
      pids alone may repeat across sandboxes that have their own pid namespace. "gate", as for work, lets a
      test hold a probe on one instance while the next one goes to another.

A tool that raises answers a tool error (isError) with the exception's text, so that a call
never goes unanswered while the process lives.

Arguments (a version of the agent, for the rollout tests):

  --label L   work answers "ok:<pid>:L" (which version answered)
  --fail      every tool answers a tool error (a version that is broken)
"""

import json
import os
import socket
import sys
import threading
import time

write_lock = threading.Lock()
kept = []  # allocations stay alive: the point is to hold the memory
INSTANCE = os.urandom(8).hex()
LABEL = sys.argv[sys.argv.index("--label") + 1] if "--label" in sys.argv else None
FAILS = "--fail" in sys.argv

TOOLS = [
    {"name": "work", "description": "Wait for a gate file, sleep, answer ok:<pid>.",
     "inputSchema": {"type": "object", "properties": {"gate": {"type": "string"}, "sleep": {"type": "number"}}}},
    {"name": "allocate", "description": "Allocate and touch N MiB.",
     "inputSchema": {"type": "object", "properties": {"mib": {"type": "integer"}}, "required": ["mib"]}},
    {"name": "probe", "description": "Report uid, environment, writes and a connection attempt.",
     "inputSchema": {"type": "object", "properties": {
         "write": {"type": "array", "items": {"type": "string"}},
         "connect": {"type": "array"},
         "gate": {"type": "string"}}}},
]
PAGE = 4096


def send(message):
    line = json.dumps({"jsonrpc": "2.0", **message}, separators=(",", ":")) + "\n"
    with write_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def wait_gate(arguments):
    gate = arguments.get("gate")
    while gate and not os.path.exists(gate):
        time.sleep(0.02)


def work(arguments):
    wait_gate(arguments)
    time.sleep(float(arguments.get("sleep") or 0))
    if FAILS:
        raise RuntimeError(f"this version ({LABEL}) is broken")
    return f"ok:{os.getpid()}" + (f":{LABEL}" if LABEL else "")


def allocate(arguments):
    size = int(arguments["mib"]) * 1024 * 1024
    block = bytearray(size)
    for offset in range(0, size, PAGE):
        block[offset] = 1
    kept.append(block)
    return "allocated"


def probe(arguments):
    wait_gate(arguments)
    writes = {}
    for path in arguments.get("write") or []:
        try:
            with open(path, "w") as f:
                f.write("x")
            writes[path] = "ok"
        except OSError as e:
            writes[path] = e.strerror or str(e)
    connect = None
    if arguments.get("connect"):
        host, port = arguments["connect"]
        try:
            with socket.create_connection((host, int(port)), timeout=5):
                connect = "ok"
        except OSError as e:
            connect = e.strerror or str(e) or type(e).__name__
        except Exception as e:  # noqa: BLE001 - reported, whatever it is
            connect = f"{type(e).__name__}: {e}"
    return json.dumps({
        "uid": os.getuid(),
        "pid": os.getpid(),
        "instance": INSTANCE,
        "environ": dict(os.environ),
        "writes": writes,
        "connect": connect,
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
    })


HANDLERS = {"work": work, "allocate": allocate, "probe": probe}


def serve_call(id_, params):
    name = params.get("name")
    arguments = params.get("arguments") or {}
    handler = HANDLERS.get(name)
    if handler is None:
        send({"id": id_, "error": {"code": -32602, "message": f"Unknown tool: {name}"}})
        return
    try:
        text = handler(arguments)
    except Exception as e:  # noqa: BLE001 - a tool error, not a silent hang
        send({"id": id_, "result": {"content": [{"type": "text", "text": f"{type(e).__name__}: {e}"}], "isError": True}})
        return
    send({"id": id_, "result": {"content": [{"type": "text", "text": text}]}})


def main():
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
                "serverInfo": {"name": "fleet-agent", "version": "1.0.0"},
            }})
        elif method == "tools/list":
            send({"id": id_, "result": {"tools": TOOLS}})
        elif method == "tools/call":
            threading.Thread(target=serve_call, args=(id_, message.get("params") or {}), daemon=True).start()
        elif method == "ping":
            send({"id": id_, "result": {}})
        else:
            send({"id": id_, "error": {"code": -32601, "message": f"Method not found: {method}"}})


if __name__ == "__main__":
    main()
