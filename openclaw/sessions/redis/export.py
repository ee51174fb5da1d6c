"""OpenClaw's on-disk session layout to and from Redis.

``openclaw sessions export`` writes, for every agent Redis knows,
``agents/<agentId>/sessions/sessions.json`` and one ``<sessionId>.jsonl`` per
indexed session (the lines exactly as stored), so the state directory of a
single OpenClaw (or file-store) gateway can take over. ``import`` reads such
a layout into Redis. Both are meant for a CLI process (their file work is
blocking and small next to a Redis round trip per session). A key of the
wrong type leaves its session out of an export, named, instead of ending it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attrs import frozen
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from openclaw.core.agent_ids import normalize_agent_id
from openclaw.sessions.entry import is_valid_session_id
from openclaw.sessions.fileio import atomic_write
from openclaw.sessions.redis.client import RedisCommands, RedisKeyTypeError
from openclaw.sessions.redis.keys import KeySchema
from openclaw.sessions.redis.transcript import encode_line
from openclaw.sessions.transcript import encode_json

log = Logger()

#: Lines sent per ``RPUSH`` when importing a transcript.
_BATCH = 500


@frozen
class Moved:
    """What an export or import did."""

    agents: int
    sessions: int
    lines: int
    skipped: int = 0
    #: What an export left out because Redis could not read it (one line each,
    #: naming the session and its key); the rest was written.
    unreadable: tuple[str, ...] = ()


def _sessions_dir(root: Path, agent: str) -> Path:
    return root / "agents" / normalize_agent_id(agent) / "sessions"


@inlineCallbacks
def export_layout(
    client: RedisCommands, schema: KeySchema, dest: Path, agents: Sequence[str] = ()
) -> Any:
    """Write every (or ``agents``') index and transcript under ``dest``; fires
    with :class:`Moved`.

    A key Redis holds with the wrong type (``WRONGTYPE``: something else wrote
    under the prefix) does not abort the export: that session (or, for an
    index, that agent) is left out and named in :attr:`Moved.unreadable`,
    and ``sessions.json`` lists the sessions that were written.
    """
    names = list(agents) or sorted(
        str(a) for a in (yield client.execute("SMEMBERS", schema.agents()))
    )
    sessions = lines = 0
    unreadable: list[str] = []

    def skip(what: str, key: str) -> None:
        problem = f"{what}: Redis key {key} holds the wrong type; skipped"
        log.warn("sessions export: {problem}", problem=problem)
        unreadable.append(problem)

    for agent in names:
        try:
            flat = list((yield client.execute("HGETALL", schema.index(agent))) or [])
        except RedisKeyTypeError:
            skip(f"agent {agent} (its whole index)", schema.index(agent))
            continue
        entries: dict[str, Any] = {}
        for key, raw in zip(flat[::2], flat[1::2], strict=True):
            try:
                entries[str(key)] = json.loads(raw)
            except ValueError:
                log.warn("skipping an unreadable index entry of agent {agent_id}", agent_id=agent)
        directory = _sessions_dir(dest, agent)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for session_key, entry in list(entries.items()):
            session_id = str(entry.get("sessionId", ""))
            if not is_valid_session_id(session_id):
                continue
            transcript = schema.transcript(agent, session_id)
            try:
                stored = yield client.execute("LRANGE", transcript, 0, -1)
            except RedisKeyTypeError:
                skip(f"session {session_key}", transcript)
                del entries[session_key]
                continue
            body = "".join(f"{line}\n" for line in stored or []).encode("utf-8")
            atomic_write(directory / f"{session_id}.jsonl", (body,), sync=True)
            sessions += 1
            lines += len(stored or [])
        index = (
            b"{"
            + b",".join(encode_json(k) + b":" + encode_json(v) for k, v in entries.items())
            + b"}"
        )
        atomic_write(directory / "sessions.json", (index,), sync=True)
    return Moved(len(names), sessions, lines, unreadable=tuple(unreadable))


@inlineCallbacks
def import_layout(
    client: RedisCommands, schema: KeySchema, source: Path, *, replace: bool = False
) -> Any:
    """Load ``source/agents/*/sessions`` into Redis; a session key Redis
    already has is skipped unless ``replace``. Fires with :class:`Moved`."""
    agents_dir = source / "agents"
    agents = (
        sorted(p.name for p in agents_dir.iterdir() if (p / "sessions").is_dir())
        if agents_dir.is_dir()
        else []
    )
    sessions = lines = skipped = 0
    for agent in agents:
        directory = agents_dir / agent / "sessions"
        try:
            index = json.loads((directory / "sessions.json").read_bytes())
        except FileNotFoundError:
            continue
        if not isinstance(index, dict):
            raise ValueError(f"{directory / 'sessions.json'} is not a JSON object")
        for key, entry in index.items():
            session_id = str(entry.get("sessionId", "")) if isinstance(entry, dict) else ""
            if not is_valid_session_id(session_id):
                skipped += 1
                continue
            exists = yield client.execute("HEXISTS", schema.index(agent), key)
            if str(exists) == "1" and not replace:
                skipped += 1
                continue
            tx = schema.transcript(agent, session_id)
            yield client.execute("DEL", tx)
            batch: list[str] = []
            for line in _transcript_lines(directory / f"{session_id}.jsonl"):
                batch.append(line)
                if len(batch) >= _BATCH:
                    yield client.execute("RPUSH", tx, *batch)
                    lines += len(batch)
                    batch = []
            if batch:
                yield client.execute("RPUSH", tx, *batch)
                lines += len(batch)
            yield client.execute("HSET", schema.index(agent), key, encode_line(entry))
            yield client.execute("SADD", schema.agents(), agent)
            sessions += 1
    return Moved(len(agents), sessions, lines, skipped)


def _transcript_lines(path: Path) -> list[str]:
    """The JSON lines of a transcript file, re-encoded; torn or junk lines skipped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    out: list[str] = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            out.append(encode_line(parsed))
    return out


def describe(moved: Moved, verb: str, where: str | os.PathLike[str]) -> str:
    """What the CLI prints: one line, then one per session Redis could not read."""
    extra = f", {moved.skipped} skipped (already in Redis)" if moved.skipped else ""
    if moved.unreadable:
        extra += f", {len(moved.unreadable)} left out (unreadable in Redis)"
    summary = (
        f"{verb} {moved.sessions} sessions ({moved.lines} transcript lines) of "
        f"{moved.agents} agents {'to' if verb == 'exported' else 'from'} {where}{extra}"
    )
    return "\n".join([summary, *(f"warning: {problem}" for problem in moved.unreadable)])


__all__ = ["Moved", "describe", "export_layout", "import_layout"]
