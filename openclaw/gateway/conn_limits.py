"""Per-address connection budgets: one address cannot hold the whole listener.

``gateway.maxConnections`` caps every open connection, so without more one
client could fill it with idle keep-alive sockets (one unauthenticated
``GET /health`` each) and lock everyone else out. Three additions to the
hygiene layer (:mod:`openclaw.gateway.hygiene`):

- **per-address cap**: at most ``gateway.http.maxConnectionsPerAddress`` open
  connections (HTTP and WebSocket) from one socket address;
- **reserved share**: the last ``gateway.http.reservedConnections`` slots of
  the cap go only to addresses holding fewer than
  ``gateway.http.lightAddressConnections``, so a newcomer still gets in while
  heavy holders are refused;
- **unauthenticated idle timeout**: a kept-alive connection that never carried
  an authenticated request is closed after
  ``gateway.http.unauthenticatedIdleTimeoutSeconds`` instead of the normal
  keep-alive timeout.

Addresses are keyed by :func:`openclaw.core.netaddr.normalize_address`.
Trusted proxies (``gateway.trustedProxies``) are exempt from the per-address
rules: they carry many clients on their connections (the global cap and the
per-client limits behind them still apply).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, cast

from attrs import frozen
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, ITransport
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper

from openclaw.core.netaddr import normalize_address
from openclaw.gateway.http.errors import raw_error_response
from openclaw.gateway.hygiene import ConnectionCounter, mark_authenticated, was_authenticated

log = Logger()

__all__ = [
    "PER_ADDRESS_REFUSAL",
    "AddressCounter",
    "AddressLimits",
    "RefusedAddress",
    "address_key",
    "mark_authenticated",
    "was_authenticated",
]

PER_ADDRESS_REFUSAL: Final = "Too many connections from this address"


@frozen
class AddressLimits:
    """The per-address rules (0 turns the cap or the reserve off)."""

    max_per_address: int = 256
    reserved: int = 64
    light_threshold: int = 8


def address_key(addr: object) -> str:
    """The budget key of a socket peer (``unix`` for anything not IP)."""
    if isinstance(addr, IPv4Address | IPv6Address):
        return normalize_address(addr.host)
    return "unix"


class AddressCounter(ConnectionCounter):
    """The listener's open connections, also counted per peer address."""

    def __init__(
        self,
        limits: AddressLimits = AddressLimits(),
        *,
        max_connections: int,
        exempt: Callable[[str], bool] = lambda address: False,
    ) -> None:
        super().__init__()
        self.address_limits = limits
        self.max_connections = max_connections
        self._exempt = exempt
        self._by_address: dict[str, int] = {}
        self._keys: dict[ProtocolWrapper, str] = {}
        self._warned: set[str] = set()

    def open_from(self, address: str) -> int:
        """Open connections from ``address`` (a normalised key)."""
        return self._by_address.get(address, 0)

    def refusal(self, addr: IAddress | None) -> str | None:
        """Why a new connection from ``addr`` is refused, or None to accept it.

        The global cap itself is the Site's check; this adds the per-address
        cap and the reserve.
        """
        limits = self.address_limits
        key = address_key(addr)
        if key == "unix" or self._exempt(key):
            # Local sockets are guarded by file permissions; proxies carry many clients.
            return None
        held = self.open_from(key)
        if limits.max_per_address and held >= limits.max_per_address:
            self._warn_once(key, "per-address cap")
            return PER_ADDRESS_REFUSAL
        free = self.max_connections - len(self)
        if limits.reserved and free <= limits.reserved and held >= limits.light_threshold:
            self._warn_once(key, "reserved share")
            return PER_ADDRESS_REFUSAL
        return None

    def _warn_once(self, key: str, rule: str) -> None:
        """One log line per address until its connections drop to zero."""
        if key not in self._warned:
            self._warned.add(key)
            log.warn(
                "refusing connections from {address} ({held} open): {rule}",
                address=key,
                held=self.open_from(key),
                rule=rule,
            )

    def registerProtocol(self, protocol: ProtocolWrapper) -> None:
        """Count the connection under its peer's address too."""
        super().registerProtocol(protocol)
        transport = protocol.transport
        key = address_key(transport.getPeer()) if transport is not None else "unix"
        self._keys[protocol] = key
        self._by_address[key] = self._by_address.get(key, 0) + 1

    def unregisterProtocol(self, protocol: ProtocolWrapper) -> None:
        """Forget the connection (an address with none left is dropped)."""
        key = self._keys.pop(protocol, None)
        if key is not None:
            left = self._by_address.get(key, 0) - 1
            if left > 0:
                self._by_address[key] = left
            else:
                self._by_address.pop(key, None)
                self._warned.discard(key)
        super().unregisterProtocol(protocol)


class RefusedAddress(TwistedProtocol):
    """Over the per-address budget: one 503, then close; nothing is read."""

    def connectionMade(self) -> None:
        """Answer and hang up at once."""
        transport = cast(ITransport, self.transport)
        transport.write(
            raw_error_response(
                503,
                PER_ADDRESS_REFUSAL,
                error_type="api_error",
                code="too_many_connections",
                extra_headers=[(b"retry-after", b"1")],
            )
        )
        transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        """The request is not read."""
