"""The WebSocket methods that start, wait for and abort agent runs:
``agent``, ``agent.wait``, ``chat.send`` and ``chat.abort``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.types import (
    AgentRequest,
    AgentResult,
    AgentRun,
    DuplicateRunError,
    FailureKind,
    ProviderError,
    RunAbortedError,
    RunQueueFullError,
    RuntimeClosedError,
    RunTimeoutError,
    UnknownAgentError,
)
from openclaw.core.unavailable import SharedStateUnavailableError
from openclaw.gateway.ws import chat_commands
from openclaw.gateway.ws.calls import (
    DEFAULT_WAIT_MS,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_WAIT_MS,
    CallContext,
    known_agent,
    optional_int,
    optional_number,
    optional_str,
    required_str,
    resolve_session,
)
from openclaw.gateway.ws.chat_commands import CommandRun, FollowUp, Notice
from openclaw.gateway.ws.frames import (
    AGENT_TIMEOUT,
    INVALID_REQUEST,
    UNAVAILABLE,
    RequestError,
    invalid_params,
)
from openclaw.gateway.ws.idempotency import AgentFinal, IdempotencyEntry
from openclaw.gateway.ws.outbound import RunOutcome, failure_message
from openclaw.gateway.ws.payloads import agent_final_payload
from openclaw.gateway.ws.relayed import REMOTE_FINAL_WAIT_SECONDS, remote_agent_final
from openclaw.sessions.keys import main_session_key

log = Logger()
#: How long chat.abort waits for the aborted runs to settle before answering anyway.
ABORT_SETTLE_SECONDS = 5.0

# -- agent runs ---------------------------------------------------------------------


def build_agent_final(entry: IdempotencyEntry, outcome: AgentResult | Failure) -> AgentFinal:
    """The ``agent`` method's final response for a run's outcome."""
    run_id = entry.run_id
    if isinstance(outcome, Failure):
        error = outcome.value
        if isinstance(error, RunAbortedError | CancelledError):
            return AgentFinal(
                payload={
                    "runId": run_id,
                    "status": "aborted",
                    "summary": "aborted",
                    "result": {"payloads": []},
                }
            )
        message = failure_message(error)  # type: ignore[arg-type]  # a Failure's value is an exception
        if isinstance(error, RunTimeoutError):
            return AgentFinal(
                error=RequestError(
                    AGENT_TIMEOUT,
                    message,
                    payload={"runId": run_id, "status": "timeout", "summary": message},
                )
            )
        retryable = None
        retry_after_ms = None
        if isinstance(error, ProviderError):
            retryable = error.kind in (
                FailureKind.RATE_LIMIT,
                FailureKind.OVERLOADED,
                FailureKind.SERVER_ERROR,
                FailureKind.TIMEOUT,
                FailureKind.CONNECTION,
            )
            if error.retry_after_seconds is not None:
                retry_after_ms = int(error.retry_after_seconds * 1000)
        return AgentFinal(
            error=RequestError(
                UNAVAILABLE,
                message,
                retryable=retryable,
                retry_after_ms=retry_after_ms,
                payload={"runId": run_id, "status": "error", "summary": message},
            )
        )
    payload = agent_final_payload(outcome)
    payload["runId"] = run_id
    return AgentFinal(payload=payload)


def _final_payload(final: AgentFinal) -> Any:
    if final.error is not None:
        raise final.error
    return final.payload


def _start_run(
    ctx: CallContext,
    *,
    method: str,
    key: str,
    agent_id: str,
    session_key: str,
    message: str,
    extra_system_prompt: str | None,
    timeout_seconds: float | None,
    ack: Callable[[AgentRun], dict[str, Any]],
    sent: str | None = None,
) -> IdempotencyEntry:
    """Start (or, for a run id already active, attach to) the run of ``key``.

    ``sent`` is the message as the client sent it, when ``message`` is only
    part of it (the text after ``/new``): the key stays tied to all of it.
    """
    services = ctx.services
    ctx.connection.subscribe(session_key)
    request = AgentRequest(
        agent_id=agent_id,
        session_key=session_key,
        message=message,
        run_id=key,
        extra_system_prompt=extra_system_prompt,
        timeout_seconds=timeout_seconds,
    )
    try:
        run = services.runtime.start(request)
    except UnknownAgentError:
        raise invalid_params(method, f'unknown agent id "{agent_id}"') from None
    except RuntimeClosedError:
        raise RequestError(UNAVAILABLE, "gateway stopping", retryable=True) from None
    except RunQueueFullError as full:
        # agents.defaults.maxConcurrent runs and a full queue: try again later.
        raise RequestError(
            UNAVAILABLE,
            "too many agent runs in progress",
            retryable=True,
            retry_after_ms=full.retry_after_ms,
        ) from None
    except SharedStateUnavailableError as e:
        raise RequestError(
            UNAVAILABLE,
            "session store unavailable",
            retryable=True,
            retry_after_ms=e.retry_after_ms,
        ) from None
    except DuplicateRunError:
        # The key outlived its cache entry while its run is still going: attach.
        active = services.runtime.get_run(key)
        if active is None:
            raise invalid_params(method, f"run {key} is already active") from None
        run = active
        ctx.connection.subscribe(run.session_key)
    else:
        log.info(
            "{method} run {run_id} started on {session_key} by {conn_id}",
            method=method,
            run_id=run.run_id,
            session_key=session_key,
            conn_id=ctx.connection.conn_id,
        )
    services.hub.track(run)
    entry = services.idempotency.begin(key, run, ack(run), build_agent_final)
    entry.remember_input(sent if sent is not None else message)
    return entry


def _notice_final(entry: IdempotencyEntry, outcome: AgentResult | Failure) -> AgentFinal:
    """The ``agent`` method's final response for a command's reply (OpenClaw's
    bare-reset shape: a status notice, no model meta)."""
    if isinstance(outcome, Failure):
        return build_agent_final(entry, outcome)
    meta: dict[str, Any] = {"durationMs": 0}
    if outcome.session_id:
        meta["agentMeta"] = {"sessionId": outcome.session_id}
    return AgentFinal(
        payload={
            "runId": entry.run_id,
            "status": "ok",
            "summary": "completed",
            "result": {
                "payloads": [{"text": outcome.text, "isStatusNotice": True}],
                "meta": meta,
            },
        }
    )


def _announce(
    ctx: CallContext,
    notice: Notice,
    *,
    key: str,
    agent_id: str,
    session_key: str,
    sent: str,
    ack: dict[str, Any],
) -> IdempotencyEntry:
    """Give a command's reply as the run of ``key``: it is remembered under the
    key and sent as the session's chat final just after the caller's response
    (the next reactor turn), as OpenClaw sends its acknowledgement."""
    services = ctx.services
    ctx.connection.subscribe(session_key)
    run = CommandRun(key, agent_id, session_key)
    services.hub.track(run)
    entry = services.idempotency.begin(key, run, ack, _notice_final)
    entry.remember_input(sent)

    def reply(text: str) -> None:
        services.clock.callLater(0, lambda: run.reply(text, notice.session_id, services.now_ms()))

    notice.text.addCallback(reply)
    return entry


def ack_for(run_id: str, session_key: str, agent_id: str) -> dict[str, Any]:
    """The ``agent`` method's ack (without ``acceptedAt``)."""
    return {"runId": run_id, "sessionKey": session_key, "agentId": agent_id, "status": "accepted"}


