#!/usr/bin/env python3
"""An agent that attaches itself to a running Switchboard gateway (Python standard library only).

Spawned agents are started by the gateway; an *attached* agent is the other way round: it
connects to the gateway like a client, registers with `agents/register`, and from then on
serves the `tools/call` requests the gateway sends back on that same connection.

    switchboard serve --listen tcp://127.0.0.1:7400 &
    python3 attached_agent.py tcp://127.0.0.1:7400
    python3 attached_agent.py unix:///run/sb.sock --name pricing --version 2

Python 3.9 or later, nothing else.

Tools:

    moving_average {prices, window?}             simple moving average of a price series
    risk_score     {prices, simulations?, seed?}  0-100 from volatility, drawdown and a
                                                  bootstrap simulation of losses; reports
                                                  progress and can be cancelled

What it does on the wire:

- `agents/register` with its tools, then `agents/heartbeat` every `heartbeatIntervalSeconds`
  (10 s) with its CPU and memory use.
- Serves each `tools/call` concurrently (one asyncio task per call). A call whose params carry
  `_meta.progressToken` gets `notifications/progress` with that token. A
  `notifications/cancelled` for a call in flight stops it, and no response is sent for it.
- Answers `ping`, and `-32601` to any other request.
- When the connection drops it reconnects with exponential back-off (1 s doubling to 30 s,
  with jitter) and registers again (`--once`: it exits instead).

Every line it logs goes to stderr. Stop it with Ctrl-C or SIGTERM.
"""

import argparse
import asyncio
import itertools
import json
import logging
import os
import random
import resource
import signal
import statistics
import sys
import time

log = logging.getLogger("attached-agent")

MAX_LINE = 8 * 1024 * 1024  # the gateway's default message limit; asyncio's own default is 64 KiB

TOOLS = [
    {
        "name": "moving_average",
        "title": "Moving average",
        "description": "Simple moving average of a price series over a window.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "prices": {"type": "array", "items": {"type": "number"}, "minItems": 1},
                "window": {"type": "integer", "minimum": 1, "description": "Prices per average (default 3)"},
            },
            "required": ["prices"],
        },
    },
    {
        "name": "risk_score",
        "title": "Risk score",
        "description": (
            "A 0-100 risk score for a price series, from the volatility of its returns, its worst "
            "drawdown and a bootstrap simulation of losses. Reports progress; cancellable."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "prices": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 3},
                "simulations": {"type": "integer", "minimum": 1, "description": "Bootstrap paths (default 2000)"},
                "seed": {"type": "integer", "description": "Random seed, for repeatable scores"},
            },
            "required": ["prices"],
        },
    },
]


class ToolError(Exception):
    """A problem with the call's arguments: reported as a tool result with isError, as MCP asks."""


# --------------------------------------------------------------------------- the tools


def moving_average(args):
    prices, window = args.get("prices"), args.get("window", 3)
    if not isinstance(prices, list) or not prices or not all(isinstance(p, (int, float)) for p in prices):
        raise ToolError("prices must be a non-empty list of numbers")
    if not isinstance(window, int) or not 1 <= window <= len(prices):
        raise ToolError(f"window must be an integer from 1 to {len(prices)}")
    averages = [round(sum(prices[i - window:i]) / window, 6) for i in range(window, len(prices) + 1)]
    return {"window": window, "averages": averages}


def _simulate_losses(returns, paths, rng):
    """Worst cumulative loss of `paths` bootstrap resamplings of `returns` (CPU work, run in a thread)."""
    worst = []
    for _ in range(paths):
        level, low = 1.0, 1.0
        for _ in returns:
            level *= 1.0 + rng.choice(returns)
            low = min(low, level)
        worst.append(1.0 - low)
    return worst


async def risk_score(args, progress):
    prices, simulations = args.get("prices"), args.get("simulations", 2000)
    if not isinstance(prices, list) or len(prices) < 3 or not all(isinstance(p, (int, float)) and p > 0 for p in prices):
        raise ToolError("prices must be a list of at least 3 positive numbers")
    if not isinstance(simulations, int) or simulations < 1:
        raise ToolError("simulations must be a positive integer")
    returns = [b / a - 1.0 for a, b in zip(prices, prices[1:])]
    volatility = statistics.pstdev(returns)
    peak, drawdown = prices[0], 0.0
    for p in prices:
        peak = max(peak, p)
        drawdown = max(drawdown, 1.0 - p / peak)

    # The simulation runs in batches in a worker thread, so that the event loop keeps serving
    # other calls, heartbeats and pings; between batches it reports progress, and a
    # cancellation (asyncio.CancelledError at the await) ends it.
    rng = random.Random(args.get("seed"))
    batch, worst = 100, []
    while len(worst) < simulations:
        n = min(batch, simulations - len(worst))
        worst += await asyncio.to_thread(_simulate_losses, returns, n, rng)
        await progress(len(worst), simulations, f"{len(worst)} of {simulations} paths")
    worst.sort()
    loss_95 = worst[int(0.95 * (len(worst) - 1))]  # 95th percentile of the worst loss

    score = min(100.0, 100.0 * (0.4 * min(volatility / 0.05, 1.0) + 0.3 * min(drawdown / 0.5, 1.0) + 0.3 * min(loss_95 / 0.5, 1.0)))
    return {
        "score": round(score, 1),
        "volatility": round(volatility, 6),
        "maxDrawdown": round(drawdown, 6),
        "simulatedLoss95": round(loss_95, 6),
        "simulations": simulations,
    }


