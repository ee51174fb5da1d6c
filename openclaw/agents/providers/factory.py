# -*- test-case-name: tests.test_provider_factory -*-
"""Build a :class:`ModelProvider` from its ``models.providers.<id>`` config."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IAgent

from openclaw.agents.providers.base import ModelProvider
from openclaw.agents.providers.pool import UpstreamPool
from openclaw.config.model import ProviderConfig


def build_provider(
    config: ProviderConfig,
    reactor: Any,
    pool: UpstreamPool | None,
    *,
    agent: IAgent | None = None,
) -> ModelProvider:
    """The provider for ``config.api``.

    ``reactor`` must provide ``IReactorTime`` (timers) and, for the HTTP
    APIs, TCP and name resolution. One ``pool`` is meant to be shared by all
    providers so connections to one upstream are reused (without one, the
    provider gets a pool of its own). ``agent`` (any Twisted ``IAgent``)
    replaces the pool: tests pass an in-memory one.

    Each API's module is imported when a provider of that API is built, so
    a gateway that never uses Anthropic never loads its code.
    """
    clock: IReactorTime = reactor
    if config.api == "demo":
        from openclaw.agents.providers.demo import DemoProvider

        return DemoProvider(config, clock=clock)
    if agent is None and pool is None:
        pool = UpstreamPool(reactor)
    if config.api == "openai-completions":
        from openclaw.agents.providers.openai_completions import OpenAICompletionsProvider

        return OpenAICompletionsProvider(config, client=pool, agent=agent, clock=clock)
    if config.api == "anthropic-messages":
        from openclaw.agents.providers.anthropic_messages import AnthropicMessagesProvider

        return AnthropicMessagesProvider(config, client=pool, agent=agent, clock=clock)
    raise ValueError(f"unknown provider api {config.api!r}")
