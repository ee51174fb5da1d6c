"""Public fakes for trial tests of code that embeds the gateway.

* :mod:`openclaw.testing.scripted`: :class:`ScriptedProvider` (a model
  provider whose replies you script) and :func:`make_runtime` (a real runtime
  around it), plus :func:`run_due`;
* :mod:`openclaw.testing.upstream` and :mod:`openclaw.testing.upstream_formats`:
  fake OpenAI-compatible and Anthropic HTTP upstreams (real ``twisted.web``
  resources) with :class:`FakeReply` knobs;
* :mod:`openclaw.testing.runs`: :class:`FakeRun`, an ``AgentRun`` a test
  drives by hand (for tests of adapters over the runtime contract);
* :mod:`openclaw.testing.sinks`: :class:`RecordingSink` and
  :class:`InMemoryClient` for driving a provider by hand;
* :mod:`openclaw.testing.gateway`: :func:`http_test_config` (chat
  completions on, :data:`TEST_TOKEN` as the gateway token) and
  :class:`GatewayHarness` (the real gateway and Site over in-memory
  connections), for HTTP-level tests.

Every name is importable from this package; the submodules say where it lives.
"""

from __future__ import annotations

from openclaw.testing.conversations import ToolConversation, tool_results
from openclaw.testing.gateway import TEST_TOKEN, Exchange, GatewayHarness, http_test_config
from openclaw.testing.runs import FakeRun
from openclaw.testing.scripted import (
    SCRIPTED_MODEL,
    SCRIPTED_PROVIDER_ID,
    Reply,
    ScriptedProvider,
    ScriptedStream,
    ScriptedToolCall,
    collect_events,
    echo_reply,
    make_runtime,
    run_due,
    scripted_config,
    without_model_retry,
)
from openclaw.testing.sinks import InMemoryClient, RecordingSink
from openclaw.testing.upstream import (
    BATCH_YIELD,
    FailureMode,
    FakeReply,
    FakeToolCall,
    FakeUpstream,
    FakeUsage,
    ReceivedRequest,
    request_tokens,
)
from openclaw.testing.upstream_formats import FakeAnthropicUpstream, FakeOpenAIUpstream

__all__ = [
    "BATCH_YIELD",
    "SCRIPTED_MODEL",
    "SCRIPTED_PROVIDER_ID",
    "TEST_TOKEN",
    "Exchange",
    "FailureMode",
    "FakeAnthropicUpstream",
    "FakeOpenAIUpstream",
    "FakeReply",
    "FakeRun",
    "FakeToolCall",
    "FakeUpstream",
    "FakeUsage",
    "GatewayHarness",
    "InMemoryClient",
    "ReceivedRequest",
    "RecordingSink",
    "Reply",
    "ScriptedProvider",
    "ScriptedStream",
    "ScriptedToolCall",
    "ToolConversation",
    "collect_events",
    "echo_reply",
    "http_test_config",
    "make_runtime",
    "request_tokens",
    "run_due",
    "scripted_config",
    "tool_results",
    "without_model_retry",
]
