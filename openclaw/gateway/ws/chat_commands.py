"""Chat messages that are commands for the gateway, not turns for the model.

OpenClaw's gateway acts on a few standalone slash commands itself, so they
never reach the model (and so never cost a turn with the whole history):

- ``chat.send``: ``/stop`` (and OpenClaw's plain stop words: ``stop``,
  ``abort``, ``please stop``...) aborts the session's runs as ``chat.abort``
  does; ``/new`` and ``/reset`` reset the session as ``sessions.reset`` does
  (OpenClaw lets only ``operator.admin`` do that); ``/compact [focus]``
  compacts it as ``sessions.compact`` does.
- ``agent``: ``/new`` and ``/reset`` only (and only with ``operator.admin``:
  without it the call is ``FORBIDDEN``, as OpenClaw's method scopes say).

A standalone command's answer (``✅ New session started.``, the compaction
result...) reaches the client as the run's final reply: a :class:`CommandRun`
carries it through the run hub (chat ``final`` event, ``agent.wait``) and the
idempotency cache like a turn's. Text after ``/new `` runs as a turn in the
fresh session. Over HTTP chat completions OpenClaw sends ``/new`` to the model
as text, and so does this gateway (nothing here is used there).

:func:`run_command` does the work; :mod:`.run_methods` answers the methods.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, Literal

from attrs import frozen
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.types import (
    AgentEvent,
    AgentResult,
    CompactionReport,
    LifecycleEvent,
    ProviderError,
)
from openclaw.gateway.ws.calls import CallContext
from openclaw.gateway.ws.frames import FORBIDDEN, RequestError
from openclaw.gateway.ws.handshake import SCOPE_ADMIN, has_scope
from openclaw.gateway.ws.session_methods import reset_session
from openclaw.sessions.entry import SessionEntry

log = Logger()

#: OpenClaw's agent-method pattern: ``/new`` or ``/reset``, then any follow-up text.
_RESET_RE: Final = re.compile(r"^/(new|reset)(?:\s+([\s\S]*))?$", re.IGNORECASE)
_SOFT_RE: Final = re.compile(r"^soft(?:\s|$)", re.IGNORECASE)
_COMPACT_RE: Final = re.compile(r"^/compact(?:$|[\s:])([\s\S]*)$", re.IGNORECASE)
#: Whole messages OpenClaw's chat.send takes for ``/stop`` (compared lower-cased,
#: apostrophes straightened, spaces collapsed and trailing punctuation dropped).
_STOP_WORDS: Final = frozenset(
    {
        "stop", "esc", "abort", "exit", "interrupt", "detente", "deten", "detén", "arrete",
        "arrête", "停止", "停下来", "暂停", "やめて", "止めて", "रुको", "توقف", "стоп",
        "остановись", "останови", "остановить", "прекрати", "halt", "anhalten", "aufhören",
        "hoer auf", "stopp", "pare", "stop openclaw", "openclaw stop", "stop action",
        "stop current action", "stop run", "stop current run", "stop agent", "stop the agent",
        "stop don't do anything", "stop dont do anything", "stop do not do anything",
        "stop doing anything", "do not do that", "please stop", "stop please",
    }
)  # fmt: skip
#: ... where the punctuation includes the full-width forms and curly quotes.
_TRAILING_PUNCTUATION: Final = re.compile(
    r"[.!?\uff01\uff1f\u2026,\uff0c\u3002;\uff1b:\uff1a'\"\u2019\u201d)\]}]+$"
)

#: OpenClaw's acknowledgements (clients may show or match them).
NEW_SESSION_TEXT: Final = "✅ New session started."
SESSION_RESET_TEXT: Final = "✅ Session reset."
RESET_DENIED_TEXT: Final = (
    "⚠️ Not reset: resetting a session needs the operator.admin scope. "
    "Send your message without the command, or ask an administrator."
)
SOFT_RESET_TEXT: Final = "⚠️ /reset soft is not supported by this gateway; nothing was reset."


@frozen
class ResetCommand:
    """``/new`` or ``/reset``, with the text to run afterwards (may be empty)."""

    reason: Literal["new", "reset"]
    follow_up: str
    #: ``/reset soft ...``: OpenClaw keeps the transcript; this gateway cannot.
    soft: bool


@frozen
class CompactCommand:
    """``/compact``, with what the summary should focus on."""

    focus: str | None


ChatCommand = ResetCommand | CompactCommand


@frozen
class Notice:
    """A command answered without a turn: ``text`` (when known) is the reply."""

    text: Deferred[str]
    session_id: str | None = None


@frozen
class FollowUp:
    """A command done; ``text`` now runs as an ordinary turn."""

    text: str


def parse_reset(message: str) -> ResetCommand | None:
    """``/new`` or ``/reset`` (what the ``agent`` method acts on)."""
    match = _RESET_RE.match(message.strip())
    if match is None:
        return None
    reason: Literal["new", "reset"] = "new" if match.group(1).lower() == "new" else "reset"
    follow_up = (match.group(2) or "").strip()
    soft = reason == "reset" and _SOFT_RE.match(follow_up) is not None
    return ResetCommand(reason, follow_up, soft)


def parse_chat_command(message: str) -> ChatCommand | None:
    """The command ``chat.send`` acts on besides ``/stop`` (see :func:`is_stop`)."""
    reset = parse_reset(message)
    if reset is not None:
        return reset
    match = _COMPACT_RE.match(message.strip())
    if match is None:
        return None
    focus = match.group(1).strip().removeprefix(":").strip()
    return CompactCommand(focus or None)


def is_stop(message: str) -> bool:
    """True for a chat message that asks to abort the session's run."""
    lowered = message.strip().lower()
    if not lowered:
        return False
    normal = re.sub(r"\s+", " ", lowered.replace("\u2019", "'").replace("`", "'"))
    normal = _TRAILING_PUNCTUATION.sub("", normal).strip()
    return lowered == "/stop" or normal == "/stop" or normal in _STOP_WORDS


