#!/usr/bin/env python3
"""A Switchboard client with nothing but the Python standard library.

Connects to a running gateway, then sends `ping`, `tools/list` and
`gateway/status` as newline-delimited JSON-RPC 2.0 and prints the replies.

    switchboard serve --listen tcp://127.0.0.1:7400 &
    python3 python_raw_client.py                          # tcp://127.0.0.1:7400
    python3 python_raw_client.py unix:///run/sb.sock      # a Unix socket listener

Exit status: 0 when every request got a result, 1 otherwise.
"""

import json
import socket
import sys


def connect(url):
    """Open a stream socket to a `tcp://HOST:PORT` or `unix:///PATH` URL."""
    scheme, _, rest = url.partition("://")
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        return socket.create_connection((host.strip("[]"), int(port)), timeout=10)
    if scheme == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(rest)
        return s
    raise SystemExit(f"unsupported URL {url!r}: use tcp://HOST:PORT or unix:///PATH")


class Connection:
    def __init__(self, sock):
        self.sock = sock
        self.reader = sock.makefile("rb")  # buffered: yields one line at a time
        self.next_id = 0

    def call(self, method, params=None):
        """Send one request, wait for the reply with the same id, return it."""
        self.next_id += 1
        request = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            request["params"] = params
        # One JSON text per line, terminated by "\n".
        self.sock.sendall(json.dumps(request).encode("utf-8") + b"\n")
        while True:
            line = self.reader.readline()
            if not line:
                raise ConnectionError("the gateway closed the connection")
            reply = json.loads(line)
            if reply.get("id") == self.next_id:
                return reply
            # Anything else (e.g. a reply to an earlier request) is not ours: skip it.


def main():
    url = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:7400"
    conn = Connection(connect(url))
    ok = True
    for method in ("ping", "tools/list", "gateway/status"):
        reply = conn.call(method)
        if "error" in reply:
            ok = False
            print(f"{method}: error {reply['error']['code']}: {reply['error']['message']}")
            continue
        result = reply["result"]
        if method == "ping":
            print("ping: ok")
        elif method == "tools/list":
            names = [tool["name"] for tool in result["tools"]]
            print(f"tools/list: {len(names)} tool(s) {names}")
        else:
            server = result["server"]
            conns = result["connections"]
            print(f"gateway/status: {server['name']} {server['version']}, "
                  f"up {result['uptimeSeconds']:.1f}s, "
                  f"{conns['open']} open / {conns['accepted']} accepted connection(s), "
                  f"listeners {result['listeners']}")
    conn.sock.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
