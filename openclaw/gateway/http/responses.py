# -*- test-case-name: tests.test_responses -*-
"""``POST /v1/responses``: OpenClaw's OpenResponses endpoint over the agent runtime.

The same adapter as chat completions (auth, agent and session routing, one
agent turn through :class:`~openclaw.agents.types.AgentRuntime`), answering
in the Responses API's shapes (:mod:`.responses_format`): one ``response``
object, or an SSE stream of numbered events on the chat stream's machinery
(:class:`~.sse.SSEStream`: keep-alive comments, a slow client pausing the
run, a departed client cancelling it).

``previous_response_id`` continues the session the named response ran in,
when the new request has the same agent, ``user`` and
``x-openclaw-session-key`` (OpenClaw's scope rule); otherwise the request is
routed as if it were absent. Ids are remembered in memory, per process, for
:data:`KEEP_RESPONSES` responses and :data:`KEEP_RESPONSE_SECONDS` at most:
after a restart, or on another worker process, an id is unknown and the
request starts a fresh session (send ``user`` or the session header for
continuity that survives restarts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from openclaw.agents.types import (
    AgentEvent,
    AgentResult,
    AgentRun,
    AgentRuntime,
    AssistantEvent,
    ClientToolConflictError,
    ImageInput,
    UnknownAgentError,
    UnknownModelError,
)
from openclaw.config.model import ResponsesConfig
from openclaw.core.ids import random_uuid4
from openclaw.core.recent import RecentlyFinished
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.http.auth_errors import auth_failure_response
from openclaw.gateway.http.chat_completions import (
    AccessLog,
    decoded_size,
    gather_images,
    map_failure,
    read_body,
    request_headers,
    tool_choice_failure,
    write_error,
)
from openclaw.gateway.http.chat_request import ChatRequestError, PinnedTool, unknown_agent_error
from openclaw.gateway.http.completions_format import (
    APPEND_ONLY_ERROR,
    EMPTY_REPLY_TEXT,
    INTERNAL_ERROR,
    MappedError,
)
from openclaw.gateway.http.errors import write_json
from openclaw.gateway.http.image_fetch import ImageFetcher, ImageFetchError
from openclaw.gateway.http.model_header import model_error
from openclaw.gateway.http.responses_format import ResponseEvents, ResponseShell, result_status
from openclaw.gateway.http.responses_request import (
    INVALID_IMAGE_MESSAGE,
    PreparedResponse,
    prepare_response,
)
from openclaw.gateway.http.sse import DEFAULT_MAX_BUFFERED_BYTES, SSEStream

log = Logger()

#: Response ids remembered for ``previous_response_id``: at most this many ...
KEEP_RESPONSES = 10_000
#: ... for at most this long (seconds).
KEEP_RESPONSE_SECONDS = 24 * 3600.0


@frozen
class _Scope:
    """Where a response ran, and what routed it (for the scope check)."""

    agent_id: str
    session_key: str
    user: str | None
    header_session_key: str | None


class ResponsesEndpoint:
    """Answers ``POST /v1/responses`` (the app's routing refuses other methods)."""

    def __init__(
        self,
        *,
        settings: ResponsesConfig,
        runtime: AgentRuntime,
        auth: GatewayAuth,
        clock: IReactorTime,
        image_fetcher: ImageFetcher | None = None,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
    ) -> None:
        self._settings = settings
        self._runtime = runtime
        self._auth = auth
        self._clock = clock
        self._image_fetcher = image_fetcher
        self._max_buffered_bytes = max_buffered_bytes
        self._scopes: RecentlyFinished[_Scope] = RecentlyFinished(
            clock, max_entries=KEEP_RESPONSES, ttl_seconds=KEEP_RESPONSE_SECONDS
        )

    def handle(self, request: Request) -> bytes | Deferred[bytes]:
        """401/429, run the agent, or raise :class:`ChatRequestError` (a 400)."""
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
        prepared = prepare_response(
            read_body(request),
            request_headers(request),
            agent_ids=self._runtime.agent_ids,
            default_agent_id=self._runtime.default_agent_id,
            config=self._settings,
        )
        response_id = access.run_id = f"resp_{random_uuid4().replace('-', '')}"
        if not prepared.image_urls:
            return self._run(request, prepared, response_id, (), access)
        fetcher = self._image_fetcher
        if fetcher is None:
            log.warn("image URL refused: no image fetcher is configured")
            raise _invalid_image()
        fetching = gather_images(
            [fetcher.fetch(u, self._settings.images) for u in prepared.image_urls]
        )

        def fetched(found: list[ImageInput]) -> bytes | Deferred[bytes]:
            if sum(decoded_size(image) for image in found) > prepared.image_budget:
                raise _invalid_image()
            return self._run(request, prepared, response_id, found, access)

        def refused(failure: Failure) -> Failure:
            if isinstance(failure.value, ImageFetchError):
                log.info("image URL refused: {why}", why=str(failure.value))
                raise _invalid_image()
            return failure

        return fetching.addCallbacks(fetched, refused)

    def _session_for(self, prepared: PreparedResponse) -> str:
        """The session ``previous_response_id`` names, when it is in scope."""
        previous = prepared.previous_response_id
        scope = self._scopes.get(previous) if previous else None
        if scope is None:
            if previous:
                log.info("previous_response_id {id} is unknown here; routed as new", id=previous)
            return prepared.session_key
        if (scope.agent_id, scope.user, scope.header_session_key) != (
            prepared.agent_id,
            prepared.user,
            prepared.header_session_key,
        ):
            log.info("previous_response_id {id} is out of scope; routed as new", id=previous)
            return prepared.session_key
        return scope.session_key

    def _run(
        self,
        request: Request,
        prepared: PreparedResponse,
        response_id: str,
        fetched: Sequence[ImageInput],
        access: AccessLog,
    ) -> bytes | Deferred[bytes]:
        session_key = self._session_for(prepared)
        try:
            run = self._runtime.start(prepared.agent_request(response_id, fetched, session_key))
        except UnknownAgentError:
            raise unknown_agent_error(prepared.agent_id) from None
        except UnknownModelError as error:
            raise model_error(error) from None
        except ClientToolConflictError as error:
            log.info("run {run_id} refused: {error}", run_id=response_id, error=str(error))
            raise ChatRequestError("invalid tool configuration") from None
        except Exception:
            log.failure("could not start run {run_id}", run_id=response_id)
            return write_error(request, INTERNAL_ERROR, run_started=False)
        # What the site's access line reports for this request (observability).
        request.openclaw_run_id = response_id  # type: ignore[attr-defined]
        request.openclaw_agent_id = run.agent_id  # type: ignore[attr-defined]
        self._scopes.remember(
            response_id,
            _Scope(prepared.agent_id, run.session_key, prepared.user, prepared.header_session_key),
        )
        params = prepared.stream_params
        shell = ResponseShell(
            response_id=response_id,
            created_at=int(self._clock.seconds()),
            model=prepared.model,
            instructions=prepared.instructions,
            previous_response_id=prepared.previous_response_id,
            metadata=prepared.metadata,
            user=prepared.user,
            max_output_tokens=params.max_tokens if params else None,
            temperature=params.temperature if params else None,
            top_p=params.top_p if params else None,
            tools=prepared.tools_json,
            tool_choice=prepared.tool_choice_json,
        )
        if not prepared.stream:
            return _JsonAnswer(request, run, prepared, shell, access).start()
        answer = _StreamAnswer(run, prepared, ResponseEvents(shell), access)
        stream = SSEStream(
            request,
            clock=self._clock,
            keep_alive_seconds=self._settings.sse_keep_alive_seconds,
            on_pause=run.pauseProducing,
            on_resume=run.resumeProducing,
            on_lost=answer.connection_lost,
            max_buffered_bytes=self._max_buffered_bytes,
        )
        return answer.start(stream)


def _invalid_image() -> ChatRequestError:
    return ChatRequestError(INVALID_IMAGE_MESSAGE, param="input", code="invalid_image")


class _JsonAnswer:
    """A non-streaming answer: the settled run as one ``response`` object.

    Klein cancels the returned Deferred when the client leaves; that cancels
    the run.
    """

    def __init__(
        self,
        request: Request,
        run: AgentRun,
        prepared: PreparedResponse,
        shell: ResponseShell,
        access: AccessLog,
    ) -> None:
        self._request = request
        self._run = run
        self._prepared = prepared
        self._shell = shell
        self._access = access
        self._result: Deferred[AgentResult] | None = None
        self._out: Deferred[bytes] = Deferred(self._cancelled)

    def start(self) -> Deferred[bytes]:
        result = self._result = self._run.result
        result.addCallbacks(self._succeeded, self._failed).addErrback(self._bug)
        return self._out

    def _succeeded(self, result: AgentResult) -> None:
        if self._out.called:
            return
        unmet = tool_choice_failure(self._prepared.tool_choice, result)
        if unmet is not None:
            self._deliver(write_error(self._request, unmet, run_started=True), unmet.message)
            return
        self._deliver(write_json(self._request, 200, self._shell.completed(result)))

    def _failed(self, failure: Failure) -> None:
        if not self._out.called and not isinstance(failure.value, CancelledError):
            error, why = map_failure(failure, self._shell.response_id)
            self._deliver(write_error(self._request, error, run_started=True), why)

    def _bug(self, failure: Failure) -> None:
        log.failure("bug answering run {run_id}", failure, run_id=self._shell.response_id)
        if not self._out.called:
            self._deliver(write_error(self._request, INTERNAL_ERROR, run_started=True), "bug")

    def _deliver(self, data: bytes, why: str = "") -> None:
        self._access.done(why)
        self._out.callback(data)

    def _cancelled(self, _: Deferred[bytes]) -> None:
        self._run.cancel()
        if self._result is not None:
            self._result.cancel()


class _StreamAnswer:
    """A streaming answer: run events become Responses events on an SSE stream."""

    def __init__(
        self,
        run: AgentRun,
        prepared: PreparedResponse,
        events: ResponseEvents,
        access: AccessLog,
    ) -> None:
        self._run = run
        self._prepared = prepared
        self._events = events
        self._access = access
        self._run_id = events.shell.response_id
        # A forced tool_choice holds prose back until the run shows it was met.
        self._hold_prose = prepared.tool_choice == "required" or isinstance(
            prepared.tool_choice, PinnedTool
        )
        self._sent: list[str] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._result: Deferred[AgentResult] | None = None
        self._stream: SSEStream | None = None

    def start(self, stream: SSEStream) -> Deferred[bytes]:
        self._stream = stream
        first, *rest = self._events.opening()
        stream.open(first)
        for frame in rest:
            stream.send(frame)
        if stream.writable:
            if not self._hold_prose:
                self._unsubscribe = self._run.subscribe(self._on_event)
            result = self._result = self._run.result
            result.addCallbacks(self._succeeded, self._failed).addErrback(self._bug)
        return stream.done

    def _send_text(self, stream: SSEStream, delta: str) -> None:
        events = self._events
        if not events.message_open:
            for frame in events.open_message():
                stream.send(frame)
        self._sent.append(delta)
        stream.send(events.text_delta(delta))

    def _on_event(self, event: AgentEvent) -> None:
        stream = self._stream
        if isinstance(event, AssistantEvent) and event.delta and stream and stream.writable:
            self._send_text(stream, event.delta)

    def _succeeded(self, result: AgentResult) -> None:
        stream = self._stream
        if stream is None or not stream.writable:
            return
        self._stop_listening()
        unmet = tool_choice_failure(self._prepared.tool_choice, result)
        if unmet is not None:
            self._fail_stream(stream, unmet)
            return
        text, sent = result.text, "".join(self._sent)
        if not text.startswith(sent):
            self._fail_stream(stream, APPEND_ONLY_ERROR)
            return
        missing = text[len(sent) :]
        if not text and not result.pending_tool_calls:
            missing = text = EMPTY_REPLY_TEXT
        if missing:
            self._send_text(stream, missing)
        status = result_status(result)
        events = self._events
        frames = events.close_message(text, status) if events.message_open else []
        frames += events.function_calls(result.pending_tool_calls)
        frames.append(events.finished(status, result.usage))
        for frame in frames:
            stream.send(frame)
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
        stream.send(self._events.failed(error))
        stream.close()
        self._access.done(f"{error.status} in the stream: {why or error.message}")

    def _stop_listening(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def connection_lost(self) -> None:
        """The client left (however Twisted said so): cancel the run."""
        self._stop_listening()
        self._run.cancel()
        if self._result is not None:
            self._result.cancel()
        self._access.left()
