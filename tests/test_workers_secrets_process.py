"""Secrets in the logs of a real ``twistd -n openclaw --workers 2`` on a real
``redis-server``: the token the group started with and one a SIGHUP rotates in
are masked in the supervisor's output (text and JSON lines) and in each
worker's ``logs.tail`` ring, as a single gateway masks them.

A request path carries the token into the access lines. Each request and each
WebSocket is made on a connection a chosen worker accepted (read from
``/proc``, see :mod:`tests.test_workers_process`), so both workers' records
and both rings are checked.
"""

from __future__ import annotations

import http.client
import json
import signal
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.gateway_process import GatewayProcess, write_config
from tests.redis_support import RedisServer
from tests.test_workers_process import children, get, owner_of, poll, server_inode
from tests.ws_sync_client import SyncWsClient

STARTED_TOKEN = "started-secret-token-0123456789abcdef"
ROTATED_TOKEN = "rotated-secret-token-0123456789abcdef"
JSON_LINES = "twistd --nodaemon --pidfile= --logger=openclaw.core.logformat.json_logger"


class WorkersMaskSecretsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.cleanup)
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir(parents=True)
        (self.tmp / "state").mkdir()
        self.config = write_config(
            self.tmp,
            {"session": {"store": "redis"}},
            auth={"mode": "token", "token": STARTED_TOKEN},
            redis={"url": self.redis.url},
        )

    def _start(self, runner: str) -> tuple[GatewayProcess, list[int]]:
        gateway = GatewayProcess(
            self.config, self.tmp / "state", extra_args=("--workers", "2"), runner=runner
        )
        self.addCleanup(gateway.ensure_stopped)
        poll(lambda: True if get(gateway.port, "/readyz")[0] == 200 else None, what="ready")

        def two() -> list[int] | None:
            pids = children(gateway.process.pid)
            return pids if len(pids) == 2 else None

        return gateway, poll(two, what="2 workers")

    def _get_on(self, gateway: GatewayProcess, pid: int, path: str) -> None:
        """``GET path`` on a connection that worker ``pid`` accepted."""
        for _ in range(500):
            conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
            try:
                conn.connect()
                assert conn.sock is not None
                if self._owner(gateway, conn.sock.getsockname()[1]) != pid:
                    continue
                conn.request("GET", path)
                conn.getresponse().read()
                return
            finally:
                conn.close()
        raise AssertionError(f"no connection reached worker {pid}")

    def _owner(self, gateway: GatewayProcess, client_port: int) -> int:
        """The worker that accepted our connection from ``client_port``."""
        inode = poll(lambda: server_inode(gateway.port, client_port), what="socket")
        return poll(lambda: owner_of(inode, children(gateway.process.pid)), what="owner")

    def _tails(self, gateway: GatewayProcess, pids: list[int], token: str) -> dict[int, list[str]]:
        """Each worker's ``logs.tail`` lines, by pid (a ``status`` call says whose)."""
        tails: dict[int, list[str]] = {}
        for _ in range(200):
            client = SyncWsClient(gateway.port, token=token)
            try:
                pid = client.request("status")["payload"]["pid"]
                if pid in pids and pid not in tails:
                    frame = client.request("logs.tail", {"limit": 2000})
                    self.assertTrue(frame["ok"], frame)
                    tails[pid] = frame["payload"]["lines"]
            finally:
                client.close()
            if len(tails) == len(pids):
                return tails
        raise AssertionError(f"logs.tail reached only the workers {sorted(tails)}")

    def _rotate_and_check(self, gateway: GatewayProcess, pids: list[int]) -> None:
        for pid in pids:
            self._get_on(gateway, pid, f"/started/{STARTED_TOKEN}")
        document = json.loads(self.config.read_text())
        document["gateway"]["auth"]["token"] = ROTATED_TOKEN
        self.config.write_text(json.dumps(document))
        gateway.process.send_signal(signal.SIGHUP)
        self._count(gateway, "config reloaded from", 2)
        for pid in pids:
            self._get_on(gateway, pid, f"/rotated/{ROTATED_TOKEN}")
        # Both workers' access lines for the rotated token, masked, in the parent's output.
        self._count(gateway, "GET /rotated/[redacted]", 2)
        tails = self._tails(gateway, pids, ROTATED_TOKEN)
        for pid, lines in tails.items():
            text = "\n".join(lines)
            self.assertIn("GET /started/[redacted]", text, pid)
            self.assertIn("GET /rotated/[redacted]", text, pid)
            self.assertNotIn(STARTED_TOKEN, text, pid)
            self.assertNotIn(ROTATED_TOKEN, text, pid)
        self.assertEqual(gateway.stop(), 0)
        self.assertEqual(_lines_with(gateway, "GET /started/[redacted]"), 2, gateway.text)
        self.assertNotIn(STARTED_TOKEN, gateway.text)
        self.assertNotIn(ROTATED_TOKEN, gateway.text)

    def _count(self, gateway: GatewayProcess, text: str, count: int) -> None:
        deadline = time.monotonic() + 30
        while _lines_with(gateway, text) < count:
            # typing note: the helper's line reader, to count lines (not just find one).
            self.assertIsNotNone(gateway._read_line(deadline), gateway.text)

    def test_text_output_and_rings_mask_started_and_rotated_tokens(self) -> None:
        """The supervisor's text lines and both rings show ``[redacted]`` for the
        start token and for the token a SIGHUP rotated in."""
        gateway, pids = self._start("twistd")
        self._rotate_and_check(gateway, pids)

    def test_json_output_masks_message_and_fields(self) -> None:
        """With JSON lines, each worker record's ``message`` is masked as its
        fields are (the message was rendered from an unmasked copy)."""
        gateway, pids = self._start(JSON_LINES)
        self._rotate_and_check(gateway, pids)
        lines = [json.loads(line) for line in gateway.output if line.startswith("{")]
        access = [
            line
            for line in lines
            if line.get("logger") == "openclaw.access" and "/rotated/" in line.get("path", "")
        ]
        self.assertEqual(len(access), 2, lines)
        for line in access:
            self.assertIn("GET /rotated/[redacted]", line["message"])
            self.assertEqual(line["path"], "/rotated/[redacted]")
        self.assertEqual({line["worker"] for line in access}, {1, 2})


def _lines_with(gateway: GatewayProcess, text: str) -> int:
    """How many output lines hold ``text`` (a JSON line may hold it twice: its
    ``message`` and a field)."""
    return sum(1 for line in gateway.output if text in line)
