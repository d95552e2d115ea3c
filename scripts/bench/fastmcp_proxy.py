"""FastMCP's proxy over stdio in front of one stdio MCP server: the Python gateway peer.

    python fastmcp_proxy.py COMMAND [ARGS...]

`fastmcp.server.create_proxy` (the documented way to put FastMCP in front of another MCP server)
spawns COMMAND as its backend over stdio and serves the proxied tools to its own client over stdio,
as an MCP host would start it. The benchmarks run it in front of `sdk_echo_server.py`.
"""

import sys

from fastmcp.client.transports import StdioTransport
from fastmcp.server import create_proxy

if len(sys.argv) < 2:
    sys.exit("usage: fastmcp_proxy.py COMMAND [ARGS...]")

backend = StdioTransport(command=sys.argv[1], args=sys.argv[2:], keep_alive=True)
proxy = create_proxy(backend, name="fastmcp-proxy")

if __name__ == "__main__":
    proxy.run(transport="stdio", show_banner=False, log_level="WARNING")
