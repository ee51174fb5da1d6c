"""Exec approvals and readiness with two real gateway processes on one real Redis.

A command that waits for approval on instance A is seen, listed and answered
by an operator connected to instance B (any request may go to either); with
no operator on any instance it is unanswered at once. ``/readyz`` turns 503
while Redis is down and 200 again when it returns; ``/healthz`` stays 200.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from twisted.trial.unittest import SynchronousTestCase

from openclaw.sessions.redis.keys import KeySchema
from tests.gateway_process import GatewayProcess, write_config
from tests.redis_support import RedisServer
from tests.test_redis_gateway import chat, poll, start_draining
from tests.threaded_model import Frame, ScriptedModel, serve, text_of
from tests.ws_sync_client import SyncWsClient

COMMAND = "uname -s"


class _ScriptedModel(ScriptedModel):
    """Calls ``exec`` once, then repeats the tool result as its answer."""

    def reply(self, request: dict[str, Any]) -> list[Frame]:
        results = [m for m in request.get("messages", []) if m.get("role") == "tool"]
        if results:
            said = text_of(results[-1].get("content"))
            return [({"role": "assistant", "content": f"tool said: {said}"}, None), ({}, "stop")]
        call = {
            "index": 0,
            "id": "call-exec",
            "type": "function",
            "function": {"name": "exec", "arguments": json.dumps({"command": COMMAND})},
        }
        return [({"role": "assistant", "tool_calls": [call]}, None), ({}, "tool_calls")]


def _gateway_config(directory: Path, redis_url: str, model_port: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return write_config(
        directory,
        {
            "session": {"store": "redis"},
            "models": {
                "providers": {
                    "scripted": {
                        "baseUrl": f"http://127.0.0.1:{model_port}/v1",
                        "api": "openai-completions",
                        "apiKey": "none",
                        "models": [{"id": "m", "name": "scripted"}],
                    }
                }
            },
            "agents": {"list": [{"id": "main", "default": True, "model": "scripted/m"}]},
            "tools": {
                "exec": {"security": "allowlist", "ask": "on-miss", "approvalTimeoutSeconds": 20}
            },
        },
        redis={"url": redis_url},
    )


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


class _Instances(SynchronousTestCase):
    """One Redis and a scripted model; subclasses start their gateways."""

    server: ClassVar[RedisServer]
    model: ClassVar[ThreadingHTTPServer]
    names: ClassVar[tuple[str, ...]] = ()
    gateways: ClassVar[dict[str, GatewayProcess]]

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = RedisServer()
        cls.server.start()
        cls.model = serve(_ScriptedModel)
        cls.gateways = {}
        try:
            for name in cls.names:
                root = cls.server.directory / name
                config = _gateway_config(root, cls.server.url, cls.model.server_address[1])
                state = root / "state"
                state.mkdir(exist_ok=True)
                gateway = cls.gateways[name] = GatewayProcess(config, state)
                start_draining(gateway)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        for gateway in cls.gateways.values():
            gateway.stop()
        cls.model.shutdown()
        cls.model.server_close()
        cls.server.cleanup()


class CrossInstanceApprovalTests(_Instances):
    """Instances A and B; the command always runs on A."""

    names = ("a", "b")

    def operator_on(self, name: str) -> SyncWsClient:
        """An operator.approvals client on ``name``, counted in Redis before it returns."""
        client = SyncWsClient(self.gateways[name].port)
        self.addCleanup(client.close)
        approvers = KeySchema().approvers()
        poll(
            # HGETALL answers bulk strings: instance id, then its count "1"
            lambda: (
                True if self.server.command("HGETALL", approvers).endswith(b"$1\r\n1\r\n") else None
            ),
            what="the operator counted in Redis",
        )
        return client

    def turn_on_a(self, user: str) -> Iterator[tuple[int, Any]]:
        """Start a chat turn on A in a thread; yields once, then its result."""
        results: list[tuple[int, Any]] = []
        port = self.gateways["a"].port
        thread = threading.Thread(target=lambda: results.append(chat(port, user, "run it")))
        thread.start()
        yield (0, None)
        thread.join(30)
        self.assertEqual(len(results), 1, "the turn did not finish")
        yield results[0]

    def requested(self, client: SyncWsClient) -> dict[str, Any]:
        frame = client.wait_event(lambda f: f.get("event") == "exec.approval.requested")
        payload: dict[str, Any] = frame["payload"]
        return payload

    def test_operator_on_b_approves_a_command_on_a(self) -> None:
        """The request made on A reaches the operator on B, exec.approval.list on B
        shows it, allow-once on B runs the command on A, and the request is gone."""
        operator = self.operator_on("b")
        turn = self.turn_on_a("approve-from-b")
        next(turn)
        request = self.requested(operator)
        self.assertEqual(request["request"]["command"], COMMAND)
        listed = operator.request("exec.approval.list")
        self.assertEqual([a["id"] for a in listed["payload"]["approvals"]], [request["id"]])
        answer = operator.request(
            "exec.approval.resolve", {"id": request["id"], "decision": "allow-once"}
        )
        self.assertTrue(answer["ok"], answer)
        status, body = next(turn)
        self.assertEqual(status, 200, body)
        self.assertIn("tool said: Linux", body["choices"][0]["message"]["content"])
        again = operator.request("exec.approval.resolve", {"id": request["id"], "decision": "deny"})
        self.assertFalse(again["ok"])
        self.assertEqual(operator.request("exec.approval.list")["payload"]["approvals"], [])

    def test_operator_on_b_denies(self) -> None:
        """deny on B: the command on A does not run and the model reads the denial;
        the operator sees the request resolved as denied."""
        operator = self.operator_on("b")
        turn = self.turn_on_a("deny-from-b")
        next(turn)
        request = self.requested(operator)
        answer = operator.request(
            "exec.approval.resolve", {"id": request["id"], "decision": "deny"}
        )
        self.assertTrue(answer["ok"], answer)
        status, body = next(turn)
        self.assertEqual(status, 200, body)
        content = body["choices"][0]["message"]["content"]
        self.assertIn("denied", content.lower())
        self.assertNotIn("Linux", content)
        resolved = operator.wait_event(
            lambda f: (
                f.get("event") == "exec.approval.resolved" and f["payload"]["id"] == request["id"]
            )
        )
        self.assertEqual(resolved["payload"]["decision"], "deny")

    def test_no_operator_anywhere_is_unanswered_at_once(self) -> None:
        """With no operator client on either instance the request is unanswered
        at once (askFallback: deny), long before the 20 s approval timeout, and
        no pending record is left in Redis."""
        poll(
            lambda: (
                True
                if self.server.command("HLEN", KeySchema().approvers()).startswith(b":0")
                else None
            ),
            what="no operator counted",
        )
        started = time.monotonic()
        status, body = chat(self.gateways["a"].port, "nobody", "run it")
        self.assertEqual(status, 200, body)
        self.assertIn("Exec denied", body["choices"][0]["message"]["content"])
        self.assertLess(time.monotonic() - started, 15.0, "it waited for the approval timeout")
        self.assertTrue(self.server.command("HLEN", KeySchema().approvals()).startswith(b":0"))


class ReadinessTests(_Instances):
    """One instance; its Redis is stopped and started again."""

    names = ("r",)

    def test_readyz_follows_redis(self) -> None:
        """/readyz is 200, turns 503 with a reason while redis-server is stopped
        (/healthz stays 200), and 200 again once it is back."""
        port = self.gateways["r"].port
        self.assertEqual(_get(port, "/readyz"), (200, {"ready": True, "status": "ready"}))
        self.server.stop()
        down = poll(
            lambda: (lambda r: r if r[0] == 503 else None)(_get(port, "/readyz")),
            what="/readyz 503",
        )
        self.assertEqual(down[1]["reason"], "shared state unavailable")
        self.assertIs(down[1]["ready"], False)
        self.assertEqual(_get(port, "/healthz")[0], 200)
        self.server.start()
        up = poll(
            lambda: (lambda r: r if r[0] == 200 else None)(_get(port, "/readyz")),
            timeout=20.0,
            what="/readyz 200 again",
        )
        self.assertIs(up[1]["ready"], True)
