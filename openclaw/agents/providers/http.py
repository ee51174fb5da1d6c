# -*- test-case-name: tests.test_provider_openai -*-
"""Shared plumbing for HTTP model providers: one streamed POST with flow control.

:class:`HTTPModelStream` sends the request through an :class:`UpstreamClient`
(normally the gateway's :class:`~openclaw.agents.providers.pool.UpstreamPool`
of persistent connections; :class:`~openclaw.agents.providers.agent_client.AgentClient`
adapts any Twisted ``IAgent``), receives the response as
:class:`~openclaw.agents.providers.wire.ResponseHandler` calls, and hands
parsed events to an API-specific :class:`StreamDecoder`.

Flow control: the client's exchange is a push producer; ``pauseProducing``
stops reading from the socket, ``resumeProducing`` starts again and
``stopProducing`` closes the connection at once, so the upstream sees the
client go away. Events already parsed when a pause arrives are held back and
delivered on resume: a paused stream emits nothing.

Timeout: ``timeout_seconds`` is an *idle* timeout. It runs from the start of
the call and restarts whenever bytes arrive, so it bounds the connect, the
wait for the response headers and every gap between chunks. It is suspended
while the stream is paused (a slow consumer is not the upstream's fault).
The total length of a run is bounded by the agent timeout in the runtime.

Text: the decoder's sink is a :class:`~openclaw.agents.providers.mending.SurrogateMender`,
so lone UTF-16 surrogates in the upstream's JSON (``"ab\\ud83d"``) become
U+FFFD and a pair split across two chunks still joins.

Completion: after the terminal event (``[DONE]``, ``message_stop``) ``done``
fires when the HTTP body ends, which is normally the same read; by then the
connection is back in the pool, so the next call reuses it. A body that does
not end within :data:`DRAIN_GRACE_SECONDS` is cut off and the outcome
delivered anyway.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IAgent
from zope.interface import implementer

from openclaw.agents.providers.base import ModelCall, StreamOutcome, StreamSink
from openclaw.agents.providers.errors import (
    classify_http_error,
    config_secrets,
    connection_error,
    malformed_stream,
    timeout_error,
)
from openclaw.agents.providers.mending import SurrogateMender
from openclaw.agents.providers.pool import DEFAULT_MAX_IDLE_PER_HOST, UpstreamPool
from openclaw.agents.providers.sse import SSEError, SSEEvent, SSEParser
from openclaw.agents.providers.wire import ResponseHandler, Target, make_target
from openclaw.agents.types import ProviderError
from openclaw.config.model import ProviderConfig
from openclaw.core.fastjson import dumps, loads
from openclaw.core.memo import IdentityMemo
from openclaw.core.textguard import scrub_json_text

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


class _SpentDecoder:
    """Stands in for a finished stream's decoder. The decoder refers to the
    sink (the model step), which refers to the stream: dropping it at the end
    lets reference counting free the whole turn, without waiting for Python's
    cycle collector."""

    def event(self, event: SSEEvent) -> bool:
        raise RuntimeError("the stream has finished")

    def one_shot(self, payload: Any) -> None:
        raise RuntimeError("the stream has finished")

    def outcome(self, at_eof: bool) -> StreamOutcome:
        raise RuntimeError("the stream has finished")


_SPENT: StreamDecoder = _SpentDecoder()


class UpstreamClient(Protocol):
    """Sends one request; the response goes to ``handler``; the returned
    producer pauses, resumes and aborts it."""

    def request(self, target: Target, body: bytes, handler: ResponseHandler) -> IPushProducer:
        """Start the exchange (failures, even immediate ones, reach the handler)."""
        ...


#: Idle upstream connections kept per host (see :mod:`~openclaw.agents.providers.pool`).
DEFAULT_MAX_PER_HOST = DEFAULT_MAX_IDLE_PER_HOST


def make_pool(reactor: Any, *, max_per_host: int = DEFAULT_MAX_PER_HOST) -> UpstreamPool:
    """The gateway's persistent upstream connections (``reactor``: time, TCP, DNS).

    Up to ``max_per_host`` idle connections per upstream are kept; idle
    ones are closed after 30 s, below the keep-alive of common servers.
    """
    return UpstreamPool(reactor, max_idle_per_host=max_per_host, idle_timeout=30.0)


@implementer(IPushProducer)
class HTTPModelStream:
    """One running upstream call: a :class:`~openclaw.agents.providers.base.ModelStream`.

    ``bytes_received`` counts body bytes delivered to the parser; tests and
    benchmarks use it to check that a paused stream stops reading.
    """

    def __init__(
        self,
        *,
        client: UpstreamClient,
        clock: IReactorTime,
        target: Target,
        body: bytes,
        decoder: StreamDecoder,
        timeout_seconds: float,
        provider_id: str,
        secrets: tuple[str, ...] = (),
        mender: SurrogateMender | None = None,
    ) -> None:
        self._client = client
        self._clock = clock
        self._target = target
        self._body = body
        self._decoder = decoder
        #: The decoder's sink, flushed when the stream completes (None after).
        self._mender = mender
        self._timeout = timeout_seconds
        self._provider_id = provider_id
        self._secrets = secrets
        self._done: Deferred[StreamOutcome] = Deferred(lambda _d: self.stopProducing())
        #: The running exchange, until the response ends.
        self._exchange: IPushProducer | None = None
        self._timer: IDelayedCall | None = None
        self._paused = False
        #: The outcome is decided (done fired or about to); later input is ignored.
        self._finished = False
        self._mode: _Mode = "sniff"
        self._status = 0
        self._response_headers: dict[str, str] = {}
        self._buffer = bytearray()
        self._parser = SSEParser()
        #: Parsed events not handed to the decoder yet (paused); None when empty:
        #: an empty deque still holds a 600-byte block, per open stream.
        self._pending: deque[SSEEvent] | None = None
        self._eof: BaseException | None = None
        self._ended = False
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
        if self._exchange is not None:
            self._cancel_timer()
            self._exchange.pauseProducing()

    def resumeProducing(self) -> None:
        """Deliver held-back events, then read from the upstream again."""
        if self._finished or not self._paused:
            return
        self._paused = False
        self._drain()
        if self._finished or self._paused:
            return
        if self._exchange is not None:
            self._arm_timer()
            self._exchange.resumeProducing()

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
        self._arm_timer()
        try:
            exchange = self._client.request(self._target, self._body, self)
        except Exception as exc:
            self.request_failed(exc)
            return
        self._body = b""
        if not self._ended and (not self._finished or self._outcome is not None):
            # A client may answer synchronously (in-memory agents): a pause
            # that came before the exchange was known is applied now.
            self._exchange = exchange
            if self._paused:
                self._cancel_timer()
                exchange.pauseProducing()
        elif not self._ended:
            exchange.stopProducing()  # failed or stopped while the request was being sent

    # -- ResponseHandler -----------------------------------------------------

    def request_failed(self, reason: BaseException) -> None:
        """No response: connect failed or the connection was lost before the head."""
        self._exchange = None
        self._ended = True
        if self._finished:
            return
        self._fail(connection_error(reason, self._secrets))

    def response_started(self, status: int, headers: dict[str, str]) -> None:
        """The status and headers decide how the body is read."""
        self._touch()
        self._status = status
        self._response_headers = headers
        if not 200 <= status < 300:
            self._mode = "error"
        else:
            content_type = headers.get("content-type", "").lower()
            if "event-stream" in content_type:
                self._mode = "sse"
            elif "json" in content_type:
                self._mode = "json"

    def body_data(self, data: bytes) -> None:
        """Body bytes: parsed (SSE) or collected (JSON, error body)."""
        if self._finished:
            return
        self.bytes_received += len(data)
        timer = self._timer
        if timer is not None:
            timer.reset(self._timeout)
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        mode = self._mode
        if mode == "sse":
            try:
                events = self._parser.feed(data)
            except SSEError as exc:
                self._fail(malformed_stream(str(exc)))
                return
            if events:
                self._queue(events)
                self._drain()
        elif mode == "sniff":
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
            self._feed(data)
        elif mode == "error":
            room = MAX_ERROR_BODY - len(self._buffer)
            self._buffer.extend(data[:room])
            if len(self._buffer) >= MAX_ERROR_BODY:
                self._fail(self._http_error())
        else:
            self._buffer.extend(data)
            if len(self._buffer) > MAX_JSON_BODY:
                self._fail(malformed_stream(f"JSON answer larger than {MAX_JSON_BODY} bytes"))

    def body_end(self, reason: BaseException | None) -> None:
        """The body ended: ``None`` when complete."""
        self._exchange = None
        self._ended = True
        if self._finished:
            self._cancel_timer()
            self._deliver_outcome()
            return
        if self._mode == "error":
            self._fail(self._http_error())
            return
        if reason is None and self._mode in ("json", "sniff"):
            self._one_shot()
            return
        if reason is None:
            try:
                self._queue(self._parser.close())
            except SSEError as exc:
                self._fail(malformed_stream(str(exc)))
                return
        self._eof = reason if reason is not None else _CLEAN
        self._drain()

    def _queue(self, events: list[SSEEvent]) -> None:
        if self._pending is None:
            self._pending = deque(events)
        else:
            self._pending.extend(events)

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
        if not pending:
            self._pending = None
        if pending or self._finished or self._eof is None:
            return
        if self._eof is _CLEAN:
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
            payload = loads(raw)
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
            mender, self._mender = self._mender, None
            if mender is not None:
                mender.flush()
            outcome = self._decoder.outcome(at_eof)
        except ProviderError as err:
            self._fail(err)
            return
        except Exception as exc:
            self._finish(exc)
            return
        self._finished = True
        self._decoder = _SPENT
        self._mender = None
        self._pending = None
        if self._ended:
            self._cancel_timer()
            self._done.callback(outcome)
            return
        # The terminal event came before the end of the body (the last chunk
        # is usually in the same read). Fire done at the end of the body: by
        # then the connection is back in the pool, so the next call reuses
        # it. A server that never ends the body is cut off (the idle timer,
        # now finished, is moved to the grace period: no new timer).
        self._outcome = outcome
        if self._paused:
            self._paused = False
            if self._exchange is not None:
                self._exchange.resumeProducing()
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
        self._decoder = _SPENT
        self._mender = None
        self._pending = None
        self._cancel_timer()
        self._close()
        self._done.errback(reason)

    def _close(self) -> None:
        self._cancel_timer()
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.stopProducing()

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


#: The body ended complete (``_eof`` marker).
_CLEAN = Exception("response body complete")


def plain(value: Any) -> Any:
    """Deep-copy mappings and tuples from frozen config into JSON-ready values."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


