"""Cutting a tool result to a size: head, a note of what went, tail.

The tail matters as much as the head (an exit code, a timeout note or
``read``'s "Use offset=..." hint is at the end of a result). Sizes are plain
characters (:func:`cap_text`) or OpenClaw's counted characters, in which CJK
text weighs about a token per character (:func:`cap_counted`; see
:mod:`~openclaw.agents.text_weight`). Used by the tool runner for the cap a
result is recorded with, and by the context guard for what a request carries.
"""

from __future__ import annotations

from typing import Final

from openclaw.agents.text_weight import raw_chars_within, weighted_chars

#: Put where a tool result cut to the per-result cap lost its middle.
TRUNCATION_NOTE: Final = "\n[... {omitted} characters of tool output omitted ...]\n"


def cap_text(text: str, cap: int) -> str:
    """``text`` cut to at most ``cap`` characters: its head and its tail, with a
    note saying how much of the middle went. The tail matters as much as the
    head: an exit code, a timeout note or ``read``'s "Use offset=..." hint is
    at the end of a result."""
    if cap <= 0 or len(text) <= cap:
        return text
    note = TRUNCATION_NOTE.format(omitted=len(text))  # the longest the count can be
    budget = max(cap - len(note), 0)
    tail = budget // 3
    head = budget - tail
    note = TRUNCATION_NOTE.format(omitted=len(text) - head - tail)
    return text[:head] + note + (text[len(text) - tail :] if tail else "")


def cap_counted(text: str, budget: int, minimum_raw_weight: int = 1) -> str:
    """``text`` cut (head, note, tail) to at most ``budget`` counted
    characters at ``minimum_raw_weight``; the same string when it fits. The
    note alone is the shortest a cut gets."""
    if text.isascii():
        return cap_text(text, max(1, budget // minimum_raw_weight))
    limit = raw_chars_within(text, budget, minimum_raw_weight)
    if limit >= len(text):
        return text
    limit = max(1, limit)
    while True:
        cut = cap_text(text, limit)
        over = weighted_chars(cut, minimum_raw_weight) - budget
        if over <= 0 or limit == 1:
            return cut
        # Every character counts at least ``minimum_raw_weight``.
        limit = max(1, limit - -(-over // minimum_raw_weight))
