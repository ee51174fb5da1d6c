"""Sessions on disk, in OpenClaw's layout under the state dir: the facade.

``agents/<agentId>/sessions/sessions.json`` maps a session key to
``{sessionId, updatedAt, ...}`` (:mod:`.index`);
``agents/<agentId>/sessions/<sessionId>.jsonl`` is that session's transcript
(:mod:`.transcript`). Blocking file work runs on a :class:`BlockingIO`
(:mod:`.fileio`). This module ties them together behind
:class:`~openclaw.sessions.interface.TranscriptStore`.

The durability rules are in the package docstring (:mod:`openclaw.sessions`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Any, Literal

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.config.model import FsyncPolicy
from openclaw.core.agent_ids import normalize_agent_id
from openclaw.core.ids import random_uuid4
from openclaw.core.types import ImageInput, StopReason, ToolCall, Usage
from openclaw.sessions.disk_budget import DiskBudget
from openclaw.sessions.entry import (
    SessionEntry,
    is_stateless_session_key,
    is_valid_session_id,
    updated_at,
    usage_fields,
)
from openclaw.sessions.fileio import (
    BlockingIO,
    InlineIO,
)
from openclaw.sessions.index import (
    INDEX_FILE,
    AgentIndex,
    load_index_file,
    over_cap,
    recover_lost_entries,
)
from openclaw.sessions.journal import RAW_ENTRY, TranscriptJournal
from openclaw.sessions.reset_policy import (
    LAST_INTERACTION_AT,
    STARTED_AT,
    ResetPolicy,
    stale_reason,
    stamp_interaction,
)
from openclaw.sessions.sweeper import ArchiveSweeper
from openclaw.sessions.transcript import (
    FAILED_STOPS,
    assistant_message,
    user_message,
)
from openclaw.sessions.writes import WriteQueue

log = Logger()

MaintenanceMode = Literal["warn", "enforce"]

#: Index changes made within this many seconds are written together.
DEFAULT_INDEX_FLUSH_DELAY = 1.0
#: OpenClaw's ``session.maintenance.maxEntries`` default.
DEFAULT_MAX_ENTRIES = 500
_STATE_CACHE_SIZE = 1024


def _raise_if_error(error: BaseException | None) -> None:
    if error is not None:
        raise error


class SessionStore:
    """The on-disk :class:`TranscriptStore` (OpenClaw's layout)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        clock: IReactorTime,
        fsync: FsyncPolicy = "turn",
        index_flush_delay: float = DEFAULT_INDEX_FLUSH_DELAY,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        maintenance: MaintenanceMode = "warn",
        io: BlockingIO | None = None,
        archive_retention_seconds: float | None = None,
        disk_budget: DiskBudget | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        """
        :param state_dir: the gateway state dir (``$OPENCLAW_STATE_DIR``).
        :param clock: time for ``updatedAt`` and for coalescing index writes.
        :param fsync: ``"turn"``: fsync each transcript once per finished turn
            and every index write; ``"never"``: leave it to the OS.
        :param index_flush_delay: index changes within this many seconds are
            written together (0 = once per reactor turn). A crash loses at most
            this interval of index updates (transcripts are recovered).
        :param max_entries: stateless sessions kept in an agent's index (the
            oldest are dropped and their transcripts archived); with
            ``maintenance="enforce"`` also the cap on the other sessions
            (``"warn"`` only logs). 0 = no cap.
        :param io: where blocking calls run (default: inline); the store owns
            it and stops it in :meth:`close`.
        :param archive_retention_seconds: delete archived transcripts
            (``*.jsonl.deleted.*``, ``*.jsonl.reset.*``) older than this; None
            keeps them.
        :param disk_budget: hold each agent's sessions directory to this
            budget by deleting its oldest archived transcripts (None: no budget).
            Both run once :meth:`start_upkeep` is called.
        :param tz: the time zone of ``session.reset.atHour`` (None: the
            machine's local time zone, as OpenClaw's).
        """
        self.state_dir = Path(state_dir)
        self._clock = clock
        self._tz = tz
        self._sync = fsync == "turn"
        self._flush_delay = index_flush_delay
        self._max_entries = max_entries
        self._maintenance: MaintenanceMode = maintenance
        self._writes = WriteQueue(io if io is not None else InlineIO())
        self._journal = TranscriptJournal(self._writes, self.transcript_path)
        self._indexes: dict[str, AgentIndex] = {}
        self._dirs: dict[str, Path] = {}
        self._dirty: set[str] = set()
        self._flush_call: IDelayedCall | None = None
        #: Transcripts with a user message appended and no outcome yet.
        self._open: dict[tuple[str, str], int] = {}
        #: Agents whose index write fails (logged once until it works again).
        self._index_failing: set[str] = set()
        #: Each open turn's user-line write: None once on disk, else its error.
        self._user_writes: dict[tuple[str, str, str], Deferred[BaseException | None]] = {}
        #: Dropped from the index while a turn was open: archived when it ends.
        self._retire_later: set[tuple[str, str]] = set()
        self._sweeper: ArchiveSweeper | None = None
        if archive_retention_seconds is not None or disk_budget is not None:
            self._sweeper = ArchiveSweeper(
                self.state_dir,
                clock=clock,
                writes=self._writes,
                retention_seconds=archive_retention_seconds,
                budget=disk_budget,
            )

    # -- paths ------------------------------------------------------------

    def sessions_dir(self, agent_id: str) -> Path:
        """``<state>/agents/<agentId>/sessions`` (the agent id is normalised)."""
        directory = self._dirs.get(agent_id)
        if directory is None:
            if len(self._dirs) >= _STATE_CACHE_SIZE:
                self._dirs.clear()
            directory = self._dirs[agent_id] = (
                self.state_dir / "agents" / normalize_agent_id(agent_id) / "sessions"
            )
        return directory

    def session_path(self, agent_id: str) -> Path:
        """The agent's ``sessions.json`` (what OpenClaw reports as the store path)."""
        return self.sessions_dir(agent_id) / INDEX_FILE

    def transcript_path(self, agent_id: str, session_id: str) -> Path:
        """The transcript file of ``session_id``; refuses ids unsafe as file names."""
        if not is_valid_session_id(session_id):
            raise ValueError(f"invalid session id {session_id!r}")
        return self.sessions_dir(agent_id) / f"{session_id}.jsonl"

    def when_idle(self) -> Deferred[None]:
        """Fires when no fsync or index write is in progress."""
        return self._writes.when_idle()

    def start_upkeep(self) -> None:
        """Start deleting archives for the retention and the disk budget: now,
        then periodically, until :meth:`close`."""
        if self._sweeper is not None:
            self._sweeper.start()

    def close(self) -> Deferred[None]:
        """Wait for pending fsyncs and index writes, write what is left of the
        indexes, then stop the IO threads (later calls run inline)."""

        def finish(_: object) -> None:
            self.flush()
            self._writes.stop()

        if self._sweeper is not None:
            self._sweeper.stop()
        return self.when_idle().addCallback(finish)

    # -- index --------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    def _index(self, agent_id: str) -> AgentIndex:
        agent = normalize_agent_id(agent_id)
        index = self._indexes.get(agent)
        if index is None:
            index = self._indexes[agent] = AgentIndex(
                load_index_file(self.session_path(agent), self._now())
            )
            if recover_lost_entries(self.sessions_dir(agent), index, agent):
                self._mark_dirty(agent)
            self._maintain(agent, index)
        return index

    def load_agent(self, agent_id: str) -> None:
        """Load the agent's index now, recovering sessions it lost in a crash."""
        self._index(agent_id)

    def _maintain(self, agent: str, index: AgentIndex) -> None:
        """Apply ``max_entries`` (see :func:`~openclaw.sessions.index.over_cap`),
        sparing sessions with a turn running; archive what was dropped."""
        dropped = over_cap(
            index,
            agent,
            self._max_entries,
            enforce=self._maintenance == "enforce",
            busy=lambda session_id: (agent, session_id) in self._open,
        )
        if dropped:
            self._mark_dirty(agent)
            self._retire(agent, dropped)
            if len(dropped) > 1:
                # Enforcing a cap that was long exceeded (a switch to enforce
                # mode): say so once; one at a time, as new sessions come, is
                # the cap working and not worth a line each.
                log.info(
                    "session maintenance: archived {count} sessions of agent {agent_id} "
                    "(maxEntries {limit}, mode {mode})",
                    count=len(dropped),
                    agent_id=agent,
                    limit=self._max_entries,
                    mode=self._maintenance,
                )

    def _retire(self, agent: str, dropped: Sequence[Mapping[str, Any]]) -> None:
        """Archive the transcripts of sessions dropped from the index, later for
        those with a turn still running."""
        now_retired: list[str] = []
        for raw in dropped:
            session_id = str(raw.get("sessionId", ""))
            if not is_valid_session_id(session_id):
                continue
            if (agent, session_id) in self._open:
                self._retire_later.add((agent, session_id))
            else:
                now_retired.append(session_id)
        self._journal.retire(agent, now_retired, self._now())

    def _mark_dirty(self, agent_id: str) -> None:
        self._dirty.add(normalize_agent_id(agent_id))
        if self._flush_call is None:
            self._flush_call = self._clock.callLater(self._flush_delay, self._scheduled_flush)

    def _cancel_flush_call(self) -> None:
        call, self._flush_call = self._flush_call, None
        if call is not None and call.active():
            call.cancel()

    def _scheduled_flush(self) -> None:
        """The coalesced write: encode here, write and sync on the IO executor."""
        self._flush_call = None
        dirty, self._dirty = self._dirty, set()
        for agent in sorted(dirty):
            index = self._indexes.get(agent)
            if index is None:
                continue
            try:
                generation, pieces = index.snapshot()
            except Exception:
                log.failure("could not encode session index for agent {agent_id}", agent_id=agent)
                self._mark_dirty(agent)  # tried again on the next interval
                continue
            d = self._writes.run(
                index.write, self.sessions_dir(agent), generation, pieces, self._sync
            )
            d.addCallbacks(
                self._index_written,
                self._index_write_failed,
                callbackArgs=(agent,),
                errbackArgs=(agent,),
            )

    def _index_written(self, _: object, agent: str) -> None:
        if agent in self._index_failing:
            self._index_failing.discard(agent)
            log.info("session index of agent {agent_id} written again", agent_id=agent)

    def _index_write_failed(self, failure: Failure, agent: str) -> None:
        # Tried again every interval: an OS error (a full disk) is logged once
        # until a write succeeds, not every second with a traceback.
        error = failure.value
        if not isinstance(error, OSError):
            log.failure(
                "could not write session index for agent {agent_id}", failure, agent_id=agent
            )
        elif agent not in self._index_failing:
            self._index_failing.add(agent)
            log.error(
                "could not write session index for agent {agent_id}: {why}; retrying "
                "every {seconds} s",
                agent_id=agent,
                why=error.strerror or str(error),
                seconds=self._flush_delay,
            )
        self._mark_dirty(agent)

    def flush(self) -> None:
        """Write every changed index now, on the calling thread (atomically)."""
        self._cancel_flush_call()
        for agent in sorted(self._dirty):
            index = self._indexes.get(agent)
            if index is None:
                self._dirty.discard(agent)
                continue
            try:
                generation, pieces = index.snapshot()
                index.write(self.sessions_dir(agent), generation, pieces, self._sync)
            except Exception:
                log.failure("could not write session index for agent {agent_id}", agent_id=agent)
            else:
                self._dirty.discard(agent)

    def _entry(self, agent: str, key: str, raw: Mapping[str, Any]) -> SessionEntry:
        extra = {k: v for k, v in raw.items() if k not in ("sessionId", "updatedAt")}
        return SessionEntry(
            key=key,
            agent_id=agent,
            session_id=str(raw.get("sessionId", "")),
            updated_at=updated_at(raw),
            extra=extra,
        )

    def get_session(self, agent_id: str, session_key: str) -> SessionEntry | None:
        """The index entry for ``session_key``, if any (and usable)."""
        agent = normalize_agent_id(agent_id)
        raw = self._index(agent).entries.get(session_key)
        if raw is None or not is_valid_session_id(str(raw.get("sessionId", ""))):
            return None
        return self._entry(agent, session_key, raw)

    def ensure_session(
        self,
        agent_id: str,
        session_key: str,
        *,
        cwd: str | None = None,
        reset: ResetPolicy | None = None,
    ) -> SessionEntry:
        """Return the session under ``session_key``, creating it when absent.

        An entry whose ``sessionId`` is not a safe file name is replaced. With
        ``reset`` (a user's message is starting a turn) a session stale under
        that policy is reset first, as :meth:`reset` does, and the entry's
        ``lastInteractionAt`` becomes now.
        """
        agent = normalize_agent_id(agent_id)
        index = self._index(agent)
        raw = index.entries.get(session_key)
        now = self._now()
        if raw is not None and reset is not None and self._stale(agent, session_key, raw, reset):
            self.reset(agent, session_key)
            raw = index.entries.get(session_key)
        if raw is not None and not is_valid_session_id(str(raw.get("sessionId", ""))):
            log.warn(
                "session {key} of agent {agent_id} has an unusable sessionId; starting fresh",
                key=session_key,
                agent_id=agent,
            )
            raw = None
        created = raw is None
        if raw is None:
            raw = {"sessionId": random_uuid4(), "updatedAt": now, STARTED_AT: now}
            index.entries[session_key] = raw
            index.changed(session_key)
            self._mark_dirty(agent)
        if reset is not None and stamp_interaction(raw, now):
            index.changed(session_key)
            self._mark_dirty(agent)
        if is_stateless_session_key(session_key):
            index.stateless[session_key] = None
            index.stateless.move_to_end(session_key)
        entry = self._entry(agent, session_key, raw)
        self._journal.opened(agent, entry.session_id, session_key, cwd, new=created)
        if created:
            self._maintain(agent, index)
        return entry

    def _stale(
        self, agent: str, session_key: str, raw: Mapping[str, Any], policy: ResetPolicy
    ) -> bool:
        reason = stale_reason(policy, raw, self._now(), self._tz)
        if reason is None or (agent, str(raw.get("sessionId", ""))) in self._open:
            # A turn still running on it (another lane's writer): not now.
            return False
        log.info(
            "session {key} of agent {agent_id} expired ({reason} reset): starting a new one",
            key=session_key,
            agent_id=agent,
            reason=reason,
        )
        return True

    def list_sessions(self, agent_id: str) -> list[SessionEntry]:
        """Every usable session of the agent, most recently updated first
        (``entry.to_json()`` is the ``sessions.list`` row)."""
        agent = normalize_agent_id(agent_id)
        entries = [
            self._entry(agent, key, raw)
            for key, raw in self._index(agent).entries.items()
            if is_valid_session_id(str(raw.get("sessionId", "")))
        ]
        entries.sort(key=lambda e: e.updated_at, reverse=True)
        return entries

    def count_sessions(self, agent_id: str) -> int:
        """How many sessions the agent's index holds."""
        return len(self._index(agent_id).entries)

    def reset(self, agent_id: str, session_key: str) -> SessionEntry:
        """Start a fresh ``sessionId`` under ``session_key``.

        The old transcript is kept, renamed ``<id>.jsonl.reset.<time>`` (as
        OpenClaw does); token counters are dropped, other fields kept. The
        index is written at once.
        """
        agent = normalize_agent_id(agent_id)
        index = self._index(agent)
        now = self._now()
        old = index.entries.get(session_key)
        fresh: dict[str, Any] = {}
        if old is not None:
            self._archive(agent, str(old.get("sessionId", "")), "reset", now)
            fresh = {
                k: v
                for k, v in old.items()
                if k not in ("inputTokens", "outputTokens", "totalTokens", "contextTokens")
            }
        fresh.pop(LAST_INTERACTION_AT, None)
        fresh.update(sessionId=random_uuid4(), updatedAt=now, **{STARTED_AT: now})
        index.entries[session_key] = fresh
        index.changed(session_key)
        self._dirty.add(agent)
        self.flush()
        return self._entry(agent, session_key, fresh)

    def delete(self, agent_id: str, session_key: str) -> bool:
        """Remove the index entry (written at once); the transcript is renamed
        ``.deleted.<time>``."""
        agent = normalize_agent_id(agent_id)
        index = self._index(agent)
        old = index.entries.pop(session_key, None)
        if old is None:
            return False
        index.changed(session_key)
        index.stateless.pop(session_key, None)
        self._archive(agent, str(old.get("sessionId", "")), "deleted", self._now())
        self._dirty.add(agent)
        self.flush()
        return True

    def _archive(self, agent: str, session_id: str, why: str, now: int) -> None:
        if is_valid_session_id(session_id):
            self._retire_later.discard((agent, session_id))
            self._journal.archive(agent, session_id, why, now)

    # -- transcripts ----------------------------------------------------------

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
        """Append the user turn (content is a string, or blocks when images come).

        The turn stays open (its session is not archived by maintenance) until
        :meth:`finish_turn`.
        """
        agent = normalize_agent_id(agent_id)
        message = user_message(text, images, timestamp)
        written = self._journal.append(
            agent, session_id, [(run_id, timestamp, message)], sync=False, now=self._now()
        )
        # finish_turn fails too when this line did not make it (a full disk).
        self._user_writes[(agent, session_id, run_id)] = written.addCallbacks(
            lambda _: None, lambda failure: failure.value
        )
        key = (agent, session_id)
        self._open[key] = self._open.get(key, 0) + 1

    def _close_turn(self, agent: str, session_id: str) -> None:
        key = (agent, session_id)
        count = self._open.pop(key, 0) - 1
        if count > 0:
            self._open[key] = count
        elif key in self._retire_later:
            self._retire_later.discard(key)
            self._retire(agent, [{"sessionId": session_id}])

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
        """Append the assistant outcome (then ``results``, the ``toolResult``
        messages answering some of its calls) and update the index entry.

        The Deferred fires once the lines are written and (policy ``turn``)
        synced, on the IO executor: report the turn only then. Failed and
        aborted turns keep their partial text, ``stopReason``
        ``error``/``aborted`` and ``errorMessage``; history replay drops that
        reply or replaces it with a marker (``agents.history``).
        """
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
        user_written = self._user_writes.pop((agent, session_id, run_id), None)
        try:
            lines = [(run_id, timestamp, message)]
            lines += [(run_id, timestamp, dict(result)) for result in results]
            written = self._journal.append(
                agent, session_id, lines, sync=self._sync, now=self._now()
            )
        finally:
            self._close_turn(agent, session_id)
        if user_written is not None:
            written.addCallback(lambda _: user_written).addCallback(_raise_if_error)
        index = self._index(agent)
        raw = index.entries.get(session_key)
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
            index.changed(session_key)
            self._mark_dirty(agent)
        return written

    def recent_messages(
        self, agent_id: str, session_id: str
    ) -> Iterator[tuple[str | None, Mapping[str, Any]]]:
        """``(run_id, message)`` for the transcript's messages, newest first."""
        return self._journal.recent_messages(normalize_agent_id(agent_id), session_id)

    def recent_entries(self, agent_id: str, session_id: str) -> Iterator[Mapping[str, Any]]:
        """The transcript's ``message`` and ``compaction`` entries, newest first."""
        return self._journal.recent_entries(normalize_agent_id(agent_id), session_id)

    def append_messages(
        self,
        agent_id: str,
        session_id: str,
        *,
        run_id: str,
        messages: Sequence[Mapping[str, Any]],
        timestamp: int,
    ) -> Deferred[None]:
        """Append messages of an open turn (an assistant step with tool calls,
        ``toolResult`` messages) in one write, without closing the turn."""
        agent = normalize_agent_id(agent_id)
        return self._journal.append(
            agent,
            session_id,
            [(run_id, timestamp, dict(message)) for message in messages],
            sync=False,
            now=self._now(),
        )

    def append_entry(
        self, agent_id: str, session_id: str, entry: Mapping[str, Any]
    ) -> Deferred[None]:
        """Append a whole entry of another type (a ``compaction`` entry); the store
        sets its ``parentId`` to the transcript's last entry and keeps its ``id``."""
        agent = normalize_agent_id(agent_id)
        return self._journal.append(
            agent,
            session_id,
            [(RAW_ENTRY, self._now(), dict(entry))],
            sync=self._sync,
            now=self._now(),
        )

    def read_messages(
        self, agent_id: str, session_key: str, limit: int = 200, *, include_tools: bool = False
    ) -> list[dict[str, Any]]:
        """The last ``limit`` transcript messages in ``chat.history``'s display shape.

        Failed and aborted replies are included (with their ``stopReason``);
        image data is replaced by its type and size.
        """
        entry = self.get_session(agent_id, session_key)
        if entry is None:
            return []
        return self._journal.display(
            entry.agent_id, entry.session_id, limit, include_tools=include_tools
        )

    def message_count(self, agent_id: str, session_key: str) -> int:
        """How many user/assistant messages the session's transcript holds."""
        entry = self.get_session(agent_id, session_key)
        return 0 if entry is None else self._journal.count(entry.agent_id, entry.session_id)
