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
:data:`KEEP_RESPONSES` responses and :data:`KEEP_RESPONSE_SECONDS` at most.
A response of a fresh session (no ``user``, no session header: the only case
where routing alone cannot find the session again) carries that session's
uuid in its id, so another worker, another instance on the same Redis, or the
gateway after a restart continues it too (``user`` and the session header
route to the same session every time anyway).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Unpack

from attrs import frozen
from twisted.logger import Logger
from twisted.web.server import Request

from openclaw.agents.types import AgentResult, AgentRun, ImageInput
from openclaw.config.model import ResponsesConfig
from openclaw.core.ids import random_uuid4
from openclaw.core.recent import RecentlyFinished
from openclaw.gateway.http.agent_endpoint import (
    AgentEndpoint,
    Answer,
    EndpointParts,
    JsonAnswer,
    StreamAnswer,
)
from openclaw.gateway.http.auth_errors import auth_failure_response
from openclaw.gateway.http.completions_format import MappedError
from openclaw.gateway.http.errors import (
    ChatRequestError,
)
from openclaw.gateway.http.responses_format import (
    ResponseEvents,
    ResponseShell,
    message_phase,
    result_status,
)
from openclaw.gateway.http.responses_request import (
    INVALID_IMAGE_MESSAGE,
    SESSION_PREFIX,
    PreparedResponse,
    prepare_response,
)
from openclaw.gateway.http.run_support import RunNote, read_body, request_headers
from openclaw.sessions.keys import agent_session_key

log = Logger()

#: Response ids remembered for ``previous_response_id``: at most this many ...
KEEP_RESPONSES = 10_000
#: ... for at most this long (seconds).
KEEP_RESPONSE_SECONDS = 24 * 3600.0

#: A fresh session's key (``agent:<id>:openresponses:<uuid>``) ...
_FRESH_SESSION = re.compile(rf"agent:[^:]+:{SESSION_PREFIX}:(?P<uuid>[0-9a-f-]{{36}})")
#: ... and the id of a response that ran in one: ``resp_`` + its uuid + a nonce.
_FRESH_RESPONSE = re.compile(r"resp_(?P<uuid>[0-9a-f]{32})[0-9a-f]{16}")


def response_id_for(session_key: str) -> str:
    """A new response id; for a fresh session it names the session's uuid, so
    any process can continue it (see the module doc)."""
    nonce = random_uuid4().replace("-", "")
    fresh = _FRESH_SESSION.fullmatch(session_key)
    if fresh is None:
        return f"resp_{nonce}"
    return f"resp_{fresh['uuid'].replace('-', '')}{nonce[:16]}"


