"""Counted characters for token estimates (openclaw.agents.text_weight):
OpenClaw's CJK weighting."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.compaction import estimate_message_tokens, estimate_text_tokens
from openclaw.agents.providers.base import ModelMessage
from openclaw.agents.text_weight import raw_chars_within, weighted_chars
from openclaw.agents.types import ToolCall


class WeightedCharsTests(SynchronousTestCase):
    def test_ascii_counts_its_length_times_the_weight(self) -> None:
        """Plain text: one per character, two at the guard's weight."""
        self.assertEqual(weighted_chars("hello world"), 11)
        self.assertEqual(weighted_chars("hello world", 2), 22)
        self.assertEqual(weighted_chars(""), 0)

    def test_buckets(self) -> None:
        """The values OpenClaw's estimateStringCharsWithMinimumRawWeight gives
        (checked against it): common CJK 4, rare BMP ideographs and jamo 12,
        half-width and modifier forms 8, supplementary ideographs 16, a few
        supplementary symbols 12, whatever the raw weight."""
        cases = {
            "中": 4,  # U+4E2D, unified ideograph
            "あ": 4,  # hiragana
            "한": 4,  # Hangul syllable
            "\uff0c": 4,  # full-width comma
            "·": 4,  # U+00B7
            "㐀": 12,  # U+3400, extension A
            "ᄀ": 12,  # U+1100, Hangul jamo
            "ｱ": 8,  # U+FF71, half-width katakana
            "ˇ": 8,  # U+02C7
            "𝍠": 12,  # U+1D360, counting rod
            "𠀀": 16,  # U+20000, extension B
        }
        for text, weight in cases.items():
            with self.subTest(text=text):
                self.assertEqual(weighted_chars(text), weight)
                self.assertEqual(weighted_chars(text, 2), weight)

    def test_other_characters_count_their_utf16_length(self) -> None:
        """Accented Latin and Cyrillic count one each (two at weight 2); an
        emoji two (a JavaScript string's length), four at weight 2."""
        self.assertEqual(weighted_chars("é"), 1)
        self.assertEqual(weighted_chars("Жж", 2), 4)
        self.assertEqual(weighted_chars("😀"), 2)
        self.assertEqual(weighted_chars("😀", 2), 4)
        self.assertEqual(weighted_chars("a中😀𠀀"), 1 + 4 + 2 + 16)

    def test_raw_chars_within_a_budget(self) -> None:
        """How many characters fit a budget at the text's average weight."""
        self.assertEqual(raw_chars_within("中" * 100, 40), 10)
        self.assertEqual(raw_chars_within("abc", 40), 3)
        self.assertEqual(raw_chars_within("ab" * 50, 40, 2), 20)


class EstimateTests(SynchronousTestCase):
    def test_cjk_text_costs_about_a_token_per_character(self) -> None:
        """The estimate a compaction or overflow decision uses: 1,000 hanzi
        are about 1,000 tokens, 1,000 ASCII characters 250."""
        self.assertEqual(estimate_text_tokens("中" * 1_000), 1_000)
        self.assertEqual(estimate_text_tokens("a" * 1_000), 250)
        call = ToolCall(id="c", name="read", arguments='{"path": "文件.txt"}')
        message = ModelMessage(role="assistant", content="读", tool_calls=(call,))
        # 4 (读) + 4 (read) + 16 ASCII + 8 (文件) = 32 counted: 8 tokens, plus 4 overhead.
        self.assertEqual(estimate_message_tokens(message), 12)
