"""Exec policy: which commands ``exec`` runs directly, asks about, or refuses.

The value mirrors OpenClaw's effective ``security``/``ask`` pair (derived from
``tools.exec.mode`` by the config layer). Approval requests go to an injected
:class:`ExecApprover` (the gateway wires operator WebSocket approvals to it).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
from collections.abc import Iterable
from typing import Literal, Protocol

from attrs import field, frozen
from twisted.internet.defer import Deferred

Security = Literal["deny", "allowlist", "full"]
Ask = Literal["off", "on-miss", "always"]
Verdict = Literal["allow", "deny", "ask"]

#: Stdin-only filters allowed in allowlist mode when they get no file operands.
DEFAULT_SAFE_BINS = ("cut", "head", "tail", "tr", "uniq", "wc")


def _strs(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@frozen
class ExecPolicy:
    """The effective exec policy for one agent."""

    security: Security = "full"
    ask: Ask = "off"
    #: Bare command-name globs (``rg``) or resolved-path globs (``/usr/bin/*``).
    allowlist: tuple[str, ...] = field(default=(), converter=_strs)
    safe_bins: tuple[str, ...] = field(default=DEFAULT_SAFE_BINS, converter=_strs)
    #: What an unanswered (timed-out or undeliverable) approval becomes.
    ask_fallback: Security = "deny"


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
    #: Why approval is needed: ``allowlist-miss`` or ``ask-always``.
    reason: str


class ExecApprover(Protocol):
    """Asks a human; fires True to run once, False to deny. Cancellable."""

    def __call__(self, request: ApprovalRequest) -> Deferred[bool]: ...


_SPLIT = re.compile(r"\|\||&&|[|;&\n]")
_UNSUPPORTED = ("`", "$(", ">", "<", "<(")


def _segments(command: str) -> list[list[str]] | None:
    """The command's pipeline/chain segments as argv lists, or None if not analysable."""
    if any(token in command for token in _UNSUPPORTED):
        return None
    segments: list[list[str]] = []
    for part in _SPLIT.split(command):
        if not part.strip():
            continue
        try:
            argv = shlex.split(part)
        except ValueError:
            return None
        if not argv or "=" in argv[0]:
            return None  # env assignments cannot be bound to one executable
        segments.append(argv)
    return segments or None


def _matches(pattern: str, argv0: str, path_env: str | None) -> bool:
    if "/" in pattern:
        resolved = argv0 if "/" in argv0 else shutil.which(argv0, path=path_env)
        return resolved is not None and fnmatch.fnmatchcase(os.path.realpath(resolved), pattern)
    return "/" not in argv0 and fnmatch.fnmatchcase(argv0, pattern)


def allowlisted(policy: ExecPolicy, command: str, path_env: str | None = None) -> bool:
    """True when every segment is an allowlist match or an operand-free safe bin."""
    segments = _segments(command)
    if segments is None:
        return False
    for argv in segments:
        if any(_matches(p, argv[0], path_env) for p in policy.allowlist):
            continue
        if argv[0] in policy.safe_bins and all(a.startswith("-") for a in argv[1:]):
            continue
        return False
    return True


def evaluate(policy: ExecPolicy, command: str, path_env: str | None = None) -> tuple[Verdict, str]:
    """The verdict for ``command`` and the reason (for messages and approval requests)."""
    if policy.security == "deny":
        return "deny", "security=deny"
    if policy.ask == "always":
        return "ask", "ask-always"
    if policy.security == "full":
        return "allow", "security=full"
    if allowlisted(policy, command, path_env):
        return "allow", "allowlisted"
    if policy.ask == "on-miss":
        return "ask", "allowlist-miss"
    return "deny", "allowlist-miss"


def fallback_allows(policy: ExecPolicy, command: str, path_env: str | None = None) -> bool:
    """Whether ``askFallback`` lets ``command`` run when no answer came."""
    if policy.ask_fallback == "full":
        return True
    if policy.ask_fallback == "allowlist":
        return allowlisted(policy, command, path_env)
    return False
