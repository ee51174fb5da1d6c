"""The approval side of exec policy: what an operator is asked, and who asks.

The policy value itself (``ExecPolicy``: security/ask/allowlist, ``evaluate``,
``harden``, ``on_unanswered``) is :mod:`openclaw.agents.tools.policy`'s. The
gateway implements :class:`ExecApprover` (an ``exec.approval.requested`` event
to operator WebSocket clients, answered by a method) and hands it to the exec
tool; the tool bounds every wait with the policy's approval timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from attrs import Factory, frozen
from twisted.internet.defer import Deferred, TimeoutError

from openclaw.config.model import ExecAsk


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
    #: The effective ask mode: with ``always`` a durable ``allow-always``
    #: grant does not skip the question.
    ask: ExecAsk = "on-miss"
    #: The model's ``env`` overrides for the command: the operator is shown
    #: their names, and an ``allow-always`` grant covers only these values.
    env: Mapping[str, str] = Factory(dict)


class ExecApprover(Protocol):
    """Asks a human: fires True to run the command, False to deny.

    The exec tool cancels the Deferred when the approval times out or the run
    is cancelled; an implementation should withdraw its pending request then.
    """

    def __call__(self, request: ApprovalRequest) -> Deferred[bool]: ...


class NoApproverError(TimeoutError):
    """No operator client could see the request: unanswered at once, as on a
    timeout (``askFallback`` decides), but the model is told why."""
