"""Small pieces every OpenAI-compatible endpoint uses: headers and body of the
request, OpenAI error answers, the mapping of run failures, the forced
``tool_choice`` check, URL image fetches, and what a run adds to the access line.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from openclaw.agents.types import (
    TOOL_POLICY_EMPTY,
    AgentLoopError,
    AgentResult,
    ImageInput,
    ProviderError,
    RunAbortedError,
    RunTimeoutError,
)
from openclaw.core.unavailable import SharedStateUnavailableError, TurnNotSavedError
from openclaw.gateway.http.client_tools import (
    PinnedTool,
    ToolChoice,
)
from openclaw.gateway.http.completions_format import (
    INTERNAL_ERROR,
    RUN_ABORTED_ERROR,
    RUN_TIMEOUT_ERROR,
    STATE_UNAVAILABLE_ERROR,
    TURN_NOT_SAVED_ERROR,
    MappedError,
    map_provider_error,
)
from openclaw.gateway.http.errors import write_json

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
    if isinstance(error, ProviderError) and error.code == TOOL_POLICY_EMPTY:
        # The gateway's own configuration, not the client's model choice.
        return MappedError(500, str(error), "api_error", TOOL_POLICY_EMPTY), "tool policy empty"
    if isinstance(error, ProviderError):
        return map_provider_error(error), f"upstream {error.kind.value} {error.status}"
    if isinstance(error, RunTimeoutError):
        return RUN_TIMEOUT_ERROR, "run timed out"
    if isinstance(error, RunAbortedError):
        return RUN_ABORTED_ERROR, "run aborted"
    if isinstance(error, AgentLoopError):
        return MappedError(500, str(error), "api_error", "agent_loop_stopped"), "agent loop stopped"
    if isinstance(error, TurnNotSavedError):
        return TURN_NOT_SAVED_ERROR, "turn not saved"
    if isinstance(error, SharedStateUnavailableError):
        return STATE_UNAVAILABLE_ERROR, "session store unavailable"
    log.failure("run {run_id} failed", failure, run_id=run_id)
    return INTERNAL_ERROR, "run failed"


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


def decoded_size(image: ImageInput) -> int:
    """Bytes a base64 image decodes to."""
    return len(image.data) * 3 // 4 - image.data[-2:].count("=")


def gather_images(deferreds: list[Deferred[ImageInput]]) -> Deferred[list[ImageInput]]:
    """All results in order, or the first failure (the others are cancelled)."""
    gathered: Deferred[list[ImageInput]] = gatherResults(deferreds, consumeErrors=True)

    def unwrap(failure: Failure) -> Failure:
        for d in deferreds:
            d.cancel()
        first = getattr(failure.value, "subFailure", None)
        return first if isinstance(first, Failure) else failure

    return gathered.addErrback(unwrap)


class RunNote:
    """What an endpoint adds to its request's access line.

    The line itself is written once per request by the site's request hook
    (:class:`~openclaw.gateway.observability.RequestObserver`) when the request
    finishes; the endpoint only leaves the run id and why a run failed on the
    request (``openclaw_run_id``, ``openclaw_detail``) before that.
    """

    __slots__ = ("_request",)

    def __init__(self, request: Request) -> None:
        self._request = request

    @property
    def run_id(self) -> str:
        """The run (or response) id the line names, ``-`` before there is one."""
        return str(getattr(self._request, "openclaw_run_id", None) or "-")

    @run_id.setter
    def run_id(self, run_id: str) -> None:
        self._request.openclaw_run_id = run_id  # type: ignore[attr-defined]

    def done(self, detail: str = "") -> None:
        """Say why the run ended (call before the answer finishes the request;
        the first reason given wins, an empty one adds nothing)."""
        if detail and not getattr(self._request, "openclaw_detail", None):
            self._request.openclaw_detail = detail  # type: ignore[attr-defined]
