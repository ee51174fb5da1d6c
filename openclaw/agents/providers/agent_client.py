# -*- test-case-name: tests.test_provider_openai -*-
"""Run provider requests through any Twisted :class:`~twisted.web.iweb.IAgent`.

The gateway talks to upstreams through :class:`~openclaw.agents.providers.pool.UpstreamPool`;
this adapter gives the same :class:`~openclaw.agents.providers.wire.ResponseHandler`
calls from an ``IAgent``, so in-memory agents (treq's ``StubTreq``) and
embedders' own agents (a proxy, custom TLS) work with every provider.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from openclaw.agents.providers.errors import response_headers
from openclaw.agents.providers.wire import ResponseHandler, Target, abort_transport

_DONE = Failure(ResponseDone("response body complete"))  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body that is already in memory."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        """Nothing to pause: everything was written at once."""

    def resumeProducing(self) -> None:
        """Nothing to resume."""

    def stopProducing(self) -> None:
        """Nothing to stop."""


class _Body(Protocol):
    def __init__(self, exchange: _AgentExchange) -> None:
        self._exchange = exchange

    def connectionMade(self) -> None:
        self._exchange._body_connected(self.transport)  # type: ignore[arg-type]  # typing note: a TransportProxyProducer

    def dataReceived(self, data: bytes) -> None:
        self._exchange._data(data)

    def connectionLost(self, reason: Failure = _DONE) -> None:
        self._exchange._end(reason.value)


class _Discard(Protocol):
    def connectionMade(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]  # typing note: TransportProxyProducer


@implementer(IPushProducer)
class _AgentExchange:
    def __init__(self, handler: ResponseHandler) -> None:
        self._handler: ResponseHandler | None = handler
        self._request: Deferred[IResponse] | None = None
        self._transport: IPushProducer | None = None
        self._paused = False

    def start(self, agent: IAgent, target: Target, body: bytes) -> None:
        headers = Headers()
        for name, value in target.headers:
            headers.setRawHeaders(name, [value])
        try:
            d = agent.request(b"POST", target.url.encode("ascii"), headers, _BytesProducer(body))
        except Exception as exc:
            self._fail(exc)
            return
        self._request = d
        d.addCallbacks(self._response, lambda f: self._fail(f.value or Exception("failed")))

    def _fail(self, reason: BaseException) -> None:
        self._request = None
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.request_failed(reason)

    def _response(self, response: IResponse) -> None:
        self._request = None
        handler = self._handler
        if handler is None:
            response.deliverBody(_Discard())
            return
        handler.response_started(response.code, response_headers(response))
        if self._handler is None:
            response.deliverBody(_Discard())
            return
        response.deliverBody(_Body(self))
        # deliverBody resumes the transport; re-apply a pause that came first.
        if self._paused and self._transport is not None:
            self._transport.pauseProducing()

    def _body_connected(self, transport: IPushProducer) -> None:
        self._transport = transport

    def _data(self, data: bytes) -> None:
        if self._handler is not None:
            self._handler.body_data(data)

    def _end(self, reason: BaseException | None) -> None:
        self._transport = None
        handler, self._handler = self._handler, None
        if handler is not None:
            clean = isinstance(reason, (ResponseDone, PotentialDataLoss))
            handler.body_end(None if clean else reason)

    def pauseProducing(self) -> None:
        self._paused = True
        if self._transport is not None:
            self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if self._transport is not None:
            self._transport.resumeProducing()

    def stopProducing(self) -> None:
        self._handler = None
        request, self._request = self._request, None
        if request is not None:
            request.cancel()
        transport, self._transport = self._transport, None
        if transport is not None:
            _abort(transport)


def _abort(transport: IPushProducer) -> None:
    """Close now: the body's ``TransportProxyProducer.stopProducing`` is a
    graceful close on a later reactor pass, so the TCP connection it wraps
    is aborted directly when there is one."""
    connection = getattr(transport, "_producer", None)
    if callable(getattr(connection, "abortConnection", None)):
        abort_transport(connection)
    else:
        transport.stopProducing()


class AgentClient:
    """An upstream client (``request(target, body, handler)``) over an ``IAgent``."""

    def __init__(self, agent: IAgent) -> None:
        self._agent = agent

    def request(self, target: Target, body: bytes, handler: ResponseHandler) -> IPushProducer:
        """Send ``body`` to ``target`` through the agent."""
        exchange = _AgentExchange(handler)
        exchange.start(self._agent, target, body)
        return exchange
