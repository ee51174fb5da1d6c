"""Issue 17: what an audit broke, driven through the assembled gateway.

Each test class is one item of the audit: lone surrogates anywhere text
enters, connection exhaustion without credentials, deep nesting, provider
header values as secrets, run caps, and limiter keys behind trusted proxies.
The model upstream is the in-memory fake OpenAI server behind the real
``openai-completions`` provider; every timer runs on a ``MemoryReactorClock``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import URI

from openclaw.agents.providers.openai_completions import OpenAICompletionsProvider
from openclaw.config.model import (
    AgentConfig,
    AgentDefaults,
    AgentsConfig,
    AuthConfig,
    ChatCompletionsConfig,
    Config,
    GatewayConfig,
    HttpConfig,
    ModelEntry,
    ModelsConfig,
    ProviderConfig,
    RateLimitConfig,
    SessionConfig,
)
from openclaw.gateway.assembly import build_gateway
from openclaw.gateway.http.image_fetch import ImageFetchError, PublicAddressEndpointFactory
from openclaw.testing import (
    FakeOpenAIUpstream,
    FakeReply,
    FakeToolCall,
    InMemoryClient,
    make_runtime,
)
from tests.chat_fakes import RawConnection, RawResponse
from tests.test_hygiene import Conn
from tests.test_security import _log_text
from tests.ws_fakes import UPGRADE, client_frame, connect_params, decode_server_frames

TOKEN = "gw-token-hardening-0123456789"
UPSTREAM_KEY = "sk-upstream-hardening-abcdef0123"
HEADER_SECRET = "pass-Hunter2-upstream-9f8e7d"
#: A lone surrogate as the JSON escape a client sends.
LONE = "\\ud800"


class _Gateway:
    """The whole gateway (token auth, chat enabled) over the fake upstream."""

    def __init__(
        self,
        test: SynchronousTestCase,
        *,
        gateway: dict[str, Any] | None = None,
        http: dict[str, Any] | None = None,
        defaults: dict[str, Any] | None = None,
        rate_limit: RateLimitConfig | None = None,
    ) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1_700_000_000)
        self.state_dir = Path(test.mktemp()) / "state"
        self.state_dir.mkdir(parents=True)
        self.upstream = FakeOpenAIUpstream(self.clock, api_key=UPSTREAM_KEY)
        self.client = InMemoryClient(self.upstream, self.clock)
        provider_config = ProviderConfig(
            id="up",
            api="openai-completions",
            base_url="http://upstream.test/v1",
            api_key=UPSTREAM_KEY,
            headers={"X-Upstream-Pass": HEADER_SECRET},
            models=(ModelEntry(id="gpt"),),
        )
        self.config = Config(
            gateway=GatewayConfig(
                auth=AuthConfig(mode="token", token=TOKEN, rate_limit=rate_limit),
                http=HttpConfig(
                    chat_completions=ChatCompletionsConfig(enabled=True), **(http or {})
                ),
                **(gateway or {}),
            ),
            models=ModelsConfig(providers={"up": provider_config}),
            agents=AgentsConfig(
                defaults=AgentDefaults(model_primary="up/gpt", **(defaults or {})),
                list=(AgentConfig(id="main", default=True), AgentConfig(id="beta")),
            ),
            session=SessionConfig(fsync="never"),
            state_dir=self.state_dir,
        )
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

    def post(
        self, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
    ) -> RawResponse:
        """One request on a fresh connection, pumped until answered."""
        conn = RawConnection(site=self.gateway.site)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.send(raw, headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})})
        self.client.pump(30)
        return conn.response()

    def post_pending(self, body: dict[str, Any]) -> RawConnection:
        """Send a request without pumping the upstream (it stays in flight)."""
        conn = RawConnection(site=self.gateway.site)
        conn.send(body, headers={"Authorization": f"Bearer {TOKEN}"})
        self.clock.advance(0)
        return conn

    def index(self, agent: str = "main") -> dict[str, Any]:
        """The agent's ``sessions.json`` on disk (after the pending flush)."""
        self.clock.advance(2)
        path = self.state_dir / "agents" / agent / "sessions" / "sessions.json"
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
        return data

    def ws(self) -> _Ws:
        return _Ws(self)


