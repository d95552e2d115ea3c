#!/usr/bin/env python3
"""A configurable attached agent for the task-engine tests (Python standard library only).

It connects to a gateway, registers with `agents/register`, and serves `tools/call` requests
for the tools it is given. Every tool behaves the same way:

  1. if the arguments carry "gate": PATH, the call waits until the file PATH exists;
  2. it sleeps --delay seconds plus the arguments' "sleep" (seconds, default 0);
  3. it fails with probability --fail-rate, or always when the arguments say "fail": true;
     a failure is a tool result with "isError": true, or with --fail-with error a JSON-RPC
     error response (code -32000);
  4. otherwise it answers {"content": [{"type": "text", "text": "LABEL:TEXT"}],
     "structuredContent": {"agent": LABEL, "n": N, "text": "LABEL:TEXT"}}, where TEXT and N
     are the arguments' "text" (default "") and "n" (default null).

`notifications/cancelled` stops the call it names; that call gets no answer. The gateway's
`ping` is answered. Each call is logged on stderr as one line:

  call ID n=N ok|failed|cancelled t=SECONDS

(SECONDS: time.monotonic() when the call ended, comparable between processes on one Linux
host), and the registration as `registered as AGENTID`. The agent exits when the connection ends.

usage: task_agent.py URL --name NAME [--tool TOOL]... [--label LABEL] [--delay S]
                     [--fail-rate P] [--fail-with result|error] [--max-concurrency N]
                     [--capability TAG]... [--seed N]
URL is tcp://HOST:PORT or unix:///PATH.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import time


def log(text):
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Agent:
    def __init__(self, options):
        self.options = options
        self.label = options.label or options.name
        self.random = random.Random(options.seed)
        self.writer = None
        self.calls = {}        # the gateway's request id, as JSON text -> asyncio task
        self.pending = {}      # our request id -> future of the response

    async def send(self, message):
        self.writer.write(json.dumps({"jsonrpc": "2.0", **message}, separators=(",", ":")).encode() + b"\n")
        await self.writer.drain()

    async def request(self, method, params):
        id_ = f"agent-{len(self.pending) + 1}-{method}"
        future = asyncio.get_running_loop().create_future()
        self.pending[id_] = future
        await self.send({"id": id_, "method": method, "params": params})
        reply = await future
        if "error" in reply:
            raise SystemExit(f"{method} failed: {reply['error']}")
        return reply["result"]

    async def run(self):
        url = self.options.url
        scheme, _, rest = url.partition("://")
        if scheme == "tcp":
            host, _, port = rest.rpartition(":")
            reader, self.writer = await asyncio.open_connection(host.strip("[]"), int(port), limit=1 << 24)
        elif scheme == "unix":
            reader, self.writer = await asyncio.open_unix_connection(rest, limit=1 << 24)
        else:
            raise SystemExit(f"unsupported URL {url!r}")
        reading = asyncio.create_task(self.read(reader))
        registered = await self.request("agents/register", {
            "agentName": self.options.name,
            "capabilities": self.options.capability,
            "maxConcurrency": self.options.max_concurrency,
            "tools": [{"name": tool, "description": f"Test tool {tool}.",
                       "inputSchema": {"type": "object"}} for tool in self.options.tool],
        })
        log(f"registered as {registered['agentId']}")
        await reading

    async def read(self, reader):
        while line := await reader.readline():
            if not line.strip():
                continue
            message = json.loads(line)
            method, id_ = message.get("method"), message.get("id")
            if method is None:
                future = self.pending.get(id_)
                if future is not None and not future.done():
                    future.set_result(message)
            elif id_ is None:
                if method == "notifications/cancelled":
                    call = self.calls.get(json.dumps((message.get("params") or {}).get("requestId")))
                    if call is not None:
                        call.cancel()
            elif method == "tools/call":
                key = json.dumps(id_)
                self.calls[key] = asyncio.create_task(self.call(id_, message.get("params") or {}))
                self.calls[key].add_done_callback(lambda _, key=key: self.calls.pop(key, None))
            elif method == "ping":
                await self.send({"id": id_, "result": {}})
            else:
                await self.send({"id": id_, "error": {"code": -32601, "message": "Method not found",
                                                      "data": {"method": method}}})

    async def call(self, id_, params):
        arguments = params.get("arguments") or {}
        n = arguments.get("n")
        try:
            gate = arguments.get("gate")
            while gate and not os.path.exists(gate):
                await asyncio.sleep(0.01)
            await asyncio.sleep(self.options.delay + float(arguments.get("sleep", 0)))
            failed = arguments.get("fail") is True or self.random.random() < self.options.fail_rate
            text = f"{self.label}:{arguments.get('text', '')}"
            if failed and self.options.fail_with == "error":
                answer = {"id": id_, "error": {"code": -32000, "message": f"failed on {self.label}", "data": {"n": n}}}
            elif failed:
                answer = {"id": id_, "result": {"content": [{"type": "text", "text": f"failed on {self.label}"}],
                                                "isError": True}}
            else:
                answer = {"id": id_, "result": {"content": [{"type": "text", "text": text}],
                                                "structuredContent": {"agent": self.label, "n": n, "text": text}}}
            log(f"call {json.dumps(id_)} n={json.dumps(n)} {'failed' if failed else 'ok'} t={time.monotonic():.6f}")
            await self.send(answer)
        except asyncio.CancelledError:
            log(f"call {json.dumps(id_)} n={json.dumps(n)} cancelled t={time.monotonic():.6f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--name", required=True, help="agentName (the template)")
    parser.add_argument("--tool", action="append", default=[], help="a tool to offer (repeatable)")
    parser.add_argument("--label", help="how results name this agent (default: --name)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds every call takes")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="probability that a call fails")
    parser.add_argument("--fail-with", choices=("result", "error"), default="result")
    parser.add_argument("--max-concurrency", type=int, default=16)
    parser.add_argument("--capability", action="append", default=[], help="a capability tag (repeatable)")
    parser.add_argument("--seed", type=int, help="seed of the failure draws")
    options = parser.parse_args()
    if not options.tool:
        parser.error("give at least one --tool")
    try:
        asyncio.run(Agent(options).run())
    except (ConnectionError, OSError) as error:
        log(f"connection ended: {error}")


if __name__ == "__main__":
    main()