def fresh_session_of(agent_id: str, response_id: str) -> str | None:
    """The fresh session of ``agent_id`` a :func:`response_id_for` id names, if any."""
    named = _FRESH_RESPONSE.fullmatch(response_id)
    if named is None:
        return None
    h = named["uuid"]
    return agent_session_key(
        agent_id, f"{SESSION_PREFIX}:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    )


@frozen
class _Scope:
    """Where a response ran, and what routed it (for the scope check)."""

    agent_id: str
    session_key: str
    header_session_key: str | None


class ResponsesEndpoint(AgentEndpoint):
    """Answers ``POST /v1/responses`` (the app's routing refuses other methods)."""

    def __init__(self, *, settings: ResponsesConfig, **parts: Unpack[EndpointParts]) -> None:
        """``parts``: runtime, auth, clock, image_fetcher, max_buffered_bytes."""
        super().__init__(keep_alive_seconds=settings.sse_keep_alive_seconds, **parts)
        self._settings = settings
        self._scopes: RecentlyFinished[_Scope] = RecentlyFinished(
            self._clock, max_entries=KEEP_RESPONSES, ttl_seconds=KEEP_RESPONSE_SECONDS
        )

    def _answer(self, request: Request, access: RunNote) -> Answer:
        """401/429, run the agent, or raise :class:`ChatRequestError` (a 400)."""
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
        session_key = self._session_for(prepared)
        response_id = access.run_id = response_id_for(session_key)
        return self._with_images(
            request,
            prepared.turn,
            self._settings.images,
            _invalid_image,
            lambda fetched: self._run(request, prepared, session_key, response_id, fetched, access),
        )

    def _session_for(self, prepared: PreparedResponse) -> str:
        """The session ``previous_response_id`` names, when it is in scope."""
        previous = prepared.previous_response_id
        scope = self._scopes.get(previous) if previous else None
        if scope is None:
            if not previous:
                return prepared.turn.session_key
            fresh = fresh_session_of(prepared.turn.agent_id, previous)
            if fresh is not None and prepared.header_session_key is None:
                return fresh  # run here before a restart, or by another process
            log.info("previous_response_id {id} is unknown here; routed as new", id=previous)
            return prepared.turn.session_key
        # OpenClaw's scope: the agent and x-openclaw-session-key (and the auth
        # subject, one shared secret here); the remembered session wins over
        # the one ``user`` would pick.
        if (scope.agent_id, scope.header_session_key) != (
            prepared.turn.agent_id,
            prepared.header_session_key,
        ):
            log.info("previous_response_id {id} is out of scope; routed as new", id=previous)
            return prepared.turn.session_key
        return scope.session_key

    def _run(
        self,
        request: Request,
        prepared: PreparedResponse,
        session_key: str,
        response_id: str,
        fetched: Sequence[ImageInput],
        access: RunNote,
    ) -> Answer:
        turn = prepared.turn
        run = self._start(request, prepared.agent_request(response_id, fetched, session_key))
        if isinstance(run, bytes):
            return run
        self._scopes.remember(
            response_id,
            _Scope(turn.agent_id, run.session_key, prepared.header_session_key),
        )
        params = turn.stream_params
        shell = ResponseShell(
            response_id=response_id,
            created_at=int(self._clock.seconds()),
            model=turn.model,
            instructions=prepared.instructions,
            previous_response_id=prepared.previous_response_id,
            metadata=prepared.metadata,
            user=prepared.user,
            max_output_tokens=params.max_tokens if params else None,
            temperature=params.temperature if params else None,
            top_p=params.top_p if params else None,
            tools=prepared.tools_json,
            tool_choice=prepared.tool_choice_json,
            text_format=prepared.text_format_json,
        )
        if not turn.stream:
            return JsonAnswer(request, run, turn.tool_choice, access, shell.completed).start()
        answer = _ResponsesStream(run, prepared, ResponseEvents(shell), access)
        return self._stream(request, run, answer)


def _invalid_image() -> ChatRequestError:
    return ChatRequestError(INVALID_IMAGE_MESSAGE, param="input", code="invalid_image")


class _ResponsesStream(StreamAnswer):
    """Responses events: created/in_progress at once, the message item opened on
    the first text, then its done events, the function calls, and the end."""

    def __init__(
        self, run: AgentRun, prepared: PreparedResponse, events: ResponseEvents, access: RunNote
    ) -> None:
        super().__init__(run, prepared.turn.tool_choice, access)
        self._events = events

    def opening(self) -> list[bytes]:
        return self._events.opening()

    def text(self, delta: str) -> list[bytes]:
        events = self._events
        frames = [] if events.message_open else events.open_message()
        frames.append(events.text_delta(delta))
        return frames

    def closing(self, result: AgentResult, text: str) -> list[bytes]:
        events = self._events
        status = result_status(result)
        phase = message_phase(result)
        frames = events.close_message(text, status, phase) if events.message_open else []
        frames += events.function_calls(result.pending_tool_calls)
        frames.append(events.finished(status, result.usage))
        return frames

    def failure(self, error: MappedError) -> bytes:
        return self._events.failed(error)