class _Ws:
    """A WebSocket client on the gateway's Site."""

    def __init__(self, gw: _Gateway) -> None:
        self.gw = gw
        self.conn = Conn(gw.gateway.site)
        self.conn.send(UPGRADE + b"\r\n")
        assert self.conn.take().startswith(b"HTTP/1.1 101 ")
        self.closes: list[int | None] = []
        self._ids = 0

    def send(self, method: str, params: dict[str, Any] | str, request_id: str = "") -> None:
        self._ids += 1
        params_json = params if isinstance(params, str) else json.dumps(params)
        frame = (
            f'{{"type":"req","id":"{request_id or self._ids}","method":"{method}",'
            f'"params":{params_json}}}'
        )
        self.conn.send(client_frame(1, frame.encode()))
        self.gw.clock.advance(0)

    def frames(self) -> list[dict[str, Any]]:
        """Text frames the server sent since the last call (closes recorded)."""
        frames, _ = decode_server_frames(self.conn.take())
        out = []
        for frame in frames:
            if frame.opcode == 8:
                self.closes.append(frame.close_code)
            elif frame.opcode == 1:
                out.append(json.loads(frame.payload))
        return out

    def answers(self) -> list[dict[str, Any]]:
        return [f for f in self.frames() if f.get("type") == "res"]

    def connect(self, token: str = TOKEN) -> dict[str, Any]:
        self.send("connect", connect_params(token=token))
        return self.answers()[-1]


def chat(content: str = "hi", **fields: Any) -> dict[str, Any]:
    return {"model": "openclaw", "messages": [{"role": "user", "content": content}], **fields}


def raw_chat(fields: str) -> bytes:
    """A chat body with extra raw JSON fields (so escapes reach the server as sent)."""
    return (
        b'{"model":"openclaw","messages":[{"role":"user","content":"hi"}],' + fields.encode() + b"}"
    )


def assert_no_traceback(test: SynchronousTestCase, events: Sequence[dict[str, Any]]) -> None:
    text = _log_text(events)
    for marker in ("Traceback", "UnicodeEncodeError", "RecursionError"):
        test.assertNotIn(marker, text)


