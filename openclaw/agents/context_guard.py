"""How much of each tool result the model is sent, and trimming a turn to fit.

OpenClaw bounds tool output in three places (its ``tool-result-limits``,
``tool-result-context-guard`` and ``tool-result-truncation`` modules):

1. the live cap, once, when a tool answers
   (:func:`~openclaw.agents.compaction.tool_result_cap`); the transcript
   keeps what that leaves;
2. the context guard, on every request: a tool result may take
   ``max(1024, contextWindow)`` counted characters, each character counted
   at least twice, so ``max(512, contextWindow / 2)`` characters of plain
   text, a quarter of the window in common CJK characters
   (:func:`guard_tool_results`);
3. trimming when a request would not fit, or the upstream refused it:
   tool results are cut, oldest first, until enough is freed
   (:func:`trim_tool_results`). The transcript is not rewritten: this only
   changes what the model is sent.

Sizes are counted characters (:mod:`~openclaw.agents.text_weight`: a CJK
character counts as about a token's worth), as in OpenClaw. Cuts keep a
result's head and tail with a note of how much went
(:mod:`~openclaw.agents.tool_output`).
Everything here is pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Final

from attrs import evolve, frozen

from openclaw.agents.compaction import CHARS_PER_TOKEN
from openclaw.agents.providers.base import ModelMessage
from openclaw.agents.text_weight import weighted_chars
from openclaw.agents.tool_output import TRUNCATION_NOTE, cap_counted

#: OpenClaw's floor for the guard (``resolveToolResultContextMaxChars``), in
#: counted characters; plain text counts twice (``minimumRawWeight: 2``).
GUARD_MIN_CHARS: Final = 1_024
GUARD_CHAR_WEIGHT: Final = 2
#: Trimming alone must free the overflow plus this much (in tokens), or half
#: as much again, before the loop trusts it instead of compacting
#: (OpenClaw's ``TRUNCATION_ROUTE_BUFFER_TOKENS`` and its 1.5 factor).
TRIM_ROUTE_BUFFER_TOKENS: Final = 512
TRIM_ROUTE_FACTOR: Final = 1.5


def tool_result_context_chars(context_window: int | None) -> int | None:
    """Counted characters one tool result may take in a request, at raw
    weight :data:`GUARD_CHAR_WEIGHT` (None: the window is unknown, no
    guard)."""
    if not context_window or context_window <= 0:
        return None
    return max(GUARD_MIN_CHARS, context_window)


def guard_tool_results(
    messages: Sequence[ModelMessage], context_window: int | None
) -> list[ModelMessage]:
    """``messages`` with every tool result cut to
    :func:`tool_result_context_chars` (the same messages when none is longer)."""
    limit = tool_result_context_chars(context_window)
    if limit is None:
        return list(messages)
    return [
        evolve(m, content=cap_counted(m.content, limit, GUARD_CHAR_WEIGHT))
        if m.role == "tool" and weighted_chars(m.content, GUARD_CHAR_WEIGHT) > limit
        else m
        for m in messages
    ]


def _floor(text: str) -> int:
    """The shortest a cut result gets: the note alone."""
    return len(TRUNCATION_NOTE.format(omitted=len(text)))


def reducible_chars(messages: Sequence[ModelMessage]) -> int:
    """Counted characters that cutting every tool result of ``messages``
    could free."""
    return sum(
        max(0, weighted_chars(m.content) - _floor(m.content)) for m in messages if m.role == "tool"
    )


def trimming_suffices(messages: Sequence[ModelMessage], overflow_tokens: int) -> bool:
    """Whether cutting the tool results of ``messages`` frees ``overflow_tokens``
    with room to spare (OpenClaw's ``truncate_tool_results_only`` route: no
    summary is made then)."""
    need = overflow_tokens * CHARS_PER_TOKEN
    margin = max(
        need + TRIM_ROUTE_BUFFER_TOKENS * CHARS_PER_TOKEN, math.ceil(need * TRIM_ROUTE_FACTOR)
    )
    return reducible_chars(messages) >= margin


@frozen
class Trimmed:
    """What :func:`trim_tool_results` did."""

    messages: tuple[ModelMessage, ...]
    #: Tool results cut.
    count: int
    #: Counted characters freed.
    freed: int


def trim_tool_results(messages: Sequence[ModelMessage], chars: int) -> Trimmed:
    """Cut tool results of ``messages``, oldest first, until ``chars``
    counted characters are freed (or every result is down to its note): each
    result gives what is still needed, so the newest (which the model is
    about to read) is cut last and least."""
    out = list(messages)
    remaining = chars
    count = 0
    total = 0
    for index, message in enumerate(out):
        if remaining <= 0:
            break
        if message.role != "tool":
            continue
        text = message.content
        counted = weighted_chars(text)
        if counted <= _floor(text):
            continue
        cut = cap_counted(text, max(1, counted - remaining))
        freed = counted - weighted_chars(cut)
        if freed <= 0:
            continue
        out[index] = evolve(message, content=cut)
        remaining -= freed
        total += freed
        count += 1
    return Trimmed(tuple(out), count, total)


#: How upstreams say how long a refused request was (OpenClaw's
#: ``OBSERVED_OVERFLOW_TOKEN_PATTERNS``, and the two that report input plus
#: output tokens).
_OBSERVED_SUM: Final = (
    re.compile(
        r"input length(?:\s+and\s+max_tokens)?\s+exceed\s+context(?:\s+limit|\s+window)?"
        r"\s*\(i\.e\s*([\d,]+)\s*\+\s*([\d,]+)\s*>\s*[\d,]+\)",
        re.IGNORECASE,
    ),
    re.compile(
        r"input length\s+and\s+`max_tokens`\s+exceed\s+context\s+limit:"
        r"\s*([\d,]+)\s*\+\s*([\d,]+)\s*>\s*[\d,]+",
        re.IGNORECASE,
    ),
)
_OBSERVED: Final = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"prompt is too long:\s*([\d,]+)\s+tokens\s*>\s*[\d,]+\s+maximum",
        r"prompt is too long:\s*([\d,]+)\s*,\s*model maximum context length\s*:\s*[\d,]+",
        r"requested\s+([\d,]+)\s+tokens",
        r"token limit\s*:\s*[\d,]+\s*\(requested\s*:\s*([\d,]+)\)",
        r"resulted in\s+([\d,]+)\s+tokens",
    )
)


def observed_overflow_tokens(message: str) -> int | None:
    """The size of a refused request, when the upstream's error says it
    (OpenAI: "your messages resulted in N tokens"; Anthropic: "prompt is too
    long: N tokens > M maximum"); None when it does not."""
    for pattern in _OBSERVED_SUM:
        match = pattern.search(message)
        if match is not None:
            left, right = (int(g.replace(",", "") or 0) for g in match.groups())
            if left > 0:
                return left + right
    for pattern in _OBSERVED:
        match = pattern.search(message)
        if match is not None:
            count = int(match.group(1).replace(",", "") or 0)
            if count > 0:
                return count
    return None
