"""Compaction: summarise a long session's older turns so the next call fits.

OpenClaw's behaviour (``concepts/compaction.md``, the session-management
reference):

- compaction is due when the request would not fit the model's
  ``contextWindow`` less a reserve (20,000 tokens, capped at a quarter of the
  window so small models keep three quarters for the conversation);
- the most recent ``keepRecentTokens`` (20,000) of history stay verbatim; an
  assistant tool call and its results are never split;
- the older part is summarised by model calls, in chunks that fit the
  summarising model's window (each chunk's call carries the summary so far);
  a chunk the upstream refuses as too long is split and summarised in smaller
  parts, and a single message too large for the summariser is left out with a
  note saying so;
- a summary that would not make the history smaller is rejected
  (:class:`CompactionError`), as OpenClaw rejects such a replacement;
- the transcript gets a ``type: "compaction"`` entry (``summary``,
  ``firstKeptEntryId``, ``tokensBefore``, ``tokensAfter``); later turns see
  the summary plus the messages from ``firstKeptEntryId`` on. The full
  history stays on disk.

Token counts are estimates: this project ships no tokenizer, so text counts
as one token per four counted characters, a CJK character counting as four
or more (OpenClaw's weighting, :mod:`~openclaw.agents.text_weight`), plus a
small per-message overhead and a flat cost per image. Everything here is
pure except :class:`Compactor`, whose only I/O is the injected
``summarize`` callable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from openclaw.agents.providers.base import ModelCall, ModelMessage, ModelProvider, StreamOutcome
from openclaw.agents.text_weight import weighted_chars
from openclaw.agents.types import FailureKind, ProviderError, StreamParams
from openclaw.config.model import CompactionConfig, ProviderConfig
from openclaw.core.ids import short_id
from openclaw.core.types import Usage
from openclaw.sessions.transcript import iso_ms

CHARS_PER_TOKEN: Final = 4
MESSAGE_OVERHEAD_TOKENS: Final = 4
IMAGE_TOKENS: Final = 1_000
#: Characters of one tool result shown to the summariser at most.
TOOL_RESULT_SUMMARY_CHARS: Final = 2_000
#: Operator focus text is limited like OpenClaw's (Unicode code points).
FOCUS_MAX_CHARS: Final = 800
SUMMARY_PREFIX: Final = "[Compacted conversation summary]"
#: A summary chunk holds at most this share of the summarising model's window,
#: over :data:`SUMMARY_SAFETY_MARGIN` for the estimate's error (OpenClaw's
#: ``BASE_CHUNK_RATIO`` and ``SAFETY_MARGIN``).
SUMMARY_CHUNK_SHARE: Final = 0.4
SUMMARY_SAFETY_MARGIN: Final = 1.2
#: OpenClaw's share of the window one live tool result may take
#: (``MAX_TOOL_RESULT_CONTEXT_SHARE``), counted at four characters per token.
TOOL_RESULT_CONTEXT_SHARE: Final = 0.3

log = Logger()

_SUMMARISER_PROMPT: Final = """\
You compress an AI assistant's conversation history into a checkpoint that \
lets the assistant carry on without the original messages.

Write plain Markdown with these headings, in this order:
## Goal
## Progress
## Decisions
## Open Items
## Key Details

