"""What one turn sends the model, and fitting it into the context window.

:class:`TurnContext` holds a turn's request: the history (as loaded, or as
the last compaction left it), this turn's messages, the system prompt and the
tool schemas. It estimates the request's size the way OpenClaw does
(characters per token, CJK weighted), decides whether the older history must
be compacted first, and cuts tool results (oldest first) when the request
would not fit the window less the reserve or the upstream refused it as too
long. Only what the model is sent changes; the transcript keeps every result.

The loop (:mod:`~openclaw.agents.loop`) decides *when* to fit, compact or
retry; this module answers *how much* and does the cutting.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from twisted.logger import Logger

from openclaw.agents.compaction import (
    CHARS_PER_TOKEN,
    CompactionResult,
    auto_keep_tokens,
    context_window_of,
    effective_reserve,
    estimate_text_tokens,
    estimate_tokens,
    needs_compaction,
    plan_compaction,
)
from openclaw.agents.context_guard import (
    guard_tool_results,
    observed_overflow_tokens,
    reducible_chars,
    trim_tool_results,
    trimming_suffices,
)
from openclaw.agents.fallback import FallbackChain
from openclaw.agents.history import History, normalise_history
from openclaw.agents.providers.base import ModelMessage
from openclaw.agents.registry import parse_model_ref
from openclaw.agents.system_prompt import SystemPrompt
from openclaw.agents.types import ClientTool, ProviderError
from openclaw.config.model import CompactionConfig, ProviderConfig

log = Logger()

#: Why tool results are cut, as the log line says it.
WHY_PRE_CALL: Final = "it would not fit the context window"
WHY_OVERFLOW: Final = "the upstream refused the context as too long"


def fit_messages(messages: Sequence[ModelMessage], target: int) -> list[ModelMessage]:
    """``messages`` with tool results cut, oldest first, until their estimate
    is at most ``target`` tokens (or nothing is left to cut)."""
    over = estimate_tokens(messages) - target
    if over <= 0:
        return list(messages)
    return list(trim_tool_results(messages, over * CHARS_PER_TOKEN).messages)


def chain_window(chain: FallbackChain, providers: Mapping[str, ProviderConfig]) -> int | None:
    """The context window of the chain's current model (None: unknown)."""
    try:
        ref = parse_model_ref(chain.current, providers)
    except ProviderError:
        return None
    return context_window_of(providers, ref.provider, ref.model)


