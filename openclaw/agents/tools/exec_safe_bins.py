"""Safe-bin profiles: which arguments a stdin-only filter may get without an allowlist entry.

OpenClaw's ``SAFE_BIN_PROFILES`` (``exec-safe-bin-policy-profiles`` and its
validator): per program, the flags that take a value, the flags that take
none, the denied flags (they read, write or follow files, or run a program),
and how many positional arguments it may have (``tr`` takes its one or two
sets; every other bin none, so it can only read stdin). No option may follow
an operand or ``-`` (stricter than OpenClaw): GNU ``getopt`` moves it in
front, but stops at the first operand when ``POSIXLY_CORRECT`` is set, so
``head - -n secret`` reads ``secret`` (the variable cannot be set through
``env`` either: :mod:`~openclaw.agents.tools.exec_env`). Anything else fails
closed: an unknown short flag, an unknown long one, an abbreviated long one
(stricter than OpenClaw, which resolves an unambiguous prefix among the
profile's flags, as GNU ``getopt_long`` does among the program's: the
program may know an exact flag by that name, ``grep --binary``, which takes
no value), a denied one in a cluster (``-fn5``), any value or positional
the shell would expand, a positional that names a path, and a ``head``/``tail``
count that is no number (:data:`COUNT`).

A value must be literal, since the shell runs the command: no ``$``, no
backquote, no glob or brace character (``*?[]{}``), no ``~``, not empty; an
operand must also name no path (no ``/``, not ``..``), while a flag's value
may (it is never a file: :func:`literal_value`). OpenClaw rewrites safe-bin
words to literals when it runs them and so accepts a quoted ``'$'``, ``'{'``
or ``'~x'``; the command is not rewritten here, so they are refused.

One difference, on purpose: GNU ``uniq --group`` takes its METHOD only as
``--group=METHOD``. OpenClaw's profile reads ``uniq --group in`` as the
method ``in``, while ``uniq`` reads the file ``in``; here ``--group`` takes
no separate value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

from attrs import field, frozen

_NONE: Final[frozenset[str]] = frozenset()


def _known_long(*sets: frozenset[str]) -> frozenset[str]:
    return frozenset(flag for flags in sets for flag in flags if flag.startswith("--"))


@frozen
class SafeBinProfile:
    """What one safe bin may be given."""

    value_flags: frozenset[str] = _NONE
    boolean_flags: frozenset[str] = _NONE
    denied_flags: frozenset[str] = _NONE
    min_positional: int = 0
    max_positional: int | None = 0
    #: Long flags that take a value only as ``--flag=value`` (GNU optional arguments).
    inline_only_flags: frozenset[str] = _NONE
    #: Value flags whose value must be a count (:data:`COUNT`).
    count_flags: frozenset[str] = _NONE
    known_long: frozenset[str] = field(init=False)

    @known_long.default
    def _known(self) -> frozenset[str]:
        return _known_long(
            self.value_flags, self.boolean_flags, self.denied_flags, self.inline_only_flags
        )

    def canonical_long(self, flag: str) -> str | None:
        """``flag`` if it is one of the profile's long flags, written in full.

        No abbreviation (``--li`` for ``--lines``), stricter than OpenClaw: a
        program may have a flag of its own that the abbreviation names
        exactly (``grep --binary`` is no ``--binary-files``: it takes no
        value, so the "value" was a file grep read)."""
        return flag if flag in self.known_long else None


def _profile(
    values: Sequence[str] = (),
    booleans: Sequence[str] = (),
    denied: Sequence[str] = (),
    *,
    min_positional: int = 0,
    max_positional: int | None = 0,
    inline_only: Sequence[str] = (),
    counts: Sequence[str] = (),
) -> SafeBinProfile:
    return SafeBinProfile(
        frozenset(values),
        frozenset(booleans),
        frozenset(denied),
        min_positional,
        max_positional,
        frozenset(inline_only),
        frozenset(counts),
    )


_GREP_DENIED: Final = (
    "--file", "--exclude-from", "--dereference-recursive", "--directories", "--recursive",
    "-f", "-d", "-r", "-R",
)  # fmt: skip
_GREP_VALUES: Final = (
    "--regexp", "--max-count", "--after-context", "--before-context", "--context",
    "--devices", "--binary-files", "--exclude", "--include", "--label",
    "-e", "-m", "-A", "-B", "-C", "-D",
)  # fmt: skip
#: ``head``/``tail``'s ``-n``/``-c``: their values must be counts.
_HEAD_COUNTS: Final = ("--lines", "--bytes", "-n", "-c")
_HEAD_BOOLEANS: Final = (
    "--quiet", "--silent", "--verbose", "--zero-terminated", "-q", "-v", "-z",
)  # fmt: skip

#: OpenClaw 2026.9.6's built-in profiles (``jq`` too, though it is never a
#: safe bin: see ``NEVER_SAFE_BINS``).
SAFE_BIN_PROFILES: Final[Mapping[str, SafeBinProfile]] = {
    "jq": _profile(
        ("--arg", "--argjson", "--argstr"),
        denied=(
            "--argfile", "--rawfile", "--slurpfile", "--from-file", "--library-path", "-L", "-f",
        ),
        max_positional=1,
    ),
    "grep": _profile(_GREP_VALUES, denied=_GREP_DENIED),
    "cut": _profile(
        (
            "--bytes", "--characters", "--fields", "--delimiter", "--output-delimiter",
            "-b", "-c", "-f", "-d",
        ),
        ("--complement", "--only-delimited", "--zero-terminated", "-n", "-s", "-z"),
    ),
    "sort": _profile(
        (
            "--key", "--field-separator", "--buffer-size", "--parallel", "--batch-size",
            "-k", "-t", "-S",
        ),
        denied=(
            "--compress-program", "--files0-from", "--output", "--random-source",
            "--temporary-directory", "-T", "-o",
        ),
    ),
    "uniq": _profile(
        ("--skip-fields", "--skip-chars", "--check-chars", "-f", "-s", "-w"),
        (
            "--count", "--repeated", "--unique", "--ignore-case", "--zero-terminated",
            "-c", "-d", "-u", "-i", "-z",
        ),
        inline_only=("--group",),
    ),
    "head": _profile(_HEAD_COUNTS, _HEAD_BOOLEANS, counts=_HEAD_COUNTS),
    "tail": _profile(
        (
            "--lines", "--bytes", "--sleep-interval", "--max-unchanged-stats", "--pid",
            "-n", "-c",
        ),
        _HEAD_BOOLEANS,
        ("--follow", "--retry", "-F", "-f"),
        counts=_HEAD_COUNTS,
    ),
    "tr": _profile(
        booleans=(
            "--complement", "--delete", "--squeeze-repeats", "--truncate-set1",
            "-C", "-c", "-d", "-s", "-t",
        ),
        min_positional=1,
        max_positional=2,
    ),
    "wc": _profile(
        booleans=(
            "--bytes", "--chars", "--lines", "--max-line-length", "--words",
            "-L", "-c", "-l", "-m", "-w",
        ),
        denied=("--files0-from",),
    ),
}  # fmt: skip

#: Never safe bins, listed or not: they run code or read files whatever their
#: arguments (OpenClaw's semantic rules).
NEVER_SAFE_BINS: Final = frozenset({"awk", "gawk", "gsed", "jq", "mawk", "nawk", "sed"})

_NOT_LITERAL: Final = frozenset("$`*?[]{}~\\\n\r")
#: A ``head``/``tail`` count as GNU reads it: a sign, digits and a size
#: suffix (``b``, ``K``, ``kB``, ``KiB``, ``M`` ...). Digits are required:
#: with one argument GNU ``tail`` reads ``-cf`` in its obsolete form (ten
#: bytes and ``-f``, follow), not as ``-c`` with the value ``f``, and the
#: obsolete form's letters (``b``, ``c``, ``l``, ``f``) follow no digits of
#: a ``-c`` value: ``tail -c5f`` is ``-c`` with the (bad) count ``5f``.
COUNT: Final = re.compile(r"[+-]?[0-9]+(?:b|[kKmMGTPEZYRQ](?:B|iB)?)?")


def literal_value(value: str) -> bool:
    """A flag's value the shell passes as written.

    A backslash is refused as well: it is either an escape the shell removed
    (so the word was not written as it reads) or one ``tr`` itself interprets.
    A ``/`` or ``..`` is fine (``grep -e src/``, ``cut -d /``): every value
    flag of a profile takes a required argument in GNU ``getopt``, so the
    value is never a file operand (no option may follow an operand, and
    ``POSIXLY_CORRECT`` cannot be set), and no profile flag names a file
    (those are denied).
    """
    return bool(value) and not any(ch in _NOT_LITERAL for ch in value)


def literal_operand(value: str) -> bool:
    """An operand: a literal value (:func:`literal_value`) that names no path.
    No operand is meant to be a file (only ``tr`` takes operands, its sets),
    so none may hold a ``/`` (``d/../../x`` names a file outside the
    workspace; OpenClaw refuses only a leading one) or be ``..``."""
    return literal_value(value) and "/" not in value and value != ".."


def safe_bin_arguments(name: str, args: Sequence[str]) -> bool:
    """Whether ``args`` fit safe bin ``name``'s profile (no profile: never)."""
    profile = SAFE_BIN_PROFILES.get(name)
    if profile is None or name in NEVER_SAFE_BINS:
        return False
    positional: list[str] = []
    operands_began = False
    i = 0
    while i < len(args):
        token = args[i]
        if token == "-":  # stdin
            operands_began = True
            i += 1
        elif token == "--" and not operands_began:
            positional.extend(args[i + 1 :])
            break
        elif not token.startswith("-"):
            operands_began = True
            positional.append(token)
            i += 1
        elif operands_began:
            # An option (or ``--``) after an operand: GNU getopt permutes, but
            # stops at the first operand under POSIXLY_CORRECT, and then the
            # "flag" and its "value" are files.
            return False
        elif token.startswith("--"):
            step = _long_option(profile, args, i)
            if step is None:
                return False
            i += step
        else:
            step = _short_cluster(profile, args, i)
            if step is None:
                return False
            i += step
    operands = [p for p in positional if p != "-"]
    if not all(literal_operand(p) for p in operands):
        return False
    if len(operands) < profile.min_positional:
        return False
    return profile.max_positional is None or len(operands) <= profile.max_positional


