"""The WebSocket read methods of one instance see what another instance wrote.

Two real gateway processes on one real Redis. A turn answered by instance A,
then one by B: ``chat.history`` on A (which last saw the session after its
own turn) and ``sessions.list`` / ``status`` on B (which never ran the other session) show
the shared state, not what each process happened to cache. This holds only
when the method table routes these reads through the handlers that refresh a
shared catalog first.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from twisted.trial.unittest import SynchronousTestCase

from openclaw.sessions.redis.keys import KeySchema
from tests.gateway_process import GatewayProcess
from tests.redis_support import RedisServer
from tests.test_redis_gateway import chat, gateway_config, start_draining
from tests.ws_sync_client import SyncWsClient


class ReadsAcrossInstancesTests(SynchronousTestCase):
    """Instances A and B share one Redis."""

    server: ClassVar[RedisServer]
    a: ClassVar[GatewayProcess]
    b: ClassVar[GatewayProcess]

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = RedisServer()
        cls.server.start()
        root = cls.server.directory / "gateways"
        cls.a = cls.start(root / "a")
        cls.b = cls.start(root / "b")

    @classmethod
    def start(cls, directory: Path) -> GatewayProcess:
        config = gateway_config(directory, cls.server.url)
        state = directory / "state"
        state.mkdir(exist_ok=True)
        gateway = GatewayProcess(config, state)
        start_draining(gateway)
        return gateway

    @classmethod
    def tearDownClass(cls) -> None:
        for gateway in (cls.a, cls.b):
            gateway.stop()
        cls.server.cleanup()

    def client(self, gateway: GatewayProcess) -> SyncWsClient:
        client = SyncWsClient(gateway.port)
        self.addCleanup(client.close)
        return client

    def test_chat_history_shows_the_other_instances_turn(self) -> None:
        """After a turn on A and the next on B, chat.history asked of A holds
        both turns (A refreshes the session from Redis before answering)."""
        key = "agent:main:history-across"
        for gateway, text in ((self.a, "first on a"), (self.b, "second on b")):
            status, body = chat(gateway.port, key, text)
            self.assertEqual(status, 200, body)
        history = self.client(self.a).request("chat.history", {"sessionKey": key})
        self.assertTrue(history["ok"], history)
        users = [m["content"] for m in history["payload"]["messages"] if m["role"] == "user"]
        self.assertEqual(users, ["first on a", "second on b"])

    def test_sessions_list_shows_a_session_only_the_other_instance_ran(self) -> None:
        """A session whose only turn ran on A is listed by sessions.list on B."""
        key = "agent:main:listed-across"
        status, body = chat(self.a.port, key, "only on a")
        self.assertEqual(status, 200, body)
        listed = self.client(self.b).request("sessions.list", {})
        self.assertTrue(listed["ok"], listed)
        self.assertIn(key, [s["key"] for s in listed["payload"]["sessions"]])

    def test_status_counts_a_session_only_the_other_instance_ran(self) -> None:
        """``status`` on B (what ``openclaw status --json`` reads) lists, under
        ``sessions.byAgent``, a session whose only turn ran on A."""
        key = "agent:main:status-across"
        status, body = chat(self.a.port, key, "only on a")
        self.assertEqual(status, 200, body)
        answer = self.client(self.b).request("status", {"includeCliProjection": True})
        self.assertTrue(answer["ok"], answer)
        [main] = [e for e in answer["payload"]["sessions"]["byAgent"] if e["agentId"] == "main"]
        self.assertIn(key, [row["key"] for row in main["recent"]])
        self.assertEqual(answer["payload"]["sessions"]["count"], main["count"])

    def test_sessions_delete_on_the_other_instance_deletes(self) -> None:
        """sessions.delete on B of a session made on A after B started answers
        deleted: true, and the entry is gone from Redis."""
        key = "agent:main:deleted-across"
        status, body = chat(self.a.port, key, "only on a")
        self.assertEqual(status, 200, body)
        deleted = self.client(self.b).request("sessions.delete", {"key": key})
        self.assertEqual(deleted["payload"]["deleted"], True, deleted)
        entry = self.server.command("HGET", KeySchema().index("main"), key)
        self.assertEqual(entry, b"$-1\r\n")
