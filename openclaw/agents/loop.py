"""The agent loop of one turn: model call, tool calls, results, next call.

:class:`TurnLoop` repeats a step until the model answers without calling a
built-in tool:

1. held while a consumer is paused (backpressure holds the next call too);
2. before the turn's first call, when the request nears the compaction
   threshold, the silent memory flush (:mod:`~openclaw.agents.memory_flush`);
   then fitting the context window: every tool result is cut to the
   context guard's share of the window; when the request would still not
   fit, tool results are cut (the history's and this turn's, oldest first)
   if that frees enough, else the older history is compacted (and the
   results cut after it). When the upstream says the context overflowed
   anyway, the same happens once more with a smaller target, then the call
   is retried once;
3. a model call on the fallback chain's current model (a fallback-worthy
   failure before any text reached the client retries on the next model);
4. the step's built-in calls run together (:mod:`~openclaw.agents.tool_runner`)
   and their results, recorded in the model's order, go to the next call.

Client tools end the turn with their calls pending (built-in calls of the same
step run first). A step limit and the run's timeout bound the loop;
:meth:`TurnLoop.cancel` stops the stream, the running tools, any compaction
and a running memory flush.
A batch stopped that way still records a result for each of its calls, in the
model's order: the real result of every call that had finished (its side
effect happened), an abort error for the others, as OpenClaw's agent core
does; so the next turn does not tell the model a command that ran produced
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Final

from attrs import frozen
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from openclaw.agents.compaction import CompactionError, CompactionResult, tool_result_cap
from openclaw.agents.context_fit import WHY_OVERFLOW, TurnContext, chain_window
from openclaw.agents.fallback import FallbackChain
from openclaw.agents.history import History
from openclaw.agents.memory_flush import MemoryFlush
from openclaw.agents.model_retry import RetryBudget
from openclaw.agents.model_step import ModelStep, StepOutcome, add_usage
from openclaw.agents.providers.base import ModelCall, ModelMessage
from openclaw.agents.registry import AgentRegistry, ModelRef, parse_model_ref
from openclaw.agents.session_compaction import ProviderLookup, SessionCompactor, lookup_provider
from openclaw.agents.system_prompt import SystemPrompt
from openclaw.agents.tool_runner import BatchCancelledError, BatchOutcome, ToolBatch, ToolOutcome
from openclaw.agents.toolbox import AgentTools
from openclaw.agents.tools.base import ToolContext
from openclaw.agents.tools.loop_detection import LoopDetector
from openclaw.agents.turn_record import StepRecorder
from openclaw.agents.types import (
    AgentEvent,
    AgentLoopError,
    AgentRequest,
    FailureKind,
    ProviderError,
    StopReason,
    ToolCall,
    Usage,
)
from openclaw.config.model import Config
from openclaw.sessions.interface import TranscriptStore

log = Logger()

#: Model calls one turn may make at most (OpenClaw documents no limit; a run
#: timeout alone would let a looping model burn tokens for hours).
DEFAULT_MAX_STEPS: Final = 50
#: Text between the replies of two steps, so the client's append-only text reads well.
STEP_SEPARATOR: Final = "\n\n"


@frozen
class LoopDeps:
    """What a turn's loop uses, shared with the run."""

    clock: IReactorTime
    config: Config
    registry: AgentRegistry
    store: TranscriptStore
    providers: ProviderLookup
    storage_agent: str
    session_id: str
    workspace: Path
    compactor: SessionCompactor
    max_steps: int = DEFAULT_MAX_STEPS
    #: The session entry's ``memoryFlush`` field, as stored (the flush's cycle).
    memory_flush_row: object = None
    #: The run's time limit in seconds (0: none): a memory flush takes at most
    #: half, and no model retry waits past it.
    run_timeout: float = 0.0


@frozen
class TurnOutcome:
    """How the turn ended (without error)."""

    stop_reason: StopReason
    #: The last step's text (the final assistant message's).
    text: str
    usage: Usage
    #: The last step's calls: recorded with the final assistant message.
    tool_calls: tuple[ToolCall, ...] = ()
    #: The client tool calls the client must answer.
    pending: tuple[ToolCall, ...] = ()
    #: Built-in calls of that last step, answered (recorded after it).
    results: tuple[ToolOutcome, ...] = ()


class TurnLoop:
    """Steps of one turn; :meth:`start` once."""

    def __init__(
        self,
        request: AgentRequest,
        deps: LoopDeps,
        *,
        system_prompt: SystemPrompt,
        tools: AgentTools,
        history: History,
        chain: FallbackChain,
        on_text: Callable[[str], None],
        emit: Callable[[AgentEvent], None],
    ) -> None:
        self._request = request
        self._deps = deps
        self._system_prompt = system_prompt
        self._tools = tools
        self._context = TurnContext(
            history=history,
            first=ModelMessage(role="user", content=request.message, images=request.images),
            system_prompt=system_prompt,
            tool_schemas=(*tools.schemas, *request.client_tools),
            compaction=deps.config.agents.defaults.compaction,
            # Not a bound method: the context must not reference the loop
            # (a cycle would keep every finished turn until the collector ran).
            window=partial(chain_window, chain, deps.config.models.providers),
            run_id=request.run_id,
        )
        self._chain = chain
        self._on_text = on_text
        self._emit = emit
        #: Made on first use: most turns call no tool (its history is a
        #: 600-byte deque per open stream).
        self._loop_detector: LoopDetector | None = None
        self._client_names = {t.name for t in request.client_tools}
        self._steps = 0
        self._usage = Usage()
        #: Usage of the model calls no step message carries yet: the final
        #: assistant message's own (OpenClaw's transcript has each message's).
        self._unrecorded = Usage()
        self._any_text = False
        self._overflow_retried = False
        self._retries = RetryBudget(
            deps.config.agents.defaults.model_retry,
            deadline=deps.clock.seconds() + deps.run_timeout if deps.run_timeout > 0 else None,
        )
        self._retry_call: IDelayedCall | None = None
        self._paused = False
        self._waiting = False
        self._cancelled = False
        self._step: ModelStep | None = None
        self._failed_text = ""
        self._step_spoke = False
        self._batch: ToolBatch | None = None
        #: The step whose calls the running batch answers, and its client calls.
        self._batch_step: tuple[StepOutcome, tuple[ToolCall, ...]] | None = None
        self._compacting: Deferred[CompactionResult | None] | None = None
        self._flush = MemoryFlush(
            config=deps.config,
            clock=deps.clock,
            providers=deps.providers,
            tools=tools,
            workspace=FilePath(str(deps.workspace)),
            session_id=deps.session_id,
            session_key=request.session_key,
            storage_agent=deps.storage_agent,
            run_id=request.run_id,
            row=deps.memory_flush_row,
            run_timeout=deps.run_timeout,
        )
        self._flushing: Deferred[None] | None = None
        self.model_ref: ModelRef | None = None
        self._done: Deferred[TurnOutcome] = Deferred()
        self._recorder = StepRecorder(
            store=deps.store,
            registry=deps.registry,
            clock=deps.clock,
            storage_agent=deps.storage_agent,
            session_id=deps.session_id,
            run_id=request.run_id,
        )

    # -- control ------------------------------------------------------------------

    @property
    def _detector(self) -> LoopDetector:
        detector = self._loop_detector
        if detector is None:
            detector = self._loop_detector = self._tools.new_loop_detector()
        return detector

    def start(self) -> Deferred[TurnOutcome]:
        """Run the turn; fires with its outcome or fails (ProviderError, AgentLoopError)."""
        self._next_step()
        return self._done

    @property
    def step_text(self) -> str:
        """The text of the step in progress, or of the step that just failed
        (recorded with the failed or aborted turn)."""
        return self._step.text if self._step is not None else self._failed_text

    @property
    def usage(self) -> Usage:
        """The whole turn's usage (every model call)."""
        return self._usage

    @property
    def session_fields(self) -> dict[str, object]:
        """What the session's index entry gets with the turn (the memory
        flush's cycle, once a flush ran or failed)."""
        return self._flush.session_fields

    @property
    def message_usage(self) -> Usage:
        """The usage of the calls after the last recorded tool step: what the
        final assistant message carries."""
        return self._unrecorded

    def pause(self) -> None:
        """Hold the stream, and the next model call until :meth:`resume`."""
        self._paused = True
        if self._step is not None:
            self._step.stream.pauseProducing()

    def resume(self) -> None:
        self._paused = False
        if self._step is not None:
            self._step.stream.resumeProducing()
        if self._waiting:
            self._waiting = False
            self._next_step()

    def cancel(self) -> None:
        """Stop the model stream, the running tools and any compaction; the
        running batch's calls are answered and recorded (see
        :meth:`_record_stopped_batch`) before this returns, so they precede
        the aborted turn's final message in the transcript."""
        if self._cancelled:
            return
        self._cancelled = True
        step, self._step = self._step, None
        if step is not None:
            self._failed_text = step.text
            step.close()
            step.done.addErrback(lambda _: None)
            try:
                step.stream.stopProducing()
            except Exception:
                log.failure("a model stream failed to stop")
        batch, self._batch = self._batch, None
        if batch is not None:
            self._record_stopped_batch(batch.cancel())
        compacting, self._compacting = self._compacting, None
        if compacting is not None:
            compacting.cancel()
        retry, self._retry_call = self._retry_call, None
        if retry is not None and retry.active():
            retry.cancel()
        flushing, self._flushing = self._flushing, None
        if flushing is not None:
            flushing.cancel()
        if not self._done.called:
            self._done.errback(CancelledError("turn cancelled"))

    # -- steps --------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._deps.clock.seconds() * 1000)

    def _finish(self, outcome: TurnOutcome) -> None:
        if not self._cancelled and not self._done.called:
            self._done.callback(outcome)

    def _fail(self, error: BaseException | None) -> None:
        if error is None:
            error = AgentLoopError("the turn failed")
        if not self._cancelled and not self._done.called:
            self._done.errback(Failure(error))  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted

    def _next_step(self) -> None:
        if self._cancelled or self._done.called:
            return
        if self._paused:
            self._waiting = True
            return
        if self._steps >= self._deps.max_steps:
            self._fail(
                AgentLoopError(
                    f"the agent made {self._steps} model calls without a final answer "
                    "(the turn's step limit)"
                )
            )
            return
        compaction_due = self._context.compaction_due()
        if self._flush.due(self._context, compaction_due):
            self._memory_flush()
            return
        if compaction_due:
            self._compact(then=self._fit_and_call)
            return
        self._fit_and_call()

    def _memory_flush(self) -> None:
        """The silent pre-compaction turn (:mod:`~openclaw.agents.memory_flush`),
        then this step again; it never fails the turn."""
        flushing = self._flushing = self._flush.run(
            self._context,
            model=self._chain.current,
            fallbacks=self._chain.remaining,
            system_prompt=self._system_prompt.text(),
        )

        def flushed(_: None) -> None:
            if self._flushing is flushing:
                self._flushing = None
                self._next_step()

        flushing.addCallbacks(flushed, lambda _: None)

    def _fit_and_call(self) -> None:
        """Cut tool results when the request would not fit the window less the
        reserve, then call the model."""
        if self._cancelled:
            return
        self._context.fit()
        self._call_model()

    def _call_model(self) -> None:
        if self._cancelled:
            return
        cooling = self._chain.current
        if self._chain.skip_cooling() is not None:
            log.info(
                "run {run_id}: model {model} is cooling down; using {next}",
                run_id=self._run_id,
                model=cooling,
                next=self._chain.current,
            )
        try:
            ref = parse_model_ref(self._chain.current, self._deps.config.models.providers)
            self.model_ref = ref
            provider = lookup_provider(self._deps.providers, ref)
            call = ModelCall(
                model=ref.model,
                messages=self._context.messages(),
                system_prompt=self._system_prompt.text(),
                tools=self._context.tool_schemas,
                stream_params=self._request.stream_params,
            )
            separator = self._any_text
            self._step_spoke = False
            self._steps += 1
            step = ModelStep(provider, call, partial(self._text, separator=separator))
        except ProviderError as e:
            self._model_failed(e)
            return
        except Exception as e:
            log.failure("run {run_id}: the model call could not start", run_id=self._run_id)
            self._fail(e)
            return
        self._step = step
        if self._paused:
            step.stream.pauseProducing()
        step.done.addCallbacks(
            lambda outcome: self._step_ended(step, outcome),
            lambda failure: self._step_failed(step, failure),
        )

    @property
    def _run_id(self) -> str:
        return self._request.run_id

    def _text(self, delta: str, separator: bool) -> None:
        if self._cancelled:
            return
        if separator and not self._step_spoke:
            # The step's first text: set it apart from the previous step's.
            self._on_text(STEP_SEPARATOR)
        self._step_spoke = True
        self._any_text = True
        self._chain.note_output()
        self._on_text(delta)

    def _step_failed(self, step: ModelStep, failure: Failure) -> None:
        if self._step is not step or self._cancelled:
            return
        self._step = None
        self._failed_text = step.text
        step.close()
        error = failure.value
        if isinstance(error, CancelledError):
            self._fail(error)
            return
        if not isinstance(error, ProviderError):
            log.failure("run {run_id}: model stream failed", failure, run_id=self._run_id)
            self._fail(error)
            return
        self._model_failed(error)

    def _model_failed(self, error: ProviderError) -> None:
        # Overflow is refused before any text: retrying this step repeats
        # nothing the client saw (earlier steps' text stays as it was).
        if (
            error.kind is FailureKind.CONTEXT_OVERFLOW
            and not self._overflow_retried
            and not self._step_spoke
        ):
            self._overflow_retried = True
            self._steps -= 1
            self._recover_from_overflow(error)
            return
        if not self._step_spoke and self._retry_later(error):
            return
        self._fall_back_or_fail(error)

    def _retry_later(self, error: ProviderError) -> bool:
        """Retry the same model after a transient failure, while the run's
        budget lasts (:mod:`~openclaw.agents.model_retry`); False when the
        failure goes to fallback or is reported. Only a step that sent no
        text is retried: the client's stream is append-only."""
        wait = self._retries.delay(
            error, now=self._deps.clock.seconds(), can_fall_back=self._chain.can_fall_back
        )
        if wait is None:
            return False
        log.warn(
            "run {run_id}: model {model} failed ({kind}{status}); retrying in {wait:.1f} s "
            "(retry {retry} of the run)",
            run_id=self._run_id,
            model=self._chain.current,
            kind=error.kind.value,
            status=f", HTTP {error.status}" if error.status else "",
            wait=wait,
            retry=self._retries.retries,
        )
        self._steps -= 1

        def retry() -> None:
            self._retry_call = None
            self._call_model()

        self._retry_call = self._deps.clock.callLater(wait, retry)
        return True

    def _recover_from_overflow(self, error: ProviderError) -> None:
        """The upstream refused the context although the estimate let it
        through: aim at three quarters of the refused request (at most the
        window less the reserve), or at half when the window is unknown. When
        the upstream says how many tokens it counted and that is more than
        the estimate, the target shrinks by the same factor (the estimate was
        short by it). Cut tool results (the history's too: a failed turn's
        are replayed) if that frees enough, else compact the older history
        and cut what is still over after it; then retry once. With nothing
        to cut or summarise, the overflow is reported (not the same request
        sent again)."""
        context = self._context
        target, need = context.overflow_target(error.message)
        if context.trimming_frees(need) or not context.has_history:
            if need > 0 and context.trim_tool_results(need, WHY_OVERFLOW):
                log.info("run {run_id}: context overflow; retrying", run_id=self._run_id)
                self._retry_after_recovery()
                return
            self._fall_back_or_fail(error)
            return

        def fit_and_retry() -> None:
            context.fit_to(target, WHY_OVERFLOW)
            self._retry_after_recovery()

        def unchanged() -> None:
            if context.trim_tool_results(need, WHY_OVERFLOW):
                self._retry_after_recovery()
            else:
                self._fall_back_or_fail(error)

        log.info("run {run_id}: context overflow; compacting and retrying", run_id=self._run_id)
        self._compact(then=fit_and_retry, force=True, unchanged=unchanged)

    def _fall_back_or_fail(self, error: ProviderError) -> None:
        failed_model = self._chain.current
        nxt = self._chain.advance(error)
        if nxt is None:
            self._fail(error)
            return
        log.warn(
            "run {run_id}: model {model} failed ({kind}); falling back to {next}",
            run_id=self._run_id,
            model=failed_model,
            kind=error.kind.value,
            next=nxt,
        )
        self._steps -= 1
        self._call_model()

    def _retry_after_recovery(self) -> None:
        self._detector.arm_post_compaction()
        self._call_model()

    def _step_ended(self, step: ModelStep, outcome: StepOutcome) -> None:
        if self._step is not step or self._cancelled:
            return
        self._step = None
        self._chain.succeeded()
        self._retries.succeeded()
        self._usage = add_usage(self._usage, outcome.usage)
        self._unrecorded = add_usage(self._unrecorded, outcome.usage)
        calls = outcome.tool_calls
        if not calls or outcome.stop_reason == "length":
            # Cut off by the output cap: a tool call in this step may be half
            # written (its arguments truncated JSON); none is run or returned.
            self._finish(TurnOutcome(outcome.stop_reason, outcome.text, self._usage))
            return
        client = tuple(c for c in calls if c.name in self._client_names)
        builtin = tuple(c for c in calls if c.name not in self._client_names)
        if not builtin:
            self._finish(
                TurnOutcome("tool_calls", outcome.text, self._usage, calls, pending=client)
            )
            return
        if not client:
            self._recorder.step(outcome.text, self._unrecorded, calls, self.model_ref)
            self._unrecorded = Usage()
        self._batch_step = (outcome, client)
        batch = self._batch = ToolBatch(
            builtin,
            run_id=self._run_id,
            tools=self._tools.tools,
            detector=self._detector,
            context_for=self._context_for,
            emit=self._emit,
            clock=self._deps.clock,
            result_cap=tool_result_cap(self._context_window()),
        )
        batch.run().addCallbacks(
            lambda done: self._batch_done(batch, outcome, client, done),
            lambda failure: self._batch_failed(batch, failure),
        )

    def _batch_failed(self, batch: ToolBatch, failure: Failure) -> None:
        if self._batch is batch:
            self._batch = None
            error = failure.value
            if isinstance(error, BatchCancelledError):
                self._record_stopped_batch(error.results)
            self._fail(error)

    def _record_stopped_batch(self, results: tuple[ToolOutcome, ...]) -> None:
        """Record the answers of a batch stopped by the run's end (abort,
        timeout, a client gone), in call order: the calls that finished did
        their work, and the next turn must say so (OpenClaw's agent core waits
        for every launched call of an aborted batch and persists a result for
        each). A step that also called client tools was not recorded yet: it
        is now (unmarked, as a final message would be: its client calls are
        replayed as text, its built-in calls with these results)."""
        pending, self._batch_step = self._batch_step, None
        if pending is None or not results:
            return
        outcome, client = pending
        if client:
            self._recorder.step(
                outcome.text, self._unrecorded, outcome.tool_calls, self.model_ref, built_in=False
            )
            self._unrecorded = Usage()
        self._recorder.results(results)

    def _batch_done(
        self,
        batch: ToolBatch,
        outcome: StepOutcome,
        client: tuple[ToolCall, ...],
        done: BatchOutcome,
    ) -> None:
        if self._batch is not batch or self._cancelled:
            return
        self._batch = None
        self._batch_step = None
        if client:
            self._finish(
                TurnOutcome(
                    "tool_calls",
                    outcome.text,
                    self._usage,
                    outcome.tool_calls,
                    pending=client,
                    results=done.results,
                )
            )
            return
        self._recorder.results(done.results)
        if done.abort is not None:
            self._fail(AgentLoopError(done.abort))
            return
        self._context.add(
            ModelMessage(role="assistant", content=outcome.text, tool_calls=outcome.tool_calls),
            *(
                ModelMessage(
                    role="tool",
                    content=result.content,
                    tool_call_id=result.call.id,
                    is_error=result.is_error,
                )
                for result in done.results
            ),
        )
        self._next_step()

    def _context_for(self, call: ToolCall, on_update: Callable[[str], None]) -> ToolContext:
        return ToolContext(
            agent_id=self._deps.storage_agent,
            session_key=self._request.session_key,
            run_id=self._run_id,
            tool_call_id=call.id,
            workspace=FilePath(str(self._deps.workspace)),
            on_update=on_update,
        )

    # -- compaction -----------------------------------------------------------------

    def _context_window(self) -> int | None:
        return self._context.window()

    def _compact(
        self,
        *,
        then: Callable[[], None],
        force: bool = False,
        unchanged: Callable[[], None] | None = None,
    ) -> None:
        """Summarise the older history, record the compaction, then go on (also
        when nothing could be compacted: the model call reports what it must,
        unless ``unchanged`` says what to do instead)."""
        compacting = self._compacting = self._deps.compactor.compact(
            self._deps.storage_agent,
            self._deps.session_id,
            self._context.history,
            model=self._chain.current,
            fallbacks=self._chain.remaining,
            keep_recent_tokens=self._context.keep_recent_tokens(force=force),
            run_id=self._run_id,
        )

        def compacted(result: CompactionResult | None) -> None:
            if self._compacting is not compacting:
                return
            self._compacting = None
            if result is not None:
                self._context.compacted(result)
            elif unchanged is not None:
                unchanged()
                return
            then()

        def failed(failure: Failure) -> None:
            if self._compacting is not compacting:
                return
            self._compacting = None
            error = failure.value
            if isinstance(error, ProviderError | CompactionError | defer.TimeoutError):
                log.warn(
                    "run {run_id}: compaction failed ({error}); going on without it",
                    run_id=self._run_id,
                    error=str(error) or type(error).__name__,
                )
            else:
                log.failure("run {run_id}: compaction failed", failure, run_id=self._run_id)
            (unchanged or then)()

        compacting.addCallbacks(compacted, failed)
