"""Compaction decisions, plans, the summary call and the transcript entry
(openclaw.agents.compaction)."""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.compaction import (
    SUMMARY_PREFIX,
    CompactionError,
    Compactor,
    HistoryEntry,
    auto_keep_tokens,
    build_summary_call,
    compaction_entry,
    context_window_of,
    effective_reserve,
    estimate_message_tokens,
    estimate_tokens,
    needs_compaction,
    plan_compaction,
    render_transcript,
    stream_to_text,
    summary_chunk_tokens,
    summary_chunks,
    tool_result_cap,
)
from openclaw.agents.providers.base import ModelCall, ModelMessage, StreamOutcome, StreamSink
from openclaw.agents.types import FailureKind, ImageInput, ProviderError, ToolCall, Usage
from openclaw.config.model import CompactionConfig, ModelEntry, ProviderConfig


def msg(role: str, text: str, **kw: object) -> ModelMessage:
    return ModelMessage(role=role, content=text, **kw)  # type: ignore[arg-type]


def history() -> list[HistoryEntry]:
    """Six entries of ~100 tokens each, with a tool call and its result in the middle."""
    big = "x" * 400
    return [
        HistoryEntry("e1", msg("user", big)),
        HistoryEntry("e2", msg("assistant", big)),
        HistoryEntry("e3", msg("user", big)),
        HistoryEntry(
            "e4",
            msg(
                "assistant",
                "",
                tool_calls=(ToolCall(id="c1", name="read", arguments='{"path":"a"}'),),
            ),
        ),
        HistoryEntry("e5", msg("tool", big, tool_call_id="c1")),
        HistoryEntry("e6", msg("assistant", big)),
    ]


class EstimateTests(SynchronousTestCase):
    def test_chars_over_four_plus_overhead(self) -> None:
        """Text counts a token per four characters, plus overhead, calls and images."""
        self.assertEqual(estimate_message_tokens(msg("user", "abcdefgh")), 2 + 4)
        call = ToolCall(id="1", name="read", arguments="{}")  # 6 chars -> 2
        self.assertEqual(estimate_message_tokens(msg("assistant", "", tool_calls=(call,))), 2 + 4)
        image = ImageInput(mime_type="image/png", data="AAAA")
        self.assertEqual(estimate_message_tokens(msg("user", "", images=(image,))), 4 + 1000)
        self.assertEqual(estimate_tokens([msg("user", "abcd"), msg("user", "abcd")]), 10)

    def test_reserve_is_capped_at_a_quarter(self) -> None:
        """The 20,000 reserve holds for big windows, a quarter for small ones."""
        config = CompactionConfig()
        self.assertEqual(effective_reserve(config, 200_000), 20_000)
        self.assertEqual(effective_reserve(config, 32_000), 8_000)

    def test_needs_compaction(self) -> None:
        """Due when history plus fixed parts exceed the window less the reserve."""
        config = CompactionConfig()
        self.assertFalse(
            needs_compaction(
                history_tokens=20_000, fixed_tokens=3_000, context_window=32_000, config=config
            )
        )
        self.assertTrue(
            needs_compaction(
                history_tokens=22_000, fixed_tokens=3_000, context_window=32_000, config=config
            )
        )
        self.assertFalse(
            needs_compaction(
                history_tokens=10**9, fixed_tokens=0, context_window=None, config=config
            )
        )
        off = CompactionConfig(enabled=False)
        self.assertFalse(
            needs_compaction(history_tokens=10**9, fixed_tokens=0, context_window=1000, config=off)
        )

    def test_context_window_lookup(self) -> None:
        """The configured contextWindow of provider/model, else None."""
        providers = {
            "p": ProviderConfig(
                id="p", api="demo", models=(ModelEntry("m", context_window=8192), ModelEntry("n"))
            )
        }
        self.assertEqual(context_window_of(providers, "p", "m"), 8192)
        self.assertIsNone(context_window_of(providers, "p", "n"))
        self.assertIsNone(context_window_of(providers, "p", "x"))
        self.assertIsNone(context_window_of(providers, "q", "m"))

    def test_auto_keep_leaves_room(self) -> None:
        """Automatic compaction keeps at most half of the room left after reserve and fixed."""
        config = CompactionConfig()
        self.assertEqual(auto_keep_tokens(config, 32_000, 4_000), 10_000)
        self.assertEqual(auto_keep_tokens(config, 200_000, 0), 20_000)
        self.assertEqual(auto_keep_tokens(config, 1_000, 5_000), 0)

    def test_tool_result_cap_follows_the_window(self) -> None:
        """OpenClaw's live cap: 30 % of the window (four characters a token), at
        most 16,000 / 32,000 / 64,000 characters by window size; 16,000 unknown."""
        self.assertEqual(tool_result_cap(8_000), 9_600)
        self.assertEqual(tool_result_cap(4_096), 4_912)
        self.assertEqual(tool_result_cap(32_000), 16_000)
        self.assertEqual(tool_result_cap(128_000), 32_000)
        self.assertEqual(tool_result_cap(200_000), 64_000)
        self.assertEqual(tool_result_cap(None), 16_000)

    def test_summary_chunks_fit_the_summarising_window(self) -> None:
        """A chunk is 40 % of the summariser's window over a 1.2 margin; chunks
        never split a tool call from its results; an unknown window is one chunk."""
        self.assertEqual(summary_chunk_tokens(8_000), 2_666)
        self.assertIsNone(summary_chunk_tokens(None))
        messages = [e.message for e in history()]
        self.assertEqual(summary_chunks(messages, None), [tuple(messages)])
        chunks = summary_chunks(messages, 250)
        self.assertEqual(
            [[m.role for m in c] for c in chunks],
            [["user", "assistant"], ["user", "assistant", "tool"], ["assistant"]],
        )
        # A group over the budget is a chunk of its own.
        self.assertEqual(len(summary_chunks(messages, 1)), 5)


