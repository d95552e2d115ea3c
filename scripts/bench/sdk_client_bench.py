"""A load generator on the official Python MCP SDK's client: `tools/call` of `echo` over stdio.

    python sdk_client_bench.py [--sequential N] [--concurrent N] [--in-flight 64] [--warmup N]
                               [--roles agent|gateway,agent] -- COMMAND [ARGS...]

Starts COMMAND as an MCP server over stdio with the SDK's `stdio_client` (the initialize
handshake, `mode="legacy"`, the era every peer here speaks), then calls the `echo` tool
sequentially and with --in-flight calls outstanding (that many tasks, each calling in a loop).
Used for the paths whose client must be the SDK: the same client directly against the server,
through FastMCP's proxy, and through switchboard, so that their ratios are fair.

CPU time per call of each process comes from /proc/PID/stat (utime + stime) before and after each
measurement: the spawned process (--roles names it, then the process it spawns in turn) and this
client. Prints one JSON object per measurement on stdout, then one with the resident memory (KiB,
VmRSS) of each process.
"""

import argparse
import json
import os
import sys
import time

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def resident_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except OSError:
            pass
    return sorted(found)


def process_chain(roles: list[str]) -> list[tuple[str, int]]:
    """The spawned server and, below it, the process it spawned: one per role."""
    chain = []
    parent = os.getpid()
    for role in roles:
        kids = children(parent)
        if not kids:
            break
        parent = kids[-1]
        chain.append((role, parent))
    return chain


def percentile(sorted_values: list[int], p: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index] / 1000  # µs


async def measure(client: Client, count: int, in_flight: int) -> tuple[float, list[int]]:
    latencies: list[int] = []
    remaining = count

    async def worker():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter_ns()
            result = await client.call_tool("echo", {"text": "hello, agent"})
            latencies.append(time.perf_counter_ns() - start)
            if result.is_error:
                raise RuntimeError(f"echo failed: {result}")

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(in_flight):
            group.start_soon(worker)
    return time.perf_counter() - started, latencies


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequential", type=int, default=2000)
    parser.add_argument("--concurrent", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--roles", default="agent", help="comma separated: the spawned process, then its child")
    parser.add_argument("--label", default="")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a server command is required after --")

    params = StdioServerParameters(command=command[0], args=command[1:])
    async with Client(stdio_client(params, errlog=sys.stderr), mode="legacy", read_timeout_seconds=60) as client:
        # A gateway lists the tool once its agent has started: wait for it (bounded).
        for _ in range(300):
            tools = await client.list_tools()
            if any(tool.name == "echo" for tool in tools.tools):
                break
            await anyio.sleep(0.1)
        else:
            raise SystemExit(f"the server lists no echo tool: {[tool.name for tool in tools.tools]}")
        processes = process_chain(args.roles.split(",")) + [("client", os.getpid())]
        for mode, window, count in (("sequential", 1, args.sequential), (f"{args.in_flight} in flight", args.in_flight, args.concurrent)):
            await measure(client, min(args.warmup, count), window)
            before = [cpu_seconds(pid) for _, pid in processes]
            seconds, latencies = await measure(client, count, window)
            after = [cpu_seconds(pid) for _, pid in processes]
            latencies.sort()
            print(json.dumps({
                "label": args.label, "mode": mode, "count": count, "seconds": seconds,
                "p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "p999": percentile(latencies, 99.9),
                "cpu": [[role, (a - b) * 1e6 / count] for (role, _), a, b in zip(processes, after, before)],
            }), flush=True)
        print(json.dumps({"rss": [[role, resident_kib(pid)] for role, pid in processes]}), flush=True)


if __name__ == "__main__":
    anyio.run(main)
