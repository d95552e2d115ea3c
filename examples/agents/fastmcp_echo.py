#!/usr/bin/env python3
"""An echo MCP server written with FastMCP (`pip install fastmcp`), served over stdio.

Switchboard spawns it like any other MCP server:

    agents:
      fastmcp-echo: {command: python3, args: [examples/agents/fastmcp_echo.py]}

Its tools:

    echo     {text}           -> the text back
    reverse  {text}           -> the text reversed
    count    {n, delay?}      -> counts to n, one progress notification per step

FastMCP turns the type hints into each tool's inputSchema and handles the MCP
lifecycle (initialize, tools/list, tools/call, ping, cancellation) itself.
"""

import asyncio

from fastmcp import Context, FastMCP

mcp = FastMCP(
    "fastmcp-echo",
    instructions="Echo tools served by FastMCP: echo, reverse, count.",
    version="1.0.0",
)


@mcp.tool
def echo(text: str) -> str:
    """Returns the text it is given."""
    return text


@mcp.tool
def reverse(text: str) -> str:
    """Returns the text reversed."""
    return text[::-1]


@mcp.tool
async def count(n: int, ctx: Context, delay: float = 0.1) -> str:
    """Counts from 1 to n, waiting `delay` seconds and reporting progress at each step."""
    for i in range(1, n + 1):
        await asyncio.sleep(delay)
        await ctx.report_progress(i, total=n, message=f"{i} of {n}")
    return f"counted to {n}"


if __name__ == "__main__":
    # stdio is the default transport; the banner goes to stderr, never to stdout.
    mcp.run(show_banner=False)
