"""The transcript files of a store: appending turns, archiving, reading back.

A :class:`TranscriptJournal` remembers, per transcript, what appending needs
between turns (the last entry id for the parent chain, the header, whether
a torn last line was checked for); it builds the lines on the reactor thread
and hands the writes to the store's :class:`~openclaw.sessions.writes.WriteQueue`.
Reads stay on the reactor thread: they hit the page cache, and a session's
lane guarantees its previous turn is on disk.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import define
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.core.ids import short_id
from openclaw.sessions.fileio import append_lines, rename_all, sync_and_close, write_transcript
from openclaw.sessions.transcript import (
    DISPLAY_ROLES,
    DISPLAY_ROLES_WITH_TOOLS,
    MAX_TAIL_BYTES,
    archive_suffix,
    for_display,
    iso_ms,
    line_pieces,
    message_of,
    read_backwards,
    session_header,
)
from openclaw.sessions.writes import WriteQueue

log = Logger()

_CACHE_SIZE = 1024
#: The ``run_id`` under which :meth:`TranscriptJournal.append` takes a whole
#: entry (``type`` other than ``message``) instead of a message.
RAW_ENTRY = "\x00entry"
_Key = tuple[str, str]


@define
class TranscriptState:
    """What appending needs to remember per transcript between turns."""

    last_id: str | None = None
    #: The file was checked for a torn last line since this process opened it.
    checked: bool = False
    cwd: str | None = None
    #: The session key, recorded in the header so a lost index entry can be rebuilt.
    key: str | None = None
    #: Made for a session id created here and nothing appended yet: there is no
    #: file, so there is no history to read.
    empty: bool = False
    #: The transcript's path, once computed.
    path: Path | None = None
    #: The encoded ``session`` header line (written only to an empty file).
    header: bytes | None = None


def log_failure(failure: Failure, what: str) -> None:
    """An errback for background writes: log what failed, with the traceback."""
    log.failure("session store: {what} failed", failure, what=what)


class TranscriptJournal:
    """Appends to, archives and reads the ``<sessionId>.jsonl`` files of a store."""

    def __init__(self, writes: WriteQueue, path_of: Callable[[str, str], Path]) -> None:
        """
        :param writes: where file writes go (in order per transcript).
        :param path_of: ``(agent, session_id) -> path`` (refuses unsafe ids).
        """
        self._writes = writes
        self._path_of = path_of
        self._states: OrderedDict[_Key, TranscriptState] = OrderedDict()
        self._warned: set[Path] = set()
        #: Reset or deleted: no more writes.
        self._archived: set[_Key] = set()

    def report_bad_line(self, path: Path, last: bool) -> None:
        """Warn once per transcript and process about lines that do not parse."""
        if path in self._warned:
            return
        if len(self._warned) >= _CACHE_SIZE:
            self._warned.clear()
        self._warned.add(path)
        log.warn(
            "skipping {what} in transcript {path}",
            what="a torn last line (interrupted write)" if last else "an unreadable line",
            path=str(path),
        )

    def state(self, agent: str, session_id: str, *, new: bool = False) -> TranscriptState:
        """What appending remembers about a transcript; ``new`` for a session id
        made just now (nothing to read: the file does not exist yet)."""
        key = (agent, session_id)
        state = self._states.get(key)
        if state is None:
            state = TranscriptState(empty=new)
            if not new:
                path = self._path_of(agent, session_id)
                for entry in read_backwards(path, MAX_TAIL_BYTES, self.report_bad_line):
                    entry_id = entry.get("id")
                    if isinstance(entry_id, str):
                        state.last_id = entry_id
                        break
            self._states[key] = state
            while len(self._states) > _CACHE_SIZE:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(key)
        return state

    def opened(
        self, agent: str, session_id: str, session_key: str, cwd: str | None, *, new: bool
    ) -> None:
        """Note the key (and working directory) a session is used under; its
        header records both."""
        state = self.state(agent, session_id, new=new)
        if state.key != session_key or (cwd is not None and state.cwd != cwd):
            state.header = None
        state.key = session_key
        if cwd is not None:
            state.cwd = cwd

    def append(
        self,
        agent: str,
        session_id: str,
        messages: Sequence[tuple[str, int, dict[str, Any]]],
        *,
        sync: bool,
        now: int,
    ) -> Deferred[None]:
        """Append ``(run_id, timestamp, message)`` entries in one write.

        The lines (ids, parent chain) are made here; opening, writing and
        syncing happen on the IO executor, after earlier writes to the same
        transcript. Fires when the write (and sync) is done.
        """
        key = (agent, session_id)
        if key in self._archived:
            log.warn(
                "not writing to session {session_id} of agent {agent_id}: it was reset or deleted",
                session_id=session_id,
                agent_id=agent,
            )
            return succeed(None)
        state = self.state(agent, session_id)
        path = state.path
        if path is None:
            path = state.path = self._path_of(agent, session_id)
        state.empty = False
        header_line = state.header
        if header_line is None:
            first_ts = messages[0][1] if messages else now
            header_line = state.header = session_header(session_id, first_ts, state.cwd, state.key)
        chunks: list[bytes] = []
        parent_before = state.last_id
        for run_id, ts, message in messages:
            if run_id == RAW_ENTRY:
                # A whole entry of another type (compaction): linked into the chain.
                entry = {**message, "parentId": state.last_id}
                entry_id = str(entry.get("id") or short_id())
                entry["id"] = entry_id
            else:
                entry_id = short_id()
                entry = {
                    "type": "message",
                    "id": entry_id,
                    "parentId": state.last_id,
                    "timestamp": iso_ms(ts),
                    "runId": run_id,
                    "message": message,
                }
            chunks.extend(line_pieces(entry))
            state.last_id = entry_id
        check_torn = not state.checked
        state.checked = True
        written = self._submit(key, path, header_line, chunks, check_torn, sync)
        last_written = state.last_id

        def torn(was_torn: bool) -> None:
            if was_torn:
                log.warn(
                    "transcript {path} ends with a torn line; it will be skipped",
                    path=str(path),
                )

        def unwritten(failure: Failure) -> Failure:
            # A failed write (a full disk) may have left half a line: the next
            # append checks again and starts on a new line, and links to the
            # last entry that is on disk, not to this one.
            state.checked = False
            if state.last_id == last_written:
                state.last_id = parent_before
            return failure

        return written.addCallbacks(torn, unwritten)

    def _submit(
        self,
        key: tuple[str, str],
        path: Path,
        header: bytes,
        chunks: list[bytes],
        check_torn: bool,
        sync: bool,
    ) -> Deferred[bool]:
        """Write the lines: the append here (a page-cache write, like the log
        file's), only the sync on the IO executor, since it waits on the disk.

        A thread per append used to cost more than the append: a wake-up, and
        the worker taking the GIL back after each of its five system calls
        while the reactor was busy (issue 16). Behind writes still queued for
        the same transcript, the whole write queues after them instead.
        """
        if self._writes.busy(key):
            return self._writes.serial(
                key, write_transcript, path, header, chunks, check_torn, sync
            )
        try:
            fd, torn = append_lines(path, header, chunks, check_torn)
        except Exception:
            return fail()
        if not sync:
            try:
                os.close(fd)
            except OSError:
                return fail()
            return succeed(torn)
        return self._writes.serial(key, sync_and_close, fd).addCallback(lambda _: torn)

    def archive(self, agent: str, session_id: str, why: str, now: int) -> None:
        """Rename the transcript ``<id>.jsonl.<why>.<time>`` (after any append
        still on its way) and write to it no more."""
        key = (agent, session_id)
        path = self._path_of(agent, session_id)
        self._states.pop(key, None)
        self._archived.add(key)
        move = (path, path.with_name(f"{path.name}.{why}.{archive_suffix(now)}"))
        if self._writes.busy(key):
            self._writes.serial(key, rename_all, [move]).addErrback(
                log_failure, "archiving a transcript"
            )
        else:
            rename_all([move])

    def retire(self, agent: str, session_ids: Sequence[str], now: int) -> None:
        """Archive transcripts dropped by maintenance (``.deleted.<time>``) on the
        IO executor; appends may still follow (a dropped session is not reset)."""
        suffix = f".deleted.{archive_suffix(now)}"
        keys: list[tuple[str, str]] = []
        moves: list[tuple[Path, Path]] = []
        for session_id in session_ids:
            key = (agent, session_id)
            self._states.pop(key, None)
            path = self._path_of(agent, session_id)
            keys.append(key)
            moves.append((path, path.with_name(path.name + suffix)))
        if moves:
            # Maintenance drops sessions in batches (a tenth of the cap): one job,
            # after their writes in flight; a later append waits for it (and
            # starts a new file), as the transcripts' ordering requires.
            self._writes.serial_all(keys, rename_all, moves).addErrback(
                log_failure, "archiving transcripts"
            )

    def recent_messages(
        self, agent: str, session_id: str
    ) -> Iterator[tuple[str | None, Mapping[str, Any]]]:
        """``(run_id, message)`` for the transcript's messages, newest first
        (reads at most :data:`MAX_TAIL_BYTES` of its tail, lazily)."""
        state = self._states.get((agent, session_id))
        if state is not None and state.empty:
            return  # created here just now: no file yet
        path = state.path if state is not None and state.path is not None else None
        if path is None:
            path = self._path_of(agent, session_id)
        for entry in read_backwards(path, MAX_TAIL_BYTES, self.report_bad_line):
            message = message_of(entry)
            if message is None:
                continue
            run_id = entry.get("runId") or message.get("runId")
            yield (run_id if isinstance(run_id, str) else None), message

    def recent_entries(self, agent: str, session_id: str) -> Iterator[Mapping[str, Any]]:
        """The transcript's ``message`` and ``compaction`` entries, newest first,
        with their ids (reads at most :data:`MAX_TAIL_BYTES` of its tail, lazily)."""
        state = self._states.get((agent, session_id))
        if state is not None and state.empty:
            return
        path = state.path if state is not None and state.path is not None else None
        if path is None:
            path = self._path_of(agent, session_id)
        for entry in read_backwards(path, MAX_TAIL_BYTES, self.report_bad_line):
            if entry.get("type") in ("message", "compaction"):
                yield entry

    def display(
        self, agent: str, session_id: str, limit: int, *, include_tools: bool = False
    ) -> list[dict[str, Any]]:
        """The last ``limit`` user/assistant messages (tool results too with
        ``include_tools``), oldest first, in ``chat.history``'s display shape
        (failed replies included)."""
        out: list[dict[str, Any]] = []
        if limit <= 0:
            return out
        roles = DISPLAY_ROLES_WITH_TOOLS if include_tools else DISPLAY_ROLES
        path = self._path_of(agent, session_id)
        for raw in read_backwards(path, MAX_TAIL_BYTES, self.report_bad_line):
            message = message_of(raw)
            if message is None or message.get("role") not in roles:
                continue
            out.append(for_display(message))
            if len(out) >= limit:
                break
        out.reverse()
        return out

    def count(self, agent: str, session_id: str) -> int:
        """How many user/assistant messages the transcript holds."""
        count = 0
        try:
            with self._path_of(agent, session_id).open("rb") as f:
                for line in f:
                    try:
                        parsed = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(parsed, dict):
                        message = message_of(parsed)
                        if message is not None and message.get("role") in ("user", "assistant"):
                            count += 1
        except FileNotFoundError:
            return 0
        return count
