"""Crash safety (issue 7, item 4): SIGKILL the real gateway during 100 concurrent
turns across 20 sessions, restart it on the same state dir, and check that
nothing it answered was lost and that every stored session still loads.

Synchronisation is by events only: the load threads count completed responses
and the kill happens right after the Nth; reading the gateway's output and the
HTTP responses are blocking reads with timeouts, never sleeps.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.history import load_history
from openclaw.sessions.store import SessionStore
from tests.gateway_process import TOKEN, GatewayProcess, write_config

USERS = 20
TURNS_PER_USER = 5
KILL_AFTER = 40
#: Demo words are this far apart, so a turn takes ~0.3 s and a user's five
#: (serialised in its lane) well over a second: the kill lands mid-way.
DELAY_MS = 25
NEVER = r"(?!)"


def session_key(user: str) -> str:
    """The key the chat completions endpoint derives from ``user``."""
    return f"agent:main:openai-user:{user}"


class Load:
    """Fires chat completions from threads and records the completed ones."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.lock = threading.Condition()
        #: completion id -> (user, reply text), for responses received whole.
        self.completed: dict[str, tuple[str, str]] = {}
        self.failed = 0

    def request(self, user: str, n: int, stream: bool) -> None:
        """One turn; completed only if the whole answer (or ``[DONE]``) arrived."""
        body = json.dumps(
            {
                "model": "openclaw",
                "user": user,
                "stream": stream,
                "messages": [{"role": "user", "content": f"turn {n} of {user}"}],
            }
        )
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        outcome: tuple[str, str] | None = None
        try:
            conn.request(
                "POST",
                "/v1/chat/completions",
                body=body,
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            if response.status == 200:
                outcome = self._read_stream(response) if stream else self._read_json(response)
        except (OSError, http.client.HTTPException, ValueError):
            outcome = None
        finally:
            conn.close()
        with self.lock:
            if outcome is None:
                self.failed += 1
            else:
                self.completed[outcome[0]] = (user, outcome[1])
            self.lock.notify_all()

    @staticmethod
    def _read_json(response: http.client.HTTPResponse) -> tuple[str, str]:
        data = json.loads(response.read())
        return data["id"], data["choices"][0]["message"]["content"]

    @staticmethod
    def _read_stream(response: http.client.HTTPResponse) -> tuple[str, str] | None:
        completion_id = ""
        text: list[str] = []
        while True:
            line = response.readline()
            if not line:
                return None  # cut before [DONE]: not completed
            if not line.startswith(b"data: "):
                continue
            payload = line[len(b"data: ") :].strip()
            if payload == b"[DONE]":
                return completion_id, "".join(text)
            chunk = json.loads(payload)
            completion_id = chunk.get("id", completion_id)
            for choice in chunk.get("choices", ()):
                text.append(choice.get("delta", {}).get("content") or "")

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until ``count`` responses completed (False on timeout)."""
        with self.lock:
            return self.lock.wait_for(lambda: len(self.completed) >= count, timeout)


class CrashSafetyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir(parents=True)
        self.state_dir = self.dir / "state"
        self.config = write_config(
            self.dir,
            {"models": {"providers": {"demo": {"api": "demo", "delayMs": DELAY_MS}}}},
        )

    def start_gateway(self) -> GatewayProcess:
        """A real ``twistd openclaw`` on the shared state dir (killed on cleanup)."""
        gateway = GatewayProcess(self.config, self.state_dir)
        self.addCleanup(gateway.ensure_stopped)
        return gateway

    def test_sigkill_during_concurrent_turns_loses_nothing_answered(self) -> None:
        """After a SIGKILL amid 100 concurrent turns on 20 sessions and a restart:
        every answered turn is on disk under its completion id with its reply,
        the index (recovered) names exactly the transcripts on disk, every
        transcript loads with an unbroken parent chain, and a torn line is
        skipped and reported."""
        gateway = self.start_gateway()
        # Drain the gateway's output meanwhile, so its logging never blocks.
        drain = threading.Thread(target=self._drain, args=(gateway,), daemon=True)
        drain.start()
        load = Load(gateway.port)
        users = [f"user{u}" for u in range(USERS)]
        pool = ThreadPoolExecutor(max_workers=USERS * TURNS_PER_USER)
        try:
            for n in range(TURNS_PER_USER):
                for u, user in enumerate(users):
                    pool.submit(load.request, user, n, stream=(u + n) % 5 == 0)
            self.assertTrue(load.wait_for(KILL_AFTER, timeout=60), "too few answers")
            os.kill(gateway.process.pid, signal.SIGKILL)
        finally:
            pool.shutdown(wait=True)
        drain.join(timeout=30)
        gateway.kill()
        answered = dict(load.completed)
        self.assertGreaterEqual(len(answered), KILL_AFTER)
        self.assertLess(len(answered), USERS * TURNS_PER_USER, "the kill came too late")
        self.assertEqual(len(answered) + load.failed, USERS * TURNS_PER_USER)

        sessions_dir = self.state_dir / "agents" / "main" / "sessions"
        torn_user = answered[next(iter(answered))][0]
        torn_path = self._transcript_of(sessions_dir, torn_user)
        with torn_path.open("ab") as f:
            f.write(b'{"type":"message","id":"torn","message":{"role":"assi')

        index_path = sessions_dir / "sessions.json"
        indexed = json.loads(index_path.read_text()) if index_path.exists() else {}
        lost = len(list(sessions_dir.glob("*.jsonl"))) - len(indexed)

        restarted = self.start_gateway()
        after = Load(restarted.port)
        after.request(torn_user, 99, stream=False)
        self.assertEqual(len(after.completed), 1, restarted.text)
        self.assertEqual(restarted.stop(), 0, restarted.text)
        self.assertIn("torn last line", restarted.text)
        if lost:  # the kill beat the coalesced index write: entries were recovered
            self.assertIn(f"recovered {lost} sessions", restarted.text)

        self._check_index_matches_files(sessions_dir, set(users))
        runs = self._check_transcripts_load(sessions_dir, torn_path)
        for completion_id, (user, text) in answered.items():
            self.assertIn(completion_id, runs, f"answered turn {completion_id} of {user} lost")
            self.assertEqual(runs[completion_id], (session_key(user), text))

    @staticmethod
    def _drain(gateway: GatewayProcess) -> None:
        """Read the gateway's output until it exits."""
        with contextlib.suppress(RuntimeError, TimeoutError, OSError, ValueError):
            gateway.wait_for_output(NEVER, timeout=120)

    def _transcript_of(self, sessions_dir: Path, user: str) -> Path:
        """The transcript whose header names ``user``'s session key."""
        for path in sessions_dir.glob("*.jsonl"):
            header = json.loads(path.read_bytes().split(b"\n", 1)[0])
            if header.get("sessionKey") == session_key(user):
                return path
        self.fail(f"no transcript for {user}")

    def _check_index_matches_files(self, sessions_dir: Path, users: set[str]) -> None:
        """sessions.json names each transcript on disk once, under the key its
        header records, and only the load's sessions."""
        index: dict[str, Any] = json.loads((sessions_dir / "sessions.json").read_text())
        on_disk = {path.name[: -len(".jsonl")] for path in sessions_dir.glob("*.jsonl")}
        by_id = {entry["sessionId"]: key for key, entry in index.items()}
        self.assertEqual(set(by_id), on_disk)
        self.assertEqual(len(by_id), len(index))
        self.assertLessEqual(set(index), {session_key(user) for user in users})
        for session_id, key in by_id.items():
            header = json.loads(
                (sessions_dir / f"{session_id}.jsonl").read_bytes().split(b"\n", 1)[0]
            )
            self.assertEqual((header["type"], header["id"]), ("session", session_id))
            self.assertEqual(header["sessionKey"], key)

    def _check_transcripts_load(
        self, sessions_dir: Path, torn_path: Path
    ) -> dict[str, tuple[str, str]]:
        """Load every session through the store; returns completed run id ->
        (session key, reply text). Only the torn line is reported."""
        store = SessionStore(self.state_dir, clock=Clock(), fsync="never")
        runs: dict[str, tuple[str, str]] = {}
        with capturedLogs() as events:
            for entry in store.list_sessions("main"):
                messages = store.read_messages("main", entry.key, limit=1000)
                self.assertTrue(messages, entry.key)
                load_history(store, "main", entry.session_id)
                path = sessions_dir / f"{entry.session_id}.jsonl"
                lines = [line for line in path.read_bytes().split(b"\n") if line]
                previous: str | None = None
                for line in lines[1:]:
                    try:
                        parsed = json.loads(line)
                    except ValueError:
                        self.assertEqual(path, torn_path)
                        continue
                    self.assertEqual(parsed["parentId"], previous, path.name)
                    previous = parsed["id"]
                    message = parsed["message"]
                    if message["role"] == "assistant" and message["stopReason"] == "stop":
                        text = "".join(block["text"] for block in message["content"])
                        runs[parsed["runId"]] = (entry.key, text)
        bad = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual([e["path"] for e in bad], [str(torn_path)])
        return runs
