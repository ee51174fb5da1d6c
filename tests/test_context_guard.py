"""The tool-result context guard and trimming a turn to fit
(openclaw.agents.context_guard)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.context_guard import (
    guard_tool_results,
    observed_overflow_tokens,
    reducible_chars,
    tool_result_context_chars,
    trim_tool_results,
    trimming_suffices,
)
from openclaw.agents.providers.base import ModelMessage
from openclaw.agents.text_weight import weighted_chars
from openclaw.agents.tool_output import cap_counted
from openclaw.agents.types import ToolCall


def tool(text: str, call_id: str) -> ModelMessage:
    return ModelMessage(role="tool", content=text, tool_call_id=call_id)


def turn(*sizes: int) -> list[ModelMessage]:
    """A user message, then one call and result per size (result ``n`` is
    ``str(n)`` repeated)."""
    out = [ModelMessage(role="user", content="u" * 5_000)]
    for n, size in enumerate(sizes):
        call = ToolCall(id=f"c{n}", name="read", arguments="{}")
        out.append(ModelMessage(role="assistant", content="", tool_calls=(call,)))
        out.append(tool(str(n) * size, f"c{n}"))
    return out


class GuardTests(SynchronousTestCase):
    def test_limit_is_the_window_in_counted_characters(self) -> None:
        """OpenClaw's max(1024, window) counted characters, plain text counted
        twice: half the window in ASCII, a quarter in common CJK."""
        self.assertEqual(tool_result_context_chars(8_000), 8_000)
        self.assertEqual(tool_result_context_chars(1_000), 1_024)
        self.assertIsNone(tool_result_context_chars(None))
        ascii_result = guard_tool_results([tool("a" * 9_000, "a")], 8_000)[0].content
        self.assertLessEqual(len(ascii_result), 4_000)
        self.assertGreater(len(ascii_result), 3_900)
        cjk_result = guard_tool_results([tool("中" * 9_000, "c")], 8_000)[0].content
        self.assertLessEqual(weighted_chars(cjk_result, 2), 8_000)
        self.assertGreater(cjk_result.count("中"), 1_900)
        self.assertLessEqual(cjk_result.count("中"), 2_000)

    def test_cuts_only_tool_results_over_the_limit(self) -> None:
        """Longer tool results keep head and tail with a note; other messages
        and short results are the same objects."""
        messages = turn(100, 10_000)
        guarded = guard_tool_results(messages, 8_000)
        self.assertIs(guarded[0], messages[0])
        self.assertIs(guarded[2], messages[2])
        self.assertLessEqual(len(guarded[4].content), 4_000)
        self.assertIn("characters of tool output omitted", guarded[4].content)
        self.assertEqual(guarded[4].tool_call_id, "c1")
        self.assertEqual(guard_tool_results(messages, None), messages)


class CapCountedTests(SynchronousTestCase):
    def test_cut_to_the_budget_in_counted_characters(self) -> None:
        """Mixed text is cut until its counted size fits; a text that fits
        is returned as it is; ASCII is cut by length."""
        text = ("中文" * 50 + "ascii text " * 20) * 40
        for budget in (1_000, 5_000):
            cut = cap_counted(text, budget)
            self.assertLessEqual(weighted_chars(cut), budget)
            self.assertGreater(weighted_chars(cut), budget * 3 // 4)
            self.assertIn("characters of tool output omitted", cut)
        self.assertIs(cap_counted(text, weighted_chars(text)), text)
        self.assertIn(len(cap_counted("x" * 10_000, 1_000, 2)), range(490, 501))

    def test_a_budget_below_the_note_leaves_the_note(self) -> None:
        """The note alone is the shortest a cut gets."""
        cut = cap_counted("中" * 1_000, 1)
        self.assertTrue(cut.strip().startswith("[..."))
        self.assertNotIn("中", cut)


class ObservedTokensTests(SynchronousTestCase):
    def test_sizes_upstreams_report(self) -> None:
        """OpenAI's, Anthropic's and vLLM's wordings; none when not said."""
        self.assertEqual(
            observed_overflow_tokens(
                "This model's maximum context length is 8000 tokens. However, your "
                "messages resulted in 10,161 tokens."
            ),
            10_161,
        )
        self.assertEqual(
            observed_overflow_tokens("prompt is too long: 201234 tokens > 200000 maximum"),
            201_234,
        )
        self.assertEqual(
            observed_overflow_tokens(
                "input length and max_tokens exceed context limit (i.e 7000 + 2000 > 8192)"
            ),
            9_000,
        )
        self.assertIsNone(observed_overflow_tokens("context_length_exceeded"))


class TrimTests(SynchronousTestCase):
    def test_oldest_first_and_only_as_much_as_needed(self) -> None:
        """The oldest result gives first; the newest is untouched when the
        older ones free enough; user text is never cut."""
        messages = turn(3_000, 3_000, 3_000)
        trimmed = trim_tool_results(messages, 4_000)
        out = trimmed.messages
        self.assertEqual(trimmed.count, 2)
        self.assertGreaterEqual(trimmed.freed, 4_000)
        self.assertLess(len(out[2].content), 100)
        self.assertLess(len(out[4].content), 3_000)
        self.assertIs(out[6], messages[6])
        self.assertIs(out[0], messages[0])

    def test_cjk_results_count_what_they_cost(self) -> None:
        """A CJK result counts four characters per hanzi: freeing 4,000 takes
        about 1,000 hanzi out of it."""
        messages = [tool("中" * 3_000, "c")]
        self.assertGreater(reducible_chars(messages), 11_900)
        trimmed = trim_tool_results(messages, 4_000)
        self.assertGreaterEqual(trimmed.freed, 4_000)
        left = trimmed.messages[0].content.count("中")
        self.assertGreater(left, 1_900)
        self.assertLess(left, 2_000)

    def test_nothing_to_cut(self) -> None:
        """Without tool results nothing changes."""
        trimmed = trim_tool_results(turn(), 1_000)
        self.assertEqual((trimmed.count, trimmed.freed), (0, 0))

    def test_trimming_suffices_needs_room_to_spare(self) -> None:
        """Trimming alone is trusted when it frees the overflow plus 512 tokens
        (or half as much again)."""
        messages = turn(10_000)
        self.assertGreater(reducible_chars(messages), 9_900)
        self.assertTrue(trimming_suffices(messages, 1_000))  # 4,000 characters, 6,000 with room
        self.assertFalse(trimming_suffices(messages, 2_000))  # 8,000, 12,000 with room
        small = turn(2_100)  # about 2,045 reducible: less than the 512-token buffer
        self.assertFalse(trimming_suffices(small, 1))
        self.assertFalse(trimming_suffices(turn(), 1))
