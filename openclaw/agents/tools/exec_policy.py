"""The approval side of exec policy: what an operator is asked, and who asks.

The policy value itself (``ExecPolicy``: security/ask/allowlist, ``evaluate``,
``harden``, ``on_unanswered``) is :mod:`openclaw.agents.tools.policy`'s. The
gateway implements :class:`ExecApprover` (an ``exec.approval.requested`` event
to operator WebSocket clients, answered by a method) and hands it to the exec
tool; the tool bounds every wait with the policy's approval timeout.
"""

from __future__ import annotations

from typing import Protocol

from attrs import frozen
from twisted.internet.defer import Deferred


@frozen
class ApprovalRequest:
    """What an operator is asked to approve."""

    id: str
    command: str
    workdir: str
    agent_id: str
    session_key: str
    run_id: str
    tool_call_id: str
    #: Why approval is needed (the policy's reason text).
    reason: str


class ExecApprover(Protocol):
    """Asks a human: fires True to run the command once, False to deny.

    The exec tool cancels the Deferred when the approval times out or the run
    is cancelled; an implementation should withdraw its pending request then.
    """

    def __call__(self, request: ApprovalRequest) -> Deferred[bool]: ...
