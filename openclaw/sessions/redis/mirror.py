"""This process' mirror of what it needs from Redis (see :mod:`.store`).

The runtime reads sessions synchronously, so the store keeps each agent's
index and the transcripts of the sessions it serves in memory, and re-reads
them from Redis when it must be current: an agent's index at start-up and for
``sessions.list``, one session (entry and the transcript lines appended since
this process last held it) when its lane is granted and for ``chat.history``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from openclaw.core.agent_ids import normalize_agent_id
from openclaw.sessions.redis.client import RedisCommands
from openclaw.sessions.redis.keys import KeySchema
from openclaw.sessions.redis.scripts import READ_SESSION
from openclaw.sessions.redis.transcript import CachedTranscript, decode_lines

log = Logger()


@frozen
class SessionRead:
    """One read of a session: the script's KEYS and ARGV, and what to do with
    its reply."""

    keys: list[str]
    args: list[str | int]
    apply: Callable[[Any], None]


class SessionMirror:
    """The reads of :class:`~.store.RedisSessionStore` (its base class)."""

    _client: RedisCommands
    _schema: KeySchema
    _tail: int
    _cache_size: int
    _max_stateless: int
    #: agent -> session key -> the ``sessions.json`` entry, as last read or written.
    _indexes: dict[str, dict[str, dict[str, Any]]]
    #: (agent, sessionId) -> the transcript's newest lines, least recently used first.
    _tx: OrderedDict[tuple[str, str], CachedTranscript]
    #: (agent, sessionId) -> the key and cwd it is used under (for the header).
    _opened: dict[tuple[str, str], tuple[str, str | None]]
    #: Sessions made here whose index entry is not in Redis yet.
    _unsaved: set[tuple[str, str]]
    #: Stateless keys in the mirror, oldest first, per agent (capped).
    _stateless: dict[str, OrderedDict[str, None]]

    def load_agent(self, agent_id: str) -> None:
        """Know the agent; its index is read in the background."""
        agent = normalize_agent_id(agent_id)
        if agent not in self._indexes:
            self._indexes[agent] = {}
            self.refresh_agent(agent).addErrback(
                lambda f: log.warn(
                    "could not read the sessions of agent {agent_id}: {why}",
                    agent_id=agent,
                    why=str(f.value),
                )
            )

    def refresh_agent(self, agent_id: str) -> Deferred[None]:
        """Read the agent's whole index from Redis into the mirror."""
        agent = normalize_agent_id(agent_id)
        self._indexes.setdefault(agent, {})

        def got(flat: Any) -> None:
            entries: dict[str, dict[str, Any]] = {}
            items = list(flat or [])
            for key, raw in zip(items[::2], items[1::2], strict=True):
                parsed = json_object(raw)
                if parsed is not None:
                    entries[str(key)] = parsed
            index = self._indexes[agent]
            for key in [k for k in index if (agent, k) not in self._unsaved_keys()]:
                if key not in entries:
                    del index[key]
            index.update(entries)

        return self._client.execute("HGETALL", self._schema.index(agent)).addCallback(got)

    def _unsaved_keys(self) -> set[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        for agent, session_id in self._unsaved:
            for key, raw in self._indexes.get(agent, {}).items():
                if raw.get("sessionId") == session_id:
                    out.add((agent, key))
        return out

    def refresh_session(self, session_key: str) -> Deferred[None]:
        """Read ``session_key``'s entry and new transcript lines, in every
        known agent, in one round trip."""
        plan = self.read_plan(session_key)
        if plan is None:
            return succeed(None)
        d = self._client.run_script(READ_SESSION, plan.keys, plan.args)
        return d.addCallback(plan.apply)

    def read_plan(self, session_key: str) -> SessionRead | None:
        """What reading ``session_key`` sends (``READ_SESSION``'s KEYS and ARGV)
        and how its reply updates the mirror; None before any agent is known.
        The lanes run it inside their acquire script (one trip per grant)."""
        agents = sorted(self._indexes)
        if not agents:
            return None
        schema = self._schema
        held: list[str | int] = []
        for agent in agents:
            current = self._indexes[agent].get(session_key)
            sid = str(current.get("sessionId", "")) if current is not None else ""
            cached = self._tx.get((agent, sid)) if sid else None
            held += [sid, cached.length] if cached is not None and cached.known else ["", 0]
        return SessionRead(
            keys=[schema.index(agent) for agent in agents],
            args=[session_key, schema.transcript_prefix(), *agents, self._tail, *held],
            apply=lambda reply: self._read(session_key, agents, reply),
        )

    def _read(self, session_key: str, agents: list[str], reply: Any) -> None:
        for i, agent in enumerate(agents):
            raw, lines, length, fresh = reply[4 * i : 4 * i + 4]
            index = self._indexes.setdefault(agent, {})
            entry = json_object(raw) if raw else None
            if entry is None:
                current = index.get(session_key)
                if current is None or (agent, str(current.get("sessionId"))) not in self._unsaved:
                    index.pop(session_key, None)
                continue
            index[session_key] = entry
            session_id = str(entry.get("sessionId", ""))
            self._unsaved.discard((agent, session_id))
            cached = self._tx.get((agent, session_id))
            if str(fresh) == "1" and cached is not None and cached.known:
                # Only what other processes appended since we last held it.
                cached.extend(decode_lines(lines or []), int(length), self._tail)
                self._tx.move_to_end((agent, session_id))
            else:
                transcript = CachedTranscript(decode_lines(lines or []), int(length))
                self._remember(agent, session_id, transcript)

    def _remember(self, agent: str, session_id: str, transcript: CachedTranscript) -> None:
        key = (agent, session_id)
        self._tx[key] = transcript
        self._tx.move_to_end(key)
        while len(self._tx) > self._cache_size:
            self._tx.popitem(last=False)

    def _transcript(self, agent: str, session_id: str) -> CachedTranscript:
        key = (agent, session_id)
        cached = self._tx.get(key)
        if cached is None:
            cached = CachedTranscript([], 0, known=False)
            self._remember(agent, session_id, cached)
        else:
            self._tx.move_to_end(key)
        return cached

    def _forget_old_stateless(
        self, agent: str, session_key: str, index: dict[str, dict[str, Any]]
    ) -> None:
        """Keep this process' mirror of one-off sessions bounded (Redis drops
        them past the same cap)."""
        recent = self._stateless.setdefault(agent, OrderedDict())
        recent[session_key] = None
        recent.move_to_end(session_key)
        while self._max_stateless and len(recent) > self._max_stateless:
            old, _ = recent.popitem(last=False)
            raw = index.pop(old, None)
            if raw is not None:
                old_id = str(raw.get("sessionId", ""))
                self._opened.pop((agent, old_id), None)
                self._tx.pop((agent, old_id), None)


def json_object(raw: Any) -> dict[str, Any] | None:
    """``raw`` parsed when it is a JSON object, else None."""
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None
