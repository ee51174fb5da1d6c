"""The agent runtime's contract: requests, events, results and failures.

The HTTP endpoint, the WebSocket methods and the CLI are adapters over
:class:`AgentRuntime`; they depend only on the names in this module.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from attrs import Factory, define, field, frozen
from twisted.internet.defer import Deferred

from openclaw.core.redaction import redact_credentials
from openclaw.core.types import ImageInput, StopReason, ToolCall, Usage
from openclaw.sessions.interface import SessionCatalog

__all__ = [
    "AgentEvent",
    "AgentInfo",
    "AgentLoopError",
    "AgentRequest",
    "AgentResult",
    "AgentRun",
    "AgentRuntime",
    "ApprovalDecision",
    "ApprovalEvent",
    "AssistantEvent",
    "ClientTool",
    "ClientToolConflictError",
    "CompactionReport",
    "DuplicateRunError",
    "EmbeddingRequest",
    "EmbeddingResult",
    "EmbeddingsUnavailableError",
    "ExecApprovalRequested",
    "ExecApprovalResolved",
    "ExecApprovals",
    "FailureKind",
    "ImageInput",
    "LifecycleEvent",
    "LifecyclePhase",
    "ProviderError",
    "ReplyText",
    "RunAbortedError",
    "RunQueueFullError",
    "RunTimeoutError",
    "RuntimeClosedError",
    "SessionCatalog",
    "StopReason",
    "StreamParams",
    "ToolCall",
    "ToolEvent",
    "ToolPhase",
    "UnknownAgentError",
    "UnknownModelError",
    "Usage",
]

LifecyclePhase = Literal["start", "end", "error"]


@frozen
class ClientTool:
    """A function tool the *client* implements (OpenAI ``tools[]``)."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    strict: bool | None = None


