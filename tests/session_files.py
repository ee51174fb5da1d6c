"""Files of an agent's sessions directory, as the store lays them out, for
the retention and disk-budget tests."""

from __future__ import annotations

from pathlib import Path

from openclaw.sessions.transcript import archive_suffix

#: What an archive holds when a test does not care about its size.
HEADER = b'{"type":"session"}\n'


def sessions_dir(state: Path, agent: str = "main") -> Path:
    """``<state>/agents/<agent>/sessions``, created."""
    directory = state / "agents" / agent / "sessions"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def archive(
    directory: Path, session_id: str, made_ms: int, why: str = "deleted", size: int | None = None
) -> Path:
    """An archived transcript made at ``made_ms`` (``size`` bytes, else a header line)."""
    path = directory / f"{session_id}.jsonl.{why}.{archive_suffix(made_ms)}"
    path.write_bytes(HEADER if size is None else b"x" * size)
    return path


def live(directory: Path, session_id: str, size: int) -> Path:
    """A live transcript of ``size`` bytes."""
    path = directory / f"{session_id}.jsonl"
    path.write_bytes(b"x" * size)
    return path
