"""Hostile documents against a real gateway: a workflow definition or a configuration file
whose aliases expand to a billion nodes ("billion laughs", 342 bytes) is refused at once with
an error naming the bound, and the gateway's memory does not move.

The figures (time to the refusal, resident memory before and after) are printed; run with
`-s` to see them.
"""

from __future__ import annotations

import subprocess
import time

from sbwire import LineClient

MiB = 1024 * 1024

BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"{name}: &{name} [{','.join(['*' + previous] * 9)}]\n" for previous, name in zip("abcdefgh", "bcdefghi"))
)

EXPANDED_SIZE = "the document expands to more than 100000 nodes through its aliases (the limit of expanded size)"


def test_the_bomb_is_a_few_hundred_bytes():
    assert len(BILLION_LAUGHS.encode()) == 342


def test_workflows_create_refuses_the_bomb_at_once_and_memory_stays_put(gateway_tcp):
    gw = gateway_tcp
    with LineClient.connect(gw.tcp) as client:
        # A first definition (refused for an ordinary reason) warms the parser and the catalog,
        # so that what follows measures the bomb alone.
        warm = client.call("workflows/create", {"source": "workflowName: warm\nversion: \"1\"\nsteps: []\n"})
        assert warm["error"]["code"] == -32602, warm
        rss_before = gw.rss_bytes()
        started = time.monotonic()
        reply = client.call("workflows/create", {"source": BILLION_LAUGHS})
        elapsed_ms = (time.monotonic() - started) * 1000
        rss_after = gw.rss_bytes()
        error = reply.get("error")
        assert error is not None, reply
        assert error["code"] == -32602, error
        assert EXPANDED_SIZE in error["message"], error
        problems = error["data"]["problems"]
        assert [p["message"] for p in problems] == [EXPANDED_SIZE], problems
        assert problems[0]["line"] == 6, problems
        assert (problems[0]["bound"], problems[0]["limit"]) == ("expandedSize", 100000), problems
        growth = rss_after - rss_before
        assert growth < 4 * MiB, f"gateway RSS grew by {growth / MiB:.1f} MiB refusing a 342-byte document"
        # The gateway is free at once: a ping is answered well within a second.
        pinged = time.monotonic()
        client.ping_ok(timeout=1.0)
        ping_ms = (time.monotonic() - pinged) * 1000
        print(
            f"\nbillion laughs over TCP: refused in {elapsed_ms:.1f} ms (round trip); "
            f"RSS {rss_before / MiB:.1f} MiB before, {rss_after / MiB:.1f} MiB after; ping {ping_ms:.1f} ms"
        )
        # Nothing was stored.
        listed = client.call("workflows/list")
        assert listed["result"]["workflows"] == [], listed


def test_the_same_bomb_as_a_key_is_refused_too(gateway_tcp):
    """Yams hashes mapping keys to find duplicates: a key naming the bomb must be measured first."""
    with LineClient.connect(gateway_tcp.tcp) as client:
        reply = client.call("workflows/create", {"source": BILLION_LAUGHS + "? *i\n: x\n"}, timeout=5.0)
        assert EXPANDED_SIZE in reply["error"]["message"], reply
        client.ping_ok(timeout=1.0)


def test_a_json_definition_nested_too_deep_is_refused(gateway_tcp):
    deep: object = "leaf"
    for _ in range(100):
        deep = {"nested": deep}
    with LineClient.connect(gateway_tcp.tcp) as client:
        reply = client.call("workflows/create", {"workflowName": "deep", "version": "1", "steps": [], "inputs": deep})
        error = reply["error"]
        assert error["code"] == -32602, error
        assert "the document nests deeper than 64 levels (the limit of depth)" in error["message"], error


def test_config_check_refuses_a_bomb_configuration_naming_the_bound(sb_bin, tmp_path):
    config = tmp_path / "bomb.yaml"
    config.write_text(BILLION_LAUGHS)
    started = time.monotonic()
    run = subprocess.run([str(sb_bin), "config", "check", str(config)], capture_output=True, text=True, timeout=30)
    elapsed_ms = (time.monotonic() - started) * 1000
    assert run.returncode == 1, run
    assert f"{config}:6:8: {EXPANDED_SIZE}" in run.stderr, run.stderr
    print(f"\nconfig check of the bomb: exit 1 in {elapsed_ms:.0f} ms (process start included)")
