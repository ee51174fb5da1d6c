"""``SurrogateMender``: model output under the text rule, as it streams.

The gateway-level behaviour (answers, sessions, transcripts) is in
``tests/test_upstream_surrogates.py``; this is the sink itself, delta by
delta, where a split pair and a held-back surrogate are easy to see.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.providers.mending import SurrogateMender, join_surrogates
from openclaw.agents.types import Usage
from openclaw.testing import RecordingSink


class MenderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.sink = RecordingSink()
        self.mender = SurrogateMender(self.sink)

    def test_text_without_surrogates_is_passed_as_it_is(self) -> None:
        deltas = ["plain", "ü and 😀", "中文"]
        for delta in deltas:
            self.mender.on_text(delta)
        self.mender.flush()
        self.assertEqual(self.sink.deltas, deltas)
        self.assertTrue(all(a is b for a, b in zip(self.sink.deltas, deltas, strict=True)))

    def test_a_pair_split_across_deltas_joins(self) -> None:
        """The high half is held back until the next delta, then sent with it."""
        self.mender.on_text("x\ud83d")
        self.assertEqual(self.sink.deltas, ["x"])
        self.mender.on_text("\ude00y")
        self.assertEqual(self.sink.deltas, ["x", "\U0001f600y"])

    def test_a_delta_that_is_only_a_high_half(self) -> None:
        self.mender.on_text("\ud83d")
        self.assertEqual(self.sink.deltas, [])
        self.mender.on_text("\ude00")
        self.assertEqual(self.sink.deltas, ["\U0001f600"])

    def test_lone_surrogates_become_u_fffd(self) -> None:
        """A low half first, a high half followed by anything but a low half,
        and a high half still held at the end."""
        self.mender.on_text("\udc00a")
        self.mender.on_text("b\ud800")
        self.mender.on_text("c\ud83d")
        self.mender.flush()
        self.assertEqual(self.sink.text, "\ufffdab\ufffdc\ufffd")
        self.mender.flush()
        self.assertEqual(self.sink.text, "\ufffdab\ufffdc\ufffd")

    def test_tool_arguments_are_mended_per_call(self) -> None:
        """Each call holds its own half; ids and names are scrubbed whole;
        the first piece is passed even when its arguments are empty."""
        self.mender.on_tool_call(0, "call\udc00", "get\ud800", "")
        self.mender.on_tool_call(1, "c1", "f", '{"a":"\ud83d')
        self.mender.on_tool_call(0, None, None, '{"b":"\ud83d')
        self.mender.on_tool_call(1, None, None, '\ude00"}')
        self.mender.flush()
        self.assertEqual(
            self.sink.tool_pieces,
            [
                (0, "call\ufffd", "get\ufffd", ""),
                (1, "c1", "f", '{"a":"'),
                (0, None, None, '{"b":"'),
                (1, None, None, '\U0001f600"}'),
                (0, None, None, "\ufffd"),
            ],
        )

    def test_usage_is_passed_on(self) -> None:
        usage = Usage(input=1, output=2, total=3)
        self.mender.on_usage(usage)
        self.assertEqual(self.sink.usages, [usage])


class JoinSurrogatesTests(SynchronousTestCase):
    def test_pairs_join_and_lone_halves_are_replaced(self) -> None:
        self.assertEqual(join_surrogates("a\ud83d\ude00b\udc00\ud800"), "a\U0001f600b\ufffd\ufffd")
        self.assertEqual(join_surrogates("ü 😀"), "ü 😀")
