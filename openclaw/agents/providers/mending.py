# -*- test-case-name: tests.test_upstream_surrogates,tests.test_provider_mending -*-
"""Model output under the text rule: lone surrogates become U+FFFD, split pairs join.

An upstream's JSON may carry ``"ab\\ud83d"``: a reply cut at ``max_tokens``
in the middle of an emoji by a UTF-16-based (JavaScript) provider or proxy,
or a pair a proxy sliced between two chunks (``\\ud83d`` ending one,
``\\ude00`` starting the next). Python decodes each escape to a surrogate
code point, which no UTF-8 writer accepts: stored and replayed, such text
made every later request of the session fail.

:class:`SurrogateMender` stands between a provider's decoder and the real
sink. Text and each tool call's arguments are mended as they stream: a high
surrogate that ends a delta is held back until the next delta, so a split
pair becomes its one character; every surrogate still unpaired becomes
U+FFFD, as :mod:`openclaw.core.textguard` does for client input (and as a
UTF-8 decoder does with broken bytes). A high surrogate still held when the
stream completes is U+FFFD too (:meth:`SurrogateMender.flush`). Call ids and
tool names are scrubbed whole. A delta without surrogates (every ASCII delta
after one ``str.isascii`` test) is passed on as it is.
"""

from __future__ import annotations

from openclaw.agents.providers.base import StreamSink
from openclaw.agents.types import Usage
from openclaw.core.textguard import REPLACEMENT, has_surrogates, scrub_text

_HIGH_FIRST = "\ud800"
_HIGH_LAST = "\udbff"


def join_surrogates(text: str) -> str:
    """``text`` with each surrogate pair made its one character and each lone
    surrogate replaced by U+FFFD (valid text is returned unchanged)."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _mend(text: str) -> tuple[str, str]:
    """``(mended text, held)``: a high surrogate at the end is held back."""
    if text and _HIGH_FIRST <= text[-1] <= _HIGH_LAST:
        return join_surrogates(text[:-1]), text[-1]
    return join_surrogates(text), ""


class SurrogateMender:
    """A :class:`~openclaw.agents.providers.base.StreamSink` that mends what it
    passes to ``sink`` (see the module docstring)."""

    __slots__ = ("_arguments", "_sink", "_text")

    def __init__(self, sink: StreamSink) -> None:
        self._sink = sink
        #: A high surrogate held back from the last text delta ("" for none).
        self._text = ""
        #: The same per tool call index (None until one is held: the common case).
        self._arguments: dict[int, str] | None = None

    def on_text(self, delta: str) -> None:
        held = self._text
        if not held and (delta.isascii() or not has_surrogates(delta)):
            self._sink.on_text(delta)
            return
        text, self._text = _mend(held + delta)
        if text:
            self._sink.on_text(text)

    def on_tool_call(
        self, index: int, call_id: str | None, name: str | None, arguments_delta: str
    ) -> None:
        if call_id is not None:
            call_id = scrub_text(call_id)
        if name is not None:
            name = scrub_text(name)
        held_by_index = self._arguments
        held = held_by_index.pop(index, "") if held_by_index else ""
        if held or (not arguments_delta.isascii() and has_surrogates(arguments_delta)):
            arguments_delta, rest = _mend(held + arguments_delta)
            if rest:
                if held_by_index is None:
                    held_by_index = self._arguments = {}
                held_by_index[index] = rest
        self._sink.on_tool_call(index, call_id, name, arguments_delta)

    def on_usage(self, usage: Usage) -> None:
        self._sink.on_usage(usage)

    def flush(self) -> None:
        """The stream completed: anything held back is unpaired (U+FFFD)."""
        if self._text:
            self._text = ""
            self._sink.on_text(REPLACEMENT)
        held_by_index, self._arguments = self._arguments, None
        for index in sorted(held_by_index or ()):
            self._sink.on_tool_call(index, None, None, REPLACEMENT)
