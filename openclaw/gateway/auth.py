"""Gateway authentication shared by HTTP and WebSocket: modes, secrets, limiter.

Modes are ``none``, ``token`` and ``password``. Secrets are compared as
HMAC-SHA256 digests with :func:`hmac.compare_digest`, so neither the length nor
the content of the configured secret leaks through timing. Failed attempts are
counted per client address; a locked-out address is refused even with the
right secret until the lockout ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import math
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Final, Literal

from attrs import frozen
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from openclaw.config.model import AuthConfig, RateLimitConfig
from openclaw.core.netaddr import is_unparseable, normalize_address, parse_address
from openclaw.core.relay import AuthPeers
from openclaw.gateway.hygiene import mark_authenticated

log = Logger()

_HMAC_KEY = b"openclaw-safe-equal"
#: Entries kept by the limiter at most; the oldest are dropped first.
MAX_LIMITER_ENTRIES = 10_000

DecisionReason = Literal["ok", "missing", "mismatch", "rate_limited"]


def secrets_equal(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets of any length."""
    return hmac.compare_digest(secret_digest(given), secret_digest(expected))


def secret_digest(secret: str) -> bytes:
    """What :func:`secrets_equal` compares: an HMAC-SHA256 of ``secret``."""
    # surrogatepass: a lone surrogate (from a "\ud800" escape) must not crash the check.
    # Not hmac.digest(): its one-shot C path releases the GIL for any input, and
    # taking it back behind the store's IO threads cost ~40 us per request.
    data = secret.encode("utf-8", "surrogatepass")
    return hmac.new(_HMAC_KEY, data, hashlib.sha256).digest()


def parse_bearer(header: str | bytes | None) -> str | None:
    """The credential of an ``Authorization: Bearer <x>`` header, or None.

    The scheme is case-insensitive and surrounding whitespace is ignored, as in
    OpenClaw.
    """
    if header is None:
        return None
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    text = text.strip()
    if text[:7].lower() != "bearer ":
        return None
    credential = text[7:].strip()
    return credential or None


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1, IPv4-mapped loopback and UNIX sockets."""
    if address == "unix":
        return True
    ip = parse_address(address)
    return ip is not None and ip.is_loopback


#: Where a request keeps its authentication decision (see ``check_request``).
_DECISION_ATTRIBUTE: Final = "_openclaw_auth_decision"


@frozen
class AuthDecision:
    """The outcome of one authentication attempt."""

    ok: bool
    reason: DecisionReason
    retry_after_ms: int = 0

    @property
    def retry_after_seconds(self) -> int:
        """``Retry-After`` value: whole seconds, rounded up."""
        return max(1, math.ceil(self.retry_after_ms / 1000)) if self.retry_after_ms else 0


_OK = AuthDecision(True, "ok")


class FailedAuthLimiter:
    """Sliding-window counter of failed attempts with a lockout, per key.

    Memory is bounded: at most :data:`MAX_LIMITER_ENTRIES` keys, oldest evicted
    first, and stale keys are pruned as they are touched.
    """

    def __init__(
        self, config: RateLimitConfig, clock: IReactorTime, peers: AuthPeers | None = None
    ) -> None:
        """:param peers: other gateway instances sharing the budget (a shared
        store's); their lockouts apply here too."""
        self._config = config
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}
        self._peers = peers
        if peers is not None:
            peers.attach_limiter(self)

    def lock(self, key: str, for_ms: int) -> None:
        """Another instance locked ``key`` out (its failures there and here)."""
        self._failures.pop(key, None)
        self._locked_until[key] = self._now_ms() + for_ms

    def clear(self, key: str) -> None:
        """``key`` authenticated on another instance."""
        self._failures.pop(key, None)
        self._locked_until.pop(key, None)

    def _now_ms(self) -> float:
        return self._clock.seconds() * 1000.0

    def exempt(self, address: str) -> bool:
        """Loopback callers are not limited when ``exemptLoopback`` is on."""
        return self._config.exempt_loopback and is_loopback(address)

    def locked_for_ms(self, key: str) -> int:
        """Milliseconds left in ``key``'s lockout (0 when not locked)."""
        until = self._locked_until.get(key)
        if until is None:
            return 0
        remaining = until - self._now_ms()
        if remaining <= 0:
            del self._locked_until[key]
            return 0
        return math.ceil(remaining)

    def record_failure(self, key: str) -> None:
        """Count one failure; lock the key once the window holds ``maxAttempts``."""
        now = self._now_ms()
        attempts = self._failures.pop(key, None) or deque()
        horizon = now - self._config.window_ms
        while attempts and attempts[0] <= horizon:
            attempts.popleft()
        attempts.append(now)
        self._failures[key] = attempts
        if self._peers is not None:
            config = self._config
            self._peers.failed(
                key,
                window_ms=config.window_ms,
                max_attempts=config.max_attempts,
                lockout_ms=config.lockout_ms,
            )
        if len(attempts) >= self._config.max_attempts:
            self._locked_until[key] = now + self._config.lockout_ms
            del self._failures[key]
            log.warn("auth lockout for {key} after {count} failures", key=key, count=len(attempts))
        self._prune(now)

    def reset(self, key: str) -> None:
        """A success clears the key's history (everywhere, if it had one)."""
        had = self._failures.pop(key, None)
        self._locked_until.pop(key, None)
        if had and self._peers is not None:
            self._peers.succeeded(key)

    def __len__(self) -> int:
        return len(self._failures) + len(self._locked_until)

    def _prune(self, now: float) -> None:
        horizon = now - self._config.window_ms
        while self._failures:
            oldest_key, oldest = next(iter(self._failures.items()))
            if len(self._failures) > MAX_LIMITER_ENTRIES or (oldest and oldest[-1] <= horizon):
                del self._failures[oldest_key]
            else:
                break
        if len(self._locked_until) > MAX_LIMITER_ENTRIES:
            for key in [k for k, until in self._locked_until.items() if until <= now]:
                del self._locked_until[key]
            while len(self._locked_until) > MAX_LIMITER_ENTRIES:
                del self._locked_until[next(iter(self._locked_until))]


