"""Loose text matching for ``edit`` and ``apply_patch`` (pure; no I/O).

Models often retype a file's text with ASCII quotes, dashes and spaces where
the file has typographic ones, or without its trailing spaces. OpenClaw's tools
accept such text when the exact text is not there; these helpers give ours the
same fallback. The folding only ever serves to find the place: what is
replaced is always the file's own text there.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from collections.abc import Iterator

#: What JavaScript's ``trim`` removes (OpenClaw's tools are JavaScript):
#: unlike ``str.strip()`` it takes U+FEFF and leaves U+001C-U+001F and U+0085.
SPACES = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)

#: Typographic quotes, dashes and spaces to their ASCII look-alikes (one
#: character to one, so positions do not move).
_FOLD = str.maketrans(
    {
        **dict.fromkeys(map(ord, "\u2018\u2019\u201a\u201b"), "'"),
        **dict.fromkeys(map(ord, "\u201c\u201d\u201e\u201f"), '"'),
        **dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"), "-"),
        **dict.fromkeys(
            map(ord, "\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"),
            " ",
        ),
        **dict.fromkeys(map(ord, "\u202f\u205f\u3000"), " "),
    }
)


def fold_punctuation(text: str) -> str:
    """``text`` with typographic quotes, dashes and spaces made ASCII."""
    return text.translate(_FOLD)


def normalise(text: str) -> str:
    """The form ``edit`` compares when the exact text is missing: NFKC, each
    line's trailing whitespace dropped, punctuation folded (as OpenClaw)."""
    lines = unicodedata.normalize("NFKC", text).split("\n")
    return fold_punctuation("\n".join(line.rstrip(SPACES) for line in lines))


def _hangul(char: str) -> str:
    """The Hangul syllable type of ``char``: L, V, T, LV, LVT, or ""."""
    code = ord(char)
    if 0x1100 <= code <= 0x115F or 0xA960 <= code <= 0xA97C:
        return "L"
    if 0x1160 <= code <= 0x11A7 or 0xD7B0 <= code <= 0xD7C6:
        return "V"
    if 0x11A8 <= code <= 0x11FF or 0xD7CB <= code <= 0xD7FB:
        return "T"
    if 0xAC00 <= code <= 0xD7A3:
        return "LV" if (code - 0xAC00) % 28 == 0 else "LVT"
    return ""


#: Which Hangul syllable types may follow which within one syllable.
_HANGUL_JOINS = {
    "L": {"L", "V", "LV", "LVT"},
    "V": {"V", "T"},
    "LV": {"V", "T"},
    "T": {"T"},
    "LVT": {"T"},
}


#: Format characters that join the character after them (Arabic number signs
#: and the like) rather than standing alone.
_PREPEND = frozenset("\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2")


def _control(char: str) -> bool:
    category = unicodedata.category(char)
    return category in ("Cc", "Zl", "Zp") or (
        category == "Cf" and char not in "\u200c\u200d" and char not in _PREPEND
    )


def _pictographic(char: str) -> bool:
    code = ord(char)
    return (0x1F000 <= code <= 0x1FAFF and not _regional(char)) or 0x2600 <= code <= 0x27BF


def _regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _extend(char: str) -> bool:
    code = ord(char)
    return (
        char in "\u200c\u200d"
        or unicodedata.category(char) in ("Mn", "Me")
        or 0x1F3FB <= code <= 0x1F3FF
    )


#: Viramas that join the consonants around them into one conjunct.
_LINKERS = frozenset("\u094d\u09cd\u0acd\u0b4d\u0c4d\u0d4d")


def _joins(previous: str, char: str) -> bool:
    """Whether ``char`` always belongs to the same user-perceived character as
    the one before it: marks, joiners, a Hangul syllable's jamo, emoji
    modifiers; never across a control character."""
    if _control(previous) or _control(char):
        return False
    return (
        previous in _PREPEND
        or _extend(char)
        or unicodedata.category(char) == "Mc"
        or _hangul(char) in _HANGUL_JOINS.get(_hangul(previous), ())
    )


