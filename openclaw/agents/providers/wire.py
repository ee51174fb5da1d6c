# -*- test-case-name: tests.test_wire -*-
"""A lean HTTP/1.1 client connection for model upstreams.

Twisted's :class:`~twisted.web.client.Agent` was about a fifth of a
non-streamed turn's CPU (a profile of bench S1): URI objects, a ``Headers``
per request, a state machine per response and several Deferreds per
exchange. A model call needs much less: one ``POST`` with a fixed head, the
status, a few response headers, and the body (``Content-Length``, chunked, or
up to the close) handed straight to the provider's SSE parser. This module is
that connection; :mod:`openclaw.agents.providers.pool` keeps them per
upstream.

One request at a time per connection. A connection goes back to its pool
only after a whole, well-framed response with keep-alive; any error, abort
or surprise closes it for good.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from typing import Protocol as TypingProtocol
from urllib.parse import urlsplit

from attrs import frozen
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer, ITransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from openclaw.core.delivery import DELIVERY

#: A response head (status line and headers, interim ones included) larger than this is refused.
MAX_HEAD_BYTES = 64 * 1024
#: A chunk-size or trailer line longer than this is refused.
MAX_CHUNK_LINE = 4096
#: Bytes read from an upstream socket per reactor turn (Twisted reads 64 KiB).
#: A read is parsed and delivered in one go (a 64 KiB read of small chunks
#: is about 400 events); smaller reads bound the work one busy stream does
#: per turn, so a new request's first byte does not wait behind it.
READ_SIZE = 4 * 1024

_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

_IDLE, _HEAD, _BODY, _CLOSED = 0, 1, 2, 3
_LENGTH, _CHUNKED, _EOF = 0, 1, 2
_SIZE, _DATA, _DATA_END, _TRAILER = 0, 1, 2, 3


_CLOSED_CLEANLY = Failure(ConnectionDone())  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted


class ResponseBroken(ConnectionLost):
    """The connection ended or the upstream broke HTTP/1.1 framing mid-response."""


class ResponseHandler(TypingProtocol):
    """Receives one exchange's response, in order; nothing after an end."""

    def response_started(self, status: int, headers: dict[str, str]) -> None:
        """The final (non-1xx) status and headers: lower-case names, first value of each."""

    def body_data(self, data: bytes) -> None:
        """Body bytes (chunked framing already removed), never empty."""

    def body_end(self, reason: BaseException | None) -> None:
        """The body ended: ``None`` when complete, else why it broke."""

    def request_failed(self, reason: BaseException) -> None:
        """No response head arrived: connect failed or the connection was lost."""


@frozen
class Target:
    """A request made once per provider: where it goes and its fixed head.

    ``head`` is everything up to the ``Content-Length`` line, so a request is
    ``head + length + body`` with no per-call header work.
    """

    url: str
    scheme: str
    host: str
    port: int
    headers: tuple[tuple[str, str], ...]
    head: bytes

    @property
    def key(self) -> tuple[str, str, int]:
        """The pool key: connections are shared per scheme, host and port."""
        return (self.scheme, self.host, self.port)


