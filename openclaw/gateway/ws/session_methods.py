"""The WebSocket methods over stored sessions: ``chat.history`` and
``sessions.list/reset/delete/subscribe``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger

from openclaw.gateway.ws.calls import (
    DEFAULT_HISTORY_LIMIT,
    MAX_HISTORY_LIMIT,
    MAX_SESSIONS_LISTED,
    CallContext,
    GatewayServices,
    known_agent,
    optional_int,
    optional_str,
    required_str,
    resolve_session,
    session_store,
)
from openclaw.gateway.ws.frames import INVALID_REQUEST, RequestError, invalid_params
from openclaw.gateway.ws.views import SessionsView
from openclaw.sessions.entry import SessionEntry
from openclaw.sessions.interface import SharedCatalog
from openclaw.sessions.keys import main_session_key

log = Logger()
_T = TypeVar("_T")

# -- sessions -----------------------------------------------------------------------


#: A tool result's text in ``chat.history`` at most (OpenClaw's default for them).
TOOL_RESULT_MAX_CHARS = 8_000


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


def chat_history(
    ctx: CallContext, params: Mapping[str, Any]
) -> dict[str, Any] | Deferred[dict[str, Any]]:
    method = "chat.history"
    services = ctx.services
    raw_session = required_str(params, "sessionKey", method)
    limit = optional_int(params, "limit", method, minimum=1, maximum=MAX_HISTORY_LIMIT)
    max_chars = optional_int(params, "maxChars", method, minimum=1, maximum=10_000_000)
    agent_id, session_key = resolve_session(services, method, raw_session)
    store = session_store(services)
    if isinstance(store, SharedCatalog):  # another process may have written it
        return store.refresh_session(session_key).addCallback(
            lambda _: _history(ctx, agent_id, session_key, limit, max_chars)
        )
    return _history(ctx, agent_id, session_key, limit, max_chars)


def _history(
    ctx: CallContext, agent_id: str, session_key: str, limit: int | None, max_chars: int | None
) -> dict[str, Any]:
    store = session_store(ctx.services)
    entry = store.get_session(agent_id, session_key)
    # Tool results too, as OpenClaw's history has them (the Control UI fills
    # its tool boxes from them); their text is cut to TOOL_RESULT_MAX_CHARS.
    messages = list(
        store.read_messages(
            agent_id, session_key, limit or DEFAULT_HISTORY_LIMIT, include_tools=True
        )
    )
    tool_cap = min(max_chars, TOOL_RESULT_MAX_CHARS) if max_chars else TOOL_RESULT_MAX_CHARS
    messages = [
        _truncate_message(m, tool_cap)
        if m.get("role") == "toolResult"
        else (_truncate_message(m, max_chars) if max_chars is not None else m)
        for m in messages
    ]
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
    # OpenClaw's rows say which is the agent's main session: its CLI will not
    # even dry-run deleting one.
    out["isMain"] = entry.key == main_session_key(entry.agent_id)
    return out


def sessions_list(
    ctx: CallContext, params: Mapping[str, Any]
) -> dict[str, Any] | Deferred[dict[str, Any]]:
    method = "sessions.list"
    services = ctx.services
    agent_hint = optional_str(params, "agentId", method)
    limit = optional_int(params, "limit", method, minimum=1, maximum=MAX_SESSIONS_LISTED)
    store = session_store(services)
    agent_ids: Sequence[str] = (
        [known_agent(services, agent_hint, method)] if agent_hint else services.runtime.agent_ids
    )
    if isinstance(store, SharedCatalog):  # other processes add sessions too
        refreshed = gatherResults([store.refresh_agent(a) for a in agent_ids], consumeErrors=True)
        return refreshed.addCallback(lambda _: _listed(ctx, agent_hint, agent_ids, limit))
    return _listed(ctx, agent_hint, agent_ids, limit)


def _listed(
    ctx: CallContext, agent_hint: str | None, agent_ids: Sequence[str], limit: int | None
) -> dict[str, Any]:
    services = ctx.services
    store = session_store(services)
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
        return required_str(params, "sessionKey", method)
    return required_str(params, "key", method)


def _refuse_if_busy(services: GatewayServices, session_key: str) -> None:
    if services.runtime.active_runs(session_key):
        raise _busy(session_key)


def _busy(session_key: str) -> RequestError:
    return RequestError(
        INVALID_REQUEST,
        f"session {session_key} has an active run; abort it first (chat.abort)",
        details={"code": "SESSION_BUSY"},
    )


def _when_idle_everywhere(
    services: GatewayServices, session_key: str, then: Callable[[], _T | Deferred[_T]]
) -> Deferred[_T]:
    """``then()`` unless another gateway instance runs a turn on the session; a
    shared catalog re-reads the session first, so ``then`` answers from what
    Redis holds (a session made on another instance is known here)."""

    def checked(busy: bool) -> Deferred[_T] | _T:
        if busy:
            raise _busy(session_key)
        store = session_store(services)
        if isinstance(store, SharedCatalog):
            return store.refresh_session(session_key).addCallback(lambda _: then())
        return then()

    return services.hub.relay.busy_elsewhere(session_key).addCallback(checked)


def sessions_reset(ctx: CallContext, params: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
    method = "sessions.reset"
    agent_id, session_key = resolve_session(
        ctx.services, method, _session_key_param(params, method)
    )
    return reset_session(ctx, agent_id, session_key).addCallback(
        lambda entry: {"ok": True, "key": session_key, "entry": _session_json(entry)}
    )


def reset_session(ctx: CallContext, agent_id: str, session_key: str) -> Deferred[SessionEntry]:
    """Start the session over under a new sessionId: ``sessions.reset`` and the
    ``/new`` and ``/reset`` chat commands. Raises (or fails with) ``SESSION_BUSY``
    while a run is on the session, here or on another gateway instance."""
    services = ctx.services
    store = session_store(services)
    _refuse_if_busy(services, session_key)
    return _when_idle_everywhere(
        services, session_key, lambda: _reset(ctx, store, agent_id, session_key)
    )


@runtime_checkable
class SavedChanges(Protocol):
    """A store whose reset and delete are written elsewhere (Redis) and can be
    refused there: the methods answer once it holds them, so a refusal is an
    ``UNAVAILABLE`` error and nobody is told a session was reset or deleted
    while it was not."""

    def reset_saved(self, agent_id: str, session_key: str) -> Deferred[SessionEntry]:
        """``reset``, firing with the new entry once the store holds it."""
        ...

    def delete_saved(self, agent_id: str, session_key: str) -> Deferred[bool]:
        """``delete``, firing once the store has removed the session."""
        ...


def _reset(
    ctx: CallContext, store: SessionsView, agent_id: str, session_key: str
) -> SessionEntry | Deferred[SessionEntry]:
    def done(entry: SessionEntry) -> SessionEntry:
        log.info(
            "session {session_key} reset by {conn_id}",
            session_key=session_key,
            conn_id=ctx.connection.conn_id,
        )
        return entry

    if isinstance(store, SavedChanges):
        return store.reset_saved(agent_id, session_key).addCallback(done)
    return done(store.reset(agent_id, session_key))


def _refuse_main_session(raw_key: str, agent_id: str, session_key: str) -> None:
    """The main session (and ``global``) can be reset but not deleted, as in OpenClaw:
    it is where the agent's direct conversation and its defaults live."""
    if raw_key.strip().lower() == "global":
        raise RequestError(INVALID_REQUEST, "Cannot delete the main session (global).")
    if session_key == main_session_key(agent_id):
        raise RequestError(INVALID_REQUEST, f"Cannot delete the main session ({session_key}).")


