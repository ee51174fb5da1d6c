"""Which program an exec command word runs, and whether an allowlist path pattern covers it.

OpenClaw's rules (``matchAllowlist`` / ``matchesExecAllowlistPattern``): a
path pattern is matched against the program's *real* path, the file the
kernel will execute, never the text the model wrote. So
``/usr/local/bin/../../bin/sh`` is ``/usr/bin/dash`` here and does not match
``/usr/local/bin/*``; a symlink is judged by its target. In a pattern ``*``
and ``?`` stay within one path segment and only ``**`` crosses ``/``; every
other character is literal.

:func:`resolve_program` finds the file the shell will run for a command word:
a word with ``/`` relative to the command's working directory, a bare name by
searching ``PATH`` as the shell does (an empty or relative entry is relative to
the working directory), a leading ``~/`` from the command's ``HOME``. A word
the shell would expand further (``$``, globs, braces, backquotes) resolves to
nothing, so it never matches: what the shell runs cannot be told from it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from functools import lru_cache
from typing import Final

#: Characters that make the shell expand a command word (after quote removal
#: we cannot tell a quoted one from an unquoted one, so any of them refuses).
_EXPANDED: Final = frozenset("$*?[]{}`")
_WILDCARDS: Final = frozenset("*?")

Resolver = Callable[[str], str | None]


def resolve_program(
    word: str, *, cwd: str, search_path: str | None, home: str | None
) -> str | None:
    """The real path of the executable the shell runs for ``word``, or None
    when there is none or it cannot be known."""
    if not word or any(ch in _EXPANDED for ch in word):
        return None
    if word.startswith("~"):
        if not (word == "~" or word.startswith("~/")) or not home or not os.path.isabs(home):
            return None  # ~user, or no HOME to expand
        if os.path.lexists(os.path.join(cwd, word)):
            return None  # quoted, the shell would run this one instead: ambiguous
        word = home + word[1:]
    if "/" in word:
        return _executable(os.path.join(cwd, word))
    for entry in (search_path or "").split(os.pathsep):
        found = _executable(os.path.join(cwd, entry, word))
        if found is not None:
            return found
    return None


def literal_word(word: str) -> bool:
    """True if the shell runs ``word`` as written: no expansion, no leading ``~``."""
    return bool(word) and not word.startswith("~") and not any(ch in _EXPANDED for ch in word)


def program_resolver(cwd: str, search_path: str | None, home: str | None) -> Resolver:
    """:func:`resolve_program` bound to one command's directory and environment."""
    return lambda word: resolve_program(word, cwd=cwd, search_path=search_path, home=home)


def _executable(path: str) -> str | None:
    """``path`` resolved (symlinks and ``.``/``..``), if it is an executable regular file."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode) or not os.access(real, os.X_OK):
        return None
    return real


def has_path_selector(pattern: str) -> bool:
    """A path pattern (matched against the real path), not a bare-name one."""
    return "/" in pattern or pattern.startswith("~")


def matches_path_pattern(pattern: str, real_path: str) -> bool:
    """Whether path ``pattern`` covers the program at ``real_path``.

    The pattern's directories before its first wildcard are resolved too (so
    ``/bin/*`` still means ``/bin``'s programs where ``/bin`` links to
    ``/usr/bin``); a pattern without wildcards names one file, resolved whole.
    A relative pattern is compared as written (only one starting with ``**``
    can match an absolute path, as in OpenClaw).
    """
    pattern = pattern.strip()
    if not pattern:
        return False
    if pattern.startswith("~"):
        pattern = os.path.expanduser(pattern)
    return _compile(_resolve_prefix(pattern)).fullmatch(real_path) is not None


def matches_name_pattern(pattern: str, name: str) -> bool:
    """Whether bare-name ``pattern`` (``git``, ``py*``) covers program ``name``."""
    return _compile(pattern.strip()).fullmatch(name) is not None


def _resolve_prefix(pattern: str) -> str:
    if not os.path.isabs(pattern):
        return pattern
    parts = pattern.split("/")
    wild = next((i for i, part in enumerate(parts) if _WILDCARDS & set(part)), None)
    if wild is None:
        return os.path.realpath(pattern)
    prefix = "/".join(parts[:wild]) or "/"
    rest = "/".join(parts[wild:])
    return os.path.join(os.path.realpath(prefix), rest)


@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    """``**`` -> any characters, ``*`` -> any within a segment, ``?`` -> one
    character within a segment; everything else literal."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)
