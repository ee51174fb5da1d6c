# -*- test-case-name: tests.test_provider_openai -*-
"""Shared plumbing for HTTP model providers: one streamed POST with flow control.

:class:`HTTPModelStream` sends the request through an injected
:class:`~twisted.web.iweb.IAgent` (normally an :class:`~twisted.web.client.Agent`
on a persistent :class:`~twisted.web.client.HTTPConnectionPool`), receives
the body in its own :class:`~twisted.internet.protocol.Protocol` (never
``treq.collect``, which cannot be cancelled), and hands parsed events to an
API-specific :class:`StreamDecoder`.

Flow control: the body protocol's transport is Twisted's
``TransportProxyProducer``; ``pauseProducing`` stops reading from the socket,
``resumeProducing`` starts again and ``stopProducing`` closes the connection,
so the upstream sees the client go away. Events already parsed when a pause
arrives are held back and delivered on resume: a paused stream emits nothing.

Timeout: ``timeout_seconds`` is an *idle* timeout. It runs from the start of
the call and restarts whenever bytes arrive, so it bounds the connect, the
wait for the response headers and every gap between chunks. It is suspended
while the stream is paused (a slow consumer is not the upstream's fault).
The total length of a run is bounded by the agent timeout in the runtime.

Completion: after the terminal event (``[DONE]``, ``message_stop``) ``done``
fires when the HTTP body ends, which is normally the same read; by then
Twisted has returned the connection to the pool, so the next call reuses it.
A body that does not end within :data:`DRAIN_GRACE_SECONDS` is cut off and
the outcome delivered anyway.
"""

from __future__ import annotations

import json
import socket
from collections import deque
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from openclaw.agents.providers.base import ModelCall, StreamOutcome, StreamSink
from openclaw.agents.providers.errors import (
    classify_http_error,
    config_secrets,
    connection_error,
    malformed_stream,
    response_headers,
    timeout_error,
)
from openclaw.agents.providers.sse import SSEError, SSEEvent, SSEParser
from openclaw.agents.types import ProviderError
from openclaw.config.model import ProviderConfig

log = Logger()

#: A non-2xx body is read up to this size for its error message.
MAX_ERROR_BODY = 64 * 1024
#: A whole-JSON (non-streamed) 2xx answer may be at most this large.
MAX_JSON_BODY = 8 * 1024 * 1024

#: After the terminal event, wait at most this long for the body to end.
DRAIN_GRACE_SECONDS = 5.0

_Mode = Literal["sniff", "sse", "json", "error"]


class StreamDecoder(Protocol):
    """The API-specific half: turns upstream events into sink calls.

    Methods raise :class:`ProviderError` for an error frame or malformed data.
    """

    def event(self, event: SSEEvent) -> bool:
        """Handle one SSE event; return True when it is the terminal one."""
        ...

    def one_shot(self, payload: Any) -> None:
        """Handle a whole non-streamed JSON answer (already parsed)."""
        ...

    def outcome(self, at_eof: bool) -> StreamOutcome:
        """How the stream ended; raise if it ended before it was complete."""
        ...


#: Idle upstream connections kept per host: enough for 64 concurrent turns
#: (and then some), so a busy gateway does not close and reopen connections.
DEFAULT_MAX_PER_HOST = 128


