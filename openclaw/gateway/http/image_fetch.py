"""Fetching remote ``image_url`` images (only when ``images.allowUrl`` is on).

The endpoint depends only on the :class:`ImageFetcher` protocol; a fetcher
fails with :class:`ImageFetchError` for anything the client should hear about
as a 400 (unreachable, too big, not an image, private address, ...).

:class:`HTTPImageFetcher` is the real one. Every hop (the URL and each
redirect, at most ``images.maxRedirects``) must pass the scheme and
``images.urlAllowlist`` checks; host names are resolved first and refused when
any address is not globally routable (loopback, private, link-local, ...), and
the connection goes to the address that was checked, so DNS rebinding cannot
slip a private address in. Bodies are read up to ``images.maxBytes`` and then
cut off; the whole fetch is bounded by ``images.timeoutMs``; the bytes must
sniff as an allowed image type.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urljoin

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    IReactorPluggableNameResolver,
    IReactorTCP,
    IReactorTime,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.protocol import connectionDone
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IResponse
from zope.interface import implementer

from openclaw import netguard
from openclaw.agents.types import ImageInput
from openclaw.config.model import ImagesConfig
from openclaw.gateway.http.openai_messages import (
    InvalidImageError,
    check_image_url,
    sniff_image_type,
)

if TYPE_CHECKING:
    from twisted.web.client import URI

log = Logger()

_REDIRECTS = {301, 302, 303, 307, 308}


class ImageFetchError(Exception):
    """A remote image that cannot be used (the reason is logged, not returned)."""


class ImageFetcher(Protocol):
    """Downloads one remote image and checks it like a data URI."""

    def fetch(self, url: str, config: ImagesConfig) -> Deferred[ImageInput]:
        """The image as base64 plus its sniffed type; fails with ImageFetchError."""
        ...


def is_public_address(host: str) -> bool:
    """True for globally routable unicast addresses, as the one SSRF guard
    (:mod:`openclaw.netguard`) classifies them: IPv6 forms that embed an IPv4
    address (mapped, NAT64, 6to4, compatible, translated) count as that IPv4."""
    ip = netguard.parse_address(host)
    return ip is not None and netguard.classify(ip) is None


Resolver = Callable[[str, int], Deferred[list[str]]]


def reactor_resolver(reactor: IReactorPluggableNameResolver) -> Resolver:
    """Resolve host names with the reactor's pluggable name resolver."""

    def resolve(host: str, port: int) -> Deferred[list[str]]:
        done: Deferred[list[str]] = Deferred()
        found: list[str] = []

        @implementer(IResolutionReceiver)
        class Receiver:
            def resolutionBegan(self, resolution: object) -> None:
                pass

            def addressResolved(self, address: IAddress) -> None:
                if isinstance(address, IPv4Address | IPv6Address):
                    found.append(address.host)

            def resolutionComplete(self) -> None:
                done.callback(found)

        reactor.nameResolver.resolveHostName(Receiver(), host, portNumber=port)
        return done

    return resolve


@implementer(IStreamClientEndpoint)
class _CheckedEndpoint:
    """Resolve, refuse non-public addresses, connect to the checked one."""

    def __init__(self, reactor: IReactorTCP, uri: URI, resolve: Resolver) -> None:
        self._reactor = reactor
        self._uri = uri
        self._resolve = resolve

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        host = self._uri.host.decode("ascii")
        literal = host.strip("[]")
        try:
            ipaddress.ip_address(literal)
        except ValueError:
            resolved = self._resolve(host, self._uri.port)
        else:
            resolved = Deferred()
            resolved.callback([literal])

        def connect(addresses: list[str]) -> Deferred[IProtocol]:
            if not addresses:
                raise ImageFetchError(f"{host} did not resolve")
            if not all(is_public_address(a) for a in addresses):
                raise ImageFetchError(f"{host} resolves to a non-public address")
            address = addresses[0]
            # typing note: Twisted's TCP6ClientEndpoint constructor is unannotated.
            endpoint_class: Any = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
            endpoint: IStreamClientEndpoint = endpoint_class(self._reactor, address, self._uri.port)
            if self._uri.scheme == b"https":
                endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
            connected: Deferred[IProtocol] = endpoint.connect(protocolFactory)
            return connected

        return resolved.addCallback(connect)


