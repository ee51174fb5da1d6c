"""The tool-result context guard and trimming a turn to fit
(openclaw.agents.context_guard)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.context_guard import (
    guard_tool_results,
    reducible_chars,
    tool_result_context_chars,
    trim_tool_results,
    trimming_suffices,
)
from openclaw.agents.providers.base import ModelMessage
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
    def test_limit_is_half_the_window_in_plain_characters(self) -> None:
        """OpenClaw's max(1024, window) counted characters, each counted twice."""
        self.assertEqual(tool_result_context_chars(8_000), 4_000)
        self.assertEqual(tool_result_context_chars(1_000), 512)
        self.assertIsNone(tool_result_context_chars(None))

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
