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

``allow-always`` is accepted and treated as ``allow-once``: this gateway
keeps no persistent approval list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from attrs import frozen
from twisted.internet import defer
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.tools.exec_policy import ApprovalRequest
from openclaw.agents.types import (
    ApprovalDecision,
    ApprovalEvent,
    ExecApprovalRequested,
    ExecApprovalResolved,
)

log = Logger()


@frozen
class _Pending:
    event: ExecApprovalRequested
    answer: Deferred[bool]


class ApprovalBroker:
    """The runtime's :class:`~openclaw.agents.types.ExecApprovals` and the exec
    tool's :class:`~openclaw.agents.tools.exec_policy.ExecApprover`."""

    def __init__(self, clock: IReactorTime, *, expires_after_seconds: float = 120.0) -> None:
        """
        :param expires_after_seconds: what requests announce as their expiry
            (the exec policy's approval timeout; the tool enforces it).
        """
        self._clock = clock
        self._expires = expires_after_seconds
        self._pending: dict[str, _Pending] = {}
        self._observers: list[Callable[[ApprovalEvent], bool | None]] = []

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- ExecApprover ------------------------------------------------------------------

    def __call__(self, request: ApprovalRequest) -> Deferred[bool]:
        """Ask the operators; fires True (run once) or False (denied)."""
        now = self._now()
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
        )
        answer: Deferred[bool] = Deferred(lambda _d: self._withdraw(request.id))
        self._pending[request.id] = _Pending(event, answer)
        if not self._notify(event):
            # No operator client could see it: unanswered, as on a timeout
            # (Twisted's TimeoutError, as Deferred.addTimeout raises it).
            del self._pending[request.id]
            refusal = defer.TimeoutError("no operator client is connected")
            return fail(Failure(refusal))  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted
        log.info(
            "exec approval {approval_id} requested for run {run_id}",
            approval_id=request.id,
            run_id=request.run_id,
        )
        return answer

    def _withdraw(self, approval_id: str) -> None:
        """The tool stopped waiting (timeout, run cancelled): tell the operators."""
        if self._pending.pop(approval_id, None) is not None:
            self._notify(ExecApprovalResolved(approval_id, "deny", self._now(), "expired"))

    # -- ExecApprovals -----------------------------------------------------------------

    def observe(self, listener: Callable[[ApprovalEvent], bool | None]) -> Callable[[], None]:
        self._observers.append(listener)

        def stop() -> None:
            if listener in self._observers:
                self._observers.remove(listener)

        return stop

    def pending(self) -> Sequence[ExecApprovalRequested]:
        return [p.event for p in self._pending.values()]

    def resolve(self, approval_id: str, decision: ApprovalDecision) -> bool:
        pending = self._pending.pop(approval_id, None)
        if pending is None:
            return False
        log.info(
            "exec approval {approval_id}: {decision}", approval_id=approval_id, decision=decision
        )
        self._notify(ExecApprovalResolved(approval_id, decision, self._now()))
        pending.answer.callback(decision != "deny")
        return True

    def _notify(self, event: ApprovalEvent) -> bool:
        """Tell every observer; True when one says the event reached an operator."""
        reached = False
        for observer in list(self._observers):
            try:
                reached = bool(observer(event)) or reached
            except Exception:
                log.failure("an approval observer failed")
        return reached
