"""Acceptance (issue 14): secrets stay out of access lines even when a client
percent-encodes them into the path, and the logged path cannot inject
control characters into a terminal or log file."""

from __future__ import annotations

from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogPublisher,
    capturedLogs,
    formatEvent,
    globalLogPublisher,
)
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from openclaw.core.logformat import SecretScrubber
from openclaw.core.secret_values import SecretValues
from openclaw.testing.gateway import TEST_TOKEN, GatewayHarness, http_test_config
from tests.test_metrics import sample


def _access(case: SynchronousTestCase, path: bytes) -> LogEvent:
    """The access event of one request to ``path``, after the secret scrubber."""
    events = _events(case)
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


def _events(case: SynchronousTestCase) -> list[LogEvent]:
    """Collects the ``openclaw.access`` events published while ``case`` runs."""
    events: list[LogEvent] = []

    @implementer(ILogObserver)
    def keep(event: LogEvent) -> None:
        if event.get("log_namespace") == "openclaw.access":
            events.append(dict(event))

    globalLogPublisher.addObserver(keep)
    case.addCleanup(globalLogPublisher.removeObserver, keep)
    return events


class RefusalAccessLineTests(SynchronousTestCase):
    """Requests refused before dispatch (413, 431, a malformed head) still get
    their access line and are counted, so an operator sees a flood of them."""

    def _harness(self) -> GatewayHarness:
        base = self.mktemp()
        config = http_test_config(base, metrics=True)
        return GatewayHarness.create(base, config)

    def _count(self, h: GatewayHarness, **labels: str) -> float | None:
        body = h.request(b"GET", b"/metrics", token=TEST_TOKEN).response()[2].decode()
        return sample(body, "openclaw_http_requests_total", **labels)

    def test_oversized_body_gets_an_access_line_and_a_count(self) -> None:
        """A declared Content-Length over the limit: 413, one access line with
        the method and path, and the 413 counted for its route."""
        events = _events(self)
        h = self._harness()
        exchange = h.connect()
        exchange.send(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + TEST_TOKEN.encode() + b"\r\n"
            b"User-Agent: big/1\r\nContent-Length: 900000000\r\n\r\n"
        )
        self.assertEqual(exchange.response()[0], 413)
        (event,) = [e for e in events if e["status"] == 413]
        self.assertEqual((event["method"], event["path"]), ("POST", "/v1/chat/completions"))
        self.assertEqual(event["user_agent"], "big/1")
        self.assertGreater(event["bytes"], 0)
        self.assertEqual(
            self._count(h, route="/v1/chat/completions", method="POST", status="413"), 1.0
        )

    def test_oversized_body_without_credentials_is_logged_as_the_401_it_got(self) -> None:
        """No credentials and an oversized body: the client is told 401 (auth is
        decided first), and the access line and the count say 401, not 413."""
        events = _events(self)
        h = self._harness()
        exchange = h.connect()
        exchange.send(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 900000000\r\n\r\n"
        )
        self.assertEqual(exchange.response()[0], 401)
        statuses = [e["status"] for e in events]
        self.assertEqual(statuses, [401])
        self.assertEqual(
            self._count(h, route="/v1/chat/completions", method="POST", status="401"), 1.0
        )
        self.assertIsNone(self._count(h, route="/v1/chat/completions", method="POST", status="413"))

    def test_too_many_headers_gets_an_access_line_and_a_count(self) -> None:
        """Past gateway.http.maxHeaders: 431, logged and counted."""
        events = _events(self)
        h = self._harness()
        exchange = h.connect()
        fields = b"".join(b"X-%d: a\r\n" % i for i in range(500))
        exchange.send(b"GET /healthz?token=x HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        self.assertEqual(exchange.response()[0], 431)
        (event,) = [e for e in events if e["status"] == 431]
        self.assertEqual((event["method"], event["path"]), ("GET", "/healthz"))
        self.assertEqual(self._count(h, route="/healthz", status="431"), 1.0)

    def test_malformed_head_gets_an_access_line(self) -> None:
        """A head Twisted itself rejects (a header without a colon): 400, logged."""
        events = _events(self)
        h = self._harness()
        exchange = h.connect()
        exchange.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
        self.assertIn(b" 400 ", exchange.raw().split(b"\r\n")[0] + b" ")
        (event,) = [e for e in events if e["status"] == 400]
        self.assertEqual(event["path"], "/healthz")


class ReasonPhraseTests(SynchronousTestCase):
    def test_429_has_its_reason_phrase(self) -> None:
        """Twisted has no phrase for 429, so answers said "429 Unknown Status";
        the gateway's requests name it "Too Many Requests"."""
        from twisted.web.test.requesthelper import DummyChannel

        from openclaw.gateway.http.request import GatewayRequest

        request = GatewayRequest(DummyChannel())
        request.setResponseCode(429)
        self.assertEqual(request.code_message, b"Too Many Requests")
        request.setResponseCode(418, b"Teapot")
        self.assertEqual(request.code_message, b"Teapot")


class LegacyLoggerNameTests(SynchronousTestCase):
    def test_legacy_twisted_events_do_not_show_an_internal_namespace(self) -> None:
        """Events from twisted.python.log (e.g. "Site starting on 18789") come
        with Twisted's internal namespace ``log_legacy``; the JSON line names
        the logger ``twisted`` instead, so no ``log_*`` internal shows."""
        from twisted.python import log as legacy

        from openclaw.core.logformat import flat_event

        events = self.enterContext(capturedLogs())
        legacy.msg("GatewaySite starting on 1234")
        (event,) = [e for e in events if "starting on 1234" in formatEvent(e)]
        line = flat_event(event)
        self.assertEqual(line["logger"], "twisted")
        self.assertEqual(line["message"], "GatewaySite starting on 1234")
