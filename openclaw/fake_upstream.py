"""Deprecated: the fake upstreams moved to :mod:`openclaw.testing`.

``from openclaw.fake_upstream import FakeOpenAIUpstream`` keeps working (with
a :class:`DeprecationWarning`); import from :mod:`openclaw.testing` instead.
"""

from __future__ import annotations

import warnings

from openclaw.testing.sinks import InMemoryClient, RecordingSink
from openclaw.testing.upstream import (
    BATCH_YIELD,
    FailureMode,
    FakeReply,
    FakeToolCall,
    FakeUpstream,
    FakeUsage,
    ReceivedRequest,
)
from openclaw.testing.upstream_formats import FakeAnthropicUpstream, FakeOpenAIUpstream

__all__ = [
    "BATCH_YIELD",
    "FailureMode",
    "FakeAnthropicUpstream",
    "FakeOpenAIUpstream",
    "FakeReply",
    "FakeToolCall",
    "FakeUpstream",
    "FakeUsage",
    "InMemoryClient",
    "ReceivedRequest",
    "RecordingSink",
]

warnings.warn(
    "openclaw.fake_upstream is deprecated; import these names from openclaw.testing",
    DeprecationWarning,
    stacklevel=2,
)