class PlanTests(SynchronousTestCase):
    def test_keeps_recent_tail(self) -> None:
        """The newest entries within the budget are kept, the rest summarised."""
        plan = plan_compaction(history(), keep_recent_tokens=220)
        assert plan is not None
        self.assertEqual([e.entry_id for e in plan.kept], ["e4", "e5", "e6"])
        self.assertEqual(plan.first_kept_entry_id, "e4")
        self.assertEqual([e.entry_id for e in plan.summarized], ["e1", "e2", "e3"])
        self.assertEqual(plan.tokens_before, estimate_tokens([e.message for e in history()]))

    def test_never_splits_a_tool_result_from_its_call(self) -> None:
        """A cut landing on a tool result moves back to the assistant that called it."""
        plan = plan_compaction(history(), keep_recent_tokens=210)  # e5+e6 fit; e5 is a tool result
        assert plan is not None
        self.assertEqual(plan.first_kept_entry_id, "e4")

    def test_a_cut_among_tool_results_moves_past_them(self) -> None:
        """A cut falling between two results of one call moves on to the
        message after the results (OpenClaw's findCutPoint): the call and all
        its results are summarised together, less than the budget is kept."""
        big = "x" * 400
        calls = tuple(ToolCall(id=f"c{n}", name="read", arguments="{}") for n in range(3))
        entries = [
            HistoryEntry("u1", msg("user", big)),
            HistoryEntry("a1", msg("assistant", "", tool_calls=calls)),
            *(HistoryEntry(f"t{n}", msg("tool", big, tool_call_id=f"c{n}")) for n in range(3)),
            HistoryEntry("a2", msg("assistant", big)),
        ]
        plan = plan_compaction(entries, keep_recent_tokens=320)  # a2, t2, t1 fit; t0 does not
        assert plan is not None
        self.assertEqual([e.entry_id for e in plan.kept], ["a2"])
        self.assertEqual([e.entry_id for e in plan.summarized], ["u1", "a1", "t0", "t1", "t2"])
        # Results that end the history stay with their call.
        plan = plan_compaction(entries[:-1], keep_recent_tokens=220)
        assert plan is not None
        self.assertEqual(plan.first_kept_entry_id, "a1")

    def test_keeps_at_least_the_newest(self) -> None:
        """Even a zero budget keeps the newest message."""
        plan = plan_compaction(history(), keep_recent_tokens=0)
        assert plan is not None
        self.assertEqual([e.entry_id for e in plan.kept], ["e6"])

    def test_nothing_to_summarise(self) -> None:
        """When all of history fits the budget, or it is tiny, there is no plan."""
        self.assertIsNone(plan_compaction(history(), keep_recent_tokens=10**6))
        self.assertIsNone(plan_compaction(history()[:1], keep_recent_tokens=0))


