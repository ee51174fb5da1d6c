"""Workspace confinement for file tools.

A path argument is taken relative to the workspace (absolute paths are accepted
only when they point inside it), then resolved with every symlink followed, and
refused unless the resolved path is still inside the resolved workspace. The
check runs again on the thread that does the I/O, right before it, which keeps
the window for a symlink swap small; the workspace owner is trusted not to race
the gateway inside its own workspace.

A hard link cannot be seen through by resolving the path: a second name for a
file outside the workspace looks like any other file inside it. So a regular
file with more than one link is refused for reading or changing in place, as
OpenClaw's workspace guards do.

Git runs what a repository's ``.git`` says (``core.fsmonitor``, aliases,
hooks). When exec is not ``full``, :func:`refuse_git_dir` keeps the writing
tools out of every ``.git`` in the workspace, so a file tool cannot turn an
allowlisted ``git status`` into any command.
"""

from __future__ import annotations

import os
import stat

from openclaw.agents.tools._common import check_text
from openclaw.agents.tools.base import ToolArgumentError

MAX_PATH = 4096
#: What HFS+ ignores in a name (git's ``is_hfs_dotgit`` list): ``.g\u200cit`` is ``.git`` there.
_IGNORABLE = dict.fromkeys(
    map(ord, "\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u206a\u206b"
        "\u206c\u206d\u206e\u206f\ufeff")
)  # fmt: skip


def _check_raw(raw: str, name: str) -> None:
    check_text(name, raw, MAX_PATH)
    if not raw.strip():
        raise ToolArgumentError(f"{name} must not be empty")
    if raw.startswith("~"):
        raise ToolArgumentError(f"{name} must be inside the workspace (no ~ expansion)")


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def confine(workspace: str, raw: str, *, name: str = "path", allow_hardlink: bool = False) -> str:
    """The absolute, symlink-resolved path ``raw`` names inside ``workspace``.

    Raises :class:`ToolArgumentError` (text for the model) for empty paths,
    ``~`` expansion, anything that resolves outside the workspace, and (unless
    ``allow_hardlink``, for callers that replace the name rather than write
    through it) an existing regular file with more than one hard link.
    """
    _check_raw(raw, name)
    root = os.path.realpath(workspace)
    joined = raw if os.path.isabs(raw) else os.path.join(root, raw)
    resolved = os.path.realpath(joined)
    if not _inside(root, resolved):
        raise ToolArgumentError(f"Path escapes the workspace: {raw}")
    if not allow_hardlink:
        refuse_hardlink(root, resolved)
    return resolved


def refuse_hardlink(workspace: str, path: str) -> None:
    """Refuse ``path`` if it is a regular file with other hard links, any of
    which may lie outside the workspace."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        raise ToolArgumentError(
            f"{display(workspace, path)} is hard-linked ({st.st_nlink} names for one file); "
            "a hard link may reach outside the workspace, so file tools refuse it"
        )


def confine_link(workspace: str, raw: str, *, name: str = "path") -> str:
    """The path ``raw`` names, with its directory resolved and confined but its
    last component not followed: deleting it removes a final symlink itself,
    never the file the link points to."""
    _check_raw(raw, name)
    parent, last = os.path.split(raw)
    if last in ("", ".", ".."):
        raise ToolArgumentError(f"{name} must name a file: {raw}")
    directory = confine(workspace, parent or ".", name=name, allow_hardlink=True)
    return os.path.join(directory, last)


def confine_new(workspace: str, raw: str, *, name: str = "path") -> str:
    """The path of a file to create, refused when a directory on the way is a
    symlink (an aliased parent), as OpenClaw's apply_patch does for added files
    and moves to a new path. The last component is not followed: if it exists,
    even as a symlink, the caller's "already exists" check sees it."""
    path = confine_link(workspace, raw, name=name)
    root = os.path.realpath(workspace)
    relative = os.path.normpath(raw)
    if os.path.isabs(relative):
        for prefix in (root, os.path.abspath(workspace)):
            if _inside(prefix, relative):
                relative = os.path.relpath(relative, prefix)
                break
    if os.path.normpath(os.path.join(root, relative)) != path:
        raise ToolArgumentError(
            f"{raw} goes through a symlinked directory; a new file is not created "
            "through an aliased parent (use the real path)"
        )
    return path


def _is_dotgit(name: str) -> bool:
    """``.git`` in any case, with what Windows (trailing dots and spaces) and
    HFS+ (ignorable code points) drop from a name."""
    return name.translate(_IGNORABLE).rstrip(". ").casefold() == ".git"


def refuse_git_dir(workspace: str, path: str) -> None:
    """Refuse to create, change, move or delete resolved ``path`` when it is a
    ``.git`` (file or directory) of the workspace or lies in one, the
    workspace's own ``.git`` wherever a symlink takes it included."""
    root = os.path.realpath(workspace)
    relative = os.path.relpath(path, root)
    in_git = any(_is_dotgit(part) for part in relative.split(os.sep))
    if not in_git:
        own = os.path.realpath(os.path.join(root, ".git"))
        in_git = own != root and os.path.lexists(own) and _inside(own, path)
    if in_git:
        raise ToolArgumentError(
            f"Refusing to change {display(workspace, path)}: it is in a .git directory. "
            "Git runs what a repository's config and hooks name (core.fsmonitor, aliases, "
            "hooks), so with tools.exec.mode other than full the file tools may not "
            "change .git; use exec (git commands) instead."
        )


def display(workspace: str, resolved: str) -> str:
    """``resolved`` relative to the workspace, for messages."""
    root = os.path.realpath(workspace)
    return os.path.relpath(resolved, root) if resolved != root else "."
