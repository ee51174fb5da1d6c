"""The text-level ingress scan of ``openclaw.core.textguard.loads``: surrogate
escapes and depth are judged on the JSON text, and agree with a walk of the
parsed value (which the scan replaced, because a walk costs a Python step per
container: millions of ``{}`` in one body held the event loop for seconds)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from openclaw.core import textguard
from openclaw.core.textguard import REPLACEMENT, JsonDepthError, deeper_than, guard_value, loads

R = REPLACEMENT


def _walked(text: str, max_depth: int) -> Any:
    """What the walk of the parsed value gives (the reference)."""
    return guard_value(json.loads(text), max_depth=max_depth)


#: JSON values whose strings hold brackets, quotes, backslashes and surrogates.
_leaves = st.one_of(
    st.none(),
    st.integers(-5, 5),
    st.text(alphabet=st.sampled_from('ab[]{}"\\\ud800\udc00\U0001f600é'), max_size=8),
)
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(alphabet="ab[{\\", max_size=3), inner, max_size=3),
    ),
    max_leaves=40,
)


class ScanTests(SynchronousTestCase):
    def test_surrogate_escapes(self) -> None:
        """Lone escapes become U+FFFD, pairs stay, escaped backslashes are text."""
        for text, expected in (
            (r'"\ud800"', R),
            (r'"\\ud800"', "\\ud800"),
            (r'"\\\ud800"', "\\" + R),
            (r'"\ud83d\ude00"', "\U0001f600"),
            (r'"\\ud83d\ude00"', "\\ud83d" + R),
            (r'"\ud83d\\ude00"', R + "\\ude00"),
            (r'"\ude00\ud83d"', R + R),
            (r'{"\udc00k": "x\\\\\ud800y"}', {R + "k": "x\\\\" + R + "y"}),
        ):
            self.assertEqual(loads(text), expected, text)

    @settings(max_examples=300, deadline=None)
    @given(_values, st.integers(1, 6))
    def test_scan_agrees_with_the_walk(self, value: Any, max_depth: int) -> None:
        """For any JSON text, loads and the walk give the same value or both refuse."""
        for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
            try:
                expected = _walked(text, max_depth)
            except JsonDepthError:
                self.assertRaises(JsonDepthError, loads, text, max_depth=max_depth)
                continue
            self.assertEqual(loads(text, max_depth=max_depth), expected)

    def test_brackets_in_strings_are_not_structure(self) -> None:
        self.assertFalse(deeper_than('["[[[[[[", {"{{{{": "]]]]"}]', 2))
        self.assertTrue(deeper_than('[[["]]]"]]]', 2))

    def test_many_containers_are_not_walked(self) -> None:
        """A body of 200,000 empty objects and a surrogate is scanned, never
        walked, and a too-deep one this large is refused without its path."""
        walked: list[int] = []

        def walk(*args: Any, **kwargs: Any) -> Any:
            walked.append(1)
            return guard_value(*args, **kwargs)

        self.patch(textguard, "guard_value", walk)
        text = '{"a":[' + ",".join(["{}"] * 200_000) + ',"\\ud800"]}'
        value = loads(text)
        self.assertEqual((len(value["a"]), value["a"][-1]), (200_001, R))
        deep = '{"a":[' + ",".join(["{}"] * 600_000) + "," + "[" * 70 + "]" * 70 + "]}"
        with self.assertRaises(JsonDepthError) as caught:
            loads(deep)
        self.assertEqual(caught.exception.path, "")
        self.assertEqual(walked, [])

    def test_text_that_does_not_parse_is_not_scanned(self) -> None:
        """The string scan runs on parsed text only: an unterminated string full
        of escaped quotes would make it retry from every quote (quadratic)."""

        def scan(*args: Any) -> bool:
            raise AssertionError("scanned text that does not parse")

        self.patch(textguard, "deeper_than", scan)
        with self.assertRaises(ValueError):
            loads('{"a":"x' + '\\"' * 10_000)
