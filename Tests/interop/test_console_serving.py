"""The console's files on the HTTP face (protocol-spec chapter 14, section 14.2.1), as a browser
fetches them: `/console` redirects to `/console/`; the files carry a strict content security
policy, `nosniff`, `DENY`, `no-referrer`, `no-cache` and an ETag that revalidates to 304; only
GET and HEAD; nothing outside the console's files is ever served (`..`, dot segments, their
percent-encoded forms), in the gateway's HTTP error shape; `http.console: false` turns it off;
`SWITCHBOARD_CONSOLE_DIRECTORY` serves a folder instead. And the same-origin rule of 14.4: a page
of the gateway's own origin (`http://` + the request's `Host`) may call the gateway and open `/ws`,
a foreign origin may not.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.exceptions import InvalidHandshake
from websockets.sync.client import connect as ws_connect

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def write_config(tmp_path, **config) -> str:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(config))
    return str(path)


def http_gateway(start_gateway, tmp_path=None, env=None, **config):
    extra = ["--config", write_config(tmp_path, **config)] if config else []
    gw = start_gateway("http", extra=extra, env=env)
    return gw, gw.endpoint("http").url.rstrip("/")


def host_port(base: str) -> str:
    return urlsplit(base).netloc


def raw_request(base: str, method: str, target: str, headers: dict | None = None):
    """One request with the target exactly as written (httpx would resolve `..` first)."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", parts.netloc)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def assert_security_headers(headers) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (name, headers.get(name))
    assert headers.get("etag", "").startswith('"') and headers["etag"].endswith('"'), headers.get("etag")


def assert_http_error(status: int, headers, body: bytes, expected_status: int, code: int, path: str) -> None:
    assert status == expected_status, (status, body)
    assert headers["content-type"].startswith("application/json")
    document = json.loads(body)
    assert document["status"] == expected_status and document["path"] == path, document
    assert document["error"]["code"] == code and isinstance(document["error"]["message"], str), document


# --------------------------------------------------------------------------- serving


def test_console_redirects_to_its_folder(start_gateway):
    gw, base = http_gateway(start_gateway)
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        for method in ("GET", "HEAD"):
            reply = client.request(method, f"{base}/console")
            assert reply.status_code == 301, (method, reply.status_code)
            assert reply.headers["location"] == "/console/"
            assert reply.content == b""


def test_console_page_is_html_with_a_strict_policy(start_gateway):
    gw, base = http_gateway(start_gateway)
    with httpx.Client(timeout=10) as client:
        page = client.get(f"{base}/console/")
        assert page.status_code == 200, page.text[:300]
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert_security_headers(page.headers)
        assert "<html" in page.text.lower()
        # index.html is what /console/ serves.
        named = client.get(f"{base}/console/index.html")
        assert named.status_code == 200 and named.content == page.content
        assert named.headers["etag"] == page.headers["etag"]


def test_console_modules_are_javascript(start_gateway):
    gw, base = http_gateway(start_gateway)
    with httpx.Client(timeout=10) as client:
        module = client.get(f"{base}/console/js/rpc.js")
        assert module.status_code == 200
        assert module.headers["content-type"] == "text/javascript; charset=utf-8"
        assert_security_headers(module.headers)
        assert len(module.content) > 0 and int(module.headers["content-length"]) == len(module.content)
        # The query string is not read: a cache-busting suffix names the same file.
        again = client.get(f"{base}/console/js/rpc.js?v=2")
        assert again.status_code == 200 and again.content == module.content


def test_console_revalidates_with_its_etag(start_gateway):
    gw, base = http_gateway(start_gateway)
    url = f"{base}/console/js/rpc.js"
    with httpx.Client(timeout=10) as client:
        first = client.get(url)
        etag = first.headers["etag"]
        unchanged = client.get(url, headers={"if-none-match": etag})
        assert unchanged.status_code == 304
        assert unchanged.content == b""
        assert unchanged.headers["etag"] == etag
        assert_security_headers(unchanged.headers)
        # One of several validators.
        assert client.get(url, headers={"if-none-match": f'"other", {etag}'}).status_code == 304
        # `*`, and a weak form of the same tag, match too (RFC 9110, 13.1.2).
        assert client.get(url, headers={"if-none-match": "*"}).status_code == 304
        assert client.get(url, headers={"if-none-match": f"W/{etag}"}).status_code == 304
        # Another version's validator: the file again.
        stale = client.get(url, headers={"if-none-match": '"0000000000000000-1"'})
        assert stale.status_code == 200 and stale.content == first.content
        # A strong validator of one file is not another's.
        other = client.get(f"{base}/console/js/dom.js", headers={"if-none-match": etag})
        assert other.status_code == 200 and other.headers["etag"] != etag