@frozen
class StreamParams:
    """Sampling and format parameters forwarded to the model provider."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    response_format: Mapping[str, Any] | None = None


@frozen
class AgentRequest:
    """Everything one agent turn needs.

    ``session_key`` is canonical (``agent:<agentId>:...``); ``message`` is the
    user turn text already rendered by the ingress adapter.
    """

    agent_id: str
    session_key: str
    message: str
    run_id: str
    extra_system_prompt: str | None = None
    images: tuple[ImageInput, ...] = ()
    client_tools: tuple[ClientTool, ...] = ()
    stream_params: StreamParams | None = None
    channel: str = "webchat"
    #: Overrides the agent's configured timeout when set.
    timeout_seconds: float | None = None
    #: ``provider/model`` (or a bare model id of the agent's provider) that
    #: replaces the agent's model for this turn (``x-openclaw-model``).
    model_override: str | None = None


@frozen
class AgentResult:
    """The outcome of a completed turn."""

    run_id: str
    agent_id: str
    session_key: str
    session_id: str
    text: str
    usage: Usage = Factory(Usage)
    stop_reason: StopReason = "stop"
    pending_tool_calls: tuple[ToolCall, ...] = ()
    started_at: int = 0
    ended_at: int = 0
    #: Which model answered (a fallback's, when the turn fell back).
    provider: str | None = None
    model: str | None = None


@frozen
class LifecycleEvent:
    """Run start / end / error. Times are epoch milliseconds."""

    run_id: str
    phase: LifecyclePhase
    ts: int
    started_at: int | None = None
    ended_at: int | None = None
    error: str | None = None
    aborted: bool = False
    stop_reason: StopReason | None = None
    #: Which model answered (``end``/``error``): the fallback chain's last one.
    provider: str | None = None
    model: str | None = None


class ReplyText:
    """A run's reply text, appended delta by delta and joined only when read.

    ``str +=`` on an attribute copies the whole text per delta (quadratic on
    long replies); here an append is O(1) and a consumer that never reads the
    text so far (the HTTP stream) never pays for it.
    """

    __slots__ = ("_length", "_parts")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def append(self, delta: str) -> None:
        """Add ``delta`` at the end."""
        self._parts.append(delta)
        self._length += len(delta)

    def __str__(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def prefix(self, length: int) -> str:
        """The first ``length`` characters (the text as it was at that length)."""
        whole = str(self)
        return whole if len(whole) == length else whole[:length]


@define
class AssistantEvent:
    """New assistant text: ``delta`` is the new suffix, ``text`` the whole so far.

    A run passes its :class:`ReplyText` and the length it had at this event,
    so ``text`` is built only for a consumer that reads it. One is made per
    relayed chunk, so it is not frozen: a frozen attrs class sets each field
    through ``object.__setattr__`` (1.2 against 0.6 us per event, issue 16).
    Nobody changes one after it is emitted.
    """

    run_id: str
    delta: str
    _text: str | ReplyText = field(eq=False, repr=False)
    ts: int
    _length: int = field(default=-1, eq=False, repr=False)

    @property
    def text(self) -> str:
        """The whole reply up to and including ``delta``."""
        text = self._text
        return text if isinstance(text, str) else text.prefix(self._length)


ToolPhase = Literal["start", "update", "result"]


@frozen
class ToolEvent:
    """A built-in tool call the run executes: ``start`` (with its arguments),
    ``update`` (partial output so far), ``result`` (the outcome; OpenClaw's
    terminal phase name on the wire)."""

    run_id: str
    phase: ToolPhase
    name: str
    tool_call_id: str
    ts: int
    #: The raw JSON arguments the model sent (``start``).
    arguments: str | None = None
    #: The arguments parsed (``start``; None when they were not a JSON object).
    args: Mapping[str, Any] | None = None
    #: The output so far (``update``).
    partial_result: str | None = None
    #: The text the model reads next (``result``).
    result: str | None = None
    is_error: bool = False
    #: Structured facts for observers (exit code, path, bytes...); never sent to the model.
    meta: Mapping[str, Any] | None = None
    #: False when the run offers no tool of this ``name``: the model made the
    #: name up (it is answered "not available"), so an observer that keys
    #: anything on names (metrics labels) must not take it as it is.
    offered: bool = True


AgentEvent = LifecycleEvent | AssistantEvent | ToolEvent


class FailureKind(enum.Enum):
    """Why a provider call failed; the HTTP and WS layers map these."""

    AUTH = "auth"
    PERMISSION = "auth_permanent"
    RATE_LIMIT = "rate_limit"
    BILLING = "billing"
    MODEL_NOT_FOUND = "model_not_found"
    FORMAT = "format"
    CONTEXT_OVERFLOW = "context_overflow"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    OVERLOADED = "overloaded"
    CONNECTION = "connection"
    MALFORMED_STREAM = "malformed_stream"


class ProviderError(Exception):
    """A classified upstream failure, carrying what the upstream said."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        # Redacted here, at the source, so no consumer (HTTP body, WebSocket
        # event, log line, transcript) can leak a key an upstream quoted.
        message = redact_credentials(message)
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.code = code
        self.retry_after_seconds = retry_after_seconds

    def __repr__(self) -> str:
        return (
            f"ProviderError({self.kind.value!r}, {self.message!r}, status={self.status!r}, "
            f"code={self.code!r})"
        )


class RunTimeoutError(Exception):
    """The run exceeded its agent timeout and was cancelled."""


class RunAbortedError(Exception):
    """The run was cancelled (client disconnect, ``chat.abort``, shutdown)."""


class UnknownAgentError(KeyError):
    """No agent with that id is configured."""


#: The error code of a run stopped because an explicit tool allow-list matches
#: no tool (a configuration problem of the gateway, not of the request).
TOOL_POLICY_EMPTY: Final = "tool_policy_empty"


class AgentLoopError(Exception):
    """The agent loop stopped the turn: the step limit was reached, or a tool
    loop persisted after a warning (``tools.loopDetection``). The message says
    which, for the client."""


class ClientToolConflictError(ValueError):
    """A request's client tools reuse a built-in tool's name (or each other's).

    Raised by ``AgentRuntime.start``; the HTTP layer answers 400
    ``invalid_request_error`` "invalid tool configuration" (OpenClaw's answer),
    the WebSocket layer ``INVALID_REQUEST``. ``names`` are for the log.
    """

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(f"client tool name conflict: {', '.join(names)}")
        self.names = tuple(names)