@implementer(IAgentEndpointFactory)
class PublicAddressEndpointFactory:
    """Endpoints that only ever connect to globally routable addresses."""

    def __init__(self, reactor: IReactorTCP, *, resolve: Resolver | None = None) -> None:
        """:param resolve: default: the reactor's name resolver."""
        self._reactor = reactor
        self._resolve = resolve or reactor_resolver(IReactorPluggableNameResolver(reactor))

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        return _CheckedEndpoint(self._reactor, uri, self._resolve)


def _stop(transport: object) -> None:
    """Abort a response body (its transport is a ``TransportProxyProducer``)."""
    stop = getattr(transport, "stopProducing", None)
    if stop is not None:
        stop()


class _LimitedBody(TwistedProtocol):
    """Collects a response body, cutting the connection past ``limit`` bytes."""

    def __init__(self, limit: int, done: Deferred[bytes]) -> None:
        self._limit = limit
        self._done = done
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._done.errback(ImageFetchError(f"image larger than {self._limit} bytes"))
            _stop(self.transport)
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done.called:
            return
        from twisted.web.client import ResponseDone

        if isinstance(reason.value, ResponseDone | PotentialDataLoss):
            self._done.callback(b"".join(self._parts))
        else:
            self._done.errback(ImageFetchError(f"body failed: {reason.getErrorMessage()}"))


class _Discard(TwistedProtocol):
    """Drops a body we do not want, closing its connection."""

    def connectionMade(self) -> None:
        _stop(self.transport)


class HTTPImageFetcher:
    """Fetches remote images over HTTP(S) with the limits of ``images.*``.

    ``agent`` defaults to a Twisted ``Agent`` whose connections only reach
    public addresses; tests pass an in-memory agent.
    """

    def __init__(self, reactor: IReactorTime, *, agent: IAgent | None = None) -> None:
        """:param reactor: the fetch timeouts; without ``agent`` also TCP and
        name resolution."""
        self._clock = reactor
        if agent is None:
            # Imported here: only images.allowUrl needs an HTTP client (issue 16).
            from twisted.web.client import Agent

            # typing note: Agent.usingEndpointFactory is unannotated.
            using_endpoints: Any = Agent.usingEndpointFactory
            agent = using_endpoints(reactor, PublicAddressEndpointFactory(IReactorTCP(reactor)))
        self._agent: IAgent = agent

    def fetch(self, url: str, config: ImagesConfig) -> Deferred[ImageInput]:
        def classify(failure: Failure) -> Failure:
            if isinstance(failure.value, ImageFetchError | CancelledError):
                return failure
            raise ImageFetchError(f"fetch of {url} failed: {failure.getErrorMessage()}")

        def timed_out(result: object, timeout: float) -> ImageInput:
            # Whatever the cancelled request failed with (Agent wraps the
            # CancelledError), the reason is the timeout.
            raise ImageFetchError(f"fetch of {url} timed out")

        d = Deferred.fromCoroutine(self._fetch(url, config))
        d.addTimeout(config.timeout_ms / 1000.0, self._clock, onTimeoutCancel=timed_out)
        return d.addErrback(classify)

    async def _fetch(self, url: str, config: ImagesConfig) -> ImageInput:
        current = url
        for _ in range(config.max_redirects + 1):
            try:
                check_image_url(current, config)
            except InvalidImageError as exc:
                raise ImageFetchError(str(exc)) from None
            response: IResponse = await self._agent.request(
                b"GET",
                current.encode("ascii", errors="strict"),
                Headers({b"accept": [b"image/*"], b"user-agent": [b"openclaw-twisted"]}),
            )
            if response.code in _REDIRECTS:
                locations = response.headers.getRawHeaders(b"location") or []
                response.deliverBody(_Discard())
                if not locations:
                    raise ImageFetchError(f"redirect without Location from {current}")
                current = urljoin(current, locations[-1].decode("latin-1"))
                continue
            if response.code != 200:
                response.deliverBody(_Discard())
                raise ImageFetchError(f"{current} answered {response.code}")
            length = response.length
            if isinstance(length, int) and length > config.max_bytes:
                response.deliverBody(_Discard())
                raise ImageFetchError(f"{current} is {length} bytes")
            body: Deferred[bytes] = Deferred()
            response.deliverBody(_LimitedBody(config.max_bytes, body))
            data = await body
            sniffed = sniff_image_type(data)
            allowed = {mime.lower() for mime in config.allowed_mimes}
            if sniffed is None or sniffed not in allowed:
                raise ImageFetchError(f"{current} is not an allowed image ({sniffed})")
            return ImageInput(base64.b64encode(data).decode("ascii"), sniffed)
        raise ImageFetchError(f"more than {config.max_redirects} redirects from {url}")
