# -*- test-case-name: tests.test_fake_upstream -*-
"""Fake model upstreams: an OpenAI-compatible one and an Anthropic one.

Both are real :mod:`twisted.web` resources, so they work behind a
:class:`~twisted.web.server.Site` on a loopback port (real sockets, real
backpressure) and in memory (``treq.testing.RequestTraversalAgent``). Tests of
embedders and the benchmarks use them as well as this project's own tests::

    fake = FakeOpenAIUpstream(reactor, FakeReply(text="Hi there"))
    port = reactor.listenTCP(0, Site(fake), interface="127.0.0.1")
    base_url = f"http://127.0.0.1:{port.getHost().port}/v1"

Knobs live on :class:`FakeReply` (set ``fake.reply``, or ``fake.enqueue(...)``
replies for the next requests): the scripted text and tool calls, how many
chunks the text is split into, bytes per transport write, per-chunk and
first-token delays (through the injected clock), usage numbers, and failure
modes. Observation: :attr:`~FakeUpstream.requests` (parsed bodies and
headers), :attr:`~FakeUpstream.request_count`,
:attr:`~FakeUpstream.client_closed` (streams the client closed before the
end, seen through ``request.notifyFinish()``), :attr:`~FakeUpstream.bytes_written`
and :attr:`~FakeUpstream.pauses`, plus :meth:`~FakeUpstream.wait_for` to wait
on any of them without sleeping.

Streams are written by a push producer registered on the request, so a
client that stops reading really stops the fake (``pauses`` counts it).
With no delay, each reactor turn writes up to ``batch_bytes`` before
yielding; chunk frames are built from pre-encoded templates, so a chunk costs
little more than one ``request.write``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Literal

from attrs import Factory, field, frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

FailureMode = Literal[
    "reset_before_headers",
    "reset_mid_stream",
    "malformed",
    "stall",
    "endless",
    "error_frame",
    "json",
]

_WORDS = re.compile(r"\s*\S+\s*")

#: Delay before the next batch of a zero-delay stream. A real reactor treats
#: it as "next turn"; it is not 0 because ``task.Clock.advance(0)`` also runs
#: zero-delay calls scheduled while it advances, so an endless stream would
#: never return. Under a Clock, each ``advance(BATCH_YIELD)`` writes one batch.
BATCH_YIELD = 1e-6


def _frozen_map(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


@frozen
class FakeToolCall:
    """A tool call the fake model makes; ``arguments`` is JSON text."""

    name: str
    arguments: str = "{}"
    id: str | None = None


@frozen
class FakeUsage:
    """Usage the fake reports. ``output_tokens=None`` means one per chunk.

    For OpenAI, ``prompt_tokens = input_tokens + cache_read`` and
    ``cached_tokens = cache_read``; Anthropic gets the four numbers as they are.
    """

    input_tokens: int = 12
    output_tokens: int | None = None
    cache_read: int = 0
    cache_write: int = 0


@frozen
class FakeReply:
    """What the fake answers to one request.

    ``mode`` picks a failure: ``reset_before_headers`` (connection aborted
    before any byte), ``reset_mid_stream`` / ``malformed`` / ``stall`` /
    ``error_frame`` after ``fail_after_chunks`` text chunks, ``endless``
    (text chunks forever), ``json`` (one non-streamed JSON answer). A
    ``status`` other than 200 answers that status with an error body in the
    upstream's shape (or ``error_body`` verbatim) and ``response_headers``.
    """

    text: str = "Hello from the fake upstream."
    tool_calls: tuple[FakeToolCall, ...] = ()
    #: Split the text into this many chunks (None: one chunk per word).
    chunks: int | None = None
    #: Split every frame into transport writes of this many bytes.
    write_size: int | None = None
    chunk_delay: float = 0.0
    first_token_delay: float = 0.0
    usage: FakeUsage = Factory(FakeUsage)
    finish_reason: str | None = None
    status: int = 200
    error_message: str = "fake upstream error"
    error_type: str | None = None
    error_code: str | None = None
    error_body: bytes | None = None
    response_headers: Mapping[str, str] = field(default=None, converter=_frozen_map)
    mode: FailureMode | None = None
    fail_after_chunks: int = 1

    @classmethod
    def sized(cls, chunks: int, bytes_per_chunk: int, **kwargs: Any) -> FakeReply:
        """A reply of ``chunks`` text chunks of ``bytes_per_chunk`` ASCII bytes each."""
        unit = "abcdefghijklmnopqrstuvwxyz0123456789"
        piece = (unit * (bytes_per_chunk // len(unit) + 1))[:bytes_per_chunk]
        return cls(text=piece * chunks, chunks=chunks, **kwargs)

    @classmethod
    def failing(
        cls,
        status: int,
        message: str = "fake upstream error",
        *,
        type: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> FakeReply:
        """An HTTP error answer in the upstream's own error shape."""
        return cls(
            status=status,
            error_message=message,
            error_type=type,
            error_code=code,
            response_headers=headers,
        )

    @classmethod
    def rate_limited(
        cls, retry_after: str | None = "1", *, retry_after_ms: str | None = None
    ) -> FakeReply:
        """A 429 with ``retry-after`` (seconds or HTTP-date) and/or ``retry-after-ms``."""
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = retry_after
        if retry_after_ms is not None:
            headers["retry-after-ms"] = retry_after_ms
        return cls.failing(
            429,
            "Rate limit reached",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers=headers,
        )

    def pieces(self) -> list[str]:
        """The text chunks, in order."""
        if not self.text:
            return []
        if self.chunks is None:
            return _WORDS.findall(self.text)
        count = max(1, min(self.chunks, len(self.text)))
        size, extra = divmod(len(self.text), count)
        out = []
        start = 0
        for i in range(count):
            end = start + size + (1 if i < extra else 0)
            out.append(self.text[start:end])
            start = end
        return out

    def tool_call_id(self, index: int) -> str:
        """The id of tool call ``index`` (scripted or ``call_fake_<index>``)."""
        return self.tool_calls[index].id or f"call_fake_{index}"

    def output_tokens(self, chunk_count: int | None = None) -> int:
        """Reported output tokens: scripted, else chunks plus tool calls
        (pass ``chunk_count`` when the pieces are already known)."""
        if self.usage.output_tokens is not None:
            return self.usage.output_tokens
        if chunk_count is None:
            chunk_count = len(self.pieces())
        return chunk_count + len(self.tool_calls)


