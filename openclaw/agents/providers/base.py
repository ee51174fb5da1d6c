"""The model provider interface: one streamed model call, with flow control.

The runtime turns a session transcript plus the new turn into a
:class:`ModelCall`, hands it to a provider together with a :class:`StreamSink`,
and gets back a :class:`ModelStream` it can pause, resume and stop.
"""

from __future__ import annotations

from typing import Literal, Protocol

from attrs import frozen
from twisted.internet.defer import Deferred

from openclaw.agents.types import ClientTool, ImageInput, StopReason, StreamParams, ToolCall, Usage

Role = Literal["user", "assistant", "tool"]


@frozen
class ModelMessage:
    """One conversation message sent to the model (the system prompt is separate)."""

    role: Role
    content: str
    images: tuple[ImageInput, ...] = ()
    #: For assistant messages that called client tools.
    tool_calls: tuple[ToolCall, ...] = ()
    #: For ``tool`` messages: the call this result answers.
    tool_call_id: str | None = None
    #: For ``tool`` messages: the tool failed (Anthropic's ``is_error``).
    is_error: bool = False


@frozen
class ModelCall:
    """Everything a provider needs for one streamed completion."""

    #: The provider's own model id (``llama3.2``), without the ``provider/`` prefix.
    model: str
    messages: tuple[ModelMessage, ...]
    system_prompt: str | None = None
    tools: tuple[ClientTool, ...] = ()
    stream_params: StreamParams | None = None


@frozen
class StreamOutcome:
    """How a model stream ended."""

    stop_reason: StopReason
    usage: Usage


class StreamSink(Protocol):
    """Receives a model stream's output as it arrives, in order."""

    def on_text(self, delta: str) -> None:
        """New assistant text (never empty)."""

    def on_tool_call(
        self, index: int, call_id: str | None, name: str | None, arguments_delta: str
    ) -> None:
        """A piece of tool call ``index``: id and name on the first piece only."""

    def on_usage(self, usage: Usage) -> None:
        """Usage as reported so far (the last report wins)."""


class ModelStream(Protocol):
    """A running model call. ``stopProducing`` closes the upstream connection."""

    @property
    def done(self) -> Deferred[StreamOutcome]:
        """Fires when the stream ends; fails with ProviderError, or CancelledError after
        stopProducing. Accessing it more than once returns the same Deferred."""
        ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def stopProducing(self) -> None:
        """Abort: close the upstream connection (idempotent)."""
        ...


class ModelProvider(Protocol):
    """One upstream model API (``models.providers.<id>``)."""

    @property
    def provider_id(self) -> str: ...

    def stream(self, call: ModelCall, sink: StreamSink) -> ModelStream:
        """Start the call and return at once; failures arrive on ``done``."""
        ...
