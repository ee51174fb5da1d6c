"""The pre-compaction memory flush: a silent turn that saves notes to disk.

When a session nears automatic compaction (its next request reaches the
compaction threshold less ``memoryFlush.softThresholdTokens``, or the
model-visible transcript reaches ``forceFlushTranscriptBytes``), the loop
first runs a housekeeping turn, as OpenClaw does: the model gets a private
copy of the conversation, OpenClaw's flush directive as the last user
message and its flush system prompt, and may call ``read`` and an
append-only ``write`` restricted to ``memory/YYYY-MM-DD.md`` in the agent's
workspace. Its prompts, replies and tool calls never reach the transcript or
the client (no events); only the memory file it appends to stays. It ends
when the model answers without tools (usually with ``NO_REPLY``), after
:data:`MAX_FLUSH_STEPS` model calls, or when the run is cancelled or times
out (:meth:`MemoryFlush.cancel`); a flush still going after
``compaction.timeoutSeconds`` is given up and the turn goes on.

Once per compaction cycle: the session's index entry keeps
``memoryFlush`` (``kind``, ``sessionId``, ``compactionId``: the id of the
compaction entry the history starts from, None before the first,
``failureCount``), written with the turn (``finish_turn``'s
``session_fields``), so both stores persist it. A failure never fails the
turn: it is logged and counted; after :data:`MAX_FLUSH_FAILURES` failures in
one cycle the flush waits for the next compaction. Skipped when disabled
(``memoryFlush.enabled`` or ``compaction.enabled`` false), when the agent has
no ``write`` tool or its workspace is not writable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from openclaw.agents.compaction import tool_result_cap
from openclaw.agents.context_fit import TurnContext, fit_messages
from openclaw.agents.fallback import is_fallback_worthy
from openclaw.agents.history import normalise_history
from openclaw.agents.model_step import ModelStep, StepOutcome
from openclaw.agents.providers.base import ModelCall, ModelMessage
from openclaw.agents.registry import parse_model_ref
from openclaw.agents.session_compaction import ProviderLookup, lookup_provider
from openclaw.agents.tool_runner import BatchOutcome, ToolBatch
from openclaw.agents.toolbox import AgentTools
from openclaw.agents.tools._paths import confine
from openclaw.agents.tools.base import Tool, ToolArgumentError, ToolContext, ToolResult
from openclaw.agents.tools.loop_detection import LoopDetector
from openclaw.agents.types import ClientTool, ToolCall
from openclaw.agents.user_time import format_user_time, resolve_timezone
from openclaw.config.model import Config

log = Logger()

#: The silent token: a reply that is only this is not delivered (OpenClaw's).
SILENT_TOKEN: Final = "NO_REPLY"
#: Model calls one flush may make (it should need one or two).
MAX_FLUSH_STEPS: Final = 6
#: Failures in one compaction cycle after which the flush waits for the next.
MAX_FLUSH_FAILURES: Final = 3
#: Room kept in the flush's request for its prompts and two tool schemas.
FLUSH_PROMPT_TOKENS: Final = 1_000
#: The row field (OpenClaw's session entry keeps its flush state under this name).
ROW_FIELD: Final = "memoryFlush"
#: The tools a flush may call (OpenClaw's memory-triggered runs offer only these).
FLUSH_TOOLS: Final = ("read", "write")

_TARGET = "Store durable memories only in memory/YYYY-MM-DD.md (create memory/ if needed)."
_APPEND = (
    "If memory/YYYY-MM-DD.md already exists, APPEND new content only and do not "
    "overwrite existing entries."
)
_READ_ONLY = (
    "Treat workspace bootstrap/reference files such as MEMORY.md, DREAMS.md, SOUL.md, "
    "and AGENTS.md as read-only during this flush; never overwrite, replace, or edit them."
)
#: OpenClaw's flush directive (the last user message) and flush system prompt.
FLUSH_PROMPT: Final = " ".join(
    (
        "Pre-compaction memory flush.",
        _TARGET,
        _READ_ONLY,
        _APPEND,
        "Do NOT create timestamped variant files (e.g., YYYY-MM-DD-HHMM.md); always use "
        "the canonical YYYY-MM-DD.md filename.",
        f"If nothing to store, reply with {SILENT_TOKEN}.",
    )
)
FLUSH_SYSTEM_PROMPT: Final = " ".join(
    (
        "Pre-compaction memory flush turn.",
        "The session is near auto-compaction; capture durable memories to disk.",
        _TARGET,
        _READ_ONLY,
        _APPEND,
        f"You may reply, but usually {SILENT_TOKEN} is correct.",
    )
)


def memory_path(now: float, timezone: str | None) -> str:
    """``memory/YYYY-MM-DD.md`` for today in the user's time zone."""
    day = datetime.fromtimestamp(now, tz=resolve_timezone(timezone)).strftime("%Y-%m-%d")
    return f"memory/{day}.md"


