"""``exec``: run a shell command in the workspace, in its own process group.

Foreground calls wait up to ``yieldMs`` and then hand the still-running
command to the ``process`` tool (``status: "running"`` + ``sessionId``);
``background: true`` hands it over at once. ``timeoutSeconds`` bounds the
command's whole life, backgrounded or not. Cancelling the call's Deferred
while it is in the foreground kills the whole process group. A process that
leaves the group (``setsid``) escapes these kills; it cannot hold the call
open, though (see ``ProcessSession._release_pipes``).

Policy: the :class:`~openclaw.agents.tools.exec_policy.ExecPolicy` says run,
ask, or refuse; asking goes to the injected approver, and no answer within
``approval_timeout`` (or no approver at all) falls back to ``askFallback``.
"""

from __future__ import annotations

import os
import secrets as _secrets
from collections.abc import Iterable, Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.tools._common import error, guarded, opt_bool, opt_int, opt_str, req_str
from openclaw.agents.tools._paths import confine
from openclaw.agents.tools._proc import ProcessRegistry, ProcessSession, shell_argv
from openclaw.agents.tools.base import JSONSchema, ToolArgumentError, ToolContext, ToolResult
from openclaw.agents.tools.exec_env import DEFAULT_PASSTHROUGH, build_env, parse_overrides
from openclaw.agents.tools.exec_match import program_resolver
from openclaw.agents.tools.exec_policy import ApprovalRequest, ExecApprover, NoApproverError
from openclaw.agents.tools.limits import DEFAULT_EXEC_LIMITS, ExecLimits, ExecReactor
from openclaw.agents.tools.policy import ExecPolicy, ExecVerdict

_log = Logger()

MAX_COMMAND_CHARS = 100_000

PTY_WARNING = "Warning: pty is not supported on this gateway; the command ran without a terminal."
#: What the model reads after a timeout (OpenClaw's words): the kill may have
#: come after the command's effects.
TIMEOUT_GUIDANCE = (
    "The command was terminated, but external side effects may already have completed. "
    "Verify the resulting state before retrying. Do not automatically rerun "
    "non-idempotent commands. Use a higher timeout only when the command is known to be "
    "safe to retry."
)
#: Added when the process tool is there to follow a backgrounded command.
TIMEOUT_BACKGROUND_HINT = (
    "If it should keep running, start it with exec background=true or yieldMs so "
    "OpenClaw can register a pollable process session. Do not rely on shell "
    "backgrounding with a trailing &."
)