class UnknownModelError(ValueError):
    """A per-request model override names a model this gateway does not offer.

    Raised by ``AgentRuntime.start`` and ``AgentRuntime.embed`` before anything
    runs; the message (OpenClaw's words) names the model and the agent.
    """

    def __init__(self, model: str, agent_id: str) -> None:
        super().__init__(f"Model '{model}' is not allowed for agent '{agent_id}'.")
        self.model = model
        self.agent_id = agent_id


@frozen
class EmbeddingRequest:
    """Texts (or token arrays) to embed with an agent's embedding provider."""

    agent_id: str
    inputs: tuple[str | tuple[int, ...], ...]
    #: Requested vector size (passed to the provider), else its default.
    dimensions: int | None = None
    #: ``base64``: each vector as little-endian float32 bytes, base64-encoded.
    encoding_format: Literal["float", "base64"] = "float"
    #: ``provider/model`` (or a bare model id) instead of the agent's embedding model.
    model_override: str | None = None


@frozen
class EmbeddingResult:
    """One vector per input, in input order, and what the provider counted."""

    model: str
    vectors: tuple[tuple[float, ...] | str, ...]
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingsUnavailableError(Exception):
    """The agent has no usable embedding provider (a configuration problem);
    the message says what is missing and is safe to show."""