class LoneSurrogateTests(SynchronousTestCase):
    """Item 1: a lone surrogate anywhere is replaced with U+FFFD at ingress."""

    def test_user_with_a_lone_surrogate_keeps_the_index_saving(self) -> None:
        """A chat whose ``user`` holds a lone surrogate is answered 200, and a
        normal request's session then appears in ``sessions.json``."""
        gw = _Gateway(self)
        with capturedLogs() as events:
            gw.upstream.enqueue(FakeReply(text="ok"))
            first = gw.post(raw_chat(f'"user":"a{LONE}b"'))
            self.assertEqual(first.status, 200, first.body)
            gw.upstream.enqueue(FakeReply(text="ok"))
            second = gw.post(chat(user="bob"))
            self.assertEqual(second.status, 200, second.body)
        keys = set(gw.index())
        self.assertIn("agent:main:openai-user:bob", keys)
        self.assertIn("agent:main:openai-user:a\ufffdb", keys)
        assert_no_traceback(self, events)

    def test_every_chat_field_with_a_lone_surrogate_is_answered(self) -> None:
        """Message content, assistant history, ``tool_choice.function.name``,
        tool names and the session-key header path: never a 5xx."""
        gw = _Gateway(self)
        bodies = [
            '"user":"x","messages":[{"role":"user","content":"hi ' + LONE + '"}]',
            '"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"'
            + LONE
            + '"},{"role":"user","content":"b"}]',
            '"tools":[{"type":"function","function":{"name":"f' + LONE + '"}}],'
            '"tool_choice":{"type":"function","function":{"name":"f' + LONE + '"}}',
            '"stop":["' + LONE + '"],"response_format":{"type":"text","x":"' + LONE + '"}',
        ]
        replies = [FakeReply(text="ok")] * 4
        # The pinned tool must be called (else the documented 502): it is, by
        # its name as the gateway now knows it.
        replies[2] = FakeReply(text="", tool_calls=(FakeToolCall("f\ufffd", "{}"),))
        with capturedLogs() as events:
            for fields, reply in zip(bodies, replies, strict=True):
                gw.upstream.enqueue(reply)
                # The later "messages" key wins over raw_chat's own.
                response = gw.post(raw_chat(fields))
                self.assertLess(response.status, 500, (fields, response.body))
                self.assertTrue(response.body.startswith(b"{"), response.body[:80])
        assert_no_traceback(self, events)

    def test_websocket_methods_with_lone_surrogates(self) -> None:
        """``chat.send`` with such a ``sessionKey``, ``agent`` with such an
        ``idempotencyKey`` and ``sessions.reset`` on such a key are answered
        (no ``internal error``), and the index is still written."""
        gw = _Gateway(self)
        ws = gw.ws()
        self.assertTrue(ws.connect()["ok"])
        with capturedLogs() as events:
            gw.upstream.enqueue(FakeReply(text="ok"), FakeReply(text="ok"))
            ws.send(
                "chat.send",
                f'{{"sessionKey":"s{LONE}","message":"hi","idempotencyKey":"k1"}}',
                "r1",
            )
            ws.send(
                "agent", f'{{"message":"hi","idempotencyKey":"k{LONE}","sessionKey":"t"}}', "r2"
            )
            gw.client.pump(30)
            ws.send("sessions.reset", f'{{"key":"s{LONE}"}}', "r3")
            answers = ws.answers()
        by_id: dict[str, list[dict[str, Any]]] = {}
        for answer in answers:
            by_id.setdefault(answer["id"], []).append(answer)
        for request_id in ("r1", "r2", "r3"):
            self.assertIn(request_id, by_id)
            for answer in by_id[request_id]:
                self.assertTrue(answer["ok"], answer)
        self.assertIn("agent:main:s\ufffd", gw.index())
        self.assertEqual(ws.closes, [])
        assert_no_traceback(self, events)

    def test_unauthenticated_connect_with_a_lone_surrogate_secret(self) -> None:
        """A ``connect`` whose ``auth.token`` holds a lone surrogate is refused
        like any wrong token (1008, not 1011) and counts as a failed attempt."""
        gw = _Gateway(self, rate_limit=RateLimitConfig(max_attempts=2, exempt_loopback=False))
        with capturedLogs() as events:
            for _ in range(2):
                ws = gw.ws()
                ws.send(
                    "connect", json.dumps(connect_params(token="x")).replace('"x"', f'"{LONE}"')
                )
                answer = ws.answers()[-1]
                self.assertFalse(answer["ok"])
                self.assertEqual(ws.closes, [1008])
        locked = gw.ws().connect()
        self.assertFalse(locked["ok"])
        self.assertIn("retryAfterMs", locked["error"])
        assert_no_traceback(self, events)


class DeepNestingTests(SynchronousTestCase):
    """Item 3: nesting that passes the parser is refused with the path."""

    def test_deep_tool_parameters_are_a_400_with_the_path(self) -> None:
        """600 levels inside ``tools[0].function.parameters``: 400 naming the
        path; nothing reaches the upstream and no traceback is logged."""
        gw = _Gateway(self)
        deep = '{"properties":' * 600 + "{}" + "}" * 600
        body = raw_chat(
            f'"tools":[{{"type":"function","function":{{"name":"f","parameters":{deep}}}}}]'
        )
        with capturedLogs() as events:
            response = gw.post(body)
        self.assertEqual(response.status, 400, response.body[:300])
        error = json.loads(response.body)["error"]
        self.assertIn("tools[0].function.parameters.properties", error["message"])
        self.assertEqual(gw.upstream.requests, [])
        assert_no_traceback(self, events)

    def test_deep_response_format_and_ws_params(self) -> None:
        """900 levels in ``response_format`` (HTTP) and in ``agent`` params
        (WebSocket): a 400 and an INVALID_REQUEST, never a 5xx."""
        gw = _Gateway(self)
        deep = '{"a":' * 900 + "1" + "}" * 900
        response = gw.post(raw_chat(f'"response_format":{{"type":"json_object","schema":{deep}}}'))
        self.assertEqual(response.status, 400, response.body[:300])
        self.assertIn("response_format.schema.a", json.loads(response.body)["error"]["message"])
        ws = gw.ws()
        self.assertTrue(ws.connect()["ok"])
        ws.send("agent", f'{{"message":"hi","idempotencyKey":"k","extra":{deep}}}', "d1")
        answer = ws.answers()[-1]
        self.assertFalse(answer["ok"])
        self.assertEqual(answer["error"]["code"], "INVALID_REQUEST")
        self.assertIn("params.extra.a", answer["error"]["message"])