def _long_option(profile: SafeBinProfile, args: Sequence[str], i: int) -> int | None:
    flag, eq, inline = args[i].partition("=")
    canonical = profile.canonical_long(flag)
    if canonical is None or canonical in profile.denied_flags:
        return None
    if canonical in profile.inline_only_flags:
        return 1 if not eq or literal_value(inline) else None
    if eq:
        return (
            1 if canonical in profile.value_flags and _value(profile, canonical, inline) else None
        )
    if canonical in profile.value_flags:
        return 2 if i + 1 < len(args) and _separate_value(profile, canonical, args[i + 1]) else None
    return 1


def _short_cluster(profile: SafeBinProfile, args: Sequence[str], i: int) -> int | None:
    cluster = args[i][1:]
    for j, letter in enumerate(cluster):
        flag = f"-{letter}"
        if flag in profile.denied_flags:
            return None
        if flag in profile.value_flags:
            rest = cluster[j + 1 :]
            if rest:
                return 1 if _value(profile, flag, rest) else None
            return 2 if i + 1 < len(args) and _separate_value(profile, flag, args[i + 1]) else None
        if flag not in profile.boolean_flags:
            return None
    return 1


def _value(profile: SafeBinProfile, flag: str, value: str) -> bool:
    """``value`` of ``flag``: a count for a count flag, else literal."""
    if flag in profile.count_flags:
        return COUNT.fullmatch(value) is not None
    return literal_value(value)


def _separate_value(profile: SafeBinProfile, flag: str, token: str) -> bool:
    """A separate option value: as :func:`_value`, or ``-`` (OpenClaw accepts
    it) for a flag that takes no count."""
    if token == "-" and flag not in profile.count_flags:
        return True
    return _value(profile, flag, token)