class EmbeddingRequestError(ValueError):
    """A request the embedding provider will not take; ``param`` names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class DuplicateRunError(ValueError):
    """A run with this id is still active."""


class RuntimeClosedError(RuntimeError):
    """``start`` was called after ``shutdown``."""


@frozen
class CompactionReport:
    """What ``AgentRuntime.compact_session`` did (``sessions.compact``'s answer)."""

    compacted: bool
    tokens_before: int | None = None
    tokens_after: int | None = None
    #: Why nothing was compacted (no session, nothing older to summarise).
    reason: str | None = None


ApprovalDecision = Literal["allow-once", "allow-always", "deny"]


@frozen
class ExecApprovalRequested:
    """An ``exec`` command waits for an operator (``exec.approval.requested``)."""

    id: str
    command: str
    cwd: str
    agent_id: str
    session_key: str
    run_id: str
    tool_call_id: str
    #: Why approval is needed (the policy's words).
    reason: str
    created_at_ms: int
    expires_at_ms: int
    #: The names of the model's ``env`` overrides (OpenClaw's ``envKeys``; the
    #: values are not shown, but an ``allow-always`` grant is bound to them).
    env_keys: tuple[str, ...] = ()


@frozen
class ExecApprovalResolved:
    """A pending approval was answered, timed out or withdrawn
    (``exec.approval.resolved``)."""

    id: str
    decision: ApprovalDecision
    ts: int
    #: ``operator`` (answered), ``timeout`` / ``cancelled`` (withdrawn: denied).
    source: str = "operator"


ApprovalEvent = ExecApprovalRequested | ExecApprovalResolved


class ExecApprovals(Protocol):
    """The runtime's pending exec approvals, as operator clients see them."""

    def observe(self, listener: Callable[[ApprovalEvent], bool | None]) -> Callable[[], None]:
        """Call ``listener`` with every later request and resolution; returns an
        unsubscribe callable. The listener returns True when the event reached a
        client that can answer it; a request no listener delivered is unanswered
        at once."""
        ...

    def pending(self) -> Deferred[Sequence[ExecApprovalRequested]]:
        """Requests still waiting, oldest first (every instance's, with a shared store)."""
        ...

    def resolve(self, approval_id: str, decision: ApprovalDecision) -> Deferred[bool]:
        """Answer a pending request (of any instance, with a shared store; the
        first answer wins); False when there is none with that id."""
        ...

    def operators_connected(self, count: int) -> None:
        """How many clients able to answer are connected here (instances sharing
        a store count each other's before declaring a request unanswered)."""
        ...


class RunQueueFullError(Exception):
    """Too many runs are running or queued (``agents.defaults.maxConcurrent``
    plus ``gateway.maxQueuedRuns``); try again after ``retry_after_seconds``."""

    def __init__(self, retry_after_seconds: float, limit: int) -> None:
        super().__init__(f"too many agent runs in progress ({limit} running or queued)")
        self.retry_after_seconds = retry_after_seconds
        self.limit = limit

    @property
    def retry_after_ms(self) -> int:
        """``retryAfterMs`` for a WebSocket error."""
        return max(1, math.ceil(self.retry_after_seconds * 1000))

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` for HTTP: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after_seconds)))


class AgentInfo(Protocol):
    """One configured agent, as ``agents.list`` and ``health`` report it."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str | None: ...

    @property
    def model(self) -> str | None: ...

    @property
    def workspace(self) -> Path: ...

    @property
    def is_default(self) -> bool: ...


class AgentRun(Protocol):
    """A started turn. Every method is safe to call after the run ended."""

    @property
    def run_id(self) -> str: ...

    @property
    def agent_id(self) -> str: ...

    @property
    def session_key(self) -> str: ...

    @property
    def result(self) -> Deferred[AgentResult]:
        """Fires with the result, or fails with ProviderError / RunTimeoutError /
        RunAbortedError. Each access returns a new Deferred (safe to cancel)."""
        ...

    def subscribe(self, listener: Callable[[AgentEvent], None]) -> Callable[[], None]:
        """Call ``listener`` for each later event; returns an unsubscribe callable."""
        ...

    def cancel(self) -> None:
        """Abort the run and close its upstream connection (idempotent)."""
        ...

    def pauseProducing(self) -> None:
        """Stop reading from the upstream until resumed (a consumer is full)."""
        ...

    def resumeProducing(self) -> None: ...


class AgentRuntime(Protocol):
    """Starts agent turns; the one code path behind every entry point."""

    @property
    def default_agent_id(self) -> str: ...

    @property
    def agent_ids(self) -> Sequence[str]:
        """Configured agent ids (normalised, de-duplicated), default first not implied."""
        ...

    def start(self, request: AgentRequest) -> AgentRun:
        """Start a turn and return at once; raises UnknownAgentError."""
        ...

    def get_run(self, run_id: str) -> AgentRun | None:
        """A run still active, or recently finished (kept for ``agent.wait``)."""
        ...

    def embed(self, request: EmbeddingRequest) -> Deferred[EmbeddingResult]:
        """Embed texts with the agent's embedding provider. Raises
        UnknownAgentError, UnknownModelError or EmbeddingsUnavailableError at
        once; the Deferred fails with ProviderError (cancel it to abort)."""
        ...

    def active_runs(self, session_key: str | None = None) -> Sequence[AgentRun]:
        """Runs not yet finished, optionally only those of one session."""
        ...

    def observe_runs(self, listener: Callable[[AgentRun], None]) -> Callable[[], None]:
        """Call ``listener`` with every run as it starts (any ingress); returns an
        unsubscribe callable. This is how WebSocket clients see HTTP runs."""
        ...

    @property
    def agents(self) -> Sequence[AgentInfo]:
        """The configured agents (``agents.list``, ``health``)."""
        ...

    @property
    def sessions(self) -> SessionCatalog | None:
        """The sessions the runs write to, as ``sessions.*`` and ``chat.history``
        read them (any backend implementing the interface); None for a runtime
        that keeps none."""
        ...

    def compact_session(
        self, agent_id: str, session_key: str, *, focus: str | None = None
    ) -> Deferred[CompactionReport]:
        """Summarise the session's older history now (``sessions.compact``), after
        any run on it; raises UnknownAgentError, fails with ProviderError."""
        ...

    @property
    def approvals(self) -> ExecApprovals:
        """Pending exec approvals (``exec.approval.*``)."""
        ...

    def refuse_new_runs(self) -> None:
        """From now on :meth:`start` raises RuntimeClosedError; active runs go on
        (a stopping gateway's grace period)."""
        ...

    def shutdown(self) -> Deferred[None]:
        """Cancel every active run and wait until each has settled on disk."""
        ...
