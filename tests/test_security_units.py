"""The security building blocks on their own: the text ingress rule, address
keys, redaction by value, per-address connection budgets and run admission.

How they are wired into the gateway is tested in
``tests/test_security_hardening.py``.
"""

from __future__ import annotations

import json
from typing import Any, cast

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, Logger, LogLevel, LogPublisher, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.admission import GatedLanes, RunAdmission, default_max_concurrent
from openclaw.agents.types import RunQueueFullError
from openclaw.core.logformat import SecretScrubber
from openclaw.core.netaddr import is_unparseable, normalize_address
from openclaw.core.secret_values import SecretValues, config_secret_values
from openclaw.core.textguard import (
    MAX_JSON_DEPTH,
    REPLACEMENT,
    JsonDepthError,
    guard_value,
    loads,
    scrub_text,
)
from openclaw.gateway.conn_limits import (
    PER_ADDRESS_REFUSAL,
    AddressCounter,
    AddressLimits,
    address_key,
    mark_authenticated,
    was_authenticated,
)
from openclaw.gateway.hygiene import CountedConnection


class TextGuardTests(SynchronousTestCase):
    def test_lone_surrogates_become_replacement_characters_everywhere(self) -> None:
        """Escaped and raw lone surrogates in values and keys, at any depth,
        come out as U+FFFD; the result encodes as UTF-8."""
        raw = (
            b'{"user":"\\ud800x","messages":[{"role":"user","content":"a\\uDFFFb"}],'
            b'"\\udc00key":["\xed\xa0\x80"]}'
        )
        value = loads(raw)
        self.assertEqual(value["user"], REPLACEMENT + "x")
        self.assertEqual(value["messages"][0]["content"], f"a{REPLACEMENT}b")
        self.assertEqual(value[REPLACEMENT + "key"], [REPLACEMENT])
        json.dumps(value, ensure_ascii=False).encode("utf-8")

    def test_valid_text_is_unchanged(self) -> None:
        """Surrogate pairs (emoji), non-ASCII and escapes that are not
        surrogates are kept exactly."""
        raw = '{"a":"\\ud83d\\ude00 h\u00e9 \\u00e9 \\\\ud800","b":[1,2.5,null,true]}'
        self.assertEqual(loads(raw), json.loads(raw))
        self.assertEqual(scrub_text("h\u00e9\U0001f600"), "h\u00e9\U0001f600")

    def test_depth_error_names_the_path(self) -> None:
        """65 levels inside ``tools[0].function.parameters`` fail with the path
        of the level that crossed the limit."""
        inner = '{"properties":' * 62 + "1" + "}" * 62
        raw = '{"tools":[{"function":{"parameters":' + inner + "}}]}"
        with self.assertRaises(JsonDepthError) as caught:
            loads(raw)
        message = str(caught.exception)
        self.assertIn("`tools[0].function.parameters.properties", message)
        self.assertIn(f"limit {MAX_JSON_DEPTH}", message)

    def test_depth_at_the_limit_is_accepted(self) -> None:
        """Exactly 64 levels pass; 65 fail; the limit is configurable."""
        self.assertEqual(loads("[" * 64 + "]" * 64, max_depth=64), loads("[" * 64 + "]" * 64))
        with self.assertRaises(JsonDepthError):
            loads("[" * 65 + "]" * 65)
        with self.assertRaises(JsonDepthError):
            loads("[[[]]]", max_depth=2)

    def test_parser_exhaustion_is_a_depth_error(self) -> None:
        """100 000 levels (past the parser's own recursion) is a JsonDepthError."""
        with self.assertRaises(JsonDepthError):
            loads(b"[" * 100_000 + b"]" * 100_000)

    def test_constants_and_garbage_are_value_errors(self) -> None:
        """NaN/Infinity and broken JSON raise ValueError with the parser's message."""
        for raw in (b'{"a":NaN}', b'{"a":-Infinity}', b"{", b"\xff"):
            with self.assertRaises(ValueError):
                loads(raw)

    def test_guard_value_walks_parsed_values(self) -> None:
        """guard_value fixes a parsed value in place (config ingress) and bounds
        its depth without recursion."""
        value: Any = {"a": ["\ud800", {"b": "\udfff"}]}
        self.assertIs(guard_value(value), value)
        self.assertEqual(value, {"a": [REPLACEMENT, {"b": REPLACEMENT}]})
        deep: Any = []
        node = deep
        for _ in range(10_000):
            node.append([])
            node = node[0]
        with self.assertRaises(JsonDepthError):
            guard_value(deep)