class HeaderSecretTests(SynchronousTestCase):
    """Item 4: every configured header value is a secret, whatever its name."""

    def test_upstream_echoing_a_header_value(self) -> None:
        """An upstream error quoting the ``X-Upstream-Pass`` value: it reaches no
        HTTP body, no SSE frame, no WebSocket frame, no log event, no
        ``logs.tail`` line and no file in the state dir."""
        gw = _Gateway(self)
        buffer = gw.gateway.log_buffer
        assert buffer is not None
        globalLogPublisher.addObserver(buffer)
        self.addCleanup(globalLogPublisher.removeObserver, buffer)
        echoed = f"bad credentials: X-Upstream-Pass={HEADER_SECRET} key={UPSTREAM_KEY}"
        with capturedLogs() as events:
            gw.upstream.enqueue(FakeReply.failing(400, echoed, type="invalid_request_error"))
            plain = gw.post(chat())
            gw.upstream.enqueue(FakeReply(mode="error_frame", error_message=echoed))
            streamed = gw.post(chat(stream=True))
            ws = gw.ws()
            self.assertTrue(ws.connect()["ok"])
            gw.upstream.enqueue(FakeReply.failing(500, echoed))
            ws.send("agent", {"message": "hi", "idempotencyKey": "k1"}, "a1")
            gw.client.pump(30)
            frames = ws.frames()
            ws.send("logs.tail", {}, "l1")
            tail = ws.answers()
        self.assertGreaterEqual(plain.status, 400)
        seen = [plain.body, streamed.body, json.dumps(frames).encode(), json.dumps(tail).encode()]
        for data in seen:
            self.assertNotIn(HEADER_SECRET.encode(), data)
        self.assertNotIn(HEADER_SECRET, _log_text(events))
        for path in gw.state_dir.rglob("*"):
            if path.is_file():
                self.assertNotIn(HEADER_SECRET.encode(), path.read_bytes(), str(path))


class RunCapTests(SynchronousTestCase):
    """Item 5: runs count against limits; a bounded queue answers 429/UNAVAILABLE."""

    def test_max_concurrent_queues_then_refuses(self) -> None:
        """With maxConcurrent 1 and a queue of 1: the first run goes upstream,
        the second waits, the third gets 429 with Retry-After; the queued run
        completes once the first is done."""
        gw = _Gateway(self, defaults={"max_concurrent": 1}, gateway={"max_queued_runs": 1})
        gw.upstream.enqueue(FakeReply(text="one"), FakeReply(text="two"))
        first = gw.post_pending(chat(user="u1"))
        second = gw.post_pending(chat(user="u2"))
        self.assertEqual(len(gw.upstream.requests), 1)
        third = gw.post(chat(user="u3"))
        self.assertEqual(third.status, 429, third.body)
        self.assertEqual(third.headers.get("retry-after"), "1")
        self.assertEqual(json.loads(third.body)["error"]["type"], "rate_limit_error")
        gw.client.pump(30)
        self.assertEqual(first.response().status, 200)
        self.assertEqual(second.response().status, 200)
        self.assertEqual(len(gw.upstream.requests), 2)

    def test_websocket_queue_full_is_unavailable_with_retry_after(self) -> None:
        """Past the queue, ``chat.send`` and ``agent`` get UNAVAILABLE with
        ``retryAfterMs``."""
        gw = _Gateway(self, defaults={"max_concurrent": 1}, gateway={"max_queued_runs": 0})
        ws = gw.ws()
        self.assertTrue(ws.connect()["ok"])
        ws.send("chat.send", {"sessionKey": "a", "message": "hi", "idempotencyKey": "k1"}, "c1")
        ws.send("chat.send", {"sessionKey": "b", "message": "hi", "idempotencyKey": "k2"}, "c2")
        ws.send("agent", {"message": "hi", "idempotencyKey": "k3", "sessionKey": "c"}, "c3")
        answers = {a["id"]: a for a in ws.answers()}
        self.assertTrue(answers["c1"]["ok"])
        for request_id in ("c2", "c3"):
            self.assertFalse(answers[request_id]["ok"])
            self.assertEqual(answers[request_id]["error"]["code"], "UNAVAILABLE")
            self.assertGreater(answers[request_id]["error"]["retryAfterMs"], 0)

    def test_chat_send_counts_against_the_in_flight_limit(self) -> None:
        """300 ``chat.send`` runs on one connection: those past the
        per-connection in-flight limit (256) are refused UNAVAILABLE."""
        gw = _Gateway(self)
        ws = gw.ws()
        self.assertTrue(ws.connect()["ok"])
        for n in range(300):
            ws.send(
                "chat.send",
                {"sessionKey": f"s{n}", "message": "hi", "idempotencyKey": f"k{n}"},
                f"c{n}",
            )
        answers = ws.answers()
        accepted = [a for a in answers if a["ok"]]
        refused = [a for a in answers if not a["ok"]]
        self.assertEqual(len(accepted), 256)
        self.assertEqual(len(refused), 44)
        self.assertTrue(all(a["error"]["code"] == "UNAVAILABLE" for a in refused))


