"""Every request with an id gets exactly one reply, also in a burst where oversize lines (some
with their id readable, some without) are mixed with ordinary requests in the same writes."""

from __future__ import annotations

import json
import random

from sbwire import LineClient, jline, req

LIMIT = 65536


def test_a_burst_of_oversize_and_ordinary_lines_gets_exactly_one_reply_per_id(start_gateway, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"limits": {"maxMessageBytes": LIMIT}}))
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    rng = random.Random(7)
    lines = []
    expected = {}
    for n in range(600):
        kind = rng.choice(["ping", "ping", "oversize-id-first", "oversize-id-last", "oversize-no-id"])
        pad = "p" * rng.randint(LIMIT + 1, 4 * LIMIT)
        if kind == "ping":
            lines.append(jline(req("ping", n)))
            expected[n] = "result"
        elif kind == "oversize-id-first":
            lines.append(jline(req("ping", n, {"pad": pad})))
            expected[n] = -32003
        elif kind == "oversize-id-last":
            lines.append(('{"jsonrpc":"2.0","method":"ping","params":{"pad":"' + pad + f'"}},"id":{n}}}\n').encode())
            expected[n] = -32003
        else:
            lines.append(('{"jsonrpc":"2.0","method":"ping","params":{"pad":"' + pad + '"}}\n').encode())
    with LineClient.connect(gateway.tcp) as client:
        # Several lines per write, cut anywhere, as a fast client's writes arrive.
        blob = b"".join(lines)
        position = 0
        while position < len(blob):
            step = rng.randint(1, 3 * LIMIT)
            client.send_raw(blob[position:position + step])
            position += step
        client.send(req("ping", "end"))
        replies = {}
        nulls = 0
        while True:
            reply = client.recv(timeout=60)
            if reply.get("id") == "end":
                break
            if reply.get("id") is None:
                nulls += 1
                continue
            assert reply["id"] not in replies, f"two replies for {reply['id']}"
            replies[reply["id"]] = reply
    assert set(replies) == set(expected), f"missing {sorted(set(expected) - set(replies))[:10]}"
    for n, outcome in expected.items():
        if outcome == "result":
            assert replies[n].get("result") == {}, replies[n]
        else:
            assert replies[n]["error"]["code"] == -32003, replies[n]
    # The lines without a readable id got one error each, with a null id.
    assert nulls == sum(1 for line in lines if b'"id"' not in line)
