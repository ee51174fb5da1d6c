"""Model providers: OpenAI-compatible, Anthropic Messages, and the offline demo.

``build_provider(config, reactor, pool)`` is the entry point the runtime uses;
the interface the providers implement lives in :mod:`.base`.
"""

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
