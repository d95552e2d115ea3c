#!/usr/bin/env python3
"""Switchboard through the official Python MCP SDK (`pip install mcp`).

By default the SDK starts the gateway itself, `switchboard serve --stdio`, and
talks to it over the child's stdin/stdout. With `--connect URL` it reaches an
already running gateway instead, through `socat` as a stdio-to-socket bridge.

    python3 python_mcp_client.py                                 # spawn `switchboard serve --stdio`
    python3 python_mcp_client.py --switchboard ./.build/debug/switchboard
    python3 python_mcp_client.py --connect tcp://127.0.0.1:7400  # a running gateway (needs socat)
    python3 python_mcp_client.py --legacy                        # initialize handshake instead of discover

It connects (the SDK probes `server/discover` and settles on the 2026-07-28
era; `--legacy` uses the initialize handshake), pings, lists tools and reads
`gateway/status` — a Switchboard method that the SDK has no helper for, so it
goes through `session.send_request`.
"""

import argparse
import os
import shutil
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from pydantic import TypeAdapter


def server_parameters(args):
    if args.connect:
        socat = shutil.which("socat")
        if socat is None:
            sys.exit("--connect needs socat on PATH")
        scheme, _, rest = args.connect.partition("://")
        if scheme == "tcp":
            target = f"TCP:{rest}"
        elif scheme == "unix":
            target = f"UNIX-CONNECT:{rest}"
        else:
            sys.exit(f"unsupported URL {args.connect!r}: use tcp://HOST:PORT or unix:///PATH")
        return StdioServerParameters(command=socat, args=["STDIO", target])
    return StdioServerParameters(command=args.switchboard, args=["serve", "--stdio"])


async def run(args):
    mode = "legacy" if args.legacy else "auto"
    async with Client(server_parameters(args), mode=mode, read_timeout_seconds=30) as client:
        info = client.server_info
        print(f"connected: {info.name if info else '?'} {info.version if info else ''}, "
              f"protocol {client.protocol_version}")

        await client.session.send_ping()
        print("ping: ok")

        listing = await client.list_tools()
        print(f"tools/list: {len(listing.tools)} tool(s) {[tool.name for tool in listing.tools]}")

        status = await client.session.send_request(
            types.Request(method="gateway/status", params=None), TypeAdapter(dict[str, Any])
        )
        print(f"gateway/status: {status['server']['name']} {status['server']['version']}, "
              f"backend {status['backend']}, {status['connections']['open']} open connection(s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switchboard", default=os.environ.get("SWITCHBOARD_BIN", "switchboard"),
                        help="the switchboard binary to spawn (default: $SWITCHBOARD_BIN or `switchboard` on PATH)")
    parser.add_argument("--connect", metavar="URL", help="reach a running gateway: tcp://HOST:PORT or unix:///PATH")
    parser.add_argument("--legacy", action="store_true", help="use the initialize handshake (MCP 2025-11-25)")
    anyio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
