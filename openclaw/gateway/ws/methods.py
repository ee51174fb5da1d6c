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

import ipaddress
import os
import platform
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

import twisted
from openclaw.config.model import ProviderConfig
from openclaw.gateway.ws import methods_loop, ops_methods, run_methods, session_methods
from openclaw.gateway.ws.calls import (
    RECENT_SESSIONS,
    CallContext,
    GatewayServices,
    MethodSpec,
    known_agent,
    optional_int,
    optional_str,
)
from openclaw.gateway.ws.frames import FORBIDDEN, INVALID_REQUEST, RequestError, invalid_params
from openclaw.gateway.ws.handshake import SCOPE_ADMIN, SCOPE_READ, SCOPE_WRITE, has_scope
from openclaw.gateway.ws.methods_loop import SCOPE_APPROVALS
from openclaw.sessions.entry import SessionEntry
from openclaw.sessions.interface import SharedCatalog
from openclaw.sessions.keys import main_session_key

log = Logger()

__all__ = ["METHODS", "CallContext", "GatewayServices", "MethodSpec", "dispatch"]

# -- health / status / agents / models ------------------------------------------


def _agent_sessions(
    services: GatewayServices,
    agent_id: str,
    limit: int,
    row: Callable[[SessionEntry], dict[str, Any]],
) -> dict[str, Any]:
    """``{path, count, recent}`` of one agent, ``recent`` its ``limit`` newest
    sessions as ``row`` shows them; a store error counts no sessions."""
    if services.sessions is None:
        return {"path": "(unavailable)", "count": 0, "recent": []}
    try:
        entries = list(services.sessions.list_sessions(agent_id))
        path = str(services.sessions.session_path(agent_id))
    except Exception:
        log.failure("listing sessions of agent {agent_id}", agent_id=agent_id)
        return {"path": "(unavailable)", "count": 0, "recent": []}
    entries.sort(key=lambda e: e.updated_at, reverse=True)
    return {"path": path, "count": len(entries), "recent": [row(e) for e in entries[:limit]]}


def _session_summary(services: GatewayServices, agent_id: str, now: int) -> dict[str, Any]:
    """``{path, count, recent:[{key, age, updatedAt}]}`` (what ``openclaw health`` renders)."""
    return _agent_sessions(
        services,
        agent_id,
        RECENT_SESSIONS,
        lambda e: {"key": e.key, "updatedAt": e.updated_at, "age": max(0, now - e.updated_at)},
    )


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


def _status(
    ctx: CallContext, params: Mapping[str, Any]
) -> dict[str, Any] | Deferred[dict[str, Any]]:
    """The gateway's status, in OpenClaw's ``getStatusSummary`` shape where the
    CLI reads it (``openclaw status --json``: ``sessions.byAgent[]`` always,
    ``cliProjection`` when asked) plus this gateway's own fields."""
    services = ctx.services
    store: object = services.sessions
    if isinstance(store, SharedCatalog):  # other processes add sessions too
        agent_ids = services.runtime.agent_ids
        refreshed = gatherResults([store.refresh_agent(a) for a in agent_ids], consumeErrors=True)

        def stale(failure: Failure) -> None:
            log.warn(
                "status: the shared session store could not be re-read ({error}); "
                "counting what this process last saw",
                error=failure.getErrorMessage(),
            )

        return refreshed.addCallbacks(lambda _: None, stale).addCallback(
            lambda _: _status_payload(ctx, params)
        )
    return _status_payload(ctx, params)


