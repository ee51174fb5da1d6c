"""``openclaw agent --local``: one agent turn in-process, through the runtime.

The reply text streams to ``stdout`` as it arrives (or, with ``--json``, the
final result object is printed once). Exit code 0 on success; 1 with a
one-line ``error: ...`` on ``stderr`` otherwise. The turn uses the same
:class:`~openclaw.agents.runtime.Runtime` (sessions, lanes, providers) as the
gateway, so it continues the agent's main session by default.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, TextIO

from attrs import frozen
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.run import ProviderLookup
from openclaw.agents.runtime import Runtime, build_runtime
from openclaw.agents.types import (
    AgentEvent,
    AgentRequest,
    AgentResult,
    AssistantEvent,
    ProviderError,
    RunAbortedError,
    RunTimeoutError,
    ToolEvent,
    UnknownAgentError,
)
from openclaw.config.model import Config
from openclaw.gateway.ws.payloads import agent_final_payload
from openclaw.sessions.keys import (
    InvalidSessionKeyError,
    canonical_session_key,
    main_session_key,
    normalize_agent_id,
    parse_agent_from_key,
)

log = Logger()

#: The ingress channel recorded for CLI turns.
CLI_CHANNEL = "cli"


@frozen
class AgentCommandOptions:
    """The flags of ``openclaw agent``."""

    message: str
    agent: str | None = None
    session_key: str | None = None
    json: bool = False
    #: Seconds; None = the agent's ``timeoutSeconds``; 0 = no timeout.
    timeout: float | None = None

    @classmethod
    def coerce(cls, options: object) -> AgentCommandOptions:
        """Accept this class, an ``argparse.Namespace`` or a mapping (``usage.Options``).

        Names read: ``message``; ``agent_id`` or ``agent``; ``session_key`` or
        ``session-key``; ``json``; ``timeout``.
        """
        if isinstance(options, cls):
            return options
        if isinstance(options, Mapping):
            values: Mapping[str, Any] = options
        else:
            values = vars(options)

        def pick(*names: str) -> Any:
            for name in names:
                if values.get(name) is not None:
                    return values[name]
            return None

        timeout = pick("timeout")
        return cls(
            message=str(pick("message") or ""),
            agent=pick("agent_id", "agent"),
            session_key=pick("session_key", "session-key"),
            json=bool(pick("json")),
            timeout=float(timeout) if timeout is not None else None,
        )


def resolve_target(runtime: Runtime, options: AgentCommandOptions) -> tuple[str, str]:
    """``(agent id, session key)`` for the options, as OpenClaw resolves them.

    ``--session-key`` wins and keeps its own agent (``agent:<id>:...``); other
    keys are scoped to ``--agent`` or the default agent. Without a key the
    agent's main session ``agent:<id>:main`` is used. Raises UnknownAgentError
    or InvalidSessionKeyError.
    """
    agent_id = normalize_agent_id(options.agent) if options.agent else runtime.default_agent_id
    if options.session_key:
        key = canonical_session_key(agent_id, options.session_key)
        agent_id = parse_agent_from_key(key) or agent_id
    else:
        key = main_session_key(agent_id)
    runtime.registry.get(agent_id)
    return agent_id, key


def tool_activity_line(event: ToolEvent, limit: int = 200) -> str:
    """``[tool] read {"path": ...}`` / ``[tool] read ok: <first line>`` for stderr."""
    if event.phase == "start":
        detail = event.arguments or ""
    else:
        status = "error" if event.is_error else "ok"
        first = (event.result or "").strip().splitlines()
        detail = f"{status}: {first[0]}" if first else status
    detail = " ".join(detail.split())
    if len(detail) > limit:
        detail = detail[: limit - 1] + "\u2026"
    return f"[tool] {event.name} {detail}".rstrip()


def failure_message(error: BaseException) -> str:
    """One line describing why a run failed."""
    if isinstance(error, ProviderError):
        detail = error.kind.value
        if error.status is not None:
            detail += f", HTTP {error.status}"
        text = f"model request failed ({detail}): {error.message}"
    elif isinstance(error, RunTimeoutError | RunAbortedError):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())


def run_agent_command(
    config: Config,
    options: object,
    reactor: IReactorTime,
    stdout: TextIO,
    stderr: TextIO,
    *,
    runtime: Runtime | None = None,
    providers: ProviderLookup | None = None,
    interrupted: Deferred[None] | None = None,
) -> Deferred[int]:
    """Run one turn; fires with the exit code once the transcript is settled.

    :param options: :class:`AgentCommandOptions`, an argparse namespace or a mapping.
    :param reactor: the reactor (time, and TCP for real providers).
    :param runtime: an existing runtime (not shut down here); default: one
        built from ``config`` and shut down afterwards.
    :param providers: provider lookup for the built runtime (tests pass fakes).
    :param interrupted: fires on Ctrl-C or SIGTERM: the run is aborted (its
        tools' processes killed, the turn recorded as aborted) and the returned
        Deferred fires, with 1, once that is done.

    Cancelling the returned Deferred aborts the run too, but fires at once.
    """
    opts = AgentCommandOptions.coerce(options)
    owned = runtime is None
    rt = runtime if runtime is not None else build_runtime(config, reactor, providers=providers)
    wrote_text = [False, True]  # [any text written, ends with newline]

    def finish(code: int) -> Deferred[int]:
        if owned:
            closing = rt.shutdown()
        else:
            rt.store.flush()
            closing = succeed(None)
        return closing.addCallback(lambda _: code)

    def error_line(message: str) -> None:
        if wrote_text[0] and not wrote_text[1]:
            stdout.write("\n")
            stdout.flush()
        stderr.write(f"error: {message}\n")
        stderr.flush()

    if not opts.message.strip():
        error_line("a message is required (-m TEXT)")
        return finish(1)
    try:
        agent_id, key = resolve_target(rt, opts)
    except UnknownAgentError as e:
        error_line(f"unknown agent {e.args[0]!r}")
        return finish(1)
    except InvalidSessionKeyError as e:
        error_line(f"invalid session key: {e}")
        return finish(1)

    request = AgentRequest(
        agent_id=agent_id,
        session_key=key,
        message=opts.message,
        run_id=str(uuid.uuid4()),
        channel=CLI_CHANNEL,
        timeout_seconds=opts.timeout,
    )
    run = rt.start(request)

    def on_event(event: AgentEvent) -> None:
        if isinstance(event, AssistantEvent) and not opts.json:
            stdout.write(event.delta)
            stdout.flush()
            wrote_text[0] = True
            wrote_text[1] = event.text.endswith("\n")
        elif isinstance(event, ToolEvent) and event.phase != "update":
            # Tool activity goes to stderr, so stdout stays the reply alone.
            stderr.write(tool_activity_line(event) + "\n")
            stderr.flush()

    run.subscribe(on_event)
    if interrupted is not None:
        interrupted.addCallback(lambda _: run.cancel())

    def succeeded(result: AgentResult) -> int:
        if opts.json:
            stdout.write(json.dumps(agent_final_payload(result), indent=2) + "\n")
        else:
            if wrote_text[0] and not wrote_text[1]:
                stdout.write("\n")
            for call in result.pending_tool_calls:
                stdout.write(f"[tool call] {call.name} {call.arguments}\n")
        stdout.flush()
        return 0

    def failed(failure: Failure) -> int:
        error = failure.value
        message = failure_message(error) if error is not None else "run failed"
        if opts.json:
            payload = {"runId": run.run_id, "status": "error", "summary": message}
            stdout.write(json.dumps(payload, indent=2) + "\n")
        error_line(message)
        return 1

    outcome: Deferred[int] = run.result.addCallbacks(succeeded, failed)
    outcome.addCallback(finish)

    def cancel(_: Deferred[int]) -> None:
        run.cancel()

    done: Deferred[int] = Deferred(cancel)

    def deliver(code: int) -> None:
        if not done.called:
            done.callback(code)

    def broken(failure: Failure) -> None:
        log.failure("openclaw agent failed", failure)
        deliver(1)

    outcome.addCallbacks(deliver, broken)
    return done