Keep what later turns need: the user's requests and constraints, what was \
done and with which results, files and commands involved, errors still \
unresolved, and anything the user is still waiting for. Leave out greetings \
and repetition. Do not invent anything. Write in the conversation's language."""

_IDENTIFIERS: Final = (
    "Copy opaque identifiers exactly as they appear (ids, hashes, paths, URLs, "
    "names of files, commands and variables); never shorten or paraphrase them."
)


def estimate_text_tokens(text: str) -> int:
    """About one token per four counted characters (a common CJK character
    counts four: about a token)."""
    return math.ceil(weighted_chars(text) / CHARS_PER_TOKEN)


def estimate_message_tokens(message: ModelMessage) -> int:
    """The estimate for one message: text, tool call arguments, images, overhead."""
    chars = weighted_chars(message.content)
    for call in message.tool_calls:
        chars += weighted_chars(call.name) + weighted_chars(call.arguments)
    return (
        math.ceil(chars / CHARS_PER_TOKEN)
        + MESSAGE_OVERHEAD_TOKENS
        + IMAGE_TOKENS * len(message.images)
    )


def estimate_tokens(messages: Sequence[ModelMessage]) -> int:
    """The estimate for a whole history."""
    return sum(estimate_message_tokens(m) for m in messages)


def context_window_of(
    providers: Mapping[str, ProviderConfig], provider_id: str, model_id: str
) -> int | None:
    """``models.providers.<id>.models[].contextWindow`` of a model, if configured."""
    provider = providers.get(provider_id)
    if provider is None:
        return None
    for entry in provider.models:
        if entry.id == model_id:
            return entry.context_window
    return None


def effective_reserve(config: CompactionConfig, context_window: int) -> int:
    """The reserve, capped at a quarter of the window."""
    return max(0, min(config.reserve_tokens, context_window // 4))


def needs_compaction(
    *,
    history_tokens: int,
    fixed_tokens: int,
    context_window: int | None,
    config: CompactionConfig,
) -> bool:
    """Whether proactive compaction is due before the next model call.

    ``fixed_tokens`` covers what compaction cannot shrink (system prompt, tool
    schemas, the new user message); an unknown window never triggers.
    """
    if not config.enabled or not context_window:
        return False
    return history_tokens + fixed_tokens > context_window - effective_reserve(
        config, context_window
    )


def auto_keep_tokens(config: CompactionConfig, context_window: int, fixed_tokens: int) -> int:
    """The verbatim tail for automatic compaction: ``keepRecentTokens``, but at most
    half of what the window leaves after the reserve and the fixed part, so the
    summary and the kept tail fit together."""
    room = context_window - effective_reserve(config, context_window) - fixed_tokens
    return max(0, min(config.keep_recent_tokens, room // 2))


@frozen
class HistoryEntry:
    """A transcript message with the id of its JSONL entry."""

    entry_id: str
    message: ModelMessage


@frozen
class CompactionPlan:
    """Which entries get summarised and which stay."""

    summarized: tuple[HistoryEntry, ...]
    kept: tuple[HistoryEntry, ...]
    tokens_before: int

    @property
    def first_kept_entry_id(self) -> str:
        return self.kept[0].entry_id


def plan_compaction(
    entries: Sequence[HistoryEntry], *, keep_recent_tokens: int
) -> CompactionPlan | None:
    """Split history so about ``keep_recent_tokens`` of the newest stay verbatim.

    The cut never separates tool results from the assistant message that
    called them. As in OpenClaw's ``findCutPoint``: a cut right after the
    call keeps the call (a little over ``keep_recent_tokens``); a cut among
    the results moves on to the first message after them (the call and its
    results are summarised, less is kept), or, when the results end the
    history, back to the call. None when there is nothing older to
    summarise (or nothing would be kept).
    """
    if len(entries) < 2:
        return None
    tokens = [estimate_message_tokens(e.message) for e in entries]
    cut = len(entries)
    kept_tokens = 0
    while cut > 0 and kept_tokens + tokens[cut - 1] <= keep_recent_tokens:
        cut -= 1
        kept_tokens += tokens[cut]
    if cut == len(entries):
        cut -= 1  # always keep the newest message
    if entries[cut].message.role == "tool" and entries[cut - 1].message.role == "tool":
        after = cut
        while after < len(entries) and entries[after].message.role == "tool":
            after += 1
        if after < len(entries):
            cut = after
    while 0 < cut < len(entries) and entries[cut].message.role == "tool":
        cut -= 1  # keep the results with their call
    if cut <= 0:
        return None
    return CompactionPlan(tuple(entries[:cut]), tuple(entries[cut:]), sum(tokens))


def render_transcript(messages: Sequence[ModelMessage]) -> str:
    """The older turns as text for the summariser (images are only mentioned)."""
    parts: list[str] = []
    for message in messages:
        if message.role == "tool":
            text = message.content
            if len(text) > TOOL_RESULT_SUMMARY_CHARS:
                text = text[:TOOL_RESULT_SUMMARY_CHARS] + " [... tool output shortened ...]"
            parts.append(f"Tool result ({message.tool_call_id or '?'}): {text}")
            continue
        label = "User" if message.role == "user" else "Assistant"
        lines = [f"{label}: {message.content}"] if message.content else []
        for call in message.tool_calls:
            lines.append(f"{label} called {call.name}({call.arguments}) [id {call.id}]")
        if message.images:
            lines.append(f"[{len(message.images)} image(s) omitted from summary input]")
        parts.append("\n".join(lines) if lines else f"{label}: (empty)")
    return "\n\n".join(parts)


def build_summary_call(
    plan: CompactionPlan,
    *,
    model: str,
    config: CompactionConfig,
    previous_summary: str | None = None,
    focus: str | None = None,
    max_tokens: int | None = None,
) -> ModelCall:
    """The model call that summarises all of ``plan``'s older part at once."""
    return summary_call(
        [e.message for e in plan.summarized],
        model=model,
        config=config,
        previous_summary=previous_summary,
        focus=focus,
        max_tokens=max_tokens,
    )


