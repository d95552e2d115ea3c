"""The official Python MCP SDK (`mcp`) talking to Switchboard.

Over stdio the SDK spawns `switchboard serve --stdio` itself; over TCP and Unix
sockets it spawns `socat STDIO <address>` as its "server command", so the SDK
sees a plain stdio server while the bytes travel over the socket.
"""

from __future__ import annotations

import shutil
import tempfile

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from sbwire import ALL_VERSIONS, LATEST_HANDSHAKE, MODERN

pytestmark = pytest.mark.anyio

# The SDK's own discover probe gives up after 10 s and falls back to initialize;
# a connect that settles modern well inside that proves the probe was answered.
CONNECT_BOUND = 8.0


@pytest.fixture(params=["stdio", "tcp", "unix"])
def server_params(request, sb_bin):
    kind = request.param
    if kind == "stdio":
        return StdioServerParameters(command=str(sb_bin), args=["serve", "--stdio"])
    socat = shutil.which("socat")
    if socat is None:
        pytest.fail("socat is not installed")
    gw = request.getfixturevalue("gateway_tcp" if kind == "tcp" else "gateway_unix")
    return StdioServerParameters(command=socat, args=["STDIO", gw.endpoint(kind).socat_address()])


def _client(params: StdioServerParameters, errlog, mode: str) -> Client:
    # errlog: the spawned command's stderr, shown when a test fails.
    return Client(stdio_client(params, errlog=errlog), mode=mode, read_timeout_seconds=20)


async def _list_tools_empty(client: Client) -> None:
    try:
        listing = await client.list_tools()
    except ValidationError as e:
        pytest.fail(
            f"the SDK rejected the gateway's tools/list result at {client.protocol_version}: {e}. "
            "(At 2026-07-28 MCP's ListToolsResult requires `cacheScope` and `ttlMs`.)"
        )
    assert listing.tools == []
    assert listing.next_cursor is None


async def _unknown_tool_is_an_error(client: Client) -> None:
    with pytest.raises(MCPError) as info:
        await client.call_tool("no-such-tool", {"x": 1})
    assert info.value.code == -32602, info.value.error
    assert isinstance(info.value.error.data, dict) and info.value.error.data.get("tool") == "no-such-tool"


async def test_default_mode_settles_modern(server_params):
    with tempfile.TemporaryFile("w+") as errlog:
        t0 = anyio.current_time()
        async with _client(server_params, errlog, mode="auto") as client:
            elapsed = anyio.current_time() - t0
            # Modern, not a fallback: the probe was answered, not timed out.
            assert client.protocol_version == MODERN
            assert client.session.discover_result is not None
            assert client.session.initialize_result is None
            assert elapsed < CONNECT_BOUND, f"connect took {elapsed:.1f}s"
            discovered = client.session.discover_result
            assert discovered.supported_versions == ALL_VERSIONS
            assert discovered.capabilities.tools is not None
            assert client.server_info is not None and client.server_info.name == "switchboard"
            assert client.server_info.version == "0.1.0"

            pong = await client.session.send_ping()
            assert pong.result_type == "complete"
            await _list_tools_empty(client)
            await _unknown_tool_is_an_error(client)
            # The connection is still usable after the error.
            await client.session.send_ping()


async def test_legacy_mode_handshake(server_params):
    with tempfile.TemporaryFile("w+") as errlog:
        async with _client(server_params, errlog, mode="legacy") as client:
            assert client.protocol_version == LATEST_HANDSHAKE
            init = client.session.initialize_result
            assert init is not None and client.session.discover_result is None
            assert init.server_info.name == "switchboard"
            assert init.server_info.title == "Switchboard"
            assert init.server_info.version == "0.1.0"
            assert init.capabilities.tools is not None

            pong = await client.session.send_ping()
            assert pong.result_type is None
            await _list_tools_empty(client)
            await _unknown_tool_is_an_error(client)
            await client.session.send_ping()


async def test_many_sdk_requests_in_parallel(server_params):
    """The SDK pipelines requests; every one is answered, matched by id."""
    with tempfile.TemporaryFile("w+") as errlog:
        async with _client(server_params, errlog, mode="legacy") as client:
            results = []

            async def one():
                results.append(await client.session.send_ping())

            async with anyio.create_task_group() as tg:
                for _ in range(200):
                    tg.start_soon(one)
            assert len(results) == 200
