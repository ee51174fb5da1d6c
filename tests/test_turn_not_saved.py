"""A turn the gateway cannot write is not answered as a success, and a write
cut off mid-line does not swallow the next one (a real ``twistd openclaw``
whose file-size limit stands in for a full disk: the same failed write)."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.gateway_process import GatewayProcess, write_config
from tests.integration_support import post_chat

LIMIT = 64 * 1024


class TurnNotSavedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir()
        self.gateway = GatewayProcess(
            write_config(self.dir), self.dir / "state", file_size_limit=LIMIT
        )
        self.addCleanup(self.gateway.ensure_stopped)

    def chat(self, user: str, text: str, stream: bool = False) -> Any:
        body = {"model": "openclaw", "user": user, "stream": stream}
        return post_chat(
            self.gateway.port, {**body, "messages": [{"role": "user", "content": text}]}
        )

    def transcript_lines(self, marker: str) -> list[str]:
        """The lines of the transcript holding ``marker`` (the index is written
        lazily, so the file is found by its content)."""
        sessions = self.dir / "state" / "agents" / "main" / "sessions"
        (path,) = [p for p in sessions.glob("*.jsonl") if marker in p.read_text()]
        return path.read_text().splitlines()

    def test_a_turn_that_cannot_be_written_is_a_503_and_the_next_line_is_whole(self) -> None:
        self.assertEqual(self.chat("ann", "first").status, 200)
        # Past the limit: the write fails part way, as on a full disk.
        failed = self.chat("ann", "x" * (LIMIT + 1000))
        self.assertEqual(failed.status, 503, failed.body)
        error = json.loads(failed.body)["error"]
        self.assertEqual(error["code"], "turn_not_saved")
        self.assertTrue(failed.headers.get("retry-after"))
        streamed = self.chat("ann", "y" * (LIMIT + 1000), stream=True)
        self.assertIn(b"turn_not_saved", streamed.body)
        # Other sessions still work meanwhile.
        self.assertEqual(self.chat("bob", "hello").status, 200)

        # Room again: the next turn is answered and written on a line of its own.
        resource.prlimit(
            self.gateway.process.pid,
            resource.RLIMIT_FSIZE,
            (resource.RLIM_INFINITY, resource.RLIM_INFINITY),
        )
        self.assertEqual(self.chat("ann", "after freeing").status, 200)
        self.assertEqual(self.chat("ann", "next").status, 200)
        parsed = []
        for line in self.transcript_lines("after freeing"):
            try:
                parsed.append(json.loads(line))
            except ValueError:
                self.assertNotIn("after freeing", line)  # only the torn line fails
        texts = [
            json.dumps(entry["message"]["content"])
            for entry in parsed
            if entry.get("type") == "message" and entry["message"]["role"] == "user"
        ]
        self.assertTrue(any("after freeing" in text for text in texts), texts)
        self.assertTrue(any('"next"' in text or "next" in text for text in texts[-1:]), texts)
