"""One batch of the model's built-in tool calls: checked, run in order, answered.

A :class:`ToolBatch` takes the calls of one model step that the run executes
itself. Before anything runs, loop detection judges the batch (``block``:
every call is answered with the detector's message instead; ``abort``: the
run stops). Then each call, one after the other: its arguments are parsed
(malformed JSON is an error result the model can read), a tool the run does
not offer is refused the same way, the tool runs with a per-call
:class:`~openclaw.agents.tools.base.ToolContext`, and whatever happens (a
tool error, an exception in the tool) becomes a ``toolResult`` for the
model, never an exception in the gateway. Cancelling the batch cancels the
running tool's Deferred (which kills an ``exec`` process group) and runs
nothing further.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from attrs import field, frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.tools.base import Tool, ToolArgumentError, ToolContext, ToolResult
from openclaw.agents.tools.loop_detection import LoopDetector
from openclaw.agents.types import ToolCall, ToolEvent
from openclaw.core.redaction import redact_credentials

log = Logger()

#: Put where a tool result cut to the per-result cap lost its middle.
TRUNCATION_NOTE: Final = "\n[... {omitted} characters of tool output omitted ...]\n"


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
    """The answered calls, in order; ``abort`` is set when loop detection
    stopped the run (its message says why)."""

    results: tuple[ToolOutcome, ...]
    abort: str | None = None


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
        self._results: list[ToolOutcome] = []
        self._current: Deferred[ToolResult] | None = None
        self._cancelled = False
        self._done: Deferred[BatchOutcome] = Deferred(lambda _d: self.cancel())
        self._warning: tuple[str | None, str] | None = None

    def run(self) -> Deferred[BatchOutcome]:
        """Start; fires with the outcome, or fails with CancelledError when cancelled."""
        verdict = self._detector.check_batch([(c.name, c.arguments) for c in self._calls])
        if verdict.action == "abort":
            log.warn("run {run_id}: {message}", run_id=self._run_id, message=verdict.message)
            self._done.callback(BatchOutcome((), abort=verdict.message))
            return self._done
        if verdict.action == "block":
            log.warn("run {run_id}: {message}", run_id=self._run_id, message=verdict.message)
            for call in self._calls:
                self._start_event(call, None)
                self._answer(ToolOutcome(call, verdict.message, is_error=True))
            self._done.callback(BatchOutcome(tuple(self._results)))
            return self._done
        if verdict.action == "warn":
            self._warning = (verdict.tool, verdict.message)
        self._next()
        return self._done

    def cancel(self) -> None:
        """Stop the running tool (cancel its Deferred) and run nothing further."""
        if self._cancelled or self._done.called:
            return
        self._cancelled = True
        current, self._current = self._current, None
        if current is not None:
            current.cancel()
            # Every tool start gets its end: clients showing the call as running
            # learn that it stopped with the run.
            call = self._calls[len(self._results)]
            self._answer(ToolOutcome(call, f"{call.name} was cancelled: the run stopped", True))
        if not self._done.called:
            self._done.errback(CancelledError("tool batch cancelled"))

    # -- one call after the other -------------------------------------------------

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    def _next(self) -> None:
        if self._cancelled or self._done.called:
            return
        index = len(self._results)
        if index >= len(self._calls):
            self._done.callback(BatchOutcome(tuple(self._results)))
            return
        call = self._calls[index]
        try:
            arguments = parse_arguments(call.arguments)
        except ToolArgumentError as e:
            self._start_event(call, None)
            self._finish(call, ToolOutcome(call, f"Invalid arguments for {call.name}: {e}", True))
            return
        self._start_event(call, arguments)
        tool = self._tools.get(call.name)
        if tool is None:
            text = f"Tool {call.name} is not available to this agent."
            self._finish(call, ToolOutcome(call, text, is_error=True))
            return
        context = self._context_for(call, lambda partial: self._update(call, partial))
        try:
            running = tool.run(arguments, context)
        except Exception as e:
            self._finish(call, self._crashed(call, e))
            return
        self._current = running
        running.addCallbacks(
            lambda result: self._tool_done(running, call, result),
            lambda failure: self._tool_failed(running, call, failure),
        )

    def _tool_done(self, running: Deferred[ToolResult], call: ToolCall, result: ToolResult) -> None:
        if self._current is not running:
            return
        self._current = None
        self._finish(call, ToolOutcome(call, result.content, result.is_error, result.details))

    def _tool_failed(
        self, running: Deferred[ToolResult], call: ToolCall, failure: Failure
    ) -> Failure | None:
        if self._current is not running:
            # Cancelled by us: the batch already failed with CancelledError.
            return None if isinstance(failure.value, CancelledError) else failure
        self._current = None
        error = failure.value
        if isinstance(error, ToolArgumentError):
            self._finish(
                call, ToolOutcome(call, f"Invalid arguments for {call.name}: {error}", True)
            )
        elif isinstance(error, CancelledError):
            # A tool that cancelled itself (its own timeout): an error for the model.
            self._finish(call, ToolOutcome(call, f"{call.name} was cancelled", is_error=True))
        elif error is not None:
            self._finish(call, self._crashed(call, error, failure))
        return None

    def _crashed(
        self, call: ToolCall, error: BaseException, failure: Failure | None = None
    ) -> ToolOutcome:
        log.failure(
            "run {run_id}: tool {tool} raised", failure, run_id=self._run_id, tool=call.name
        )
        message = redact_credentials(str(error)) or type(error).__name__
        return ToolOutcome(call, f"{call.name} failed: {message}", is_error=True)

    def _finish(self, call: ToolCall, outcome: ToolOutcome) -> None:
        content = cap_text(outcome.content, self._cap)
        warning = self._warning
        if warning is not None and warning[0] in (None, call.name):
            content = f"{content}\n\n{warning[1]}"
        outcome = ToolOutcome(call, content, outcome.is_error, outcome.details)
        self._answer(outcome)
        verdict = self._detector.record_result(
            call.name, call.arguments, outcome.content, outcome.is_error
        )
        if verdict.action == "abort":
            log.warn("run {run_id}: {message}", run_id=self._run_id, message=verdict.message)
            self._done.callback(BatchOutcome(tuple(self._results), abort=verdict.message))
            return
        # The next call on a later turn of the reactor: a long synchronous
        # chain of tools never holds it, and a cancel in between is seen.
        self._clock.callLater(0, self._next)

    def _answer(self, outcome: ToolOutcome) -> None:
        self._results.append(outcome)
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

    def _update(self, call: ToolCall, partial: str) -> None:
        if self._cancelled or self._done.called:
            return
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
