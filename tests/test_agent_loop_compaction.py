"""Compaction in the agent loop: before a call that would not fit, after an
upstream context overflow, and by hand (sessions.compact)."""

from __future__ import annotations

from typing import Any

from attrs import evolve

from openclaw.agents.compaction import SUMMARY_PREFIX
from openclaw.agents.types import FailureKind, ProviderError
from openclaw.config.model import ModelEntry, ModelsConfig, ProviderConfig
from openclaw.testing import Reply, ScriptedProvider, ScriptedToolCall, run_due, scripted_config
from tests.agent_loop_support import MAIN, LoopCase, without_memory_flush

#: Tokens the scripted model's window holds (about four characters each).
WINDOW = 20_000
BIG = "word " * 6_000  # ~7,500 tokens


class CompactionCase(LoopCase):
    """A model with a 20K window; the memory flush (tests/test_memory_flush.py)
    is off, so the scripted replies are the turns' and the summaries'."""

    def setUp(self) -> None:
        super().setUp()
        provider = ProviderConfig(
            id="scripted",
            api="openai-completions",
            models=(ModelEntry(id="test-model", context_window=WINDOW),),
        )
        config = evolve(
            scripted_config(self.state_dir),
            models=ModelsConfig(providers={"scripted": provider}),
        )
        self.make_runtime(without_memory_flush(config))

    def turn(self, message: str, run_id: str) -> str:
        run, _ = self.start(message, run_id=run_id)
        run_due(self.clock)
        text: str = self.successResultOf(run.result).text
        return text

    def compactions(self) -> list[dict[str, Any]]:
        return [e for e in self.entries() if e["type"] == "compaction"]