class ProxyAddressTests(SynchronousTestCase):
    """Item 6: limiter keys behind trusted proxies are normalised addresses."""

    def test_spellings_share_one_budget(self) -> None:
        """``::ffff:9.9.9.9`` and ``9.9.9.9`` (and ported, bracketed, upper-case
        IPv6 forms) are one client for the limiter."""
        gw = _Gateway(
            self,
            gateway={"trusted_proxies": ("127.0.0.1",)},
            rate_limit=RateLimitConfig(max_attempts=2),
        )
        auth = gw.gateway.auth
        self.assertEqual(auth.client_address_for("127.0.0.1", "::ffff:9.9.9.9"), "9.9.9.9")
        self.assertEqual(auth.client_address_for("127.0.0.1", "2001:DB8:0::1"), "2001:db8::1")
        self.assertEqual(auth.client_address_for("127.0.0.1", "[2001:db8::1]:80"), "2001:db8::1")
        self.assertEqual(auth.client_address_for("127.0.0.1", "1.2.3.4:5555"), "1.2.3.4")
        self.assertEqual(auth.client_address_for("::ffff:127.0.0.1", None), "127.0.0.1")
        wrong = {"Authorization": "Bearer wrong"}
        for forwarded in ("::ffff:9.9.9.9", "9.9.9.9"):
            response = gw.post(chat(), {**wrong, "X-Forwarded-For": forwarded})
            self.assertEqual(response.status, 401)
        locked = gw.post(chat(), {"X-Forwarded-For": "9.9.9.9"})
        self.assertEqual(locked.status, 429)

    def test_unparseable_hop_is_not_the_proxys_exemption(self) -> None:
        """A forwarded value that is no address is limited (the proxy's loopback
        exemption does not apply to it)."""
        gw = _Gateway(
            self,
            gateway={"trusted_proxies": ("127.0.0.1",)},
            rate_limit=RateLimitConfig(max_attempts=2),
        )
        wrong = {"Authorization": "Bearer wrong", "X-Forwarded-For": "not-an-address"}
        for _ in range(2):
            self.assertEqual(gw.post(chat(), wrong).status, 401)
        self.assertEqual(gw.post(chat(), {"X-Forwarded-For": "not-an-address"}).status, 429)
        gw.upstream.enqueue(FakeReply(text="ok"))
        self.assertEqual(gw.post(chat()).status, 200)