def sessions_delete(ctx: CallContext, params: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
    method = "sessions.delete"
    services = ctx.services
    raw_key = _session_key_param(params, method)
    agent_id, session_key = resolve_session(services, method, raw_key)
    _refuse_main_session(raw_key, agent_id, session_key)
    store = session_store(services)
    _refuse_if_busy(services, session_key)
    return _when_idle_everywhere(
        services, session_key, lambda: _delete(ctx, store, agent_id, session_key)
    )


def _delete(
    ctx: CallContext, store: SessionsView, agent_id: str, session_key: str
) -> dict[str, Any] | Deferred[dict[str, Any]]:
    def done(deleted: bool) -> dict[str, Any]:
        log.info(
            "session {session_key} deleted by {conn_id}",
            session_key=session_key,
            conn_id=ctx.connection.conn_id,
        )
        return {"ok": True, "key": session_key, "deleted": bool(deleted)}

    if isinstance(store, SavedChanges):
        return store.delete_saved(agent_id, session_key).addCallback(done)
    return done(store.delete(agent_id, session_key))


def sessions_subscribe(ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
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
    keys = [resolve_session(ctx.services, method, k)[1] for k in keys_raw]
    for key in keys:
        ctx.connection.subscribe(key)
    if every:
        ctx.connection.subscribe_all()
    return {"ok": True, "all": every, "keys": keys}
