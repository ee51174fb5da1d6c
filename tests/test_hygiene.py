"""Connection hygiene: header limits, head deadline (slowloris), idle keep-alive,
the connection cap and the pre-auth WebSocket budget, on real ``HTTPChannel``s
over ``StringTransport``s with every timer on a ``MemoryReactorClock``."""

from __future__ import annotations

import json
from typing import Any

from attrs import evolve
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import directlyProvides

from openclaw.config.model import AuthConfig, Config, HttpConfig
from openclaw.gateway.assembly import Gateway, build_gateway
from openclaw.gateway.http.app import GatewayHttpApp
from openclaw.gateway.http.request import GatewaySite
from openclaw.gateway.hygiene import (
    ConnectionLimits,
    CountedConnection,
    GatewayChannel,
    PreAuthSocketLimit,
    RefusedConnection,
)
from openclaw.gateway.lifecycle import Readiness
from openclaw.gateway.resource import GatewayRootResource
from openclaw.testing import make_runtime, run_due, scripted_config
from tests.ws_fakes import TOKEN, UPGRADE, client_frame, connect_params, decode_server_frames


class _Slow:
    """A chat-completions stand-in whose answer comes when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[Request, Deferred[bytes]]] = []

    def handle(self, request: Request) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self.pending.append((request, d))
        return d


class Conn:
    """One client connection to a Site, driven by hand."""

    def __init__(self, site: GatewaySite, peer: str = "127.0.0.1", port: int = 40000) -> None:
        address = IPv4Address("TCP", peer, port)
        protocol = site.buildProtocol(address)
        assert protocol is not None
        self.protocol: Protocol = protocol
        self.transport = StringTransport(peerAddress=address)
        self.protocol.makeConnection(self.transport)
        self.lost = False

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def take(self) -> bytes:
        """What the server wrote since the last call."""
        data: bytes = self.transport.value()
        self.transport.clear()
        return data

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)

    def lose(self) -> None:
        """The connection goes away, as the reactor reports it."""
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionDone()))


def _site(limits: ConnectionLimits | None = None) -> tuple[GatewaySite, MemoryReactorClock, _Slow]:
    clock = MemoryReactorClock()
    readiness = Readiness()
    readiness.mark_ready(clock)
    slow = _Slow()
    app = GatewayHttpApp(readiness=readiness, clock=clock, chat_completions=slow)
    root = GatewayRootResource(http=app.resource(), websocket=None)
    site = GatewaySite(root, http_config=HttpConfig(), clock=clock, limits=limits)
    return site, clock, slow


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def _json_body(data: bytes) -> Any:
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"


class HeaderLimitTests(SynchronousTestCase):
    def test_headers_over_the_byte_limit_get_431(self) -> None:
        """A head larger than maxHeaderBytes is answered 431 in OpenAI shape and
        the connection closed; nothing reaches a resource."""
        site, _, slow = _site(ConnectionLimits(max_header_bytes=1024))
        conn = Conn(site)
        conn.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        for i in range(20):
            conn.send(b"X-Filler-%d: %s\r\n" % (i, b"a" * 60))
        out = conn.take()
        self.assertEqual(_status(out), 431)
        self.assertIn(b"Request Header Fields Too Large", out.split(b"\r\n", 1)[0])
        error = _json_body(out)["error"]
        self.assertEqual(set(error), {"message", "type", "param", "code"})
        self.assertEqual(error["code"], "headers_too_large")
        self.assertTrue(conn.closing)
        self.assertEqual(slow.pending, [])

    def test_malformed_heads_get_a_json_400(self) -> None:
        """What Twisted's parser refuses (a NUL in a header, a header without a
        colon, a duplicated or signed Content-Length, a bad chunk size, an
        unknown version) is the same JSON 400 with request id and security
        headers as every other refusal, not a bare status line."""
        for head in (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GET /healthz HTTP/7.3\r\nHost: x\r\n\r\n",
        ):
            site, _, slow = _site()
            conn = Conn(site)
            conn.send(head)
            out = conn.take()
            self.assertEqual(_status(out), 400, head)
            self.assertIn(b"x-request-id: ", out.lower())
            self.assertIn(b"x-content-type-options: nosniff", out.lower())
            error = _json_body(out)["error"]
            self.assertEqual(
                (error["code"], error["type"]), ("malformed_request", "invalid_request_error")
            )
            self.assertTrue(conn.closing)
            self.assertEqual(slow.pending, [])

    def test_single_line_longer_than_the_limit_without_newline(self) -> None:
        """A header line that never ends is refused once it passes the limit
        (431), not buffered forever and not silently dropped."""
        site, _, _ = _site(ConnectionLimits(max_header_bytes=1024))
        conn = Conn(site)
        conn.send(GET + b"X-Long: ")
        conn.send(b"b" * 2000)
        out = conn.take()
        self.assertEqual(_status(out), 431)
        self.assertTrue(conn.closing)

    def test_overlong_request_line_gets_414(self) -> None:
        """A request line (URL) beyond the head limit is 414 URI Too Long."""
        site, _, _ = _site(ConnectionLimits(max_header_bytes=1024))
        conn = Conn(site)
        conn.send(b"GET /" + b"a" * 2000)
        out = conn.take()
        self.assertEqual(_status(out), 414)
        self.assertEqual(_json_body(out)["error"]["code"], "uri_too_long")

    def test_too_many_header_fields_get_431(self) -> None:
        """More header fields than maxHeaders: 431; exactly maxHeaders is served."""
        site, _, _ = _site(ConnectionLimits(max_headers=10))
        conn = Conn(site)
        fields = b"".join(b"X-H%d: v\r\n" % i for i in range(9))  # + Host = 10
        conn.send(GET + fields + b"\r\n")
        self.assertEqual(_status(conn.take()), 200)
        conn.send(GET + fields + b"X-One-More: v\r\n\r\n")
        out = conn.take()
        self.assertEqual(_status(out), 431)
        self.assertEqual(_json_body(out)["error"]["code"], "headers_too_many")
        self.assertTrue(conn.closing)

    def test_limits_apply_per_request_on_a_kept_alive_connection(self) -> None:
        """The head budget is per request: many requests on one connection whose
        heads together exceed it are all served."""
        site, _, _ = _site(ConnectionLimits(max_header_bytes=200))
        conn = Conn(site)
        for _ in range(5):
            conn.send(GET + b"X-Pad: " + b"p" * 100 + b"\r\n\r\n")
            self.assertEqual(_status(conn.take()), 200)
        self.assertFalse(conn.closing)

    def test_default_limits(self) -> None:
        """The defaults are 32 KiB of head and 100 fields, 10 s to send the head,
        60 s idle keep-alive and 1024 connections."""
        limits = ConnectionLimits()
        self.assertEqual(
            (
                limits.max_header_bytes,
                limits.max_headers,
                limits.headers_timeout_seconds,
                limits.keep_alive_timeout_seconds,
                limits.max_connections,
            ),
            (32768, 100, 10.0, 60.0, 1024),
        )
        site, _, _ = _site()
        conn = Conn(site)
        conn.send(GET + b"X-Big: " + b"c" * 20_000 + b"\r\n\r\n")
        self.assertEqual(_status(conn.take()), 200)


class HeadDeadlineTests(SynchronousTestCase):
    def test_slowloris_head_gets_408_after_the_deadline(self) -> None:
        """A head sent one byte at a time (each byte resetting the idle timer)
        is cut off headersTimeoutSeconds after its first byte with a 408."""
        site, clock, _ = _site(ConnectionLimits(headers_timeout_seconds=10))
        conn = Conn(site)
        clock.advance(3)  # connected, silent for 3 s
        for byte in GET[:12]:
            conn.send(bytes([byte]))
            clock.advance(0.5)
        self.assertEqual(conn.take(), b"")
        self.assertFalse(conn.closing)
        clock.advance(1)  # 10 s after the connection
        out = conn.take()
        self.assertEqual(_status(out), 408)
        self.assertEqual(_json_body(out)["error"]["code"], "headers_timeout")
        self.assertTrue(conn.closing)

    def test_silent_connection_is_closed_quietly(self) -> None:
        """A connection that sends nothing is closed after the deadline, without
        an unsolicited response."""
        site, clock, _ = _site(ConnectionLimits(headers_timeout_seconds=10))
        conn = Conn(site)
        clock.advance(9.9)
        self.assertFalse(conn.closing)
        clock.advance(0.1)
        self.assertTrue(conn.closing)
        self.assertEqual(conn.take(), b"")

    def test_complete_head_stops_the_deadline(self) -> None:
        """Once the head is in, the deadline no longer applies: a long-running
        request (an agent turn) is not cut off."""
        site, clock, slow = _site(ConnectionLimits(headers_timeout_seconds=10))
        conn = Conn(site)
        conn.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        self.assertEqual(len(slow.pending), 1)
        clock.advance(3600)
        self.assertFalse(conn.closing)
        self.assertEqual(conn.take(), b"")
        _, d = slow.pending[0]
        d.callback(b"done")
        self.assertIn(b"done", conn.take())

    def test_kept_alive_connection_idles_out(self) -> None:
        """Between requests the idle keep-alive timeout applies (not the head
        deadline); the next request's first byte starts a fresh head deadline."""
        site, clock, _ = _site(
            ConnectionLimits(headers_timeout_seconds=10, keep_alive_timeout_seconds=60)
        )
        conn = Conn(site)
        conn.send(GET + b"\r\n")
        self.assertEqual(_status(conn.take()), 200)
        clock.advance(59)
        self.assertFalse(conn.closing)
        conn.send(b"GET /hea")  # a second request starts
        clock.advance(9.9)
        self.assertFalse(conn.closing)
        clock.advance(0.1)
        self.assertEqual(_status(conn.take()), 408)

    def test_idle_timeout_closes_an_idle_kept_alive_connection(self) -> None:
        """No request within keepAliveTimeoutSeconds after the last answer: closed."""
        site, clock, _ = _site(
            ConnectionLimits(headers_timeout_seconds=10, keep_alive_timeout_seconds=60)
        )
        conn = Conn(site)
        conn.send(GET + b"\r\n")
        conn.take()
        clock.advance(59.9)
        self.assertFalse(conn.closing)
        clock.advance(0.1)
        self.assertTrue(conn.closing)

    def test_no_timer_outlives_the_connection(self) -> None:
        """Losing the connection cancels the head deadline and the idle timer."""
        site, clock, _ = _site()
        conn = Conn(site)
        conn.send(b"GET /")
        conn.lose()
        self.assertEqual([c for c in clock.getDelayedCalls() if c.active()], [])


