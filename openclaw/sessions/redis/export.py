"""OpenClaw's on-disk session layout to and from Redis.

``openclaw sessions export`` writes, for every agent Redis knows,
``agents/<agentId>/sessions/sessions.json`` and one ``<sessionId>.jsonl`` per
indexed session (the lines exactly as stored), so the state directory of a
single OpenClaw (or file-store) gateway can take over. ``import`` reads such
a layout into Redis. Both are meant for a CLI process (their file work is
blocking and small next to a Redis round trip per session).
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
from openclaw.sessions.redis.client import RedisCommands
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


def _sessions_dir(root: Path, agent: str) -> Path:
    return root / "agents" / normalize_agent_id(agent) / "sessions"


@inlineCallbacks
def export_layout(
    client: RedisCommands, schema: KeySchema, dest: Path, agents: Sequence[str] = ()
) -> Any:
    """Write every (or ``agents``') index and transcript under ``dest``; fires
    with :class:`Moved`."""
    names = list(agents) or sorted(
        str(a) for a in (yield client.execute("SMEMBERS", schema.agents()))
    )
    sessions = lines = 0
    for agent in names:
        flat = list((yield client.execute("HGETALL", schema.index(agent))) or [])
        entries: dict[str, Any] = {}
        for key, raw in zip(flat[::2], flat[1::2], strict=True):
            try:
                entries[str(key)] = json.loads(raw)
            except ValueError:
                log.warn("skipping an unreadable index entry of agent {agent_id}", agent_id=agent)
        directory = _sessions_dir(dest, agent)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for entry in entries.values():
            session_id = str(entry.get("sessionId", ""))
            if not is_valid_session_id(session_id):
                continue
            stored = yield client.execute("LRANGE", schema.transcript(agent, session_id), 0, -1)
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
    return Moved(len(names), sessions, lines)


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
    """One line for the CLI."""
    extra = f", {moved.skipped} skipped (already in Redis)" if moved.skipped else ""
    return (
        f"{verb} {moved.sessions} sessions ({moved.lines} transcript lines) of "
        f"{moved.agents} agents {'to' if verb == 'exported' else 'from'} {where}{extra}"
    )


__all__ = ["Moved", "describe", "export_layout", "import_layout"]
