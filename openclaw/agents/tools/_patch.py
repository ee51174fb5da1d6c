"""Parser and applier for OpenClaw's ``apply_patch`` format (pure; no I/O).

::

    *** Begin Patch
    *** Add File: path        (then "+" lines)
    *** Delete File: path
    *** Update File: path
    *** Move to: new/path     (optional, right after Update File)
    @@ optional context line
     context / -removed / +added lines
    *** End of File           (optional: the hunk ends at the end of the file)
    *** End Patch

Hunks are located by their old lines (context + removed), searched forward
from the previous hunk; an exact match is preferred, then one that ignores
trailing whitespace, then surrounding whitespace, then also typographic
quotes, dashes and spaces. Lines (or an ``@@`` context line) that match in
more than one place are an error, as in OpenClaw: patching the first of
several would silently change the wrong one. As in OpenClaw, a hunk whose old
lines end with a blank line that is not in the file is tried without it, and
a UTF-8 byte order mark is set aside while matching and kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from attrs import frozen

from openclaw.agents.tools._fuzzy import SPACES, fold_punctuation
from openclaw.agents.tools.base import ToolArgumentError


@frozen
class Hunk:
    """One ``@@`` section of an update."""

    context: str | None
    old: tuple[str, ...]
    new: tuple[str, ...]
    at_eof: bool


@frozen
class FileOp:
    """One file operation: ``add`` (content), ``delete``, or ``update`` (hunks, move_to)."""

    kind: str
    path: str
    content: str = ""
    hunks: tuple[Hunk, ...] = ()
    move_to: str | None = None


class PatchError(ToolArgumentError):
    """The patch cannot be parsed or applied; the message is for the model."""


_ADD, _DEL, _UPD, _MOVE = (
    "*** Add File: ",
    "*** Delete File: ",
    "*** Update File: ",
    "*** Move to: ",
)


def parse(text: str) -> list[FileOp]:
    """The file operations in ``text`` (``*** Begin Patch`` ... ``*** End Patch``)."""
    lines = text.strip().replace("\r\n", "\n").split("\n")
    if not lines or lines[0].strip() != "*** Begin Patch":
        raise PatchError("The first line of the patch must be '*** Begin Patch'")
    if lines[-1].strip() != "*** End Patch":
        raise PatchError("The last line of the patch must be '*** End Patch'")
    body = lines[1:-1]
    ops: list[FileOp] = []
    i = 0
    while i < len(body):
        line = body[i]
        if line.startswith(_ADD):
            path = _path(line[len(_ADD) :])
            i += 1
            added: list[str] = []
            while i < len(body) and not body[i].startswith("*** "):
                if not body[i].startswith("+"):
                    raise PatchError(f"Add File {path}: every line must start with '+'")
                added.append(body[i][1:])
                i += 1
            ops.append(FileOp("add", path, content="\n".join(added) + ("\n" if added else "")))
        elif line.startswith(_DEL):
            ops.append(FileOp("delete", _path(line[len(_DEL) :])))
            i += 1
        elif line.startswith(_UPD):
            path = _path(line[len(_UPD) :])
            i += 1
            move_to = None
            if i < len(body) and body[i].startswith(_MOVE):
                move_to = _path(body[i][len(_MOVE) :])
                i += 1
            hunks, i = _hunks(body, i, path)
            if not hunks and move_to is None:
                raise PatchError(f"Update File {path}: no hunks")
            ops.append(FileOp("update", path, hunks=tuple(hunks), move_to=move_to))
        elif not line.strip():
            i += 1
        else:
            raise PatchError(f"Unexpected line in patch: {line[:200]!r}")
    if not ops:
        raise PatchError("The patch contains no file operations")
    return ops


def _path(raw: str) -> str:
    path = raw.strip()
    if not path:
        raise PatchError("A file operation is missing its path")
    return path


def _hunks(body: list[str], i: int, path: str) -> tuple[list[Hunk], int]:
    hunks: list[Hunk] = []
    context: str | None = None
    old: list[str] = []
    new: list[str] = []
    started = False

    def flush(at_eof: bool) -> None:
        nonlocal old, new, context, started
        if started and (old or new):
            hunks.append(Hunk(context, tuple(old), tuple(new), at_eof))
        old, new, context, started = [], [], None, False

    while i < len(body):
        line = body[i]
        if line.startswith("*** End of File"):
            flush(True)
            i += 1
            continue
        if line.startswith("*** "):
            break
        if line.startswith("@@"):
            flush(False)
            started = True
            context = line[2:].strip() or None
        elif line.startswith("+"):
            started = True
            new.append(line[1:])
        elif line.startswith("-"):
            started = True
            old.append(line[1:])
        elif line.startswith(" ") or line == "":
            started = True
            old.append(line[1:])
            new.append(line[1:])
        else:
            raise PatchError(f"Update File {path}: invalid hunk line {line[:200]!r}")
        i += 1
    flush(False)
    return hunks, i


def _rstrip(line: str) -> str:
    return line.rstrip(SPACES)


def _strip(line: str) -> str:
    return line.strip(SPACES)


def _loose(line: str) -> str:
    return fold_punctuation(line.strip(SPACES))


#: How hunk lines are compared, strictest first (OpenClaw's four passes;
#: whitespace is what JavaScript's trim removes).
_NORMS: tuple[Callable[[str], str], ...] = (lambda s: s, _rstrip, _strip, _loose)


def _find(lines: list[str], needle: tuple[str, ...], start: int, at_eof: bool) -> tuple[int, int]:
    """Where ``needle`` occurs in ``lines`` at or after ``start``, and how often.

    The first normalisation level with any match decides: ``(index of the
    first match, number of matches)``, or ``(-1, 0)`` when no level matches.
    A count above one means the lines do not say where the hunk goes. No
    lines at all are found where the search starts.
    """
    if not needle:
        return start, 1
    last = len(lines) - len(needle)
    first = max(start, last) if at_eof else start
    for norm in _NORMS:
        want = [norm(x) for x in needle]
        found = [
            pos
            for pos in range(first, last + 1)
            if [norm(x) for x in lines[pos : pos + len(needle)]] == want
        ]
        if found:
            return found[0], len(found)
    return -1, 0


#: One line and its ending (``\r\n``, ``\r``, ``\n``, or none for an unterminated last line).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")

#: A line's text and its ending.
Line = tuple[str, str]


def _split_lines(text: str) -> list[Line]:
    out: list[Line] = []
    for match in _LINE.finditer(text):
        line = match.group()
        body = line.rstrip("\r\n")
        out.append((body, line[len(body) :]))
    return out


def _changed_lines(
    lines: list[Line], start: int, old_count: int, new: tuple[str, ...], preferred: str
) -> list[Line]:
    """``new`` with line endings taken from the lines it replaces (line for
    line when the counts agree, the last one's for the last new line), else
    from the lines around it, else the file's preferred ending."""
    replaced = lines[start : start + old_count]
    nearby = (
        next((end for _, end in replaced if end), "")
        or (lines[start][1] if start < len(lines) else "")
        or (lines[start - 1][1] if start > 0 else "")
        or preferred
    )
    out: list[Line] = []
    for i, text in enumerate(new):
        if len(replaced) == len(new) or (i == len(new) - 1 and replaced):
            end = replaced[min(i, len(replaced) - 1)][1]
        elif i < len(replaced) - 1:
            end = replaced[i][1]
        else:
            end = nearby
        out.append((text, end))
    return out


def apply_update(original: str, hunks: tuple[Hunk, ...], path: str) -> str:
    """``original`` with ``hunks`` applied, or :class:`PatchError` naming the failing hunk.

    Lines are matched without their endings, and every line keeps the ending
    it had: a CRLF file stays CRLF, and new lines take the ending of the lines
    they replace or sit beside (the file's first ending when there are none),
    as OpenClaw does. A file without a final newline keeps lacking one, and
    one that starts with a byte order mark keeps it (it is not part of the
    first line's text when matching).
    """
    bom = "\ufeff" if original.startswith("\ufeff") else ""
    lines = _split_lines(original[len(bom) :])
    texts = [text for text, _ in lines]
    preferred = next((end for _, end in lines if end), "\n")
    missing_final = bool(lines) and not lines[-1][1]
    cursor = 0
    for number, hunk in enumerate(hunks, start=1):
        if hunk.context is not None:
            found, count = _find(texts, (hunk.context,), cursor, False)
            if found < 0:
                raise PatchError(f"{path}: hunk {number}: context {hunk.context!r} not found")
            if count > 1:
                raise PatchError(
                    f"{path}: hunk {number}: the context {hunk.context!r} occurs {count} times; "
                    "it must be unique, so give a more specific @@ line"
                )
            cursor = found + (0 if hunk.old and hunk.old[0].strip() == hunk.context else 1)
        old, added = hunk.old, hunk.new
        if not old:
            pos = len(lines) if hunk.at_eof or hunk.context is None else cursor
        else:
            pos, count = _find(texts, old, cursor, hunk.at_eof)
            if pos < 0 and old[-1] == "":
                # A blank context line the model added at the end of the hunk.
                old = old[:-1]
                added = added[:-1] if added and added[-1] == "" else added
                pos, count = _find(texts, old, cursor, hunk.at_eof)
            shown = "\n".join(hunk.old)[:500]
            if pos < 0:
                raise PatchError(f"{path}: hunk {number}: could not find the lines:\n{shown}")
            if count > 1:
                raise PatchError(
                    f"{path}: hunk {number}: these lines occur {count} times; they must be "
                    f"unique, so add more surrounding lines to the hunk:\n{shown}"
                )
        new = _changed_lines(lines, pos, len(old), added, preferred)
        if new and not hunk.old and pos == len(lines) and missing_final:
            new[-1] = (new[-1][0], "")
        lines[pos : pos + len(old)] = new
        texts[pos : pos + len(old)] = [text for text, _ in new]
        cursor = pos + len(new)
    return bom + "".join(
        text + (end or (preferred if i < len(lines) - 1 else ""))
        for i, (text, end) in enumerate(lines)
    )
