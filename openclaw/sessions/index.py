"""One agent's ``sessions.json``: the map from session key to ``{sessionId, updatedAt, ...}``.

The index is kept in memory and written whole (atomically, by the store's
IO executor). Each entry's JSON is cached, so a write re-encodes only what
changed since the last one. Reading it back is forgiving: an unreadable file
is moved aside, and transcripts it lost in a crash are found again by the
session key their header records.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from twisted.logger import Logger

from openclaw.core.private_dirs import make_private_dirs
from openclaw.sessions.entry import is_stateless_session_key, is_valid_session_id, updated_at
from openclaw.sessions.fileio import atomic_write, read_header
from openclaw.sessions.transcript import archive_suffix, encode_json

log = Logger()

INDEX_FILE = "sessions.json"


class AgentIndex:
    """One agent's ``sessions.json`` in memory, and what writing it needs."""

    def __init__(self, entries: dict[str, dict[str, Any]]) -> None:
        self.entries = entries
        self._fragments: dict[str, bytes] = {}
        self._stale: set[str] = set(entries)
        #: Stateless keys, least recently used first.
        self.stateless: OrderedDict[str, None] = OrderedDict(
            (key, None)
            for key, _ in sorted(
                ((k, v) for k, v in entries.items() if is_stateless_session_key(k)),
                key=lambda kv: updated_at(kv[1]),
            )
        )
        #: Held while a snapshot is written (reactor thread or an IO thread).
        self.lock = threading.Lock()
        #: Snapshot counter (reactor thread) and the newest one on disk (under lock).
        self.generation = 0
        self.written = 0
        self.warned = False

    def changed(self, key: str) -> None:
        """``key`` was added, modified or removed since the last snapshot."""
        self._stale.add(key)

    def snapshot(self) -> tuple[int, list[bytes]]:
        """``(generation, pieces)``: the entries as they are now, as the pieces of
        ``sessions.json`` (joined by the writer, off the reactor thread).

        Each stale entry is encoded on its own (valid UTF-8 whatever its key
        or fields hold), and is only marked clean once encoded, so a failure
        leaves it to be tried again on the next flush."""
        fragments = self._fragments
        stale = self._stale
        for key in list(stale):
            raw = self.entries.get(key)
            if raw is None:
                fragments.pop(key, None)
            else:
                fragments[key] = encode_json(key) + b":" + encode_json(raw)
            stale.discard(key)
        pieces = [fragments[key] for key in self.entries]
        self.generation += 1
        return self.generation, pieces

    def write(self, directory: Path, generation: int, pieces: list[bytes], sync: bool) -> None:
        """Replace ``directory/sessions.json`` with snapshot ``generation`` unless
        a newer one is already there (writes may finish out of order across
        threads). Safe on an IO thread: touches only lock-guarded fields."""
        with self.lock:
            if generation <= self.written:
                return
            make_private_dirs(directory)
            atomic_write(directory / INDEX_FILE, (b"{", b",".join(pieces), b"}"), sync=sync)
            self.written = generation


def load_index_file(path: Path, now: int) -> dict[str, dict[str, Any]]:
    """The entries of ``sessions.json``; an unreadable file is moved aside
    (``sessions.json.corrupt.<time>``) and the agent starts with none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        aside = path.with_name(f"{INDEX_FILE}.corrupt.{archive_suffix(now)}")
        log.error(
            "session index {path} is unreadable ({reason}); moved aside to {aside}",
            path=str(path),
            reason=str(exc),
            aside=str(aside),
        )
        os.replace(path, aside)
        return {}
    return {str(key): dict(value) for key, value in data.items() if isinstance(value, dict)}


def _unindexed(directory: Path, index: AgentIndex) -> Iterator[tuple[str, Path, float] | None]:
    """``(sessionId, path, mtime)`` for each transcript no index entry names;
    None for one that could not be examined."""
    try:
        scan = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return
    known = {str(raw.get("sessionId")) for raw in index.entries.values()}
    with scan:
        for item in scan:
            name = item.name
            if not name.endswith(".jsonl"):
                continue
            session_id = name[: -len(".jsonl")]
            if session_id in known or not is_valid_session_id(session_id):
                continue
            try:
                mtime = item.stat().st_mtime
            except OSError:
                yield None
                continue
            yield session_id, Path(item.path), mtime


def recover_lost_entries(directory: Path, index: AgentIndex, agent: str) -> bool:
    """Index the transcripts the index lost (a crash before its last write).

    A ``<sessionId>.jsonl`` that no entry names, whose header records a
    ``sessionKey`` the index does not have, gets its entry back (``updatedAt``
    from the file's modification time). Files without a key in their header
    (written by OpenClaw or an older version) are left alone. Returns True
    when entries were added (the index must be written).
    """
    found: dict[str, tuple[float, str]] = {}
    skipped = 0
    for item in _unindexed(directory, index):
        if item is None:
            skipped += 1
            continue
        session_id, path, mtime = item
        try:
            header = read_header(path)
        except OSError:
            skipped += 1
            continue
        key = header.get("sessionKey") if header and header.get("id") == session_id else None
        if not isinstance(key, str) or not key or key in index.entries:
            skipped += 1
            continue
        seen = found.get(key)
        if seen is None or seen[0] < mtime:
            found[key] = (mtime, session_id)
    for key, (mtime, session_id) in sorted(found.items(), key=lambda item: item[1][0]):
        index.entries[key] = {"sessionId": session_id, "updatedAt": int(mtime * 1000)}
        index.changed(key)
        if is_stateless_session_key(key):
            index.stateless[key] = None
    if found:
        log.warn(
            "recovered {count} sessions of agent {agent_id} missing from its index"
            " (their transcripts were written after its last update before a crash)",
            count=len(found),
            agent_id=agent,
        )
    if skipped:
        log.info(
            "{count} transcripts of agent {agent_id} are not in its index and name no"
            " session key that could be restored; left as they are",
            count=skipped,
            agent_id=agent,
        )
    return bool(found)


def over_cap(
    index: AgentIndex,
    agent: str,
    cap: int,
    *,
    enforce: bool,
    busy: Callable[[str], bool],
) -> list[dict[str, Any]]:
    """Drop entries over ``cap`` from ``index``; returns the dropped entries.

    Stateless sessions are always capped; the others only when ``enforce``
    (else a warning, once). Cuts happen in batches (a tenth of the cap over
    it), oldest first, and never to a session ``busy(sessionId)`` says has a
    turn running. 0 = no cap.
    """
    if cap <= 0:
        return []
    slack = max(1, cap // 10)
    dropped: list[dict[str, Any]] = []
    if len(index.stateless) > cap + slack:
        while len(index.stateless) > cap:
            key, _ = index.stateless.popitem(last=False)
            raw = index.entries.pop(key, None)
            index.changed(key)
            if raw is not None:
                dropped.append(raw)
    stateful = len(index.entries) - len(index.stateless)
    if stateful > cap and enforce:
        if stateful > cap + slack:
            candidates = sorted(
                (updated_at(raw), key)
                for key, raw in index.entries.items()
                if key not in index.stateless and not busy(str(raw.get("sessionId")))
            )
            for _, key in candidates[: stateful - cap]:
                dropped.append(index.entries.pop(key))
                index.changed(key)
    elif stateful > cap and not index.warned:
        index.warned = True
        log.warn(
            "agent {agent_id} has {count} sessions, more than session.maintenance"
            '.maxEntries ({cap}); they are kept (mode "warn")',
            agent_id=agent,
            count=stateful,
            cap=cap,
        )
    return dropped
