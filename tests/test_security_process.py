"""Issue 17 against the real ``twistd openclaw`` process: a lone surrogate in
``user`` leaves the session index healthy, through a SIGTERM, with no
traceback in the log."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.gateway_process import TOKEN, GatewayProcess, write_config
from tests.test_twistd_process import raw_http


def _chat(port: int, body: bytes) -> tuple[int, bytes]:
    """One chat completion on its own connection: (status, body)."""
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    answer = raw_http(port, request)
    head, _, rest = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), rest


class LoneSurrogateProcessTests(SynchronousTestCase):
    def test_surrogate_user_then_sigterm_keeps_every_session(self) -> None:
        """A chat whose ``user`` is ``"a\\ud800b"`` is answered 200; a normal
        chat after it is too; after SIGTERM (exit 0) ``sessions.json`` holds
        both sessions and the log holds no traceback."""
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        state = directory / "state"
        gateway = GatewayProcess(write_config(directory), state)
        self.addCleanup(gateway.ensure_stopped)
        hostile = (
            b'{"model":"openclaw","user":"a\\ud800b","messages":[{"role":"user","content":"hi"}]}'
        )
        status, body = _chat(gateway.port, hostile)
        self.assertEqual(status, 200, body)
        normal = json.dumps(
            {"model": "openclaw", "user": "bob", "messages": [{"role": "user", "content": "hi"}]}
        ).encode()
        status, body = _chat(gateway.port, normal)
        self.assertEqual(status, 200, body)
        self.assertEqual(gateway.stop(), 0, gateway.text[-2000:])
        index = json.loads(
            (state / "agents" / "main" / "sessions" / "sessions.json").read_text("utf-8")
        )
        self.assertIn("agent:main:openai-user:bob", index)
        self.assertIn("agent:main:openai-user:a\ufffdb", index)
        self.assertNotIn("Traceback", gateway.text)