def test_console_files_are_read_with_get_or_head(start_gateway):
    gw, base = http_gateway(start_gateway)
    with httpx.Client(timeout=10) as client:
        head = client.head(f"{base}/console/js/rpc.js")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == "text/javascript; charset=utf-8"
        # The length the GET has (RFC 9110, 9.3.2), though nothing follows.
        assert head.headers["content-length"] == str(len(client.get(f"{base}/console/js/rpc.js").content))
        assert_security_headers(head.headers)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/console/js/rpc.js", "/console/", "/console"):
            status, headers, body = raw_request(base, method, path, {"Content-Length": "0"})
            assert_http_error(status, headers, body, 405, -32600, path)
            assert headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("target", [
    "/console/../README.md",
    "/console/js/../../Package.swift",
    "/console/%2e%2e/x",
    "/console/%2E%2E%2FREADME.md",
    "/console/.hidden",
    "/console/js/.rpc.js",
    "/console/./js/rpc.js",
    "/console/js/%2e/rpc.js",
    "/console/no-such-file.js",
])
def test_console_never_leaves_its_files(start_gateway, target):
    gw, base = http_gateway(start_gateway)
    status, headers, body = raw_request(base, "GET", target)
    assert_http_error(status, headers, body, 404, -32601, target)


def test_console_can_be_turned_off(start_gateway, tmp_path):
    folder = tmp_path / "console"
    folder.mkdir()
    (folder / "index.html").write_text("<!doctype html><html><title>dev</title></html>")
    env = dict(os.environ, SWITCHBOARD_CONSOLE_DIRECTORY=str(folder))
    # Off wins over the folder too.
    gw, base = http_gateway(start_gateway, tmp_path, env=env, http={"console": False})
    for target in ("/console", "/console/", "/console/index.html", "/console/js/rpc.js"):
        status, headers, body = raw_request(base, "GET", target)
        assert_http_error(status, headers, body, 404, -32601, target)
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{base}/healthz").status_code == 200


def test_console_from_a_folder(start_gateway, tmp_path):
    folder = tmp_path / "console"
    (folder / "js").mkdir(parents=True)
    (folder / "index.html").write_text("<!doctype html><html><title>one</title></html>")
    (folder / "js" / "app.js").write_text("export const version = 1;\n")
    (folder / ".env").write_text("SECRET=1\n")
    env = dict(os.environ, SWITCHBOARD_CONSOLE_DIRECTORY=str(folder))
    gw, base = http_gateway(start_gateway, env=env)
    with httpx.Client(timeout=10) as client:
        page = client.get(f"{base}/console/")
        assert page.status_code == 200 and "<title>one</title>" in page.text
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert_security_headers(page.headers)
        module = client.get(f"{base}/console/js/app.js")
        assert module.headers["content-type"] == "text/javascript; charset=utf-8"
        # Read anew on each request: an edit shows at once, with a new validator.
        (folder / "js" / "app.js").write_text("export const version = 2;\n")
        edited = client.get(f"{base}/console/js/app.js", headers={"if-none-match": module.headers["etag"]})
        assert edited.status_code == 200 and "version = 2" in edited.text
        assert edited.headers["etag"] != module.headers["etag"]
    status, headers, body = raw_request(base, "GET", "/console/.env")
    assert_http_error(status, headers, body, 404, -32601, "/console/.env")


# --------------------------------------------------------------------------- the gateway's own origin


def ws_ping(url: str, origin: str, sock: socket.socket | None = None) -> dict:
    with ws_connect(url, origin=origin, sock=sock, open_timeout=10) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        return json.loads(ws.recv(timeout=10))