class AutomaticCompactionTests(CompactionCase):
    def test_history_that_would_not_fit_is_summarised_first(self) -> None:
        """Before a call whose history exceeds the window less the reserve, the older
        turns are summarised by the model, the transcript gets a compaction entry,
        and this call and later ones see the summary instead of those turns."""
        self.provider.add("one", "SUMMARY OF OLD TURNS", "two", "three")
        self.turn("first " + BIG, "r1")
        self.assertEqual(self.compactions(), [])
        self.assertEqual(self.turn("second " + BIG, "r2"), "two")
        (entry,) = self.compactions()
        self.assertEqual(entry["summary"], "SUMMARY OF OLD TURNS")
        self.assertIsInstance(entry["firstKeptEntryId"], str)
        before, after = entry["tokensBefore"], entry["tokensAfter"]
        assert isinstance(before, int) and isinstance(after, int)
        self.assertGreater(before, after)
        summary_call = self.provider.calls[1]
        self.assertEqual(summary_call.tools, ())
        self.assertIn("first word", summary_call.messages[0].content)
        second = self.provider.calls[2]
        self.assertTrue(second.messages[0].content.startswith(SUMMARY_PREFIX))
        self.assertNotIn("first word", " ".join(m.content for m in second.messages))
        # The next turn replays the compacted view from the transcript.
        self.assertEqual(self.turn("third", "r3"), "three")
        third = self.provider.calls[3]
        self.assertTrue(third.messages[0].content.startswith(SUMMARY_PREFIX))
        self.assertNotIn("first word", " ".join(m.content for m in third.messages))
        self.assertEqual(third.messages[-1].content, "third")

    def test_older_turns_with_tool_output_are_summarised_not_cut(self) -> None:
        """Older turns that read files would not fit: cutting their tool
        results could free enough, but a summary can too, so it is made (a
        stable history, not results cut anew on every turn)."""
        self.workspace.mkdir(parents=True, exist_ok=True)
        (self.workspace / "big.txt").write_text("\n".join("x" * 79 for _ in range(500)))
        for n in range(3):
            read = ScriptedToolCall(name="read", arguments='{"path": "big.txt"}', id=f"c{n}")
            self.provider.add(Reply(tool_calls=(read,)), f"read {n}")
            self.turn(f"turn{n} " + "word " * 2_000, f"r{n}")
        self.assertEqual(self.compactions(), [])
        self.provider.add("SUMMARY OF READS", "four")
        self.assertEqual(self.turn("turn3 " + "word " * 2_000, "r3"), "four")
        (entry,) = self.compactions()
        self.assertEqual(entry["summary"], "SUMMARY OF READS")
        last = self.provider.calls[-1]
        self.assertTrue(last.messages[0].content.startswith(SUMMARY_PREFIX))

    def test_context_overflow_compacts_and_retries_once(self) -> None:
        """An upstream context overflow: compact, then retry the call once."""
        overflow = ProviderError(FailureKind.CONTEXT_OVERFLOW, "prompt is too long", status=400)
        self.provider.add("one", Reply.failure(overflow), "SUMMARY", "after retry")
        self.turn("first " + BIG, "r1")
        self.assertEqual(self.turn("second", "r2"), "after retry")
        self.assertEqual(len(self.compactions()), 1)
        retried = self.provider.calls[3]
        self.assertTrue(retried.messages[0].content.startswith(SUMMARY_PREFIX))

    def test_second_overflow_is_reported(self) -> None:
        """If the retried call overflows again, the run fails with that error."""
        overflow = ProviderError(FailureKind.CONTEXT_OVERFLOW, "prompt is too long", status=400)
        self.provider.add("one", Reply.failure(overflow), "SUMMARY", Reply.failure(overflow))
        self.turn("first " + BIG, "r1")
        run, _ = self.start("second", run_id="r2")
        run_due(self.clock)
        error = self.failureResultOf(run.result, ProviderError).value
        self.assertIs(error.kind, FailureKind.CONTEXT_OVERFLOW)

    def test_a_stuck_summary_times_out_and_the_turn_goes_on(self) -> None:
        """A summary call that never ends is given up after compaction.timeoutSeconds
        (180 s): nothing is recorded and the turn's model call goes ahead."""
        self.provider.add("one", Reply(hang=True), "two")
        self.turn("first " + BIG, "r1")
        run, _ = self.start("second " + BIG, run_id="r2")
        run_due(self.clock)
        self.assertEqual(len(self.provider.calls), 2)
        self.clock.advance(180)
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).text, "two")
        self.assertEqual(self.compactions(), [])
        self.assertTrue(self.provider.streams[1].stopped)


class CompactionFallbackTests(CompactionCase):
    """The summary call falls back like the turn's own calls (OpenClaw's
    compaction.md: "retries that compaction attempt through the session's
    existing model fallback chain")."""

    def setUp(self) -> None:
        super().setUp()
        self.backup = ScriptedProvider(clock=self.clock, provider_id="backup")
        config = self.runtime.config
        defaults = evolve(
            config.agents.defaults,
            model_primary="scripted/test-model",
            model_fallbacks=("backup/b1",),
        )
        config = evolve(config, agents=evolve(config.agents, defaults=defaults))
        self.make_runtime(config, providers={"backup": self.backup})

    def test_a_failed_summary_is_written_by_the_fallback(self) -> None:
        """The summary falls back; the primary's 429 cools it down, so the turn's
        own call goes to the fallback too instead of asking it again."""
        limited = ProviderError(FailureKind.RATE_LIMIT, "slow down", status=429)
        self.provider.add("one", Reply.failure(limited))
        self.backup.add("SUMMARY BY BACKUP", "two")
        self.turn("first " + BIG, "r1")
        self.assertEqual(self.turn("second " + BIG, "r2"), "two")
        (entry,) = self.compactions()
        self.assertEqual(entry["summary"], "SUMMARY BY BACKUP")
        self.assertIn("first word", self.backup.calls[0].messages[0].content)
        self.assertEqual(len(self.provider.calls), 2)

    def test_an_explicit_compaction_model_is_exact(self) -> None:
        """agents.defaults.compaction.model does not inherit the fallbacks: its
        failure leaves the turn uncompacted."""
        config = self.runtime.config
        compaction = evolve(config.agents.defaults.compaction, model="scripted/test-model")
        defaults = evolve(config.agents.defaults, compaction=compaction)
        self.make_runtime(
            evolve(config, agents=evolve(config.agents, defaults=defaults)),
            providers={"backup": self.backup},
        )
        limited = ProviderError(FailureKind.RATE_LIMIT, "slow down", status=429)
        self.provider.add("one", Reply.failure(limited))
        self.backup.add("two")
        self.turn("first " + BIG, "r1")
        # Uncompacted; the turn's call goes around the model now cooling down.
        self.assertEqual(self.turn("second " + BIG, "r2"), "two")
        self.assertEqual(self.compactions(), [])
        self.assertEqual(len(self.backup.calls), 1)


