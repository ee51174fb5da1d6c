"""One model call of a turn: streamed text forwarded, tool calls assembled.

A :class:`ModelStep` starts a provider stream with itself as the sink. Text
deltas go straight to the run (they reach clients as they arrive); tool call
pieces are assembled per index. When the stream ends, :attr:`ModelStep.done`
fires with a :class:`StepOutcome`: the step's text, its tool calls in index
order, usage and stop reason. Pausing, resuming and stopping go to the
stream.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from attrs import define, field, frozen
from twisted.internet.defer import Deferred

from openclaw.agents.providers.base import ModelCall, ModelProvider, ModelStream, StreamOutcome
from openclaw.agents.types import StopReason, ToolCall, Usage


def new_tool_call_id() -> str:
    """The id of a tool call the model streamed without one (OpenAI's shape).

    The one generator: providers pass ``None`` for a missing id."""
    return f"call_{uuid.uuid4().hex[:24]}"


def with_total(usage: Usage) -> Usage:
    """Fill ``total`` when the provider left it at 0."""
    if usage.total:
        return usage
    total = usage.input + usage.output + usage.cache_read + usage.cache_write
    return Usage(
        input=usage.input,
        output=usage.output,
        cache_read=usage.cache_read,
        cache_write=usage.cache_write,
        total=total,
    )


def add_usage(a: Usage, b: Usage) -> Usage:
    """Two calls' usage together (a turn of several model calls)."""
    return Usage(
        input=a.input + b.input,
        output=a.output + b.output,
        cache_read=a.cache_read + b.cache_read,
        cache_write=a.cache_write + b.cache_write,
        total=a.total + b.total,
    )


@define
class _ToolBuilder:
    """A tool call assembled from streamed pieces."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(factory=list)


@frozen
class StepOutcome:
    """How one model call ended."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage
    stop_reason: StopReason


class ModelStep:
    """One streamed model call; the :class:`StreamSink` of its own stream."""

    def __init__(
        self, provider: ModelProvider, call: ModelCall, on_text: Callable[[str], None]
    ) -> None:
        # The call is not kept: its system prompt and messages are the
        # largest things an open stream would hold, and the provider has
        # encoded them already.
        self._on_text_cb = on_text
        self._text: list[str] = []
        self._tools: dict[int, _ToolBuilder] = {}
        self._usage = Usage()
        self._closed = False
        self.stream: ModelStream = provider.stream(call, self)
        self.done: Deferred[StepOutcome] = self.stream.done.addCallback(self._ended)

    @property
    def text(self) -> str:
        """The text streamed so far."""
        return "".join(self._text)

    def close(self) -> None:
        """Ignore anything the stream still delivers (the step was abandoned)."""
        self._closed = True

    # -- StreamSink -----------------------------------------------------------------

    def on_text(self, delta: str) -> None:
        if self._closed or not delta:
            return
        self._text.append(delta)
        self._on_text_cb(delta)

    def on_tool_call(
        self, index: int, call_id: str | None, name: str | None, arguments_delta: str
    ) -> None:
        if self._closed:
            return
        builder = self._tools.get(index)
        if builder is None:
            builder = self._tools[index] = _ToolBuilder(index=index)
        if call_id and builder.id is None:
            builder.id = call_id
        if name and builder.name is None:
            builder.name = name
        if arguments_delta:
            builder.arguments.append(arguments_delta)

    def on_usage(self, usage: Usage) -> None:
        if not self._closed:
            self._usage = usage

    def _ended(self, outcome: StreamOutcome) -> StepOutcome:
        usage = with_total(outcome.usage if outcome.usage != Usage() else self._usage)
        calls = tuple(
            ToolCall(id=b.id or new_tool_call_id(), name=b.name, arguments="".join(b.arguments))
            for _, b in sorted(self._tools.items())
            if b.name
        )
        stop: StopReason = outcome.stop_reason
        if calls and stop == "stop":
            stop = "tool_calls"
        return StepOutcome(self.text, calls, usage, stop)