class ConnectionBudgetTests(SynchronousTestCase):
    """Item 2: one address cannot hold the whole connection cap."""

    def open(self, gw: _Gateway, host: str, count: int) -> list[Conn]:
        conns = []
        for n in range(count):
            conn = Conn(gw.gateway.site, peer=host, port=40000 + n)
            conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            conns.append(conn)
        return conns

    def test_one_address_cannot_take_every_slot(self) -> None:
        """Idle keep-alive sockets from one address stop at its cap (503), while
        another address still gets in."""
        gw = _Gateway(
            self,
            gateway={"max_connections": 20},
            http={"max_connections_per_address": 5, "reserved_connections": 0},
        )
        conns = self.open(gw, "10.1.1.1", 6)
        statuses = [c.take()[:12] for c in conns]
        self.assertEqual(statuses[:5], [b"HTTP/1.1 200"] * 5)
        self.assertEqual(statuses[5], b"HTTP/1.1 503")
        other = self.open(gw, "10.2.2.2", 1)[0]
        self.assertTrue(other.take().startswith(b"HTTP/1.1 200"))

    def test_reserved_share_and_unauthenticated_idle_timeout(self) -> None:
        """Near the cap, an address holding many connections is refused but a
        newcomer is served; idle unauthenticated keep-alive connections close
        after the short timeout, authenticated ones stay until the normal one."""
        gw = _Gateway(
            self,
            gateway={"max_connections": 10},
            http={
                "max_connections_per_address": 100,
                "reserved_connections": 3,
                "light_address_connections": 2,
                "unauthenticated_idle_timeout_seconds": 5.0,
                "keep_alive_timeout_seconds": 60.0,
            },
        )
        heavy = self.open(gw, "10.1.1.1", 8)
        self.assertEqual(heavy[-1].take()[:12], b"HTTP/1.1 503")
        newcomer = self.open(gw, "10.3.3.3", 1)[0]
        self.assertTrue(newcomer.take().startswith(b"HTTP/1.1 200"))
        authed = Conn(gw.gateway.site, peer="10.4.4.4")
        authed.send(
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\n\r\n"
        )
        self.assertTrue(authed.take().startswith(b"HTTP/1.1 200"))
        gw.clock.advance(6)
        self.assertTrue(newcomer.closing)
        self.assertFalse(authed.closing)
        gw.clock.advance(60)
        self.assertTrue(authed.closing)


class EmbeddedIPv4SsrfTests(SynchronousTestCase):
    """Item 7: image URLs whose host is (or resolves to) an IPv6 form embedding
    a loopback or private IPv4 are refused like that IPv4 address."""

    EMBEDDED = (
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:0:7f00:1",  # IPv4-translated
        "::ffff:127.0.0.1",  # IPv4-mapped
    )

    def connect(self, url: str, addresses: list[str]) -> tuple[Deferred[Any], MemoryReactorClock]:
        reactor = MemoryReactorClock()
        factory = PublicAddressEndpointFactory(
            reactor, resolve=lambda host, port: succeed(addresses)
        )
        endpoint = factory.endpointForURI(URI.fromBytes(url.encode()))
        d: Deferred[Any] = endpoint.connect(Factory.forProtocol(Protocol))
        return d, reactor

    def test_resolved_embedded_forms_are_refused(self) -> None:
        """A host resolving to any embedded form of a non-public IPv4: no connection."""
        for address in self.EMBEDDED:
            d, reactor = self.connect("https://img.example.com/x.png", [address])
            self.failureResultOf(d, ImageFetchError)
            self.assertEqual(reactor.tcpClients, [], address)

    def test_literal_embedded_forms_are_refused(self) -> None:
        """The same forms written as URL literals are refused without resolving."""
        for address in self.EMBEDDED:
            d, reactor = self.connect(f"http://[{address}]/x.png", [])
            self.failureResultOf(d, ImageFetchError)
            self.assertEqual(reactor.tcpClients, [], address)

    def test_embedded_public_address_is_allowed(self) -> None:
        """NAT64 of a public IPv4 (8.8.8.8) is as public as the IPv4 itself."""
        d, reactor = self.connect("https://img.example.com/x.png", ["64:ff9b::808:808"])
        self.assertNoResult(d)
        self.assertEqual(reactor.tcpClients[0][0], "64:ff9b::808:808")
