"""Acceptance (issue 11): hostile inputs to the built-in file tools, and the
end event of a tool cut short by the run stopping.

A file whose first line is longer than ``read``'s byte cap (minified JSON, a
log without newlines) used to read as nothing with "Use offset=1 to continue"
pointing back at the same line, so a model following the hint looped; and
the line was read whole into memory. Now the line is shown cut at the cap,
with a note saying so and how to see the rest, and the next offset moves on.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.tool_runner import ToolBatch
from openclaw.agents.tools._common import inline_runner
from openclaw.agents.tools.base import ToolContext, ToolResult
from openclaw.agents.tools.files import ReadTool
from openclaw.agents.tools.limits import FileLimits
from openclaw.agents.tools.loop_detection import LoopDetector
from openclaw.agents.types import ToolCall, ToolEvent
from openclaw.config.model import LoopDetectionConfig

CAP = FileLimits().read_max_bytes


class LongLineReadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ws = os.path.realpath(self.mktemp())
        os.makedirs(self.ws)
        self.context = ToolContext(
            agent_id="main",
            session_key="agent:main:main",
            run_id="run-1",
            tool_call_id="call-1",
            workspace=FilePath(self.ws),
        )

    def write(self, name: str, data: bytes) -> None:
        with open(os.path.join(self.ws, name), "wb") as f:
            f.write(data)

    def read(self, **args: Any) -> ToolResult:
        result: ToolResult = self.successResultOf(ReadTool(inline_runner).run(args, self.context))
        return result

    def test_first_line_longer_than_the_cap_is_shown_cut(self) -> None:
        """A 3 MB first line: its first CAP bytes come back, with a note naming the
        line's size, and the continue hint points at line 2, not line 1."""
        self.write("big.txt", b"x" * 3_000_000 + b"\nsecond\n")
        result = self.read(path="big.txt")
        self.assertFalse(result.is_error, result.content)
        self.assertTrue(result.content.startswith("x" * CAP + "\n\n[Line 1 is 3000001 bytes"))
        self.assertIn("Use offset=2 to continue.", result.content)
        self.assertEqual(self.read(path="big.txt", offset=2).content, "second\n")

    def test_long_line_after_short_ones_ends_the_page(self) -> None:
        """Short lines, then a long one: the page stops before it and the hint
        points at it; reading from there shows it cut."""
        self.write("mixed.txt", b"a\nb\n" + b"y" * (CAP + 10) + b"\nz\n")
        first = self.read(path="mixed.txt")
        self.assertTrue(first.content.startswith("a\nb\n\n\n[Showing lines 1-2 of 4."))
        self.assertIn("Use offset=3", first.content)
        third = self.read(path="mixed.txt", offset=3)
        self.assertIn(f"[Line 3 is {CAP + 11} bytes", third.content)
        self.assertIn("Use offset=4", third.content)

    def test_file_without_newlines_is_not_loaded_whole(self) -> None:
        """A 20 MB file with no newline is read in cap-sized pieces: peak memory
        stays far below the file's size, and the total line count is right."""
        self.write("blob.txt", b"q" * 20_000_000)
        tracemalloc.start()
        try:
            result = self.read(path="blob.txt")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertLess(peak, 2_000_000)
        self.assertIn("[Line 1 is 20000000 bytes", result.content)
        self.assertNotIn("Use offset=", result.content)


class CancelledToolEventTests(SynchronousTestCase):
    def test_cancelled_tool_gets_its_end_event(self) -> None:
        """A run stopped while a tool runs (timeout, abort, disconnect): the tool's
        start event is followed by a result event (OpenClaw's exec abort error),
        so a client does not show the call running forever."""
        clock = Clock()
        events: list[ToolEvent] = []
        hanging = _Hanging()
        batch = ToolBatch(
            [ToolCall(id="c1", name="exec", arguments="{}")],
            run_id="r",
            tools={"exec": hanging},
            detector=LoopDetector(LoopDetectionConfig()),
            context_for=lambda call, on_update: ToolContext(
                agent_id="main",
                session_key="agent:main:main",
                run_id="r",
                tool_call_id=call.id,
                workspace=FilePath(self.mktemp()),
                on_update=on_update,
            ),
            emit=events.append,
            clock=clock,
            result_cap=1000,
        )
        done = batch.run()
        batch.cancel()
        self.failureResultOf(done, CancelledError)
        self.assertTrue(hanging.cancelled)
        self.assertEqual(
            [(e.phase, e.tool_call_id) for e in events], [("start", "c1"), ("result", "c1")]
        )
        self.assertTrue(events[1].is_error)
        self.assertEqual(events[1].result, "Tool execution was aborted")


class _Hanging:
    """A tool that never answers until cancelled."""

    name = "exec"
    description = "hangs"
    parameters: Mapping[str, Any] = {"type": "object"}

    def __init__(self) -> None:
        self.cancelled = False

    def run(self, arguments: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        def cancel(_d: Deferred[ToolResult]) -> None:
            self.cancelled = True

        return Deferred(cancel)
