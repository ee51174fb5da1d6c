"""Value types shared by several layers: token usage, tool calls, images, stop reasons.

The session transcript stores them, the runtime produces them and the
adapters render them; keeping them here lets the sessions layer record a turn
without importing the agent runtime.
"""

from __future__ import annotations

from typing import Literal

from attrs import frozen

StopReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "aborted"]


@frozen
class ImageInput:
    """An image attached to the current user turn (base64 as sent, plus its type)."""

    data: str
    mime_type: str


@frozen
class Usage:
    """Token usage in OpenClaw's vocabulary."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    total: int = 0

    def as_openclaw(self) -> dict[str, int]:
        """The ``{input, output, cacheRead, cacheWrite, total}`` shape."""
        return {
            "input": self.input,
            "output": self.output,
            "cacheRead": self.cache_read,
            "cacheWrite": self.cache_write,
            "total": self.total,
        }


@frozen
class ToolCall:
    """A tool call the model asked the client to run; ``arguments`` is JSON text."""

    id: str
    name: str
    arguments: str