class TurnContext:
    """The messages of one turn's next model call, and their fitting."""

    def __init__(
        self,
        *,
        history: History,
        first: ModelMessage,
        system_prompt: SystemPrompt,
        tool_schemas: Sequence[ClientTool],
        compaction: CompactionConfig,
        window: Callable[[], int | None],
        run_id: str,
    ) -> None:
        self.history = history
        self._history_messages = list(history.messages)
        self._turn: list[ModelMessage] = [first]
        self._system_prompt = system_prompt
        self.tool_schemas = tuple(tool_schemas)
        self._compaction = compaction
        #: The current model's context window (None: unknown); it changes
        #: when the fallback chain moves on.
        self.window = window
        self._run_id = run_id
        #: The estimate of the tool schemas, made on first use (they do not change).
        self._schema_tokens: int | None = None

    # -- what is sent ---------------------------------------------------------------

    def messages(self) -> tuple[ModelMessage, ...]:
        """The history then this turn, each tool result cut to the guard's share."""
        window = self.window()
        return (
            *guard_tool_results(normalise_history(self._history_messages), window),
            *guard_tool_results(self._turn, window),
        )

    def add(self, *messages: ModelMessage) -> None:
        """Append this turn's step (the assistant's calls, then their results)."""
        self._turn.extend(messages)

    def compacted(self, result: CompactionResult) -> None:
        """The older history was summarised: send the compacted history from now on."""
        self._history_messages = list(result.messages)
        entry_id = result.entry.get("id")
        self.history = History(
            list(result.messages),
            [],
            result.summary,
            entry_id if isinstance(entry_id, str) else None,
        )

    @property
    def has_history(self) -> bool:
        return bool(self._history_messages)

    @property
    def has_steps(self) -> bool:
        """Whether this turn made a model call that called tools."""
        return len(self._turn) > 1

    def flush_target(self, extra_tokens: int) -> int | None:
        """Tokens the memory flush's messages may take: the window less the
        reserve, the system prompt and ``extra_tokens`` (the flush's own
        prompts and tool schemas); None when the window is unknown."""
        budget = self.prompt_budget()
        if budget is None:
            return None
        return budget - estimate_text_tokens(self._system_prompt.text()) - extra_tokens

    def flush_view(self, target: int | None) -> list[ModelMessage]:
        """A copy of the history for the memory flush (the waiting user
        message left out, as in OpenClaw's preflight flush), fitted to
        ``target`` tokens: tool results cut oldest first, then only the
        newest messages that fit kept. Only this copy is cut."""
        view = list(guard_tool_results(self._history_messages, self.window()))
        if target is None:
            return view
        view = fit_messages(view, target)
        kept = 0
        used = 0
        for message in reversed(view):
            used += estimate_tokens([message])
            if used > target:
                break
            kept += 1
        return view[len(view) - kept :]

    def visible_bytes(self) -> int:
        """About how many bytes of transcript the model sees (the history
        since the latest compaction, and this turn): the memory flush's
        ``forceFlushTranscriptBytes`` measure."""
        return sum(
            len(m.content.encode("utf-8", "replace"))
            + sum(len(c.arguments.encode("utf-8", "replace")) for c in m.tool_calls)
            for m in (*self._history_messages, *self._turn)
        )

    # -- estimates ------------------------------------------------------------------

    def prompt_budget(self) -> int | None:
        """Tokens a request may take: the window less the reserve (None: unknown)."""
        window = self.window()
        if not window:
            return None
        return window - effective_reserve(self._compaction, window)

    def fixed_tokens(self) -> int:
        """What compaction cannot shrink: the system prompt, the tool schemas and
        this turn (its tool results as the guard leaves them)."""
        if self._schema_tokens is None:
            schemas = json.dumps(
                [{"name": t.name, "description": t.description, "parameters": t.parameters}
                 for t in self.tool_schemas],
                default=str,
            )  # fmt: skip
            self._schema_tokens = estimate_text_tokens(schemas)
        return (
            estimate_text_tokens(self._system_prompt.text())
            + self._schema_tokens
            + estimate_tokens(guard_tool_results(self._turn, self.window()))
        )

    def history_tokens(self) -> int:
        return estimate_tokens(guard_tool_results(self._history_messages, self.window()))

    def request_tokens(self) -> int:
        """The estimate of the next request."""
        return self.fixed_tokens() + self.history_tokens()

    def keep_recent_tokens(self, *, force: bool) -> int | None:
        """How much recent history a compaction keeps verbatim (None: the
        compactor's default). ``force``: the upstream refused the context."""
        config = self._compaction
        window = self.window()
        if window and not force:
            return auto_keep_tokens(config, window, self.fixed_tokens())
        if window:
            return min(config.keep_recent_tokens, window // 4)
        if force:
            # The upstream refused the context and its size is unknown: keep at
            # most half of the history, so the retry is smaller than the refusal.
            return min(config.keep_recent_tokens, estimate_tokens(self._history_messages) // 2)
        return None

    # -- decisions ------------------------------------------------------------------

    def compaction_due(self) -> bool:
        """The history would not fit, and cutting this turn's tool results
        would not free enough on its own (OpenClaw's truncate-only route makes
        no summary: summarising a short history cannot help then). When only
        cutting the history's tool results too would free enough, a summary
        is still preferred if it can free enough itself (it leaves a stable
        history; results cut anew on each turn would not), but not when what
        it would summarise is too little: a failed turn's replayed results
        are the newest history, so a summary could not take them."""
        entries = self.history.entries
        if not entries:
            return False
        fixed = self.fixed_tokens()
        history = self.history_tokens()
        config = self._compaction
        window = self.window()
        if not needs_compaction(
            history_tokens=history, fixed_tokens=fixed, context_window=window, config=config
        ):
            return False
        budget = self.prompt_budget()
        assert budget is not None and window  # needs_compaction is False without a window
        over = fixed + history - budget
        if trimming_suffices(guard_tool_results(self._turn, window), over):
            return False
        if not trimming_suffices(self._guarded_tool_messages(), over):
            return True
        plan = plan_compaction(entries, keep_recent_tokens=auto_keep_tokens(config, window, fixed))
        if plan is None:
            return False
        older = guard_tool_results([e.message for e in plan.summarized], window)
        return estimate_tokens(older) > over

    def fit(self) -> None:
        """Cut tool results when the request would not fit the window less the reserve."""
        budget = self.prompt_budget()
        if budget is not None:
            self.fit_to(budget, WHY_PRE_CALL)

    def overflow_target(self, upstream_message: str) -> tuple[int, int]:
        """After the upstream refused the context although the estimate let it
        through: the token target of the retry and the counted characters to
        free for it. The target is three quarters of the refused request (at
        most the window less the reserve), or half when the window is unknown;
        when the upstream says how many tokens it counted and that is more
        than the estimate, the target shrinks by the same factor (the estimate
        was short by it)."""
        refused = self.request_tokens()
        budget = self.prompt_budget()
        target = refused // 2 if budget is None else min(budget, refused * 3 // 4)
        observed = observed_overflow_tokens(upstream_message)
        if observed is not None and observed > refused:
            target = target * refused // observed
        return target, max(0, refused - target) * CHARS_PER_TOKEN

    def trimming_frees(self, chars: int) -> bool:
        """Whether cutting tool results (the history's too) can free ``chars``."""
        return reducible_chars(self._guarded_tool_messages()) >= chars

    def fit_to(self, target: int, why: str) -> None:
        """Cut tool results until the request's estimate is at most ``target``."""
        over = self.request_tokens() - target
        if over > 0:
            self.trim_tool_results(over * CHARS_PER_TOKEN, why)

    # -- cutting --------------------------------------------------------------------

    def _guarded_tool_messages(self) -> list[ModelMessage]:
        """The history, then this turn, as the guard leaves them: what
        :meth:`trim_tool_results` may cut."""
        window = self.window()
        return [
            *guard_tool_results(self._history_messages, window),
            *guard_tool_results(self._turn, window),
        ]

    def trim_tool_results(self, chars: int, why: str) -> bool:
        """Cut tool results by about ``chars`` counted characters, oldest
        first: the history's (a failed turn's results are replayed), then
        this turn's, so the result the model is about to read goes last.
        Only what the model is sent changes: the transcript keeps them (the
        next turn cuts them again if it must). OpenClaw's overflow recovery
        cuts the session's tool results as well (it rewrites them in a new
        branch of the transcript)."""
        before = self.request_tokens()
        messages = self._guarded_tool_messages()
        split = len(self._history_messages)
        trimmed = trim_tool_results(messages, chars)
        if not trimmed.count:
            return False
        earlier = sum(
            1 for old, new in zip(messages[:split], trimmed.messages[:split], strict=True)
            if old is not new
        )  # fmt: skip
        self._history_messages = list(trimmed.messages[:split])
        self._turn = list(trimmed.messages[split:])
        if earlier == trimmed.count:
            where = "the history"
        elif earlier:
            where = "this turn and the history"
        else:
            where = "this turn"
        log.info(
            "run {run_id}: cut {count} tool result(s) of {where} by {freed} characters "
            "({why}): about {before} -> {after} tokens",
            run_id=self._run_id,
            count=trimmed.count,
            where=where,
            freed=trimmed.freed,
            why=why,
            before=before,
            after=self.request_tokens(),
        )
        return True