class WrapperTests(SynchronousTestCase):
    def test_channel_is_secure_through_the_counting_wrapper(self) -> None:
        """Over TLS the request still knows it is secure, although the counting
        wrapper hides ISSLTransport (which Autobahn only accepts on Twisted's
        own TLS protocol)."""
        site, _, _ = _site()
        for secure in (False, True):
            transport = StringTransport()
            if secure:
                directlyProvides(transport, ISSLTransport)
            wrapper = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
            assert isinstance(wrapper, CountedConnection)
            wrapper.makeConnection(transport)
            self.assertFalse(ISSLTransport.providedBy(wrapper))
            channel = wrapper.wrappedProtocol
            assert isinstance(channel, GatewayChannel)
            self.assertEqual(channel.isSecure(), secure)


class ConnectionCapTests(SynchronousTestCase):
    def test_connections_beyond_the_cap_get_503_and_close(self) -> None:
        """With maxConnections open, the next connection is answered 503 with
        Retry-After and closed at once; when one goes, a new one is served."""
        site, _, _ = _site(ConnectionLimits(max_connections=2))
        first, second = Conn(site, port=1), Conn(site, port=2)
        self.assertEqual(len(site.connections), 2)
        third = Conn(site, port=3)
        self.assertIsInstance(third.protocol, RefusedConnection)
        out = third.take()
        self.assertEqual(_status(out), 503)
        self.assertIn(b"retry-after: 1", out.lower())
        self.assertEqual(_json_body(out)["error"]["code"], "too_many_connections")
        self.assertTrue(third.closing)
        self.assertEqual(len(site.connections), 2)
        first.lose()
        self.assertEqual(len(site.connections), 1)
        fourth = Conn(site, port=4)
        self.assertIsInstance(fourth.protocol, CountedConnection)
        fourth.send(GET + b"\r\n")
        self.assertEqual(_status(fourth.take()), 200)
        second.lose()
        fourth.lose()
        self.assertEqual(len(site.connections), 0)