class GatewayAuth:
    """Decides whether a caller presented the gateway's shared secret."""

    def __init__(
        self,
        config: AuthConfig,
        clock: IReactorTime,
        trusted_proxies: Sequence[str] = (),
        peers: AuthPeers | None = None,
    ) -> None:
        """:param peers: other gateway instances sharing the failed-auth budget."""
        self.config = config
        #: Changes whenever the mode or the shared secret does: a WebSocket
        #: connection authenticated under an older generation is closed
        #: (OpenClaw's shared-auth generation; clients reconnect with the new secret).
        self.generation = 0
        #: The configured secret and its digest (see _matches).
        self._expected: tuple[str, bytes] | None = None
        self._clock = clock
        self._trusted = tuple(_parse_network(p) for p in trusted_proxies)
        self._peers = peers
        self.limiter = (
            FailedAuthLimiter(config.rate_limit, clock, peers)
            if config.rate_limit is not None
            else None
        )

    def _matches(self, offered: str, expected: str) -> bool:
        """:func:`secrets_equal`, with the configured secret's digest made once
        per configuration rather than on every request."""
        known = self._expected
        if known is None or known[0] is not expected:
            known = self._expected = (expected, secret_digest(expected))
        return hmac.compare_digest(secret_digest(offered), known[1])

    def reconfigure(self, config: AuthConfig, trusted_proxies: Sequence[str]) -> None:
        """A reloaded config: the new secret counts from the next check on
        (a rotated token: the old one is refused at once). The failed-attempt
        history is kept unless the limits themselves changed."""
        self._trusted = tuple(_parse_network(p) for p in trusted_proxies)
        if config.rate_limit != self.config.rate_limit:
            self.limiter = (
                FailedAuthLimiter(config.rate_limit, self._clock, self._peers)
                if config.rate_limit is not None
                else None
            )
        old = self.config
        if (config.mode, config.token, config.password) != (old.mode, old.token, old.password):
            self.generation += 1
        self.config = config

    @property
    def mode(self) -> str:
        """``none``, ``token`` or ``password``."""
        return self.config.mode

    def client_address(self, request: IRequest) -> str:
        """The caller's IP: the socket peer, or ``X-Forwarded-For`` from a trusted proxy."""
        peer = request.getClientAddress()
        if not isinstance(peer, IPv4Address | IPv6Address):
            return "unix"
        forwarded: bytes | None = request.getHeader(b"x-forwarded-for")
        return self.client_address_for(
            peer.host, forwarded.decode("latin-1") if forwarded else None
        )

    def client_address_for(self, peer_host: str, forwarded_for: str | None) -> str:
        """The client address given the socket peer and its ``X-Forwarded-For``.

        The header counts only when the peer is a trusted proxy; walking from
        the nearest hop outwards, the first untrusted address is the client.
        Every address is normalised (:func:`normalize_address`), so spellings
        of one client share one budget; a hop that is not an address becomes
        its own ``unparseable:`` key (never the proxy's, which may be exempt).
        """
        peer = normalize_address(peer_host)
        if not forwarded_for or not self._is_trusted_proxy(peer):
            return peer
        hops = [normalize_address(h) for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if is_unparseable(hop) or not self._is_trusted_proxy(hop):
                return hop
        return hops[0] if hops else peer

    def check(
        self,
        *,
        token: str | None,
        password: str | None,
        client_address: str,
    ) -> AuthDecision:
        """Check the credentials a caller offered against the configured mode."""
        if self.config.mode == "none":
            return _OK
        expected = self.config.token if self.config.mode == "token" else self.config.password
        # The secret counts in either field, the mode's own first (OpenClaw's
        # resolveConnectSecret): a client that pastes the token as a password works.
        own, other = (token, password) if self.config.mode == "token" else (password, token)
        offered = own if own is not None else other
        key = f"shared-secret:{client_address}"
        limiter = (
            None if self.limiter is None or self.limiter.exempt(client_address) else self.limiter
        )
        if limiter is not None:
            locked = limiter.locked_for_ms(key)
            if locked:
                return AuthDecision(False, "rate_limited", locked)
        if not offered:
            return AuthDecision(False, "missing")
        if expected is not None and self._matches(offered, expected):
            if limiter is not None:
                limiter.reset(key)
            return _OK
        if limiter is not None:
            # The failure that reaches maxAttempts is still answered 401; the
            # lockout applies from the next attempt (as OpenClaw does).
            limiter.record_failure(key)
        return AuthDecision(False, "mismatch")

    def check_request(self, request: IRequest) -> AuthDecision:
        """HTTP: the Bearer credential is offered as both token and password.

        Decided once per request: a request with a body is checked from its
        headers (before the body is read), and the endpoint's own check gets
        the same answer without a second comparison or failed-attempt count.
        """
        cached = getattr(request, _DECISION_ATTRIBUTE, None)
        if isinstance(cached, AuthDecision):
            return cached
        credential = parse_bearer(request.getHeader(b"authorization"))
        decision = self.check(
            token=credential, password=credential, client_address=self.client_address(request)
        )
        with contextlib.suppress(AttributeError):  # a request that takes no attributes
            setattr(request, _DECISION_ATTRIBUTE, decision)
        if decision.ok:
            # Its connection keeps the normal keep-alive timeout (hygiene).
            mark_authenticated(request)
        return decision

    def is_trusted_proxy(self, address: str) -> bool:
        """True when ``address`` (a normalised key) is in ``gateway.trustedProxies``."""
        return self._is_trusted_proxy(address)

    def _is_trusted_proxy(self, address: str) -> bool:
        if not self._trusted:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)


def _parse_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(value.strip(), strict=False)
