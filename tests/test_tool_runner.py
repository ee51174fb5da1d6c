"""ToolBatch: one step's built-in calls, run together, answered in call order,
every failure answered."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.text_weight import weighted_chars
from openclaw.agents.tool_output import cap_text
from openclaw.agents.tool_runner import (
    ABORTED_TEXT,
    EXEC_ABORTED_TEXT,
    BatchCancelledError,
    BatchOutcome,
    ToolBatch,
)
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
        #: Tool call id -> the Deferred a hanging tool returned for it.
        self.pending: dict[str, Deferred[ToolResult]] = {}

    def batch(
        self,
        calls: list[ToolCall],
        tools: dict[str, Tool],
        cap: int = 1000,
        detector: LoopDetector | None = None,
    ) -> ToolBatch:
        return ToolBatch(
            calls,
            run_id="r",
            tools=tools,
            detector=detector or LoopDetector(LoopDetectionConfig()),
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

    def hanging(self, name: str, cancelled: list[str]) -> FakeTool:
        """A tool that answers only when the test fires its Deferred in
        ``self.pending`` (or when cancelled, noting the call id)."""

        def hang(_a: Mapping[str, Any], ctx: ToolContext) -> Deferred[ToolResult]:
            d: Deferred[ToolResult] = Deferred(lambda _d: cancelled.append(ctx.tool_call_id))
            self.pending[ctx.tool_call_id] = d
            return d

        return FakeTool(name, hang)

    def test_calls_run_together_and_results_keep_call_order(self) -> None:
        """Both calls are running before either finishes; the second finishing
        first ends first (events in finish order, as OpenClaw), but the outcome
        (transcript, next model request) lists the results in call order."""
        cancelled: list[str] = []
        tool = self.hanging("slow", cancelled)
        batch = self.batch(
            [ToolCall("c1", "slow", "{}"), ToolCall("c2", "slow", "{}")], {"slow": tool}
        )
        d = batch.run()
        run_due(self.clock)
        self.assertEqual(sorted(self.pending), ["c1", "c2"])
        self.assertNoResult(d)
        self.pending["c2"].callback(ToolResult("second"))
        self.assertNoResult(d)
        self.pending["c1"].callback(ToolResult("first"))
        outcome: BatchOutcome = self.successResultOf(d)
        self.assertEqual([r.call.id for r in outcome.results], ["c1", "c2"])
        self.assertEqual([r.content for r in outcome.results], ["first", "second"])
        self.assertEqual(
            [(e.phase, e.tool_call_id) for e in self.events],
            [("start", "c1"), ("start", "c2"), ("result", "c2"), ("result", "c1")],
        )
        self.assertEqual(cancelled, [])

    def test_a_failing_call_does_not_touch_the_others(self) -> None:
        """One call raises while another runs: the raiser is an error result at
        once, the other goes on and its result is kept."""
        cancelled: list[str] = []
        batch = self.batch(
            [ToolCall("c1", "slow", "{}"), ToolCall("c2", "boom", "{}")],
            {"slow": self.hanging("slow", cancelled), "boom": FakeTool("boom", _raise)},
        )
        d = batch.run()
        run_due(self.clock)
        self.assertEqual([(e.phase, e.tool_call_id) for e in self.events][-1], ("result", "c2"))
        self.pending["c1"].callback(ToolResult("fine"))
        outcome: BatchOutcome = self.successResultOf(d)
        self.assertEqual(
            [(r.content, r.is_error) for r in outcome.results],
            [("fine", False), ("boom failed: disk on fire", True)],
        )
        self.assertEqual(cancelled, [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_cancel_cancels_every_running_tool(self) -> None:
        """Cancelling the batch cancels each running tool's Deferred and answers
        every call (each start gets its end), in call order."""
        cancelled: list[str] = []
        batch = self.batch(
            [ToolCall("c1", "hang", "{}"), ToolCall("c2", "hang", "{}")],
            {"hang": self.hanging("hang", cancelled)},
        )
        d = batch.run()
        run_due(self.clock)
        batch.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(cancelled, ["c1", "c2"])
        self.assertEqual(
            [(e.phase, e.tool_call_id, e.is_error) for e in self.events],
            [
                ("start", "c1", False),
                ("start", "c2", False),
                ("result", "c1", True),
                ("result", "c2", True),
            ],
        )
        run_due(self.clock)
        self.assertEqual(len(self.events), 4)

    def test_cancel_before_launch_answers_every_started_call(self) -> None:
        """A cancel right after run() (before the later calls were launched):
        nothing else starts, and every call that had its start event ends."""
        cancelled: list[str] = []
        tool = self.hanging("hang", cancelled)
        batch = self.batch(
            [ToolCall("c1", "hang", "{}"), ToolCall("c2", "hang", "{}")], {"hang": tool}
        )
        d = batch.run()
        batch.cancel()
        run_due(self.clock)
        self.failureResultOf(d, CancelledError)
        self.assertEqual(len(tool.calls), 1)
        self.assertEqual(cancelled, ["c1"])
        self.assertEqual([e.phase for e in self.events], ["start", "start", "result", "result"])

    def test_cancel_keeps_the_results_of_finished_calls(self) -> None:
        """A cancel after one call finished (its side effect happened): cancel()
        returns every call's answer in call order, the finished call's real
        result, OpenClaw's abort errors for the running exec and for the call
        still waiting to start; the run's Deferred fails carrying the same."""
        cancelled: list[str] = []
        hanging = self.hanging("exec", cancelled)
        batch = self.batch(
            [
                ToolCall("e1", "exec", "{}"),
                ToolCall("w1", "write", "{}"),
                ToolCall("q1", "exec", "{}"),
                ToolCall("w2", "write", "{}"),
            ],
            {"exec": hanging, "write": self.hanging("write", cancelled)},
        )
        d = batch.run()
        run_due(self.clock)
        self.pending["q1"].callback(ToolResult("receipt emailed"))
        results = batch.cancel()
        self.assertEqual(
            [(r.call.id, r.content, r.is_error) for r in results],
            [
                ("e1", EXEC_ABORTED_TEXT, True),
                ("w1", ABORTED_TEXT, True),
                ("q1", "receipt emailed", False),
                ("w2", ABORTED_TEXT, True),  # waited for w1: never started
            ],
        )
        self.assertEqual(sorted(cancelled), ["e1", "w1"])
        failure = self.failureResultOf(d, BatchCancelledError)
        self.assertEqual(failure.value.results, results)
        self.assertEqual(batch.cancel(), ())
        self.assertEqual(
            [e.tool_call_id for e in self.events if e.phase == "result"], ["q1", "e1", "w1", "w2"]
        )

    def test_file_changes_wait_for_each_other(self) -> None:
        """Two edits (and a write) of one step run one at a time, in call order,
        while a read runs alongside them."""
        cancelled: list[str] = []
        tools: dict[str, Tool] = {
            name: self.hanging(name, cancelled) for name in ("edit", "write", "read")
        }
        batch = self.batch(
            [
                ToolCall("e1", "edit", "{}"),
                ToolCall("e2", "edit", "{}"),
                ToolCall("r1", "read", "{}"),
                ToolCall("w1", "write", "{}"),
            ],
            tools,
        )
        d = batch.run()
        run_due(self.clock)
        self.assertEqual(sorted(self.pending), ["e1", "r1"])
        self.pending["e1"].callback(ToolResult("edited 1"))
        run_due(self.clock)
        self.assertEqual(sorted(self.pending), ["e1", "e2", "r1"])
        self.pending["e2"].callback(ToolResult("edited 2"))
        run_due(self.clock)
        self.pending["w1"].callback(ToolResult("written"))
        self.pending["r1"].callback(ToolResult("read"))
        outcome: BatchOutcome = self.successResultOf(d)
        self.assertEqual(
            [r.content for r in outcome.results], ["edited 1", "edited 2", "read", "written"]
        )

    def test_loop_abort_mid_batch_stops_the_others(self) -> None:
        """The post-compaction guard aborts on a repeated result while another
        call still runs: that call is cancelled and answered, and the outcome
        carries the abort."""
        cancelled: list[str] = []
        same = FakeTool("same", lambda a, c: succeed(ToolResult("again")))
        detector = LoopDetector(LoopDetectionConfig())
        detector.arm_post_compaction()
        batch = self.batch(
            [
                ToolCall("h1", "hang", "{}"),
                *(ToolCall(f"s{i}", "same", "{}") for i in range(3)),
            ],
            {"hang": self.hanging("hang", cancelled), "same": same},
            detector=detector,
        )
        d = batch.run()
        run_due(self.clock)
        outcome: BatchOutcome = self.successResultOf(d)
        self.assertIn("compaction_loop_persisted", outcome.abort or "")
        self.assertEqual(cancelled, ["h1"])
        self.assertEqual([r.call.id for r in outcome.results], ["h1", "s0", "s1", "s2"])
        self.assertEqual(outcome.results[0].content, ABORTED_TEXT)

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

    def test_cjk_results_are_capped_in_counted_characters(self) -> None:
        """The cap a result is recorded with counts characters as OpenClaw's
        live cap does: a CJK character weighs about a token (4), so 1,000 of
        them do not fit a 1,000-character cap, while 1,000 ASCII ones do."""

        def reply(text: str) -> Callable[[Mapping[str, Any], ToolContext], Deferred[ToolResult]]:
            return lambda _a, _ctx: succeed(ToolResult(text))

        tools: dict[str, Tool] = {
            "cjk": FakeTool("cjk", reply("\u6f22" * 1000)),
            "ascii": FakeTool("ascii", reply("a" * 1000)),
        }
        outcome = self.run_batch(
            self.batch([ToolCall("c1", "cjk", "{}"), ToolCall("c2", "ascii", "{}")], tools, 1000)
        )
        cjk, ascii_text = (r.content for r in outcome.results)
        self.assertIn("characters of tool output omitted", cjk)
        self.assertLessEqual(weighted_chars(cjk), 1000)
        self.assertEqual(ascii_text, "a" * 1000)

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
