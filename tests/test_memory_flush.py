"""The pre-compaction memory flush in the agent loop (OpenClaw's
``agents.defaults.compaction.memoryFlush``): a silent turn, through the real
runtime, its file tools and its session store, with a scripted model."""

from __future__ import annotations

import json
from typing import Any

from attrs import evolve
from twisted.logger import LogLevel

from openclaw.agents.memory_flush import FLUSH_PROMPT, MAX_FLUSH_FAILURES
from openclaw.agents.types import FailureKind, ProviderError, RunAbortedError, ToolEvent
from openclaw.config.model import (
    Config,
    MemoryFlushConfig,
    ModelEntry,
    ModelsConfig,
    ProviderConfig,
    ToolPolicyConfig,
)
from openclaw.testing import Reply, run_due, scripted_config
from tests.agent_loop_support import MAIN, LoopCase, call
from tests.test_access_log import Collector

#: The scripted model's window: compaction is due over 15,000 tokens (20,000
#: less the 5,000 reserve); with softThresholdTokens 7,000 the flush is due
#: from 8,000, so a history of one BIG turn is enough whatever the system
#: prompt's size.
WINDOW = 20_000
SOFT = 7_000
BIG = "word " * 6_000  # ~7,500 tokens
#: The day of the test clock (1,700,000,000 s) in UTC.
DAY = "2023-11-14"
MEMORY = f"memory/{DAY}.md"


def write(content: str, path: str = MEMORY, id: str = "f1") -> Reply:
    return Reply(tool_calls=(call("write", id, path=path, content=content),))


def is_flush(c: Any) -> bool:
    return bool(c.messages) and c.messages[-1].content.startswith("Pre-compaction memory flush.")


