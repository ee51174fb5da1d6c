"""``POST /v1/chat/completions``: an OpenAI-compatible front for OpenClaw agents.

The endpoint is a thin adapter over :class:`~openclaw.agents.types.AgentRuntime`:
check the caller, validate the body (:mod:`.chat_request`),
start one agent run, and answer either with one ``chat.completion`` JSON body
or with an SSE stream of ``chat.completion.chunk`` events (:mod:`.sse`).

A client that leaves cancels the run at once through one path: Klein cancels
the Deferred the endpoint returned (a stream's producer also learns it from
``stopProducing``, and reports it once); after that nothing is written. Once SSE headers are
out, failures become a ``data: {"error": ...}`` frame then ``[DONE]``, never
an errback (which would append an HTML page to the stream).

Logging: one access line per request at ``info`` (method, path, status,
milliseconds, run id, and why a run failed), written when the answer is
complete or the client left. Nothing else is logged on the success path:
twistd formats every event it is given, debug included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from attrs import evolve
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from openclaw.agents.types import (
    AgentEvent,
    AgentLoopError,
    AgentResult,
    AgentRun,
    AgentRuntime,
    AssistantEvent,
    ClientToolConflictError,
    ImageInput,
    ProviderError,
    RunAbortedError,
    RunTimeoutError,
    UnknownAgentError,
    UnknownModelError,
)
from openclaw.config.model import Config
from openclaw.core.ids import random_uuid4
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.http.auth_errors import auth_failure_response
from openclaw.gateway.http.chat_request import (
    ChatRequestError,
    PinnedTool,
    PreparedChat,
    ToolChoice,
    prepare_chat,
    unknown_agent_error,
)
from openclaw.gateway.http.completions_format import (
    APPEND_ONLY_ERROR,
    EMPTY_REPLY_TEXT,
    INTERNAL_ERROR,
    RUN_ABORTED_ERROR,
    RUN_TIMEOUT_ERROR,
    ChunkEncoder,
    ChunkFactory,
    MappedError,
    completion_json,
    finish_reason_for,
    map_provider_error,
)
from openclaw.gateway.http.errors import write_json
from openclaw.gateway.http.image_fetch import ImageFetcher, ImageFetchError
from openclaw.gateway.http.model_header import model_error, model_override
from openclaw.gateway.http.sse import DEFAULT_MAX_BUFFERED_BYTES, SSEStream, data_frame

log = Logger()


def request_headers(request: Request) -> dict[str, str]:
    """Lower-case header names to their last value (UTF-8, else Latin-1)."""
    headers: dict[str, str] = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        if not values:
            continue
        raw = values[-1]
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            value = raw.decode("latin-1")
        headers[name.decode("latin-1").lower()] = value
    return headers


def read_body(request: Request) -> bytes:
    """The whole request body (the gateway's Request already enforced its limits)."""
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    data = content.read()
    return data if isinstance(data, bytes) else bytes(data)


def write_error(request: Request, error: MappedError, *, run_started: bool) -> bytes:
    """An OpenAI error response; ``x-should-retry: false`` once the agent has run.

    OpenAI SDKs retry 408/409/429/5xx twice by default, which would run the
    agent (and its side effects) again; the header tells them not to.
    """
    if error.retry_after_seconds is not None:
        request.setHeader(b"retry-after", str(error.retry_after_seconds).encode("ascii"))
    if run_started:
        request.setHeader(b"x-should-retry", b"false")
    return write_json(request, error.status, error.body())


def map_failure(failure: Failure, run_id: str) -> tuple[MappedError, str]:
    """The OpenAI error for a failed run, and why (for the access line).

    Unexpected failures are logged here with their traceback.
    """
    error = failure.value
    if isinstance(error, ProviderError):
        return map_provider_error(error), f"upstream {error.kind.value} {error.status}"
    if isinstance(error, RunTimeoutError):
        return RUN_TIMEOUT_ERROR, "run timed out"
    if isinstance(error, RunAbortedError):
        return RUN_ABORTED_ERROR, "run aborted"
    if isinstance(error, AgentLoopError):
        return MappedError(500, str(error), "api_error", "agent_loop_stopped"), "agent loop stopped"
    log.failure("run {run_id} failed", failure, run_id=run_id)
    return INTERNAL_ERROR, "run failed"


class AccessLog:
    """Writes the one ``info`` line of a request once its outcome is known."""

    __slots__ = ("_clock", "_request", "_started", "_written", "run_id")

    def __init__(self, clock: IReactorTime, request: Request, started: float) -> None:
        self._clock = clock
        self._request = request
        self._started = started
        self.run_id = "-"
        self._written = False

    def done(self, detail: str = "", *, status: int | None = None) -> None:
        """Log the answer's status (or ``detail``, such as why the run failed).

        :param status: when the answer is not written yet (a raised refusal).
        """
        if self._written:
            return
        self._written = True
        request = self._request
        method = (getattr(request, "method", None) or b"-").decode("latin-1")
        path = (getattr(request, "path", None) or b"-").decode("latin-1")
        if status is None:
            status = getattr(request, "code", None)
        ms = round((self._clock.seconds() - self._started) * 1000.0, 1)
        line = f"{method} {path} {status} {ms}ms run={self.run_id}"
        # One pre-built field: every observer formats the event again, and a
        # format string with one field is what costs least to format.
        log.info(
            "{access}",
            access=f"{line} ({detail})" if detail else line,
            method=method,
            path=path,
            status=status,
            ms=ms,
            run_id=self.run_id,
            detail=detail,
            request_id=bytes(getattr(request, "request_id", b"")).decode("ascii", "replace"),
        )

    def left(self) -> None:
        """The client went away before the answer was complete."""
        self.done("client left; run cancelled")

    def settled(self, outcome: object) -> object:
        """Log the end of an answer given as a Deferred (its callback and errback)."""
        if isinstance(outcome, Failure):
            if isinstance(outcome.value, CancelledError):
                self.left()
            elif isinstance(outcome.value, ChatRequestError):
                self.done(status=outcome.value.status)
        else:
            self.done()
        return outcome


def tool_choice_failure(choice: ToolChoice, result: AgentResult) -> MappedError | None:
    """A 502 when a forced ``tool_choice`` was not honoured by the agent."""
    if choice == "required" and not result.pending_tool_calls:
        return MappedError(
            502, "tool_choice=required was not satisfied by the agent response", "api_error"
        )
    if isinstance(choice, PinnedTool) and not any(
        call.name == choice.name for call in result.pending_tool_calls
    ):
        return MappedError(
            502,
            f"tool_choice required a {choice.name} tool call, but the agent did not produce one",
            "api_error",
        )
    return None


class ChatCompletionsEndpoint:
    """Answers ``POST /v1/chat/completions`` (the app's routing refuses other methods)."""

    def __init__(
        self,
        *,
        config: Config,
        runtime: AgentRuntime,
        auth: GatewayAuth,
        clock: IReactorTime,
        image_fetcher: ImageFetcher | None = None,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
    ) -> None:
        self._config = config
        self._settings = config.gateway.http.chat_completions
        self._runtime = runtime
        self._auth = auth
        self._clock = clock
        self._image_fetcher = image_fetcher
        self._max_buffered_bytes = max_buffered_bytes

    def handle(self, request: Request) -> bytes | Deferred[bytes]:
        """Answer one request: 401/429, run the agent, or raise
        :class:`ChatRequestError` (the app writes it as a 400)."""
        access = AccessLog(self._clock, request, self._clock.seconds())
        try:
            answer = self._handle(request, access)
        except ChatRequestError as error:
            access.done(status=error.status)
            raise
        if isinstance(answer, bytes):
            access.done()
            return answer
        return answer.addBoth(access.settled)

    def _handle(self, request: Request, access: AccessLog) -> bytes | Deferred[bytes]:
        decision = self._auth.check_request(request)
        if not decision.ok:
            return auth_failure_response(request, decision)
        headers = request_headers(request)
        prepared = prepare_chat(
            read_body(request),
            headers,
            agent_ids=self._runtime.agent_ids,
            default_agent_id=self._runtime.default_agent_id,
            images=self._settings.images,
        )
        override = model_override(headers)
        if override is not None:
            prepared = evolve(prepared, model_override=override)
        completion_id = access.run_id = f"chatcmpl_{random_uuid4()}"
        if prepared.image_urls:
            return self._fetch_images_then_run(request, prepared, completion_id, access)
        return self._run(request, prepared, completion_id, (), access)

    def _fetch_images_then_run(
        self, request: Request, prepared: PreparedChat, completion_id: str, access: AccessLog
    ) -> Deferred[bytes]:
        """Fetch remote images (``images.allowUrl``), then start the run.

        One Deferred from the fetches to the answer: a client that leaves
        cancels it (Klein does), which cancels the fetches or, once the run
        started, the response chained into it.
        """
        fetcher = self._image_fetcher
        if fetcher is None:
            log.warn("image URL refused: no image fetcher is configured")
            raise _invalid_image()
        images = self._settings.images
        fetching = gather_images([fetcher.fetch(u, images) for u in prepared.image_urls])

        def fetched(found: list[ImageInput]) -> bytes | Deferred[bytes]:
            # The inline images were charged while decoding; these use what is left.
            size = sum(decoded_size(image) for image in found)
            if size > prepared.image_budget:
                log.info("images refused: {size} fetched bytes over the budget", size=size)
                raise _invalid_image()
            return self._run(request, prepared, completion_id, found, access)

        def failed(failure: Failure) -> bytes | Failure:
            if isinstance(failure.value, CancelledError):
                return failure
            if isinstance(failure.value, ImageFetchError):
                log.info("image URL refused: {why}", why=str(failure.value))
                raise _invalid_image()
            log.failure("image fetch failed", failure)
            return write_error(request, INTERNAL_ERROR, run_started=False)

        return fetching.addCallbacks(fetched, failed)

    def _run(
        self,
        request: Request,
        prepared: PreparedChat,
        completion_id: str,
        fetched: Sequence[ImageInput],
        access: AccessLog,
    ) -> bytes | Deferred[bytes]:
        try:
            run = self._runtime.start(prepared.agent_request(completion_id, fetched))
        except UnknownAgentError:
            raise unknown_agent_error(prepared.agent_id) from None
        except UnknownModelError as e:
            raise model_error(e) from None
        except ClientToolConflictError as e:
            # OpenClaw's answer; the clashing names are only logged.
            log.info("run {run_id} refused: {error}", run_id=completion_id, error=str(e))
            raise ChatRequestError("invalid tool configuration") from None
        except Exception:
            log.failure("could not start run {run_id}", run_id=completion_id)
            return write_error(request, INTERNAL_ERROR, run_started=False)
        created = int(self._clock.seconds())
        if not prepared.stream:
            return _JsonResponse(request, run, prepared, completion_id, created, access).start()
        response = _StreamResponse(
            run,
            prepared,
            ChunkFactory(completion_id, created, prepared.model, prepared.include_usage),
            access,
        )
        stream = SSEStream(
            request,
            clock=self._clock,
            keep_alive_seconds=self._settings.sse_keep_alive_seconds,
            on_pause=run.pauseProducing,
            on_resume=run.resumeProducing,
            on_lost=response.connection_lost,
            max_buffered_bytes=self._max_buffered_bytes,
        )
        return response.start(stream)


def decoded_size(image: ImageInput) -> int:
    """Bytes a base64 image decodes to."""
    return len(image.data) * 3 // 4 - image.data[-2:].count("=")


def _invalid_image() -> ChatRequestError:
    return ChatRequestError(
        "Invalid image_url content in `messages`.", param="messages", code="invalid_image"
    )


def gather_images(deferreds: list[Deferred[ImageInput]]) -> Deferred[list[ImageInput]]:
    """All results in order, or the first failure (the others are cancelled)."""
    gathered: Deferred[list[ImageInput]] = gatherResults(deferreds, consumeErrors=True)

    def unwrap(failure: Failure) -> Failure:
        for d in deferreds:
            d.cancel()
        first = getattr(failure.value, "subFailure", None)
        return first if isinstance(first, Failure) else failure

    return gathered.addErrback(unwrap)


class _JsonResponse:
    """One non-streaming answer: the run's result as a ``chat.completion`` body.

    The Deferred it returns is the only disconnect path: Klein cancels it when
    the client leaves, and cancelling it cancels the run.
    """

    def __init__(
        self,
        request: Request,
        run: AgentRun,
        prepared: PreparedChat,
        completion_id: str,
        created: int,
        access: AccessLog,
    ) -> None:
        self._request = request
        self._access = access
        self._run = run
        self._prepared = prepared
        self._completion_id = completion_id
        self._created = created
        self._result: Deferred[AgentResult] | None = None
        #: Answered or abandoned: later outcomes of the run are ignored.
        self._over = False
        self._out: Deferred[bytes] = Deferred(self._cancelled)

    def start(self) -> Deferred[bytes]:
        result = self._result = self._run.result
        result.addCallbacks(self._succeeded, self._failed)
        result.addErrback(self._bug)
        return self._out

    def _succeeded(self, result: AgentResult) -> None:
        if self._over:
            return
        unmet = tool_choice_failure(self._prepared.tool_choice, result)
        if unmet is not None:
            self._deliver(write_error(self._request, unmet, run_started=True), unmet.message)
            return
        body = completion_json(
            completion_id=self._completion_id,
            created=self._created,
            model=self._prepared.model,
            result=result,
        )
        self._deliver(write_json(self._request, 200, body))

    def _failed(self, failure: Failure) -> None:
        if self._over:
            return
        error, why = map_failure(failure, self._completion_id)
        self._deliver(write_error(self._request, error, run_started=True), why)

    def _bug(self, failure: Failure) -> None:
        log.failure("bug answering run {run_id}", failure, run_id=self._completion_id)
        if not self._over:
            self._deliver(write_error(self._request, INTERNAL_ERROR, run_started=True), "bug")

    def _deliver(self, data: bytes, why: str = "") -> None:
        self._over = True
        self._access.done(why)
        self._out.callback(data)

    def _cancelled(self, _: Deferred[bytes]) -> None:
        self._over = True
        self._run.cancel()
        if self._result is not None:
            self._result.cancel()


class _StreamResponse:
    """One streaming answer: run events become ``chat.completion.chunk`` frames.

    Each assistant event's ``delta`` is sent as it is (nothing is rebuilt from
    the text so far); the deltas sent are joined once, at the end, to check
    the final text extends them.
    """

    def __init__(
        self,
        run: AgentRun,
        prepared: PreparedChat,
        chunks: ChunkFactory,
        access: AccessLog,
    ) -> None:
        self._run = run
        self._prepared = prepared
        self._chunks = chunks
        self._encoder = ChunkEncoder(chunks)
        self._access = access
        self._run_id = chunks.completion_id
        # With a forced tool_choice, prose is held back until the run shows
        # the constraint was met (an unmet constraint must not leak prose).
        self._hold_prose = prepared.tool_choice == "required" or isinstance(
            prepared.tool_choice, PinnedTool
        )
        self._sent: list[str] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._result: Deferred[AgentResult] | None = None
        self._stream: SSEStream | None = None

    def start(self, stream: SSEStream) -> Deferred[bytes]:
        self._stream = stream
        stream.open(data_frame(self._chunks.role()))
        if stream.writable:
            if not self._hold_prose:
                self._unsubscribe = self._run.subscribe(self._on_event)
            result = self._result = self._run.result
            result.addCallbacks(self._succeeded, self._failed)
            result.addErrback(self._bug)
        return stream.done

    def _on_event(self, event: AgentEvent) -> None:
        stream = self._stream
        if not isinstance(event, AssistantEvent) or stream is None or not stream.writable:
            return
        if event.delta:
            self._sent.append(event.delta)
            stream.send(self._encoder.content_frame(event.delta))

    def _succeeded(self, result: AgentResult) -> None:
        stream = self._stream
        if stream is None or not stream.writable:
            return
        self._stop_listening()
        unmet = tool_choice_failure(self._prepared.tool_choice, result)
        if unmet is not None:
            self._fail_stream(stream, unmet)
            return
        text = result.text
        sent = "".join(self._sent)
        if not text.startswith(sent):
            self._fail_stream(stream, APPEND_ONLY_ERROR)
            return
        if text[len(sent) :]:
            stream.send(self._encoder.content_frame(text[len(sent) :]))
        elif not text and not result.pending_tool_calls:
            stream.send(self._encoder.content_frame(EMPTY_REPLY_TEXT))
        for chunk in self._chunks.tool_calls(result.pending_tool_calls):
            stream.send_json(chunk)
        stream.send_json(self._chunks.finish(finish_reason_for(result)))
        if self._prepared.include_usage:
            stream.send_json(self._chunks.usage(result.usage))
        stream.close()
        self._access.done()

    def _failed(self, failure: Failure) -> None:
        stream = self._stream
        if stream is None or not stream.writable:
            return
        self._stop_listening()
        error, why = map_failure(failure, self._run_id)
        self._fail_stream(stream, error, why)

    def _bug(self, failure: Failure) -> None:
        log.failure("bug streaming run {run_id}", failure, run_id=self._run_id)
        if self._stream is not None and self._stream.writable:
            self._fail_stream(self._stream, INTERNAL_ERROR, "bug")

    def _fail_stream(self, stream: SSEStream, error: MappedError, why: str = "") -> None:
        stream.send_json(error.body())
        stream.close()
        self._access.done(f"{error.status} in the stream: {why or error.message}")

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
        self._access.left()