def make_pool(
    reactor: IReactorTime, *, max_per_host: int = DEFAULT_MAX_PER_HOST
) -> HTTPConnectionPool:
    """A persistent connection pool with settings that suit model upstreams.

    Up to ``max_per_host`` idle connections per upstream are kept (active ones
    are not limited); past that, a finished connection is closed. Cached idle
    connections are dropped after 30 s, below the keep-alive of common
    servers, so a POST (which Twisted does not retry) rarely lands on a
    connection the server has just closed.
    """
    pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted
    pool.maxPersistentPerHost = max_per_host
    pool.cachedConnectionTimeout = 30
    return pool


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body that is already in memory."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        """Nothing to pause: everything was written at once."""

    def resumeProducing(self) -> None:
        """Nothing to resume."""

    def stopProducing(self) -> None:
        """Nothing to stop."""


_DONE = Failure(ResponseDone("response body complete"))  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted


def _value(reason: Failure) -> BaseException:
    value = reason.value
    return value if value is not None else Exception("unknown failure")


class _BodyProtocol(TwistedProtocol):
    """Forwards the response body to its :class:`HTTPModelStream`."""

    def __init__(self, owner: HTTPModelStream) -> None:
        self._owner = owner

    def connectionMade(self) -> None:
        self._owner._body_connected(self.transport)  # type: ignore[arg-type]  # typing note: a TransportProxyProducer

    def dataReceived(self, data: bytes) -> None:
        self._owner._body_data(data)

    def connectionLost(self, reason: Failure = _DONE) -> None:
        self._owner._body_end(reason.value)


class _DiscardBody(TwistedProtocol):
    """Receives a body nobody wants any more and closes its connection."""

    def connectionMade(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]  # typing note: TransportProxyProducer


@implementer(IPushProducer)
class HTTPModelStream:
    """One running upstream call: a :class:`~openclaw.agents.providers.base.ModelStream`.

    ``bytes_received`` counts body bytes delivered to the parser; tests and
    benchmarks use it to check that a paused stream stops reading.
    """

    def __init__(
        self,
        *,
        agent: IAgent,
        clock: IReactorTime,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        decoder: StreamDecoder,
        timeout_seconds: float,
        provider_id: str,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self._agent = agent
        self._clock = clock
        self._url = url
        self._headers = headers
        self._body = body
        self._decoder = decoder
        self._timeout = timeout_seconds
        self._provider_id = provider_id
        self._secrets = secrets
        self._done: Deferred[StreamOutcome] = Deferred(lambda _d: self.stopProducing())
        self._request_d: Deferred[IResponse] | None = None
        self._transport: IPushProducer | None = None
        self._timer: IDelayedCall | None = None
        self._paused = False
        #: The outcome is decided (done fired or about to); later input is ignored.
        self._finished = False
        self._mode: _Mode = "sniff"
        self._status = 0
        self._response_headers: dict[str, str] = {}
        self._buffer = bytearray()
        self._parser = SSEParser()
        self._pending: deque[SSEEvent] = deque()
        self._eof: BaseException | None = None
        #: Decided by a terminal event, delivered when the body ends.
        self._outcome: StreamOutcome | None = None
        self.bytes_received = 0

    # -- ModelStream ---------------------------------------------------------

    @property
    def done(self) -> Deferred[StreamOutcome]:
        """Fires with the outcome, or fails with ProviderError / CancelledError."""
        return self._done

    def pauseProducing(self) -> None:
        """Stop reading from the upstream until :meth:`resumeProducing`."""
        if self._finished or self._paused:
            return
        self._paused = True
        if self._transport is not None:
            self._cancel_timer()
            self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        """Deliver held-back events, then read from the upstream again."""
        if self._finished or not self._paused:
            return
        self._paused = False
        self._drain()
        if self._finished or self._paused:
            return
        if self._transport is not None:
            self._arm_timer()
            self._transport.resumeProducing()

    def stopProducing(self) -> None:
        """Abort: close the upstream connection; ``done`` fails with CancelledError
        (unless the upstream had already sent its terminal event)."""
        if self._finished:
            self._close()
            self._deliver_outcome()
            return
        self._finish(CancelledError("model stream stopped"))

    # -- start ---------------------------------------------------------------

    def start(self) -> None:
        """Send the request; called once by the provider."""
        headers = Headers()
        for name, value in self._headers.items():
            headers.setRawHeaders(name, [value])
        self._arm_timer()
        try:
            d = self._agent.request(
                b"POST", self._url.encode("ascii"), headers, _BytesProducer(self._body)
            )
        except Exception as exc:
            self._fail(connection_error(exc, self._secrets))
            return
        self._request_d = d
        d.addCallbacks(self._got_response, self._request_failed)

    def _request_failed(self, reason: Failure) -> None:
        self._request_d = None
        if self._finished:
            return
        self._fail(connection_error(_value(reason), self._secrets))

    def _got_response(self, response: IResponse) -> None:
        self._request_d = None
        if self._finished:
            response.deliverBody(_DiscardBody())
            return
        self._touch()
        self._status = response.code
        self._response_headers = response_headers(response)
        if not 200 <= response.code < 300:
            self._mode = "error"
        else:
            content_type = self._response_headers.get("content-type", "").lower()
            if "event-stream" in content_type:
                self._mode = "sse"
            elif "json" in content_type:
                self._mode = "json"
        response.deliverBody(_BodyProtocol(self))
        # deliverBody resumes the transport; re-apply a pause that came first.
        if self._paused and self._mode != "error" and self._transport is not None:
            self._cancel_timer()
            self._transport.pauseProducing()

    # -- body ----------------------------------------------------------------

    def _body_connected(self, transport: IPushProducer) -> None:
        self._transport = transport

    def _body_data(self, data: bytes) -> None:
        if self._finished:
            return
        self.bytes_received += len(data)
        self._touch()
        if self._mode == "sniff":
            stripped = data.lstrip()
            if not stripped:
                self._buffer.extend(data)
                if len(self._buffer) > MAX_ERROR_BODY:
                    self._fail(malformed_stream("upstream sent only whitespace"))
                return
            self._mode = "json" if stripped[:1] in (b"{", b"[") else "sse"
            if self._buffer:
                data = bytes(self._buffer) + data
                self._buffer.clear()
        if self._mode == "sse":
            try:
                events = self._parser.feed(data)
            except SSEError as exc:
                self._fail(malformed_stream(str(exc)))
                return
            if events:
                self._pending.extend(events)
                self._drain()
        elif self._mode == "error":
            room = MAX_ERROR_BODY - len(self._buffer)
            self._buffer.extend(data[:room])
            if len(self._buffer) >= MAX_ERROR_BODY:
                self._fail(self._http_error())
        else:
            self._buffer.extend(data)
            if len(self._buffer) > MAX_JSON_BODY:
                self._fail(malformed_stream(f"JSON answer larger than {MAX_JSON_BODY} bytes"))

    def _body_end(self, reason: BaseException | None) -> None:
        self._transport = None
        if self._finished:
            self._cancel_timer()
            self._deliver_outcome()
            return
        clean = isinstance(reason, (ResponseDone, PotentialDataLoss))
        if self._mode == "error":
            self._fail(self._http_error())
            return
        if self._mode in ("json", "sniff") and clean:
            self._one_shot()
            return
        if clean:
            try:
                self._pending.extend(self._parser.close())
            except SSEError as exc:
                self._fail(malformed_stream(str(exc)))
                return
        self._eof = reason
        self._drain()

    def _drain(self) -> None:
        pending = self._pending
        decoder = self._decoder
        while pending and not self._paused and not self._finished:
            event = pending.popleft()
            try:
                terminal = decoder.event(event)
            except ProviderError as err:
                self._fail(err)
                return
            except Exception as exc:
                self._finish(exc)
                return
            if terminal:
                self._complete(at_eof=False)
                return
        if pending or self._finished or self._eof is None:
            return
        if isinstance(self._eof, (ResponseDone, PotentialDataLoss)):
            self._complete(at_eof=True)
        else:
            self._fail(connection_error(self._eof, self._secrets))

    def _one_shot(self) -> None:
        raw = bytes(self._buffer)
        self._buffer.clear()
        if not raw.strip():
            self._fail(malformed_stream("upstream answered with an empty body"))
            return
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._fail(malformed_stream("upstream answered with neither SSE nor JSON"))
            return
        try:
            self._decoder.one_shot(payload)
        except ProviderError as err:
            self._fail(err)
            return
        except Exception as exc:
            self._finish(exc)
            return
        self._complete(at_eof=True)

    def _http_error(self) -> ProviderError:
        return classify_http_error(
            self._status,
            bytes(self._buffer),
            self._response_headers,
            now=self._clock.seconds(),
            secrets=self._secrets,
        )

    # -- endings -------------------------------------------------------------

    def _complete(self, at_eof: bool) -> None:
        try:
            outcome = self._decoder.outcome(at_eof)
        except ProviderError as err:
            self._fail(err)
            return
        except Exception as exc:
            self._finish(exc)
            return
        self._finished = True
        self._pending.clear()
        if self._transport is None:
            self._cancel_timer()
            self._done.callback(outcome)
            return
        # The terminal event came before the end of the body (the last chunk
        # is usually in the same read). Fire done at the end of the body: by
        # then Twisted has put the connection back in the pool, so the next
        # call reuses it. A server that never ends the body is cut off (the
        # idle timer, now finished, is moved to the grace period: no new timer).
        self._outcome = outcome
        if self._paused:
            self._paused = False
            self._transport.resumeProducing()
        grace = (
            min(self._timeout, DRAIN_GRACE_SECONDS) if self._timeout > 0 else DRAIN_GRACE_SECONDS
        )
        timer = self._timer
        if timer is not None and timer.active():
            timer.reset(grace)
        else:
            self._timer = self._clock.callLater(grace, self._timed_out)

    def _deliver_outcome(self) -> None:
        outcome, self._outcome = self._outcome, None
        if outcome is not None:
            self._done.callback(outcome)

    def _fail(self, err: ProviderError) -> None:
        log.info(
            "provider {provider_id} call failed: {kind} (status {status}, code {code})",
            provider_id=self._provider_id,
            kind=err.kind.value,
            status=err.status,
            code=err.code,
        )
        self._finish(err)

    def _finish(self, reason: BaseException) -> None:
        if self._finished:
            return
        self._finished = True
        self._pending.clear()
        self._cancel_timer()
        self._close()
        self._done.errback(reason)

    def _close(self) -> None:
        self._cancel_timer()
        request_d, self._request_d = self._request_d, None
        if request_d is not None:
            request_d.cancel()
        transport, self._transport = self._transport, None
        if transport is not None:
            _abort(transport)

    # -- idle timer ----------------------------------------------------------

    def _arm_timer(self) -> None:
        if self._timeout > 0 and self._timer is None:
            self._timer = self._clock.callLater(self._timeout, self._timed_out)

    def _touch(self) -> None:
        if self._timer is not None:
            self._timer.reset(self._timeout)

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _timed_out(self) -> None:
        self._timer = None
        if self._finished:
            self._close()
            self._deliver_outcome()
            return
        self._fail(timeout_error(self._timeout))


def _abort(transport: IPushProducer) -> None:
    """Close the upstream connection now (it is never reused after a stop).

    The body's transport is Twisted's ``TransportProxyProducer``, whose
    ``stopProducing`` is a graceful ``loseConnection`` that closes on a later
    reactor pass; under load that is many milliseconds after the client left.
    So the TCP socket it wraps is shut down at once (the upstream sees the end
    of the stream now) and the connection aborted; anything else (TLS, test
    transports) gets ``stopProducing``.
    """
    connection = getattr(transport, "_producer", None)
    abort = getattr(connection, "abortConnection", None)
    if not callable(abort):
        transport.stopProducing()
        return
    get_handle = getattr(connection, "getHandle", None)
    if callable(get_handle):
        try:
            handle = get_handle()
            if isinstance(handle, socket.socket):
                handle.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the peer
    abort()


def plain(value: Any) -> Any:
    """Deep-copy mappings and tuples from frozen config into JSON-ready values."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def json_body(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON for a request body."""
    return _ENCODER.encode(payload).encode("utf-8")


