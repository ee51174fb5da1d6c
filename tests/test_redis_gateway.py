"""Two real gateway processes (``twistd -n openclaw``) on one real Redis.

Any request may go to either instance: a session alternating between them
keeps one continuous history, two turns sent at once to different instances
on one session run one after the other, and an instance killed with SIGKILL
while holding a session's lane blocks it only until the lock's TTL. Also the
start-up check: an unreachable Redis stops the gateway with one line.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from twisted.trial.unittest import SynchronousTestCase

from openclaw.sessions.redis.keys import KeySchema
from tests.gateway_process import TOKEN, VENV_BIN, GatewayProcess, write_config
from tests.redis_support import RedisServer
from tests.ws_sync_client import SyncWsClient

T = TypeVar("T")
LOCK_TTL = 1.5


def poll(check: Callable[[], T | None], timeout: float = 15.0, what: str = "condition") -> T:
    """Call ``check`` until it returns something other than None (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def chat(port: int, key: str, text: str, *, stream: bool = False) -> tuple[int, Any]:
    """A chat completion on session ``key``; the JSON body, or the SSE text."""
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
        raw = response.read()
        return response.status, (raw.decode() if stream else json.loads(raw))
    finally:
        conn.close()


def start_draining(gateway: GatewayProcess) -> None:
    """Read the gateway's log as it comes (a daemon thread): a pipe nobody
    reads fills up and stalls the gateway's writes, and with them the gateway."""

    def drain() -> None:
        deadline = time.monotonic() + 600
        with contextlib.suppress(TimeoutError, OSError, ValueError):
            while gateway._read_line(deadline) is not None:
                pass

    threading.Thread(target=drain, daemon=True).start()


def gateway_config(directory: Path, redis_url: str, delay_ms: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return write_config(
        directory,
        {
            "session": {"store": "redis"},
            "models": {"providers": {"demo": {"api": "demo", "delayMs": delay_ms}}},
            "agents": {
                "defaults": {"maxConcurrent": 64},
                "list": [{"id": "main", "default": True, "model": "demo/echo"}],
            },
        },
        redis={"url": redis_url, "lockTtlSeconds": LOCK_TTL},
        # Failed-auth budget per client, shared by the instances; the tests name
        # their clients with X-Forwarded-For from this trusted proxy.
        auth={
            "mode": "token",
            "token": TOKEN,
            "rateLimit": {"maxAttempts": 4, "windowMs": 60000, "lockoutMs": 60000},
        },
        trustedProxies=["127.0.0.1"],
    )


class TwoInstancesTests(SynchronousTestCase):
    """Instances A and B share one Redis."""

    server: ClassVar[RedisServer]
    a: ClassVar[GatewayProcess]
    b: ClassVar[GatewayProcess]
    root: ClassVar[Path]

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = RedisServer()
        cls.server.start()
        cls.root = cls.server.directory / "gateways"
        cls.a = cls.start("a", delay_ms=15)
        cls.b = cls.start("b", delay_ms=15)

    @classmethod
    def start(cls, name: str, delay_ms: int) -> GatewayProcess:
        config = gateway_config(cls.root / name, cls.server.url, delay_ms)
        state = cls.root / name / "state"
        state.mkdir(exist_ok=True)
        gateway = GatewayProcess(config, state)
        start_draining(gateway)
        return gateway

    @classmethod
    def tearDownClass(cls) -> None:
        for gateway in (cls.a, cls.b):
            gateway.stop()
        cls.server.cleanup()

    def transcript(self, key: str) -> list[dict[str, Any]]:
        """The session's transcript entries as stored in Redis (header skipped)."""
        schema = KeySchema()
        raw = self.server.command("HGET", schema.index("main"), f"agent:main:{key}")
        entry = json.loads(raw.split(b"\r\n")[1])
        lines = self.server.command(
            "LRANGE", schema.transcript("main", entry["sessionId"]), "0", "-1"
        )
        parsed = [json.loads(p) for p in lines.split(b"\r\n") if p.startswith(b"{")]
        return [p for p in parsed if p.get("type") == "message"]

    def test_history_continues_across_instances(self) -> None:
        """Turns alternating between A and B form one transcript: each turn's
        prompt includes every earlier turn, and the parent chain is unbroken."""
        key = "alternating"
        prompt_tokens: list[int] = []
        for n in range(6):
            port = (self.a if n % 2 == 0 else self.b).port
            status, body = chat(port, key, f"question {n}")
            self.assertEqual(status, 200, body)
            self.assertIn(f"question {n}", body["choices"][0]["message"]["content"])
            prompt_tokens.append(body["usage"]["prompt_tokens"])
        self.assertEqual(prompt_tokens, sorted(set(prompt_tokens)))
        entries = self.transcript(key)
        roles = [e["message"]["role"] for e in entries]
        self.assertEqual(roles, ["user", "assistant"] * 6)
        users = [e["message"]["content"] for e in entries if e["message"]["role"] == "user"]
        self.assertEqual(users, [f"question {n}" for n in range(6)])
        for parent, child in itertools.pairwise(entries):
            self.assertEqual(child["parentId"], parent["id"])

    def test_concurrent_turns_on_one_session_never_interleave(self) -> None:
        """Turns sent at the same moment to A and B on one session run one at a
        time: the transcript is user/assistant pairs, each answering its own
        question."""
        key = "contended"
        words = " ".join(f"w{i}" for i in range(20))
        results: list[tuple[int, Any]] = []

        def send(port: int, n: int) -> None:
            results.append(chat(port, key, f"turn {n} {words}", stream=True))

        threads = [
            threading.Thread(target=send, args=((self.a, self.b)[n % 2].port, n)) for n in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        self.assertEqual([status for status, _ in results], [200] * 6)
        self.assertTrue(all(text.rstrip().endswith("data: [DONE]") for _, text in results))
        entries = self.transcript(key)
        self.assertEqual([e["message"]["role"] for e in entries], ["user", "assistant"] * 6)
        for question, answer in zip(entries[::2], entries[1::2], strict=True):
            self.assertEqual(question["runId"], answer["runId"])
            asked = question["message"]["content"].split()[1]
            said = answer["message"]["content"][0]["text"]
            self.assertIn(f"turn {asked} ", said)

    def test_sigkill_of_the_lane_holder_frees_the_lane_within_ttl(self) -> None:
        """An instance killed mid-turn holds its session's lane only until the
        lock's TTL; the next turn (on another instance) is answered and the
        transcript keeps every turn that was answered."""
        key = "killed-holder"
        status, _ = chat(self.a.port, key, "before the crash")
        self.assertEqual(status, 200)
        victim = self.start("victim", delay_ms=200)
        try:
            thread = threading.Thread(
                target=lambda: _swallow(
                    lambda: chat(victim.port, key, " ".join(["slow"] * 50), stream=True)
                )
            )
            thread.start()
            lock = KeySchema().lock(f"agent:main:{key}")
            poll(
                lambda: True if self.server.command("EXISTS", lock) == b":1\r\n" else None,
                what="the victim to hold the lane",
            )
            victim.kill()
            thread.join(30)
        finally:
            victim.ensure_stopped()
        started = time.monotonic()
        status, body = chat(self.b.port, key, "after the crash")
        waited = time.monotonic() - started
        self.assertEqual(status, 200, body)
        self.assertLess(waited, LOCK_TTL + 5)
        entries = self.transcript(key)
        answered = [
            e["message"]["content"][0]["text"]
            for e in entries
            if e["message"]["role"] == "assistant"
        ]
        self.assertEqual(len(answered), 2)
        self.assertIn("before the crash", answered[0])
        self.assertIn("after the crash", answered[1])

    def test_a_holder_stalled_past_the_ttl_stops_and_writes_nothing(self) -> None:
        """An instance paused (SIGSTOP) mid-turn past the lock's TTL loses the
        lane to the next turn (on B); resumed, it stops its turn and answers
        503 turn_not_saved, and writes nothing into the session after B's turn."""
        key = "stalled-holder"
        status, _ = chat(self.a.port, key, "before")
        self.assertEqual(status, 200)
        victim = self.start("stalled", delay_ms=200)
        answers: list[tuple[int, Any]] = []
        try:
            thread = threading.Thread(
                target=lambda: answers.append(
                    chat(victim.port, key, "aturn " + " ".join(["slow"] * 50))
                )
            )
            thread.start()
            lock = KeySchema().lock(f"agent:main:{key}")
            poll(
                lambda: True if "aturn" in json.dumps(self.transcript(key)) else None,
                what="the victim's turn to begin",
            )
            held = self.server.command("GET", lock)
            victim.process.send_signal(signal.SIGSTOP)
            try:
                status, body = chat(self.b.port, key, "bturn")
                self.assertEqual(status, 200, body)
                self.assertNotEqual(self.server.command("GET", lock), held)
            finally:
                victim.process.send_signal(signal.SIGCONT)
            thread.join(30)
        finally:
            victim.ensure_stopped()
        [(status, body)] = answers
        self.assertEqual(status, 503, body)
        self.assertEqual(body["error"]["code"], "turn_not_saved", body)
        entries = self.transcript(key)
        said = [(e["message"]["role"], json.dumps(e["message"]["content"])) for e in entries]
        roles = ["user", "assistant", "user", "user", "assistant"]
        self.assertEqual([role for role, _ in said], roles, said)
        self.assertIn("aturn", said[2][1])
        self.assertIn("bturn", said[3][1])
        self.assertIn("bturn", said[4][1])

    def test_sigkill_of_the_lane_holder_frees_reset_within_ttl(self) -> None:
        """After an instance is killed mid-turn, sessions.reset on another one is
        refused (SESSION_BUSY) only until the session's lock expires
        (lockTtlSeconds), not until the dead instance's heartbeat does (15 s)."""
        key = "agent:main:killed-then-reset"
        victim = self.start("victim-reset", delay_ms=200)
        try:
            runner = SyncWsClient(victim.port)
            try:
                sent = runner.request(
                    "chat.send",
                    {"sessionKey": key, "message": "slow " * 50, "idempotencyKey": "kr-1"},
                )
                self.assertTrue(sent["ok"], sent)
                lock = KeySchema().lock(key)
                poll(
                    lambda: True if self.server.command("EXISTS", lock) == b":1\r\n" else None,
                    what="the victim to hold the lane",
                )
                victim.kill()
            finally:
                _swallow(runner.close)
        finally:
            victim.ensure_stopped()
        killed = time.monotonic()
        resetter = self.client(self.b)

        def reset() -> dict[str, Any] | None:
            answer = resetter.request("sessions.reset", {"key": key})
            return answer if answer["ok"] else None

        poll(reset, timeout=LOCK_TTL + 5, what="sessions.reset to be accepted")
        self.assertLess(time.monotonic() - killed, LOCK_TTL + 5)

    def client(self, gateway: GatewayProcess) -> SyncWsClient:
        ws = SyncWsClient(gateway.port)
        self.addCleanup(ws.close)
        return ws

    def test_events_of_a_run_on_one_instance_reach_clients_of_the_other(self) -> None:
        """A WebSocket client on B following a session receives the agent and
        chat events of a turn that instance A runs (HTTP there)."""
        key = "agent:main:watched"
        watcher = self.client(self.b)
        subscribed = watcher.request("sessions.subscribe", {"keys": [key]})
        self.assertTrue(subscribed["ok"], subscribed)
        status, _ = chat(self.a.port, "watched", "seen from afar")
        self.assertEqual(status, 200)
        final = watcher.wait_event(
            lambda f: f.get("event") == "chat" and f["payload"].get("state") == "final"
        )
        self.assertEqual(final["payload"]["sessionKey"], key)
        self.assertIn("seen from afar", json.dumps(final["payload"]))
        ended = watcher.wait_event(
            lambda f: (
                f.get("event") == "agent"
                and f["payload"].get("stream") == "lifecycle"
                and f["payload"]["data"].get("phase") == "end"
            )
        )
        self.assertEqual(ended["payload"]["runId"], final["payload"]["runId"])

    def test_agent_wait_answers_on_either_instance(self) -> None:
        """agent.wait on B reports a run A ran, whether it ended before or
        while B waits."""
        starter, waiter = self.client(self.a), self.client(self.b)
        words = " ".join(["long"] * 40)
        ack = starter.request(
            "agent", {"message": words, "sessionKey": "waited", "idempotencyKey": "wait-1"}
        )
        self.assertTrue(ack["ok"], ack)
        run_id = ack["payload"]["runId"]
        waited = waiter.request("agent.wait", {"runId": run_id, "timeoutMs": 10000})
        self.assertEqual(waited["payload"]["status"], "ok", waited)
        again = self.client(self.b).request("agent.wait", {"runId": run_id, "timeoutMs": 10})
        self.assertEqual(again["payload"]["status"], "ok", again)

    def test_chat_abort_on_one_instance_stops_a_run_on_the_other(self) -> None:
        """While A runs a turn, B refuses sessions.reset (SESSION_BUSY), and
        chat.abort on B aborts that turn."""
        key = "agent:main:aborted"
        runner, aborter = self.client(self.a), self.client(self.b)
        sent = runner.request(
            "chat.send",
            {"sessionKey": key, "message": " ".join(["slow"] * 400), "idempotencyKey": "ab-1"},
        )
        self.assertTrue(sent["ok"], sent)
        run_id = sent["payload"]["runId"]
        runner.wait_event(
            lambda f: f.get("event") == "chat" and f["payload"].get("state") == "delta"
        )
        busy = aborter.request("sessions.reset", {"key": key})
        self.assertFalse(busy["ok"], busy)
        self.assertEqual(busy["error"]["details"]["code"], "SESSION_BUSY")
        aborted = aborter.request("chat.abort", {"sessionKey": key})
        self.assertEqual(aborted["payload"], {"ok": True, "aborted": True, "runIds": [run_id]})
        ended = runner.wait_event(
            lambda f: f.get("event") == "chat" and f["payload"].get("state") == "aborted"
        )
        self.assertEqual(ended["payload"]["runId"], run_id)

    def test_failed_auth_budget_is_shared(self) -> None:
        """Failures of one client spread over A and B add up: at the limit both
        instances refuse it (429 + Retry-After), even with the right token;
        another client is unaffected."""

        def models(port: int, token: str, client: str) -> tuple[int, str | None]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request(
                    "GET",
                    "/v1/models",
                    headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": client},
                )
                response = conn.getresponse()
                response.read()
                return response.status, response.getheader("retry-after")
            finally:
                conn.close()

        attacker, bystander = "203.0.113.9", "203.0.113.10"
        for port in (self.a.port, self.b.port, self.a.port, self.b.port):
            self.assertEqual(models(port, "wrong", attacker)[0], 401)
        for port in (self.a.port, self.b.port):
            # No credential: neither a failure nor a success, so polling with it
            # changes nothing; the lockout answers it 429 once it is in place.

            def refused(port: int = port) -> tuple[int, str | None] | None:
                answer = models(port, "", attacker)
                return answer if answer[0] == 429 else None

            _, retry = poll(refused, what="the shared lockout")
            self.assertIsNotNone(retry)
            self.assertEqual(models(port, TOKEN, attacker)[0], 429)
        self.assertEqual(models(self.b.port, TOKEN, bystander)[0], 200)

    def test_idempotency_key_resent_to_the_other_instance_runs_once(self) -> None:
        """An ``agent`` request resent (same idempotencyKey) to B while A runs
        it attaches to A's run: B answers with that run's final result, and
        the transcript holds the turn once; chat.send likewise."""
        first, second = self.client(self.a), self.client(self.b)
        params = {
            "message": "once only " + "x " * 30,
            "sessionKey": "idem",
            "idempotencyKey": "k-1",
        }
        sent = first.send("agent", params)
        resent = second.send("agent", params)
        final_a = first.response(sent, final=True)
        final_b = second.response(resent, final=True)
        self.assertEqual(final_a["payload"]["status"], "ok", final_a)
        self.assertEqual(final_b["payload"]["status"], "ok", final_b)
        self.assertEqual(final_b["payload"]["runId"], "k-1")
        text_a = final_a["payload"]["result"]["payloads"][0]["text"]
        self.assertEqual(final_b["payload"]["result"]["payloads"][0]["text"], text_a)
        chat_params = {"sessionKey": "idem", "message": "again", "idempotencyKey": "k-2"}
        started = first.request("chat.send", chat_params)
        self.assertEqual(started["payload"]["status"], "started")
        attached = second.request("chat.send", chat_params)
        self.assertEqual(attached["payload"]["runId"], "k-2")
        self.assertIn(attached["payload"]["status"], ("in_flight", "ok"))
        first.request("agent.wait", {"runId": "k-2", "timeoutMs": 10000})
        users = [
            e["message"]["content"]
            for e in self.transcript("idem")
            if e["message"]["role"] == "user"
        ]
        self.assertEqual(users, [params["message"], "again"])


def _swallow(call: Callable[[], object]) -> None:
    with contextlib.suppress(OSError, http.client.HTTPException):
        call()  # the victim dies mid-stream: that is the point


class WorkersOnRedisTests(SynchronousTestCase):
    """``--workers 2`` is allowed with the Redis store, and its workers share sessions."""

    def test_two_workers_share_sessions(self) -> None:
        """Both workers serve one port; a session's turns, whichever worker
        takes them, form one transcript."""
        server = RedisServer()
        server.start()
        self.addCleanup(server.cleanup)
        root = server.directory / "workers"
        config = gateway_config(root, server.url)
        state = root / "state"
        state.mkdir()
        gateway = GatewayProcess(config, state, extra_args=("--workers", "2"))
        self.addCleanup(gateway.ensure_stopped)
        start_draining(gateway)

        def ready() -> bool | None:
            conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
            try:
                conn.request("GET", "/readyz")
                return True if conn.getresponse().status == 200 else None
            except OSError:
                return None
            finally:
                conn.close()

        poll(ready, what="both workers ready")
        prompt_tokens = []
        for n in range(6):
            status, body = chat(gateway.port, "workers", f"turn {n}")
            self.assertEqual(status, 200, body)
            prompt_tokens.append(body["usage"]["prompt_tokens"])
        self.assertEqual(prompt_tokens, sorted(set(prompt_tokens)))  # each turn saw the last
        schema = KeySchema()
        raw = server.command("HGET", schema.index("main"), "agent:main:workers")
        entry = json.loads(raw.split(b"\r\n")[1])
        lines = server.command("LLEN", schema.transcript("main", entry["sessionId"]))
        self.assertEqual(lines, b":13\r\n")  # the header and 6 user/assistant pairs
        self.assertEqual(gateway.stop(), 0)


class ShutdownTests(SynchronousTestCase):
    """SIGTERM with a run still holding a session's lane at the end of the grace."""

    def test_a_run_aborted_at_shutdown_releases_its_lane(self) -> None:
        """The aborted run's lane lock is deleted from Redis before the process
        exits (the next instance need not wait out the lock's TTL), and nothing
        says otherwise: the store closes its connection only once the release
        is answered (it used to close it under the reply, and every rolling
        restart logged "could not release lane: Redis connection lost")."""
        server = RedisServer()
        server.start()
        self.addCleanup(server.cleanup)
        root = server.directory / "shutdown"
        config = gateway_config(root, server.url, delay_ms=300)
        document = json.loads(config.read_text())
        document["gateway"]["shutdownGraceSeconds"] = 1
        # Far longer than the test: only a release can remove the lock.
        document["gateway"]["redis"]["lockTtlSeconds"] = 60
        config.write_text(json.dumps(document))
        state = root / "state"
        state.mkdir()
        gateway = GatewayProcess(config, state)
        self.addCleanup(gateway.ensure_stopped)
        key = "agent:main:aborted-at-shutdown"
        lock = KeySchema().lock(key)
        text = " ".join(f"word{n}" for n in range(60))  # echoed for ~18 s
        streaming = threading.Thread(
            target=_swallow, args=(lambda: chat(gateway.port, key, text, stream=True),)
        )
        streaming.start()
        self.addCleanup(streaming.join, 30)
        poll(lambda: True if server.command("EXISTS", lock) == b":1\r\n" else None, what="lock")
        self.assertEqual(gateway.stop(), 0)
        self.assertEqual(server.command("EXISTS", lock), b":0\r\n", gateway.text)
        self.assertRegex(gateway.text, r"run \S+ aborted")
        self.assertNotIn("could not release lane", gateway.text)
        self.assertNotIn("not confirmed", gateway.text)


class StartupTests(SynchronousTestCase):
    """The start-up check."""

    def test_unreachable_redis_exits_1_with_one_line(self) -> None:
        """With nothing listening at gateway.redis.url the gateway exits 1 and
        says why in one line (no traceback, no password)."""
        root = Path(self.mktemp())
        missing = root / "nothing.sock"
        config = gateway_config(root, f"unix://{missing}?db=0&password=sekrit")
        result = subprocess.run(
            [
                str(VENV_BIN / "twistd"),
                "--nodaemon",
                "--pidfile=",
                "openclaw",
                "--config",
                str(config),
            ],
            env={"OPENCLAW_STATE_DIR": str(root), "HOME": str(root), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn("cannot reach Redis", lines[0])
        self.assertNotIn("sekrit", result.stderr + result.stdout)
