"""Small pieces every OpenAI-compatible endpoint uses: headers and body of the
request, OpenAI error answers, the mapping of run failures, the forced
``tool_choice`` check, URL image fetches, and the one access line per request.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from openclaw.agents.types import (
    AgentLoopError,
    AgentResult,
    ImageInput,
    ProviderError,
    RunAbortedError,
    RunTimeoutError,
)
from openclaw.core.unavailable import SharedStateUnavailableError
from openclaw.gateway.http.chat_request import ChatRequestError, PinnedTool, ToolChoice
from openclaw.gateway.http.completions_format import (
    INTERNAL_ERROR,
    RUN_ABORTED_ERROR,
    RUN_TIMEOUT_ERROR,
    STATE_UNAVAILABLE_ERROR,
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
    if isinstance(error, ProviderError):
        return map_provider_error(error), f"upstream {error.kind.value} {error.status}"
    if isinstance(error, RunTimeoutError):
        return RUN_TIMEOUT_ERROR, "run timed out"
    if isinstance(error, RunAbortedError):
        return RUN_ABORTED_ERROR, "run aborted"
    if isinstance(error, AgentLoopError):
        return MappedError(500, str(error), "api_error", "agent_loop_stopped"), "agent loop stopped"
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


class AccessLog:
    """Writes the one ``info`` line of a request once its outcome is known."""

    __slots__ = ("_clock", "_log", "_request", "_started", "_written", "run_id")

    def __init__(
        self, clock: IReactorTime, request: Request, started: float, logger: Logger = log
    ) -> None:
        """
        :param logger: whose namespace the line is logged under (the endpoint's).
        """
        self._clock = clock
        self._log = logger
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
        self._log.info(
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
