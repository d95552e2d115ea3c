"""The identity of things: a task id, once given, is never given again, so a client polling an old
id can never read another task's result — not after the gateway restarts."""

from __future__ import annotations

import json

from sbwire import RpcSession


def test_task_ids_are_not_given_again_after_a_restart(start_gateway):
    first = start_gateway("tcp")
    with RpcSession.connect(first.tcp) as rpc:
        old = rpc.result("tasks/submit", {"tool": "nobody_offers_this", "maxRetries": 0})["taskId"]
    first.stop()

    second = start_gateway("tcp")
    with RpcSession.connect(second.tcp) as rpc:
        new = rpc.result("tasks/submit", {"tool": "nobody_offers_this", "maxRetries": 0})["taskId"]
        assert new != old
        assert int(new.removeprefix("task-")) > int(old.removeprefix("task-"))
        # The old id names nothing here: it is unknown, not someone else's task.
        unknown = rpc.call("tasks/get", {"taskId": old})
        assert unknown["error"]["code"] == -32602 and unknown["error"]["data"]["taskId"] == old, json.dumps(unknown)