@frozen
class ReceivedRequest:
    """One request the fake received."""

    method: str
    path: str
    #: Lower-case header names, first value of each.
    headers: Mapping[str, str]
    #: The parsed JSON body, or None if it was not JSON.
    body: Any
    raw: bytes


def request_tokens(body: Any) -> int:
    """Tokens a request body counts for the fake's ``max_request_tokens``,
    roughly as a real tokenizer counts them: four ASCII characters of its
    JSON (non-ASCII unescaped) a token, and one token per other character."""
    text = json.dumps(body, ensure_ascii=False)
    ascii_chars = len(text.encode("ascii", "ignore"))
    return ascii_chars // 4 + (len(text) - ascii_chars)


class _Action:
    """A sentinel in a frame stream: something other than writing bytes."""

    def __init__(self, name: str) -> None:
        self.name = name


_RESET = _Action("reset")
_STALL = _Action("stall")
_END = _Action("end")

Frame = bytes | _Action


def _abort(request: Request) -> None:
    channel = request.channel
    transport = getattr(channel, "transport", None)
    if transport is not None:
        transport.abortConnection()


@implementer(IPushProducer)
class _StreamWriter:
    """Writes one streamed answer, honouring the client's backpressure."""

    def __init__(
        self,
        upstream: FakeUpstream,
        request: Request,
        frames: Iterator[Frame],
        reply: FakeReply,
    ) -> None:
        self._upstream = upstream
        self._request = request
        self._frames = frames
        self._delay = reply.chunk_delay
        self._write_size = reply.write_size
        self._call: IDelayedCall | None = None
        self.paused = False
        self.stopped = False
        self.done = False
        self.stalled = False
        self.server_closed = False

    def start(self, delay: float) -> None:
        self._call = self._upstream.clock.callLater(delay, self._tick)

    def _schedule(self, delay: float) -> None:
        if self._call is None and not (self.stopped or self.done or self.stalled):
            self._call = self._upstream.clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._call = None
        if self.stopped or self.paused or self.done:
            return
        budget = self._upstream.batch_bytes
        frames = self._frames
        while True:
            item = next(frames, _END)
            if item is _END:
                self._finish()
                return
            if item is _RESET:
                self.server_closed = True
                self.stopped = True
                _abort(self._request)
                return
            if item is _STALL:
                self.stalled = True
                return
            assert isinstance(item, bytes)
            self._write(item)
            if self._blocked():
                return  # resumeProducing schedules the next write
            if self._delay > 0:
                self._schedule(self._delay)
                return
            budget -= len(item)
            if budget <= 0:
                self._schedule(self._upstream.batch_yield)
                return

    def _blocked(self) -> bool:
        """Paused or stopped (possibly by the write just made)."""
        return self.paused or self.stopped

    def _write(self, data: bytes) -> None:
        self._upstream.bytes_written += len(data)
        size = self._write_size
        if size is None or size >= len(data):
            self._request.write(data)
            return
        for offset in range(0, len(data), size):
            self._request.write(data[offset : offset + size])

    def _finish(self) -> None:
        self.done = True
        self._request.unregisterProducer()
        self._request.finish()

    def pauseProducing(self) -> None:
        if self.paused:
            return
        self.paused = True
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        self._upstream.pauses += 1
        self._upstream._changed()

    def resumeProducing(self) -> None:
        if not self.paused:
            return
        self.paused = False
        self._schedule(self._delay)

    def stopProducing(self) -> None:
        self.stopped = True
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def close(self) -> None:
        """Abort the connection from the server side (test cleanup)."""
        if not (self.done or self.server_closed):
            self.server_closed = True
            self.stopProducing()
            _abort(self._request)