def agent(ctx: CallContext, params: Mapping[str, Any]) -> Deferred[Any]:
    method = "agent"
    services = ctx.services
    message = required_str(params, "message", method)
    key = required_str(params, "idempotencyKey", method, max_len=MAX_IDEMPOTENCY_KEY_LENGTH)
    timeout = optional_number(params, "timeout", method, minimum=0, maximum=MAX_WAIT_MS / 1000)
    agent_hint = optional_str(params, "agentId", method)
    raw_session = optional_str(params, "sessionKey", method)
    extra = optional_str(params, "extraSystemPrompt", method)
    reset = chat_commands.parse_reset(message)
    if reset is not None:  # "/new", "/reset": OpenClaw needs operator.admin for them
        chat_commands.require_reset_scope(ctx)
    existing = services.idempotency.get(key)
    if existing is not None:
        ctx.connection.subscribe(existing.run.session_key)
        if existing.final is None:
            ctx.ack(existing.ack)
        return existing.wait().addCallback(_final_payload)
    if raw_session is not None:
        agent_id, session_key = resolve_session(services, method, raw_session, agent_hint)
    else:
        agent_id = (
            known_agent(services, agent_hint, method)
            if agent_hint
            else services.agents.default_agent_id
        )
        session_key = main_session_key(agent_id)

    def ack(run: AgentRun) -> dict[str, Any]:
        return {
            **ack_for(run.run_id, run.session_key, run.agent_id),
            "acceptedAt": services.now_ms(),
        }

    def start(mine: bool) -> Deferred[Any]:
        if not mine:  # another gateway instance runs this key's turn: follow it
            ctx.connection.subscribe(session_key)
            ctx.ack({**ack_for(key, session_key, agent_id), "acceptedAt": services.now_ms()})
            waiting = services.hub.wait(key, REMOTE_FINAL_WAIT_SECONDS)
            return waiting.addCallback(lambda outcome: remote_agent_final(key, outcome))
        if reset is not None:
            resetting = chat_commands.run_command(ctx, reset, agent_id, session_key)
            return resetting.addCallback(after_reset)
        return turn(message)

    def after_reset(done: Notice | FollowUp) -> Deferred[Any]:
        if isinstance(done, FollowUp):  # the rest of the message, in the fresh session
            return turn(done.text)
        # A bare reset answers once, with its acknowledgement (no ack first).
        ack = {**ack_for(key, session_key, agent_id), "acceptedAt": services.now_ms()}
        entry = _announce(
            ctx, done, key=key, agent_id=agent_id, session_key=session_key, sent=message, ack=ack
        )
        return entry.wait().addCallback(_final_payload)

    def turn(text: str) -> Deferred[Any]:
        entry = _start_run(
            ctx,
            method=method,
            key=key,
            agent_id=agent_id,
            session_key=session_key,
            message=text,
            extra_system_prompt=extra,
            timeout_seconds=timeout or None,
            ack=ack,
            sent=message,
        )
        ctx.ack(entry.ack)
        return entry.wait().addCallback(_final_payload)

    # With a shared store the key may already be another instance's run.
    return services.hub.relay.claim(key).addCallback(start)


