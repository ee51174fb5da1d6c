"""The method table of the WebSocket protocol: one handler per method name.

A handler receives a :class:`CallContext` and the request's params and
returns the response payload (or a Deferred of it), or raises
:class:`~openclaw.gateway.ws.frames.RequestError`. ``agent`` is the one method
that answers twice: it sends an ack through ``CallContext.ack`` and returns the
final payload later. Handlers never touch the transport.

The handlers live in :mod:`.run_methods` (runs) and :mod:`.session_methods`
(stored sessions); this module keeps the status methods and the table.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

import twisted
from openclaw.gateway.ws import methods_loop, ops_methods, run_methods, session_methods
from openclaw.gateway.ws.calls import (
    RECENT_SESSIONS,
    CallContext,
    GatewayServices,
    MethodSpec,
    optional_int,
)
from openclaw.gateway.ws.frames import FORBIDDEN, INVALID_REQUEST, RequestError
from openclaw.gateway.ws.handshake import SCOPE_ADMIN, SCOPE_READ, SCOPE_WRITE, has_scope
from openclaw.gateway.ws.methods_loop import SCOPE_APPROVALS
from openclaw.sessions.keys import main_session_key

log = Logger()

__all__ = ["METHODS", "CallContext", "GatewayServices", "MethodSpec", "dispatch"]

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


# -- logs -------------------------------------------------------------------------------


def _logs_tail(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    method = "logs.tail"
    cursor = optional_int(params, "cursor", method, minimum=0, maximum=2**53)
    limit = optional_int(params, "limit", method, minimum=1, maximum=5000)
    max_bytes = optional_int(params, "maxBytes", method, minimum=1, maximum=10_000_000)
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
    MethodSpec("agent", run_methods.agent, SCOPE_WRITE),
    MethodSpec("agent.wait", run_methods.agent_wait, SCOPE_READ),
    MethodSpec("chat.send", run_methods.chat_send, SCOPE_WRITE),
    MethodSpec("chat.history", session_methods.chat_history, SCOPE_READ),
    MethodSpec("chat.abort", run_methods.chat_abort, SCOPE_WRITE),
    MethodSpec("sessions.list", session_methods.sessions_list, SCOPE_READ),
    MethodSpec("sessions.reset", session_methods.sessions_reset, SCOPE_ADMIN),
    MethodSpec("sessions.delete", session_methods.sessions_delete, SCOPE_ADMIN),
    MethodSpec("sessions.subscribe", session_methods.sessions_subscribe, SCOPE_READ),
    MethodSpec("sessions.compact", methods_loop.sessions_compact, SCOPE_ADMIN),
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