# --------------------------------------------------------------------------- the connection


class GatewayConnection:
    """One connection to the gateway: requests both ways, notifications, one JSON text per line."""

    def __init__(self, reader, writer, agent):
        self.reader, self.writer, self.agent = reader, writer, agent
        self.write_lock = asyncio.Lock()
        self.ids = itertools.count(1)
        self.pending = {}   # our request id -> Future of its response
        self.calls = {}     # the gateway's request id (as JSON text) -> Task serving it
        self.tasks = set()  # every task started here (asyncio keeps only weak references)
        self.registered = False

    def spawn(self, coroutine):
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def send(self, message):
        line = json.dumps({"jsonrpc": "2.0", **message}, separators=(",", ":")).encode() + b"\n"
        async with self.write_lock:
            self.writer.write(line)
            await self.writer.drain()

    async def answer(self, message):
        """Sends a response or notification; if the connection is gone there is no one to tell."""
        try:
            await self.send(message)
        except (ConnectionError, OSError):
            pass

    async def request(self, method, params=None, timeout=30):
        """Sends a request to the gateway and returns its result (raises on an error response)."""
        id_ = f"agent-{next(self.ids)}"
        future = asyncio.get_running_loop().create_future()
        self.pending[id_] = future
        try:
            await self.send({"id": id_, "method": method, **({"params": params} if params is not None else {})})
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop(id_, None)
        if "error" in reply:
            error = reply["error"]
            raise RuntimeError(f"{method}: error {error.get('code')}: {error.get('message')} {error.get('data', '')}")
        return reply["result"]

    async def serve(self):
        """Reads messages until the gateway closes the connection."""
        try:
            while line := await self.reader.readline():
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning("ignoring a line that is not JSON: %r", line[:200])
                    continue
                self.dispatch(message)
        finally:
            for task in list(self.calls.values()):
                task.cancel()
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the gateway closed the connection"))

    def dispatch(self, message):
        method, id_ = message.get("method"), message.get("id")
        if method is None:
            # A response to one of our requests.
            future = self.pending.get(id_)
            if future is not None and not future.done():
                future.set_result(message)
        elif id_ is None:
            self.notification(method, message.get("params") or {})
        elif method == "tools/call":
            key = json.dumps(id_)
            task = self.spawn(self.tool_call(id_, message.get("params") or {}))
            self.calls[key] = task
            task.add_done_callback(lambda _: self.calls.pop(key, None))
        elif method == "ping":
            self.spawn(self.answer({"id": id_, "result": {}}))
        else:
            self.spawn(self.answer({
                "id": id_, "error": {"code": -32601, "message": f"Method not found: {method}", "data": {"method": method}},
            }))

    def notification(self, method, params):
        if method == "notifications/cancelled":
            task = self.calls.get(json.dumps(params.get("requestId")))
            if task is not None:
                log.info("cancelled request %s: %s", json.dumps(params.get("requestId")), params.get("reason", "no reason given"))
                task.cancel()

    async def tool_call(self, id_, params):
        name, args = params.get("name"), params.get("arguments") or {}
        token = (params.get("_meta") or {}).get("progressToken")

        async def progress(done, total, message):
            if token is not None:
                await self.answer({"method": "notifications/progress",
                                   "params": {"progressToken": token, "progress": done, "total": total, "message": message}})

        started = time.monotonic()
        try:
            if name == "moving_average":
                value = moving_average(args)
            elif name == "risk_score":
                value = await risk_score(args, progress)
            else:
                await self.answer({"id": id_, "error": {"code": -32602, "message": f"Unknown tool: {name}", "data": {"tool": name}}})
                return
            value["servedBy"] = self.agent.label
            result = {"content": [{"type": "text", "text": json.dumps(value)}], "structuredContent": value}
        except ToolError as e:
            result = {"content": [{"type": "text", "text": str(e)}], "isError": True}
        except asyncio.CancelledError:
            return  # cancelled by the gateway, or the connection is gone: no response
        except Exception as e:  # a bug in a tool: tell the caller rather than leave it waiting
            log.exception("tool %s failed", name)
            result = {"content": [{"type": "text", "text": f"internal error: {e}"}], "isError": True}
        log.debug("%s answered in %.0f ms", name, (time.monotonic() - started) * 1000)
        await self.answer({"id": id_, "result": result})


