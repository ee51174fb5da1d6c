"""Exec approvals: a command waits until an operator answers.

:class:`ApprovalBroker` is the exec tool's approver. A request becomes an
:class:`~openclaw.agents.types.ExecApprovalRequested` event for observers
(the WebSocket layer broadcasts it as ``exec.approval.requested`` to operator
clients) and waits for :meth:`ApprovalBroker.resolve` (the
``exec.approval.resolve`` method). The exec tool bounds the wait with the
policy's approval timeout and cancels it when the run is cancelled; either
way the request is withdrawn and observers see it resolved as denied. When
no operator client could see it, nobody could answer, so the request is
unanswered at once (the policy's ``askFallback`` decides): an observer returns True when
the event reached a client that can answer it.

With a shared session store (Redis) the instances share approvals through an
:class:`~openclaw.core.relay.ApprovalRelay`: a request is also a shared
pending record and an event for every instance's operators; any instance
lists and resolves it, the first answer wins, and the instance running the
command applies it. "Nobody could see it" then means no operator client on
any live instance (each instance keeps its count in Redis).

``allow-always`` runs the command and, as in OpenClaw, saves a durable grant
in the approvals document (:class:`~openclaw.agents.tools.exec_grants.ExecGrants`,
``<stateDir>/exec-approvals.json``) bound to the agent, the exact command,
its working directory and the model's ``env`` overrides: the next request
for it is approved at once, without an event, unless the effective ask mode
is ``always``. A request names the overrides (``envKeys``) for the operator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, get_args

from attrs import Factory, frozen
from twisted.internet import defer
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.tools.exec_grants import ExecGrants
from openclaw.agents.tools.exec_policy import ApprovalRequest, NoApproverError
from openclaw.agents.types import (
    ApprovalDecision,
    ApprovalEvent,
    ExecApprovalRequested,
    ExecApprovalResolved,
)
from openclaw.core.relay import ApprovalRelay

log = Logger()
_DECISIONS = frozenset(get_args(ApprovalDecision))


@frozen
class _Pending:
    event: ExecApprovalRequested
    answer: Deferred[bool]
    #: Whether allow-always may be saved (not while the ask mode is always).
    durable: bool = True
    #: The command's env overrides, which an allow-always grant is bound to.
    env: Mapping[str, str] = Factory(dict)


def _unanswered() -> Failure:
    # Twisted's TimeoutError, as Deferred.addTimeout raises it: the exec tool
    # treats it as unanswered (askFallback decides).
    refusal = NoApproverError("no operator client is connected")
    return Failure(refusal)  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted


def to_record(event: ExecApprovalRequested) -> dict[str, Any]:
    """A request as plain JSON-ready values (what crosses instances)."""
    return {
        "id": event.id,
        "command": event.command,
        "cwd": event.cwd,
        "agentId": event.agent_id,
        "sessionKey": event.session_key,
        "runId": event.run_id,
        "toolCallId": event.tool_call_id,
        "reason": event.reason,
        "createdAtMs": event.created_at_ms,
        "expiresAtMs": event.expires_at_ms,
        "envKeys": list(event.env_keys),
    }


def from_record(record: Mapping[str, Any]) -> ExecApprovalRequested:
    """The inverse of :func:`to_record`; KeyError/TypeError/ValueError when malformed."""
    return ExecApprovalRequested(
        id=str(record["id"]),
        command=str(record["command"]),
        cwd=str(record["cwd"]),
        agent_id=str(record["agentId"]),
        session_key=str(record["sessionKey"]),
        run_id=str(record["runId"]),
        tool_call_id=str(record["toolCallId"]),
        reason=str(record["reason"]),
        created_at_ms=int(record["createdAtMs"]),
        expires_at_ms=int(record["expiresAtMs"]),
        # Absent in records of instances from before env overrides were shown.
        env_keys=tuple(str(k) for k in record.get("envKeys") or ()),
    )


class ApprovalBroker:
    """The runtime's :class:`~openclaw.agents.types.ExecApprovals` and the exec
    tool's :class:`~openclaw.agents.tools.exec_policy.ExecApprover`."""

    def __init__(
        self,
        clock: IReactorTime,
        *,
        expires_after_seconds: float = 120.0,
        relay: ApprovalRelay | None = None,
        grants: ExecGrants | None = None,
    ) -> None:
        """
        :param expires_after_seconds: what requests announce as their expiry
            (the exec policy's approval timeout; the tool enforces it).
        :param relay: the instances sharing approvals (a shared store); None
            for one process.
        :param grants: where ``allow-always`` answers are kept; None keeps
            none (``allow-always`` then runs the command once).
        """
        self._clock = clock
        self._expires = expires_after_seconds
        self._relay = relay
        self._grants = grants
        self._attached = False
        self._pending: dict[str, _Pending] = {}
        self._observers: list[Callable[[ApprovalEvent], bool | None]] = []

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- ExecApprover ------------------------------------------------------------------

    def __call__(self, request: ApprovalRequest) -> Deferred[bool]:
        """Ask the operators; fires True (run) or False (denied). A command
        granted ``allow-always`` before runs without asking."""
        now = self._now()
        if (
            self._grants is not None
            and request.ask != "always"
            and self._grants.allows(request.agent_id, request.command, request.workdir, request.env)
        ):
            log.info(
                "exec approval for run {run_id}: allowed by an allow-always grant",
                run_id=request.run_id,
            )
            return succeed(True)
        event = ExecApprovalRequested(
            id=request.id,
            command=request.command,
            cwd=request.workdir,
            agent_id=request.agent_id,
            session_key=request.session_key,
            run_id=request.run_id,
            tool_call_id=request.tool_call_id,
            reason=request.reason,
            created_at_ms=now,
            expires_at_ms=now + int(self._expires * 1000),
            env_keys=tuple(sorted(request.env)),
        )
        answer: Deferred[bool] = Deferred(lambda _d: self._withdraw(request.id))
        self._pending[request.id] = _Pending(
            event, answer, request.ask != "always", dict(request.env)
        )
        reached = self._notify(event)
        if self._relay is None:
            if not reached:
                # No operator client could see it: unanswered, as on a timeout.
                del self._pending[request.id]
                return defer.fail(_unanswered())
        else:
            shared = self._relay.request(request.id, to_record(event))
            if not reached:
                shared.addCallbacks(
                    lambda elsewhere: self._seen_elsewhere(request.id, elsewhere),
                    lambda f: self._seen_elsewhere(request.id, 0, f),
                )
            else:
                self._quiet(shared)
        log.info(
            "exec approval {approval_id} requested for run {run_id}",
            approval_id=request.id,
            run_id=request.run_id,
        )
        return answer

    def _seen_elsewhere(self, approval_id: str, operators: int, why: Failure | None = None) -> None:
        """No local operator saw the request: it waits only when another
        instance has one, else it is unanswered at once."""
        if operators > 0 or approval_id not in self._pending:
            return
        if why is not None:
            log.warn("exec approval {approval_id}: {why}", approval_id=approval_id, why=why.value)
        pending = self._pending.pop(approval_id)
        if self._relay is not None:
            self._quiet(self._relay.resolve(approval_id, "deny", self._now(), "expired"))
        pending.answer.errback(_unanswered())

    def _withdraw(self, approval_id: str) -> None:
        """The tool stopped waiting (timeout, run cancelled): tell the operators."""
        if self._pending.pop(approval_id, None) is not None:
            now = self._now()
            self._notify(ExecApprovalResolved(approval_id, "deny", now, "expired"))
            if self._relay is not None:
                self._quiet(self._relay.resolve(approval_id, "deny", now, "expired"))

    def _quiet(self, d: Deferred[Any]) -> None:
        d.addErrback(lambda f: log.warn("approval relay: {why}", why=str(f.value)))

    # -- ExecApprovals -----------------------------------------------------------------

    def observe(self, listener: Callable[[ApprovalEvent], bool | None]) -> Callable[[], None]:
        self._observers.append(listener)
        if self._relay is not None and not self._attached:
            # Other instances' requests matter only where operators can connect.
            self._attached = True
            self._relay.attach_approvals(self)

        def stop() -> None:
            if listener in self._observers:
                self._observers.remove(listener)

        return stop

    def operators_connected(self, count: int) -> None:
        if self._relay is not None:
            self._relay.operators(count)

    def pending(self) -> Deferred[Sequence[ExecApprovalRequested]]:
        local = [p.event for p in self._pending.values()]
        if self._relay is None:
            return succeed(local)

        def merged(records: Sequence[Mapping[str, Any]]) -> Sequence[ExecApprovalRequested]:
            found = {e.id: e for e in local}
            for record in records:
                try:
                    event = from_record(record)
                except (KeyError, TypeError, ValueError):
                    continue
                found.setdefault(event.id, event)
            return sorted(found.values(), key=lambda e: (e.created_at_ms, e.id))

        def local_only(failure: Failure) -> Sequence[ExecApprovalRequested]:
            log.warn("exec approvals of other instances unavailable: {why}", why=failure.value)
            return local

        return self._relay.pending().addCallbacks(merged, local_only)

    def resolve(self, approval_id: str, decision: ApprovalDecision) -> Deferred[bool]:
        if self._relay is None:
            return succeed(self._resolved_here(approval_id, decision, self._now(), "operator"))
        now = self._now()

        def won(first: bool) -> bool:
            if not first:
                return False
            self._apply(approval_id, decision, now, "operator")
            return True

        def unshared(failure: Failure) -> bool | Failure:
            # The shared store is down: this instance can still answer its own.
            if approval_id in self._pending:
                return self._resolved_here(approval_id, decision, now, "operator")
            return failure

        return self._relay.resolve(approval_id, decision, now, "operator").addCallbacks(
            won, unshared
        )

    def _resolved_here(
        self, approval_id: str, decision: ApprovalDecision, ts: int, src: str
    ) -> bool:
        if approval_id not in self._pending:
            return False
        self._apply(approval_id, decision, ts, src)
        return True

    def _apply(self, approval_id: str, decision: ApprovalDecision, ts: int, source: str) -> None:
        """Tell this instance's operators; run or deny the command if it is ours."""
        log.info(
            "exec approval {approval_id}: {decision}", approval_id=approval_id, decision=decision
        )
        self._notify(ExecApprovalResolved(approval_id, decision, ts, source))
        pending = self._pending.pop(approval_id, None)
        if pending is not None:
            if decision == "allow-always" and pending.durable and self._grants is not None:
                event = pending.event
                self._grants.remember(event.agent_id, event.command, event.cwd, ts, pending.env)
            pending.answer.callback(decision != "deny")

    # -- ApprovalSink (other instances) ------------------------------------------------

    def remote_requested(self, record: Mapping[str, Any]) -> None:
        try:
            event = from_record(record)
        except (KeyError, TypeError, ValueError):
            log.warn("ignoring a malformed exec approval from another instance")
            return
        if event.id not in self._pending:
            self._notify(event)

    def remote_resolved(self, approval_id: str, decision: str, ts: int, source: str) -> None:
        if decision not in _DECISIONS:
            return
        self._apply(approval_id, decision, ts, source)  # type: ignore[arg-type]  # typing note: checked against _DECISIONS above

    def _notify(self, event: ApprovalEvent) -> bool:
        """Tell every observer; True when one says the event reached an operator."""
        reached = False
        for observer in list(self._observers):
            try:
                reached = bool(observer(event)) or reached
            except Exception:
                log.failure("an approval observer failed")
        return reached