class FakeUpstream(Resource):
    """Shared machinery of the fakes; use a concrete subclass."""

    isLeaf = True

    def __init__(
        self,
        clock: IReactorTime,
        reply: FakeReply | None = None,
        *,
        api_key: str | None = None,
        batch_bytes: int = 64 * 1024,
        batch_yield: float = BATCH_YIELD,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted
        self.clock = clock
        #: The reply used when the queue is empty.
        self.reply = reply or FakeReply()
        #: When set (and the queue is empty), picks the reply from the request:
        #: a scripted multi-step conversation (:mod:`openclaw.testing.conversations`).
        self.responder: Callable[[ReceivedRequest], FakeReply] | None = None
        #: When set, requests without this key get a 401.
        self.api_key = api_key
        #: What ``GET .../models`` lists (``openclaw doctor`` asks).
        self.model_ids: tuple[str, ...] = ("fake-model",)
        #: When set, a request body over this many bytes is refused as a real
        #: model refuses a prompt over its context window: a 400 whose code
        #: is ``context_length_exceeded`` (the queued replies are kept).
        self.max_request_bytes: int | None = None
        #: The same with a token count (:func:`request_tokens`): a CJK
        #: character costs about a token, four ASCII characters one.
        self.max_request_tokens: int | None = None

        #: With no delay, write at most this much per reactor turn.
        self.batch_bytes = batch_bytes
        #: Pause between batches (see :data:`BATCH_YIELD`).
        self.batch_yield = batch_yield
        self.requests: list[ReceivedRequest] = []
        #: Streams the client closed before the fake finished them.
        self.client_closed = 0
        #: Responses that finished normally.
        self.finished = 0
        #: Payload bytes written to streamed responses.
        self.bytes_written = 0
        #: Times a stream was paused by the client's backpressure.
        self.pauses = 0
        self._queue: deque[FakeReply] = deque()
        self._waiters: list[tuple[Callable[[FakeUpstream], bool], Deferred[None]]] = []
        self._writers: set[_StreamWriter] = set()
        self._serial = itertools.count(1)

    # -- knobs and observation -----------------------------------------------

    def enqueue(self, *replies: FakeReply) -> None:
        """Use these replies, in order, for the next requests."""
        self._queue.extend(replies)

    @property
    def request_count(self) -> int:
        """How many requests arrived (any path)."""
        return len(self.requests)

    @property
    def active_streams(self) -> int:
        """Streams still open."""
        return len(self._writers)

    @property
    def paused_streams(self) -> int:
        """Open streams currently paused by the client's backpressure."""
        return sum(1 for writer in self._writers if writer.paused)

    def wait_for(self, predicate: Callable[[FakeUpstream], bool]) -> Deferred[None]:
        """A Deferred that fires once ``predicate(self)`` holds (checked on every
        request, pause, client close and finish)."""
        d: Deferred[None] = Deferred()
        if predicate(self):
            d.callback(None)
        else:
            self._waiters.append((predicate, d))
        return d

    def wait_for_requests(self, count: int = 1) -> Deferred[None]:
        """Fires when ``count`` requests have arrived."""
        return self.wait_for(lambda f: f.request_count >= count)

    def wait_for_client_closes(self, count: int = 1) -> Deferred[None]:
        """Fires when the client has closed ``count`` streams early."""
        return self.wait_for(lambda f: f.client_closed >= count)

    def wait_for_pause(self, count: int = 1) -> Deferred[None]:
        """Fires when backpressure has paused the fake ``count`` times."""
        return self.wait_for(lambda f: f.pauses >= count)

    def close_all(self) -> None:
        """Abort every open stream from the server side (for test cleanup)."""
        for writer in list(self._writers):
            writer.close()

    def _changed(self) -> None:
        ready = [(p, d) for p, d in self._waiters if p(self)]
        if not ready:
            return
        self._waiters = [(p, d) for p, d in self._waiters if not p(self)]
        for _p, d in ready:
            d.callback(None)

    # -- request handling ----------------------------------------------------

    def render_GET(self, request: Request) -> bytes:
        """``GET .../models``: the model list (401 without the key), as both
        OpenAI and Anthropic shape it (``data[].id``); 404 elsewhere."""
        path = (request.path or b"").decode("latin-1")
        request.setHeader(b"content-type", b"application/json")
        if not path.endswith("/models"):
            request.setResponseCode(404)
            return self._error_json(404, "not found", None, None)
        headers = {k.decode("latin-1").lower(): v[0].decode("latin-1")
                   for k, v in request.requestHeaders.getAllRawHeaders()}  # fmt: skip
        if self.api_key is not None and not self._authorized(headers):
            request.setResponseCode(401)
            return self._error_json(
                401, "invalid api key", "authentication_error", "invalid_api_key"
            )
        data = [{"id": m, "object": "model", "type": "model"} for m in self.model_ids]
        return _dumps({"object": "list", "data": data})

    def render_POST(self, request: Request) -> bytes | int:
        """Record the request, then answer as the current reply says."""
        assert request.content is not None
        raw = request.content.read()
        headers = {
            name.decode("latin-1").lower(): values[0].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()
            if values
        }
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        path = (request.path or b"").decode("latin-1")
        self.requests.append(
            ReceivedRequest(
                method=(request.method or b"").decode("latin-1"),
                path=path,
                headers=MappingProxyType(headers),
                body=body,
                raw=raw,
            )
        )
        self._changed()
        if not self._path_ok(path):
            return self._answer(request, 404, self._error_json(404, "not found", None, None))
        if self.api_key is not None and not self._authorized(headers):
            return self._answer(
                request,
                401,
                self._error_json(401, "invalid api key", "authentication_error", "invalid_api_key"),
            )
        limit = self.max_request_bytes
        tokens = self.max_request_tokens
        message = None
        if limit is not None and len(raw) > limit:
            message = (
                f"This model's maximum context length is exceeded: the request has "
                f"{len(raw)} bytes, at most {limit} fit. Please reduce the length of the messages."
            )
        elif tokens is not None and (counted := request_tokens(body)) > tokens:
            # OpenAI's wording, which says how large the request was.
            message = (
                f"This model's maximum context length is {tokens} tokens. However, your "
                f"messages resulted in {counted} tokens. Please reduce the length of the messages."
            )
        if message is not None:
            return self._answer(
                request,
                400,
                self._error_json(400, message, "invalid_request_error", "context_length_exceeded"),
            )
        if self._queue:
            reply = self._queue.popleft()
        elif self.responder is not None:
            reply = self.responder(self.requests[-1])
        else:
            reply = self.reply
        serial = next(self._serial)
        if reply.mode == "reset_before_headers":
            _abort(request)
            return NOT_DONE_YET
        if reply.status != 200:
            error = reply.error_body
            if error is None:
                error = self._error_json(
                    reply.status, reply.error_message, reply.error_type, reply.error_code
                )
            return self._answer(request, reply.status, error, reply.response_headers)
        body_map = body if isinstance(body, dict) else {}
        if reply.mode == "json" or body_map.get("stream") is not True:
            return self._answer(request, 200, self._one_shot(reply, body_map, serial))
        writer = _StreamWriter(self, request, self._stream(reply, body_map, serial), reply)
        self._writers.add(writer)
        request.notifyFinish().addBoth(self._stream_ended, writer)
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-cache")
        for name, value in reply.response_headers.items():
            request.setHeader(name, value)
        request.registerProducer(writer, True)
        request.write(b"")
        writer.start(reply.first_token_delay)
        return NOT_DONE_YET

    def _answer(
        self,
        request: Request,
        status: int,
        body: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        for name, value in (headers or {}).items():
            request.setHeader(name, value)
        self.finished += 1
        return body

    def _stream_ended(self, result: Failure | None, writer: _StreamWriter) -> None:
        self._writers.discard(writer)
        writer.stopProducing()
        if isinstance(result, Failure):
            if not (writer.server_closed or writer.done):
                self.client_closed += 1
        else:
            self.finished += 1
        self._changed()

    # -- API specifics ---------------------------------------------------------

    def _path_ok(self, path: str) -> bool:
        raise NotImplementedError

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        raise NotImplementedError

    def _error_json(
        self, status: int, message: str, err_type: str | None, code: str | None
    ) -> bytes:
        raise NotImplementedError

    def _one_shot(self, reply: FakeReply, body: Mapping[str, Any], serial: int) -> bytes:
        raise NotImplementedError

    def _stream(self, reply: FakeReply, body: Mapping[str, Any], serial: int) -> Iterator[Frame]:
        raise NotImplementedError


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _halves(text: str) -> list[str]:
    if len(text) < 2:
        return [text] if text else []
    middle = len(text) // 2
    return [text[:middle], text[middle:]]