class AppendOnlyWrite:
    """``write`` as a flush offers it: only to the day's memory file, and
    appending (the real ``write`` tool then writes old + new content)."""

    name = "write"

    def __init__(self, write: Tool, relative: str) -> None:
        self._write = write
        self._relative = relative
        self.description = (
            f"{write.description} During memory flush, this tool may only append to {relative}."
        )
        self.parameters = write.parameters

    def run(self, arguments: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        workspace = context.workspace.path
        raw = arguments.get("path", arguments.get("file_path"))
        content = arguments.get("content")
        try:
            target = confine(workspace, self._relative, allow_hardlink=True)
            if not isinstance(raw, str) or confine(workspace, raw, allow_hardlink=True) != target:
                raise ToolArgumentError(
                    f"Memory flush writes are restricted to {self._relative}; use that path only."
                )
            if not isinstance(content, str):
                raise ToolArgumentError("content must be a string")
            before = _read_text(target)
        except (ToolArgumentError, OSError) as e:
            return succeed(ToolResult(str(e), is_error=True))
        separator = "\n" if before and not before.endswith("\n") and content[:1] != "\n" else ""
        whole = {"path": self._relative, "content": before + separator + content}

        def written(result: ToolResult) -> ToolResult:
            if result.is_error:
                return result
            return ToolResult(f"Appended content to {self._relative}.", details=result.details)

        return self._write.run(whole, context).addCallback(written)


def _read_text(path: str) -> str:
    """The memory file so far ("" when new). A day's notes are small: read
    in place (the flush runs once per compaction cycle)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


class MemoryFlush:
    """One turn's flush bookkeeping, and the flush turn itself."""

    def __init__(
        self,
        *,
        config: Config,
        clock: IReactorTime,
        providers: ProviderLookup,
        tools: AgentTools,
        workspace: FilePath[str],
        session_id: str,
        session_key: str,
        storage_agent: str,
        run_id: str,
        row: Any,
        run_timeout: float = 0.0,
    ) -> None:
        """:param row: the session entry's ``memoryFlush`` field, as stored."""
        self._config = config
        self._settings = config.agents.defaults.compaction.memory_flush
        self._clock = clock
        self._providers = providers
        self._tools = tools
        self._workspace = workspace
        self._session_id = session_id
        self._session_key = session_key
        self._agent = storage_agent
        self._run_id = run_id
        self._run_timeout = run_timeout
        mark = row if isinstance(row, Mapping) and row.get("sessionId") == session_id else {}
        self._mark: dict[str, Any] = dict(mark)
        self._changed = False
        #: A flush started in this turn (at most one per turn).
        self._tried = False
        self._turn: _FlushTurn | None = None

    @property
    def session_fields(self) -> dict[str, Any]:
        """What the session's index entry gets with the turn."""
        return {ROW_FIELD: dict(self._mark)} if self._changed else {}

    def _done_for(self, cycle: str | None) -> bool:
        mark = self._mark
        if not mark or mark.get("compactionId") != cycle:
            return False
        failures = mark.get("failureCount")
        return mark.get("kind") == "succeeded" or (
            isinstance(failures, int) and failures >= MAX_FLUSH_FAILURES
        )

    def due(self, context: TurnContext, compaction_due: bool) -> bool:
        """Whether to flush before the next call: enabled, able to write, not
        done in this cycle, and the request near (or past) the compaction
        threshold or the visible transcript at the forced size."""
        settings = self._settings
        if self._tried or not settings.enabled or not context.history.entries:
            return False
        if context.has_steps:
            # Before the turn's first call only (OpenClaw's preflight flush);
            # a compaction between tool steps goes ahead without one.
            return False
        if not self._config.agents.defaults.compaction.enabled:
            return False
        if self._done_for(context.history.compaction_id):
            return False
        force = settings.force_flush_transcript_bytes
        if not compaction_due and not (force > 0 and context.visible_bytes() >= force):
            budget = context.prompt_budget()
            if budget is None:
                return False
            threshold = budget - min(settings.soft_threshold_tokens, budget // 2)
            if threshold <= 0 or context.request_tokens() < threshold:
                return False
        if "write" not in self._tools.tools or not os.access(self._workspace.path, os.W_OK):
            log.info(
                "run {run_id}: memory flush skipped (the agent cannot write its workspace)",
                run_id=self._run_id,
            )
            self._tried = True
            return False
        return True

    def run(
        self, context: TurnContext, *, model: str, fallbacks: Sequence[str], system_prompt: str
    ) -> Deferred[None]:
        """Run the flush turn; fires with None whatever happens (a failure is
        logged and counted), fails only with CancelledError when cancelled."""
        self._tried = True
        cycle = context.history.compaction_id
        now = self._clock.seconds()
        timezone = self._config.agents.defaults.user_timezone
        relative = memory_path(now, timezone)
        day = relative.removeprefix("memory/").removesuffix(".md")
        prompt = (
            FLUSH_PROMPT.replace("YYYY-MM-DD", day)
            + f"\nCurrent time: {format_user_time(now, timezone)}"
        )
        tools: dict[str, Tool] = {}
        if "read" in self._tools.tools:
            tools["read"] = self._tools.tools["read"]
        tools["write"] = AppendOnlyWrite(self._tools.tools["write"], relative)
        override = self._settings.model
        target = context.flush_target(FLUSH_PROMPT_TOKENS)
        turn = self._turn = _FlushTurn(
            _FlushDeps(
                config=self._config,
                clock=self._clock,
                providers=self._providers,
                run_id=self._run_id,
                context_for=self._tool_context,
            ),
            detector=self._tools.new_loop_detector(),
            result_cap=tool_result_cap(context.window()),
            target=target,
            models=(override,) if override else (model, *fallbacks),
            messages=[*context.flush_view(target), ModelMessage("user", prompt)],
            system_prompt="\n\n".join(
                p for p in (system_prompt, FLUSH_SYSTEM_PROMPT.replace("YYYY-MM-DD", day)) if p
            ),
            tools=tools,
        )
        log.info(
            "run {run_id}: memory flush before compaction (writes go to {path})",
            run_id=self._run_id,
            path=relative,
        )

        def flushed(_: None) -> None:
            self._turn = None
            self._mark = {"kind": "succeeded", "sessionId": self._session_id, "compactionId": cycle}
            self._changed = True

        def failed(failure: Failure) -> Failure | None:
            self._turn = None
            # A flush the run's end stopped counts as a failure too: else a
            # flush slower than the run's limit would start again, and time
            # out the run again, on every later turn of the session.
            self._failed(cycle, failure)
            if isinstance(failure.value, CancelledError):
                return failure
            return None

        flushing = turn.start()
        limits = [self._config.agents.defaults.compaction.timeout_seconds]
        if self._run_timeout > 0:
            # Half the run at most, so the turn itself still has time to answer.
            limits.append(self._run_timeout / 2)
        timeout = min(t for t in limits if t > 0) if any(t > 0 for t in limits) else 0
        if timeout > 0:
            # A stuck flush call must not hold the turn (it would time the run out).
            flushing.addTimeout(timeout, self._clock)
        return flushing.addCallbacks(flushed, failed)

    def _failed(self, cycle: str | None, failure: Failure) -> None:
        mark = self._mark
        failures = mark.get("failureCount") if mark.get("compactionId") == cycle else 0
        count = (failures if isinstance(failures, int) else 0) + 1
        self._mark = {
            "kind": "failed",
            "sessionId": self._session_id,
            "compactionId": cycle,
            "failureCount": count,
        }
        self._changed = True
        log.warn(
            "run {run_id}: memory flush failed ({error}); going on with the turn "
            "(failure {count} of {limit} in this compaction cycle)",
            run_id=self._run_id,
            error=str(failure.value) or type(failure.value).__name__,
            count=count,
            limit=MAX_FLUSH_FAILURES,
        )

    def cancel(self) -> None:
        """Stop a running flush (the run was aborted or timed out)."""
        turn, self._turn = self._turn, None
        if turn is not None:
            turn.cancel()

    def _tool_context(self, call: ToolCall, on_update: Callable[[str], None]) -> ToolContext:
        return ToolContext(
            agent_id=self._agent,
            session_key=self._session_key,
            run_id=self._run_id,
            tool_call_id=call.id,
            workspace=self._workspace,
            on_update=on_update,
        )


@frozen
class _FlushDeps:
    """What the flush turn shares with its owner."""

    config: Config
    clock: IReactorTime
    providers: ProviderLookup
    run_id: str
    context_for: Callable[[ToolCall, Callable[[str], None]], ToolContext]


class _FlushTurn:
    """The flush's own little loop: model call, its read/write calls, again."""

    def __init__(
        self,
        deps: _FlushDeps,
        *,
        detector: LoopDetector,
        result_cap: int,
        target: int | None,
        models: Sequence[str],
        messages: list[ModelMessage],
        system_prompt: str,
        tools: Mapping[str, Tool],
    ) -> None:
        self._deps = deps
        self._models = tuple(models)
        self._model = 0
        self._messages = messages
        self._system_prompt = system_prompt
        self._tools = tools
        self._schemas = tuple(
            ClientTool(name=t.name, description=t.description, parameters=t.parameters)
            for t in tools.values()
        )
        self._steps = 0
        self._step: ModelStep | None = None
        self._batch: ToolBatch | None = None
        self._done: Deferred[None] = Deferred(lambda _: self.cancel())
        self._detector = detector
        self._result_cap = result_cap
        #: Tokens its messages may take (its own tool results are cut to fit).
        self._target = target

    def start(self) -> Deferred[None]:
        self._call()
        return self._done

    def cancel(self) -> None:
        step, self._step = self._step, None
        if step is not None:
            step.close()
            step.done.addErrback(lambda _: None)
            step.stream.stopProducing()
        batch, self._batch = self._batch, None
        if batch is not None:
            batch.cancel()
        if not self._done.called:
            self._done.errback(CancelledError("memory flush cancelled"))

    def _fail(self, error: BaseException) -> None:
        if not self._done.called:
            self._done.errback(Failure(error))  # type: ignore[no-untyped-call]  # untyped in Twisted

    def _call(self) -> None:
        if self._done.called:
            return
        if self._steps >= MAX_FLUSH_STEPS:
            self._fail(RuntimeError(f"no final answer after {self._steps} model calls"))
            return
        deps = self._deps
        try:
            ref = parse_model_ref(self._models[self._model], deps.config.models.providers)
            provider = lookup_provider(deps.providers, ref)
            messages = normalise_history(self._messages)
            if self._target is not None:
                messages = fit_messages(messages, self._target)
            call = ModelCall(
                model=ref.model,
                messages=tuple(messages),
                system_prompt=self._system_prompt,
                tools=self._schemas,
            )
            self._steps += 1
            step = self._step = ModelStep(provider, call, lambda _delta: None)
        except Exception as e:
            self._failed(e)
            return
        step.done.addCallbacks(
            lambda outcome: self._answered(step, outcome),
            lambda failure: self._step_failed(step, failure),
        )

    def _step_failed(self, step: ModelStep, failure: Failure) -> None:
        if self._step is step:
            self._step = None
            self._failed(failure.value)

    def _failed(self, error: BaseException | None) -> None:
        assert error is not None
        if self._model + 1 < len(self._models) and is_fallback_worthy(error):
            self._model += 1
            self._steps -= 1
            self._call()
            return
        self._fail(error)

    def _answered(self, step: ModelStep, outcome: StepOutcome) -> None:
        if self._step is not step:
            return
        self._step = None
        if not outcome.tool_calls or outcome.stop_reason == "length":
            if not self._done.called:
                self._done.callback(None)
            return
        deps = self._deps
        batch = self._batch = ToolBatch(
            outcome.tool_calls,
            run_id=deps.run_id,
            tools=self._tools,
            detector=self._detector,
            context_for=deps.context_for,
            emit=lambda _event: None,
            clock=deps.clock,
            result_cap=self._result_cap,
        )

        def done(result: BatchOutcome) -> None:
            if self._batch is not batch:
                return
            self._batch = None
            if result.abort is not None:
                self._fail(RuntimeError(result.abort))
                return
            self._messages.append(
                ModelMessage(role="assistant", content=outcome.text, tool_calls=outcome.tool_calls)
            )
            self._messages.extend(
                ModelMessage(
                    role="tool", content=r.content, tool_call_id=r.call.id, is_error=r.is_error
                )
                for r in result.results
            )
            self._call()

        def failed(failure: Failure) -> None:
            if self._batch is batch:
                self._batch = None
                self._fail(failure.value or RuntimeError("tool batch failed"))

        batch.run().addCallbacks(done, failed)
