"""The one SSRF guard: which network addresses an outbound fetch may reach.

Used by every component that fetches a URL a client or a model chose (the
agent's ``web_fetch``, the image fetcher). It lives in the core layer and
imports nothing else from openclaw.

The rule: resolve the host name first, classify *every* resolved address, and
connect to exactly one of the checked addresses (``pinned_endpoint``) while the
``Host`` header and TLS SNI keep the name. A DNS answer that changes between
check and connect (rebinding) therefore cannot move the connection. Callers
re-run the whole check for every redirect hop.

IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-translated,
IPv4-compatible, NAT64 ``64:ff9b::/96`` and ``64:ff9b:1::/48``, 6to4
``2002::/16``, Teredo) are classified by the IPv4 address they carry, so
``64:ff9b::7f00:1`` is loopback, not public.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from attrs import field, frozen
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IHostResolution,
    IReactorPluggableNameResolver,
    IReactorTCP,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from twisted.internet.ssl import optionsForClientTLS
from zope.interface import implementer

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

#: IPv4 ranges that are never "the public internet", with the reason reported.
_BLOCKED_V4: tuple[tuple[_V4, str], ...] = (
    (_V4("0.0.0.0/8"), "unspecified"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "IETF protocol assignment"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),
)

_BENCHMARK_V4 = _V4("198.18.0.0/15")
_UNIQUE_LOCAL_V6 = _V6("fc00::/7")

#: IPv6 ranges blocked outright (checked after the IPv4-embedding forms).
_BLOCKED_V6: tuple[tuple[_V6, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("100::/64"), "discard-only"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("fc00::/7"), "unique-local (private)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local"),
    (_V6("ff00::/8"), "multicast"),
)

#: IPv6 forms that embed an IPv4 address in their low 32 bits.
_LOW32_EMBEDDING: tuple[tuple[_V6, str], ...] = (
    (_V6("::ffff:0:0/96"), "IPv4-mapped"),
    (_V6("::ffff:0:0:0/96"), "IPv4-translated"),
    (_V6("64:ff9b::/96"), "NAT64"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64"),
    (_V6("::/96"), "IPv4-compatible"),
)

_SIXTOFOUR = _V6("2002::/16")
_TEREDO = _V6("2001::/32")

#: Host names that name the local machine or a private zone whatever DNS says.
_BLOCKED_NAME_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
_BLOCKED_NAMES = frozenset({"localhost", "localhost.localdomain", "metadata.google.internal"})


def _normalise_names(names: Iterable[str]) -> frozenset[str]:
    # "[::1]" as in a URL names the same host as "::1".
    return frozenset(n.lower().rstrip(".").removeprefix("[").removesuffix("]") for n in names)


class BlockedTargetError(Exception):
    """A URL, name or address the policy refuses; the message is safe to show."""


@frozen
class SSRFPolicy:
    """What an outbound fetch may reach (``ssrfPolicy`` in OpenClaw's config)."""

    #: ``dangerouslyAllowPrivateNetwork``: every address class allowed.
    allow_private_network: bool = False
    #: ``allowedHostnames``: exact names exempt from the address check.
    allowed_hostnames: frozenset[str] = field(factory=frozenset, converter=_normalise_names)
    #: ``allowRfc2544BenchmarkRange``: 198.18.0.0/15 (fake-IP proxies).
    allow_benchmark_range: bool = False
    #: ``allowIpv6UniqueLocalRange``: fc00::/7 (fake-IP proxies).
    allow_unique_local_range: bool = False


@frozen
class FetchTarget:
    """A URL checked for scheme and shape, split into what a connection needs."""

    url: str
    scheme: str
    host: str
    port: int


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries, with the form's name, if any."""
    value = int(address)
    for network, form in _LOW32_EMBEDDING:
        if address in network:
            if form == "IPv4-compatible" and value <= 1:
                return None  # :: and ::1 are themselves, not 0.0.0.0/0.0.0.1
            return ipaddress.IPv4Address(value & 0xFFFFFFFF), form
    if address in _SIXTOFOUR:
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF), "6to4"
    if address in _TEREDO:
        return ipaddress.IPv4Address(~value & 0xFFFFFFFF), "Teredo"
    return None


def classify(address: IPAddress, policy: SSRFPolicy | None = None) -> str | None:
    """Why ``address`` is not public (``None`` when it is), under ``policy``'s exceptions."""
    policy = policy or SSRFPolicy()
    if isinstance(address, ipaddress.IPv6Address):
        carried = embedded_ipv4(address)
        if carried is not None:
            inner, form = carried
            reason = classify(inner, policy)
            return None if reason is None else f"{form} address of {reason} {inner}"
        if policy.allow_unique_local_range and address in _UNIQUE_LOCAL_V6:
            return None
        for net6, reason in _BLOCKED_V6:
            if address in net6:
                return reason
        return None
    if policy.allow_benchmark_range and address in _BENCHMARK_V4:
        return None
    for net4, reason in _BLOCKED_V4:
        if address in net4:
            return reason
    if address == ipaddress.IPv4Address("255.255.255.255"):
        return "broadcast"
    return None


