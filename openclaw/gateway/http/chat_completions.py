"""``POST /v1/chat/completions``: an OpenAI-compatible front for OpenClaw agents.

The endpoint is a thin adapter over :class:`~openclaw.agents.types.AgentRuntime`:
check the caller, validate the body (:mod:`.chat_request`),
start one agent run, and answer either with one ``chat.completion`` JSON body
or with an SSE stream of ``chat.completion.chunk`` events (:mod:`.sse`).
What it shares with ``/v1/responses`` (starting the run, images, the run's
part of the access line, disconnects, the stream's checks) is :mod:`.agent_endpoint`; this module
is the chat vocabulary.

Once SSE headers are out, failures become a ``data: {"error": ...}`` frame
then ``[DONE]``, never an errback (which would append an HTML page to the
stream). Nothing is logged on the success path (the site writes the access
line): twistd formats every event it is given, debug included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Unpack

from attrs import evolve
from twisted.web.server import Request

from openclaw.agents.types import AgentResult, AgentRun, ImageInput
from openclaw.config.model import Config
from openclaw.core.ids import random_uuid4
from openclaw.gateway.http.agent_endpoint import (
    AgentEndpoint,
    Answer,
    EndpointParts,
    JsonAnswer,
    StreamAnswer,
)
from openclaw.gateway.http.auth_errors import auth_failure_response
from openclaw.gateway.http.chat_request import (
    PreparedChat,
    prepare_chat,
)
from openclaw.gateway.http.completions_format import (
    ChunkEncoder,
    ChunkFactory,
    MappedError,
    completion_json,
    finish_reason_for,
)
from openclaw.gateway.http.errors import (
    ChatRequestError,
)
from openclaw.gateway.http.model_header import model_override
from openclaw.gateway.http.run_support import (
    RunNote,
    decoded_size,
    gather_images,
    map_failure,
    read_body,
    request_headers,
    tool_choice_failure,
    write_error,
)
from openclaw.gateway.http.sse import data_frame

__all__ = [
    "ChatCompletionsEndpoint",
    "RunNote",
    "decoded_size",
    "gather_images",
    "map_failure",
    "read_body",
    "request_headers",
    "tool_choice_failure",
    "write_error",
]


class ChatCompletionsEndpoint(AgentEndpoint):
    """Answers ``POST /v1/chat/completions`` (the app's routing refuses other methods)."""

    def __init__(self, *, config: Config, **parts: Unpack[EndpointParts]) -> None:
        """``parts``: runtime, auth, clock, image_fetcher, max_buffered_bytes."""
        self._settings = config.gateway.http.chat_completions
        self._max_json_depth = config.gateway.max_json_depth
        super().__init__(keep_alive_seconds=self._settings.sse_keep_alive_seconds, **parts)

    def _answer(self, request: Request, access: RunNote) -> Answer:
        """401/429, run the agent, or raise :class:`ChatRequestError` (a 400)."""
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
            max_json_depth=self._max_json_depth,
        )
        override = model_override(headers)
        if override is not None:
            prepared = evolve(prepared, model_override=override)
        completion_id = access.run_id = f"chatcmpl_{random_uuid4()}"
        return self._with_images(
            request,
            prepared,
            self._settings.images,
            _invalid_image,
            lambda fetched: self._run(request, prepared, completion_id, fetched, access),
        )

    def _run(
        self,
        request: Request,
        prepared: PreparedChat,
        completion_id: str,
        fetched: Sequence[ImageInput],
        access: RunNote,
    ) -> Answer:
        run = self._start(request, prepared.agent_request(completion_id, fetched))
        if isinstance(run, bytes):
            return run
        created = int(self._clock.seconds())
        if not prepared.stream:

            def render(result: AgentResult) -> object:
                return completion_json(
                    completion_id=completion_id,
                    created=created,
                    model=prepared.model,
                    result=result,
                )

            return JsonAnswer(request, run, prepared.tool_choice, access, render).start()
        chunks = ChunkFactory(completion_id, created, prepared.model, prepared.include_usage)
        return self._stream(request, run, _ChatStream(run, prepared, chunks, access))


def _invalid_image() -> ChatRequestError:
    return ChatRequestError(
        "Invalid image_url content in `messages`.", param="messages", code="invalid_image"
    )


class _ChatStream(StreamAnswer):
    """``chat.completion.chunk`` frames: the role chunk at once, content chunks,
    then tool-call chunks, the finish chunk and (with ``include_usage``) usage."""

    def __init__(
        self, run: AgentRun, prepared: PreparedChat, chunks: ChunkFactory, access: RunNote
    ) -> None:
        super().__init__(run, prepared.tool_choice, access)
        self._chunks = chunks
        self._encoder = ChunkEncoder(chunks)
        self._include_usage = prepared.include_usage

    def opening(self) -> list[bytes]:
        return [data_frame(self._chunks.role())]

    def text(self, delta: str) -> list[bytes]:
        return [self._encoder.content_frame(delta)]

    def closing(self, result: AgentResult, text: str) -> list[bytes]:
        frames = [data_frame(chunk) for chunk in self._chunks.tool_calls(result.pending_tool_calls)]
        frames.append(data_frame(self._chunks.finish(finish_reason_for(result))))
        if self._include_usage:
            frames.append(data_frame(self._chunks.usage(result.usage)))
        return frames

    def failure(self, error: MappedError) -> bytes:
        return data_frame(error.body())