class FlushCase(LoopCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_runtime(self.config())

    def config(self, **flush: Any) -> Config:
        flush.setdefault("soft_threshold_tokens", SOFT)
        provider = ProviderConfig(
            id="scripted",
            api="openai-completions",
            models=(ModelEntry(id="test-model", context_window=WINDOW),),
        )
        config = scripted_config(self.state_dir)
        compaction = config.agents.defaults.compaction
        compaction = evolve(
            compaction, keep_recent_tokens=2_000, memory_flush=MemoryFlushConfig(**flush)
        )
        defaults = evolve(config.agents.defaults, compaction=compaction, user_timezone="UTC")
        return evolve(
            config,
            models=ModelsConfig(providers={"scripted": provider}),
            agents=evolve(config.agents, defaults=defaults),
        )

    def turn(self, message: str, run_id: str) -> str:
        run, events = self.start(message, run_id=run_id)
        run_due(self.clock)
        self.events = events
        text: str = self.successResultOf(run.result).text
        return text

    def flushes(self) -> list[Any]:
        return [c for c in self.provider.calls if is_flush(c)]

    def row(self) -> dict[str, Any]:
        path = self.state_dir / "agents" / "main" / "sessions" / "sessions.json"
        entry: dict[str, Any] = json.loads(path.read_text())[MAIN]
        return entry

    def memory(self) -> str:
        return (self.workspace / MEMORY).read_text()

    def assert_transcript_has_no_flush(self) -> None:
        text = json.dumps(self.entries())
        for trace in ("Pre-compaction", "NO_REPLY", "durable memories", "Appended content"):
            self.assertNotIn(trace, text)


class FlushBeforeCompactionTests(FlushCase):
    def test_flush_writes_the_memory_file_then_compaction_runs(self) -> None:
        """The turn whose history must be compacted first runs the silent flush
        before the summary: the model gets OpenClaw's directive with today's
        file and only read and write; its write lands in memory/<day>.md; its
        prompt, reply and tool call reach neither the client nor the
        transcript; the session entry records the flush's cycle."""
        self.provider.add(
            "one", write("- The user prefers tea."), "NO_REPLY", "SUMMARY OF OLD TURNS", "two"
        )
        self.turn("first " + BIG, "r1")
        self.assertEqual(self.turn("second " + BIG, "r2"), "two")
        self.assertEqual(self.memory(), "- The user prefers tea.")
        _, flush, after_write, summary, answer = self.provider.calls
        self.assertTrue(is_flush(flush))
        self.assertIn(MEMORY, flush.messages[-1].content)
        self.assertIn("Current time:", flush.messages[-1].content)
        self.assertIn("If nothing to store, reply with NO_REPLY.", flush.messages[-1].content)
        assert flush.system_prompt is not None
        self.assertIn("Pre-compaction memory flush turn.", flush.system_prompt)
        self.assertEqual(sorted(t.name for t in flush.tools), ["read", "write"])
        # The private view: the history, not the user message that is waiting.
        self.assertIn("first word", flush.messages[0].content)
        self.assertNotIn("second", " ".join(m.content for m in flush.messages))
        self.assertEqual(after_write.messages[-1].role, "tool")
        self.assertIn("Appended content to", after_write.messages[-1].content)
        self.assertNotIn("Pre-compaction", " ".join(m.content for m in summary.messages))
        self.assertNotIn("Pre-compaction", " ".join(m.content for m in answer.messages))
        self.assertEqual([e for e in self.events if isinstance(e, ToolEvent)], [])
        self.assert_transcript_has_no_flush()
        self.assertEqual([e["type"] for e in self.entries()].count("compaction"), 1)
        session_id = self.row()["sessionId"]
        self.assertEqual(
            self.row()["memoryFlush"],
            {"kind": "succeeded", "sessionId": session_id, "compactionId": None},
        )

    def test_the_flush_request_fits_the_window(self) -> None:
        """A history of large reads that no longer fits: the flush's copy of
        it, and of the flush's own read, is cut to fit the window less the
        reserve, so the flush is not refused as too long."""
        self.workspace.mkdir(parents=True, exist_ok=True)
        (self.workspace / "big.txt").write_text("\n".join("x" * 79 for _ in range(500)))
        reads = [Reply(tool_calls=(call("read", f"c{n}", path="big.txt"),)) for n in range(5)]
        self.provider.add(*reads, "read five times")
        self.turn("read big.txt five times", "r1")
        self.assertEqual(self.flushes(), [])
        flush_read = Reply(tool_calls=(call("read", "f1", path="big.txt"),))
        self.provider.add(flush_read, "NO_REPLY")
        self.turn("hi", "r2")
        first, second = self.provider.calls[6:8]
        self.assertTrue(is_flush(first))
        self.assertEqual(second.messages[-1].role, "tool")
        budget_chars = (WINDOW - 5_000) * 4
        for flush in (first, second):
            sent = sum(len(m.content) for m in flush.messages) + len(flush.system_prompt or "")
            self.assertLess(sent, budget_chars)
        recorded = json.dumps([m for m in self.messages() if m["role"] == "toolResult"])
        self.assertGreater(len(recorded), budget_chars)

    def test_write_appends_and_only_to_the_days_file(self) -> None:
        """The flush's write appends to an existing memory file (a newline in
        between) and refuses any other path, MEMORY.md included."""
        self.provider.add(
            "one",
            Reply(
                tool_calls=(
                    call("write", "f1", path="MEMORY.md", content="overwritten"),
                    call("write", "f2", path=MEMORY, content="- new note\n"),
                )
            ),
            "NO_REPLY",
            "two",
        )
        self.turn("first " + BIG, "r1")
        (self.workspace / "memory").mkdir(parents=True, exist_ok=True)
        (self.workspace / MEMORY).write_text("- earlier note")
        (self.workspace / "MEMORY.md").write_text("curated")
        self.assertEqual(self.turn("hi", "r2"), "two")
        self.assertEqual(self.memory(), "- earlier note\n- new note\n")
        self.assertEqual((self.workspace / "MEMORY.md").read_text(), "curated")
        refused, appended = self.provider.calls[2].messages[-2:]
        self.assertIn("Memory flush writes are restricted to", refused.content)
        self.assertTrue(refused.is_error)
        self.assertFalse(appended.is_error)


class FlushCycleTests(FlushCase):
    def test_soft_threshold_flushes_once_per_compaction_cycle(self) -> None:
        """Within softThresholdTokens of the compaction threshold (no compaction
        due yet) the flush runs once; later turns of the same cycle do not
        flush again, also after a restart (the session entry keeps the cycle);
        after a compaction the next turn near the threshold flushes again."""
        self.provider.add("one", "NO_REPLY", "two", "three", "four")
        self.turn("first " + BIG, "r1")
        self.assertEqual(self.turn("hi", "r2"), "two")
        self.assertEqual(len(self.flushes()), 1)
        self.assertEqual(self.turn("again", "r3"), "three")
        self.make_runtime(self.config())  # a restarted gateway reads sessions.json
        self.assertEqual(self.turn("and again", "r4"), "four")
        self.assertEqual(len(self.flushes()), 1)
        self.assert_transcript_has_no_flush()
        # A compaction starts a new cycle.
        self.provider.add("HAND SUMMARY")
        compacting = self.runtime.compact_session("main", MAIN)
        run_due(self.clock)
        self.assertTrue(self.successResultOf(compacting).compacted)
        (compaction,) = [e for e in self.entries() if e["type"] == "compaction"]
        self.provider.add("NO_REPLY", "five")
        self.turn("five " + BIG, "r5")
        self.assertEqual(len(self.flushes()), 2)
        self.assertEqual(self.row()["memoryFlush"]["compactionId"], compaction["id"])

    def test_transcript_size_forces_a_flush(self) -> None:
        """forceFlushTranscriptBytes: a visible transcript that large flushes
        even far below the token thresholds; 0 turns that off."""
        self.make_runtime(self.config(force_flush_transcript_bytes=1_000))
        self.provider.add("one", "NO_REPLY", "two")
        self.turn("first " + "word " * 300, "r1")
        self.assertEqual(self.turn("hi", "r2"), "two")
        self.assertEqual(len(self.flushes()), 1)
        self.state_dir = self.state_dir.parent / "second"
        self.make_runtime(self.config(force_flush_transcript_bytes=0))
        self.provider.add("one", "two")
        self.turn("first " + "word " * 300, "r1")
        self.turn("hi", "r2")
        self.assertEqual(len(self.flushes()), 1)


class FlushSkippedTests(FlushCase):
    def near_threshold_turns(self) -> None:
        self.provider.add("one", "two")
        self.turn("first " + BIG, "r1")
        self.assertEqual(self.turn("hi", "r2"), "two")
        self.assertEqual(self.flushes(), [])
        self.assertNotIn("memoryFlush", self.row())

    def test_disabled(self) -> None:
        """memoryFlush.enabled false: no flush."""
        self.make_runtime(self.config(enabled=False))
        self.near_threshold_turns()

    def test_compaction_disabled(self) -> None:
        """compaction.enabled false turns optional maintenance off too."""
        config = self.config()
        compaction = evolve(config.agents.defaults.compaction, enabled=False)
        defaults = evolve(config.agents.defaults, compaction=compaction)
        self.make_runtime(evolve(config, agents=evolve(config.agents, defaults=defaults)))
        self.near_threshold_turns()

    def test_no_write_tool(self) -> None:
        """An agent whose tool policy denies write cannot save anything: no flush."""
        config = self.config()
        tools = evolve(config.tools, policy=ToolPolicyConfig(deny=("write",)))
        self.make_runtime(evolve(config, tools=tools))
        self.near_threshold_turns()


class FlushFailureTests(FlushCase):
    def test_a_failed_flush_does_not_fail_the_turn(self) -> None:
        """The flush's model call fails: a warning, the turn answers as usual,
        the transcript is untouched and the failure is counted; the next turn
        tries again, and after MAX_FLUSH_FAILURES failures the cycle is left
        alone."""
        warnings = Collector(levels=(LogLevel.warn,)).attach(self)
        broken = ProviderError(FailureKind.FORMAT, "bad request", status=400)
        self.provider.add("one", Reply.failure(broken), "two")
        self.turn("first " + BIG, "r1")
        self.assertEqual(self.turn("hi", "r2"), "two")
        self.assertEqual(len(warnings.having("memory flush failed (bad request)")), 1)
        self.assertEqual(self.row()["memoryFlush"]["failureCount"], 1)
        self.assert_transcript_has_no_flush()
        for n in range(2, MAX_FLUSH_FAILURES + 1):
            self.provider.add(Reply.failure(broken), f"answer {n}")
            self.assertEqual(self.turn(f"turn {n}", f"r{n + 1}"), f"answer {n}")
        self.provider.add("no flush now")
        self.assertEqual(self.turn("last", "r9"), "no flush now")
        self.assertEqual(len(self.flushes()), MAX_FLUSH_FAILURES)
        self.assertEqual(self.row()["memoryFlush"]["failureCount"], MAX_FLUSH_FAILURES)

    def test_a_stuck_flush_is_given_up(self) -> None:
        """A flush call that never ends is stopped after compaction.timeoutSeconds
        and the turn goes on (not timed out by it)."""
        self.provider.add("one", Reply(hang=True), "two")
        self.turn("first " + BIG, "r1")
        run, _ = self.start("hi", run_id="r2")
        run_due(self.clock)
        self.assertFalse(run.done)
        self.clock.advance(180)
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).text, "two")
        self.assertTrue(self.provider.streams[1].stopped)
        self.assertEqual(self.row()["memoryFlush"]["kind"], "failed")

    def test_abort_during_the_flush(self) -> None:
        """Cancelling the run while the flush runs stops the flush's model call;
        the turn is recorded aborted, nothing of the flush reaches the
        transcript, and the stopped flush counts as one of the cycle's failures
        (so a flush slower than the run's limit cannot repeat on every turn)."""
        self.provider.add("one", Reply(hang=True))
        self.turn("first " + BIG, "r1")
        run, _ = self.start("hi", run_id="r2")
        run_due(self.clock)
        self.assertTrue(is_flush(self.provider.calls[1]))
        run.cancel()
        run_due(self.clock)
        self.failureResultOf(run.result, RunAbortedError)
        self.assertTrue(self.provider.streams[1].stopped)
        self.assertEqual(len(self.provider.calls), 2)
        self.assertEqual(self.messages()[-1]["stopReason"], "aborted")
        self.assert_transcript_has_no_flush()
        self.assertEqual(self.row()["memoryFlush"]["failureCount"], 1)
        self.assertFalse((self.workspace / MEMORY).exists())

    def test_flush_prompt_names_the_silent_token(self) -> None:
        """The directive is OpenClaw's, with the NO_REPLY contract."""
        self.assertIn("NO_REPLY", FLUSH_PROMPT)
        self.assertIn("APPEND new content only", FLUSH_PROMPT)