def assert_ws_refused(url: str, origin: str, sock: socket.socket | None = None) -> None:
    # Refused: a 403 answer, or the upgrade turned down and the connection closed.
    with pytest.raises((InvalidHandshake, OSError, EOFError)):
        with ws_connect(url, origin=origin, sock=sock, open_timeout=5) as ws:
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            ws.recv(timeout=5)


def loopback_socket(base: str) -> socket.socket:
    parts = urlsplit(base)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def test_a_page_of_the_gateways_own_origin_may_call_it(start_gateway, tmp_path):
    # http.allowedOrigins lists another origin, so the loopback origins are not allowed by
    # default: the listener's own address is allowed as the gateway's own origin alone.
    gw, base = http_gateway(start_gateway, tmp_path, http={"allowedOrigins": ["https://console.example.com"]})
    own = f"http://{host_port(base)}"
    ws_url = base.replace("http://", "ws://") + "/ws"
    assert ws_ping(ws_url, own) == {"jsonrpc": "2.0", "id": 1, "result": {}}
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{base}/api/v1/gateway/status", headers={"origin": own}).status_code == 200
        assert client.get(f"{base}/console/js/rpc.js", headers={"origin": own}).status_code == 200
        assert client.get(f"{base}/api/v1/gateway/status", headers={"origin": "https://console.example.com"}).status_code == 200
        for foreign in ("http://evil.example", f"http://localhost:{urlsplit(base).port}", f"https://{host_port(base)}", "null"):
            refused = client.get(f"{base}/api/v1/gateway/status", headers={"origin": foreign})
            assert refused.status_code == 403, foreign
            assert refused.json()["error"]["code"] == -32005
    for foreign in ("http://evil.example", f"http://localhost:{urlsplit(base).port}", f"https://{host_port(base)}"):
        assert_ws_refused(ws_url, foreign)


def test_a_foreign_page_may_not_open_the_websocket(start_gateway):
    gw, base = http_gateway(start_gateway)
    ws_url = base.replace("http://", "ws://") + "/ws"
    assert ws_ping(ws_url, f"http://{host_port(base)}")["result"] == {}
    assert_ws_refused(ws_url, "http://evil.example")
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{base}/console/js/rpc.js", headers={"origin": "http://evil.example"}).status_code == 403


def test_a_rebound_name_is_not_the_gateways_own_origin(start_gateway, tmp_path):
    """DNS rebinding: a page at `evil.example` whose name the attacker made resolve to the
    listener sends `Host: evil.example:PORT` and `Origin: http://evil.example:PORT` — the same
    name in both. The gateway's own origin counts only at a loopback address; any other name is
    judged by `http.allowedOrigins` alone (chapter 14, 14.4).
    """
    gw, base = http_gateway(start_gateway, tmp_path, http={"allowedOrigins": ["https://console.example.com"]})
    port = urlsplit(base).port
    rebound = f"evil.example:{port}"
    assert_ws_refused(f"ws://{rebound}/ws", f"http://{rebound}", sock=loopback_socket(base))
    # The console at the loopback address the browser used is its own, in any case.
    assert ws_ping(f"ws://localhost:{port}/ws", f"HTTP://LOCALHOST:{port}", sock=loopback_socket(base))["result"] == {}
    parts = urlsplit(base)
    for host, origin, expected in (
        (rebound, f"http://{rebound}", 403),
        # Names that look like a loopback address are names all the same.
        (f"127.0.0.1.evil.example:{port}", f"http://127.0.0.1.evil.example:{port}", 403),
        (f"127.x.attacker.io:{port}", f"http://127.x.attacker.io:{port}", 403),
        (f"127.0.0.256:{port}", f"http://127.0.0.256:{port}", 403),
        (f"localhost:{port}", f"http://localhost:{port}", 200),
        (f"localhost:{port}", "http://evil.example", 403),
        (f"localhost:{port}", f"https://localhost:{port}", 403),
    ):
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            connection.putrequest("GET", "/api/v1/gateway/status", skip_host=True)
            connection.putheader("Host", host)
            connection.putheader("Origin", origin)
            connection.endheaders()
            response = connection.getresponse()
            response.read()
            assert response.status == expected, (host, origin, response.status)
        finally:
            connection.close()
