"""OpenClaw parity of the OpenAI-compatible surface (issue 13): authentication
before the body-size check, ``tool_choice: "none"`` on both endpoints."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from openclaw.agents.types import UnknownModelError
from openclaw.config.model import AuthConfig, HttpConfig, RateLimitConfig
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.http.request import GatewaySite
from tests.chat_fakes import ChatHarness, ChatTestCase, chat_body
from tests.test_responses import Harness

TOKEN = "parity-token"


class _Sink(Resource):
    """Records the bodies that reach it."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        self.bodies.append(request.content.read())
        return b"{}"


class AuthBeforeSizeTests(SynchronousTestCase):
    """An unauthenticated oversized body is refused as unauthenticated (401),
    as OpenClaw decides auth before reading the body; 413 is for callers who
    proved who they are."""

    def connect(self, auth: GatewayAuth | None = None) -> tuple[StringTransport, _Sink]:
        """A GatewaySite (100-byte body limit) whose body check asks token auth first."""
        clock = MemoryReactorClock()
        sink = _Sink()
        site = GatewaySite(
            sink, http_config=HttpConfig(max_body_bytes=100), clock=clock, reactor=clock
        )
        if auth is None:
            auth = GatewayAuth(AuthConfig(mode="token", token=TOKEN, rate_limit=None), clock)
        site.body_auth = auth.check_request
        channel: Any = site.buildProtocol(IPv4Address("TCP", "203.0.113.9", 5555))
        transport = StringTransport()
        channel.makeConnection(transport)
        self.channel = channel
        return transport, sink

    def send(self, head: str) -> None:
        """Write a request head."""
        self.channel.dataReceived(head.replace("\n", "\r\n").encode() + b"\r\n")

    def answer(self, transport: StringTransport) -> tuple[int, dict[str, Any], bytes]:
        """Status, JSON body and raw head of what was written."""
        head, _, body = transport.value().partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), json.loads(body), head

    def test_unauthenticated_huge_length_is_401(self) -> None:
        """No bearer and a 10 GB Content-Length: 401 ``Unauthorized``, nothing read."""
        transport, sink = self.connect()
        self.send("POST /v1/chat/completions HTTP/1.1\nHost: x\nContent-Length: 10000000000\n")
        status, body, _ = self.answer(transport)
        self.assertEqual((status, body["error"]["type"]), (401, "unauthorized"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(sink.bodies, [])

    def test_wrong_token_chunked_is_401(self) -> None:
        """A wrong bearer whose chunked body grows past the limit: 401 too."""
        transport, _ = self.connect()
        self.send(
            "POST /v1/responses HTTP/1.1\nHost: x\nAuthorization: Bearer nope\n"
            "Transfer-Encoding: chunked\n"
        )
        self.channel.dataReceived(b"80\r\n" + b"a" * 128 + b"\r\n")
        self.assertEqual(self.answer(transport)[0], 401)

    def test_unauthenticated_body_within_the_limit_is_not_read(self) -> None:
        """No bearer and a small body still to come: 401 from the headers alone,
        the connection closed, nothing buffered (a body is never read, nor spooled
        to a temp file, for a sender that may not send it)."""
        transport, sink = self.connect()
        self.send("POST /v1/chat/completions HTTP/1.1\nHost: x\nContent-Length: 50\n")
        status, body, _ = self.answer(transport)
        self.assertEqual((status, body["error"]["type"]), (401, "unauthorized"))
        self.assertTrue(transport.disconnecting)
        self.channel.dataReceived(b"x" * 50)
        self.assertEqual(sink.bodies, [])

    def test_a_refused_body_counts_one_failed_attempt(self) -> None:
        """The early check is the only one: a wrong bearer with a body is one
        failed attempt, so maxAttempts 2 locks out on the second request."""
        limit = RateLimitConfig(max_attempts=2, exempt_loopback=False)
        auth = GatewayAuth(
            AuthConfig(mode="token", token=TOKEN, rate_limit=limit), MemoryReactorClock()
        )
        head = "POST /v1/chat/completions HTTP/1.1\nHost: x\nAuthorization: Bearer bad\n"
        statuses = []
        for _ in range(3):
            transport, _ = self.connect(auth)
            self.send(head + "Content-Length: 10\n")
            statuses.append(self.answer(transport)[0])
        self.assertEqual(statuses, [401, 401, 429])

    def test_authenticated_huge_length_is_413(self) -> None:
        """The right bearer and an oversized body: 413 ``Payload too large``."""
        transport, _ = self.connect()
        self.send(
            f"POST /v1/chat/completions HTTP/1.1\nHost: x\nAuthorization: Bearer {TOKEN}\n"
            "Content-Length: 101\n"
        )
        status, body, _ = self.answer(transport)
        self.assertEqual((status, body["error"]["message"]), (413, "Payload too large"))

    def test_locked_out_caller_is_429(self) -> None:
        """A caller locked out by failed attempts gets 429 with Retry-After."""
        limit = RateLimitConfig(max_attempts=1, exempt_loopback=False)
        auth = GatewayAuth(
            AuthConfig(mode="token", token=TOKEN, rate_limit=limit), MemoryReactorClock()
        )
        head = "POST /v1/chat/completions HTTP/1.1\nHost: x\nAuthorization: Bearer bad\n"
        transport, _ = self.connect(auth)
        self.send(head + "Content-Length: 1000\n")
        self.assertEqual(self.answer(transport)[0], 401)
        transport, _ = self.connect(auth)
        self.send(head + "Content-Length: 1000\n")
        status, body, raw_head = self.answer(transport)
        self.assertEqual((status, body["error"]["type"]), (429, "rate_limited"))
        self.assertIn(b"retry-after: ", raw_head.lower())


class ToolChoiceNoneTests(ChatTestCase):
    """``tool_choice: "none"`` removes the client tools before the model call, so a
    model that ignores tool_choice still cannot call them."""

    def test_chat(self) -> None:
        """Chat completions: the run gets no client tools."""
        h = ChatHarness()
        tools = [{"type": "function", "function": {"name": "get_weather"}}]
        h.request("POST", body=chat_body(tools=tools, tool_choice="none"))
        self.assertEqual(h.runtime.last_run.request.client_tools, ())
        h.request("POST", body=chat_body(tools=tools))
        self.assertEqual([t.name for t in h.runtime.last_run.request.client_tools], ["get_weather"])

    def test_responses(self) -> None:
        """Responses: the same, and the response still echoes the tools as sent."""
        h = Harness()
        tools = [{"type": "function", "name": "get_weather"}]
        h.post({"input": "x", "tools": tools, "tool_choice": "none"})
        self.assertEqual(h.runtime.last_run.request.client_tools, ())


class ModelHeaderTests(ChatTestCase):
    """``x-openclaw-model`` on chat completions (shared-secret callers)."""

    def test_override_reaches_the_run(self) -> None:
        """The header's model is carried to the agent request."""
        h = ChatHarness()
        h.request("POST", body=chat_body(), headers={"x-openclaw-model": "demo/fast"})
        self.assertEqual(h.runtime.last_run.request.model_override, "demo/fast")
        h.request("POST", body=chat_body())
        self.assertIsNone(h.runtime.last_run.request.model_override)

    def test_unknown_and_malformed(self) -> None:
        """A model the runtime does not offer is a 400 naming it; ``openai/`` is malformed."""
        h = ChatHarness()
        h.runtime.start_error = UnknownModelError("nope/m", "main")
        reply = self.call(h, chat_body(), headers={"x-openclaw-model": "nope/m"})
        self.assertEqual(reply.status, 400)
        self.assertEqual(
            reply.json()["error"]["message"], "Model 'nope/m' is not allowed for agent 'main'."
        )
        reply = self.call(ChatHarness(), chat_body(), headers={"x-openclaw-model": "openai/"})
        self.assertEqual(
            (reply.status, reply.json()["error"]["message"]), (400, "Invalid `x-openclaw-model`.")
        )