def clip(text: str, limit: int) -> str:
    """Head and tail of ``text`` within ``limit`` characters, with a marker."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n\n[... {len(text) - 2 * half} characters omitted ...]\n\n{text[-half:]}"


class ExecTool:
    """Run shell commands (``/bin/sh -c``) for the model."""

    name = "exec"
    description = (
        "Run a shell command in the workspace. Long commands move to the background "
        "after yieldMs (or at once with background: true); use the process tool to "
        "poll, read logs, write stdin or kill them."
    )
    parameters: JSONSchema = {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "Shell command to run"},
            "workdir": {"type": "string", "description": "Working directory (default: workspace)"},
            "env": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": (
                    "Environment overrides (PATH, HOME, loader, interpreter, git and "
                    "pager hooks and credential names are refused)"
                ),
            },
            "yieldMs": {"type": "number", "description": "Background after this many ms"},
            "background": {"type": "boolean", "description": "Run in the background at once"},
            "timeoutSeconds": {
                "type": "number",
                "description": "Kill the command after this many seconds (0 disables)",
            },
            "pty": {"type": "boolean", "description": "Pseudo-terminal (not supported here)"},
            "host": {"type": "string", "enum": ["auto", "sandbox", "gateway", "node"]},
            "ask": {"type": "string", "enum": ["off", "on-miss", "always"]},
            "elevated": {"type": "boolean"},
            "node": {"type": "string"},
        },
        "required": ["command"],
    }

    def __init__(
        self,
        reactor: ExecReactor,
        registry: ProcessRegistry,
        *,
        policy: ExecPolicy,
        approver: ExecApprover | None = None,
        limits: ExecLimits = DEFAULT_EXEC_LIMITS,
        base_env: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        env_passthrough: Iterable[str] = DEFAULT_PASSTHROUGH,
        path_prepend: Iterable[str] = (),
        background_enabled: bool = True,
        setsid_path: str | None = None,
    ) -> None:
        self._reactor = reactor
        self._registry = registry
        self._policy = policy
        self._approver = approver
        self._limits = limits
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._secrets = frozenset(s for s in secrets if s)
        self._passthrough = tuple(env_passthrough)
        self._path_prepend = tuple(path_prepend)
        self._background_enabled = background_enabled
        if not background_enabled:
            # Without process nothing can follow a background command, so the
            # model is not offered one (OpenClaw drops the two fields too).
            self.description = "Run a shell command in the workspace and wait for it to finish."
            properties = {
                k: v
                for k, v in self.parameters["properties"].items()
                if k not in ("yieldMs", "background")
            }
            self.parameters = {**self.parameters, "properties": properties}
        self._setsid = setsid_path
        self._live: set[ProcessSession] = set()

    @staticmethod
    def default_passthrough() -> tuple[str, ...]:
        """The gateway environment names commands get by default."""
        return DEFAULT_PASSTHROUGH

    def when_idle(self) -> Deferred[None]:
        """Fires once every foreground command this tool started has ended and its
        group is gone (cancelled calls included): for shutdown and tests."""
        waits = [s.when_ended() for s in self._live]
        return gatherResults(waits).addCallback(lambda _: None)

    def stop_all(self) -> Deferred[None]:
        """Terminate every foreground command (gateway shutdown)."""
        for session in list(self._live):
            session.terminate()
        return self.when_idle()

    def run(self, arguments: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        """Validate, apply policy (maybe ask), then run."""
        return guarded(self.name, self._run, arguments, context)

    # -- argument handling ---------------------------------------------------------

    def _run(self, args: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        command = req_str(args, "command", max_chars=MAX_COMMAND_CHARS)
        if not command.strip():
            raise ToolArgumentError("command must not be empty")
        host = opt_str(args, "host", max_chars=16) or "auto"
        if host not in ("auto", "gateway"):
            if host in ("sandbox", "node"):
                raise ToolArgumentError(f"host={host} is not available on this gateway")
            raise ToolArgumentError("host must be one of auto, sandbox, gateway, node")
        ask = opt_str(args, "ask", max_chars=16)
        if ask is not None and ask not in ("off", "on-miss", "always"):
            raise ToolArgumentError("ask must be one of off, on-miss, always")
        opt_bool(args, "elevated")
        pty = opt_bool(args, "pty")
        overrides = parse_overrides(args.get("env"))
        yield_ms = opt_int(args, "yieldMs", minimum=0, maximum=86_400_000)
        background = opt_bool(args, "background") or False
        timeout = args.get("timeoutSeconds", args.get("timeout"))
        if timeout is None:
            timeout_s = self._limits.timeout_seconds
        elif isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ToolArgumentError("timeoutSeconds must be a number")
        elif not 0 <= timeout <= 7 * 86_400:
            raise ToolArgumentError("timeoutSeconds must be between 0 and 604800")
        else:
            timeout_s = float(timeout)
        cwd = self._workdir(opt_str(args, "workdir", max_chars=4096), context)
        env = build_env(
            self._base_env,
            secrets=self._secrets,
            passthrough=self._passthrough,
            overrides=overrides,
            path_prepend=self._path_prepend,
        )
        policy = self._policy.harden(
            "always" if ask == "always" else "on-miss" if ask == "on-miss" else None
        )
        verdict = policy.evaluate(
            command, program_resolver(cwd, env.get("PATH"), env.get("HOME")), overrides
        )
        warnings = [PTY_WARNING] if pty else []

        def start(_: object = None) -> Deferred[ToolResult]:
            return self._spawn(
                command, cwd, env, timeout_s, yield_ms, background, warnings, context
            )

        if verdict.action == "run":
            return start()
        if verdict.action == "deny":
            return _done(_denied("gateway", verdict.reason, command))
        return self._ask(policy, verdict, command, cwd, overrides, context).addCallback(
            lambda allowed: start() if allowed is True else allowed
        )

    def _workdir(self, raw: str | None, context: ToolContext) -> str:
        workspace = context.workspace.path
        if raw is None or raw in ("", "."):
            return os.path.realpath(workspace)
        if self._limits.workdir_in_workspace:
            path = confine(workspace, raw, name="workdir")
        else:
            path = os.path.realpath(raw if os.path.isabs(raw) else os.path.join(workspace, raw))
        if not os.path.isdir(path):
            raise ToolArgumentError(f"workdir does not exist or is not a directory: {raw}")
        return path

    # -- approvals -----------------------------------------------------------------

    def _ask(
        self,
        policy: ExecPolicy,
        verdict: ExecVerdict,
        command: str,
        cwd: str,
        overrides: Mapping[str, str],
        context: ToolContext,
    ) -> Deferred[bool | ToolResult]:
        approval_id = _secrets.token_hex(8)

        def unanswered(why: str) -> bool | ToolResult:
            fallback = policy.on_unanswered(verdict)
            if fallback.action == "run":
                return True
            return _denied(approval_id, f"{why}: {fallback.reason}", command)

        if self._approver is None:
            return _done(unanswered("no approval route"))
        request = ApprovalRequest(
            id=approval_id,
            command=command,
            workdir=cwd,
            agent_id=context.agent_id,
            session_key=context.session_key,
            run_id=context.run_id,
            tool_call_id=context.tool_call_id,
            reason=verdict.reason,
            ask=policy.ask,
            env=dict(overrides),
        )
        d = self._approver(request)
        d.addTimeout(policy.approval_timeout_seconds, self._reactor)

        def answered(allowed: bool) -> bool | ToolResult:
            return True if allowed is True else _denied(approval_id, "denied by operator", command)

        def no_answer(f: Failure) -> bool | ToolResult:
            if not isinstance(f.value, TimeoutError):
                f.raiseException()
            if isinstance(f.value, NoApproverError):
                return unanswered("no operator client is connected to approve it")
            return unanswered("approval timed out")

        return d.addCallbacks(answered, no_answer)

    # -- running -------------------------------------------------------------------

    def _spawn(
        self,
        command: str,
        cwd: str,
        env: Mapping[str, str],
        timeout_s: float,
        yield_ms: int | None,
        background: bool,
        warnings: list[str],
        context: ToolContext,
    ) -> Deferred[ToolResult]:
        session = ProcessSession(
            self._reactor,
            agent_id=context.agent_id,
            command=command,
            cwd=cwd,
            max_output_chars=self._limits.max_output_chars,
            kill_grace_seconds=self._limits.kill_grace_seconds,
            on_output=context.on_update,
        )
        try:
            session.start(self._reactor, shell_argv(command, self._setsid), env, timeout_s)
        except OSError as e:
            return _done(error(f"exec failed to start: {e.strerror or e}"))
        _log.info(
            "exec started pid={pid} agent={agent} run={run_id}",
            pid=session.pid,
            agent=context.agent_id,
            run_id=context.run_id,
        )
        self._live.add(session)
        self._registry.track(session)
        session.when_ended().addCallback(lambda s: self._live.discard(s))
        can_background = self._background_enabled
        if can_background and background:
            return _done(self._backgrounded(session, warnings))

        state = {"settled": False}

        def cancel(_: Deferred[ToolResult]) -> None:
            if not state["settled"]:
                state["settled"] = True
                session.terminate()

        result: Deferred[ToolResult] = Deferred(cancel)
        yield_call = None
        if can_background:
            delay = (self._limits.yield_ms if yield_ms is None else yield_ms) / 1000.0
            yield_call = self._reactor.callLater(
                delay, self._yield, session, result, state, warnings
            )

        def ended(s: ProcessSession) -> None:
            if yield_call is not None and yield_call.active():
                yield_call.cancel()
            if not state["settled"]:
                state["settled"] = True
                result.callback(self._finished(s, warnings, timeout_s))

        session.when_ended().addCallback(ended)
        return result

    def _yield(
        self,
        session: ProcessSession,
        result: Deferred[ToolResult],
        state: dict[str, bool],
        warnings: list[str],
    ) -> None:
        if not state["settled"] and session.running:
            state["settled"] = True
            result.callback(self._backgrounded(session, warnings))

    def _backgrounded(self, session: ProcessSession, warnings: list[str]) -> ToolResult:
        self._registry.add(session)
        session.on_output = lambda _t: None
        tail = session.output.clipped(2000)
        text = _warned(
            warnings,
            f"Command still running (session {session.id}, pid {session.pid}). "
            "Use process (list/poll/log/write/kill) for follow-up.",
        )
        if tail:
            text += f"\n\n{tail}"
        return ToolResult(content=text, details={**session.summary(), "warnings": warnings})

    def _finished(
        self, session: ProcessSession, warnings: list[str], timeout_s: float
    ) -> ToolResult:
        output = session.output.clipped(self._limits.result_max_chars)
        details = {**session.summary(), "warnings": warnings}
        if details["status"] == "completed":
            # Any exit code but 126/127 is an answer, not a tool failure
            # (OpenClaw's rule): the code is in the text and in details.
            text = output or "(no output)"
            if session.exit_code:
                text += f"\n\n(Command exited with code {session.exit_code})"
            return ToolResult(content=_warned(warnings, text), details=details)
        reason = self._failure_reason(session, timeout_s)
        text = f"{output}\n\n{reason}" if output else reason
        return error(_warned(warnings, text), **details)

    def _failure_reason(self, session: ProcessSession, timeout_s: float) -> str:
        """OpenClaw's wording for why a command did not complete."""
        if session.timed_out:
            reason = f"Command timed out after {_seconds(timeout_s)} seconds.\n\n{TIMEOUT_GUIDANCE}"
            return f"{reason}\n\n{TIMEOUT_BACKGROUND_HINT}" if self._background_enabled else reason
        if session.exit_signal is None and session.exit_code == 127:
            return "Command not found"
        if session.exit_signal is None and session.exit_code == 126:
            return "Command not executable (permission denied)"
        name = session.summary()["signal"]
        if name is not None:
            return f"Command aborted by signal {name}"
        return "Command aborted before exit code was captured"


def _warned(warnings: list[str], text: str) -> str:
    """Warnings go in front of what the model reads, as in OpenClaw."""
    return "\n".join(warnings) + "\n\n" + text if warnings else text


def _seconds(value: float) -> str:
    """A number of seconds as OpenClaw prints it (``1800``, ``0.5``)."""
    return str(int(value)) if value == int(value) else str(value)


def _denied(approval_id: str, reason: str, command: str) -> ToolResult:
    """OpenClaw's denial wording: the command did not run."""
    return error(
        f"Exec denied (gateway id={approval_id}): {reason}. The command did not run: "
        f"{command[:200]}",
        status="denied",
        reason=reason,
    )


def _done(value: Any) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.callback(value)
    return d


__all__ = ["CancelledError", "ExecTool", "clip"]
