"""The method table of the WebSocket protocol: one handler per method name.

A handler receives a :class:`CallContext` and the request's params and
returns the response payload (or a Deferred of it), or raises
:class:`~openclaw.gateway.ws.frames.RequestError`. ``agent`` is the one method
that answers twice: it sends an ack through ``CallContext.ack`` and returns the
final payload later. Handlers never touch the transport.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from attrs import define, frozen
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

import twisted
from openclaw.agents.types import (
    AgentRequest,
    AgentResult,
    AgentRun,
    AgentRuntime,
    DuplicateRunError,
    FailureKind,
    ProviderError,
    RunAbortedError,
    RunQueueFullError,
    RuntimeClosedError,
    RunTimeoutError,
    UnknownAgentError,
)
from openclaw.config.live import ReloadResult
from openclaw.config.model import Config
from openclaw.gateway.ws import methods_loop, ops_methods
from openclaw.gateway.ws.events import RunHub, RunOutcome, failure_message
from openclaw.gateway.ws.frames import (
    AGENT_TIMEOUT,
    FORBIDDEN,
    INVALID_REQUEST,
    UNAVAILABLE,
    RequestError,
    invalid_params,
)
from openclaw.gateway.ws.handshake import (
    SCOPE_ADMIN,
    SCOPE_READ,
    SCOPE_WRITE,
    ClientInfo,
    has_scope,
)
from openclaw.gateway.ws.idempotency import AgentFinal, IdempotencyCache, IdempotencyEntry
from openclaw.gateway.ws.logbuffer import LogBuffer
from openclaw.gateway.ws.methods_loop import SCOPE_APPROVALS
from openclaw.gateway.ws.payloads import agent_final_payload
from openclaw.gateway.ws.views import AgentsView, SessionsView
from openclaw.sessions.entry import SessionEntry
from openclaw.sessions.keys import (
    InvalidSessionKeyError,
    canonical_session_key,
    main_session_key,
    normalize_agent_id,
    parse_agent_from_key,
)

log = Logger()

MAX_IDEMPOTENCY_KEY_LENGTH = 256
#: ``agent.wait`` waits this long by default, and never longer than the cap.
DEFAULT_WAIT_MS = 30_000
MAX_WAIT_MS = 24 * 60 * 60 * 1000
DEFAULT_HISTORY_LIMIT = 200
MAX_HISTORY_LIMIT = 1000
MAX_SESSIONS_LISTED = 1000
RECENT_SESSIONS = 5


class Connection(Protocol):
    """What a method may know and do about the connection that called it."""

    @property
    def conn_id(self) -> str: ...

    @property
    def scopes(self) -> tuple[str, ...]: ...

    @property
    def client(self) -> ClientInfo | None: ...

    def subscribe(self, session_key: str) -> None:
        """Receive the ``agent``/``chat`` events of that session from now on."""
        ...

    def subscribe_all(self) -> None:
        """Receive the events of every run."""
        ...


@define
class GatewayServices:
    """The collaborators every method may use (one instance per factory)."""

    config: Config
    runtime: AgentRuntime
    agents: AgentsView
    sessions: SessionsView | None
    hub: RunHub
    idempotency: IdempotencyCache
    clock: IReactorTime
    log_buffer: LogBuffer | None
    started_at_ms: int
    version: str
    connection_count: Callable[[], int]
    #: Re-read and apply the config file (``gateway.reload``); set by the
    #: service, None for an embedded gateway.
    reload: Callable[[], ReloadResult] | None = None

    def now_ms(self) -> int:
        """The injected clock's time in epoch milliseconds."""
        return int(self.clock.seconds() * 1000)


@frozen
class CallContext:
    """One request being served."""

    request_id: str
    method: str
    connection: Connection
    services: GatewayServices
    #: Send an early ``res`` with this payload (the ``agent`` ack); the final
    #: response is still the handler's return value.
    ack: Callable[[Any], None]


Handler = Callable[[CallContext, Mapping[str, Any]], Any]


