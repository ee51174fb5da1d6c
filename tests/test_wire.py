"""The upstream HTTP/1.1 client (wire.py + pool.py) against real servers on 127.0.0.1.

A twisted.web server answers the well-formed cases; a scripted raw TCP
server answers byte for byte what each fault case needs (reset, truncated
chunk, interim 1xx, a connection closed while idle). These use the global
reactor (async trial TestCase): pooling, resets and TLS only exist with real
sockets. Every test closes its pool and stops listening.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IListeningPort, ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from openclaw.agents.providers.pool import UpstreamPool
from openclaw.agents.providers.wire import (
    ResponseBroken,
    Target,
    make_target,
)
from tests.test_tls import make_certificates

Script = Callable[[ITransport, bytes], None]


class Collector:
    """A ResponseHandler recording everything; ``finished`` fires at the end."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.error: BaseException | None = None
        self.failed: BaseException | None = None
        self.finished: Deferred[Collector] = Deferred()

    def response_started(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers

    def body_data(self, data: bytes) -> None:
        assert data
        self.body += data

    def body_end(self, reason: BaseException | None) -> None:
        self.error = reason
        self.finished.callback(self)

    def request_failed(self, reason: BaseException) -> None:
        self.failed = reason
        self.finished.callback(self)


class ScriptedServer(Protocol):
    """Reads whole requests (head + Content-Length body) and answers each with
    the factory's next script (which writes raw bytes and may close)."""

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self._buf = b""

    def dataReceived(self, data: bytes) -> None:
        self._buf += data
        while b"\r\n\r\n" in self._buf:
            head, _, rest = self._buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            self._buf = rest[length:]
            factory: Any = self.factory
            factory.requests.append(head + b"\r\n\r\n" + rest[:length])
            script = factory.scripts.pop(0) if factory.scripts else factory.default
            assert self.transport is not None
            script(self.transport, rest[:length])

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        factory: Any = self.factory
        factory.closed += 1
        waiters, factory.waiters = factory.waiters, []
        for d in waiters:
            d.callback(None)


class ScriptedFactory(Factory):
    """Holds the scripts and counts connections, requests and closes."""

    protocol = ScriptedServer

    def __init__(self, scripts: list[Script], default: Script) -> None:
        self.scripts = scripts
        self.default = default
        self.connections = 0
        self.closed = 0
        self.requests: list[bytes] = []
        self.waiters: list[Deferred[None]] = []

    def next_close(self) -> Deferred[None]:
        """Fires when a server connection closes next."""
        d: Deferred[None] = Deferred()
        self.waiters.append(d)
        return d


def reply(raw: bytes, *, close: bool = False, reset: bool = False) -> Script:
    """A script writing ``raw``, then closing (FIN) or resetting (abort)."""

    def script(transport: ITransport, _body: bytes) -> None:
        transport.write(raw)
        if reset:
            # Linger 0: the close after the write is flushed sends RST, not FIN.
            handle = transport.getHandle()  # type: ignore[attr-defined]
            handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.loseConnection()
        elif close:
            transport.loseConnection()

    return script


OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def silent(_transport: ITransport, _body: bytes) -> None:
    """Never answers."""


class Chunks(Resource):
    """twisted.web: a chunked SSE answer of three frames, or JSON with a length."""

    isLeaf = True

    def render_POST(self, request: Request) -> Any:
        if request.path == b"/json":
            request.setHeader(b"content-type", b"application/json")
            return b'{"echo": %d}' % len(request.content.read())  # type: ignore[union-attr]
        request.setHeader(b"content-type", b"text/event-stream")
        for n in range(3):
            request.write(b"data: %d\n\n" % n)
        request.finish()
        return NOT_DONE_YET


class WireTests(TestCase):
    """Requests, responses and connection reuse over real loopback sockets."""

    timeout = 20

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.pool = UpstreamPool(reactor)
        self.addCleanup(self.pool.closeCachedConnections)

    def listen(self, factory: Any) -> int:
        """Serve ``factory`` on a loopback port for this test."""
        port: IListeningPort = self.reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        return address.port

    def scripted(
        self, *scripts: Script, default: Script | None = None
    ) -> tuple[ScriptedFactory, Target]:
        """A scripted raw server and a target pointing at it."""
        factory = ScriptedFactory(list(scripts), default or reply(OK))
        port = self.listen(factory)
        return factory, make_target(f"http://127.0.0.1:{port}/v1/x", {"Accept": "*/*"})

    def send(self, target: Target, body: bytes = b"{}") -> Deferred[Collector]:
        """One request through the pool; fires with its Collector."""
        collector = Collector()
        self.pool.request(target, body, collector)
        return collector.finished

    @inlineCallbacks
    def test_chunked_sse_and_reuse(self) -> Generator[Any, Any, None]:
        """A chunked twisted.web answer arrives de-chunked, the content-length
        one exactly, and both requests share one pooled connection."""
        port = self.listen(Site(Chunks()))
        sse = make_target(f"http://127.0.0.1:{port}/sse", {"Authorization": "Bearer k"})
        got = yield self.send(sse)
        self.assertEqual(
            (got.status, got.body, got.error), (200, b"data: 0\n\ndata: 1\n\ndata: 2\n\n", None)
        )
        self.assertEqual(got.headers["content-type"], "text/event-stream")
        self.assertEqual(self.pool.idle_count(sse), 1)
        js = make_target(f"http://127.0.0.1:{port}/json", {})
        got = yield self.send(js, b"12345")
        self.assertEqual((got.status, got.body), (200, b'{"echo": 5}'))
        self.assertEqual(self.pool.connections_made, 1)

    @inlineCallbacks
    def test_request_bytes(self) -> Generator[Any, Any, None]:
        """The request is one POST with Host, the given headers and Content-Length."""
        factory, target = self.scripted()
        yield self.send(target, b'{"a":1}')
        [raw] = factory.requests
        port = target.port
        self.assertEqual(
            raw,
            b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: */*\r\n"
            b'Content-Length: 7\r\n\r\n{"a":1}' % port,
        )

    @inlineCallbacks
    def test_interim_responses_are_skipped(self) -> Generator[Any, Any, None]:
        """100 Continue and 103 Early Hints before the answer are skipped."""
        _factory, target = self.scripted(
            reply(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK
            )
        )
        got = yield self.send(target)
        self.assertEqual((got.status, got.body, got.error), (200, b"ok", None))
        self.assertNotIn("link", got.headers)

    @inlineCallbacks
    def test_reset_mid_body(self) -> Generator[Any, Any, None]:
        """A reset after part of the body ends it with ResponseBroken; the
        connection is not pooled and the next request gets a new one."""
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf"
        factory, target = self.scripted(reply(head, reset=True))
        got = yield self.send(target)
        self.assertEqual((got.status, got.body), (200, b"half"))
        self.assertIsInstance(got.error, ResponseBroken)
        self.assertEqual(self.pool.idle_count(target), 0)
        got = yield self.send(target)
        self.assertEqual((got.body, factory.connections), (b"ok", 2))

    @inlineCallbacks
    def test_truncated_chunk(self) -> Generator[Any, Any, None]:
        """A chunked body cut inside a chunk is an error, not a short success."""
        raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc"
        _factory, target = self.scripted(reply(raw, close=True))
        got = yield self.send(target)
        self.assertEqual(got.body, b"abc")
        self.assertIsInstance(got.error, ResponseBroken)

    @inlineCallbacks
    def test_malformed_chunk_closes_and_is_not_reused(self) -> Generator[Any, Any, None]:
        """A bad chunk size fails the response and the client closes that
        connection; the next request connects again."""
        raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        factory, target = self.scripted(reply(raw))
        closed = factory.next_close()
        got = yield self.send(target)
        self.assertIsInstance(got.error, ResponseBroken)
        yield closed
        got = yield self.send(target)
        self.assertEqual((got.body, factory.connections), (b"ok", 2))

    @inlineCallbacks
    def test_split_chunks_and_trailers(self) -> Generator[Any, Any, None]:
        """Chunk sizes, CRLFs and trailers split across writes; the connection is reused."""
        pieces = [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3",
            b"\r\nabc\r",
            b"\n2;x=y\r\nde",
            b"\r\n0\r\nT: v\r\n",
            b"\r\n",
        ]

        def script(transport: ITransport, _body: bytes) -> None:
            for n, piece in enumerate(pieces):
                self.reactor.callLater(0.001 * n, transport.write, piece)

        factory, target = self.scripted(script)
        got = yield self.send(target)
        self.assertEqual((got.body, got.error), (b"abcde", None))
        got = yield self.send(target)
        self.assertEqual((got.body, factory.connections), (b"ok", 1))

    @inlineCallbacks
    def test_whole_chunks_in_one_read(self) -> Generator[Any, Any, None]:
        """Whole chunks, an extension and the last chunk in one write arrive as
        one body; a negative chunk size is refused."""
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        good = head + b"5\r\nhello\r\n3;x=y\r\nabc\r\n1\r\n!\r\n0\r\n\r\n"
        factory, target = self.scripted(reply(good), reply(head + b"-1\r\nx\r\n"))
        got = yield self.send(target)
        self.assertEqual(
            (got.body, got.error, self.pool.idle_count(target)), (b"helloabc!", None, 1)
        )
        got = yield self.send(target)
        self.assertIsInstance(got.error, ResponseBroken)
        self.assertEqual(factory.connections, 1)

    @inlineCallbacks
    def test_protocol_violations_fail_and_close(self) -> Generator[Any, Any, None]:
        """Not HTTP/1.x, 101, an unknown transfer-encoding, a bad Content-Length
        or an endless head fail the request with ResponseBroken, each on a
        connection that is then closed; 204 is an empty success; bytes after a
        complete response close that connection instead of pooling it."""
        bad = [
            b"SSH-2.0-nope\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000,
        ]
        extra = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"
        scripts = [reply(raw) for raw in bad]
        factory, target = self.scripted(
            *scripts, reply(b"HTTP/1.1 204 No Content\r\n\r\n"), reply(extra)
        )
        for _ in bad:
            got = yield self.send(target)
            self.assertIsInstance(got.failed, ResponseBroken)
            self.assertEqual(self.pool.idle_count(target), 0)
        got = yield self.send(target)
        self.assertEqual(
            (got.status, got.body, got.error, self.pool.idle_count(target)), (204, b"", None, 1)
        )
        got = yield self.send(target)
        self.assertEqual((got.body, got.error, self.pool.idle_count(target)), (b"ok", None, 0))
        self.assertEqual(factory.connections, len(bad) + 1)

    @inlineCallbacks
    def test_connection_close_and_eof_bodies(self) -> Generator[Any, Any, None]:
        """``Connection: close`` and an HTTP/1.0 body read to EOF complete but are not pooled."""
        close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nA"
        eof = b"HTTP/1.0 200 OK\r\n\r\nuntil the end"
        factory, target = self.scripted(reply(close), reply(eof, close=True))
        got = yield self.send(target)
        self.assertEqual((got.body, got.error, self.pool.idle_count(target)), (b"A", None, 0))
        got = yield self.send(target)
        self.assertEqual(
            (got.body, got.error, self.pool.idle_count(target)), (b"until the end", None, 0)
        )
        self.assertEqual(factory.connections, 2)

    @inlineCallbacks
    def test_idle_connection_closed_by_server_is_retried_once(self) -> Generator[Any, Any, None]:
        """A pooled connection the server closes without answering (it was
        closing it as idle) is retried once on a new connection."""

        def close_silently(transport: ITransport, _body: bytes) -> None:
            transport.loseConnection()

        factory, target = self.scripted(reply(OK), close_silently)
        yield self.send(target)
        got = yield self.send(target)
        self.assertEqual((got.status, got.body, got.failed), (200, b"ok", None))
        self.assertEqual((factory.connections, len(factory.requests)), (2, 3))

    @inlineCallbacks
    def test_no_retry_after_bytes_or_on_a_fresh_connection(self) -> Generator[Any, Any, None]:
        """No retry when the upstream sent part of an answer, nor when the
        connection was new: the caller hears the failure."""
        partial = reply(b"HTTP/1.1 200", close=True)
        factory, target = self.scripted(reply(OK), partial, reply(b"", close=True))
        yield self.send(target)
        got = yield self.send(target)
        self.assertIsNotNone(got.failed)
        self.assertEqual(len(factory.requests), 2)
        got = yield self.send(target)  # a new connection, closed at once
        self.assertIsNotNone(got.failed)
        self.assertEqual((factory.connections, len(factory.requests)), (2, 3))

    @inlineCallbacks
    def test_idle_limit_per_host(self) -> Generator[Any, Any, None]:
        """With max_idle_per_host=1, two concurrent answers leave one idle
        connection; the other is closed."""
        self.pool.max_idle_per_host = 1
        factory, target = self.scripted()
        closed = factory.next_close()
        first, second = self.send(target), self.send(target)
        yield first
        yield second
        yield closed
        self.assertEqual((self.pool.idle_count(target), factory.connections), (1, 2))

    @inlineCallbacks
    def test_idle_timeout_closes(self) -> Generator[Any, Any, None]:
        """An idle connection is closed after idle_timeout."""
        self.pool.idle_timeout = 0.01
        factory, target = self.scripted()
        closed = factory.next_close()
        yield self.send(target)
        yield closed
        self.assertEqual(self.pool.idle_count(target), 0)

    @inlineCallbacks
    def test_stop_mid_body_and_before_connect(self) -> Generator[Any, Any, None]:
        """stopProducing closes the connection (the server sees it) and the
        handler hears nothing more; stopping while connecting cancels it."""
        factory, target = self.scripted(silent)
        collector = Collector()
        closed = factory.next_close()
        exchange = self.pool.request(target, b"{}", collector)
        yield self._until_requests(factory, 1)
        exchange.stopProducing()
        yield closed
        self.assertFalse(collector.finished.called)
        other = Collector()
        self.pool.request(target, b"{}", other).stopProducing()
        self.assertFalse(other.finished.called)

    def _until_requests(self, factory: ScriptedFactory, count: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()

        def check() -> None:
            if len(factory.requests) >= count:
                d.callback(None)
            else:
                self.reactor.callLater(0, check)

        check()
        return d

    @inlineCallbacks
    def test_refused(self) -> Generator[Any, Any, None]:
        """A closed port fails the request with ConnectError."""
        port: IListeningPort = self.reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        number = port.getHost().port  # type: ignore[attr-defined]
        yield port.stopListening()
        got = yield self.send(make_target(f"http://127.0.0.1:{number}/", {}))
        self.assertIsInstance(got.failed, ConnectError)


class TLSTests(TestCase):
    """https: certificates are verified against the trust root and the host name."""

    timeout = 20

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        ca_pem, self.key_path, self.cert_path = make_certificates(directory)
        self.trust_root = Certificate.loadPEM(ca_pem)

    @inlineCallbacks
    def serve(self) -> Generator[Any, Any, int]:
        endpoint = serverFromString(
            self.reactor,
            f"ssl:0:interface=127.0.0.1:privateKey={self.key_path}:certKey={self.cert_path}",
        )
        port = yield endpoint.listen(Site(Chunks()))
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    @inlineCallbacks
    def test_verified_tls(self) -> Generator[Any, Any, None]:
        """With the test CA trusted, the request succeeds and the connection is reused."""
        port = yield self.serve()
        pool = UpstreamPool(
            self.reactor, tls=lambda host: optionsForClientTLS(host, trustRoot=self.trust_root)
        )
        self.addCleanup(pool.closeCachedConnections)
        target = make_target(f"https://127.0.0.1:{port}/json", {})
        for _ in range(2):
            collector = Collector()
            pool.request(target, b"abc", collector)
            got = yield collector.finished
            self.assertEqual((got.status, got.body), (200, b'{"echo": 3}'))
        self.assertEqual(pool.connections_made, 1)

    @inlineCallbacks
    def test_untrusted_certificate_is_refused(self) -> Generator[Any, Any, None]:
        """The default TLS options (system roots) refuse the test CA's certificate."""
        port = yield self.serve()
        pool = UpstreamPool(self.reactor)
        self.addCleanup(pool.closeCachedConnections)
        collector = Collector()
        pool.request(make_target(f"https://127.0.0.1:{port}/json", {}), b"", collector)
        got = yield collector.finished
        self.assertEqual(got.status, 0)
        self.assertIsNotNone(got.failed)
        self.assertIn("certificate", repr(got.failed).lower())


class TargetTests(TestCase):
    """make_target validates once what every request reuses."""

    def test_rejects_bad_urls_and_header_injection(self) -> None:
        """Non-http schemes, missing hosts and CR/LF in headers are refused."""
        for url in ("ftp://h/", "http:///x", "http://h:99999/"):
            self.assertRaises(ValueError, make_target, url, {})
        self.assertRaises(ValueError, make_target, "http://h/", {"X": "a\r\nEvil: 1"})
        self.assertRaises(ValueError, make_target, "http://h/", {"Bad Name": "v"})

    def test_ipv6_literal(self) -> None:
        """An IPv6 literal keeps its brackets in Host and is connected to without them."""
        target = make_target("http://[::1]:8080/v1/chat/completions", {})
        self.assertEqual(target.key, ("http", "::1", 8080))
        self.assertIn(b"\r\nHost: [::1]:8080\r\n", target.head)

    def test_default_ports_and_framing_headers(self) -> None:
        """Default ports per scheme; caller-supplied framing headers are dropped."""
        target = make_target("https://api.example.com/v1/messages?x=1", {"Content-Length": "9"})
        self.assertEqual((target.port, target.key), (443, ("https", "api.example.com", 443)))
        self.assertEqual(
            target.head,
            b"POST /v1/messages?x=1 HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: ",
        )
