"""Acceptance (issue 14): secrets stay out of access lines even when a client
percent-encodes them into the path, and the logged path cannot inject
control characters into a terminal or log file."""

from __future__ import annotations

from twisted.logger import ILogObserver, LogEvent, LogPublisher, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from openclaw.core.logformat import SecretScrubber
from openclaw.core.secret_values import SecretValues
from openclaw.testing.gateway import TEST_TOKEN, GatewayHarness


def _access(case: SynchronousTestCase, path: bytes) -> LogEvent:
    """The access event of one request to ``path``, after the secret scrubber."""
    events: list[LogEvent] = []

    @implementer(ILogObserver)
    def keep(event: LogEvent) -> None:
        if event.get("log_namespace") == "openclaw.access":
            events.append(dict(event))

    globalLogPublisher.addObserver(keep)
    case.addCleanup(globalLogPublisher.removeObserver, keep)
    h = GatewayHarness.create(case.mktemp())
    h.request(b"GET", path)
    (event,) = events
    publisher = LogPublisher()
    publisher.addObserver(SecretScrubber(SecretValues([TEST_TOKEN])))
    publisher(event)
    return event


class EncodedPathSecretTests(SynchronousTestCase):
    def test_percent_encoded_token_in_path_is_masked(self) -> None:
        """A token whose first letter is sent as %74 is still recognised and
        masked in the line and in the path field."""
        encoded = b"/%74" + TEST_TOKEN[1:].encode() + b"/x"
        event = _access(self, encoded)
        line = formatEvent(event)
        self.assertNotIn(TEST_TOKEN[1:], line)
        self.assertNotIn(TEST_TOKEN[1:], str(event.get("path")))
        self.assertIn("[redacted]", line)

    def test_control_bytes_in_path_are_escaped(self) -> None:
        """Encoded control characters (ESC, NUL, newline) never reach the line raw."""
        event = _access(self, b"/a%1b[31mb%00c%0ad")
        line = formatEvent(event)
        for raw in ("\x1b", "\x00", "\n"):
            self.assertNotIn(raw, line)
        self.assertEqual(event["path"], "/a%1B[31mb%00c%0Ad")