@frozen
class MethodSpec:
    """A method: its handler and the operator scope it needs (None: any client)."""

    name: str
    handler: Handler
    scope: str | None


# -- params -----------------------------------------------------------------------


def _required_str(params: Mapping[str, Any], name: str, method: str, *, max_len: int = 0) -> str:
    if name not in params or params[name] is None:
        raise invalid_params(method, f"must have required property '{name}'")
    value = params[name]
    if not isinstance(value, str):
        raise invalid_params(method, f"property '{name}' must be a string")
    if not value.strip():
        raise invalid_params(method, f"property '{name}' must not be empty")
    if max_len and len(value) > max_len:
        raise invalid_params(method, f"property '{name}' must be at most {max_len} characters")
    return value


def _optional_str(params: Mapping[str, Any], name: str, method: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_params(method, f"property '{name}' must be a string")
    return value or None


def _optional_number(
    params: Mapping[str, Any],
    name: str,
    method: str,
    *,
    minimum: float,
    maximum: float,
    integer: bool = False,
) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_params(method, f"property '{name}' must be a number")
    if integer and not float(value).is_integer():
        raise invalid_params(method, f"property '{name}' must be an integer")
    if not minimum <= value <= maximum:
        raise invalid_params(
            method, f"property '{name}' must be between {minimum:g} and {maximum:g}"
        )
    return float(value)


def _optional_int(
    params: Mapping[str, Any], name: str, method: str, *, minimum: int, maximum: int
) -> int | None:
    value = _optional_number(params, name, method, minimum=minimum, maximum=maximum, integer=True)
    return None if value is None else int(value)


def _known_agent(services: GatewayServices, agent_id: str, method: str) -> str:
    normalised = normalize_agent_id(agent_id)
    if normalised not in services.runtime.agent_ids:
        raise invalid_params(method, f'unknown agent id "{agent_id}"')
    return normalised


def _resolve_session(
    services: GatewayServices, method: str, raw_key: str, agent_hint: str | None = None
) -> tuple[str, str]:
    """``(agentId, canonical session key)``; the key's own agent wins over the hint."""
    base = normalize_agent_id(agent_hint) if agent_hint else services.agents.default_agent_id
    try:
        key = canonical_session_key(base, raw_key)
    except InvalidSessionKeyError as e:
        raise invalid_params(method, str(e)) from None
    agent = parse_agent_from_key(key) or base
    return _known_agent(services, agent, method), key


def _store(services: GatewayServices) -> SessionsView:
    if services.sessions is None:
        raise RequestError(UNAVAILABLE, "session store unavailable")
    return services.sessions


# -- health / status / agents / models ------------------------------------------


def _session_summary(services: GatewayServices, agent_id: str, now: int) -> dict[str, Any]:
    """``{path, count, recent:[{key, age, updatedAt}]}`` (what ``openclaw health`` renders)."""
    if services.sessions is None:
        return {"path": "(unavailable)", "count": 0, "recent": []}
    try:
        entries = list(services.sessions.list_sessions(agent_id))
        path = str(services.sessions.session_path(agent_id))
    except Exception:
        log.failure("listing sessions of agent {agent_id}", agent_id=agent_id)
        return {"path": "(unavailable)", "count": 0, "recent": []}
    entries.sort(key=lambda e: e.updated_at, reverse=True)
    recent = [
        {"key": e.key, "updatedAt": e.updated_at, "age": max(0, now - e.updated_at)}
        for e in entries[:RECENT_SESSIONS]
    ]
    return {"path": path, "count": len(entries), "recent": recent}


def _health(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    services = ctx.services
    started = services.clock.seconds()
    now = services.now_ms()
    default = services.agents.default_agent_id
    agents = []
    default_sessions: dict[str, Any] = {"path": "(unavailable)", "count": 0, "recent": []}
    for agent in services.agents.agents:
        summary = _session_summary(services, agent.id, now)
        if agent.id == default:
            default_sessions = summary
        entry: dict[str, Any] = {
            "agentId": agent.id,
            "isDefault": agent.id == default,
            "heartbeat": {"everyMs": None},
            "sessions": summary,
        }
        if agent.name:
            entry["name"] = agent.name
        agents.append(entry)
    return {
        "ok": True,
        "ts": now,
        "durationMs": int((services.clock.seconds() - started) * 1000),
        "version": services.version,
        "uptimeMs": max(0, now - services.started_at_ms),
        "defaultAgentId": default,
        "agents": agents,
        "sessions": default_sessions,
        "heartbeatSeconds": 0,
        "channels": {},
        "channelOrder": [],
        "channelLabels": {},
    }


def _status(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    services = ctx.services
    now = services.now_ms()
    default = services.agents.default_agent_id
    count = 0
    if services.sessions is not None:
        for agent_id in services.runtime.agent_ids:
            try:
                count += len(services.sessions.list_sessions(agent_id))
            except Exception:
                log.failure("listing sessions of agent {agent_id}", agent_id=agent_id)
    runs = [
        {"runId": run.run_id, "agentId": run.agent_id, "sessionKey": run.session_key}
        for run in services.runtime.active_runs()
    ]
    return {
        "ok": True,
        "version": services.version,
        "runtimeVersion": f"python {platform.python_version()}, twisted {twisted.__version__}",
        "pid": os.getpid(),
        "uptimeMs": max(0, now - services.started_at_ms),
        "connections": services.connection_count(),
        "activeRuns": runs,
        "sessions": {
            "count": count,
            "defaults": {
                "defaultAgentId": default,
                "mainKey": "main",
                "mainSessionKey": main_session_key(default),
            },
        },
    }


def _agents_list(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    view = ctx.services.agents
    agents = []
    for agent in view.agents:
        entry: dict[str, Any] = {"id": agent.id, "workspace": str(agent.workspace)}
        if agent.name:
            entry["name"] = agent.name
        if agent.model:
            entry["model"] = {"primary": agent.model}
        if agent.is_default:
            entry["default"] = True
        agents.append(entry)
    return {
        "defaultId": view.default_agent_id,
        "mainKey": "main",
        "scope": "per-sender",
        "ownership": "sole",
        "selectionRequired": False,
        "agents": agents,
    }


def _models_list(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    models: list[dict[str, Any]] = []
    seen: set[str] = set()
    for provider_id, provider in ctx.services.config.models.providers.items():
        for model in provider.models:
            ref = f"{provider_id}/{model.id}"
            if ref in seen:
                continue
            seen.add(ref)
            entry: dict[str, Any] = {
                "id": ref,
                "name": model.name or model.id,
                "provider": provider_id,
                "api": provider.api,
            }
            if model.context_window is not None:
                entry["contextWindow"] = model.context_window
            if model.max_tokens is not None:
                entry["maxTokens"] = model.max_tokens
            models.append(entry)
    for agent in ctx.services.agents.agents:
        if agent.model and agent.model not in seen and "/" in agent.model:
            seen.add(agent.model)
            provider_id, _, model_id = agent.model.partition("/")
            models.append({"id": agent.model, "name": model_id, "provider": provider_id})
    return {"models": models}


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
) -> IdempotencyEntry:
    """Start (or, for a run id already active, attach to) the run of ``key``."""
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
    return services.idempotency.begin(key, run, ack(run), build_agent_final)


def _agent(ctx: CallContext, params: Mapping[str, Any]) -> Deferred[Any]:
    method = "agent"
    services = ctx.services
    message = _required_str(params, "message", method)
    key = _required_str(params, "idempotencyKey", method, max_len=MAX_IDEMPOTENCY_KEY_LENGTH)
    timeout = _optional_number(params, "timeout", method, minimum=0, maximum=MAX_WAIT_MS / 1000)
    agent_hint = _optional_str(params, "agentId", method)
    raw_session = _optional_str(params, "sessionKey", method)
    extra = _optional_str(params, "extraSystemPrompt", method)
    existing = services.idempotency.get(key)
    if existing is not None:
        ctx.connection.subscribe(existing.run.session_key)
        if existing.final is None:
            ctx.ack(existing.ack)
        return existing.wait().addCallback(_final_payload)
    if raw_session is not None:
        agent_id, session_key = _resolve_session(services, method, raw_session, agent_hint)
    else:
        agent_id = (
            _known_agent(services, agent_hint, method)
            if agent_hint
            else services.agents.default_agent_id
        )
        session_key = main_session_key(agent_id)

    def ack(run: AgentRun) -> dict[str, Any]:
        return {
            "runId": run.run_id,
            "sessionKey": run.session_key,
            "agentId": run.agent_id,
            "status": "accepted",
            "acceptedAt": services.now_ms(),
        }

    entry = _start_run(
        ctx,
        method=method,
        key=key,
        agent_id=agent_id,
        session_key=session_key,
        message=message,
        extra_system_prompt=extra,
        timeout_seconds=timeout or None,
        ack=ack,
    )
    ctx.ack(entry.ack)
    return entry.wait().addCallback(_final_payload)


def _agent_wait(ctx: CallContext, params: Mapping[str, Any]) -> Deferred[Any]:
    method = "agent.wait"
    run_id = _required_str(params, "runId", method, max_len=MAX_IDEMPOTENCY_KEY_LENGTH)
    timeout_ms = _optional_int(params, "timeoutMs", method, minimum=0, maximum=MAX_WAIT_MS)
    wait_ms = DEFAULT_WAIT_MS if timeout_ms is None else timeout_ms

    def report(outcome: RunOutcome | None) -> dict[str, Any]:
        if outcome is None:
            return {"runId": run_id, "status": "timeout"}
        return outcome.as_wait_payload()

    return ctx.services.hub.wait(run_id, wait_ms / 1000).addCallback(report)


def _chat_send(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    method = "chat.send"
    services = ctx.services
    raw_session = _required_str(params, "sessionKey", method)
    message = _required_str(params, "message", method)
    key = _required_str(params, "idempotencyKey", method, max_len=MAX_IDEMPOTENCY_KEY_LENGTH)
    timeout_ms = _optional_int(params, "timeoutMs", method, minimum=0, maximum=MAX_WAIT_MS)
    existing = services.idempotency.get(key)
    if existing is not None:
        ctx.connection.subscribe(existing.run.session_key)
        return {
            "runId": existing.run_id,
            "status": "in_flight" if existing.final is None else "ok",
        }
    agent_id, session_key = _resolve_session(services, method, raw_session)
    entry = _start_run(
        ctx,
        method=method,
        key=key,
        agent_id=agent_id,
        session_key=session_key,
        message=message,
        extra_system_prompt=None,
        timeout_seconds=timeout_ms / 1000 if timeout_ms else None,
        ack=lambda run: {"runId": run.run_id, "status": "started"},
    )
    return entry.ack


def _chat_abort(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    method = "chat.abort"
    services = ctx.services
    raw_session = _optional_str(params, "sessionKey", method)
    run_id = _optional_str(params, "runId", method)
    if raw_session is None and run_id is None:
        raise invalid_params(method, "must have required property 'sessionKey'")
    session_key = None
    if raw_session is not None:
        _, session_key = _resolve_session(
            services, method, raw_session, _optional_str(params, "agentId", method)
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
    return {"ok": True, "aborted": bool(aborted), "runIds": aborted}


# -- sessions -----------------------------------------------------------------------


def _truncate_message(message: dict[str, Any], max_chars: int) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, str):
        if len(content) > max_chars:
            return {**message, "content": content[:max_chars], "truncated": True}
        return message
    if isinstance(content, list):
        changed = False
        blocks: list[Any] = []
        for block in content:
            text = block.get("text") if isinstance(block, dict) else None
            if isinstance(text, str) and len(text) > max_chars:
                blocks.append({**block, "text": text[:max_chars]})
                changed = True
            else:
                blocks.append(block)
        if changed:
            return {**message, "content": blocks, "truncated": True}
    return message


def _chat_history(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    method = "chat.history"
    services = ctx.services
    raw_session = _required_str(params, "sessionKey", method)
    limit = _optional_int(params, "limit", method, minimum=1, maximum=MAX_HISTORY_LIMIT)
    max_chars = _optional_int(params, "maxChars", method, minimum=1, maximum=10_000_000)
    agent_id, session_key = _resolve_session(services, method, raw_session)
    store = _store(services)
    entry = store.get_session(agent_id, session_key)
    messages = list(store.read_messages(agent_id, session_key, limit or DEFAULT_HISTORY_LIMIT))
    if max_chars is not None:
        messages = [_truncate_message(m, max_chars) for m in messages]
    ctx.connection.subscribe(session_key)
    return {
        "sessionKey": session_key,
        "agentId": agent_id,
        "sessionId": entry.session_id if entry is not None else None,
        "messages": messages,
    }


def _session_json(entry: SessionEntry) -> dict[str, Any]:
    out = entry.to_json()
    out.setdefault("kind", "direct")
    return out


def _sessions_list(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    method = "sessions.list"
    services = ctx.services
    agent_hint = _optional_str(params, "agentId", method)
    limit = _optional_int(params, "limit", method, minimum=1, maximum=MAX_SESSIONS_LISTED)
    store = _store(services)
    agent_ids: Sequence[str] = (
        [_known_agent(services, agent_hint, method)] if agent_hint else services.runtime.agent_ids
    )
    entries: list[SessionEntry] = []
    for agent_id in agent_ids:
        entries.extend(store.list_sessions(agent_id))
    entries.sort(key=lambda e: e.updated_at, reverse=True)
    cap = limit or MAX_SESSIONS_LISTED
    shown = entries[:cap]
    path_agent = agent_ids[0] if agent_hint else services.agents.default_agent_id
    return {
        "ts": services.now_ms(),
        "path": str(store.session_path(path_agent)),
        "count": len(shown),
        "totalCount": len(entries),
        "limitApplied": cap,
        "hasMore": len(entries) > cap,
        "sessions": [_session_json(e) for e in shown],
    }


def _session_key_param(params: Mapping[str, Any], method: str) -> str:
    if params.get("key") is None and params.get("sessionKey") is not None:
        return _required_str(params, "sessionKey", method)
    return _required_str(params, "key", method)


def _refuse_if_busy(services: GatewayServices, session_key: str) -> None:
    if services.runtime.active_runs(session_key):
        raise RequestError(
            INVALID_REQUEST,
            f"session {session_key} has an active run; abort it first (chat.abort)",
            details={"code": "SESSION_BUSY"},
        )


def _sessions_reset(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    method = "sessions.reset"
    services = ctx.services
    agent_id, session_key = _resolve_session(services, method, _session_key_param(params, method))
    store = _store(services)
    _refuse_if_busy(services, session_key)
    entry = store.reset(agent_id, session_key)
    log.info(
        "session {session_key} reset by {conn_id}",
        session_key=session_key,
        conn_id=ctx.connection.conn_id,
    )
    return {"ok": True, "key": session_key, "entry": _session_json(entry)}


def _sessions_delete(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    method = "sessions.delete"
    services = ctx.services
    agent_id, session_key = _resolve_session(services, method, _session_key_param(params, method))
    store = _store(services)
    _refuse_if_busy(services, session_key)
    deleted = store.delete(agent_id, session_key)
    log.info(
        "session {session_key} deleted by {conn_id}",
        session_key=session_key,
        conn_id=ctx.connection.conn_id,
    )
    return {"ok": True, "key": session_key, "deleted": bool(deleted)}


def _sessions_subscribe(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    """This gateway's extension: follow sessions (or every run) without calling them."""
    method = "sessions.subscribe"
    keys_raw = params.get("keys", [])
    every = params.get("all", False)
    if not isinstance(every, bool):
        raise invalid_params(method, "property 'all' must be a boolean")
    if not isinstance(keys_raw, list) or not all(isinstance(k, str) for k in keys_raw):
        raise invalid_params(method, "property 'keys' must be an array of strings")
    if len(keys_raw) > 256:
        raise invalid_params(method, "property 'keys' must have at most 256 items")
    keys = [_resolve_session(ctx.services, method, k)[1] for k in keys_raw]
    for key in keys:
        ctx.connection.subscribe(key)
    if every:
        ctx.connection.subscribe_all()
    return {"ok": True, "all": every, "keys": keys}


# -- logs -------------------------------------------------------------------------------


def _logs_tail(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    method = "logs.tail"
    cursor = _optional_int(params, "cursor", method, minimum=0, maximum=2**53)
    limit = _optional_int(params, "limit", method, minimum=1, maximum=5000)
    max_bytes = _optional_int(params, "maxBytes", method, minimum=1, maximum=10_000_000)
    buffer = ctx.services.log_buffer
    if buffer is None:
        return {
            "file": "(memory)",
            "cursor": 0,
            "size": 0,
            "lines": [],
            "truncated": False,
            "reset": False,
        }
    tail = buffer.tail(cursor=cursor, limit=limit or 200, max_bytes=max_bytes or 250_000)
    return {
        "file": "(memory)",
        "cursor": tail.cursor,
        "size": tail.size,
        "lines": list(tail.lines),
        "truncated": tail.truncated,
        "reset": tail.reset,
    }


def _connect_again(ctx: CallContext, params: Mapping[str, Any]) -> Any:
    raise RequestError(INVALID_REQUEST, "already connected")


def _table(*specs: MethodSpec) -> dict[str, MethodSpec]:
    return {spec.name: spec for spec in specs}


#: Every method this gateway serves, with the scope it needs.
METHODS: Mapping[str, MethodSpec] = _table(
    MethodSpec("health", _health, None),
    MethodSpec("status", _status, SCOPE_READ),
    MethodSpec("agents.list", _agents_list, SCOPE_READ),
    MethodSpec("models.list", _models_list, SCOPE_READ),
    MethodSpec("agent", _agent, SCOPE_WRITE),
    MethodSpec("agent.wait", _agent_wait, SCOPE_READ),
    MethodSpec("chat.send", _chat_send, SCOPE_WRITE),
    MethodSpec("chat.history", _chat_history, SCOPE_READ),
    MethodSpec("chat.abort", _chat_abort, SCOPE_WRITE),
    MethodSpec("sessions.list", _sessions_list, SCOPE_READ),
    MethodSpec("sessions.reset", _sessions_reset, SCOPE_WRITE),
    MethodSpec("sessions.delete", _sessions_delete, SCOPE_WRITE),
    MethodSpec("sessions.subscribe", _sessions_subscribe, SCOPE_READ),
    MethodSpec("sessions.compact", methods_loop.sessions_compact, SCOPE_WRITE),
    MethodSpec("exec.approval.resolve", methods_loop.exec_approval_resolve, SCOPE_APPROVALS),
    MethodSpec("exec.approval.list", methods_loop.exec_approval_list, SCOPE_APPROVALS),
    MethodSpec("logs.tail", _logs_tail, SCOPE_READ),
    MethodSpec("gateway.reload", ops_methods.gateway_reload, SCOPE_ADMIN),
)
_CONNECT = MethodSpec("connect", _connect_again, None)


def dispatch(ctx: CallContext, params: Mapping[str, Any]) -> Deferred[Any]:
    """Run the method ``ctx.method``; errors arrive as RequestError failures."""
    spec = METHODS.get(ctx.method)
    if spec is None:
        if ctx.method == "connect":
            spec = _CONNECT
        else:
            raise RequestError(INVALID_REQUEST, f"unknown method: {ctx.method}")
    if not has_scope(ctx.connection.scopes, spec.scope):
        raise RequestError(
            FORBIDDEN,
            f"missing scope: {spec.scope}",
            details={
                "code": "MISSING_SCOPE",
                "missingScope": spec.scope,
                "requiredScopes": [spec.scope],
            },
        )
    return maybeDeferred(spec.handler, ctx, params)
