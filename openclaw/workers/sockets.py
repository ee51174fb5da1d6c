"""The listening sockets the parent binds once and lends to every worker."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from attrs import frozen
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

#: Family names on a worker's command line.
FAMILIES = {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "unix": socket.AF_UNIX}


class _NobodyHere(Factory):
    """The parent never accepts: its copy of the socket only keeps the port open."""

    noisy = False

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        return None


@frozen
class SharedListener:
    """One bound socket: its endpoint string, descriptor, family and address."""

    description: str
    port: IListeningPort
    family: str

    @property
    def fileno(self) -> int:
        """The descriptor handed to the workers."""
        fileno: int = self.port.fileno()  # type: ignore[attr-defined]  # tcp/unix Port
        return fileno

    @property
    def address(self) -> IAddress:
        """The bound address (port 0 resolved)."""
        return self.port.getHost()


def family_of(address: IAddress) -> str:
    """``inet``, ``inet6`` or ``unix`` for a bound address."""
    if isinstance(address, IPv6Address):
        return "inet6"
    if isinstance(address, IPv4Address):
        return "inet"
    if isinstance(address, UNIXAddress):
        return "unix"
    raise ValueError(f"cannot share a listener bound to {address!r}")


def describe(address: IAddress) -> str:
    """``host:port`` or the socket path, for log lines."""
    host = getattr(address, "host", None)
    if host is not None:
        return f"{host}:{getattr(address, 'port', '?')}"
    name = getattr(address, "name", address)
    return name.decode() if isinstance(name, bytes) else str(name)


def bind_listeners(reactor: Any, descriptions: Sequence[str]) -> list[SharedListener]:
    """Bind every endpoint now (before the reactor runs); never accept on them.

    Raises :class:`CannotListenError` when one cannot be bound (the others are closed).
    """
    bound: list[SharedListener] = []
    try:
        for description in descriptions:
            # Twisted leaves serverFromString unannotated.
            endpoint = serverFromString(reactor, description)  # type: ignore[no-untyped-call]
            listening: Deferred[IListeningPort] = endpoint.listen(_NobodyHere())
            outcome: list[Any] = []
            listening.addBoth(outcome.append)
            result = outcome[0] if outcome else None
            if isinstance(result, Failure):
                result.raiseException()
            if result is None:  # pragma: no cover - tcp/unix listen synchronously
                raise RuntimeError(f"{description}: listen did not complete")
            port: IListeningPort = result
            # Keep the socket (and its backlog) open, but leave accepting to the workers.
            port.stopReading()  # type: ignore[attr-defined]  # tcp/unix Port
            bound.append(SharedListener(description, port, family_of(port.getHost())))
    except BaseException:
        close_listeners(bound)
        raise
    return bound


def close_listeners(listeners: Sequence[SharedListener]) -> None:
    """Close the parent's copies (the workers keep theirs until they stop)."""
    for listener in listeners:
        listener.port.stopListening()
