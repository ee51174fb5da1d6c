"""Assistant events carry deltas; the text so far is joined only when read."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import AssistantEvent, ReplyText


class ReplyTextTests(SynchronousTestCase):
    """What each assistant event reports as ``text``."""

    def test_each_event_sees_the_text_as_of_itself(self) -> None:
        """An event read after later deltas still reports the text up to its own
        delta, and the whole reply reads back in one piece."""
        reply = ReplyText()
        events = []
        for delta in ("Hel", "lo, ", "world"):
            reply.append(delta)
            events.append(AssistantEvent("run", delta, reply, 0, length=len(reply)))
        self.assertEqual([e.text for e in events], ["Hel", "Hello, ", "Hello, world"])
        self.assertEqual((str(reply), len(reply)), ("Hello, world", 12))
        self.assertEqual([e.delta for e in events], ["Hel", "lo, ", "world"])

    def test_plain_text_still_works(self) -> None:
        """Callers that build an event from a string (fakes, embedders) get it back."""
        self.assertEqual(AssistantEvent("run", "b", "ab", 1).text, "ab")
        self.assertEqual(str(ReplyText()), "")
