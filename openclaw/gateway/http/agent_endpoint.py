"""What the OpenAI-compatible run endpoints share, whatever their wire format.

``/v1/chat/completions`` and ``/v1/responses`` are one adapter over
:class:`~openclaw.agents.types.AgentRuntime` with two vocabularies. This module
is the adapter: :class:`AgentEndpoint` (the run's part of the access line, URL images fetched
before the run, starting the run and mapping why it could not start, the SSE
stream), :class:`JsonAnswer` (a settled run as one body) and
:class:`StreamAnswer` (run events as SSE frames, with the checks every stream
makes: a forced ``tool_choice`` holds prose back, the final text must extend
what was streamed, a failure after the headers is a frame). An endpoint
module supplies only its request parsing and its frames.

A client that leaves cancels the run through one path: the route dispatcher
(``direct.py``, as Klein would) cancels the Deferred the endpoint returned (a
stream's producer also learns it from ``stopProducing`` and reports it once);
after that nothing is written.

Logging: the site writes one access line per request
(:mod:`openclaw.gateway.observability`); an endpoint leaves the run id, the
agent and why a run failed on the request for it (:class:`.run_support.RunNote`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Required, TypedDict

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from openclaw.agents.types import (
    AgentEvent,
    AgentRequest,
    AgentResult,
    AgentRun,
    AgentRuntime,
    AssistantEvent,
    ClientToolConflictError,
    ImageInput,
    LifecycleEvent,
    RunQueueFullError,
    UnknownAgentError,
    UnknownModelError,
)
from openclaw.config.model import ImagesConfig
from openclaw.core.unavailable import SharedStateUnavailableError, TurnNotSavedError
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.http.chat_request import (
    PreparedChat,
    unknown_agent_error,
)
from openclaw.gateway.http.client_tools import (
    PinnedTool,
    ToolChoice,
)
from openclaw.gateway.http.completions_format import (
    APPEND_ONLY_ERROR,
    EMPTY_REPLY_TEXT,
    INTERNAL_ERROR,
    STATE_UNAVAILABLE_ERROR,
    MappedError,
)
from openclaw.gateway.http.errors import (
    ChatRequestError,
    write_json,
    write_openai_error,
)
from openclaw.gateway.http.image_fetch import ImageFetcher, ImageFetchError
from openclaw.gateway.http.model_header import model_error
from openclaw.gateway.http.run_support import (
    RunNote,
    decoded_size,
    gather_images,
    map_failure,
    tool_choice_failure,
    write_error,
)
from openclaw.gateway.http.sse import DEFAULT_MAX_BUFFERED_BYTES, SSEStream

log = Logger()

Answer = bytes | Deferred[bytes]


@contextmanager
def runtime_refusals(agent_id: str) -> Iterator[None]:
    """The runtime's refusals of a request as OpenClaw's 400s: an agent that is
    not configured, a model (``x-openclaw-model``) it does not offer."""
    try:
        yield
    except UnknownAgentError:
        raise unknown_agent_error(agent_id) from None
    except UnknownModelError as e:
        raise model_error(e) from None


class EndpointParts(TypedDict, total=False):
    """What every run endpoint is built from (keyword arguments)."""

    runtime: Required[AgentRuntime]
    auth: Required[GatewayAuth]
    clock: Required[IReactorTime]
    image_fetcher: ImageFetcher | None
    max_buffered_bytes: int


class AgentEndpoint:
    """The shared life of a run request; subclasses parse and pick the format."""

    def __init__(
        self,
        *,
        runtime: AgentRuntime,
        auth: GatewayAuth,
        clock: IReactorTime,
        keep_alive_seconds: float,
        image_fetcher: ImageFetcher | None = None,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
    ) -> None:
        self._runtime = runtime
        self._auth = auth
        self._clock = clock
        self._keep_alive = keep_alive_seconds
        self._image_fetcher = image_fetcher
        self._max_buffered_bytes = max_buffered_bytes

    def handle(self, request: Request) -> Answer:
        """Answer one request, or raise :class:`ChatRequestError` (the app writes it)."""
        return self._answer(request, RunNote(request))

    def _answer(self, request: Request, access: RunNote) -> Answer:
        """Authenticate, parse and run (the endpoint's own part)."""
        raise NotImplementedError

    def _with_images(
        self,
        request: Request,
        turn: PreparedChat,
        config: ImagesConfig,
        invalid: Callable[[], ChatRequestError],
        then: Callable[[Sequence[ImageInput]], Answer],
    ) -> Answer:
        """Fetch the turn's URL images (if any), then ``then(images)``.

        One Deferred from the fetches to the answer: a client that leaves
        cancels it (the route dispatcher does), which cancels the fetches or,
        once the run started, the answer chained into it. A refused image is
        ``invalid()``.
        """
        urls, budget = turn.image_urls, turn.image_budget
        if not urls:
            return then(())
        fetcher = self._image_fetcher
        if fetcher is None:
            log.warn("image URL refused: no image fetcher is configured")
            raise invalid()
        fetching = gather_images([fetcher.fetch(url, config) for url in urls])

        def fetched(found: list[ImageInput]) -> Answer:
            # The inline images were charged while decoding; these use what is left.
            size = sum(decoded_size(image) for image in found)
            if size > budget:
                log.info("images refused: {size} fetched bytes over the budget", size=size)
                raise invalid()
            return then(found)

        def failed(failure: Failure) -> bytes | Failure:
            if isinstance(failure.value, CancelledError):
                return failure
            if isinstance(failure.value, ImageFetchError):
                log.info("image URL refused: {why}", why=str(failure.value))
                raise invalid()
            log.failure("image fetch failed", failure)
            return write_error(request, INTERNAL_ERROR, run_started=False)

        return fetching.addCallbacks(fetched, failed)

    def _start(self, request: Request, agent_request: AgentRequest) -> AgentRun | bytes:
        """Start the run, or the answer to why it cannot start (raised as a 400
        when the request is at fault)."""
        run_id = agent_request.run_id
        try:
            with runtime_refusals(agent_request.agent_id):
                run = self._runtime.start(agent_request)
        except ChatRequestError:
            raise
        except ClientToolConflictError as e:
            # OpenClaw's answer; the clashing names are only logged.
            log.info("run {run_id} refused: {error}", run_id=run_id, error=str(e))
            raise ChatRequestError("invalid tool configuration", param="tools") from None
        except SharedStateUnavailableError:
            return write_error(request, STATE_UNAVAILABLE_ERROR, run_started=False)
        except RunQueueFullError as full:
            # agents.defaults.maxConcurrent runs and a full queue: try again later.
            log.warn("run {run_id} refused: {reason}", run_id=run_id, reason=str(full))
            request.setHeader(b"retry-after", full.retry_after_header.encode("ascii"))
            return write_openai_error(
                request,
                429,
                "Too many agent runs in progress",
                "rate_limit_error",
                code="too_many_runs",
            )
        except Exception:
            log.failure("could not start run {run_id}", run_id=run_id)
            return write_error(request, INTERNAL_ERROR, run_started=False)
        # What the site's access line reports for this request (observability).
        request.openclaw_run_id = run_id  # type: ignore[attr-defined]
        request.openclaw_agent_id = run.agent_id  # type: ignore[attr-defined]
        return run

    def _stream(self, request: Request, run: AgentRun, answer: StreamAnswer) -> Deferred[bytes]:
        """Answer with an SSE stream: a slow client pauses the run, a lost one cancels it."""
        stream = SSEStream(
            request,
            clock=self._clock,
            keep_alive_seconds=self._keep_alive,
            on_pause=run.pauseProducing,
            on_resume=run.resumeProducing,
            on_lost=answer.connection_lost,
            max_buffered_bytes=self._max_buffered_bytes,
        )
        return answer.start(stream)


class JsonAnswer:
    """A non-streaming answer: the settled run as one body (``render``).

    The Deferred it returns is the only disconnect path: the route dispatcher
    cancels it when the client leaves, and cancelling it cancels the run.
    """

    def __init__(
        self,
        request: Request,
        run: AgentRun,
        tool_choice: ToolChoice,
        access: RunNote,
        render: Callable[[AgentResult], object],
    ) -> None:
        self._request = request
        self._run = run
        self._tool_choice = tool_choice
        self._access = access
        self._render = render
        self._result: Deferred[AgentResult] | None = None
        #: Answered or abandoned: later outcomes of the run are ignored.
        self._over = False
        self._out: Deferred[bytes] = Deferred(self._cancelled)
        #: The run got its session and began its turn (its lifecycle ``start``):
        #: from then on it may have written or called the model.
        self._began = False
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> Deferred[bytes]:
        self._unsubscribe = self._run.subscribe(self._on_event)
        result = self._result = self._run.result
        result.addCallbacks(self._succeeded, self._failed)
        result.addErrback(self._bug)
        return self._out

    def _succeeded(self, result: AgentResult) -> None:
        if self._over:
            return
        unmet = tool_choice_failure(self._tool_choice, result)
        if unmet is not None:
            self._deliver(write_error(self._request, unmet, run_started=True), unmet.message)
            return
        self._deliver(write_json(self._request, 200, self._render(result)))

    def _on_event(self, event: AgentEvent) -> None:
        if isinstance(event, LifecycleEvent) and event.phase == "start":
            self._began = True
            self._stop_listening()

    def _ran(self, error: BaseException | None) -> bool:
        """Whether a retry could run the turn again (``x-should-retry: false``).

        The shared store refusing the run before it began (Redis refusing its
        lane: nothing written, no model called) may be retried, as its
        ``Retry-After`` invites; a turn that began, or one not saved after the
        model answered (``turn_not_saved``), must not be."""
        if self._began or isinstance(error, TurnNotSavedError):
            return True
        return not isinstance(error, SharedStateUnavailableError)

    def _failed(self, failure: Failure) -> None:
        if self._over:
            return
        error, why = map_failure(failure, self._run.run_id)
        run_started = self._ran(failure.value)
        self._deliver(write_error(self._request, error, run_started=run_started), why)

    def _bug(self, failure: Failure) -> None:
        log.failure("bug answering run {run_id}", failure, run_id=self._run.run_id)
        if not self._over:
            self._deliver(write_error(self._request, INTERNAL_ERROR, run_started=True), "bug")

    def _deliver(self, data: bytes, why: str = "") -> None:
        self._over = True
        self._stop_listening()
        self._access.done(why)
        self._out.callback(data)

    def _stop_listening(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def _cancelled(self, _: Deferred[bytes]) -> None:
        self._over = True
        self._stop_listening()
        self._run.cancel()
        if self._result is not None:
            self._result.cancel()


class StreamAnswer:
    """A streaming answer: run events become frames of the endpoint's format.

    Subclasses give the frames (:meth:`opening`, :meth:`text`, :meth:`closing`,
    :meth:`failure`). Each assistant event's ``delta`` is sent as it is; the
    deltas sent are joined once, at the end, to check the final text extends
    them.
    """

    def __init__(self, run: AgentRun, tool_choice: ToolChoice, access: RunNote) -> None:
        self._run = run
        self._tool_choice = tool_choice
        self._access = access
        # With a forced tool_choice, prose is held back until the run shows
        # the constraint was met (an unmet constraint must not leak prose).
        self._hold_prose = tool_choice == "required" or isinstance(tool_choice, PinnedTool)
        self._sent: list[str] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._result: Deferred[AgentResult] | None = None
        self._stream: SSEStream | None = None

    # -- the format's frames --------------------------------------------------

    def opening(self) -> list[bytes]:
        """What is sent at once, with the headers (at least one frame)."""
        raise NotImplementedError

    def text(self, delta: str) -> list[bytes]:
        """The frames of a piece of reply text."""
        raise NotImplementedError

    def closing(self, result: AgentResult, text: str) -> list[bytes]:
        """The frames after all the text (``text``: the whole reply, or the
        empty-reply placeholder), before ``[DONE]``."""
        raise NotImplementedError

    def failure(self, error: MappedError) -> bytes:
        """The frame that reports a failure after the headers."""
        raise NotImplementedError

    # -- the run ----------------------------------------------------------------

    def start(self, stream: SSEStream) -> Deferred[bytes]:
        self._stream = stream
        first, *rest = self.opening()
        stream.open(first)
        for frame in rest:
            stream.send(frame)
        if stream.writable:
            if not self._hold_prose:
                self._unsubscribe = self._run.subscribe(self._on_event)
            result = self._result = self._run.result
            result.addCallbacks(self._succeeded, self._failed)
            result.addErrback(self._bug)
        return stream.done

    def _send_text(self, stream: SSEStream, delta: str) -> None:
        self._sent.append(delta)
        for frame in self.text(delta):
            stream.send(frame)

    def _on_event(self, event: AgentEvent) -> None:
        stream = self._stream
        if not isinstance(event, AssistantEvent) or stream is None or not stream.writable:
            return
        if event.delta:
            self._send_text(stream, event.delta)

    def _succeeded(self, result: AgentResult) -> None:
        stream = self._stream
        if stream is None or not stream.writable:
            return
        self._stop_listening()
        unmet = tool_choice_failure(self._tool_choice, result)
        if unmet is not None:
            self._fail_stream(stream, unmet)
            return
        text = result.text
        sent = "".join(self._sent)
        if not text.startswith(sent):
            self._fail_stream(stream, APPEND_ONLY_ERROR)
            return
        if not text and not result.pending_tool_calls:
            text = EMPTY_REPLY_TEXT
        if text[len(sent) :]:
            self._send_text(stream, text[len(sent) :])
        for frame in self.closing(result, text):
            stream.send(frame)
        stream.close()

    def _failed(self, failure: Failure) -> None:
        stream = self._stream
        if stream is None or not stream.writable:
            return
        self._stop_listening()
        error, why = map_failure(failure, self._run.run_id)
        self._fail_stream(stream, error, why)

    def _bug(self, failure: Failure) -> None:
        log.failure("bug streaming run {run_id}", failure, run_id=self._run.run_id)
        if self._stream is not None and self._stream.writable:
            self._fail_stream(self._stream, INTERNAL_ERROR, "bug")

    def _fail_stream(self, stream: SSEStream, error: MappedError, why: str = "") -> None:
        # Noted first: closing the stream finishes the request (and writes its line).
        self._access.done(f"{error.status} in the stream: {why or error.message}")
        try:
            stream.send(self.failure(error))
        except Exception:
            # Without its failure frame the stream must still end: a client
            # left open would see keep-alive pings for ever.
            log.failure("bug framing the failure of run {run_id}", run_id=self._run.run_id)
        finally:
            stream.close()

    def _stop_listening(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def connection_lost(self) -> None:
        """The stream lost its client (however Twisted said so): cancel the run."""
        self._stop_listening()
        self._run.cancel()  # first: the upstream connection is closed right away
        if self._result is not None:
            self._result.cancel()