def require_reset_scope(ctx: CallContext) -> None:
    """The ``agent`` method resets only for ``operator.admin`` (OpenClaw's scope)."""
    if not has_scope(ctx.connection.scopes, SCOPE_ADMIN):
        raise RequestError(
            FORBIDDEN,
            f"missing scope: {SCOPE_ADMIN}",
            details={
                "code": "MISSING_SCOPE",
                "missingScope": SCOPE_ADMIN,
                "requiredScopes": [SCOPE_ADMIN],
            },
        )


def run_command(
    ctx: CallContext, command: ChatCommand, agent_id: str, session_key: str
) -> Deferred[Notice | FollowUp]:
    """Do ``command`` on the session. A refused reset (a run in flight) fails
    with ``SESSION_BUSY``; a chat.send without ``operator.admin`` gets a notice
    instead (the ``agent`` method checks the scope before calling this)."""
    if isinstance(command, CompactCommand):
        return succeed(Notice(_compact(ctx, command, agent_id, session_key)))
    if command.soft:
        return succeed(Notice(succeed(SOFT_RESET_TEXT)))
    if not has_scope(ctx.connection.scopes, SCOPE_ADMIN):
        return succeed(Notice(succeed(RESET_DENIED_TEXT)))

    def reset(entry: SessionEntry) -> Notice | FollowUp:
        if command.follow_up:
            return FollowUp(command.follow_up)
        text = NEW_SESSION_TEXT if command.reason == "new" else SESSION_RESET_TEXT
        return Notice(succeed(text), entry.session_id)

    return maybeDeferred(reset_session, ctx, agent_id, session_key).addCallback(reset)


def _compact(
    ctx: CallContext, command: CompactCommand, agent_id: str, session_key: str
) -> Deferred[str]:
    """Compact as ``sessions.compact`` does (after any run on the session); the
    reply says what happened, never fails."""
    runtime = ctx.services.runtime

    def done(report: CompactionReport) -> str:
        log.info(
            "session {session_key} compacted by /compact from {conn_id}: {compacted}",
            session_key=session_key,
            conn_id=ctx.connection.conn_id,
            compacted=report.compacted,
        )
        if report.compacted:
            return f"⚙️ Compacted ({report.tokens_before} → {report.tokens_after} tokens)."
        return f"⚙️ Compaction skipped: {report.reason or 'nothing to compact'}."

    def failed(failure: Failure) -> str:
        if isinstance(failure.value, ProviderError):
            return f"⚙️ Compaction failed: {failure.value.message}"
        log.failure("/compact of {session_key} failed", failure, session_key=session_key)
        return "⚙️ Compaction failed."

    return maybeDeferred(
        runtime.compact_session, agent_id, session_key, focus=command.focus
    ).addCallbacks(done, failed)


class CommandRun:
    """A command's reply as a run (an ``AgentRun``) that starts and ends at once,
    so that the run hub sends it as the chat ``final`` (after a lifecycle
    start and end) and ``agent.wait`` and the idempotency cache see it as they
    see a turn's. Nothing to cancel: the command already ran."""

    def __init__(self, run_id: str, agent_id: str, session_key: str) -> None:
        self._run_id = run_id
        self._agent_id = agent_id
        self._session_key = session_key
        self._result: AgentResult | None = None
        self._waiters: list[Deferred[AgentResult]] = []
        self._listeners: list[Callable[[AgentEvent], None]] = []

    @property
    def run_id(self) -> str:
        """The request's idempotency key."""
        return self._run_id

    @property
    def agent_id(self) -> str:
        """The session's agent."""
        return self._agent_id

    @property
    def session_key(self) -> str:
        """The session the command acted on."""
        return self._session_key

    @property
    def result(self) -> Deferred[AgentResult]:
        """The reply, once :meth:`reply` gave it (a new Deferred per access)."""
        if self._result is not None:
            return succeed(self._result)

        def forget(d: Deferred[AgentResult]) -> None:
            if d in self._waiters:
                self._waiters.remove(d)

        d: Deferred[AgentResult] = Deferred(forget)
        self._waiters.append(d)
        return d

    def reply(self, text: str, session_id: str | None, now_ms: int) -> None:
        """Finish with ``text`` as the reply (once)."""
        if self._result is not None:
            return
        run_id = self._run_id
        for event in (
            LifecycleEvent(run_id, "start", now_ms, started_at=now_ms),
            LifecycleEvent(
                run_id, "end", now_ms, started_at=now_ms, ended_at=now_ms, stop_reason="stop"
            ),
        ):
            for listener in list(self._listeners):
                listener(event)
        self._listeners.clear()
        self._result = AgentResult(
            run_id=run_id,
            agent_id=self._agent_id,
            session_key=self._session_key,
            session_id=session_id or "",
            text=text,
            started_at=now_ms,
            ended_at=now_ms,
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(self._result)

    def subscribe(self, listener: Callable[[AgentEvent], None]) -> Callable[[], None]:
        """Call ``listener`` with the lifecycle start and end (none once replied)."""
        if self._result is not None:
            return _nothing
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def cancel(self) -> None:
        """Nothing to abort: the command already ran."""

    def pauseProducing(self) -> None:
        """Nothing streams."""

    def resumeProducing(self) -> None:
        """Nothing streams."""


def _nothing() -> None:
    """Unsubscribe from a run without events."""