class AddressTests(SynchronousTestCase):
    def test_spellings_of_one_address_share_a_key(self) -> None:
        """IPv4-mapped, upper-case, uncompressed, bracketed and ported forms
        normalise to one key."""
        self.assertEqual(normalize_address("::ffff:9.9.9.9"), "9.9.9.9")
        self.assertEqual(normalize_address("9.9.9.9"), "9.9.9.9")
        self.assertEqual(normalize_address("2001:DB8:0::1"), "2001:db8::1")
        self.assertEqual(normalize_address("[2001:db8::1]"), "2001:db8::1")
        self.assertEqual(normalize_address("[2001:db8::1]:443"), "2001:db8::1")
        self.assertEqual(normalize_address("1.2.3.4:5555"), "1.2.3.4")
        self.assertEqual(normalize_address(" 10.0.0.1 "), "10.0.0.1")
        self.assertEqual(normalize_address("fe80::1%eth0"), "fe80::1")

    def test_unparseable_values_get_their_own_key(self) -> None:
        """Garbage is never an address: it gets an ``unparseable:`` key, cut
        and made printable."""
        for value in ("unknown", "[2001:db8::1", "1.2.3.4:port", "a\nb", "x" * 500):
            key = normalize_address(value)
            self.assertTrue(is_unparseable(key), key)
            self.assertLessEqual(len(key), 80)
            self.assertTrue(key.isprintable())


class SecretValuesTests(SynchronousTestCase):
    def secrets(self) -> SecretValues:
        return config_secret_values(
            gateway_token="gw-token-123456",
            gateway_password=None,
            providers=[
                ("sk-key-abcdef", {"X-Upstream-Pass": "hunter2-pass", "X-Flag": "1"}),
                (None, {"X-Custom": "application/json"}),
                ("ollama", {"X-Title": "openclaw", "HTTP-Referer": "https://example.org"}),
            ],
        )

    def test_every_configured_value_is_masked(self) -> None:
        """Token, API key and every header value (whatever the header's name)
        are masked; values shorter than 4 characters are not, nor a keyless
        server's placeholder key or a public header (OpenRouter's X-Title)."""
        secrets = self.secrets()
        text = "gw-token-123456 sk-key-abcdef hunter2-pass application/json 1"
        self.assertEqual(secrets.redact(text), "[redacted] [redacted] [redacted] [redacted] 1")
        public = "openclaw listening; model ollama/llama3; https://example.org"
        self.assertEqual(secrets.redact(public), public)
        self.assertEqual(
            secrets.redact_json({"e": ["hunter2-pass!"], "hunter2-pass": 3}),
            {"e": ["[redacted]!"], "[redacted]": 3},
        )

    def test_observer_masks_fields_and_tracebacks(self) -> None:
        """A log event carrying a secret in a field or a traceback reaches the
        observers after the scrubber with the secret masked; clean events pass unchanged."""
        publisher = LogPublisher()
        publisher.addObserver(SecretScrubber(self.secrets()))
        seen: list[dict[str, Any]] = []
        publisher.addObserver(cast(ILogObserver, seen.append))
        try:
            raise ValueError("upstream said hunter2-pass")
        except ValueError:
            failure = Failure()
        publisher(
            {
                "log_format": "oops {detail}",
                "detail": "hunter2-pass",
                "log_level": LogLevel.error,
                "log_failure": failure,
                "log_namespace": "t",
            }
        )
        clean = {"log_format": "fine {x}", "x": 1, "log_level": LogLevel.info}
        publisher(clean)
        text = formatEvent(seen[0])
        self.assertNotIn("hunter2-pass", repr(seen[0]))
        self.assertIn("oops [redacted]", text)
        self.assertIn("ValueError", text)
        self.assertEqual(seen[0]["log_level"], LogLevel.error)
        self.assertIs(seen[1], clean)

    def test_redacted_events_keep_their_fields(self) -> None:
        """An access line holding a secret keeps status, path and run id; only
        the secret is masked, in the text and in every field."""
        publisher = LogPublisher()
        publisher.addObserver(SecretScrubber(self.secrets()))
        seen: list[dict[str, Any]] = []
        publisher.addObserver(cast(ILogObserver, seen.append))
        Logger(namespace="openclaw.access", observer=publisher).info(
            '"GET {path}" {status}',
            path="/x/gw-token-123456",
            status=404,
            run_id="r-1",
            extra=["hunter2-pass"],
        )
        (event,) = seen
        self.assertEqual(formatEvent(event), '"GET /x/[redacted]" 404')
        self.assertEqual((event["status"], event["run_id"]), (404, "r-1"))
        self.assertEqual(event["path"], "/x/[redacted]")
        self.assertEqual(event["extra"], "['[redacted]']")
        self.assertNotIn("gw-token-123456", repr(event))

    def test_scrubbing_observer_escapes_control_characters(self) -> None:
        """Any field (a run id, a client name) reaches later observers with C0/C1
        controls, line separators and bidi overrides escaped."""
        publisher = LogPublisher()
        publisher.addObserver(SecretScrubber(SecretValues()))
        seen: list[dict[str, Any]] = []
        publisher.addObserver(cast(ILogObserver, seen.append))
        Logger(namespace="t", observer=publisher).info(
            "run {run_id}", run_id="r\x1b[2J\nforged\x9b\u2028\u202e", other="ok\x00"
        )
        self.assertEqual(formatEvent(seen[0]), "run r\\x1b[2J\\x0aforged\\x9b\\u2028\\u202e")
        self.assertEqual(seen[0]["other"], "ok\\x00")

    def test_scrubbing_observer_replaces_lone_surrogates(self) -> None:
        """Even with no secrets configured, an event carrying a lone surrogate
        reaches later observers as encodable text."""
        publisher = LogPublisher()
        publisher.addObserver(SecretScrubber(SecretValues()))
        seen: list[dict[str, Any]] = []
        publisher.addObserver(cast(ILogObserver, seen.append))
        Logger(namespace="t", observer=publisher).info("key {key}", key="a\ud800b")
        self.assertEqual(formatEvent(seen[0]), f"key a{REPLACEMENT}b")
        formatEvent(seen[0]).encode("utf-8")


class _Conn:
    """One counted connection from ``host``."""

    def __init__(self, counter: AddressCounter, host: str) -> None:
        peer = IPv6Address("TCP", host, 1) if ":" in host else IPv4Address("TCP", host, 1)
        self.wrapper = CountedConnection(counter, Protocol())
        self.wrapper.makeConnection(StringTransport(peerAddress=peer))

    def close(self) -> None:
        self.wrapper.connectionLost(Failure(ConnectionError()))