def agent_wait(ctx: CallContext, params: Mapping[str, Any]) -> Deferred[Any]:
    method = "agent.wait"
    run_id = required_str(params, "runId", method, max_len=MAX_IDEMPOTENCY_KEY_LENGTH)
    timeout_ms = optional_int(params, "timeoutMs", method, minimum=0, maximum=MAX_WAIT_MS)
    wait_ms = DEFAULT_WAIT_MS if timeout_ms is None else timeout_ms

    def report(outcome: RunOutcome | None) -> dict[str, Any]:
        if outcome is None:
            return {"runId": run_id, "status": "timeout"}
        return outcome.as_wait_payload()

    return ctx.services.hub.wait(run_id, wait_ms / 1000).addCallback(report)


def chat_send(
    ctx: CallContext, params: Mapping[str, Any]
) -> dict[str, Any] | Deferred[dict[str, Any]]:
    method = "chat.send"
    services = ctx.services
    raw_session = required_str(params, "sessionKey", method)
    message = required_str(params, "message", method)
    key = required_str(params, "idempotencyKey", method, max_len=MAX_IDEMPOTENCY_KEY_LENGTH)
    timeout_ms = optional_int(params, "timeoutMs", method, minimum=0, maximum=MAX_WAIT_MS)
    if chat_commands.is_stop(message):  # "/stop": abort, as chat.abort; no turn, no key
        return chat_abort(ctx, {"sessionKey": raw_session})
    existing = services.idempotency.get(key)
    if existing is not None:
        if existing.conflicts_with(message):
            raise _request_conflict()
        ctx.connection.subscribe(existing.run.session_key)
        return _chat_send_replay(existing)
    agent_id, session_key = resolve_session(services, method, raw_session)
    command = chat_commands.parse_chat_command(message)

    def start(mine: bool) -> dict[str, Any] | Deferred[dict[str, Any]]:
        if not mine:  # another gateway instance runs this key's turn: follow it
            ctx.connection.subscribe(session_key)
            return services.hub.relay.outcome(key).addCallback(
                lambda ended: _chat_send_relayed(key, ended)
            )
        if command is not None:  # "/new", "/reset", "/compact"
            doing = chat_commands.run_command(ctx, command, agent_id, session_key)
            return doing.addCallback(after_command)
        return turn(message)

    def after_command(done: Notice | FollowUp) -> dict[str, Any]:
        if isinstance(done, FollowUp):  # the rest of the message, in the fresh session
            return turn(done.text)
        ack = {"runId": key, "status": "started"}
        _announce(
            ctx, done, key=key, agent_id=agent_id, session_key=session_key, sent=message, ack=ack
        )
        return ack

    def turn(text: str) -> dict[str, Any]:
        entry = _start_run(
            ctx,
            method=method,
            key=key,
            agent_id=agent_id,
            session_key=session_key,
            message=text,
            extra_system_prompt=None,
            timeout_seconds=timeout_ms / 1000 if timeout_ms else None,
            ack=lambda run: {"runId": run.run_id, "status": "started"},
            sent=message,
        )
        return entry.ack

    # With a shared store the key may already be another instance's run.
    return services.hub.relay.claim(key).addCallback(start)


