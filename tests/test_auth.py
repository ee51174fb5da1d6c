"""Gateway authentication: Bearer parsing, modes, constant-time compare, limiter."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from openclaw.config.model import AuthConfig, RateLimitConfig
from openclaw.gateway.auth import (
    MAX_LIMITER_ENTRIES,
    FailedAuthLimiter,
    GatewayAuth,
    is_loopback,
    parse_bearer,
    secrets_equal,
)


def _request(
    authorization: bytes | None = None, peer: str = "203.0.113.5", xff: bytes | None = None
) -> Request:
    from twisted.internet.address import IPv4Address

    request = Request(DummyChannel())
    request.client = IPv4Address("TCP", peer, 40000)
    if authorization is not None:
        request.requestHeaders.setRawHeaders(b"authorization", [authorization])
    if xff is not None:
        request.requestHeaders.setRawHeaders(b"x-forwarded-for", [xff])
    return request


class BearerParsingTests(SynchronousTestCase):
    def test_scheme_is_case_insensitive_and_trimmed(self) -> None:
        """`bEaReR   tok ` yields `tok`, as OpenClaw parses it."""
        self.assertEqual(parse_bearer(b"  bEaReR   tok  "), "tok")
        self.assertEqual(parse_bearer("Bearer abc"), "abc")

    def test_other_schemes_and_empty_values_are_missing(self) -> None:
        """Basic auth, a bare token and an empty Bearer carry no credential."""
        for value in (None, b"", b"Basic abc", b"tok", b"Bearer ", b"Bearer    "):
            self.assertIsNone(parse_bearer(value), value)


class SecretCompareTests(SynchronousTestCase):
    def test_equal_and_unequal(self) -> None:
        """Equal secrets match; any difference (length, content) does not."""
        self.assertTrue(secrets_equal("s3cret", "s3cret"))
        self.assertFalse(secrets_equal("s3cret", "s3cre"))
        self.assertFalse(secrets_equal("", "x"))

    def test_loopback_detection(self) -> None:
        """127/8, ::1, IPv4-mapped loopback and UNIX sockets count as loopback."""
        for address in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1", "unix"):
            self.assertTrue(is_loopback(address), address)
        for address in ("10.0.0.1", "::ffff:10.0.0.1", "example.com", "0.0.0.0"):
            self.assertFalse(is_loopback(address), address)


class ModeTests(SynchronousTestCase):
    def test_token_mode(self) -> None:
        """Token mode accepts the token, refuses a wrong or missing one."""
        auth = GatewayAuth(AuthConfig(mode="token", token="tok"), Clock())
        self.assertTrue(auth.check_request(_request(b"Bearer tok")).ok)
        self.assertEqual(auth.check_request(_request(b"Bearer nope")).reason, "mismatch")
        self.assertEqual(auth.check_request(_request()).reason, "missing")

    def test_password_mode_compares_the_password(self) -> None:
        """Password mode ignores the token and compares the password."""
        auth = GatewayAuth(AuthConfig(mode="password", token="tok", password="pw"), Clock())
        self.assertTrue(auth.check_request(_request(b"Bearer pw")).ok)
        self.assertFalse(auth.check_request(_request(b"Bearer tok")).ok)

    def test_none_mode_needs_nothing(self) -> None:
        """Mode none lets every caller in."""
        auth = GatewayAuth(AuthConfig(mode="none"), Clock())
        self.assertTrue(auth.check_request(_request()).ok)


class LimiterTests(SynchronousTestCase):
    def _auth(self, clock: Clock, **limits: object) -> GatewayAuth:
        config = AuthConfig(mode="token", token="tok", rate_limit=RateLimitConfig(**limits))  # type: ignore[arg-type]
        return GatewayAuth(config, clock)

    def test_lockout_after_max_attempts_even_with_the_right_secret(self) -> None:
        """After maxAttempts failures the address is locked out, correct secret or not,
        until lockoutMs passes; then the right secret works and resets the count."""
        clock = Clock()
        auth = self._auth(
            clock, max_attempts=2, window_ms=60_000, lockout_ms=300_000, exempt_loopback=True
        )
        self.assertEqual(auth.check_request(_request(b"Bearer x")).reason, "mismatch")
        self.assertEqual(auth.check_request(_request(b"Bearer y")).reason, "mismatch")
        locked = auth.check_request(_request(b"Bearer z"))
        self.assertEqual(locked.reason, "rate_limited")
        self.assertEqual(locked.retry_after_seconds, 300)
        clock.advance(100)
        still = auth.check_request(_request(b"Bearer tok"))
        self.assertEqual((still.reason, still.retry_after_seconds), ("rate_limited", 200))
        clock.advance(200)
        self.assertTrue(auth.check_request(_request(b"Bearer tok")).ok)

    def test_failures_outside_the_window_do_not_count(self) -> None:
        """The window slides: old failures expire."""
        clock = Clock()
        auth = self._auth(
            clock, max_attempts=2, window_ms=1000, lockout_ms=5000, exempt_loopback=True
        )
        auth.check_request(_request(b"Bearer x"))
        clock.advance(2)
        self.assertEqual(auth.check_request(_request(b"Bearer x")).reason, "mismatch")

    def test_success_resets(self) -> None:
        """A success clears the failure history of that address."""
        clock = Clock()
        auth = self._auth(
            clock, max_attempts=2, window_ms=60_000, lockout_ms=1000, exempt_loopback=True
        )
        auth.check_request(_request(b"Bearer x"))
        self.assertTrue(auth.check_request(_request(b"Bearer tok")).ok)
        self.assertEqual(auth.check_request(_request(b"Bearer x")).reason, "mismatch")

    def test_missing_credentials_do_not_count(self) -> None:
        """A request without credentials is 401 but consumes no attempt."""
        auth = self._auth(
            Clock(), max_attempts=1, window_ms=60_000, lockout_ms=1000, exempt_loopback=True
        )
        for _ in range(5):
            self.assertEqual(auth.check_request(_request()).reason, "missing")
        self.assertEqual(auth.check_request(_request(b"Bearer x")).reason, "mismatch")
        self.assertEqual(auth.check_request(_request(b"Bearer x")).reason, "rate_limited")

    def test_loopback_is_exempt_unless_configured(self) -> None:
        """Loopback callers are never locked out while exemptLoopback is on."""
        auth = self._auth(
            Clock(), max_attempts=1, window_ms=60_000, lockout_ms=1000, exempt_loopback=True
        )
        for _ in range(3):
            self.assertEqual(
                auth.check_request(_request(b"Bearer x", peer="127.0.0.1")).reason, "mismatch"
            )
        strict = self._auth(
            Clock(), max_attempts=1, window_ms=60_000, lockout_ms=1000, exempt_loopback=False
        )
        strict.check_request(_request(b"Bearer x", peer="127.0.0.1"))
        self.assertEqual(
            strict.check_request(_request(b"Bearer x", peer="127.0.0.1")).reason, "rate_limited"
        )

    def test_limiter_memory_is_bounded(self) -> None:
        """Failures from more addresses than the cap keep the table at the cap."""
        limiter = FailedAuthLimiter(RateLimitConfig(max_attempts=5), Clock())
        for i in range(MAX_LIMITER_ENTRIES + 500):
            limiter.record_failure(f"shared-secret:10.{i // 65536}.{i // 256 % 256}.{i % 256}")
        self.assertLessEqual(len(limiter), MAX_LIMITER_ENTRIES)


class ForwardedForTests(SynchronousTestCase):
    def test_forwarded_for_only_from_trusted_proxies(self) -> None:
        """X-Forwarded-For names the client only when the peer is a trusted proxy;
        a hop that is no address is its own key, never the proxy's."""
        auth = GatewayAuth(
            AuthConfig(mode="token", token="t"), Clock(), trusted_proxies=["10.0.0.0/8"]
        )
        self.assertEqual(
            auth.client_address(_request(peer="10.1.1.1", xff=b"198.51.100.7, 10.2.2.2")),
            "198.51.100.7",
        )
        self.assertEqual(
            auth.client_address(_request(peer="203.0.113.9", xff=b"198.51.100.7")), "203.0.113.9"
        )
        self.assertEqual(
            auth.client_address(_request(peer="10.1.1.1", xff=b"not-an-ip")),
            "unparseable:not-an-ip",
        )

    def test_client_address_for_peer_and_header(self) -> None:
        """The WebSocket side's variant: peer host plus the raw header value."""
        auth = GatewayAuth(
            AuthConfig(mode="token", token="t"), Clock(), trusted_proxies=["127.0.0.1/32"]
        )
        self.assertEqual(auth.client_address_for("127.0.0.1", "198.51.100.7"), "198.51.100.7")
        self.assertEqual(auth.client_address_for("127.0.0.1", None), "127.0.0.1")
        self.assertEqual(auth.client_address_for("203.0.113.1", "198.51.100.7"), "203.0.113.1")