class AddressCounterTests(SynchronousTestCase):
    def test_per_address_cap(self) -> None:
        """The cap counts one address under all its spellings; others still get in;
        a closed connection frees its slot."""
        counter = AddressCounter(AddressLimits(max_per_address=2, reserved=0), max_connections=100)
        conns = [_Conn(counter, "9.9.9.9"), _Conn(counter, "::ffff:9.9.9.9")]
        self.assertEqual(counter.open_from("9.9.9.9"), 2)
        self.assertEqual(counter.refusal(IPv4Address("TCP", "9.9.9.9", 5)), PER_ADDRESS_REFUSAL)
        self.assertIsNone(counter.refusal(IPv4Address("TCP", "8.8.8.8", 5)))
        conns[0].close()
        self.assertIsNone(counter.refusal(IPv4Address("TCP", "9.9.9.9", 5)))

    def test_reserved_share_goes_to_light_addresses(self) -> None:
        """Once only the reserve is free, an address holding many connections is
        refused while a newcomer is admitted."""
        counter = AddressCounter(
            AddressLimits(max_per_address=100, reserved=2, light_threshold=3), max_connections=10
        )
        for _ in range(8):
            _Conn(counter, "10.0.0.1")
        self.assertEqual(counter.refusal(IPv4Address("TCP", "10.0.0.1", 5)), PER_ADDRESS_REFUSAL)
        self.assertIsNone(counter.refusal(IPv4Address("TCP", "10.0.0.2", 5)))

    def test_exempt_addresses_and_keys(self) -> None:
        """Exempt addresses (trusted proxies) are never refused; UNIX peers key as unix."""
        counter = AddressCounter(
            AddressLimits(max_per_address=1), max_connections=10, exempt=lambda a: a == "10.0.0.9"
        )
        _Conn(counter, "10.0.0.9")
        self.assertIsNone(counter.refusal(IPv4Address("TCP", "10.0.0.9", 5)))
        self.assertEqual(address_key(UNIXAddress(None)), "unix")

    def test_authenticated_mark(self) -> None:
        """A request is unauthenticated until marked."""

        class _Request:
            pass

        request = _Request()
        self.assertFalse(was_authenticated(request))
        mark_authenticated(request)
        self.assertTrue(was_authenticated(request))


class AdmissionTests(SynchronousTestCase):
    def test_default_follows_openclaw(self) -> None:
        """max(8, CPUs * 4)."""
        self.assertEqual(default_max_concurrent(1), 8)
        self.assertEqual(default_max_concurrent(8), 32)

    def test_slots_are_handed_over_in_order(self) -> None:
        """Past maxConcurrent acquisitions wait, FIFO; a release hands its slot on;
        a cancelled waiter leaves the queue."""
        admission = RunAdmission(max_concurrent=1, max_queued=5)
        first = self.successResultOf(admission.acquire())
        second = admission.acquire()
        third = admission.acquire()
        cancelled = admission.acquire()
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        self.assertEqual(admission.waiting, 2)
        first()
        first()  # idempotent
        release_second = self.successResultOf(second)
        self.assertNoResult(third)
        release_second()
        self.successResultOf(third)()
        self.assertEqual((admission.running, admission.waiting), (0, 0))

    def test_queue_bound(self) -> None:
        """check() refuses once running plus queued runs fill the capacity, with
        Retry-After in seconds and milliseconds."""
        admission = RunAdmission(max_concurrent=2, max_queued=3, retry_after_seconds=1.5)
        admission.check(4)
        with self.assertRaises(RunQueueFullError) as caught:
            admission.check(5)
        self.assertEqual(caught.exception.retry_after_header, "2")
        self.assertEqual(caught.exception.retry_after_ms, 1500)

    def test_gated_lanes_hold_lane_and_slot(self) -> None:
        """A run holds its session lane and a global slot; a run of another
        session waits for the slot; cancelling a waiter frees its lane."""
        lanes = GatedLanes(RunAdmission(max_concurrent=1))
        release_a = lanes.try_acquire("a")
        assert release_a is not None
        self.assertIsNone(lanes.try_acquire("b"))
        waiting_b = lanes.acquire("b")
        self.assertTrue(lanes.is_busy("b"))
        self.assertNoResult(waiting_b)
        waiting_c = lanes.acquire("c")
        waiting_c.cancel()
        self.failureResultOf(waiting_c, CancelledError)
        self.assertFalse(lanes.is_busy("c"))
        release_a()
        self.assertFalse(lanes.is_busy("a"))
        release_b = self.successResultOf(waiting_b)
        release_b()
        self.assertEqual(lanes.admission.running, 0)
        self.assertEqual(len(lanes), 0)
