"""Directories only their owner can enter, however deep the missing part.

``Path.mkdir(parents=True, mode=0o700)`` applies the mode to the last
directory only; the parents it creates get the umask's default (0755 under
the usual 022). The state directory is one of those parents when a session
or a lock is written first, and ``openclaw doctor`` rightly warns about it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["make_private_dirs"]


def make_private_dirs(path: Path) -> None:
    """``mkdir -p path``; every directory it creates is 0700 (existing ones are
    left as they are). Blocking: call where a blocking ``mkdir`` is fine."""
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise
