"""One batch of the model's built-in tool calls: checked, run together, answered.

A :class:`ToolBatch` takes the calls of one model step that the run executes
itself. Before anything runs, loop detection judges the batch (``block``:
every call is answered with the detector's message instead; ``abort``: the
run stops). Then, as OpenClaw's agent loop does by default
(``toolExecution: "parallel"``), every call gets its start event, in call
order, and the calls run at the same time: two ``exec`` builds of a step take
as long as the longer one. A call is prepared first: its arguments are parsed
(malformed JSON is an error result the model can read) and a tool the run does
not offer is refused the same way; both end at once. The others are launched
one per reactor turn with a per-call
:class:`~openclaw.agents.tools.base.ToolContext`. Calls that change files
(``write``, ``edit``, ``apply_patch``) wait for each other, in call order
(OpenClaw queues changes of one file, so two edits of a file never
interleave); every other call runs alongside them.

A call's end event goes out when it finishes (finish order, as in OpenClaw);
the outcome lists the results in call order, which is the order of the
transcript and of the next model request. Whatever happens (a tool error, an
exception in the tool) becomes a ``toolResult`` for the model, never an
exception in the gateway, and never touches the other calls. Cancelling the
batch (the run was aborted, timed out or lost its client) cancels every
running tool's Deferred (which kills each ``exec`` process group), launches
nothing further, and answers every call still open with OpenClaw's abort
error (:data:`ABORTED_TEXT`; an ``exec`` that was running reads
:data:`EXEC_ABORTED_TEXT`), so each start event gets its end. The calls that
had finished keep their real results: :meth:`ToolBatch.cancel` returns every
call's answer in call order, for the transcript (as OpenClaw's agent core
records a ``toolResult`` for every call of an aborted batch).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from attrs import field, frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.tool_output import cap_counted
from openclaw.agents.tools.base import Tool, ToolArgumentError, ToolContext, ToolResult
from openclaw.agents.tools.loop_detection import LoopDetector
from openclaw.agents.types import ToolCall, ToolEvent
from openclaw.core.redaction import redact_credentials

log = Logger()

#: The built-in tools that change files: their calls in one step run one at a
#: time, in call order (OpenClaw's file mutation queue); the rest run alongside.
FILE_MUTATING_TOOLS: Final = frozenset({"write", "edit", "apply_patch"})

#: The result of a call the run's end stopped (OpenClaw's agent core answers a
#: call it did not get to run, or whose tool gave up on the abort, this way).
ABORTED_TEXT: Final = "Operation aborted"
#: The result of an ``exec`` killed by the run's end (OpenClaw's exec tool's
#: abort error).
EXEC_ABORTED_TEXT: Final = "Tool execution was aborted"


@frozen
class ToolOutcome:
    """One answered call: the text the model reads next, and facts for observers."""

    call: ToolCall
    content: str
    is_error: bool = False
    details: Mapping[str, Any] = field(factory=dict)

    def transcript_message(self, timestamp: int) -> dict[str, Any]:
        """OpenClaw's ``toolResult`` transcript message."""
        message: dict[str, Any] = {
            "role": "toolResult",
            "toolCallId": self.call.id,
            "toolName": self.call.name,
            "content": [{"type": "text", "text": self.content}],
            "isError": self.is_error,
            "timestamp": timestamp,
        }
        if self.details:
            message["details"] = dict(self.details)
        return message


@frozen
class BatchOutcome:
    """The answered calls, in call order; ``abort`` is set when loop detection
    stopped the run (its message says why)."""

    results: tuple[ToolOutcome, ...]
    abort: str | None = None


class BatchCancelledError(CancelledError):
    """The batch was cancelled; ``results`` answers every call, in call order
    (the real results of the calls that had finished, an abort error for the
    others), so the transcript can record them."""

    def __init__(self, results: tuple[ToolOutcome, ...]) -> None:
        super().__init__("tool batch cancelled")
        self.results = results


@frozen
class _Launch:
    """A prepared call waiting to start."""

    index: int
    call: ToolCall
    tool: Tool
    arguments: Mapping[str, Any]


ContextFor = Callable[[ToolCall, Callable[[str], None]], ToolContext]


def parse_arguments(raw: str) -> Mapping[str, Any]:
    """A call's JSON arguments as an object; ToolArgumentError (for the model) if not."""
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError as e:
        raise ToolArgumentError(f"arguments are not valid JSON ({e})") from None
    if not isinstance(parsed, dict):
        raise ToolArgumentError("arguments must be a JSON object")
    return parsed


class ToolBatch:
    """Runs one batch; :meth:`run` once, :meth:`cancel` at any time."""

    def __init__(
        self,
        calls: Sequence[ToolCall],
        *,
        run_id: str,
        tools: Mapping[str, Tool],
        detector: LoopDetector,
        context_for: ContextFor,
        emit: Callable[[ToolEvent], None],
        clock: IReactorTime,
        result_cap: int,
    ) -> None:
        self._calls = tuple(calls)
        self._run_id = run_id
        self._tools = tools
        self._detector = detector
        self._context_for = context_for
        self._emit = emit
        self._clock = clock
        self._cap = result_cap
        #: Each call's answer, by its place in the step (None: not answered yet).
        self._outcomes: list[ToolOutcome | None] = [None] * len(self._calls)
        self._open = len(self._calls)
        #: Prepared calls not launched yet, in call order.
        self._launches: deque[_Launch] = deque()
        #: File-changing calls waiting for the one that runs.
        self._mutations: deque[_Launch] = deque()
        self._mutating: int | None = None
        self._running: dict[int, Deferred[ToolResult]] = {}
        #: How many calls have had their start event (always the first ones).
        self._announced = 0
        self._stopped = False
        self._done: Deferred[BatchOutcome] = Deferred(self._cancelled_by_caller)
        self._warning: tuple[str | None, str] | None = None

    def run(self) -> Deferred[BatchOutcome]:
        """Start; fires with the outcome, or fails with CancelledError when cancelled."""
        verdict = self._detector.check_batch([(c.name, c.arguments) for c in self._calls])
        if verdict.action == "abort":
            log.warn("run {run_id}: {message}", run_id=self._run_id, message=verdict.message)
            self._stopped = True
            self._done.callback(BatchOutcome((), abort=verdict.message))
            return self._done
        if verdict.action == "block":
            log.warn("run {run_id}: {message}", run_id=self._run_id, message=verdict.message)
            for index, call in enumerate(self._calls):
                self._start_event(call, None)
                self._answer(index, ToolOutcome(call, verdict.message, is_error=True))
            self._complete()
            return self._done
        if verdict.action == "warn":
            self._warning = (verdict.tool, verdict.message)
        # Every call's start first, in call order (a call refused before it
        # runs ends at once); then the prepared calls are launched.
        for index, call in enumerate(self._calls):
            if self._stopped:
                break
            self._prepare(index, call)
        self._launch_next()
        self._complete()
        return self._done

    def cancel(self) -> tuple[ToolOutcome, ...]:
        """Stop every running tool (cancel its Deferred), start nothing further,
        and answer every open call with an abort error.

        Returns every call's answer in call order (the finished calls' real
        results too), for the transcript; the run's Deferred fails with
        :class:`BatchCancelledError` carrying the same. Returns nothing when
        the batch had already ended (its outcome was delivered).
        """
        if self._stopped or self._done.called:
            return ()
        self._interrupt()
        results = tuple(o for o in self._outcomes if o)
        if not self._done.called:
            self._done.errback(BatchCancelledError(results))
        return results

    def _cancelled_by_caller(self, _done: Deferred[BatchOutcome]) -> None:
        """The run's Deferred was cancelled: the same as :meth:`cancel`."""
        self.cancel()

    # -- preparing and launching --------------------------------------------------

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    def _prepare(self, index: int, call: ToolCall) -> None:
        try:
            arguments = parse_arguments(call.arguments)
        except ToolArgumentError as e:
            self._start_event(call, None)
            self._finish(index, ToolOutcome(call, f"Invalid arguments for {call.name}: {e}", True))
            return
        self._start_event(call, arguments)
        tool = self._tools.get(call.name)
        if tool is None:
            text = f"Tool {call.name} is not available to this agent."
            self._finish(index, ToolOutcome(call, text, is_error=True))
            return
        self._launches.append(_Launch(index, call, tool, arguments))

    def _launch_next(self) -> None:
        # One launch per turn of the reactor (OpenClaw starts the next call
        # once the previous one has started): a tool that works synchronously
        # never holds the reactor for the whole step, and a cancel in between
        # is seen.
        if self._stopped or self._done.called or not self._launches:
            return
        launch = self._launches.popleft()
        if self._launches:
            self._clock.callLater(0, self._launch_next)
        if launch.call.name in FILE_MUTATING_TOOLS:
            if self._mutating is not None:
                self._mutations.append(launch)
                return
            self._mutating = launch.index
        self._start(launch)

    def _start(self, launch: _Launch) -> None:
        index, call = launch.index, launch.call
        context = self._context_for(call, lambda partial: self._update(index, partial))
        try:
            running = launch.tool.run(launch.arguments, context)
        except Exception as e:
            self._finish(index, self._crashed(call, e))
            return
        self._running[index] = running
        running.addCallbacks(
            lambda result: self._tool_done(index, running, result),
            lambda failure: self._tool_failed(index, running, failure),
        )

    def _next_mutation(self) -> None:
        if self._stopped or self._done.called or self._mutating is not None:
            return
        if self._mutations:
            launch = self._mutations.popleft()
            self._mutating = launch.index
            self._start(launch)

    # -- answers --------------------------------------------------------------------

    def _tool_done(self, index: int, running: Deferred[ToolResult], result: ToolResult) -> None:
        if self._running.get(index) is not running:
            return
        del self._running[index]
        call = self._calls[index]
        self._finish(index, ToolOutcome(call, result.content, result.is_error, result.details))

    def _tool_failed(
        self, index: int, running: Deferred[ToolResult], failure: Failure
    ) -> Failure | None:
        if self._running.get(index) is not running:
            # Cancelled by us: the call is already answered.
            return None if isinstance(failure.value, CancelledError) else failure
        del self._running[index]
        call = self._calls[index]
        error = failure.value
        if isinstance(error, ToolArgumentError):
            self._finish(
                index, ToolOutcome(call, f"Invalid arguments for {call.name}: {error}", True)
            )
        elif isinstance(error, CancelledError):
            # A tool that cancelled itself (its own timeout): an error for the model.
            self._finish(index, ToolOutcome(call, f"{call.name} was cancelled", is_error=True))
        elif error is not None:
            self._finish(index, self._crashed(call, error, failure))
        return None

    def _crashed(
        self, call: ToolCall, error: BaseException, failure: Failure | None = None
    ) -> ToolOutcome:
        log.failure(
            "run {run_id}: tool {tool} raised", failure, run_id=self._run_id, tool=call.name
        )
        message = redact_credentials(str(error)) or type(error).__name__
        return ToolOutcome(call, f"{call.name} failed: {message}", is_error=True)

    def _finish(self, index: int, outcome: ToolOutcome) -> None:
        call = self._calls[index]
        content = cap_counted(outcome.content, self._cap)
        warning = self._warning
        if warning is not None and warning[0] in (None, call.name):
            content = f"{content}\n\n{warning[1]}"
        outcome = ToolOutcome(call, content, outcome.is_error, outcome.details)
        self._answer(index, outcome)
        if self._mutating == index:
            # The next file change on a later turn (see _launch_next).
            self._mutating = None
            self._clock.callLater(0, self._next_mutation)
        verdict = self._detector.record_result(
            call.name, call.arguments, outcome.content, outcome.is_error
        )
        if verdict.action == "abort":
            log.warn("run {run_id}: {message}", run_id=self._run_id, message=verdict.message)
            self._interrupt()
            self._done.callback(
                BatchOutcome(tuple(o for o in self._outcomes if o), abort=verdict.message)
            )
            return
        self._complete()

    def _complete(self) -> None:
        if self._open == 0 and not self._stopped and not self._done.called:
            self._stopped = True
            self._done.callback(BatchOutcome(tuple(o for o in self._outcomes if o)))

    def _interrupt(self) -> None:
        """Stop the batch: cancel every running tool (an ``exec`` loses its
        process group) and answer every call not answered yet with an abort
        error, in call order (a call not announced yet gets its start event
        first), so each start event gets its end and every call has a result."""
        self._stopped = True
        self._launches.clear()
        self._mutations.clear()
        for index, call in enumerate(self._calls):
            if index >= self._announced:
                self._start_event(call, None)
            running = self._running.pop(index, None)
            if running is not None:
                running.cancel()
            if self._outcomes[index] is None:
                text = (
                    EXEC_ABORTED_TEXT
                    if running is not None and call.name == "exec"
                    else ABORTED_TEXT
                )
                self._answer(index, ToolOutcome(call, text, is_error=True))

    def _answer(self, index: int, outcome: ToolOutcome) -> None:
        self._outcomes[index] = outcome
        self._open -= 1
        self._emit(
            ToolEvent(
                run_id=self._run_id,
                phase="result",
                name=outcome.call.name,
                tool_call_id=outcome.call.id,
                ts=self._now(),
                result=outcome.content,
                is_error=outcome.is_error,
                meta=outcome.details or None,
                offered=outcome.call.name in self._tools,
            )
        )

    def _start_event(self, call: ToolCall, arguments: Mapping[str, Any] | None) -> None:
        self._announced += 1
        self._emit(
            ToolEvent(
                run_id=self._run_id,
                phase="start",
                name=call.name,
                tool_call_id=call.id,
                ts=self._now(),
                arguments=call.arguments,
                args=arguments,
            )
        )

    def _update(self, index: int, partial: str) -> None:
        if self._stopped or self._done.called or self._outcomes[index] is not None:
            return
        call = self._calls[index]
        self._emit(
            ToolEvent(
                run_id=self._run_id,
                phase="update",
                name=call.name,
                tool_call_id=call.id,
                ts=self._now(),
                partial_result=partial,
            )
        )