class StreamingHTTPProvider:
    """What the HTTP providers share: a fixed URL and headers, one
    :class:`HTTPModelStream` per call. Subclasses say how a call becomes a
    request body and which decoder reads the answer."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        agent: IAgent,
        clock: IReactorTime,
        url: str,
        api_headers: Mapping[str, str],
    ) -> None:
        self._config = config
        self._agent = agent
        self._clock = clock
        self._url = url
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        headers.update(api_headers)
        headers.update(config.headers)
        self._headers = headers
        self._secrets = config_secrets(config.api_key, config.headers)

    @property
    def provider_id(self) -> str:
        """The ``models.providers`` key."""
        return self._config.id

    def request_body(self, call: ModelCall) -> dict[str, Any]:
        """The JSON request for ``call``."""
        raise NotImplementedError

    def decoder(self, sink: StreamSink, secrets: tuple[str, ...]) -> StreamDecoder:
        """A decoder feeding ``sink`` from this API's stream events."""
        raise NotImplementedError

    def stream(self, call: ModelCall, sink: StreamSink) -> HTTPModelStream:
        """Start the call; failures (even connect failures) arrive on ``done``."""
        stream = HTTPModelStream(
            agent=self._agent,
            clock=self._clock,
            url=self._url,
            headers=self._headers,
            body=json_body(self.request_body(call)),
            decoder=self.decoder(sink, self._secrets),
            timeout_seconds=self._config.timeout_seconds,
            provider_id=self._config.id,
            secrets=self._secrets,
        )
        stream.start()
        return stream