# --------------------------------------------------------------------------- the agent


class Agent:
    def __init__(self, url, name, version, max_concurrency, once=False):
        self.url, self.name, self.version, self.max_concurrency = url, name, version, max_concurrency
        self.once = once
        self.label = f"{name} v{version}"

    async def open(self):
        scheme, _, rest = self.url.partition("://")
        if scheme == "tcp":
            host, _, port = rest.rpartition(":")
            return await asyncio.open_connection(host.strip("[]"), int(port), limit=MAX_LINE)
        if scheme == "unix":
            return await asyncio.open_unix_connection(rest, limit=MAX_LINE)
        raise SystemExit(f"unsupported URL {self.url!r}: use tcp://HOST:PORT or unix:///PATH")

    async def run(self):
        """Connects, registers and serves; on any failure waits and starts again."""
        delay = 1.0
        while True:
            try:
                reader, writer = await self.open()
            except OSError as e:
                log.warning("cannot connect to %s: %s", self.url, e)
            else:
                connection = GatewayConnection(reader, writer, self)
                try:
                    await self.session(connection)
                except (OSError, ValueError, RuntimeError, asyncio.TimeoutError) as e:
                    log.warning("session ended: %s", e)
                finally:
                    writer.close()
                if connection.registered:
                    delay = 1.0  # it worked for a while: start the back-off afresh
            if self.once:
                return
            wait = delay * random.uniform(0.5, 1.0)
            log.info("reconnecting in %.1f s", wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, 30.0)

    async def session(self, connection):
        reader_task = asyncio.create_task(connection.serve())
        try:
            registered = await connection.request("agents/register", {
                "agentName": self.name,
                "agentType": "analytics",
                "version": self.version,
                "capabilities": ["pricing", "risk"],
                "tools": TOOLS,
                "maxConcurrency": self.max_concurrency,
                "resourceRequirements": {"cpu": 1, "memory": 128 * 1024 * 1024},
            })
            connection.registered = True
            log.info("registered as %s (tools %s, active version: %s)",
                     registered["agentId"], ", ".join(registered["tools"]), registered["activeVersion"])
            interval = registered.get("heartbeatIntervalSeconds", 10)
            heartbeat = asyncio.create_task(self.heartbeat(connection, interval))
            try:
                await reader_task  # until the gateway goes away
            finally:
                heartbeat.cancel()
            raise ConnectionError("the gateway closed the connection")
        finally:
            reader_task.cancel()

    async def heartbeat(self, connection, interval):
        last_wall, last_cpu = time.monotonic(), time.process_time()
        while True:
            await asyncio.sleep(interval)
            wall, cpu = time.monotonic(), time.process_time()
            usage = {
                "cpu": round(100.0 * (cpu - last_cpu) / max(wall - last_wall, 1e-9), 1),  # percent of one core
                "memory": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,     # peak RSS, bytes (Linux: KiB)
                "cpuSeconds": round(cpu, 3),
            }
            last_wall, last_cpu = wall, cpu
            try:
                await connection.request("agents/heartbeat", {"resourceUsage": usage}, timeout=interval)
            except (RuntimeError, asyncio.TimeoutError) as e:
                log.warning("heartbeat failed: %s", e)
            except (ConnectionError, OSError):
                return  # the session is ending; the reconnect loop takes over


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", default="tcp://127.0.0.1:7400", help="tcp://HOST:PORT or unix:///PATH")
    parser.add_argument("--name", default="pricing", help="agent name (default: pricing)")
    parser.add_argument("--version", default="1", help="agent version (default: 1); a newer one becomes active")
    parser.add_argument("--max-concurrency", type=int, default=16, help="calls the gateway may send at once")
    parser.add_argument("--once", action="store_true",
                        help="exit when the connection ends instead of reconnecting (e.g. under a supervisor)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every call")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {args.name} v{args.version} [{os.getpid()}] %(message)s")

    agent = Agent(args.url, args.name, args.version, args.max_concurrency, once=args.once)

    async def run():
        task = asyncio.create_task(agent.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass
        log.info("stopped")

    asyncio.run(run())


if __name__ == "__main__":
    main()
