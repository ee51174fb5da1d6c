"""Safe shell builtins and wrapper commands, as OpenClaw's exec allowlist judges them.

Two of OpenClaw's rules for a command segment on the gateway host
(``exec-safe-builtins`` and the dispatch-wrapper trust plan):

* **Safe builtins** (``DEFAULT_SAFE_BUILTINS``): ``:``, ``cd``, ``false``,
  ``pwd``, ``test``, ``true``, and ``[`` when the segment ends with ``]``,
  need no allowlist entry. They run inside the shell and cannot run anything.
  Stricter than OpenClaw here: the name must be written exactly (``CD`` is a
  program on Linux, not the builtin), and a word with ``$`` disqualifies the
  segment (OpenClaw refuses such a dynamic argument anywhere in the command).
* **Wrappers** are judged by the command they run, never by themselves:
  ``timeout --foreground 30 git status`` is ``git status``. :func:`unwrap` peels up to
  four of them, following each one's own option syntax. A wrapper that
  changes what runs or how (``sudo``, ``chroot``, ``setsid``, ``env`` with an
  assignment or an option, ``command -v``/``-p``, ``time -o``), a spelling the
  parser does not know, or a fifth wrapper makes the segment *blocked*: it
  never matches the allowlist, even when the wrapper itself is listed.

The wrapper programs are checked by the caller (the real file must be the
system's, see :data:`TRUSTED_BIN_DIRS`), so a ``./timeout`` written by the
model is not taken for one. ``command`` and ``exec`` are shell builtins and
count only written bare. ``exec`` takes no options here: ``/bin/sh`` is dash,
which would run a program named ``-a`` or ``--``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from attrs import frozen

from openclaw.agents.tools.exec_match import literal_word

#: OpenClaw's ``DEFAULT_SAFE_BUILTINS`` (``[`` is handled on its own).
SAFE_BUILTINS: Final = frozenset({":", "cd", "false", "pwd", "test", "true"})
#: Where a wrapper program (or a safe bin) must really live.
TRUSTED_BIN_DIRS: Final = frozenset({"/bin", "/usr/bin"})
#: OpenClaw's unwrap depth: a fifth wrapper blocks the segment.
MAX_WRAPPERS: Final = 4
#: OpenClaw's dispatch wrappers it cannot see through (no parser, or only on
#: macOS): a segment run by one of them is never allowlisted.
BLOCKED_WRAPPERS: Final = frozenset(
    {
        "arch", "bwrap", "caffeinate", "catchsegv", "chrt", "chroot", "cpulimit", "doas",
        "eatmydata", "firejail", "gosu", "ionice", "linux32", "linux64", "nsenter",
        "numactl", "pkexec", "proot", "proxychains", "proxychains4", "runuser",
        "sandbox-exec", "script", "setarch", "setsid", "setpriv", "su", "sudo",
        "systemd-run", "taskset", "torify", "torsocks", "unbuffer", "unshare", "watch",
        "xcrun", "xvfb-run",
    }
)  # fmt: skip
#: Shell multiplexers: allowed only to run a shell applet, judged as themselves.
_MULTIPLEXERS: Final = frozenset({"busybox", "toybox"})
_SHELL_APPLETS: Final = frozenset(
    {"ash", "bash", "csh", "dash", "elvish", "fish", "ksh", "mksh", "nu", "osh", "sh", "tcsh",
     "xonsh", "yash", "zsh"}
)  # fmt: skip


#: Shells whose ``-c`` script is judged segment by segment (it is split as
#: ``/bin/sh`` splits a command). OpenClaw parses more (``zsh``, ``ksh``,
#: ``fish`` ...) with bash's grammar; here those never match.
SCRIPT_SHELLS: Final = frozenset({"bash", "dash", "sh"})


def is_shell(name: str) -> bool:
    """Whether program ``name`` (a basename) is a shell or a shell multiplexer."""
    return name in _SHELL_APPLETS or name in _MULTIPLEXERS


def inline_script(words: Sequence[str]) -> str | None:
    """The script of ``sh -c SCRIPT`` (also ``bash``/``dash``), for a shell
    written bare (OpenClaw's rule: ``/bin/sh -c`` is not looked into), or
    None for any other form: a login or interactive shell (``-lc``, ``-ic``,
    ``-l -c``: they read startup files first), another option, a script word
    that is itself an option (dash takes the first word after its options as
    the script: ``sh -c -x id`` runs ``id``), or any word after the script.

    Stricter than OpenClaw, which accepts ``sh -c SCRIPT NAME ARG...``: those
    words become ``$0``, ``$1`` ... and are never judged, and bash reaches them
    without a ``$`` (``BASH_ARGV0``, ``_`` and ``BASH_ARGV`` are variables a
    ``test -v a[BASH_ARGV0]`` subscript evaluates, running a ``$(...)`` in
    the value)."""
    if len(words) != 3 or words[0] not in SCRIPT_SHELLS or words[1] != "-c":
        return None
    script = words[2]
    return None if script.startswith(("-", "+")) else script


#: ``test``/``[`` operators that name a shell variable: bash evaluates an
#: array subscript in the name (``-v a[X]``) as arithmetic, and arithmetic
#: expands a variable's value recursively, running any ``$(...)`` in it (a
#: ``bash -c`` script is judged by these rules too). dash has neither.
_VARIABLE_TESTS: Final = frozenset({"-v", "-R"})

#: The builtins of dash and of bash (``compgen -b``). Programs of these names
#: exist too (``/usr/bin/printf``, ``test``, ``[``, ``echo``, ``kill``,
#: ``pwd``, ``true``, ``false``), but the shell runs its builtin for the bare
#: name, and a builtin can differ from the program: bash's ``printf -v`` and
#: ``test -v`` take a variable name, whose subscript bash evaluates.
SHELL_BUILTINS: Final = frozenset(
    {
        ".", ":", "[", "alias", "bg", "bind", "break", "builtin", "caller", "cd", "chdir",
        "command", "compgen", "complete", "compopt", "continue", "declare", "dirs", "disown",
        "echo", "enable", "eval", "exec", "exit", "export", "false", "fc", "fg", "getopts",
        "hash", "help", "history", "jobs", "kill", "let", "local", "logout", "mapfile",
        "popd", "printf", "pushd", "pwd", "read", "readarray", "readonly", "return", "set",
        "shift", "shopt", "source", "suspend", "test", "times", "trap", "true", "type",
        "typeset", "ulimit", "umask", "unalias", "unset", "wait",
    }
)  # fmt: skip


def as_written(words: Sequence[str], literal: Sequence[bool]) -> bool:
    """Whether every word reaches the command exactly as written: no bare glob
    (``*``, ``?``, ``[...]``), brace (``{a,b}``, ``{1..3}``), ``~`` or ``$``
    (``literal[i]`` is :attr:`~openclaw.agents.tools.exec_split.Token.literal`
    of ``words[i]``). A ``[`` without a ``]`` after it is no glob, the shell
    keeps it: ``[``, ``]`` and ``/usr/bin/[`` are as written.

    The shell expands a word before the builtin sees it, so a check of the
    words as written says nothing about an expanding one: with workspace
    files ``-v`` and ``a[$(id)]``, bash's ``test *`` is ``test -v 'a[$(id)]'``
    and ``printf *`` is ``printf -v 'a[$(id)]' ...``, both running ``id``."""
    return all(
        flag or (literal_word(word) and "~" not in word)
        for word, flag in zip(words, literal, strict=True)
    )


def safe_builtin(words: Sequence[str], literal: Sequence[bool]) -> bool:
    """Whether the segment ``words`` is one of the safe builtins.

    Every word must reach it as written (:func:`as_written`). ``test`` and
    ``[`` are safe only without ``-v``/``-R`` and without a ``[`` in any
    operand (a subscript): see :data:`_VARIABLE_TESTS`. Their other
    operators are not arithmetic in bash's ``test`` (``-eq`` wants an
    integer literal, checked with ``legal_number``; only ``[[`` evaluates)."""
    if any("$" in word for word in words) or not as_written(words, literal):
        return False
    if words[0] == "[":
        if len(words) < 2 or words[-1] != "]":
            return False
        return _safe_test(words[1:-1])
    if words[0] == "test":
        return _safe_test(words[1:])
    return words[0] in SAFE_BUILTINS


def _safe_test(operands: Sequence[str]) -> bool:
    return not any(word in _VARIABLE_TESTS or "[" in word for word in operands)


def builtin_safe(argv: Sequence[str], literal: Sequence[bool]) -> bool:
    """Whether ``argv`` is safe if a shell runs it as its own builtin.

    bash has builtins of the same names as programs an allowlist may name
    (:data:`SHELL_BUILTINS`: ``test``, ``[``, ``printf``, ``echo``, ``kill``
    are ``/usr/bin`` programs too), and runs the builtin for the bare name.
    So a command of such a name (whatever its path) must get every word as
    written (:func:`as_written`): its words are judged, not what a glob
    makes of them. ``test``/``[`` are judged as safe builtins
    (:func:`safe_builtin`); bash's ``printf -v NAME`` assigns any variable
    (``PATH``, so a later program is found elsewhere than the policy
    resolved it) and evaluates a subscript in NAME as arithmetic, running
    code from a variable's value (``printf -v X 'x[\\x24(id)]'; printf -v
    'a[X]' y``). Such a segment never matches, allowlisted or not."""
    if os.path.basename(argv[0]) in SHELL_BUILTINS and not as_written(argv, literal):
        return False
    if argv[0] in ("test", "["):
        return safe_builtin(argv, literal)
    return not (argv[0] == "printf" and len(argv) > 1 and argv[1].startswith("-v"))


@frozen
class Unwrapped:
    """The command a segment really runs, once its wrappers are peeled."""

    argv: tuple[str, ...]
    #: The wrapper program words peeled (``timeout``, ``/usr/bin/nice``), to be
    #: checked against :data:`TRUSTED_BIN_DIRS`; the shell builtins
    #: ``command``/``exec`` are not among them.
    programs: tuple[str, ...] = ()
    #: The wrapper that makes this segment unallowable, if any.
    blocked: str | None = None


def unwrap(words: Sequence[str]) -> Unwrapped:
    """Peel the wrappers off ``words`` (OpenClaw's dispatch-wrapper trust plan)."""
    argv = tuple(words)
    programs: list[str] = []
    peeled = 0
    in_shell = True  # ``command``/``exec`` are builtins only while the shell runs them
    while True:
        name = os.path.basename(argv[0])
        carrier = in_shell and argv[0] in ("command", "exec")
        if name.lower() in BLOCKED_WRAPPERS and not carrier:
            return Unwrapped(argv, tuple(programs), name)
        if name in _MULTIPLEXERS:
            # Judged as itself, like OpenClaw, and only to start a shell.
            rest = argv[2:] if argv[1:2] == ("--",) else argv[1:]
            shell = bool(rest) and os.path.basename(rest[0]) in _SHELL_APPLETS
            return Unwrapped(argv, tuple(programs), None if shell else name)
        parse: _Parser
        if carrier:
            parse = _command if argv[0] == "command" else _exec
        elif name in _PARSERS:
            parse = _PARSERS[name]
        else:
            return Unwrapped(argv, tuple(programs))
        inner = parse(argv) if peeled < MAX_WRAPPERS else None
        if inner is None:
            return Unwrapped(argv, tuple(programs), name)
        if not carrier:
            programs.append(argv[0])
        in_shell = carrier and argv[0] == "command"
        peeled += 1
        argv = inner


# -- the wrappers' option syntax (OpenClaw's parsers) ------------------------------

_Parser = Callable[[tuple[str, ...]], "tuple[str, ...] | None"]


def _scan(
    argv: tuple[str, ...],
    flags: frozenset[str],
    with_value: frozenset[str],
    *,
    accept: Callable[[str], bool] = lambda _token: False,
) -> int | None:
    """Index of the first word after the options (``--`` ends them), or None
    for an option the wrapper's parser does not know."""
    i = 1
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return i + 1
        if not token.startswith("-") or token == "-":
            return i
        name = token.split("=", 1)[0]
        if name in flags or accept(token):
            i += 1
        elif name in with_value:
            i += 1 if "=" in token else 2
        else:
            return None
    return None


def _has_flag(options: tuple[str, ...], flag: str, with_value: frozenset[str]) -> bool:
    """Whether ``flag`` is one of ``options`` as an option, not as another's value."""
    i = 0
    while i < len(options):
        token = options[i]
        if token == flag:
            return True
        i += 2 if token in with_value else 1
    return False


def _rest(argv: tuple[str, ...], index: int | None) -> tuple[str, ...] | None:
    if index is None or index >= len(argv) or not argv[index]:
        return None
    return argv[index:]


_TIMEOUT_FLAGS: Final = frozenset({"--foreground", "--preserve-status", "-v", "--verbose"})
_TIMEOUT_VALUES: Final = frozenset({"-k", "--kill-after", "-s", "--signal"})
_NICE_VALUES: Final = frozenset({"-n", "--adjustment", "--priority"})
_NOHUP_FLAGS: Final = frozenset({"--help", "--version"})
_STDBUF_VALUES: Final = frozenset({"-i", "--input", "-o", "--output", "-e", "--error"})
#: Not -o/--output: ``time`` then writes a file, so it is not transparent.
_FLOCK_FLAGS: Final = frozenset(
    {"--close", "--exclusive", "--nb", "--no-fork", "--nonblock", "--shared", "--verbose"}
)
_FLOCK_VALUES: Final = frozenset({"-E", "-w", "--conflict-exit-code", "--timeout", "--wait"})
_NONE: Final[frozenset[str]] = frozenset()


def _timeout(argv: tuple[str, ...]) -> tuple[str, ...] | None:
    index = _scan(argv, _TIMEOUT_FLAGS, _TIMEOUT_VALUES)
    if index is None or not _has_flag(argv[1:index], "--foreground", _TIMEOUT_VALUES):
        # Without --foreground GNU timeout moves its command into a process
        # group of its own, out of the group the gateway kills on a timeout,
        # `process kill` or shutdown (as setsid would).
        return None
    return _rest(argv, index + 1)  # after the duration


def _nice(argv: tuple[str, ...]) -> tuple[str, ...] | None:
    def adjustment(token: str) -> bool:  # -5, -n5
        return re.fullmatch(r"-\d+", token) is not None or (
            token.startswith("-n") and len(token) > 2
        )

    return _rest(argv, _scan(argv, _NONE, _NICE_VALUES, accept=adjustment))


def _nohup(argv: tuple[str, ...]) -> tuple[str, ...] | None:
    return _rest(argv, _scan(argv, _NOHUP_FLAGS, _NONE))


def _stdbuf(argv: tuple[str, ...]) -> tuple[str, ...] | None:
    # -oL is refused, as in OpenClaw: only -o L and --output=L are parsed.
    return _rest(argv, _scan(argv, _NONE, _STDBUF_VALUES))


def _time(argv: tuple[str, ...]) -> tuple[str, ...] | None:
    # No options: at the start of a bash pipeline ``time`` is a keyword that
    # knows only an unquoted ``-p``/``--`` and runs any other option word as
    # the program (``bash -c 'time -v ls'`` runs a program named ``-v``),
    # while GNU time would run ``ls``; quoting cannot be seen here.
    if len(argv) < 2 or argv[1].startswith("-"):
        return None
    return _rest(argv, 1)


def _flock(argv: tuple[str, ...]) -> tuple[str, ...] | None:
    def cluster(token: str) -> bool:  # -n, -xn, ...
        return re.fullmatch(r"-[eFnsxo]+", token) is not None

    index = _scan(argv, _FLOCK_FLAGS, _FLOCK_VALUES, accept=cluster)
    if index is None or index + 1 >= len(argv):
        return None
    command = argv[index + 1]  # after the lock file
    if command.startswith("-") and command != "-":
        return None  # -c: a shell command string
    return _rest(argv, index + 1)


def _env(argv: tuple[str, ...]) -> tuple[str, ...] | None:
    """``env`` is transparent only without modifiers: no assignment and no
    option (``-i``, ``-u``, ``-C``, ``-S``, ``-`` ...), at most a ``--``.
    GNU ``env`` takes *any* word with ``=`` before the command for an
    assignment (``./d=/../usr/bin/ls`` too, whatever its name part), so any
    such word blocks, not only a shell-style ``NAME=``."""
    index = 2 if len(argv) > 1 and argv[1] == "--" else 1
    rest = _rest(argv, index)
    if rest is None or (index == 1 and rest[0].startswith("-")) or "=" in rest[0]:
        return None
    return rest


def _command(argv: tuple[str, ...]) -> tuple[str, ...] | None:
    """``command [--] CMD``: ``-v``/``-V`` only look a name up, ``-p`` searches
    another ``PATH``: OpenClaw blocks all three."""
    index = 2 if len(argv) > 1 and argv[1] == "--" else 1
    rest = _rest(argv, index)
    if rest is None or (index == 1 and rest[0].startswith("-")):
        return None
    return rest


def _exec(argv: tuple[str, ...]) -> tuple[str, ...] | None:
    rest = _rest(argv, 1)
    return None if rest is None or rest[0].startswith("-") else rest


_PARSERS: Final[Mapping[str, _Parser]] = {
    "env": _env,
    "flock": _flock,
    "nice": _nice,
    "nohup": _nohup,
    "stdbuf": _stdbuf,
    "time": _time,
    "timeout": _timeout,
}
