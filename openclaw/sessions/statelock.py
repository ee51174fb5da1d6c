"""One owner per state directory: an advisory ``flock`` with pid metadata.

The file store keeps each agent's session index in memory and rewrites
``sessions.json`` from it; a second process writing the same directory (a
second gateway, ``openclaw agent --local``) would silently drop the other's
index entries. So whoever writes the state directory first takes this lock,
and a second process stops with one clear line naming the owner.

The lock file lives where OpenClaw keeps its state locks,
``$OPENCLAW_STATE_DIR/tmp/openclaw-<uid>/state.lock``, and holds JSON
``{"pid", "role", "createdAt"}`` for the message. The kernel drops a
``flock`` when its process dies, so a file left behind by a killed owner
(a dead pid) is stale and simply taken over.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from attrs import frozen
from twisted.logger import Logger

from openclaw.core.private_dirs import make_private_dirs

log = Logger()

LOCK_NAME = "state.lock"


class StateDirLockedError(Exception):
    """Another live process owns the state directory."""

    def __init__(self, state_dir: Path, owner: LockOwner | None) -> None:
        self.state_dir = state_dir
        self.owner = owner
        who = f"{owner.role} (pid {owner.pid})" if owner is not None else "another process"
        super().__init__(f"state directory {state_dir} is in use by a running {who}")


@frozen
class LockOwner:
    """What the lock file says about its holder."""

    pid: int
    role: str
    created_at_ms: int


def lock_path(state_dir: Path) -> Path:
    """Where the lock of ``state_dir`` lives (per user, as OpenClaw does)."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    name = f"openclaw-{uid}" if uid is not None else "openclaw"
    return Path(state_dir).absolute() / "tmp" / name / LOCK_NAME


def read_owner(path: Path) -> LockOwner | None:
    """The owner recorded in a lock file, or None when it is missing or unreadable."""
    try:
        data: Any = json.loads(path.read_text("utf-8"))
        return LockOwner(
            pid=int(data["pid"]),
            role=str(data.get("role", "process")),
            created_at_ms=int(data.get("createdAt", 0)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StateLock:
    """A held lock on one state directory; :meth:`release` gives it up."""

    def __init__(self, state_dir: Path, path: Path, fd: int, role: str) -> None:
        self.state_dir = state_dir
        self.path = path
        self.role = role
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        """True until :meth:`release`."""
        return self._fd is not None

    @classmethod
    def acquire(cls, state_dir: Path | str, role: str) -> StateLock:
        """Take the lock or raise :class:`StateDirLockedError` at once (no waiting).

        ``role`` names the holder in the other process's message ("gateway",
        "openclaw agent --local").
        """
        state = Path(state_dir).absolute()
        path = lock_path(state)
        make_private_dirs(path.parent)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise StateDirLockedError(state, read_owner(path)) from None
            # A releasing owner unlinks the file: make sure ours is still the
            # one at the path, or a third process could lock a fresh file.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = read_owner(path)
        if previous is not None and previous.pid != os.getpid():
            log.info(
                "took over the stale state lock of {role} pid {pid} ({alive})",
                role=previous.role,
                pid=previous.pid,
                alive="exited" if not pid_alive(previous.pid) else "no longer holding it",
                state_dir=str(state),
            )
        lock = cls(state, path, fd, role)
        lock.record_owner()
        return lock

    def record_owner(self) -> None:
        """Write this process as the owner (again after a daemonizing fork: the
        lock stays held across it, the pid changes)."""
        if self._fd is None:
            return
        record = json.dumps(
            {"pid": os.getpid(), "role": self.role, "createdAt": int(time.time() * 1000)}
        ).encode("utf-8")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, record, 0)

    def release(self) -> None:
        """Remove the lock file and unlock; idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Unlink while still holding it, so nobody locks a doomed file.
            self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)


__all__ = [
    "LOCK_NAME",
    "LockOwner",
    "StateDirLockedError",
    "StateLock",
    "lock_path",
    "pid_alive",
    "read_owner",
]
