"""The protocol with real Autobahn clients: in memory (memory agent) and over loopback TCP.

These are async trial TestCases: Autobahn's memory agent pumps through the
global reactor, and the loopback test uses a real socket on 127.0.0.1. Every
test closes its connections and waits for the server side to see it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.testing import MemoryReactorClockResolver, create_memory_agent, create_pumper
from autobahn.twisted.websocket import WebSocketClientProtocol, create_client_agent
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks
from twisted.internet.interfaces import IListeningPort
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from openclaw.config.model import RateLimitConfig
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.ws.logbuffer import LogBuffer
from tests.ws_fakes import (
    TOKEN,
    FakeAgent,
    FakeAgents,
    FakeRuntime,
    FakeSessions,
    WsHarness,
    build_ws_factory,
    connect_params,
    make_config,
)


class RecordingClient(WebSocketClientProtocol):
    """An Autobahn client that queues every JSON message it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.inbox: DeferredQueue[Any] = DeferredQueue()
        self.closed: Deferred[tuple[int | None, str | None]] = Deferred()

    def onMessage(self, payload: bytes, is_binary: bool) -> None:
        self.inbox.put(json.loads(payload))

    def onClose(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        if not self.closed.called:
            self.closed.callback((code, reason))

    def send(self, frame: dict[str, Any]) -> None:
        """Send one JSON frame."""
        cast(Callable[..., None], self.sendMessage)(json.dumps(frame).encode())


@inlineCallbacks
def handshake(client: RecordingClient, token: str = TOKEN) -> Any:
    """Read the challenge, send connect, return the connect answer."""
    challenge = yield client.inbox.get()
    assert challenge["event"] == "connect.challenge", challenge
    client.send(
        {"type": "req", "id": "1:c", "method": "connect", "params": connect_params(token=token)}
    )
    answer = yield client.inbox.get()
    return answer


class MemoryAgentTests(TestCase):
    """The real server protocol driven by Autobahn's in-memory client agent."""

    def setUp(self) -> None:
        self.h = WsHarness()
        self.pumper = create_pumper()
        self.pumper.start()
        self.addCleanup(self.pumper.stop)
        self.agent = create_memory_agent(
            MemoryReactorClockResolver(), self.pumper, lambda: self.h.factory.buildProtocol(None)
        )

    @inlineCallbacks
    def open(self) -> Any:
        client = yield self.agent.open("ws://127.0.0.1:18789/", {}, protocol_class=RecordingClient)
        return client

    @inlineCallbacks
    def test_health_then_clean_close(self) -> Any:
        """connect, health, then the CLI-style close; both sides see a clean end."""
        client = yield self.open()
        answer = yield handshake(client)
        self.assertEqual(answer["payload"]["type"], "hello-ok")
        client.send({"type": "req", "id": "2:h", "method": "health"})
        health = yield client.inbox.get()
        self.assertEqual((health["id"], health["payload"]["defaultAgentId"]), ("2:h", "main"))
        (server,) = self.h.factory.connections
        server_closed = server.when_closed()
        cast(Callable[[], None], client.sendClose)()
        code, _ = yield client.closed
        self.assertEqual(code, 1000)
        yield server_closed
        self.assertEqual(self.h.factory.connections, frozenset())

    @inlineCallbacks
    def test_agent_ack_and_final(self) -> Any:
        """The agent method's two responses reach an Autobahn client."""
        client = yield self.open()
        yield handshake(client)
        client.send(
            {
                "type": "req",
                "id": "2:a",
                "method": "agent",
                "params": {"message": "hi", "idempotencyKey": "m-1"},
            }
        )
        ack = yield client.inbox.get()
        self.assertEqual(ack["payload"]["status"], "accepted")
        self.h.runtime.runs["m-1"].finish("memory reply")
        frames = []
        while True:
            frame = yield client.inbox.get()
            frames.append(frame)
            if frame["type"] == "res":
                break
        self.assertEqual(frames[-1]["payload"]["result"]["payloads"][0]["text"], "memory reply")
        self.assertEqual([f["event"] for f in frames[:-1]], ["agent", "chat", "agent", "chat"])
        cast(Callable[[], None], client.sendClose)()
        yield client.closed

    @inlineCallbacks
    def test_wrong_token_closes_1008(self) -> Any:
        """An auth failure reaches the client as an error res, then close 1008."""
        client = yield self.open()
        answer = yield handshake(client, token="wrong")
        self.assertEqual(answer["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH")
        code, reason = yield client.closed
        self.assertEqual(code, 1008)
        self.assertTrue(reason.startswith("unauthorized: gateway token mismatch"))


class LoopbackTests(TestCase):
    """The factory behind twisted.web's Site and WebSocketResource, on a real socket."""

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        config = make_config(rate_limit=RateLimitConfig())
        runtime = FakeRuntime(reactor)
        self.runtime = runtime
        self.factory = build_ws_factory(
            config=config,
            runtime=runtime,
            auth=GatewayAuth(config.gateway.auth, reactor),
            reactor=reactor,
            log_buffer=LogBuffer(),
            started_at_ms=int(reactor.seconds() * 1000),
            sessions=FakeSessions(),
            agents=FakeAgents([FakeAgent("main", is_default=True)]),
        )
        site = Site(WebSocketResource(self.factory))
        # typing note: twisted.web's Site predates the generic ServerFactory annotations.
        self.port: IListeningPort = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]
        self.addCleanup(self.port.stopListening)
        address = self.port.getHost()
        assert isinstance(address, IPv4Address)
        self.url = f"ws://127.0.0.1:{address.port}/any/path"

    @inlineCallbacks
    def test_cli_like_session_over_tcp(self) -> Any:
        """Upgrade on any path, connect, a streamed agent run, a 1 MiB request, close."""
        agent = create_client_agent(self.reactor)
        client = yield agent.open(self.url, {}, protocol_class=RecordingClient)
        answer = yield handshake(client)
        self.assertTrue(answer["ok"])
        (server,) = self.factory.connections
        server_closed = server.when_closed()
        client.send(
            {
                "type": "req",
                "id": "2:a",
                "method": "agent",
                "params": {"message": "hi", "idempotencyKey": "t-1"},
            }
        )
        ack = yield client.inbox.get()
        self.assertEqual(ack["payload"]["runId"], "t-1")
        run = self.runtime.runs["t-1"]
        for _ in range(200):
            run.say("chunk " * 100)
        run.finish()
        final = None
        while final is None:
            frame = yield client.inbox.get()
            if frame["type"] == "res":
                final = frame
        self.assertEqual(len(final["payload"]["result"]["payloads"][0]["text"]), 200 * 600)
        client.send(
            {"type": "req", "id": "3:h", "method": "health", "params": {"pad": "p" * (1 << 20)}}
        )
        health = yield client.inbox.get()
        self.assertTrue(health["ok"])
        cast(Callable[[], None], client.sendClose)()
        yield client.closed
        yield server_closed
        self.assertEqual(self.factory.connections, frozenset())

    @inlineCallbacks
    def test_shutdown_over_tcp(self) -> Any:
        """factory.shutdown sends `shutdown` and closes 1012 over a real socket."""
        agent = create_client_agent(self.reactor)
        client = yield agent.open(self.url, {}, protocol_class=RecordingClient)
        yield handshake(client)
        yield self.factory.shutdown("gateway stopping")
        event = yield client.inbox.get()
        self.assertEqual(event["event"], "shutdown")
        code, reason = yield client.closed
        self.assertEqual((code, reason), (1012, "gateway stopping"))