class SmallCompactionModelTests(CompactionCase):
    """A compaction.model whose window is smaller than the agent model's."""

    def test_summary_is_made_in_chunks_that_fit_its_window(self) -> None:
        """The summary is written in calls of at most 40 % of the summarising
        model's window (over a 1.2 margin), each carrying the summary so far."""
        provider = ProviderConfig(
            id="scripted",
            api="openai-completions",
            models=(
                ModelEntry(id="test-model", context_window=WINDOW),
                ModelEntry(id="tiny", context_window=1_000),
            ),
        )
        config = self.runtime.config
        compaction = evolve(
            config.agents.defaults.compaction, model="scripted/tiny", keep_recent_tokens=100
        )
        defaults = evolve(config.agents.defaults, compaction=compaction)
        self.make_runtime(
            evolve(
                config,
                models=ModelsConfig(providers={"scripted": provider}),
                agents=evolve(config.agents, defaults=defaults),
            )
        )
        self.provider.add("one", "two", "three", "S1", "S2", "S3")
        for n in range(3):
            self.turn(f"turn{n} " + "word " * 200, f"r{n}")
        compacting = self.runtime.compact_session("main", MAIN)
        run_due(self.clock)
        self.assertTrue(self.successResultOf(compacting).compacted)
        summaries = self.provider.calls[3:]
        self.assertEqual([c.model for c in summaries], ["tiny"] * 3)
        for call in summaries:
            self.assertLess(len(call.messages[0].content), 333 * 4)
        self.assertIn("<previous-summary>\nS1\n", summaries[1].messages[0].content)
        self.assertIn("<previous-summary>\nS2\n", summaries[2].messages[0].content)
        (entry,) = self.compactions()
        self.assertEqual(entry["summary"], "S3")


