"""ToolBatch: one step's built-in calls, run in order, every failure answered."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.tool_runner import BatchOutcome, ToolBatch, cap_text
from openclaw.agents.tools.base import Tool, ToolArgumentError, ToolContext, ToolResult
from openclaw.agents.tools.loop_detection import LoopDetector
from openclaw.agents.types import ToolCall, ToolEvent
from openclaw.config.model import LoopDetectionConfig
from openclaw.testing import run_due


class FakeTool:
    """A tool whose behaviour is a callable."""

    def __init__(
        self, name: str, behaviour: Callable[[Mapping[str, Any], ToolContext], Deferred[ToolResult]]
    ) -> None:
        self.name = name
        self.description = f"{name} tool"
        self.parameters: Mapping[str, Any] = {"type": "object"}
        self._behaviour = behaviour
        self.calls: list[Mapping[str, Any]] = []

    def run(self, arguments: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        self.calls.append(arguments)
        return self._behaviour(arguments, context)


def _raise(_args: Mapping[str, Any], _ctx: ToolContext) -> Deferred[ToolResult]:
    raise RuntimeError("disk on fire")


class ToolBatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[ToolEvent] = []

    def batch(self, calls: list[ToolCall], tools: dict[str, Tool], cap: int = 1000) -> ToolBatch:
        return ToolBatch(
            calls,
            run_id="r",
            tools=tools,
            detector=LoopDetector(LoopDetectionConfig()),
            context_for=lambda call, on_update: ToolContext(
                agent_id="main",
                session_key="agent:main:main",
                run_id="r",
                tool_call_id=call.id,
                workspace=FilePath(self.mktemp()),
                on_update=on_update,
            ),
            emit=self.events.append,
            clock=self.clock,
            result_cap=cap,
        )

    def run_batch(self, batch: ToolBatch) -> BatchOutcome:
        d = batch.run()
        run_due(self.clock)
        outcome: BatchOutcome = self.successResultOf(d)
        return outcome

    def test_a_tool_that_raises_is_an_error_result(self) -> None:
        """An exception inside a tool becomes an error result naming it; later calls run."""
        ok = FakeTool("ok", lambda a, c: succeed(ToolResult("fine")))
        outcome = self.run_batch(
            self.batch(
                [ToolCall("c1", "boom", "{}"), ToolCall("c2", "ok", "{}")],
                {"boom": FakeTool("boom", _raise), "ok": ok},
            )
        )
        self.assertEqual(
            [(r.content, r.is_error) for r in outcome.results],
            [("boom failed: disk on fire", True), ("fine", False)],
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_argument_error_and_failed_deferred(self) -> None:
        """ToolArgumentError (raised into the Deferred) reads as invalid arguments;
        arguments that are a JSON array are refused before the tool runs."""

        def bad(_a: Mapping[str, Any], _c: ToolContext) -> Deferred[ToolResult]:
            d: Deferred[ToolResult] = Deferred()
            d.errback(ToolArgumentError("path is required"))
            return d

        tool = FakeTool("t", bad)
        outcome = self.run_batch(
            self.batch([ToolCall("c1", "t", "{}"), ToolCall("c2", "t", "[1]")], {"t": tool})
        )
        self.assertEqual(
            [r.content for r in outcome.results],
            [
                "Invalid arguments for t: path is required",
                "Invalid arguments for t: arguments must be a JSON object",
            ],
        )
        self.assertEqual(len(tool.calls), 1)

    def test_cancel_cancels_the_running_tool(self) -> None:
        """Cancelling the batch cancels the running tool's Deferred and runs nothing else."""
        running: list[Deferred[ToolResult]] = []
        cancelled: list[bool] = []

        def hang(_a: Mapping[str, Any], _c: ToolContext) -> Deferred[ToolResult]:
            d: Deferred[ToolResult] = Deferred(lambda _d: cancelled.append(True))
            running.append(d)
            return d

        second = FakeTool("second", lambda a, c: succeed(ToolResult("no")))
        batch = self.batch(
            [ToolCall("c1", "hang", "{}"), ToolCall("c2", "second", "{}")],
            {"hang": FakeTool("hang", hang), "second": second},
        )
        d = batch.run()
        run_due(self.clock)
        batch.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(cancelled, [True])
        run_due(self.clock)
        self.assertEqual(second.calls, [])

    def test_updates_become_update_events_and_results_are_capped(self) -> None:
        """on_update reaches observers as an update event; long output is cut to the cap."""

        def chatty(_a: Mapping[str, Any], ctx: ToolContext) -> Deferred[ToolResult]:
            ctx.on_update("half")
            return succeed(ToolResult("h" * 250 + "t" * 249 + "!", details={"exitCode": 0}))

        outcome = self.run_batch(
            self.batch(
                [ToolCall("c1", "chatty", "{}")], {"chatty": FakeTool("chatty", chatty)}, 100
            )
        )
        content = outcome.results[0].content
        self.assertLessEqual(len(content), 100)
        head, note, tail = content.split("\n")
        self.assertEqual(
            note, f"[... {500 - len(head) - len(tail)} characters of tool output omitted ...]"
        )
        self.assertTrue(head.startswith("hhh") and tail.endswith("t!"), content)
        self.assertEqual([e.phase for e in self.events], ["start", "update", "result"])
        self.assertEqual(self.events[1].partial_result, "half")
        self.assertEqual(self.events[2].meta, {"exitCode": 0})

    def test_cap_text_keeps_the_end_of_a_result(self) -> None:
        """What tools put last (read's continuation hint, exec's exit code)
        survives the cap."""
        hint = "\n[Showing lines 1-2000 of 5000. Use offset=2001 to continue.]"
        capped = cap_text("line\n" * 10_000 + hint, 16_000)
        self.assertLessEqual(len(capped), 16_000)
        self.assertTrue(capped.startswith("line\nline\n"))
        self.assertTrue(capped.endswith(hint))

    def test_cap_text_leaves_short_text_alone(self) -> None:
        """Text within the cap is returned unchanged."""
        self.assertEqual(cap_text("abc", 10), "abc")
