"""Model providers: OpenAI-compatible, Anthropic Messages, and the offline demo.

``build_provider(config, reactor, pool)`` is the entry point the runtime uses;
the interface the providers implement lives in :mod:`.base`. The names below
are imported on first use, so importing the package loads no provider.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openclaw.agents.providers.anthropic_messages import AnthropicMessagesProvider
    from openclaw.agents.providers.base import (
        ModelCall,
        ModelMessage,
        ModelProvider,
        ModelStream,
        StreamOutcome,
        StreamSink,
    )
    from openclaw.agents.providers.demo import DemoProvider
    from openclaw.agents.providers.factory import build_provider
    from openclaw.agents.providers.http import HTTPModelStream, make_pool
    from openclaw.agents.providers.openai_completions import OpenAICompletionsProvider

_WHERE = {
    "AnthropicMessagesProvider": "anthropic_messages",
    "DemoProvider": "demo",
    "HTTPModelStream": "http",
    "ModelCall": "base",
    "ModelMessage": "base",
    "ModelProvider": "base",
    "ModelStream": "base",
    "OpenAICompletionsProvider": "openai_completions",
    "StreamOutcome": "base",
    "StreamSink": "base",
    "build_provider": "factory",
    "make_pool": "http",
}

__all__ = [
    "AnthropicMessagesProvider",
    "DemoProvider",
    "HTTPModelStream",
    "ModelCall",
    "ModelMessage",
    "ModelProvider",
    "ModelStream",
    "OpenAICompletionsProvider",
    "StreamOutcome",
    "StreamSink",
    "build_provider",
    "make_pool",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
