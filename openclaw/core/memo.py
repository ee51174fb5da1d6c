# -*- test-case-name: tests.test_memo -*-
"""Small memos for the hot paths: a value derived once per source object, or
once per short text.

Both are bounded, so neither a client sending new values nor a reload making
new objects can grow them without end.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Generic, TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")
_A = TypeVar("_A", str, "str | None")


class IdentityMemo(Generic[_K, _V]):
    """Values derived from objects that are used again as they are (a tool
    set, a tool's schema), kept per object identity.

    An entry keeps its source alive, so an id is never reused while it is
    kept. Such sources are few; when ``max_entries`` is reached (new objects
    from reloads or clients) the memo is cleared.
    """

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._entries: dict[int, tuple[_K, _V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, source: _K, make: Callable[[_K], _V]) -> _V:
        """``make(source)``, computed on the first call for this object only."""
        key = id(source)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is source:
            return hit[1]
        value = make(source)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = (source, value)
        return value


def cache_short_text(
    max_chars: int, maxsize: int
) -> Callable[[Callable[[_A], _V]], Callable[[_A], _V]]:
    """``lru_cache`` for a pure function of one text that is called with the
    same few values again and again (peer addresses, agent ids); a value
    longer than ``max_chars`` (a client's junk) is computed, not kept."""

    def decorate(fn: Callable[[_A], _V]) -> Callable[[_A], _V]:
        cached = lru_cache(maxsize=maxsize)(fn)

        @wraps(fn)
        def call(value: _A) -> _V:
            if value is not None and len(value) <= max_chars:
                return cached(value)
            return fn(value)

        return call

    return decorate


__all__ = ["IdentityMemo", "cache_short_text"]
