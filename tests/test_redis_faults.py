"""Redis lost and back while a real gateway serves load.

The server persists (``appendonly yes``, ``appendfsync always``: the setting
docs/deployment.md recommends), is killed under load and started again on
the same socket. While it is away new runs answer 503 with ``Retry-After``,
a stream in flight ends with an error frame and ``[DONE]``; once it is back
the gateway serves again by itself; every answered turn is in the
transcript exactly once.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from twisted.trial.unittest import SynchronousTestCase

from openclaw.sessions.redis.keys import KeySchema
from tests.gateway_process import TOKEN, GatewayProcess
from tests.redis_support import RedisServer
from tests.test_redis_gateway import gateway_config, start_draining

T = TypeVar("T")


def poll(check: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Call ``check`` until it returns something other than None (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def chat(
    port: int, key: str, text: str, *, stream: bool = False
) -> tuple[int, dict[str, str], str]:
    """Status, headers and body text of one chat completion on session ``key``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = {
            "model": "openclaw/main",
            "stream": stream,
            "messages": [{"role": "user", "content": text}],
        }
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(body),
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "Content-Type": "application/json",
                "x-openclaw-session-key": key,
            },
        )
        response = conn.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read().decode()
    finally:
        conn.close()


class RedisOutageTests(SynchronousTestCase):
    """One gateway, one persistent Redis that goes away and comes back."""

    def setUp(self) -> None:
        self.server = RedisServer(persist=True)
        self.server.start()
        self.addCleanup(self.server.cleanup)
        root = self.server.directory / "gw"
        config = gateway_config(root, self.server.url, delay_ms=10)
        state = root / "state"
        state.mkdir()
        self.gateway = GatewayProcess(config, state)
        self.addCleanup(self.gateway.ensure_stopped)
        start_draining(self.gateway)

    def transcript_users(self, key: str) -> list[str]:
        schema = KeySchema()
        raw = self.server.command("HGET", schema.index("main"), f"agent:main:{key}")
        entry = json.loads(raw.split(b"\r\n")[1])
        lines = self.server.command(
            "LRANGE", schema.transcript("main", entry["sessionId"]), "0", "-1"
        )
        parsed = [json.loads(p) for p in lines.split(b"\r\n") if p.startswith(b"{")]
        return [
            p["message"]["content"]
            for p in parsed
            if p.get("type") == "message" and p["message"]["role"] == "user"
        ]

    def transcript_answers(self, key: str) -> list[str]:
        schema = KeySchema()
        raw = self.server.command("HGET", schema.index("main"), f"agent:main:{key}")
        entry = json.loads(raw.split(b"\r\n")[1])
        lines = self.server.command(
            "LRANGE", schema.transcript("main", entry["sessionId"]), "0", "-1"
        )
        parsed = [json.loads(p) for p in lines.split(b"\r\n") if p.startswith(b"{")]
        return [
            p["message"]["content"][0]["text"]
            for p in parsed
            if p.get("type") == "message"
            and p["message"]["role"] == "assistant"
            and p["message"].get("stopReason") == "stop"
        ]

    def test_outage_under_load(self) -> None:
        """503 + Retry-After while Redis is away, an error frame then [DONE] on a
        stream it cut, recovery without a restart, and no answered turn lost or
        doubled."""
        port = self.gateway.port
        stop = threading.Event()
        answered: dict[str, list[str]] = {f"load{i}": [] for i in range(3)}
        statuses: list[int] = []

        def load(key: str) -> None:
            n = 0
            while not stop.is_set():
                text = f"{key} turn {n}"
                try:
                    status, _, _ = chat(port, key, text)
                except OSError:
                    status = 0
                statuses.append(status)
                if status == 200:
                    answered[key].append(text)
                else:
                    time.sleep(0.02)  # pacing after a refusal, not synchronisation
                n += 1

        workers = [threading.Thread(target=load, args=(key,)) for key in answered]
        for worker in workers:
            worker.start()
        try:
            poll(lambda: True if all(len(v) >= 2 for v in answered.values()) else None, what="load")
            streamed: list[str] = []
            streamer = threading.Thread(
                target=lambda: streamed.append(
                    chat(port, "streamed", " ".join(["word"] * 60), stream=True)[2]
                )
            )
            streamer.start()
            lock = KeySchema().lock("agent:main:streamed")
            poll(
                lambda: True if self.server.command("EXISTS", lock) == b":1\r\n" else None,
                what="the stream to hold its lane",
            )
            self.server.stop()
            refused = poll(
                lambda: r if (r := chat(port, "probe", "hello"))[0] == 503 else None,
                what="a 503",
            )
            self.assertEqual(refused[1].get("retry-after"), "1")
            self.assertIn("session_store_unavailable", refused[2])
            streamer.join(30)
            [text] = streamed
            self.assertIn('"error"', text)
            self.assertTrue(text.rstrip().endswith("data: [DONE]"), text[-200:])
            self.server.start()
            poll(lambda: True if chat(port, "probe", "back")[0] == 200 else None, what="recovery")
            before = {key: len(v) for key, v in answered.items()}
            poll(
                lambda: True if all(len(answered[k]) > before[k] for k in answered) else None,
                what="load to be served again",
            )
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)
        self.assertIn(503, statuses)
        # Runs that ended while Redis was away leave no "active" entry behind
        # (other instances would refuse to reset or delete their sessions).
        runs = KeySchema().runs()
        poll(
            lambda: True if self.server.command("HLEN", runs) == b":0\r\n" else None,
            what="the runs that ended during the outage to be cleared",
        )
        for key, texts in answered.items():
            users = self.transcript_users(key)
            self.assertEqual(len(users), len(set(users)), f"duplicated turn in {key}")
            answers = self.transcript_answers(key)
            for text in texts:
                self.assertEqual(
                    sum(f'"{text}"' in a for a in answers), 1, f"{text!r} not saved once"
                )
