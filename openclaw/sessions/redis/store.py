"""Sessions and transcripts in Redis: the :class:`TranscriptStore` several
gateway processes share (``session.store: "redis"``).

The runtime reads a session synchronously (``ensure_session``, history),
so each process mirrors what it needs (:mod:`.mirror`, the base class):

* an agent's index (``sessions.json``'s entries) is read whole at start-up
  and by :meth:`RedisSessionStore.refresh_agent` (``sessions.list``);
* one session (its entry and its transcript's newest lines) is read by
  :meth:`RedisSessionStore.refresh_session` when its lane is granted
  (:class:`~.lanes.RedisLanes` calls it), so the turn sees every turn other
  processes finished before, and by ``chat.history``.

Writes go to Redis as they happen, each in one atomic script fenced by the
lane's token (:mod:`.scripts`): a turn's lines and its index update land
together or not at all. ``finish_turn`` fires when Redis has them (their
durability is Redis' ``appendonly``/``appendfsync``: docs/deployment.md).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.core.agent_ids import normalize_agent_id
from openclaw.core.availability import SHARED_STATE_UNAVAILABLE
from openclaw.core.ids import random_uuid4
from openclaw.core.relay import ApprovalRelay, AuthPeers, LocalRelay, RunRelay
from openclaw.core.types import ImageInput, StopReason, ToolCall, Usage
from openclaw.sessions.entry import (
    SessionEntry,
    is_stateless_session_key,
    is_valid_session_id,
    updated_at,
    usage_fields,
)
from openclaw.sessions.journal import RAW_ENTRY
from openclaw.sessions.redis.client import RedisCommandError, RedisCommands
from openclaw.sessions.redis.keys import KeySchema
from openclaw.sessions.redis.lanes import LaneLostError, LeaseBook
from openclaw.sessions.redis.mirror import SessionMirror, json_object
from openclaw.sessions.redis.scripts import APPEND, REPLACE
from openclaw.sessions.redis.transcript import (
    DEFAULT_TAIL_LINES,
    CachedTranscript,
    encode_line,
)
from openclaw.sessions.reset_policy import (
    LAST_INTERACTION_AT,
    STARTED_AT,
    ResetPolicy,
    stale_reason,
    stamp_interaction,
)
from openclaw.sessions.transcript import (
    FAILED_STOPS,
    archive_suffix,
    assistant_message,
    session_header,
    user_message,
)

log = Logger()
_R = TypeVar("_R")

#: Transcripts kept in this process' memory (least recently used go first).
DEFAULT_CACHED_TRANSCRIPTS = 4096
_TOKEN_FIELDS = ("inputTokens", "outputTokens", "totalTokens", "contextTokens")
#: OpenClaw's ``session.maintenance.maxEntries`` default.
DEFAULT_MAX_STATELESS = 500


class RedisSessionStore(SessionMirror):
    """The :class:`~openclaw.sessions.interface.TranscriptStore` over Redis."""

    #: Exec approvals shared by the instances: set by the backend only (a
    #: store without it is not ProvidesApprovalRelay, so approvals stay local).
    approval_relay: ApprovalRelay

    def __init__(
        self,
        client: RedisCommands,
        *,
        clock: IReactorTime,
        state_dir: Path,
        schema: KeySchema | None = None,
        leases: LeaseBook | None = None,
        tail_lines: int = DEFAULT_TAIL_LINES,
        cached_transcripts: int = DEFAULT_CACHED_TRANSCRIPTS,
        owns_client: bool = False,
        max_stateless: int = DEFAULT_MAX_STATELESS,
        archive_retention_seconds: float | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        """
        :param leases: the lanes' fencing tokens (writes of a session whose lane
            this process holds are fenced with its token).
        :param owns_client: :meth:`close` also closes the connection.
        :param max_stateless: stateless chat-completion sessions kept per agent
            (``session.maintenance.maxEntries``; the oldest are dropped, in
            Redis and in this process' mirror). 0 = no cap.
        :param state_dir: only for :meth:`session_path` (what ``sessions.list``
            reports) and export.
        :param archive_retention_seconds: ``resetArchiveRetention``: archived
            transcripts expire after this long (a Redis TTL); None keeps them.
        :param tz: the time zone of ``session.reset.atHour`` (None: the
            machine's local time zone).
        """
        self._client = client
        self._clock = clock
        self._archive_ttl_ms = (
            ""
            if archive_retention_seconds is None
            else max(1, int(archive_retention_seconds * 1000))
        )
        self.state_dir = Path(state_dir)
        self._schema = schema if schema is not None else KeySchema()
        self.leases = leases if leases is not None else LeaseBook()
        self._tail = tail_lines
        self._cache_size = cached_transcripts
        self._indexes: dict[str, dict[str, dict[str, Any]]] = {}
        self._tx: OrderedDict[tuple[str, str], CachedTranscript] = OrderedDict()
        #: (agent, sessionId) -> the key, cwd it is used under (for the header).
        self._opened: dict[tuple[str, str], tuple[str, str | None]] = {}
        #: Sessions made here whose index entry is not in Redis yet.
        self._unsaved: set[tuple[str, str]] = set()
        #: Sessions whose entry got a new ``lastInteractionAt``: sent with their next line.
        self._touched: set[tuple[str, str]] = set()
        self._tz = tz
        self._pending: set[Deferred[Any]] = set()
        self._owns_client = owns_client
        self._max_stateless = max_stateless
        #: Stateless keys in the mirror, oldest first, per agent (capped).
        self._stateless: dict[str, OrderedDict[str, None]] = {}
        #: Runs across the instances sharing this Redis (set by the backend).
        self.run_relay: RunRelay = LocalRelay()
        #: The instances' shared failed-auth budget (set by the backend).
        self.auth_peers: AuthPeers | None = None

    # -- catalog --------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    def session_path(self, agent_id: str) -> Path:
        """Where ``openclaw sessions export`` writes the agent's index."""
        agent = normalize_agent_id(agent_id)
        return self.state_dir / "agents" / agent / "sessions" / "sessions.json"

    def _entry(self, agent: str, key: str, raw: Mapping[str, Any]) -> SessionEntry:
        extra = {k: v for k, v in raw.items() if k not in ("sessionId", "updatedAt")}
        return SessionEntry(
            key=key,
            agent_id=agent,
            session_id=str(raw.get("sessionId", "")),
            updated_at=updated_at(raw),
            extra=extra,
        )

    def _index(self, agent_id: str) -> dict[str, dict[str, Any]]:
        agent = normalize_agent_id(agent_id)
        index = self._indexes.get(agent)
        if index is None:
            self.load_agent(agent)
            index = self._indexes[agent]
        return index

    def get_session(self, agent_id: str, session_key: str) -> SessionEntry | None:
        agent = normalize_agent_id(agent_id)
        raw = self._index(agent).get(session_key)
        if raw is None or not is_valid_session_id(str(raw.get("sessionId", ""))):
            return None
        return self._entry(agent, session_key, raw)

    def list_sessions(self, agent_id: str) -> list[SessionEntry]:
        agent = normalize_agent_id(agent_id)
        entries = [
            self._entry(agent, key, raw)
            for key, raw in self._index(agent).items()
            if is_valid_session_id(str(raw.get("sessionId", "")))
        ]
        entries.sort(key=lambda e: e.updated_at, reverse=True)
        return entries

    def count_sessions(self, agent_id: str) -> int:
        return len(self._index(agent_id))

    def ensure_session(
        self,
        agent_id: str,
        session_key: str,
        *,
        cwd: str | None = None,
        reset: ResetPolicy | None = None,
    ) -> SessionEntry:
        """The session under ``session_key`` (as last read from Redis), or a new
        one, saved with its first transcript line.

        With ``reset`` (a user's message is starting a turn, under the
        session's lane, so the copy was just read) a session stale under that
        policy is reset as :meth:`reset` does (the reset is sent to Redis ahead
        of the turn's first line), and ``lastInteractionAt`` becomes now (saved
        with that line)."""
        agent = normalize_agent_id(agent_id)
        index = self._index(agent)
        raw = index.get(session_key)
        now = self._now()
        if raw is not None and reset is not None:
            reason = stale_reason(reset, raw, now, self._tz)
            if reason is not None and is_valid_session_id(str(raw.get("sessionId", ""))):
                log.info(
                    "session {key} of agent {agent_id} expired ({reason} reset): "
                    "starting a new one",
                    key=session_key,
                    agent_id=agent,
                    reason=reason,
                )
                self._rollover(agent, session_key, raw, now)
                raw = index.get(session_key)
        if raw is None or not is_valid_session_id(str(raw.get("sessionId", ""))):
            raw = {"sessionId": random_uuid4(), "updatedAt": now, STARTED_AT: now}
            index[session_key] = raw
            self._unsaved.add((agent, raw["sessionId"]))
            self._remember(agent, raw["sessionId"], CachedTranscript([], 0))
        if reset is not None and stamp_interaction(raw, now):
            self._touched.add((agent, str(raw["sessionId"])))
        entry = self._entry(agent, session_key, raw)
        self._opened[(agent, entry.session_id)] = (session_key, cwd)
        if is_stateless_session_key(session_key):
            self._forget_old_stateless(agent, session_key, index)
        return entry

    def _rollover(self, agent: str, session_key: str, old: dict[str, Any], now: int) -> None:
        """An automatic reset: what this process read under the session's lane
        is what Redis holds, so the new entry replaces whatever is there in one
        try (no retry that a following write of the turn could overtake)."""
        fresh = {k: v for k, v in old.items() if k not in _TOKEN_FIELDS}
        fresh.pop(LAST_INTERACTION_AT, None)
        fresh.update(sessionId=random_uuid4(), updatedAt=now, **{STARTED_AT: now})
        self._index(agent)[session_key] = fresh
        self._forget_transcript(agent, old)
        self._remember(agent, fresh["sessionId"], CachedTranscript([], 0))
        self._track(
            self._replace(agent, session_key, "*", lambda _: fresh, "reset", now, tries=1),
            "automatic reset of a session",
        )

    def reset(self, agent_id: str, session_key: str) -> SessionEntry:
        """:meth:`reset_saved` without waiting for Redis (a refusal is only
        logged): the :class:`~openclaw.sessions.interface.SessionCatalog` call."""
        entry, saved = self._reset(agent_id, session_key)
        self._track(saved, "reset of a session")
        return entry

    def reset_saved(self, agent_id: str, session_key: str) -> Deferred[SessionEntry]:
        """A fresh sessionId; the old transcript is renamed ``.reset.<time>``.

        Redis decides what "old" is (the entry it holds when the script runs,
        whichever instance wrote it last), so the transcript archived is the
        session's current one and its fields are kept even when this process'
        copy is stale. Fires with the new entry once Redis holds it; fails
        (RedisRefusedError, RedisUnavailableError...) when Redis did not take
        it, with this process' copy put back: nobody may be told it was reset."""
        return self._held(self._reset(agent_id, session_key)[1])

    def _reset(
        self, agent_id: str, session_key: str
    ) -> tuple[SessionEntry, Deferred[SessionEntry]]:
        agent = normalize_agent_id(agent_id)
        index = self._index(agent)
        now = self._now()
        old = index.get(session_key)
        session_id = random_uuid4()

        def fresh_from(current: Mapping[str, Any] | None) -> dict[str, Any]:
            fresh = {k: v for k, v in (current or {}).items() if k not in _TOKEN_FIELDS}
            fresh.pop(LAST_INTERACTION_AT, None)
            fresh.update(sessionId=session_id, updatedAt=now, **{STARTED_AT: now})
            return fresh

        fresh = index[session_key] = fresh_from(old)
        self._forget_transcript(agent, old)
        expected = encode_line(old) if old is not None else ""
        saved = self._replace(agent, session_key, expected, fresh_from, "reset", now)

        def refused(failure: Failure) -> Failure:
            # Redis still holds the old session: so does this process' copy.
            current = self._indexes.get(agent, {})
            if current.get(session_key, {}).get("sessionId") == session_id:
                if old is None:
                    current.pop(session_key, None)
                else:
                    current[session_key] = old
            return failure

        def written(_: object) -> SessionEntry:
            # The entry with the fields Redis had (the script may have been retried).
            current = self._indexes.get(agent, {}).get(session_key)
            if current is not None and current.get("sessionId") == session_id:
                return self._entry(agent, session_key, current)
            return entry

        entry = self._entry(agent, session_key, fresh)
        return entry, saved.addCallbacks(written, refused)

    def delete(self, agent_id: str, session_key: str) -> bool:
        """:meth:`delete_saved` without waiting for Redis (a refusal is only
        logged): the :class:`~openclaw.sessions.interface.SessionCatalog` call."""
        known, saved = self._delete(agent_id, session_key)
        self._track(saved, "deletion of a session")
        return known

    def delete_saved(self, agent_id: str, session_key: str) -> Deferred[bool]:
        """Remove the entry Redis holds (whatever this process' copy says); the
        transcript it names is renamed ``.deleted.<time>``. Fires once Redis
        has removed it: True when this process knew the session (the gateway
        re-reads it first). Fails when Redis did not take it, with this
        process' copy put back."""
        return self._held(self._delete(agent_id, session_key)[1])

    def _delete(self, agent_id: str, session_key: str) -> tuple[bool, Deferred[bool]]:
        agent = normalize_agent_id(agent_id)
        old = self._index(agent).pop(session_key, None)
        self._forget_transcript(agent, old)
        saved = self._replace(agent, session_key, "*", lambda _: None, "deleted", self._now())

        def refused(failure: Failure) -> Failure:
            current = self._indexes.get(agent, {})
            if old is not None and session_key not in current:
                current[session_key] = old  # Redis still holds it
            return failure

        known = old is not None
        return known, saved.addCallbacks(lambda _: known, refused)

    def hold(self, d: Deferred[Any]) -> None:
        """Have :meth:`close` wait for ``d`` too (a lane release in flight:
        closing the connection under it would leave the lock to its TTL)."""
        self._held(d)

    def _held(self, d: Deferred[_R]) -> Deferred[_R]:
        """``d``, waited for by :meth:`when_idle` and :meth:`close` through a
        twin (waiting must not take ``d``'s result from its caller)."""
        twin: Deferred[None] = Deferred()
        self._pending.add(twin)

        def fired(result: _R | Failure) -> _R | Failure:
            self._pending.discard(twin)
            twin.callback(None)
            return result

        return d.addBoth(fired)

    def _forget_transcript(self, agent: str, entry: Mapping[str, Any] | None) -> None:
        if entry is not None:
            old_id = str(entry.get("sessionId", ""))
            self._tx.pop((agent, old_id), None)
            self._unsaved.discard((agent, old_id))

    def _replace(
        self,
        agent: str,
        session_key: str,
        expected: str,
        make: Callable[[Mapping[str, Any] | None], dict[str, Any] | None],
        why: str,
        now: int,
        *,
        tries: int = 3,
    ) -> Deferred[None]:
        """Run :data:`REPLACE` with ``make(entry)`` as the new entry, where
        ``entry`` is what Redis holds; when the guess (``expected``) was wrong,
        once more with what Redis answered it holds. Fires once Redis took it."""
        schema = self._schema
        tail = f".jsonl.{why}.{archive_suffix(now)}"

        def attempt(expected: str, tries: int) -> Deferred[None]:
            fresh = make(json_object(expected) if expected not in ("", "*") else None)
            d = self._client.run_script(
                REPLACE,
                [schema.index(agent), schema.agents()],
                [
                    session_key,
                    expected,
                    encode_line(fresh) if fresh is not None else "",
                    agent,
                    self._archive_ttl_ms,
                    schema.transcript(agent, ""),
                    schema.archived(agent, ""),
                    tail,
                ],
            )

            def answered(reply: Any) -> Deferred[None] | None:
                done, raw = int(reply[0]), _text(reply[1])
                if not done:
                    if tries <= 1:
                        raise RuntimeError("the session kept changing meanwhile")
                    return attempt(raw, tries - 1)
                self._forget_transcript(agent, json_object(raw) if raw else None)
                index = self._indexes.get(agent, {})
                current = index.get(session_key) or {}
                if fresh is not None and current.get("sessionId") == fresh["sessionId"]:
                    index[session_key] = fresh  # with the fields Redis had
                return None

            return d.addCallback(answered)

        return attempt(expected, tries)

    # -- transcripts --------------------------------------------------------------------

    def _write(
        self,
        agent: str,
        session_id: str,
        messages: Sequence[tuple[str, int, Mapping[str, Any]]],
        *,
        index_entry: Mapping[str, Any] | None = None,
    ) -> Deferred[None]:
        """Append ``messages`` (and set the index entry) in one fenced script."""
        key, cwd = self._opened.get((agent, session_id), ("", None))
        if not key:
            for candidate, raw in self._indexes.get(agent, {}).items():
                if raw.get("sessionId") == session_id:
                    key = candidate
                    break
        transcript = self._transcript(agent, session_id)
        first_ts = messages[0][1] if messages else self._now()
        header = ""
        if transcript.length == 0:
            header = session_header(session_id, first_ts, cwd, key or None).decode("utf-8")
            header = header.rstrip("\n")
            transcript.length = 1  # the header line, written with the first lines
        lines = transcript.build(messages)
        creating = (agent, session_id) in self._unsaved
        touched = (agent, session_id) in self._touched
        if (creating or touched) and index_entry is None:
            index_entry = self._indexes.get(agent, {}).get(key)
        self._touched.discard((agent, session_id))
        token = self.leases.token(key) if key else None
        lost = self.leases.lost_error(key) if key else None
        if lost is not None:  # Redis would refuse it (FENCED): do not send it
            self._tx.pop((agent, session_id), None)
            return fail(lost)
        schema = self._schema
        d = self._client.run_script(
            APPEND,
            [
                schema.lock(key or session_id),
                schema.transcript(agent, session_id),
                schema.index(agent),
                schema.agents(),
                schema.stateless(agent),
            ],
            [
                token or "",
                key,
                session_id,
                encode_line(index_entry) if index_entry is not None else "",
                "create" if creating else "update",
                header,
                agent,
                self._max_stateless if is_stateless_session_key(key) else 0,
                self._now(),
                schema.transcript(agent, ""),
                *lines,
            ],
        )

        def saved(_: object) -> None:
            self._unsaved.discard((agent, session_id))

        def refused(failure: Failure) -> Failure:
            # Nothing was written: forget what this process assumed it holds.
            self._tx.pop((agent, session_id), None)
            error = failure.value
            if isinstance(error, RedisCommandError) and "FENCED" in str(error):
                # Another process holds the lane now (this one stalled past the
                # lock's TTL): the turn is not saved, and the run must say so.
                return Failure(LaneLostError(key))  # type: ignore[no-untyped-call]  # untyped in Twisted
            return failure

        d.addCallbacks(saved, refused)
        return d

    def watch_lane(self, session_key: str, lost: Callable[[Exception], None]) -> Callable[[], None]:
        """Call ``lost`` when this process loses the lane of ``session_key`` while
        holding it (the run holding it stops its turn); returns the unwatch."""
        return self.leases.watch(session_key, lost)

    def _track(self, d: Deferred[Any], what: str) -> None:
        self._pending.add(d)

        def done(result: object) -> None:
            self._pending.discard(d)
            if isinstance(result, Failure):
                log.warn("session store: {what} failed: {why}", what=what, why=str(result.value))

        d.addBoth(done)

    def append_user(
        self,
        agent_id: str,
        session_id: str,
        *,
        run_id: str,
        text: str,
        images: Sequence[ImageInput] = (),
        timestamp: int,
    ) -> None:
        agent = normalize_agent_id(agent_id)
        message = user_message(text, images, timestamp)
        self._track(
            self._write(agent, session_id, [(run_id, timestamp, message)]),
            "appending a user message",
        )

    def finish_turn(
        self,
        agent_id: str,
        session_key: str,
        session_id: str,
        *,
        run_id: str,
        text: str,
        timestamp: int,
        usage: Usage,
        stop_reason: StopReason,
        tool_calls: Sequence[ToolCall] = (),
        message_usage: Usage | None = None,
        error: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        api: str | None = None,
        channel: str | None = None,
        results: Sequence[Mapping[str, Any]] = (),
        session_fields: Mapping[str, Any] | None = None,
    ) -> Deferred[None]:
        """Append the outcome (and ``results``) and update the index entry in one
        script; fires once Redis holds them."""
        agent = normalize_agent_id(agent_id)
        last_call = usage if message_usage is None else message_usage
        message = assistant_message(
            text=text,
            timestamp=timestamp,
            usage=last_call,
            stop_reason=stop_reason,
            tool_calls=tool_calls,
            error=error,
            provider=provider,
            model=model,
            api=api,
        )
        lines: list[tuple[str, int, Mapping[str, Any]]] = [(run_id, timestamp, message)]
        lines += [(run_id, timestamp, dict(result)) for result in results]
        index = self._index(agent)
        raw = index.get(session_key)
        entry: dict[str, Any] | None = None
        if raw is not None and raw.get("sessionId") == session_id:
            raw["updatedAt"] = timestamp
            if stop_reason not in FAILED_STOPS:
                raw.update(usage_fields(usage, last_call))
            if model is not None:
                raw["model"] = model
            if provider is not None:
                raw["modelProvider"] = provider
            if channel is not None:
                raw["lastChannel"] = channel
            if session_fields:
                raw.update(session_fields)
            entry = raw
        return self._write(agent, session_id, lines, index_entry=entry)

    def append_messages(
        self,
        agent_id: str,
        session_id: str,
        *,
        run_id: str,
        messages: Sequence[Mapping[str, Any]],
        timestamp: int,
    ) -> Deferred[None]:
        agent = normalize_agent_id(agent_id)
        return self._write(
            agent, session_id, [(run_id, timestamp, dict(message)) for message in messages]
        )

    def append_entry(
        self, agent_id: str, session_id: str, entry: Mapping[str, Any]
    ) -> Deferred[None]:
        agent = normalize_agent_id(agent_id)
        return self._write(agent, session_id, [(RAW_ENTRY, self._now(), dict(entry))])

    def recent_messages(
        self, agent_id: str, session_id: str
    ) -> Iterator[tuple[str | None, Mapping[str, Any]]]:
        return self._transcript(normalize_agent_id(agent_id), session_id).recent_messages()

    def recent_entries(self, agent_id: str, session_id: str) -> Iterator[Mapping[str, Any]]:
        return self._transcript(normalize_agent_id(agent_id), session_id).recent_entries()

    def read_messages(
        self, agent_id: str, session_key: str, limit: int = 200, *, include_tools: bool = False
    ) -> list[dict[str, Any]]:
        entry = self.get_session(agent_id, session_key)
        if entry is None or limit <= 0:
            return []
        transcript = self._transcript(entry.agent_id, entry.session_id)
        return transcript.display(limit, include_tools=include_tools)

    def message_count(self, agent_id: str, session_key: str) -> int:
        entry = self.get_session(agent_id, session_key)
        if entry is None:
            return 0
        return self._transcript(entry.agent_id, entry.session_id).count()

    def unavailable_reason(self) -> str | None:
        """``/readyz``'s reason while Redis is unreachable (ReportsAvailability)."""
        return SHARED_STATE_UNAVAILABLE if self._client.lost else None

    def flush(self) -> None:
        """Nothing to do: every change is sent to Redis as it happens."""

    def when_idle(self) -> Deferred[None]:
        """Fires when every write sent so far has been answered."""
        pending = list(self._pending)
        return DeferredList(pending, consumeErrors=True).addCallback(lambda _: None)

    def start_upkeep(self) -> None:
        """Nothing to do: archive retention and the disk budget are the file store's."""

    def close(self) -> Deferred[None]:
        """Wait for the writes in flight, then close the connection if ours."""
        idle = self.when_idle()
        self.run_relay.detach()
        if self._owns_client:
            idle.addCallback(lambda _: self._client.close())
        return idle


def _text(raw: Any) -> str:
    """A bulk reply as text (the client may hand bytes or str)."""
    return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
