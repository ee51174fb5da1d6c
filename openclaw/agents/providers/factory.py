# -*- test-case-name: tests.test_provider_factory -*-
"""Build a :class:`ModelProvider` from its ``models.providers.<id>`` config."""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.web.client import URI, Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

from openclaw.agents.providers.anthropic_messages import AnthropicMessagesProvider
from openclaw.agents.providers.base import ModelProvider
from openclaw.agents.providers.demo import DemoProvider
from openclaw.agents.providers.openai_completions import OpenAICompletionsProvider
from openclaw.config.model import ProviderConfig


@implementer(IAgentEndpointFactory)
class CachedEndpointFactory:
    """TCP (``http``) or TLS (``https``) endpoints, built once per upstream.

    Twisted's :class:`~twisted.web.client.Agent` otherwise builds a new
    ``HostnameEndpoint`` (and TLS wrapper) for every request, a measurable
    part of a turn's CPU; an endpoint is only a description of where to
    connect, so one per ``(scheme, host, port)`` serves every request.
    """

    def __init__(self, reactor: Any, policy: IPolicyForHTTPS | None = None) -> None:
        self._reactor = reactor
        self._policy = policy
        self._endpoints: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        """The endpoint for ``uri``'s scheme, host and port."""
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = self._endpoints[key] = self._build(uri)
        return endpoint

    def _build(self, uri: URI) -> IStreamClientEndpoint:
        try:
            host = uri.host.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"the upstream host {uri.host!r} is not ASCII") from None
        tcp = HostnameEndpoint(self._reactor, host, uri.port)
        if uri.scheme == b"http":
            return tcp
        if uri.scheme == b"https":
            if self._policy is None:
                self._policy = BrowserLikePolicyForHTTPS()  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted
            return wrapClientTLS(self._policy.creatorForNetloc(uri.host, uri.port), tcp)
        raise SchemeNotSupported(f"Unsupported scheme: {uri.scheme!r}")


def build_provider(
    config: ProviderConfig,
    reactor: Any,
    pool: HTTPConnectionPool | None,
    *,
    agent: IAgent | None = None,
) -> ModelProvider:
    """The provider for ``config.api``.

    ``reactor`` must provide ``IReactorTime`` (timers) and, for the HTTP
    APIs, what :class:`~twisted.web.client.Agent` needs to connect (TCP, name
    resolution). One ``pool`` is meant to be shared by all providers so
    connections to one upstream are reused. ``agent`` replaces the Agent
    built on the pool (tests pass an in-memory one).
    """
    clock: IReactorTime = reactor
    if config.api == "demo":
        return DemoProvider(config, clock=clock)
    if agent is None:
        agent = Agent.usingEndpointFactory(reactor, CachedEndpointFactory(reactor), pool=pool)  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted
    if config.api == "openai-completions":
        return OpenAICompletionsProvider(config, agent=agent, clock=clock)
    if config.api == "anthropic-messages":
        return AnthropicMessagesProvider(config, agent=agent, clock=clock)
    raise ValueError(f"unknown provider api {config.api!r}")
