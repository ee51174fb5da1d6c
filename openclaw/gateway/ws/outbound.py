"""What the run hub sends and remembers, as values: the event every interested
connection gets (serialised once), its plain-JSON form for other gateway
instances, how a run ended (``agent.wait``), and the client-safe words for a
failure. :mod:`.events` (the hub) builds and routes them.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from attrs import frozen

from openclaw.agents.types import (
    AgentLoopError,
    FailureKind,
    ProviderError,
    RunAbortedError,
    RunTimeoutError,
)
from openclaw.gateway.ws.frames import dumps_json

RunStatus = Literal["ok", "error", "timeout", "aborted"]


def _json(payload: object) -> bytes:
    return dumps_json(payload)


class OutboundEvent:
    """One event for every interested connection.

    A *delta* event (assistant text) may be coalesced by a slow connection:
    it skips the event and later sends the next delta of the same run and
    stream with the skipped text prepended (:meth:`payload_json_with_prefix`).
    """

    __slots__ = ("_json", "delta", "delta_key", "name", "payload", "run_id", "terminal", "tool")

    def __init__(
        self,
        name: str,
        payload: dict[str, Any],
        *,
        run_id: str,
        delta_key: tuple[str, str] | None = None,
        delta: str = "",
        terminal: bool = False,
        tool: bool = False,
    ) -> None:
        self.name = name
        self.payload = payload
        self.run_id = run_id
        self.delta_key = delta_key
        self.delta = delta
        self.terminal = terminal
        self.tool = tool
        self._json: bytes | None = None

    @property
    def payload_json(self) -> bytes:
        """The payload serialised (once)."""
        if self._json is None:
            self._json = _json(self.payload)
        return self._json

    def payload_json_with_prefix(self, skipped: str) -> bytes:
        """The payload with ``skipped`` text put in front of this delta."""
        payload = dict(self.payload)
        if self.name == "chat":
            payload["deltaText"] = skipped + self.delta
        else:
            data = dict(payload.get("data") or {})
            data["delta"] = skipped + self.delta
            payload["data"] = data
        return _json(payload)


def event_to_wire(event: OutboundEvent) -> dict[str, Any]:
    """An event as plain JSON values (relayed to other gateway instances)."""
    key = event.delta_key
    return {"n": event.name, "p": event.payload, "r": event.run_id, "dk": key,
            "d": event.delta, "x": event.terminal, "tl": event.tool}  # fmt: skip


class EventSink(Protocol):
    """A connection, as the hub delivers to it."""

    @property
    def wants_tool_events(self) -> bool: ...

    def deliver(self, event: OutboundEvent) -> None: ...


@frozen
class RunOutcome:
    """How a run ended (what ``agent.wait`` reports)."""

    run_id: str
    status: RunStatus
    agent_id: str
    session_key: str
    started_at: int | None = None
    ended_at: int | None = None
    error: str | None = None
    #: The reply of a successful run (cut to MAX_REMEMBERED_REPLY characters).
    reply: str | None = None

    def as_wait_payload(self) -> dict[str, Any]:
        """``{runId, status, startedAt?, endedAt?, error?}``."""
        payload: dict[str, Any] = {"runId": self.run_id, "status": self.status}
        if self.started_at is not None:
            payload["startedAt"] = self.started_at
        if self.ended_at is not None:
            payload["endedAt"] = self.ended_at
        if self.error is not None:
            payload["error"] = self.error
        if self.reply is not None:
            payload["terminalReply"] = {"disposition": "visible", "text": self.reply}
        return payload


def error_kind(failure: BaseException) -> str:
    """OpenClaw's ``errorKind`` for a chat ``error`` event."""
    if isinstance(failure, RunTimeoutError):
        return "timeout"
    if isinstance(failure, ProviderError):
        return {
            FailureKind.RATE_LIMIT: "rate_limit",
            FailureKind.CONTEXT_OVERFLOW: "context_length",
            FailureKind.TIMEOUT: "timeout",
            FailureKind.OVERLOADED: "rate_limit",
        }.get(failure.kind, "unknown")
    return "unknown"


def failure_message(failure: BaseException) -> str:
    """A client-safe description of why a run failed."""
    if isinstance(failure, ProviderError):
        return f"LLM request failed: {failure.message}" if failure.message else "LLM request failed"
    if isinstance(failure, RunTimeoutError):
        return str(failure) or "agent run timed out"
    if isinstance(failure, RunAbortedError):
        return "agent run aborted"
    if isinstance(failure, AgentLoopError):
        return str(failure)  # our own words: the step limit or a persisted tool loop
    return "agent run failed"


__all__ = [
    "EventSink",
    "OutboundEvent",
    "RunOutcome",
    "RunStatus",
    "error_kind",
    "event_to_wire",
    "failure_message",
]
