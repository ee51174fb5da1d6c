# -*- test-case-name: tests.test_provider_factory -*-
"""Build a :class:`ModelProvider` from its ``models.providers.<id>`` config."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IAgent

from openclaw.agents.providers.anthropic_messages import AnthropicMessagesProvider
from openclaw.agents.providers.base import ModelProvider
from openclaw.agents.providers.demo import DemoProvider
from openclaw.agents.providers.openai_completions import OpenAICompletionsProvider
from openclaw.config.model import ProviderConfig


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
        agent = Agent(reactor, pool=pool)  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted
    if config.api == "openai-completions":
        return OpenAICompletionsProvider(config, agent=agent, clock=clock)
    if config.api == "anthropic-messages":
        return AnthropicMessagesProvider(config, agent=agent, clock=clock)
    raise ValueError(f"unknown provider api {config.api!r}")
