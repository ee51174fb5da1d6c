"""The contract between the agent loop and a built-in tool.

A tool is a value-like object (name, description, JSON-Schema parameters) with
one method, :meth:`Tool.run`. The loop validates nothing itself: each tool
checks its own arguments and answers bad ones with ``ToolResult(is_error=True)``
(or by raising :class:`ToolArgumentError`, which the loop turns into the same),
so the model can read what went wrong. Cancelling the Deferred that ``run``
returned must stop the work (kill the process group, close the connection).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from attrs import field, frozen
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath

JSONSchema = Mapping[str, Any]


class ToolArgumentError(ValueError):
    """The model sent arguments the tool cannot use; the message is for the model."""


@frozen
class ToolResult:
    """What a tool call produced, as text the model reads next.

    ``details`` is structured data for events and the transcript (exit code,
    path, bytes written, ...); it never goes to the model.
    """

    content: str
    is_error: bool = False
    details: Mapping[str, Any] = field(factory=dict)


@frozen
class ToolContext:
    """Per-call facts a tool may use; everything else comes through its constructor."""

    agent_id: str
    session_key: str
    run_id: str
    tool_call_id: str
    #: The agent's workspace directory (exists before any tool runs).
    workspace: FilePath[str]
    #: Progress for long calls (``exec`` output so far): becomes a tool ``update`` event.
    on_update: Callable[[str], None] = lambda _text: None


class Tool(Protocol):
    """One built-in tool, OpenClaw-compatible in name and parameter schema."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters(self) -> JSONSchema:
        """The JSON Schema sent to the model as ``function.parameters``."""
        ...

    def run(self, arguments: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        """Start the call; the Deferred fires with a result (errors included) and
        cancelling it stops the work."""
        ...