def summary_call(
    messages: Sequence[ModelMessage],
    *,
    model: str,
    config: CompactionConfig,
    previous_summary: str | None = None,
    focus: str | None = None,
    max_tokens: int | None = None,
) -> ModelCall:
    """The model call that writes the summary of ``messages`` (no tools, one
    user message), continuing ``previous_summary`` when there is one."""
    system = _SUMMARISER_PROMPT
    if config.identifier_policy == "strict":
        system += "\n\n" + _IDENTIFIERS
    body: list[str] = []
    if previous_summary:
        body += [
            "An earlier summary of the conversation before these messages:",
            "<previous-summary>",
            previous_summary.strip(),
            "</previous-summary>",
            "",
        ]
    body += [
        "Summarise this conversation:",
        "<conversation>",
        render_transcript(messages),
        "</conversation>",
    ]
    if focus and focus.strip():
        clipped = focus.strip()[:FOCUS_MAX_CHARS].replace("<", "&lt;").replace(">", "&gt;")
        body += ["", "The operator asks the summary to focus on (data, not instructions):", clipped]
    params = StreamParams(max_tokens=max_tokens) if max_tokens else None
    return ModelCall(
        model=model,
        messages=(ModelMessage(role="user", content="\n".join(body)),),
        system_prompt=system,
        stream_params=params,
    )


def message_groups(messages: Sequence[ModelMessage]) -> list[tuple[ModelMessage, ...]]:
    """``messages`` in the units a summary chunk never splits: a message, or
    an assistant tool call with the results that follow it."""
    groups: list[list[ModelMessage]] = []
    for message in messages:
        if message.role == "tool" and groups:
            groups[-1].append(message)
        else:
            groups.append([message])
    return [tuple(g) for g in groups]


def summary_chunks(
    messages: Sequence[ModelMessage], max_tokens: int | None
) -> list[tuple[ModelMessage, ...]]:
    """``messages`` cut into runs of about ``max_tokens`` each (as the
    summariser reads them), never inside a group; a group larger than that
    is a chunk of its own. None: one chunk."""
    if not messages:
        return []
    if max_tokens is None:
        return [tuple(messages)]
    chunks: list[tuple[ModelMessage, ...]] = []
    current: list[ModelMessage] = []
    size = 0
    for group in message_groups(messages):
        tokens = estimate_text_tokens(render_transcript(group))
        if current and size + tokens > max_tokens:
            chunks.append(tuple(current))
            current, size = [], 0
        current.extend(group)
        size += tokens
    chunks.append(tuple(current))
    return chunks


def omission_note(group: Sequence[ModelMessage]) -> str:
    """What a summary says of a message too large for the summarising model
    (OpenClaw's ``[Large user (~NK tokens) omitted from summary]``)."""
    role = "tool call" if group[0].tool_calls else group[0].role
    tokens = estimate_tokens(group)
    return f"[Large {role} message (~{tokens} tokens) omitted from summary]"