def parse_address(text: str) -> IPAddress | None:
    """``text`` as an IP address (brackets and IPv6 zone ids tolerated), else ``None``."""
    candidate = text.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


def check_address(address: IPAddress, policy: SSRFPolicy, host: str = "") -> None:
    """Raise :class:`BlockedTargetError` unless ``policy`` lets a fetch reach ``address``."""
    if policy.allow_private_network:
        return
    if host and host.lower().rstrip(".") in policy.allowed_hostnames:
        return
    reason = classify(address, policy)
    if reason is not None:
        shown = f"{host} ({address})" if host and host != str(address) else str(address)
        raise BlockedTargetError(f"Blocked: {shown} is a {reason} address")


def check_url(url: str, policy: SSRFPolicy) -> FetchTarget:
    """Check a URL's scheme and host name (not yet its addresses) and split it."""
    if any(ord(ch) < 0x21 or ch == "\x7f" for ch in url):
        raise BlockedTargetError("Invalid URL: control characters or spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise BlockedTargetError(f"Invalid URL: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BlockedTargetError("Invalid URL: only http and https are supported")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise BlockedTargetError("Invalid URL: no host")
    if parts.username is not None or parts.password is not None:
        raise BlockedTargetError("Invalid URL: credentials in URLs are not allowed")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host.lower()
    except UnicodeError:
        raise BlockedTargetError("Invalid URL: host name is not valid") from None
    literal = parse_address(host)
    if literal is not None:
        # An address can be allow-listed like a name (OpenClaw's docs list "127.0.0.1").
        check_address(literal, policy, host)
    elif (
        not policy.allow_private_network
        and host not in policy.allowed_hostnames
        and (host in _BLOCKED_NAMES or host.endswith(_BLOCKED_NAME_SUFFIXES))
    ):
        raise BlockedTargetError(f"Blocked: {host} is a local or internal host name")
    return FetchTarget(
        url=url, scheme=scheme, host=host, port=port or (443 if scheme == "https" else 80)
    )


@implementer(IResolutionReceiver)
class _Collect:
    """Collects a name's addresses from Twisted's pluggable resolver."""

    def __init__(self) -> None:
        self.addresses: list[IPAddress] = []
        self.done: Deferred[list[IPAddress]] = Deferred()

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        """Nothing to do until addresses arrive."""

    def addressResolved(self, address: object) -> None:
        """Keep each address once."""
        parsed = parse_address(str(getattr(address, "host", "")))
        if parsed is not None and parsed not in self.addresses:
            self.addresses.append(parsed)

    def resolutionComplete(self) -> None:
        """Hand the addresses over."""
        self.done.callback(self.addresses)


def resolve(
    reactor: IReactorPluggableNameResolver, host: str, port: int
) -> Deferred[list[IPAddress]]:
    """All addresses ``host`` resolves to (a literal resolves to itself)."""
    literal = parse_address(host)
    if literal is not None:
        return succeed([literal])
    receiver = _Collect()
    reactor.nameResolver.resolveHostName(receiver, host, port)
    return receiver.done


def pick_allowed(host: str, addresses: Sequence[IPAddress], policy: SSRFPolicy) -> IPAddress:
    """The first resolved address, after checking that *every* one is allowed.

    Refusing a name when any answer is private stops a resolver from offering a
    public and a private address and letting the connection race pick one.
    """
    if not addresses:
        raise BlockedTargetError(f"Could not resolve {host}")
    for address in addresses:
        check_address(address, policy, host)
    return addresses[0]


def pinned_endpoint(
    reactor: IReactorTCP,
    target: FetchTarget,
    address: IPAddress,
    timeout: float = 30.0,
    trust_root: IOpenSSLTrustRoot | None = None,
) -> IStreamClientEndpoint:
    """A client endpoint that connects to exactly ``address``; TLS verifies ``target.host``
    (against the platform's roots, or ``trust_root`` when given)."""
    inner: IStreamClientEndpoint
    if isinstance(address, ipaddress.IPv6Address):
        # typing note: Twisted leaves TCP6ClientEndpoint.__init__ unannotated.
        inner = TCP6ClientEndpoint(  # type: ignore[no-untyped-call]
            reactor, str(address), target.port, timeout=timeout
        )
    else:
        inner = TCP4ClientEndpoint(reactor, str(address), target.port, timeout=timeout)
    if target.scheme == "https":
        if trust_root is None:
            return wrapClientTLS(optionsForClientTLS(target.host), inner)
        return wrapClientTLS(optionsForClientTLS(target.host, trustRoot=trust_root), inner)
    return inner


__all__ = [
    "BlockedTargetError",
    "FetchTarget",
    "SSRFPolicy",
    "check_address",
    "check_url",
    "classify",
    "embedded_ipv4",
    "parse_address",
    "pick_allowed",
    "pinned_endpoint",
    "resolve",
]