def _status_payload(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    services = ctx.services
    now = services.now_ms()
    view = services.agents
    default = view.default_agent_id
    # OpenClaw shows store paths and session rows to operator.admin only.
    sensitive = has_scope(ctx.connection.scopes, SCOPE_ADMIN)
    by_agent = []
    recent: list[dict[str, Any]] = []
    paths: list[str] = []
    for agent in view.agents:
        summary = _status_sessions(services, agent.id, now)
        if sensitive and summary["path"] not in paths:
            paths.append(summary["path"])
        recent.extend(summary["recent"])
        by_agent.append(
            {
                "agentId": agent.id,
                "path": summary["path"] if sensitive else "[redacted]",
                "count": summary["count"],
                "recent": summary["recent"] if sensitive else [],
            }
        )
    recent.sort(key=lambda row: row["updatedAt"], reverse=True)
    runs = [
        {"runId": run.run_id, "agentId": run.agent_id, "sessionKey": run.session_key}
        for run in services.runtime.active_runs()
    ]
    default_model = next((a.model for a in view.agents if a.id == default), None)
    payload: dict[str, Any] = {
        "ok": True,
        "version": services.version,
        "runtimeVersion": f"python {platform.python_version()}, twisted {twisted.__version__}",
        "pid": os.getpid(),
        "uptimeMs": max(0, now - services.started_at_ms),
        "connections": services.connection_count(),
        "activeRuns": runs,
        # No heartbeats run here (health says heartbeatSeconds 0).
        "heartbeat": {
            "defaultAgentId": default,
            "agents": [
                {"agentId": a.id, "enabled": False, "every": "disabled", "everyMs": None}
                for a in view.agents
            ],
        },
        # Channels and system events are OpenClaw's messaging side, not served here.
        "channelSummary": [],
        "queuedSystemEvents": [],
        "sessions": {
            "paths": paths,
            "count": sum(entry["count"] for entry in by_agent),
            "defaults": {
                "defaultAgentId": default,
                "mainKey": "main",
                "mainSessionKey": main_session_key(default),
                "model": default_model,
                "contextTokens": None,
            },
            "recent": recent[:STATUS_RECENT] if sensitive else [],
            "byAgent": by_agent,
        },
    }
    if params.get("includeCliProjection") is True:
        payload["cliProjection"] = {
            "agents": {
                "defaultId": default,
                "ownership": "sole",
                "selectionRequired": False,
                "rows": [{"id": a.id, **({"name": a.name} if a.name else {})} for a in view.agents],
            },
            "updateChannel": None,
        }
    return payload


#: Session rows in ``status``, per agent and overall (OpenClaw's number).
STATUS_RECENT = 10


def _status_sessions(services: GatewayServices, agent_id: str, now: int) -> dict[str, Any]:
    """``{path, count, recent}`` of one agent, ``recent`` in OpenClaw's
    session-row shape (newest first); a store error counts no sessions."""
    return _agent_sessions(services, agent_id, STATUS_RECENT, lambda e: _status_row(e, now))


def _status_row(entry: SessionEntry, now: int) -> dict[str, Any]:
    extra = entry.extra
    row: dict[str, Any] = {
        "agentId": entry.agent_id,
        "key": entry.key,
        "kind": extra.get("kind", "direct"),
        "sessionId": entry.session_id,
        "updatedAt": entry.updated_at,
        "age": max(0, now - entry.updated_at),
    }
    for name in ("inputTokens", "outputTokens", "totalTokens", "contextTokens", "abortedLastRun"):
        if name in extra:
            row[name] = extra[name]
    model, provider = extra.get("model"), extra.get("modelProvider")
    row["model"] = model
    if isinstance(model, str) and isinstance(provider, str):
        row["selectedModel"] = f"{provider}/{model}"
    row["flags"] = []
    return row


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


#: What ``models.list`` accepts as ``view`` (OpenClaw's published-catalog views).
MODEL_VIEWS = ("default", "configured", "provider-config", "all")


def _models_list(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    """The configured model catalog, in OpenClaw's published-catalog form.

    The ``published-model-catalog`` capability (hello-ok) promises what
    ``openclaw models list`` sends: ``view``, ``provider`` (an unknown one is
    refused), ``agentId`` (must exist) and ``includeDetails`` (``local`` per
    row). The catalog is what the config names (provider models and the
    agents' refs): no discovery runs, so every view lists it and ``refresh``
    changes nothing. ``id`` is the ``provider/model`` ref, which OpenClaw's
    clients key as is.
    """
    method = "models.list"
    services = ctx.services
    agent_id = optional_str(params, "agentId", method)
    if agent_id is not None:
        known_agent(services, agent_id, method)
    view = optional_str(params, "view", method)
    if view is not None and view not in MODEL_VIEWS:
        raise invalid_params(method, f"property 'view' must be one of {', '.join(MODEL_VIEWS)}")
    details = params.get("includeDetails") is True
    providers = services.config.models.providers
    models: list[dict[str, Any]] = []
    seen: set[str] = set()
    for provider_id, provider in providers.items():
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
    for agent in services.agents.agents:
        if agent.model and agent.model not in seen and "/" in agent.model:
            seen.add(agent.model)
            provider_id, _, model_id = agent.model.partition("/")
            models.append({"id": agent.model, "name": model_id, "provider": provider_id})
    wanted = optional_str(params, "provider", method)
    if wanted is not None:
        wanted = wanted.strip().lower()
        if wanted not in {m["provider"].lower() for m in models} | {p.lower() for p in providers}:
            raise invalid_params(
                method,
                "Unknown model catalog provider. Use a provider id from the configured providers.",
            )
        models = [m for m in models if m["provider"].lower() == wanted]
    if details:
        for entry in models:
            local = _is_local(providers.get(entry["provider"]))
            if local is not None:
                entry["local"] = local
    return {"models": models}


def _is_local(provider: ProviderConfig | None) -> bool | None:
    """Whether the provider runs on this host (loopback ``baseUrl``, or the
    in-process demo); None when unknown (no such provider, no ``baseUrl``)."""
    if provider is None:
        return None
    if provider.api == "demo":
        return True
    if not provider.base_url:
        return None
    host = urlsplit(provider.base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