class SummaryCallTests(SynchronousTestCase):
    def test_call_shape(self) -> None:
        """One user message with the older turns, the previous summary and focus; no tools."""
        plan = plan_compaction(history(), keep_recent_tokens=220)
        assert plan is not None
        call = build_summary_call(
            plan,
            model="llama3",
            config=CompactionConfig(),
            previous_summary="earlier stuff",
            focus="the <API> design",
            max_tokens=500,
        )
        self.assertEqual(call.model, "llama3")
        self.assertEqual(call.tools, ())
        self.assertEqual(len(call.messages), 1)
        body = call.messages[0].content
        self.assertIn("earlier stuff", body)
        self.assertIn("the &lt;API&gt; design", body)
        self.assertIn("User: xxxx", body)
        assert call.system_prompt is not None
        self.assertIn("## Open Items", call.system_prompt)
        self.assertIn("identifiers exactly", call.system_prompt)
        assert call.stream_params is not None
        self.assertEqual(call.stream_params.max_tokens, 500)
        off = build_summary_call(plan, model="m", config=CompactionConfig(identifier_policy="off"))
        assert off.system_prompt is not None
        self.assertNotIn("identifiers exactly", off.system_prompt)

    def test_render_transcript(self) -> None:
        """Tool calls, shortened tool output and omitted images are rendered as text."""
        text = render_transcript(
            [
                msg("user", "hi", images=(ImageInput(mime_type="image/png", data="A"),)),
                msg("assistant", "", tool_calls=(ToolCall(id="c", name="exec", arguments="{}"),)),
                msg("tool", "y" * 5000, tool_call_id="c"),
            ]
        )
        self.assertIn("[1 image(s) omitted from summary input]", text)
        self.assertIn("Assistant called exec({}) [id c]", text)
        self.assertIn("tool output shortened", text)
        self.assertLess(len(text), 3000)


class EntryTests(SynchronousTestCase):
    def test_openclaw_entry_shape(self) -> None:
        """The entry has OpenClaw's compaction fields."""
        entry = compaction_entry(
            entry_id="abcd1234",
            parent_id="p1",
            timestamp_ms=1_767_225_600_123,
            summary="S",
            first_kept_entry_id="e4",
            tokens_before=900,
            tokens_after=300,
            run_id="r1",
        )
        self.assertEqual(
            entry,
            {
                "type": "compaction",
                "id": "abcd1234",
                "parentId": "p1",
                "timestamp": "2026-01-01T00:00:00.123Z",
                "summary": "S",
                "firstKeptEntryId": "e4",
                "tokensBefore": 900,
                "tokensAfter": 300,
                "__openclaw": {"runId": "r1"},
            },
        )
        minimal = compaction_entry(
            entry_id="x", parent_id=None, timestamp_ms=0, summary="S", first_kept_entry_id="e",
            tokens_before=1,
        )  # fmt: skip
        self.assertNotIn("tokensAfter", minimal)
        self.assertNotIn("__openclaw", minimal)


class CompactorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_767_225_600)
        self.calls: list[ModelCall] = []

    def compactor(self, reply: Deferred[str] | str) -> Compactor:
        """A compactor whose summary calls answer ``reply`` (text: every call)."""

        def summarize(call: ModelCall) -> Deferred[str]:
            self.calls.append(call)
            return succeed(reply) if isinstance(reply, str) else reply

        return Compactor(summarize, self.clock, new_id=lambda: "newid")

    def test_compacts(self) -> None:
        """The result has the entry, and the summary message followed by the kept tail."""
        compactor = self.compactor(succeed("  the summary  "))
        result = self.successResultOf(
            compactor.compact(
                history(), model="m", config=CompactionConfig(keep_recent_tokens=220),
                parent_id="e6", run_id="r",
            )
        )  # fmt: skip
        assert result is not None
        self.assertEqual(result.summary, "the summary")
        self.assertEqual(result.entry["firstKeptEntryId"], "e4")
        self.assertEqual(result.entry["id"], "newid")
        self.assertEqual(result.entry["parentId"], "e6")
        self.assertEqual(result.entry["timestamp"], "2026-01-01T00:00:00.000Z")
        self.assertEqual(result.messages[0].content, f"{SUMMARY_PREFIX}\n\nthe summary")
        self.assertEqual(len(result.messages), 4)
        self.assertLess(result.tokens_after, result.tokens_before)
        self.assertEqual(result.entry["tokensAfter"], result.tokens_after)

    def test_keep_override(self) -> None:
        """An explicit keep budget overrides keepRecentTokens."""
        compactor = self.compactor(succeed("s"))
        result = self.successResultOf(
            compactor.compact(
                history(), model="m", config=CompactionConfig(), parent_id=None,
                keep_recent_tokens=0,
            )
        )  # fmt: skip
        assert result is not None
        self.assertEqual(result.entry["firstKeptEntryId"], "e6")

    def test_nothing_to_do(self) -> None:
        """A short history gives None and no model call."""
        compactor = self.compactor(succeed("s"))
        self.assertIsNone(
            self.successResultOf(
                compactor.compact(history(), model="m", config=CompactionConfig(), parent_id=None)
            )
        )
        self.assertEqual(self.calls, [])

    def test_a_summary_that_does_not_shrink_the_history_is_rejected(self) -> None:
        """A summary longer than what it replaces fails with CompactionError
        (OpenClaw rejects unchanged or larger replacements)."""
        compactor = self.compactor("y" * 2_000)
        d = compactor.compact(
            history(), model="m", config=CompactionConfig(keep_recent_tokens=220), parent_id=None
        )
        self.assertIn("would not make the history smaller", str(self.failureResultOf(d).value))
        self.failureResultOf(
            compactor.compact(
                history(), model="m", config=CompactionConfig(keep_recent_tokens=220),
                parent_id=None,
            ),
            CompactionError,
        )  # fmt: skip

    def test_tokens_before_counts_the_previous_summary(self) -> None:
        """Re-compacting replaces the previous summary too: it is counted before."""
        compactor = self.compactor("s")
        config = CompactionConfig(keep_recent_tokens=220)
        plain = self.successResultOf(compactor.compact(history(), model="m", config=config,
                                                       parent_id=None))  # fmt: skip
        again = self.successResultOf(
            compactor.compact(
                history(), model="m", config=config, parent_id=None, previous_summary="p" * 400
            )
        )
        assert plain is not None and again is not None
        self.assertEqual(again.tokens_before - plain.tokens_before, 100 + 4 + 9)

    def test_chunks_carry_the_summary_so_far(self) -> None:
        """With a chunk budget, one call per chunk, in order; each later call
        continues the previous chunk's summary."""
        replies = iter(["S1", "S2", "S3", "S4", "S5"])

        def summarize(call: ModelCall) -> Deferred[str]:
            self.calls.append(call)
            return succeed(next(replies))

        compactor = Compactor(summarize, self.clock, new_id=lambda: "id")
        result = self.successResultOf(
            compactor.compact(
                history(), model="m", config=CompactionConfig(keep_recent_tokens=0),
                parent_id=None, chunk_tokens=150,
            )
        )  # fmt: skip
        assert result is not None
        self.assertGreater(len(self.calls), 1)
        self.assertEqual(result.summary, f"S{len(self.calls)}")
        for previous, call in enumerate(self.calls[1:], start=1):
            self.assertIn(f"<previous-summary>\nS{previous}\n", call.messages[0].content)

    def test_a_refused_summary_request_is_split(self) -> None:
        """The upstream refuses a summary request as too long: the chunk is
        halved and summarised in parts; a single message still refused is left
        out with a note. The result is a summary, not a failure."""
        overflow = ProviderError(FailureKind.CONTEXT_OVERFLOW, "too long", status=400)

        def summarize(call: ModelCall) -> Deferred[str]:
            self.calls.append(call)
            body = call.messages[0].content
            if len(body) > 1_200:
                return fail(overflow)
            return succeed(f"S{len(self.calls)}")

        entries = [
            HistoryEntry("e1", msg("user", "a" * 400)),
            HistoryEntry("e2", msg("assistant", "b" * 400)),
            HistoryEntry("e3", msg("user", "HUGE" * 400)),
            HistoryEntry("e4", msg("assistant", "c" * 400)),
            HistoryEntry("e5", msg("user", "d" * 40)),
            HistoryEntry("e6", msg("assistant", "e" * 40)),
        ]
        compactor = Compactor(summarize, self.clock, new_id=lambda: "id")
        result = self.successResultOf(
            compactor.compact(
                entries, model="m", config=CompactionConfig(keep_recent_tokens=30),
                parent_id=None,
            )
        )  # fmt: skip
        assert result is not None
        self.assertEqual(result.entry["firstKeptEntryId"], "e5")
        self.assertIn("[Large user message (~404 tokens) omitted from summary]", result.summary)
        accepted = [c for c in self.calls if len(c.messages[0].content) <= 1_200]
        self.assertTrue(result.summary.startswith(f"S{len(self.calls)}"))
        rendered = " ".join(c.messages[0].content for c in accepted)
        for text in ("a" * 400, "b" * 400, "c" * 400):
            self.assertIn(text, rendered)
        self.assertNotIn("HUGE", rendered)

    def test_other_failures_of_a_chunk_fail_the_compaction(self) -> None:
        """Only an overflow is split; a rate limit fails the compaction (the
        session compactor then tries its fallback models)."""
        limited = ProviderError(FailureKind.RATE_LIMIT, "slow down", status=429)
        compactor = self.compactor(fail(limited))
        d = compactor.compact(
            history(), model="m", config=CompactionConfig(keep_recent_tokens=0), parent_id=None
        )
        self.assertIs(self.failureResultOf(d, ProviderError).value, limited)

    def test_cancel_cancels_the_current_summary_call(self) -> None:
        """Cancelling a compaction cancels the summary call in flight."""
        cancelled: list[bool] = []
        compactor = self.compactor(Deferred(lambda _d: cancelled.append(True)))
        d = compactor.compact(
            history(), model="m", config=CompactionConfig(keep_recent_tokens=0), parent_id=None
        )
        self.assertNoResult(d)
        d.cancel()
        self.assertEqual(cancelled, [True])
        self.failureResultOf(d, CancelledError)

    def test_empty_summary_fails(self) -> None:
        """An empty summary is an error, not a compaction."""
        compactor = self.compactor(succeed("   "))
        d = compactor.compact(
            history(), model="m", config=CompactionConfig(keep_recent_tokens=0), parent_id=None
        )
        self.failureResultOf(d, CompactionError)


