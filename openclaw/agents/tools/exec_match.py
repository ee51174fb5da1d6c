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
nothing, so it never matches: what the shell runs cannot be told from it. A
lone ``[`` is no glob (``/usr/bin/[`` is a program); ``[`` with a ``]`` after
it is. Once a ``cd`` may have run, the working directory is unknown:
:meth:`ProgramResolver.without_cwd` resolves only what does not depend on it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from functools import lru_cache
from typing import Final

from attrs import frozen

#: Characters that make the shell expand a command word (after quote removal
#: we cannot tell a quoted one from an unquoted one, so any of them refuses);
#: ``[`` only when a ``]`` follows it (:func:`_expands`).
_EXPANDED: Final = frozenset("$*?{}`")
_WILDCARDS: Final = frozenset("*?")

Resolver = Callable[[str], str | None]


def resolve_program(
    word: str, *, cwd: str | None, search_path: str | None, home: str | None
) -> str | None:
    """The real path of the executable the shell runs for ``word``, or None
    when there is none or it cannot be known. ``cwd`` None means the working
    directory is not known (a ``cd`` ran before): anything relative to it,
    a relative word or a relative ``PATH`` entry searched, resolves to None."""
    if not word or _expands(word):
        return None
    if word.startswith("~"):
        if not (word == "~" or word.startswith("~/")) or not home or not os.path.isabs(home):
            return None  # ~user, or no HOME to expand
        if cwd is None or os.path.lexists(os.path.join(cwd, word)):
            return None  # quoted, the shell would run this one instead: ambiguous
        word = home + word[1:]
    if "/" in word:
        if cwd is None and not os.path.isabs(word):
            return None
        return _executable(os.path.join(cwd or "/", word))
    for entry in (search_path or "").split(os.pathsep):
        if cwd is None and not os.path.isabs(entry):
            return None  # found here or not depends on the unknown directory
        found = _executable(os.path.join(cwd or "/", entry, word))
        if found is not None:
            return found
    return None


def literal_word(word: str) -> bool:
    """True if the shell runs ``word`` as written: no expansion, no leading ``~``."""
    return bool(word) and not word.startswith("~") and not _expands(word)


def _expands(word: str) -> bool:
    if any(ch in _EXPANDED for ch in word):
        return True
    bracket = word.find("[")
    return bracket >= 0 and "]" in word[bracket + 1 :]


@frozen
class ProgramResolver:
    """:func:`resolve_program` bound to one command's directory and environment."""

    cwd: str | None
    search_path: str | None
    home: str | None

    def __call__(self, word: str) -> str | None:
        return resolve_program(word, cwd=self.cwd, search_path=self.search_path, home=self.home)

    def without_cwd(self) -> ProgramResolver:
        """The same, for a word run after the working directory may have changed."""
        return ProgramResolver(None, self.search_path, self.home)


def program_resolver(cwd: str, search_path: str | None, home: str | None) -> ProgramResolver:
    """:func:`resolve_program` bound to one command's directory and environment."""
    return ProgramResolver(cwd, search_path, home)


def without_cwd(resolve: Resolver) -> Resolver:
    """``resolve`` for words run after a ``cd``: a :class:`ProgramResolver`
    drops its directory; any other resolver (one that knows no ``PATH``) is
    asked only about words that do not name a path relative to the directory."""
    if isinstance(resolve, ProgramResolver):
        return resolve.without_cwd()
    return lambda word: None if word.startswith("~") or _relative_path(word) else resolve(word)


def _relative_path(word: str) -> bool:
    return "/" in word and not os.path.isabs(word)


def _executable(path: str) -> str | None:
    """``path`` resolved (symlinks and ``.``/``..``), if it is an executable regular file.

    Strictly: every component must exist, as the kernel requires when it
    runs the path (``d=/../usr/bin/ls`` is no ``ls`` unless ``d=`` exists)."""
    try:
        real = os.path.realpath(path, strict=True)
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
