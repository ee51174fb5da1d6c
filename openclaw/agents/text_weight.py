# -*- test-case-name: tests.test_text_weight -*-
"""How many characters a text counts for in token estimates.

This project ships no tokenizer: an estimate is one token per four counted
characters. Counting every character once would make Chinese, Japanese and
Korean text look four times smaller than it is (a tokenizer spends about a
token on a common CJK character, and more on a rare one). OpenClaw's
``estimateStringCharsWithMinimumRawWeight`` (``cjk-chars``) therefore gives
CJK characters extra weight, in five buckets of code points:

- common CJK (unified ideographs, kana, Hangul syllables, CJK punctuation,
  full-width forms): 4 characters, one token;
- rarer BMP ideographs and Hangul jamo: 12;
- some spacing modifiers, half-width and compatibility forms: 8;
- a few supplementary symbols: 12, the rest of the supplementary
  ideographs: 16.

Every other character counts as its UTF-16 length (as a JavaScript string's
``length``; an emoji counts 2), times ``minimum_raw_weight``: the context
guard counts plain text twice (weight 2), a CJK character still 4.

ASCII text, the usual case, is counted at C speed (``str.isascii``); only a
text with other characters is scanned for the buckets.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

#: OpenClaw's ``WEIGHTED_CJK_RANGES``: code point ranges per bucket.
_BUCKETS: Final = (
    ((183, 183), (12288, 12703), (19968, 40869), (44032, 55215), (65281, 65376)),
    (
        (4352, 4607),
        (11904, 12287),
        (12704, 19967),
        (40870, 40959),
        (40960, 42239),
        (42752, 42759),
        (43360, 43391),
        (55216, 55295),
        (63744, 64255),
    ),
    (
        (711, 711),
        (713, 715),
        (729, 729),
        (746, 747),
        (773, 773),
        (803, 803),
        (65040, 65103),
        (65377, 65500),
        (65504, 65510),
    ),
    ((119648, 119665),),
    (
        (94176, 94207),
        (110576, 110591),
        (110592, 110959),
        (127488, 127743),
        (131072, 195103),
        (196608, 210047),
    ),
)


def _char_class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(f"\\U{start:08x}-\\U{end:08x}" for start, end in ranges)


#: Runs of common CJK characters (most CJK text is nothing else).
_COMMON: Final = re.compile(f"[{_char_class(_BUCKETS[0])}]+")
#: Any character of the other four buckets (rare in practice: one scan
#: that finds none skips them).
_RARE: Final = re.compile(f"[{''.join(_char_class(b) for b in _BUCKETS[1:])}]")
_RARE_BUCKETS: Final = tuple(re.compile(f"[{_char_class(b)}]+") for b in _BUCKETS[1:])
#: A common CJK character counts this much, whatever the raw weight (OpenClaw's
#: ``text.length * w + common * (4 - w) + ...``: the bucket's weight replaces
#: the raw one).
_COMMON_WEIGHT: Final = 4
#: For the rarer buckets: (weight, UTF-16 units per character).
_RARE_WEIGHTS: Final = ((12, 1), (8, 1), (12, 2), (16, 2))
#: Non-ASCII texts whose bucket counts are kept: a turn estimates the same
#: history and tool results several times per model call (at two weights),
#: and scanning costs tens of nanoseconds per character. An entry keeps its
#: text alive; texts are history messages and tool results, which the
#: session holds anyway while it is in use.
_MEMO_TEXTS: Final = 256


def _run_length(pattern: re.Pattern[str], text: str) -> int:
    return sum(map(len, pattern.findall(text)))


@lru_cache(maxsize=_MEMO_TEXTS)
def _counts(text: str) -> tuple[int, int, tuple[int, ...]]:
    """UTF-16 units (an astral character is two, as in JavaScript), common
    CJK characters, and the characters of each rarer bucket (none when the
    text has none)."""
    units = len(text.encode("utf-16-le", "surrogatepass")) // 2
    common = _run_length(_COMMON, text)
    if _RARE.search(text) is None:
        return units, common, ()
    return units, common, tuple(_run_length(p, text) for p in _RARE_BUCKETS)


def weighted_chars(text: str, minimum_raw_weight: int = 1) -> int:
    """The characters ``text`` counts for: see the module docstring.
    ``minimum_raw_weight`` is 1 (token estimates) or 2 (the context guard)."""
    if text.isascii():
        return len(text) * minimum_raw_weight
    units, common, rare = _counts(text)
    chars = units * minimum_raw_weight + common * (_COMMON_WEIGHT - minimum_raw_weight)
    for count, (weight, width) in zip(rare, _RARE_WEIGHTS, strict=False):
        chars += count * (weight - width * minimum_raw_weight)
    return chars


def raw_chars_within(text: str, budget: int, minimum_raw_weight: int = 1) -> int:
    """About how many characters of ``text`` count for ``budget`` (its
    average weight applied): what a cut to ``budget`` counted characters
    keeps. ``len(text)`` when the whole text fits."""
    counted = weighted_chars(text, minimum_raw_weight)
    if counted <= budget:
        return len(text)
    return max(0, budget * len(text) // counted)


__all__ = ["raw_chars_within", "weighted_chars"]