def _ws_gateway(test: SynchronousTestCase) -> tuple[Gateway, MemoryReactorClock]:
    clock = MemoryReactorClock()
    clock.advance(1_700_000_000)
    base = scripted_config(test.mktemp())
    config: Config = evolve(
        base,
        gateway=evolve(base.gateway, auth=AuthConfig(mode="token", token=TOKEN, rate_limit=None)),
    )
    runtime = make_runtime(config, clock=clock)
    gateway = build_gateway(config, clock, runtime=runtime)
    test.addCleanup(lambda: test.successResultOf(runtime.shutdown()))
    return gateway, clock


class WebSocketCountTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway, self.clock = _ws_gateway(self)
        self.limit = PreAuthSocketLimit(
            max_per_address=2,
            connections=lambda: self.gateway.websocket.connections,
            client_address=self.gateway.auth.client_address,
        )
        root = GatewayRootResource(
            http=Resource(),
            websocket=self.gateway.websocket.resource(),
            preauth_limit=self.limit,
        )
        self.site = GatewaySite(root, http_config=HttpConfig(), clock=self.clock)
        self.conns: list[Conn] = []
        self.addCleanup(self._close_all)

    def _close_all(self) -> None:
        for conn in self.conns:
            conn.lose()
        self.clock.advance(60)

    def upgrade(self, peer: str = "127.0.0.1") -> tuple[Conn, bytes]:
        conn = Conn(self.site, peer=peer, port=40000 + len(self.conns))
        self.conns.append(conn)
        conn.send(UPGRADE + b"\r\n")
        return conn, conn.take()

    def test_websocket_connections_stay_counted_until_they_close(self) -> None:
        """The connection cap counts a WebSocket connection from the upgrade to
        its close (the counting wrapper stays under Autobahn)."""
        conn, head = self.upgrade()
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        self.assertEqual(len(self.site.connections), 1)
        self.assertEqual(len(self.gateway.websocket.connections), 1)
        self.clock.advance(5)
        self.assertEqual(len(self.site.connections), 1)
        conn.lose()
        self.assertEqual(len(self.site.connections), 0)
        self.assertEqual(len(self.gateway.websocket.connections), 0)

    def test_unauthenticated_sockets_per_address_are_capped(self) -> None:
        """The third unauthenticated socket from one address is refused with
        503 Too many unauthenticated sockets; other addresses are not affected;
        a socket that authenticates frees its slot."""
        first, head1 = self.upgrade()
        _, head2 = self.upgrade()
        self.assertEqual([_status(head1), _status(head2)], [101, 101])
        third, head3 = self.upgrade()
        self.assertEqual(_status(head3), 503)
        self.assertIn(b"Too many unauthenticated sockets", head3)
        self.assertTrue(third.closing)
        self.assertEqual(len(self.gateway.websocket.connections), 2)
        _, other = self.upgrade(peer="10.0.0.7")
        self.assertEqual(_status(other), 101)
        # The first socket completes connect: no longer unauthenticated.
        first.send(
            client_frame(
                1,
                json.dumps(
                    {"type": "req", "id": "1", "method": "connect", "params": connect_params()}
                ).encode(),
            )
        )
        run_due(self.clock)
        frames, _ = decode_server_frames(first.take())
        self.assertTrue(json.loads(frames[-1].payload)["ok"])
        self.assertEqual(self.limit.unauthenticated("127.0.0.1"), 1)
        _, head4 = self.upgrade()
        self.assertEqual(_status(head4), 101)

    def test_closed_unauthenticated_socket_frees_its_slot(self) -> None:
        """Once an unauthenticated socket closes (handshake timeout or client
        gone), the address may open another."""
        first, _ = self.upgrade()
        self.upgrade()
        self.assertEqual(_status(self.upgrade()[1]), 503)
        first.lose()
        self.assertEqual(_status(self.upgrade()[1]), 101)


class _StubbornTransport(StringTransport):
    """A transport whose graceful close never completes (a client not reading)."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True


class CloseAllTests(SynchronousTestCase):
    def test_close_all_flushes_then_aborts_stragglers(self) -> None:
        """close_all asks every connection to close gracefully; those still open
        after the timeout are aborted; the Deferred fires when all are gone."""
        from twisted.internet.task import Clock

        from openclaw.gateway.hygiene import ConnectionCounter, CountedConnection

        counter = ConnectionCounter()
        transports = [_StubbornTransport(), _StubbornTransport()]
        wrappers = []
        for transport in transports:
            wrapper = CountedConnection(counter, Protocol())
            wrapper.makeConnection(transport)
            wrappers.append(wrapper)
        clock = Clock()
        closed = counter.close_all(clock, 5.0)
        self.assertTrue(all(t.disconnecting for t in transports))
        wrappers[0].connectionLost(Failure(ConnectionDone()))
        self.assertNoResult(closed)
        clock.advance(5)
        self.assertEqual([t.aborted for t in transports], [False, True])
        wrappers[1].connectionLost(Failure(ConnectionDone()))
        self.successResultOf(closed)
