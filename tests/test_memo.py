"""The hot paths' memos (openclaw.core.memo)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from openclaw.core.memo import IdentityMemo, cache_short_text


class IdentityMemoTests(SynchronousTestCase):
    def test_computed_once_per_object(self) -> None:
        """The same object gets the value made the first time; an equal but
        distinct object gets its own."""
        calls: list[object] = []
        memo: IdentityMemo[list[int], int] = IdentityMemo(8)

        def make(source: list[int]) -> int:
            calls.append(source)
            return sum(source)

        one = [1, 2]
        self.assertEqual(memo.get(one, make), 3)
        self.assertEqual(memo.get(one, make), 3)
        self.assertEqual(memo.get([1, 2], make), 3)
        self.assertEqual(len(calls), 2)

    def test_bounded(self) -> None:
        """New objects beyond the bound clear the memo instead of growing it."""
        memo: IdentityMemo[object, int] = IdentityMemo(4)
        sources = [object() for _ in range(10)]
        for source in sources:
            self.assertEqual(memo.get(source, id), id(source))
            self.assertLessEqual(len(memo), 4)


class CacheShortTextTests(SynchronousTestCase):
    def test_short_values_are_remembered_long_ones_are_not(self) -> None:
        """A short value is computed once; a value over the limit every time,
        with the same result as the function itself."""
        calls: list[str] = []

        @cache_short_text(5, maxsize=16)
        def upper(value: str) -> str:
            calls.append(value)
            return value.upper()

        self.assertEqual([upper("abc"), upper("abc")], ["ABC", "ABC"])
        self.assertEqual([upper("abcdefgh"), upper("abcdefgh")], ["ABCDEFGH", "ABCDEFGH"])
        self.assertEqual(calls, ["abc", "abcdefgh", "abcdefgh"])

    def test_none_is_passed_through(self) -> None:
        """A function of an optional text still gets None (not cached)."""

        @cache_short_text(5, maxsize=16)
        def name(value: str | None) -> str:
            return value or "main"

        self.assertEqual(name(None), "main")
        self.assertEqual(name("x"), "x")