#: Built-in tool schemas are a few dozen objects; client tools arrive as new
#: objects with each request, so the memo is bounded (cleared when full).
_SCHEMA_COPIES_MAX = 128
_SCHEMA_COPIES: IdentityMemo[Any, Any] = IdentityMemo(_SCHEMA_COPIES_MAX)


def schema_copy(value: Any) -> Any:
    """``plain(value)``, made once per source object and then shared (read-only).

    A run's built-in tool schemas are the same frozen objects every turn (the
    toolbox builds them once per agent); copying them afresh was about a tenth
    of a non-streamed turn's CPU (issue 16).
    """
    return _SCHEMA_COPIES.get(value, plain)


_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


def json_body(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON for a request body.

    Text with a lone surrogate (which has no UTF-8 form) has it replaced by
    U+FFFD rather than failing the call: model output and stored transcripts
    are mended where they are decoded, but any other text that reaches a
    request (a tool's result) must not make every later turn of the session
    fail either."""
    try:
        return dumps(payload)
    except UnicodeEncodeError:
        return scrub_json_text(_ASCII_ENCODER.encode(payload)).encode("ascii")


class StreamingHTTPProvider:
    """What the HTTP providers share: a fixed URL and headers (validated and
    encoded once), one :class:`HTTPModelStream` per call. Subclasses say how
    a call becomes a request body and which decoder reads the answer.

    ``client`` is the gateway's connection pool; ``agent`` (any Twisted
    ``IAgent``) is accepted instead, for in-memory tests and embedders.
    """

    def __init__(
        self,
        config: ProviderConfig,
        *,
        client: UpstreamClient | None = None,
        agent: IAgent | None = None,
        clock: IReactorTime,
        url: str,
        api_headers: Mapping[str, str],
    ) -> None:
        if client is None:
            if agent is None:
                raise TypeError("a provider needs a client or an agent")
            from openclaw.agents.providers.agent_client import AgentClient

            client = AgentClient(agent)
        self._config = config
        self._client = client
        self._clock = clock
        # Header names are case-insensitive: a configured "Anthropic-Version" or
        # "X-Api-Key" replaces the default instead of being sent beside it.
        merged: dict[str, tuple[str, str]] = {}
        defaults = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        for source in (defaults, api_headers, config.headers):
            for name, value in source.items():
                merged[name.lower()] = (name, value)
        headers = dict(merged.values())
        self._secrets = config_secrets(config.api_key, config.headers)
        self._target: Target | None = None
        self._bad_target: ValueError | None = None
        try:
            self._target = make_target(url, headers)
        except ValueError as exc:
            self._bad_target = exc

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
        target = self._target
        mender = SurrogateMender(sink)
        stream = HTTPModelStream(
            client=self._client,
            clock=self._clock,
            target=target if target is not None else _NOWHERE,
            body=json_body(self.request_body(call)),
            decoder=self.decoder(mender, self._secrets),
            timeout_seconds=self._config.timeout_seconds,
            provider_id=self._config.id,
            secrets=self._secrets,
            mender=mender,
        )
        if self._bad_target is not None:
            stream.request_failed(self._bad_target)
        else:
            stream.start()
        return stream


#: Stands in for the target of a provider whose URL is invalid (never sent).
_NOWHERE = Target("http://invalid/", "http", "invalid", 80, (), b"")