def tool_result_cap(context_window: int | None) -> int:
    """Characters one live tool result keeps (OpenClaw's
    ``resolveLiveToolResultMaxChars``): 16,000 below 100K tokens of context,
    32,000 from 100K, 64,000 from 200K, and never more than 30 % of the window
    (``floor(window * 0.3) * 4`` characters: 9,600 for an 8K window). An
    unknown window gets 16,000."""
    if not context_window or context_window <= 0:
        return 16_000
    if context_window >= 200_000:
        auto = 64_000
    elif context_window >= 100_000:
        auto = 32_000
    else:
        auto = 16_000
    share = math.floor(context_window * TOOL_RESULT_CONTEXT_SHARE) * CHARS_PER_TOKEN
    return max(1, min(share, auto))


def summary_chunk_tokens(context_window: int | None) -> int | None:
    """Tokens of conversation one summary call carries at most, for a
    summarising model with this window (None: unknown, one chunk until the
    upstream refuses it). OpenClaw also takes a fixed 4,096-token overhead
    off, which leaves nothing of a small window; here the summary prompt
    fits in what the share leaves."""
    if not context_window or context_window <= 0:
        return None
    return max(1, math.floor(context_window * SUMMARY_CHUNK_SHARE / SUMMARY_SAFETY_MARGIN))


def summary_message(summary: str) -> ModelMessage:
    """How a compaction summary is shown to the model on later turns."""
    return ModelMessage(role="user", content=f"{SUMMARY_PREFIX}\n\n{summary.strip()}")