def make_target(url: str, headers: Mapping[str, str]) -> Target:
    """Validate ``url`` and ``headers`` once and build the request head.

    Raises :class:`ValueError` for anything but ``http``/``https`` URLs, and
    for header names or values that could split the request (CR, LF, NUL).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported upstream URL scheme {parts.scheme!r}")
    host = parts.hostname
    if not host:
        raise ValueError("the upstream URL has no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
        host.encode("ascii")
    except (ValueError, UnicodeEncodeError):
        raise ValueError("the upstream URL's host or port is not valid") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{port}"
    lines = [f"POST {path} HTTP/1.1", f"Host: {netloc}"]
    kept: list[tuple[str, str]] = []
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or any(c in value for c in "\r\n\0"):
            raise ValueError(f"invalid upstream request header {name!r}")
        if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
            continue
        lines.append(f"{name}: {value}")
        kept.append((name, value))
    head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
    return Target(url, scheme, host, port, tuple(kept), head)


def abort_transport(transport: ITransport | None) -> None:
    """Close a connection now: shut the socket down (the peer sees it at once,
    not on a later reactor pass) and abort, dropping anything unsent."""
    if transport is None:
        return
    get_handle = getattr(transport, "getHandle", None)
    if callable(get_handle):
        try:
            handle = get_handle()
            if isinstance(handle, socket.socket):
                handle.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the peer
    abort = getattr(transport, "abortConnection", None)
    if callable(abort):
        abort()
    else:
        transport.loseConnection()


def _limit_reads(transport: ITransport | None) -> None:
    """Make ``transport`` (or, under TLS, the TCP connection below it) read
    at most :data:`READ_SIZE` bytes per reactor turn."""
    below = getattr(transport, "transport", None)  # TLSMemoryBIOProtocol wraps TCP
    target = below if below is not None else transport
    if isinstance(getattr(target, "bufferSize", None), int):
        setattr(target, "bufferSize", READ_SIZE)  # noqa: B010  # not in ITransport


class UpstreamConnection(Protocol):
    """One HTTP/1.1 connection to an upstream, serving one exchange at a time.

    The pool sets ``on_idle`` (a response completed and the connection may
    be reused) and ``on_lost``; the connection calls exactly one of them when
    an exchange ends well, and ``on_lost`` when it closes.
    """

    def __init__(self) -> None:
        self.on_idle: Callable[[UpstreamConnection], None] | None = None
        self.on_lost: Callable[[UpstreamConnection, BaseException], None] | None = None
        #: Exchanges completed on this connection (a reused one may be stale).
        self.served = 0
        self.connected = False
        self._state = _IDLE
        self._handler: ResponseHandler | None = None
        self._received = False
        self._buf = b""
        self._mode = _LENGTH
        self._left = 0
        self._chunk_state = _SIZE
        self._keep_alive = True
        self._paused = False

    # -- used by the pool / exchange -------------------------------------

    @property
    def received_any(self) -> bool:
        """True once a byte of the current response arrived."""
        return self._received

    @property
    def idle(self) -> bool:
        """True when open and between exchanges."""
        return bool(self._state == _IDLE and self.connected)

    def send(self, target: Target, body: bytes, handler: ResponseHandler) -> None:
        """Write one request (one ``write``) and wait for its response."""
        assert self._state == _IDLE and self.transport is not None
        self._state = _HEAD
        self._handler = handler
        self._received = False
        self._buf = b""
        self._keep_alive = True
        self.transport.write(b"%s%d\r\n\r\n%s" % (target.head, len(body), body))

    def pause(self) -> None:
        """Stop reading from the socket."""
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pauseProducing()  # type: ignore[attr-defined]  # typing note: a TCP/TLS transport is an IPushProducer

    def resume(self) -> None:
        """Read from the socket again."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resumeProducing()  # type: ignore[attr-defined]  # typing note: see pause

    def abort(self) -> None:
        """Drop the exchange and close the connection now; no handler call follows."""
        self._handler = None
        self._state = _CLOSED
        abort_transport(self.transport)

    # -- Protocol --------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        _limit_reads(self.transport)

    def dataReceived(self, data: bytes) -> None:
        # One delivery batch per read: the SSE writers of every event it
        # carries write once, when it ends.
        DELIVERY.begin()
        try:
            state = self._state
            if state == _BODY:
                self._body(data)
            elif state == _HEAD:
                self._received = True
                self._head(data)
            elif state == _IDLE:
                # Bytes nobody asked for: the connection's framing is lost.
                self._state = _CLOSED
                abort_transport(self.transport)
        finally:
            DELIVERY.end()

    def connectionLost(self, reason: Failure = _CLOSED_CLEANLY) -> None:
        self.connected = False
        state, self._state = self._state, _CLOSED
        handler, self._handler = self._handler, None
        value = reason.value if reason.value is not None else ConnectionDone()
        if handler is not None:
            if state == _HEAD:
                handler.request_failed(value)
            elif state == _BODY:
                if self._mode == _EOF and isinstance(value, ConnectionDone):
                    handler.body_end(None)
                else:
                    handler.body_end(ResponseBroken(f"response body cut short ({value})"))
        if self.on_lost is not None:
            self.on_lost(self, value)

    # -- parsing ---------------------------------------------------------

    def _fail(self, message: str) -> None:
        """A framing error: the handler hears it; the connection is never reused."""
        handler, self._handler = self._handler, None
        state, self._state = self._state, _CLOSED
        abort_transport(self.transport)
        if handler is None:
            return
        error = ResponseBroken(message)
        if state == _HEAD:
            handler.request_failed(error)
        else:
            handler.body_end(error)

    def _head(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            cut = 4
            if end < 0:
                end = buf.find(b"\n\n")
                cut = 2
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    self._fail("response head too large")
                else:
                    self._buf = buf
                return
            head, buf = buf[:end], buf[end + cut :]
            lines = head.split(b"\n")
            status_line = lines[0].rstrip(b"\r")
            version, _, rest = status_line.partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/1.") or not code.isdigit():
                self._fail("upstream did not answer with HTTP/1.x")
                return
            status = int(code)
            if 100 <= status < 200:
                if status == 101:
                    self._fail("upstream switched protocols")
                    return
                continue  # interim response (100 Continue, 103 Early Hints): skip it
            headers: dict[str, str] = {}
            for raw in lines[1:]:
                name, sep, value = raw.partition(b":")
                if sep:
                    headers.setdefault(
                        name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")
                    )
            break
        self._buf = b""
        if not self._frame(version, status, headers):
            return
        handler = self._handler
        self._state = _BODY
        if handler is not None:
            handler.response_started(status, headers)
        if self._handler is None:
            return  # aborted by the handler
        if self._mode == _LENGTH and self._left == 0:
            self._done(buf)
        elif buf:
            self._body(buf)

    def _frame(self, version: bytes, status: int, headers: dict[str, str]) -> bool:
        connection = headers.get("connection", "").lower()
        self._keep_alive = version == b"HTTP/1.1" and "close" not in connection
        encoding = headers.get("transfer-encoding", "").lower()
        if status in (204, 304):
            self._mode, self._left = _LENGTH, 0
        elif encoding:
            if encoding.rsplit(",", 1)[-1].strip() != "chunked":
                self._fail(f"unsupported transfer-encoding {encoding!r}")
                return False
            self._mode, self._chunk_state, self._left = _CHUNKED, _SIZE, 0
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit() or len(length) > 15:
                self._fail("invalid content-length")
                return False
            self._mode, self._left = _LENGTH, int(length)
        else:
            self._mode, self._keep_alive = _EOF, False
        return True

    def _body(self, data: bytes) -> None:
        mode = self._mode
        if mode == _CHUNKED:
            self._chunked(data)
            return
        handler = self._handler
        if handler is None:
            return
        if mode == _EOF:
            handler.body_data(data)
            return
        left = self._left
        if len(data) < left:
            self._left = left - len(data)
            handler.body_data(data)
            return
        self._left = 0
        piece, extra = (data, b"") if len(data) == left else (data[:left], data[left:])
        if piece:
            handler.body_data(piece)
        if self._handler is not None:
            self._done(extra)

    def _chunked(self, data: bytes) -> None:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pieces: list[bytes] = []
        pos, size = 0, len(data)
        finished = False
        find = data.find
        while True:
            if self._chunk_state == _SIZE:
                # Fast path: whole ``size CRLF data CRLF`` chunks (nearly every
                # chunk of a model stream). Anything else (a split chunk, the
                # last chunk, extensions, bare LF, bad input) goes to the steps
                # below, which come back here once a chunk is complete (a read
                # that starts inside a chunk would otherwise take the slow
                # steps for every chunk after it).
                while True:
                    eol = find(b"\r\n", pos)
                    if eol < 0:
                        break
                    try:
                        length = int(data[pos:eol], 16)
                    except ValueError:
                        break
                    start = eol + 2
                    end = start + length
                    if length <= 0 or data[end : end + 2] != b"\r\n":
                        break
                    pieces.append(data[start:end])
                    pos = end + 2
            if pos >= size:
                break
            state = self._chunk_state
            if state == _DATA:
                take = min(self._left, size - pos)
                pieces.append(data[pos : pos + take] if take < size or pos else data)
                pos += take
                self._left -= take
                if not self._left:
                    self._chunk_state = _DATA_END
                continue
            if state == _DATA_END:
                if data[pos] == 10:
                    pos += 1
                elif data.startswith(b"\r\n", pos):
                    pos += 2
                elif pos + 1 == size and data[pos] == 13:
                    self._buf = b"\r"
                    break
                else:
                    self._fail("malformed chunked body")
                    return
                self._chunk_state = _SIZE
                continue
            eol = find(b"\n", pos)
            if eol < 0:
                self._buf = data[pos:]
                if len(self._buf) > MAX_CHUNK_LINE:
                    self._fail("chunk-size line too long")
                    return
                break
            line = data[pos:eol].rstrip(b"\r")
            pos = eol + 1
            if state == _SIZE:
                digits = line.split(b";", 1)[0].strip()
                if not _HEX.fullmatch(digits):
                    self._fail("malformed chunk size")
                    return
                self._left = int(digits, 16)
                self._chunk_state = _DATA if self._left else _TRAILER
            elif not line:
                finished = True
                break
        handler = self._handler
        if pieces and handler is not None:
            handler.body_data(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        if finished and self._handler is not None:
            self._done(data[pos:])

    def _done(self, extra: bytes) -> None:
        """The response is complete: reuse the connection if it is clean."""
        handler, self._handler = self._handler, None
        self.served += 1
        if extra or not self._keep_alive:
            self._state = _CLOSED
            self.transport.loseConnection()  # type: ignore[union-attr]  # typing note: connected
        else:
            self._state = _IDLE
            self.resume()
            if self.on_idle is not None:
                self.on_idle(self)
        if handler is not None:
            handler.body_end(None)


@implementer(IPushProducer)
class Exchange:
    """One request's handle: flow control and abort, valid until the response ends.

    It may be created before its connection exists (the pool is connecting);
    a pause or stop that comes first is applied when the connection arrives.
    """

    def __init__(self, cancel_connect: Callable[[], None] | None = None) -> None:
        self.connection: UpstreamConnection | None = None
        self.cancel_connect = cancel_connect
        self.paused = False
        self.stopped = False
        self.ended = False

    def attach(self, connection: UpstreamConnection) -> None:
        """The request now runs on ``connection``."""
        self.connection = connection
        self.cancel_connect = None
        if self.paused:
            connection.pause()

    def pauseProducing(self) -> None:
        """Stop reading the response."""
        self.paused = True
        if self.connection is not None and not self.ended:
            self.connection.pause()

    def resumeProducing(self) -> None:
        """Read the response again."""
        self.paused = False
        if self.connection is not None and not self.ended:
            self.connection.resume()

    def stopProducing(self) -> None:
        """Abort: close the connection (or stop connecting); the handler hears nothing more."""
        if self.stopped or self.ended:
            return
        self.stopped = True
        cancel, self.cancel_connect = self.cancel_connect, None
        if cancel is not None:
            cancel()
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.abort()