def _clusters(line: str) -> Iterator[tuple[int, int]]:
    """The spans of ``line``'s user-perceived characters: a close
    approximation of Unicode's grapheme clusters (flags, joined emoji and
    Indic conjuncts included), which is where OpenClaw lets a loose match
    begin or end."""
    start = 0
    flags = 0  # regional indicators so far in this cluster: two make a flag
    emoji = False  # a pictograph then only extenders (a ZWJ may join the next)
    linker = ""  # a virama then only extenders (the next consonant joins)
    for i, char in enumerate(line):
        previous = line[i - 1] if i else ""
        if i and not (
            _joins(previous, char)
            or (_regional(char) and flags % 2 == 1)
            or (previous == "\u200d" and emoji and _pictographic(char))
            or (
                linker and unicodedata.category(char) == "Lo" and ord(char) >> 7 == ord(linker) >> 7
            )
        ):
            yield start, i
            start, flags = i, 0
        flags = flags + 1 if _regional(char) else 0
        emoji = _pictographic(char) or (emoji and _extend(char))
        linker = char if char in _LINKERS else (linker if _extend(char) else "")
    if line:
        yield start, len(line)


#: Where an NFKC position lies in the source: ``(start, end)``, which differ
#: only around characters that normalise to nothing; ``None`` inside the
#: expansion of one character (no source position to map it to).
_Bound = tuple[int, int] | None


def _nfkc_bounds(line: str, nfkc: str) -> list[_Bound] | None:
    """For each position of ``nfkc`` (the NFKC form of ``line``), where it lies
    in ``line``; ``None`` when the line does not normalise cluster by cluster."""
    if line.isascii():
        return [(i, i) for i in range(len(line) + 1)]
    bounds: list[_Bound] = [None] * (len(nfkc) + 1)
    pieces: list[str] = []
    offset = 0
    for start, end in _clusters(line):
        piece = unicodedata.normalize("NFKC", line[start:end])
        pieces.append(piece)
        if offset + len(piece) > len(nfkc):
            return None
        before = bounds[offset]
        if not piece:
            bounds[offset] = (end, before[1] if before else start)
            continue
        bounds[offset] = before or (start, start)
        offset += len(piece)
        bounds[offset] = (end, end)
    return bounds if "".join(pieces) == nfkc else None


class Normalised:
    """A text's :func:`normalise` form, and the way back from a span of it to
    the span of the original text it came from."""

    def __init__(self, text: str) -> None:
        self._lines = text.split("\n")
        self._nfkc = unicodedata.normalize("NFKC", text).split("\n")
        trimmed = [line.rstrip(SPACES) for line in self._nfkc]
        self._kept = [len(line) for line in trimmed]
        self.text = fold_punctuation("\n".join(trimmed))
        self._starts: list[int] = []
        self._normal_starts: list[int] = []
        at = normal_at = 0
        for line, kept in zip(self._lines, self._kept, strict=True):
            self._starts.append(at)
            self._normal_starts.append(normal_at)
            at += len(line) + 1
            normal_at += kept + 1

    def _source(self, position: int, *, ending: bool) -> int | None:
        row = bisect_right(self._normal_starts, position) - 1
        column = position - self._normal_starts[row]
        line, nfkc, kept = self._lines[row], self._nfkc[row], self._kept[row]
        bounds = _nfkc_bounds(line, nfkc)
        if bounds is None:
            return None
        if column == kept and kept < len(nfkc):
            # Where the trimmed whitespace was: a span ending here keeps it,
            # one starting here begins after it.
            bound = bounds[kept] if ending else bounds[len(nfkc)]
        else:
            bound = bounds[column]
        if bound is None:
            return None
        return self._starts[row] + (bound[1] if ending else bound[0])

    def source_span(self, start: int, end: int) -> tuple[int, int] | None:
        """The original span of ``self.text[start:end]``, or ``None`` when an
        end falls inside what one character normalised to (no clean edge)."""
        begin = self._source(start, ending=False)
        finish = self._source(end, ending=True)
        if begin is None or finish is None or finish < begin:
            return None
        return begin, finish