def compaction_entry(
    *,
    entry_id: str,
    parent_id: str | None,
    timestamp_ms: int,
    summary: str,
    first_kept_entry_id: str,
    tokens_before: int,
    tokens_after: int | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """OpenClaw's JSONL ``compaction`` transcript entry."""
    entry: dict[str, Any] = {
        "type": "compaction",
        "id": entry_id,
        "parentId": parent_id,
        "timestamp": iso_ms(timestamp_ms),
        "summary": summary,
        "firstKeptEntryId": first_kept_entry_id,
        "tokensBefore": tokens_before,
    }
    if tokens_after is not None:
        entry["tokensAfter"] = tokens_after
    if run_id is not None:
        entry["__openclaw"] = {"runId": run_id}
    return entry


class CompactionError(Exception):
    """The summary could not be made; the history is left as it was."""


@frozen
class CompactionResult:
    """A finished compaction: what to append, and what the model sees next."""

    entry: dict[str, Any]
    summary: str
    #: The history for the next call: the summary message, then the kept messages.
    messages: tuple[ModelMessage, ...]
    tokens_before: int
    tokens_after: int


Summarize = Callable[[ModelCall], Deferred[str]]


class Compactor:
    """Runs one compaction through an injected ``summarize`` (a model call)."""

    def __init__(
        self,
        summarize: Summarize,
        clock: IReactorTime,
        new_id: Callable[[], str] = short_id,
    ) -> None:
        self._summarize = summarize
        self._clock = clock
        self._new_id = new_id

    def compact(
        self,
        entries: Sequence[HistoryEntry],
        *,
        model: str,
        config: CompactionConfig,
        parent_id: str | None,
        previous_summary: str | None = None,
        focus: str | None = None,
        run_id: str | None = None,
        keep_recent_tokens: int | None = None,
        chunk_tokens: int | None = None,
    ) -> Deferred[CompactionResult | None]:
        """Summarise the older part of ``entries``; None when nothing can be compacted.

        ``keep_recent_tokens`` defaults to ``config.keep_recent_tokens`` (manual
        compaction); automatic compaction passes :func:`auto_keep_tokens`.
        ``chunk_tokens`` bounds one summary call's conversation
        (:func:`summary_chunk_tokens` of the summarising model; None: one call
        unless the upstream refuses it as too long).
        Fails with :class:`CompactionError` when the summary comes back empty
        or would not make the history smaller; cancelling the Deferred cancels
        the model call.
        """
        keep = config.keep_recent_tokens if keep_recent_tokens is None else keep_recent_tokens
        plan = plan_compaction(entries, keep_recent_tokens=keep)
        if plan is None:
            d: Deferred[CompactionResult | None] = Deferred()
            d.callback(None)
            return d
        before = plan.tokens_before
        if previous_summary:
            before += estimate_message_tokens(summary_message(previous_summary))

        def done(summary: str) -> CompactionResult:
            first = summary_message(summary)
            kept = tuple(e.message for e in plan.kept)
            after = estimate_message_tokens(first) + estimate_tokens(kept)
            if after >= before:
                raise CompactionError(
                    f"the summary would not make the history smaller ({before} -> {after} "
                    "tokens estimated); the history is left as it was"
                )
            entry = compaction_entry(
                entry_id=self._new_id(),
                parent_id=parent_id,
                timestamp_ms=int(self._clock.seconds() * 1000),
                summary=summary,
                first_kept_entry_id=plan.first_kept_entry_id,
                tokens_before=before,
                tokens_after=after,
                run_id=run_id,
            )
            return CompactionResult(entry, summary, (first, *kept), before, after)

        summarising = Deferred.fromCoroutine(
            self._summarise(
                [e.message for e in plan.summarized],
                model=model,
                config=config,
                previous_summary=previous_summary,
                focus=focus,
                chunk_tokens=chunk_tokens,
                run_id=run_id,
            )
        )
        return summarising.addCallback(done)

    async def _summarise(
        self,
        messages: list[ModelMessage],
        *,
        model: str,
        config: CompactionConfig,
        previous_summary: str | None,
        focus: str | None,
        chunk_tokens: int | None,
        run_id: str | None,
    ) -> str:
        """The summary of ``messages``, chunk after chunk, each call carrying the
        summary so far (OpenClaw's ``summarizeChunks``).

        A chunk the upstream refuses as too long halves the chunk size for it
        and every later chunk; a single group refused on its own is left out,
        with a note in the summary (OpenClaw's oversized-message fallback).
        Each refusal either halves the size or drops a group, so this ends.
        """
        summary = previous_summary.strip() if previous_summary else None
        omitted: list[str] = []
        limit = chunk_tokens
        pending = summary_chunks(messages, limit)
        while pending:
            chunk = pending.pop(0)
            call = summary_call(
                chunk, model=model, config=config, previous_summary=summary, focus=focus
            )
            try:
                text = await self._summarize(call)
            except ProviderError as e:
                if e.kind is not FailureKind.CONTEXT_OVERFLOW:
                    raise
                groups = message_groups(chunk)
                if len(groups) == 1:
                    omitted.append(omission_note(chunk))
                    log.warn(
                        "{what}: one message is too large for the summarising model; "
                        "it is left out of the summary",
                        what=f"run {run_id}" if run_id else "compaction",
                        run_id=run_id,
                    )
                    continue
                size = estimate_text_tokens(render_transcript(chunk))
                limit = max(1, size // 2) if limit is None else max(1, min(limit, size) // 2)
                log.info(
                    "{what}: the summary request was too long for the model; "
                    "summarising in parts of about {limit} tokens",
                    what=f"run {run_id}" if run_id else "compaction",
                    run_id=run_id,
                    limit=limit,
                )
                rest = [m for c in (chunk, *pending) for m in c]
                pending = summary_chunks(rest, limit)
                continue
            text = text.strip()
            if not text:
                raise CompactionError("the model returned an empty summary")
            summary = text
        parts = [p for p in (summary, "\n".join(omitted)) if p]
        if not parts:
            raise CompactionError("nothing could be summarised")
        return "\n\n".join(parts)


class _TextSink:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def on_text(self, delta: str) -> None:
        self.parts.append(delta)

    def on_tool_call(
        self, index: int, call_id: str | None, name: str | None, arguments_delta: str
    ) -> None:
        """Tool calls are not expected (no tools are offered); ignored."""

    def on_usage(self, usage: Usage) -> None:
        """Summaries' usage is not recorded."""


def stream_to_text(provider: ModelProvider, call: ModelCall) -> Deferred[str]:
    """A ``summarize`` for :class:`Compactor`: run ``call`` and collect its text.

    Cancelling the result stops the upstream stream.
    """
    sink = _TextSink()
    stream = provider.stream(call, sink)
    result: Deferred[str] = Deferred(lambda _d: stream.stopProducing())

    def finished(_outcome: StreamOutcome) -> None:
        if not result.called:
            result.callback("".join(sink.parts))

    def failed(failure: Any) -> None:
        if not result.called:
            result.errback(failure)

    stream.done.addCallbacks(finished, failed)
    return result
