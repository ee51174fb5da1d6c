"""Security properties of the assembled gateway, driven through its real Site.

- Secrets (the gateway token and password, a provider API key, the value of an
  ``Authorization`` header) never appear in a log event or a response body,
  even when the upstream's own error message quotes the key.
- Agent ids and session keys from clients never address a file outside the
  state dir: every file created is ``agents/<valid id>/sessions/<uuid>.jsonl``
  or ``sessions.json``.
- JSON depth and size bombs are refused cheaply with OpenAI-shaped 4xx.
- A browser WebSocket from a foreign ``Origin`` is refused 403 at upgrade.

The model upstream is the in-memory fake OpenAI server behind the real
``openai-completions`` provider; every timer runs on a ``MemoryReactorClock``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.providers.openai_completions import OpenAICompletionsProvider
from openclaw.config.model import (
    AgentConfig,
    AgentDefaults,
    AgentsConfig,
    AuthConfig,
    AuthMode,
    ChatCompletionsConfig,
    Config,
    ControlUiConfig,
    GatewayConfig,
    HttpConfig,
    ModelEntry,
    ModelsConfig,
    ProviderConfig,
    SessionConfig,
)
from openclaw.gateway.assembly import build_gateway
from openclaw.testing import (
    FakeOpenAIUpstream,
    FakeReply,
    InMemoryClient,
    make_runtime,
    without_model_retry,
)
from tests.chat_fakes import RawConnection, RawResponse
from tests.test_hygiene import Conn
from tests.ws_fakes import UPGRADE, client_frame, connect_params, decode_server_frames

GATEWAY_TOKEN = "gw-token-SECRET-7f3a9c1e5d"
GATEWAY_PASSWORD = "gw-password-SECRET-42b7c0"
WRONG_SECRET = "wrong-SECRET-b1d2e3f4a5"
UPSTREAM_KEY = "sk-upstream-SECRET-0123456789abcdef"
SECRETS = (GATEWAY_TOKEN, GATEWAY_PASSWORD, WRONG_SECRET, UPSTREAM_KEY)

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_SESSION_FILE = re.compile(rf"^(sessions\.json|{_UUID}\.jsonl(\.[a-z0-9._:-]+)?)$")
_AGENT_DIR = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _log_text(events: Sequence[dict[str, Any]]) -> str:
    """Everything a log observer could write: formatted text, fields, tracebacks."""
    parts = []
    for event in events:
        parts.append(formatEvent(event))
        parts.append(repr(event))
        failure = event.get("log_failure")
        if failure is not None:
            parts.append(failure.getTraceback())
    return "\n".join(parts)


class _Gateway:
    """The whole gateway (token or password auth, chat enabled) over the fake upstream."""

    def __init__(
        self,
        test: SynchronousTestCase,
        *,
        mode: AuthMode = "token",
        ws_origins: Sequence[str] = (),
    ) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1_700_000_000)
        self.root = Path(test.mktemp())
        self.state_dir = self.root / "state"
        self.state_dir.mkdir(parents=True)
        self.upstream = FakeOpenAIUpstream(self.clock, api_key=UPSTREAM_KEY)
        self.client = InMemoryClient(self.upstream, self.clock)
        provider_config = ProviderConfig(
            id="up",
            api="openai-completions",
            base_url="http://upstream.test/v1",
            api_key=UPSTREAM_KEY,
            models=(ModelEntry(id="gpt"),),
        )
        # Each upstream error answered at once (no same-model retry).
        self.config = without_model_retry(Config(
            gateway=GatewayConfig(
                auth=AuthConfig(
                    mode=mode, token=GATEWAY_TOKEN, password=GATEWAY_PASSWORD, rate_limit=None
                ),
                http=HttpConfig(chat_completions=ChatCompletionsConfig(enabled=True)),
                control_ui=ControlUiConfig(allowed_origins=tuple(ws_origins)),
            ),
            models=ModelsConfig(providers={"up": provider_config}),
            agents=AgentsConfig(
                defaults=AgentDefaults(model_primary="up/gpt"),
                list=(AgentConfig(id="main", default=True), AgentConfig(id="beta")),
            ),
            session=SessionConfig(fsync="never"),
            state_dir=self.state_dir,
        ))  # fmt: skip
        provider = OpenAICompletionsProvider(
            provider_config, agent=self.client.agent, clock=self.clock
        )
        self.runtime = make_runtime(self.config, clock=self.clock, providers={"up": provider})
        self.gateway = build_gateway(self.config, self.clock, runtime=self.runtime)
        self.gateway.readiness.mark_ready(self.clock)
        test.addCleanup(self._stop, test)

    def _stop(self, test: SynchronousTestCase) -> None:
        d = self.runtime.shutdown()
        self.client.pump(5)
        test.successResultOf(d)

    def bearer(self, secret: str = GATEWAY_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    def post(
        self,
        body: Any,
        headers: dict[str, str] | None = None,
        path: str = "/v1/chat/completions",
    ) -> RawResponse:
        """One request on a fresh connection, the upstream pumped until it is answered."""
        conn = RawConnection(site=self.gateway.site)
        conn.send(body, path=path, headers=headers if headers is not None else self.bearer())
        self.client.pump(30)
        return conn.response()


def chat(content: str = "hi", **fields: Any) -> dict[str, Any]:
    return {"model": "openclaw", "messages": [{"role": "user", "content": content}], **fields}


@contextmanager
def no_secret_logged(test: SynchronousTestCase) -> Iterator[Sequence[dict[str, Any]]]:
    """Capture every log event of the block; fail if a secret is in any of them."""
    with capturedLogs() as events:
        yield events
    text = _log_text(events)
    for secret in SECRETS:
        test.assertNotIn(secret, text, f"secret {secret!r} reached a log event")


class SecretsTests(SynchronousTestCase):
    def assert_clean(self, response: RawResponse) -> None:
        """No secret in the body or any header of a response."""
        blob = response.body.decode("utf-8", "replace") + json.dumps(response.headers)
        for secret in SECRETS:
            self.assertNotIn(secret, blob)

    def test_gateway_token_and_authorization_header_never_logged(self) -> None:
        """Wrong, right, oversized and malformed credentials: no secret in logs
        or bodies; the wrong one gets a 401 that does not echo it."""
        gw = _Gateway(self)
        gw.upstream.enqueue(FakeReply(text="fine"))
        with no_secret_logged(self) as events:
            wrong = gw.post(chat(), gw.bearer(WRONG_SECRET))
            right = gw.post(chat(), gw.bearer())
            huge = gw.post(chat(), gw.bearer(WRONG_SECRET * 400))
            basic = gw.post(chat(), {"Authorization": f"Basic {WRONG_SECRET}"})
            models = gw.post(b"", gw.bearer(WRONG_SECRET), path="/v1/models")
        self.assertEqual([r.status for r in (wrong, right, huge, basic)], [401, 200, 401, 401])
        self.assertIn(models.status, (401, 405))
        for response in (wrong, right, huge, basic, models):
            self.assert_clean(response)
        self.assertTrue(events, "the requests were logged at all")

    def test_password_mode(self) -> None:
        """Password auth: a wrong password is neither logged nor echoed."""
        gw = _Gateway(self, mode="password")
        gw.upstream.enqueue(FakeReply(text="fine"))
        with no_secret_logged(self):
            wrong = gw.post(chat(), gw.bearer(WRONG_SECRET))
            right = gw.post(chat(), gw.bearer(GATEWAY_PASSWORD))
        self.assertEqual((wrong.status, right.status), (401, 200))
        self.assert_clean(wrong)
        self.assert_clean(right)

    def test_upstream_errors_quoting_the_key(self) -> None:
        """Upstream errors whose message quotes the provider key (401, 400, 429,
        500, and a mid-stream error frame): the key reaches no body, no log
        event and no file in the state dir."""
        gw = _Gateway(self)
        quoted = f"Incorrect API key provided: {UPSTREAM_KEY}. Authorization: Bearer {UPSTREAM_KEY}"
        replies = [
            FakeReply.failing(401, quoted, type="invalid_request_error", code="invalid_api_key"),
            FakeReply.failing(400, quoted, type="invalid_request_error"),
            FakeReply.failing(429, quoted, type="rate_limit_error", headers={"retry-after": "1"}),
            FakeReply.failing(500, quoted),
        ]
        with no_secret_logged(self):
            for reply in replies:
                gw.upstream.enqueue(reply)
                response = gw.post(chat())
                self.assertGreaterEqual(response.status, 400)
                self.assert_clean(response)
                gw.upstream.enqueue(reply)
                streamed = gw.post(chat(stream=True))
                self.assert_clean(streamed)
            gw.upstream.enqueue(FakeReply(mode="error_frame", error_message=quoted))
            frame = gw.post(chat(stream=True))
            self.assertIn(b"[DONE]", frame.body)
            self.assert_clean(frame)
        self.assertEqual(len(gw.upstream.requests), 9)
        for path in gw.state_dir.rglob("*"):
            if path.is_file():
                self.assertNotIn(UPSTREAM_KEY.encode(), path.read_bytes(), str(path))

    def test_websocket_connect_secrets_never_logged(self) -> None:
        """A WebSocket connect with a wrong token is refused without logging it;
        one with the right token succeeds, also without logging it."""
        gw = _Gateway(self)
        with no_secret_logged(self):
            for token, ok in ((WRONG_SECRET, False), (GATEWAY_TOKEN, True)):
                conn = Conn(gw.gateway.site)
                conn.send(UPGRADE + b"\r\n")
                self.assertTrue(conn.take().startswith(b"HTTP/1.1 101 "))
                frame = {
                    "type": "req",
                    "id": "c1",
                    "method": "connect",
                    "params": connect_params(token=token),
                }
                conn.send(client_frame(1, json.dumps(frame).encode()))
                gw.clock.advance(0)
                frames, _ = decode_server_frames(conn.take())
                answers = [json.loads(f.payload) for f in frames if f.opcode == 1]
                self.assertEqual(answers[-1]["ok"], ok)
                self.assertNotIn(WRONG_SECRET, json.dumps(answers))
                conn.lose()


class StateDirContainmentTests(SynchronousTestCase):
    """Hostile agent ids and session keys: refused, or kept inside the state dir."""

    HOSTILE = (
        "../../../../etc/passwd",
        "..\\..\\windows",
        "/etc/passwd",
        "/../../outside",
        "agent:../../x:main",
        "agent:main:../../../escape",
        "a%2F..%2F..%2Fb",
        "nul\u0000byte",
        "k" * 10_000,
        "agent:" + "a" * 10_000 + ":x",
        "con",
        ".",
        "..",
    )

    def assert_contained(self, gw: _Gateway) -> None:
        """Nothing beside the state dir; inside it only the OpenClaw layout with
        valid agent ids and uuid transcript names, and the configured agent's
        workspace (OpenClaw's default, <state>/workspace) with its starter files
        and, git being installed, the repository OpenClaw makes of a new one."""
        self.assertEqual(sorted(p.name for p in gw.root.iterdir()), ["state"])
        for path in gw.state_dir.rglob("*"):
            rel = path.relative_to(gw.state_dir).parts
            if rel[:2] == ("workspace", ".git"):
                continue
            if rel[0] == "workspace":
                self.assertLessEqual(len(rel), 2, str(path))
                self.assertRegex(rel[-1], r"^(workspace|[A-Z]+\.md)$", str(path))
                continue
            self.assertEqual(rel[0], "agents", str(path))
            if len(rel) >= 2:
                self.assertRegex(rel[1], _AGENT_DIR)
            if len(rel) >= 3:
                self.assertEqual(rel[2], "sessions")
            if len(rel) == 4:
                self.assertRegex(rel[3], _SESSION_FILE)
            self.assertLessEqual(len(rel), 4, str(path))

    def test_hostile_session_keys_users_and_agent_ids(self) -> None:
        """Every hostile value as x-openclaw-session-key, as ``user``, as
        x-openclaw-agent-id and in ``model``: each request is answered (2xx or
        4xx, never 5xx) and every file stays inside the state dir."""
        gw = _Gateway(self)
        statuses: list[int] = []
        for value in self.HOSTILE:
            header_safe = value.replace("\u0000", "")
            attempts: list[tuple[dict[str, Any], dict[str, str]]] = [
                (chat(), {"x-openclaw-session-key": header_safe}),
                (chat(user=value), {}),
                (chat(), {"x-openclaw-agent-id": header_safe}),
                (chat(model=f"openclaw/{value}"), {}),
                (
                    chat(),
                    {"x-openclaw-agent-id": header_safe, "x-openclaw-session-key": header_safe},
                ),
            ]
            for body, headers in attempts:
                gw.upstream.enqueue(FakeReply(text="ok"))
                response = gw.post(body, {**gw.bearer(), **headers})
                statuses.append(response.status)
                self.assertLess(response.status, 500, (value[:40], headers.keys(), response.body))
                if response.status >= 400:
                    error = json.loads(response.body)["error"]
                    self.assertEqual(set(error), {"message", "type", "param", "code"})
        self.assertIn(200, statuses)
        self.assert_contained(gw)
        files = [p for p in gw.state_dir.rglob("*.jsonl")]
        self.assertTrue(files, "some turns were stored")

    def test_nul_in_a_header_is_refused_by_the_parser(self) -> None:
        """A NUL (or CR) inside a header value never reaches the endpoint: 400."""
        gw = _Gateway(self)
        conn = Conn(gw.gateway.site)
        body = json.dumps(chat()).encode()
        conn.send(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + GATEWAY_TOKEN.encode() + b"\r\n"
            b"x-openclaw-session-key: a\x00/../../b\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        self.assertTrue(conn.take().startswith(b"HTTP/1.1 400 "))
        self.assertEqual(gw.upstream.requests, [])
        self.assert_contained(gw)


class JsonBombTests(SynchronousTestCase):
    def assert_cheap_400(self, gw: _Gateway, body: bytes, budget_seconds: float = 2.0) -> None:
        start = time.monotonic()
        response = gw.post(body)
        elapsed = time.monotonic() - start
        self.assertEqual(response.status, 400, response.body[:200])
        error = json.loads(response.body)["error"]
        self.assertEqual(set(error), {"message", "type", "param", "code"})
        self.assertLess(elapsed, budget_seconds)
        self.assertEqual(gw.upstream.requests, [])

    def test_deeply_nested_arrays(self) -> None:
        """100 000 nested arrays: a quick 400, no RecursionError escapes."""
        gw = _Gateway(self)
        with capturedLogs() as events:
            self.assert_cheap_400(gw, b"[" * 100_000 + b"]" * 100_000)
        self.assertNotIn("RecursionError", _log_text(events))

    def test_deeply_nested_objects_inside_a_valid_request(self) -> None:
        """A valid request whose ``metadata`` nests 100 000 objects: a quick 400."""
        gw = _Gateway(self)
        bomb = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
        body = (
            b'{"model":"openclaw","messages":[{"role":"user","content":"hi"}],"metadata":'
            + bomb
            + b"}"
        )
        self.assert_cheap_400(gw, body)

    def test_huge_numbers(self) -> None:
        """Numbers with 100 000 digits and float overflow are refused, not computed."""
        gw = _Gateway(self)
        self.assert_cheap_400(
            gw, b'{"model":"openclaw","messages":[],"temperature":' + b"9" * 100_000 + b"}"
        )

    def test_integers_too_big_for_a_float(self) -> None:
        """400-digit integers (past float range, short of Python's 4,300-digit
        parse limit) in numeric fields: a 400 naming the field, no traceback."""
        gw = _Gateway(self)
        huge = b"9" * 400
        for field in (b"temperature", b"top_p", b"seed", b"max_tokens",
                      b"max_completion_tokens", b"presence_penalty"):  # fmt: skip
            with capturedLogs() as events:
                self.assert_cheap_400(
                    gw,
                    b'{"model":"openclaw","messages":[{"role":"user","content":"hi"}],"'
                    + field
                    + b'":'
                    + huge
                    + b"}",
                )
            self.assertNotIn("OverflowError", _log_text(events), field)

    def test_declared_25_mb_body_is_refused_before_reading(self) -> None:
        """A 25 MB Content-Length gets 413 at once, before one body byte is sent."""
        gw = _Gateway(self)
        conn = Conn(gw.gateway.site)
        conn.send(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + GATEWAY_TOKEN.encode() + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % (25 * 1024 * 1024)
        )
        out = conn.take()
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "))
        self.assertTrue(conn.closing)

    def test_chunked_25_mb_body_is_cut_off_at_the_limit(self) -> None:
        """A chunked body is refused (413) as soon as it passes 20 MB; the rest
        is never read."""
        gw = _Gateway(self)
        conn = Conn(gw.gateway.site)
        conn.send(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + GATEWAY_TOKEN.encode() + b"\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        mib = b"x" * (1024 * 1024)
        sent = 0
        while not conn.closing and sent < 25:
            conn.send(b"100000\r\n" + mib + b"\r\n")
            sent += 1
        self.assertEqual(sent, 21)
        self.assertTrue(conn.take().startswith(b"HTTP/1.1 413 "))
        self.assertEqual(gw.upstream.requests, [])


class WebSocketOriginTests(SynchronousTestCase):
    def upgrade(self, gw: _Gateway, origin: str | None) -> bytes:
        conn = Conn(gw.gateway.site)
        extra = b"" if origin is None else b"Origin: " + origin.encode() + b"\r\n"
        conn.send(UPGRADE + extra + b"\r\n")
        head = conn.take()
        conn.lose()
        return head

    def test_foreign_browser_origin_is_refused_at_upgrade(self) -> None:
        """Origin not in controlUi.allowedOrigins (and not the gateway's own): 403;
        "null": refused; an allowed origin, the same origin and a non-browser
        client (no Origin): 101."""
        gw = _Gateway(self, ws_origins=["https://ui.example.com"])
        self.assertTrue(self.upgrade(gw, "https://evil.example.net").startswith(b"HTTP/1.1 403"))
        # Autobahn itself refuses the opaque "null" origin (400) before the check.
        self.assertTrue(self.upgrade(gw, "null").startswith(b"HTTP/1.1 4"))
        for origin in ("https://ui.example.com", "http://127.0.0.1:18789", None):
            self.assertTrue(self.upgrade(gw, origin).startswith(b"HTTP/1.1 101 "), origin)