class _Stream:
    def __init__(self) -> None:
        self.done: Deferred[StreamOutcome] = Deferred()
        self.stopped = False

    def pauseProducing(self) -> None:
        """Not used."""

    def resumeProducing(self) -> None:
        """Not used."""

    def stopProducing(self) -> None:
        self.stopped = True


class _Provider:
    provider_id = "fake"

    def __init__(self) -> None:
        self.stream_obj = _Stream()
        self.sink: StreamSink | None = None

    def stream(self, call: ModelCall, sink: StreamSink) -> _Stream:
        self.sink = sink
        return self.stream_obj


class StreamToTextTests(SynchronousTestCase):
    def test_collects_text(self) -> None:
        """Text deltas are joined when the stream ends."""
        provider = _Provider()
        d = stream_to_text(provider, ModelCall(model="m", messages=()))
        assert provider.sink is not None
        provider.sink.on_text("a")
        provider.sink.on_tool_call(0, "x", "y", "{}")
        provider.sink.on_usage(Usage())
        provider.sink.on_text("b")
        self.assertNoResult(d)
        provider.stream_obj.done.callback(StreamOutcome(stop_reason="stop", usage=Usage()))
        self.assertEqual(self.successResultOf(d), "ab")

    def test_failure_passes_through(self) -> None:
        """A provider failure fails the result."""
        provider = _Provider()
        d = stream_to_text(provider, ModelCall(model="m", messages=()))
        provider.stream_obj.done.errback(ProviderError(FailureKind.TIMEOUT, "slow"))
        self.failureResultOf(d, ProviderError)

    def test_cancel_stops_the_stream(self) -> None:
        """Cancelling the result stops the upstream stream."""
        provider = _Provider()
        d = stream_to_text(provider, ModelCall(model="m", messages=()))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(provider.stream_obj.stopped)
        provider.stream_obj.done.errback(CancelledError())
