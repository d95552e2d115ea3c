"""Fixtures for the Switchboard interop tests.

The gateway binary comes from $SWITCHBOARD_BIN, default `<repo>/.build/debug/switchboard`.
Each gateway fixture starts `switchboard serve --listen ...` with port 0 / a fresh
socket path, waits for the `listening on <url>` lines on stderr to learn the real
addresses, and at the end stops the process with SIGTERM and asserts exit code 0.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest

from sbwire import Gateway, switchboard_bin


@pytest.fixture(scope="session")
def sb_bin():
    path = switchboard_bin()
    if not path.is_file():
        pytest.fail(f"switchboard binary not found at {path} (build it, or set SWITCHBOARD_BIN)")
    return path


@pytest.fixture
def sockdir():
    # A short directory: a Unix socket path must fit in sun_path (108 bytes).
    d = tempfile.mkdtemp(prefix="sb-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start_gateway(sb_bin, sockdir):
    """Factory: start_gateway("tcp", "unix", extra=[...], cwd=..., env=...) -> a running Gateway.

    At teardown every gateway still running gets SIGTERM and must exit 0.
    """
    started = []

    def start(*kinds: str, extra: list | None = None, cwd=None, env: dict | None = None) -> Gateway:
        args = []
        for n, kind in enumerate(kinds):
            if kind == "tcp":
                args += ["--listen", "tcp://127.0.0.1:0"]
            elif kind == "unix":
                args += ["--listen", f"unix://{sockdir}/sb{n}.sock"]
            elif kind == "http":
                args += ["--listen", "http://127.0.0.1:0"]
            else:  # pragma: no cover
                raise ValueError(kind)
        gw = Gateway(args + list(extra or []), cwd=None if cwd is None else str(cwd), env=env)
        started.append(gw)
        gw.start(expected_listeners=len(kinds))
        return gw

    yield start

    failures = []
    for gw in started:
        if gw.proc is None:
            continue
        running = gw.proc.poll() is None
        try:
            rc = gw.stop()
        except AssertionError as e:
            gw.kill()
            failures.append(str(e))
            continue
        if running and rc != 0:
            failures.append(f"gateway exited {rc} on SIGTERM (expected 0):\n{gw.stderr_text()}")
    assert not failures, "\n\n".join(failures)


@pytest.fixture
def gateway_tcp(start_gateway) -> Gateway:
    return start_gateway("tcp")


@pytest.fixture
def gateway_unix(start_gateway) -> Gateway:
    return start_gateway("unix")


@pytest.fixture
def gateway_both(start_gateway) -> Gateway:
    return start_gateway("tcp", "unix")


@pytest.fixture(params=["tcp", "unix"])
def endpoint(request, start_gateway):
    """(gateway, endpoint) for each socket transport in turn."""
    gw = start_gateway(request.param)
    return gw, gw.endpoint(request.param)


@pytest.fixture
def anyio_backend():
    return "asyncio"
