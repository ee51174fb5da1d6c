"""WebSocket methods of the agent loop: ``sessions.compact`` and exec approvals.

``sessions.compact`` ``{key, agentId?}`` summarises a session's older
history now and answers ``{ok, key, compacted, result: {tokensBefore,
tokensAfter}}`` (OpenClaw's shape; ``maxLines`` truncation is not offered).
``exec.approval.resolve`` ``{id, decision}`` answers a pending exec approval
(``allow-once``, ``allow-always``, ``deny``); ``exec.approval.list`` lists
those still waiting. The ``exec.approval.requested`` / ``.resolved`` events
are broadcast by the factory (:func:`approval_event`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, get_args

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.types import (
    ApprovalDecision,
    ApprovalEvent,
    CompactionReport,
    ExecApprovalRequested,
    ProviderError,
    UnknownAgentError,
)
from openclaw.core.unavailable import SharedStateUnavailableError
from openclaw.gateway.ws.frames import INVALID_REQUEST, UNAVAILABLE, RequestError, invalid_params
from openclaw.sessions.keys import (
    InvalidSessionKeyError,
    canonical_session_key,
    normalize_agent_id,
    parse_agent_from_key,
)

if TYPE_CHECKING:
    from openclaw.gateway.ws.methods import CallContext

log = Logger()

#: The scope approval events and methods need (``operator.admin`` implies it).
SCOPE_APPROVALS: Final = "operator.approvals"
_DECISIONS: Final = frozenset(get_args(ApprovalDecision))


def _string(params: Mapping[str, Any], name: str, method: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value.strip():
        raise invalid_params(method, f"{name} must be a non-empty string")
    return value.strip()


def sessions_compact(ctx: CallContext, params: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
    """Compact one session (after any run on it finishes)."""
    method = "sessions.compact"
    raw_key = _string(params, "key", method)
    if params.get("maxLines") is not None:
        raise invalid_params(method, "maxLines (truncation) is not supported by this gateway")
    hint = params.get("agentId")
    if hint is not None and not isinstance(hint, str):
        raise invalid_params(method, "agentId must be a string")
    runtime = ctx.services.runtime
    base = normalize_agent_id(hint) if hint else runtime.default_agent_id
    try:
        key = canonical_session_key(base, raw_key)
    except InvalidSessionKeyError as e:
        raise invalid_params(method, str(e)) from None
    agent = parse_agent_from_key(key) or base
    try:
        compacting = runtime.compact_session(agent, key)
    except UnknownAgentError:
        raise invalid_params(method, f'unknown agent id "{agent}"') from None
    except ProviderError as e:
        raise RequestError(UNAVAILABLE, e.message) from None

    def answer(report: CompactionReport) -> dict[str, Any]:
        log.info(
            "session {session_key} compacted by {conn_id}: {compacted}",
            session_key=key,
            conn_id=ctx.connection.conn_id,
            compacted=report.compacted,
        )
        out: dict[str, Any] = {"ok": True, "key": key, "compacted": report.compacted}
        if report.compacted:
            out["result"] = {
                "tokensBefore": report.tokens_before,
                "tokensAfter": report.tokens_after,
            }
        elif report.reason:
            out["reason"] = report.reason
        return out

    def failed(failure: Failure) -> dict[str, Any]:
        error = failure.value
        if isinstance(error, ProviderError):
            raise RequestError(UNAVAILABLE, f"compaction failed: {error.message}")
        log.failure("sessions.compact {session_key} failed", failure, session_key=key)
        raise RequestError(UNAVAILABLE, f"compaction failed: {type(error).__name__}")

    return compacting.addCallbacks(answer, failed)


def exec_approval_resolve(ctx: CallContext, params: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
    """Answer a pending exec approval (of any instance, with a shared store)."""
    method = "exec.approval.resolve"
    approval_id = _string(params, "id", method)
    decision = _string(params, "decision", method)
    if decision not in _DECISIONS:
        raise invalid_params(method, "decision must be allow-once, allow-always or deny")
    resolving = ctx.services.runtime.approvals.resolve(approval_id, decision)  # type: ignore[arg-type]  # typing note: checked against _DECISIONS above

    def answered(won: bool) -> dict[str, Any]:
        if not won:
            raise RequestError(INVALID_REQUEST, f"unknown or expired approval id: {approval_id}")
        log.info(
            "exec approval {approval_id} {decision} by {conn_id}",
            approval_id=approval_id,
            decision=decision,
            conn_id=ctx.connection.conn_id,
        )
        return {"ok": True, "id": approval_id, "decision": decision}

    return resolving.addCallbacks(answered, _unavailable)


def exec_approval_list(ctx: CallContext, params: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
    """The approvals still waiting (for a client that connected after the event)."""
    return ctx.services.runtime.approvals.pending().addCallback(
        lambda pending: {"approvals": [requested_payload(p) for p in pending]}
    )


def _unavailable(failure: Failure) -> dict[str, Any]:
    """The shared store could not be asked (another instance's approval)."""
    error = failure.value
    if isinstance(error, SharedStateUnavailableError):
        raise RequestError(UNAVAILABLE, "exec approvals are unavailable: the shared store is down")
    failure.raiseException()
    raise AssertionError("unreachable")


def requested_payload(event: ExecApprovalRequested) -> dict[str, Any]:
    """``exec.approval.requested``'s payload (OpenClaw's shape)."""
    request: dict[str, Any] = {
        "command": event.command,
        "cwd": event.cwd,
        "host": "gateway",
        "agentId": event.agent_id,
        "sessionKey": event.session_key,
        "runId": event.run_id,
        "toolCallId": event.tool_call_id,
        "reason": event.reason,
    }
    if event.env_keys:
        # As OpenClaw: the names of the env overrides the command runs with.
        request["envKeys"] = list(event.env_keys)
    return {
        "id": event.id,
        "request": request,
        "createdAtMs": event.created_at_ms,
        "expiresAtMs": event.expires_at_ms,
    }


def approval_event(event: ApprovalEvent) -> tuple[str, dict[str, Any]]:
    """The WebSocket event ``(name, payload)`` for a broker event."""
    if isinstance(event, ExecApprovalRequested):
        return "exec.approval.requested", requested_payload(event)
    return "exec.approval.resolved", {
        "id": event.id,
        "decision": event.decision,
        "ts": event.ts,
        "source": event.source,
    }
