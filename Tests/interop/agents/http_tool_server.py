#!/usr/bin/env python3
"""A FastMCP server over Streamable HTTP, for the gateway to reach as a remote agent.

    http_tool_server.py PORT [--label LABEL]

Serves MCP at http://127.0.0.1:PORT/mcp with the tools `shout` (the text in capitals, after
LABEL:) and `slow` (sleeps, reporting progress).
"""

import argparse
import asyncio

from fastmcp import Context, FastMCP

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--label", default="remote")
args = parser.parse_args()

server = FastMCP("remote-tools")


@server.tool
def shout(text: str) -> str:
    """The text in capitals."""
    return f"{args.label}:{text.upper()}"


@server.tool
async def slow(seconds: float, ctx: Context) -> str:
    """Sleeps, reporting progress twice."""
    await ctx.report_progress(0, 2)
    await asyncio.sleep(seconds / 2)
    await ctx.report_progress(1, 2)
    await asyncio.sleep(seconds / 2)
    return "done"


server.run(transport="http", host="127.0.0.1", port=args.port, show_banner=False)
