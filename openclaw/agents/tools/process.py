"""``process``: list, poll, read, feed and stop backgrounded ``exec`` sessions.

Sessions are per agent (another agent's ids are invisible) and in memory only.
PTY-only actions (``send-keys``, ``submit``, ``paste``) answer with an error:
this gateway runs commands without a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from openclaw.agents.tools._common import error, guarded, opt_bool, opt_int, opt_str, req_str
from openclaw.agents.tools._proc import ProcessRegistry, ProcessSession
from openclaw.agents.tools.base import JSONSchema, ToolArgumentError, ToolContext, ToolResult
from openclaw.agents.tools.exec import clip

ACTIONS = ("list", "poll", "log", "write", "kill", "clear", "remove")
PTY_ACTIONS = ("send-keys", "submit", "paste")
MAX_POLL_WAIT_MS = 30_000
DEFAULT_LOG_LINES = 200
MAX_WRITE_CHARS = 1_000_000


class ProcessTool:
    """Manage background exec sessions."""

    name = "process"
    description = (
        "Manage background exec sessions: list, poll (new output + status), log "
        "(offset/limit lines), write (stdin data, eof), kill, clear, remove."
    )
    parameters: JSONSchema = {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": [*ACTIONS, *PTY_ACTIONS]},
            "sessionId": {"type": "string", "description": "Session id from exec"},
            "data": {"type": "string", "description": "stdin data for write"},
            "eof": {"type": "boolean", "description": "Close stdin after write"},
            "offset": {"type": "number", "description": "log: first line (0-based)"},
            "limit": {"type": "number", "description": "log: number of lines"},
            "timeout": {"type": "number", "description": "poll: wait up to this many ms"},
        },
        "required": ["action"],
    }

    def __init__(self, clock: IReactorTime, registry: ProcessRegistry) -> None:
        self._clock = clock
        self._registry = registry

    def run(self, arguments: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        """Dispatch on ``action``."""
        return guarded(self.name, self._run, arguments, context)

    def _run(self, args: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        action = req_str(args, "action", max_chars=32)
        if action in PTY_ACTIONS:
            return succeed(
                error(f"{action} needs a PTY-backed session; exec here runs without one")
            )
        if action not in ACTIONS:
            raise ToolArgumentError(f"action must be one of {', '.join(ACTIONS)}")
        if action == "list":
            rows = [s.summary() for s in self._registry.for_agent(context.agent_id)]
            lines = [f"{r['sessionId']} {r['status']} {r['command']}" for r in rows]
            return succeed(
                ToolResult(
                    content="\n".join(lines) or "No background sessions.",
                    details={"status": "ok", "sessions": rows},
                )
            )
        session_id = req_str(args, "sessionId", max_chars=64)
        session = self._registry.get(context.agent_id, session_id)
        if session is None:
            return succeed(error(f"No session found for {session_id}"))
        if action == "poll":
            wait = opt_int(args, "timeout", minimum=0) or 0
            return self._poll(session, min(wait, MAX_POLL_WAIT_MS))
        if action == "log":
            return succeed(self._log(session, args))
        if action == "write":
            data = opt_str(args, "data", max_chars=MAX_WRITE_CHARS) or ""
            eof = opt_bool(args, "eof") or False
            if not session.running:
                return succeed(error(f"Session {session_id} is not running"))
            session.write_stdin(data.encode("utf-8"), eof)
            msg = f"Wrote {len(data)} chars to session {session_id}" + (
                " and closed stdin" if eof else ""
            )
            return succeed(ToolResult(content=msg, details=session.summary()))
        if action == "kill":
            if not session.running:
                return succeed(error(f"Session {session_id} is not running"))
            session.terminate()
            return session.when_ended().addCallback(
                lambda s: ToolResult(content=f"Killed session {session_id}", details=s.summary())
            )
        if action == "clear":
            if session.running:
                return succeed(error(f"Session {session_id} is still running; kill it first"))
            self._registry.remove(session_id)
            return succeed(ToolResult(content=f"Cleared session {session_id}"))
        # remove
        if session.running:
            session.terminate()
        self._registry.remove(session_id)
        return succeed(ToolResult(content=f"Removed session {session_id}"))

    def _poll(self, session: ProcessSession, wait_ms: int) -> Deferred[ToolResult]:
        def report(_: object = None) -> ToolResult:
            text = clip(session.drain(), 30_000)
            summary = session.summary()
            status = summary["status"]
            footer = (
                "\n\nProcess still running."
                if session.running
                else (
                    f"\n\nProcess exited with code {summary['exitCode']}."
                    if summary["signal"] is None
                    else f"\n\nProcess terminated by {summary['signal']}."
                )
            )
            return ToolResult(
                content=(text or "(no new output)") + footer,
                is_error=status == "failed" and not session.killed,
                details=summary,
            )

        if wait_ms <= 0 or not session.running or session.pending:
            return succeed(report())
        d = session.when_output()
        d.addTimeout(wait_ms / 1000.0, self._clock, onTimeoutCancel=lambda _r, _t: None)
        return d.addCallback(report)

    def _log(self, session: ProcessSession, args: Mapping[str, Any]) -> ToolResult:
        offset = opt_int(args, "offset", minimum=0)
        limit = opt_int(args, "limit", minimum=1)
        lines = session.output.text().splitlines()
        total = len(lines)
        if offset is None and limit is None:
            start, end = max(0, total - DEFAULT_LOG_LINES), total
        elif limit is None:
            start, end = offset or 0, total
        else:
            start = offset if offset is not None else max(0, total - limit)
            end = min(total, start + limit)
        body = "\n".join(lines[start:end])
        hint = ""
        if start > 0:
            hint = f"\n\n[lines {start}-{end} of {total}; pass offset/limit for earlier output]"
        return ToolResult(
            content=clip(body, 30_000) + hint,
            details={
                **session.summary(),
                "offset": start,
                "lines": end - start,
                "totalLines": total,
            },
        )