class UnknownWindowOverflowTests(LoopCase):
    """A model with no contextWindow configured (the usual case) that refuses
    the context."""

    def turn(self, message: str, run_id: str) -> str:
        run, _ = self.start(message, run_id=run_id)
        run_due(self.clock)
        text: str = self.successResultOf(run.result).text
        return text

    def test_overflow_compacts_part_of_a_small_history(self) -> None:
        """The history is under keepRecentTokens, yet the upstream refused it:
        the retry keeps only part of it verbatim (a summary for the rest),
        so the second request is smaller than the refused one."""
        overflow = ProviderError(FailureKind.CONTEXT_OVERFLOW, "too long", status=400)
        self.provider.add("one", "two", Reply.failure(overflow), "SUMMARY", "after retry")
        self.turn("first " + "word " * 800, "r1")
        self.turn("second " + "word " * 800, "r2")
        self.assertEqual(self.turn("third", "r3"), "after retry")
        refused, summary, retried = self.provider.calls[2:5]
        self.assertIn("first", summary.messages[-1].content)
        self.assertTrue(retried.messages[0].content.startswith(SUMMARY_PREFIX))
        self.assertLess(len(retried.messages), len(refused.messages))

    def test_overflow_with_no_history_is_reported_at_once(self) -> None:
        """Nothing to summarise: the overflow is the answer, not a second
        identical request."""
        overflow = ProviderError(FailureKind.CONTEXT_OVERFLOW, "too long", status=400)
        self.provider.add(Reply.failure(overflow))
        run, _ = self.start("huge first message", run_id="r1")
        run_due(self.clock)
        error = self.failureResultOf(run.result, ProviderError).value
        self.assertIs(error.kind, FailureKind.CONTEXT_OVERFLOW)
        self.assertEqual(len(self.provider.calls), 1)

    def test_overflow_after_streamed_steps_is_retried_with_tool_output_cut(self) -> None:
        """A first turn whose second call overflows after the first streamed
        text and read a large file: that step is retried once with the read's
        output cut (the client's text goes on; nothing is repeated)."""
        (self.workspace / "big.txt").parent.mkdir(parents=True, exist_ok=True)
        (self.workspace / "big.txt").write_text("\n".join("x" * 79 for _ in range(250)))
        overflow = ProviderError(FailureKind.CONTEXT_OVERFLOW, "too long", status=400)
        read = ScriptedToolCall(name="read", arguments='{"path": "big.txt"}', id="c1")
        self.provider.add(
            Reply(chunks=("Reading.",), tool_calls=(read,)), Reply.failure(overflow), "Done."
        )
        self.assertEqual(self.turn("read big.txt", "r1"), "Reading.\n\nDone.")
        refused, retried = self.provider.calls[1:3]
        self.assertGreater(len(refused.messages[-1].content), 15_000)  # the 16,000 cap
        self.assertLess(len(retried.messages[-1].content), 8_000)
        self.assertIn("characters of tool output omitted", retried.messages[-1].content)

    def test_a_summary_that_would_not_shrink_the_history_is_not_recorded(self) -> None:
        """The overflow's compaction summarises a short history into something
        longer: it is rejected (nothing recorded, the history stays verbatim)
        and, with nothing else to cut, the overflow is reported."""
        overflow = ProviderError(FailureKind.CONTEXT_OVERFLOW, "too long", status=400)
        self.provider.add("hello", Reply.failure(overflow), "S" * 5_000)
        self.turn("hi there", "r1")
        run, _ = self.start("second", run_id="r2")
        run_due(self.clock)
        error = self.failureResultOf(run.result, ProviderError).value
        self.assertIs(error.kind, FailureKind.CONTEXT_OVERFLOW)
        self.assertEqual([e for e in self.entries() if e["type"] == "compaction"], [])
        self.assertEqual(len(self.provider.calls), 3)


class ManualCompactionTests(LoopCase):
    def turn(self, message: str, run_id: str) -> str:
        run, _ = self.start(message, run_id=run_id)
        run_due(self.clock)
        text: str = self.successResultOf(run.result).text
        return text

    def test_compact_session_by_hand(self) -> None:
        """compact_session summarises the older history now (keeping the newest
        keepRecentTokens verbatim) and reports the tokens."""
        self.provider.add("one", "two", "three", "HAND SUMMARY")
        for n in range(3):
            self.turn(f"turn{n} " + BIG, f"r{n}")
        compacting = self.runtime.compact_session("main", MAIN)
        run_due(self.clock)
        report = self.successResultOf(compacting)
        self.assertTrue(report.compacted)
        self.assertGreater(report.tokens_before or 0, report.tokens_after or 0)
        (entry,) = [e for e in self.entries() if e["type"] == "compaction"]
        self.assertEqual(entry["summary"], "HAND SUMMARY")
        self.assertIn("turn0 word", self.provider.calls[-1].messages[0].content)

    def test_nothing_to_compact(self) -> None:
        """A session without older history, or no session at all, is not compacted."""
        report = self.successResultOf(self.runtime.compact_session("main", "agent:main:none"))
        self.assertEqual((report.compacted, report.reason), (False, "no such session"))
        self.turn("hi", "r1")
        compacting = self.runtime.compact_session("main", MAIN)
        run_due(self.clock)
        report = self.successResultOf(compacting)
        self.assertFalse(report.compacted)
