"""Workspace confinement for file tools.

A path argument is taken relative to the workspace (absolute paths are accepted
only when they point inside it), then resolved with every symlink followed, and
refused unless the resolved path is still inside the resolved workspace. The
check runs again on the thread that does the I/O, right before it, which keeps
the window for a symlink swap small; the workspace owner is trusted not to race
the gateway inside its own workspace.
"""

from __future__ import annotations

import os

from openclaw.agents.tools._common import check_text
from openclaw.agents.tools.base import ToolArgumentError

MAX_PATH = 4096


def confine(workspace: str, raw: str, *, name: str = "path") -> str:
    """The absolute, symlink-resolved path ``raw`` names inside ``workspace``.

    Raises :class:`ToolArgumentError` (text for the model) for empty paths,
    ``~`` expansion, and anything that resolves outside the workspace.
    """
    check_text(name, raw, MAX_PATH)
    if not raw.strip():
        raise ToolArgumentError(f"{name} must not be empty")
    if raw.startswith("~"):
        raise ToolArgumentError(f"{name} must be inside the workspace (no ~ expansion)")
    root = os.path.realpath(workspace)
    joined = raw if os.path.isabs(raw) else os.path.join(root, raw)
    resolved = os.path.realpath(joined)
    if resolved != root and not resolved.startswith(root + os.sep):
        raise ToolArgumentError(f"Path escapes the workspace: {raw}")
    return resolved


def display(workspace: str, resolved: str) -> str:
    """``resolved`` relative to the workspace, for messages."""
    root = os.path.realpath(workspace)
    return os.path.relpath(resolved, root) if resolved != root else "."