def _request_conflict() -> RequestError:
    return RequestError(
        INVALID_REQUEST,
        "This message ID was already used for different input. Send it again with a new "
        "idempotencyKey.",
        details={"reason": "chat-request-conflict"},
    )


def _chat_send_replay(entry: IdempotencyEntry) -> dict[str, Any]:
    """chat.send's answer for a key whose run this instance started."""
    final = entry.final
    if final is None:
        return {"runId": entry.run_id, "status": "in_flight"}
    ended_at = int(entry.finished_at * 1000) if entry.finished_at is not None else None
    if final.error is not None:
        shown = final.error.payload if isinstance(final.error.payload, dict) else {}
        status = "timeout" if shown.get("status") == "timeout" else "error"
        return _chat_send_ended(entry.run_id, status, final.error.message, ended_at)
    aborted = isinstance(final.payload, dict) and final.payload.get("status") == "aborted"
    return _chat_send_ended(entry.run_id, "aborted" if aborted else "ok", None, ended_at)


def _chat_send_relayed(run_id: str, ended: Mapping[str, Any] | None) -> dict[str, Any]:
    """chat.send's answer for a key whose run another gateway instance started."""
    if ended is None:
        return {"runId": run_id, "status": "in_flight"}
    at = ended.get("ended_at")
    return _chat_send_ended(
        run_id,
        str(ended.get("status")),
        ended.get("error"),
        at if isinstance(at, int) else None,
    )


def _chat_send_ended(
    run_id: str, status: str, summary: str | None, ended_at: int | None
) -> dict[str, Any]:
    """How a finished run answers a resent chat.send, in OpenClaw's shapes: ``ok``;
    aborted ``{status:"timeout", summary:"aborted"}``; a failure is ``UNAVAILABLE``
    with ``{status:"error"|"timeout", summary}``."""
    if status == "ok":
        return {"runId": run_id, "status": "ok"}
    payload: dict[str, Any] = {"runId": run_id}
    if status == "aborted":
        payload.update(status="timeout", summary="aborted")
    else:
        summary = summary or f"run {status}"
        payload.update(status="timeout" if status == "timeout" else "error", summary=summary)
    if ended_at is not None:
        payload["endedAt"] = ended_at
    if status == "aborted":
        return payload
    raise RequestError(UNAVAILABLE, payload["summary"], payload=payload)


def chat_abort(ctx: CallContext, params: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
    method = "chat.abort"
    services = ctx.services
    raw_session = optional_str(params, "sessionKey", method)
    run_id = optional_str(params, "runId", method)
    if raw_session is None and run_id is None:
        raise invalid_params(method, "must have required property 'sessionKey'")
    session_key = None
    if raw_session is not None:
        _, session_key = resolve_session(
            services, method, raw_session, optional_str(params, "agentId", method)
        )
        ctx.connection.subscribe(session_key)
    runs = [
        run
        for run in services.runtime.active_runs(session_key)
        if run_id is None or run.run_id == run_id
    ]
    aborted = []
    for run in runs:
        services.hub.mark_rpc_abort(run.run_id)
        run.cancel()
        aborted.append(run.run_id)
        log.info(
            "run {run_id} aborted by {conn_id}", run_id=run.run_id, conn_id=ctx.connection.conn_id
        )

    def answer(elsewhere: Sequence[str]) -> dict[str, Any]:
        ids = [*aborted, *elsewhere]
        return {"ok": True, "aborted": bool(ids), "runIds": ids}

    # Answer once the aborted runs have settled, so their lifecycle end and
    # chat "aborted" events come before this response, as in OpenClaw (bounded:
    # a stuck disk does not hold the caller).
    settled: Deferred[Any] = DeferredList(
        [run.result for run in runs], consumeErrors=True
    ).addTimeout(ABORT_SETTLE_SECONDS, services.clock)
    settled.addErrback(lambda _: None)
    if run_id is not None and aborted:
        return settled.addCallback(lambda _: answer(()))
    # The run may be another gateway instance's (a shared session store).
    return settled.addCallback(lambda _: services.hub.relay.abort(session_key, run_id)).addCallback(
        answer
    )
