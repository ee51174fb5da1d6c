# -*- test-case-name: tests.test_fake_upstream -*-
"""Consumers for driving a provider by hand: a sink that records a stream and
an in-memory HTTP client for the fake upstreams."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.task import Clock
from twisted.web.iweb import IAgent
from twisted.web.resource import Resource

from openclaw.agents.types import ToolCall, Usage
from openclaw.testing.upstream import BATCH_YIELD


class RecordingSink:
    """A :class:`~openclaw.agents.providers.base.StreamSink` that records
    everything a provider stream delivers (for tests and benchmarks).

    ``on_text_hook`` runs after each text delta; tests use it to pause or
    stop the stream from inside a callback, as a real consumer would.
    """

    def __init__(self, on_text_hook: Callable[[str], None] | None = None) -> None:
        self.deltas: list[str] = []
        self.tool_pieces: list[tuple[int, str | None, str | None, str]] = []
        self.usages: list[Usage] = []
        self._hook = on_text_hook

    @property
    def text(self) -> str:
        """All text so far."""
        return "".join(self.deltas)

    def tool_calls(self) -> list[ToolCall]:
        """The tool calls assembled from their pieces, by index."""
        ids: dict[int, str] = {}
        names: dict[int, str] = {}
        arguments: dict[int, list[str]] = {}
        for index, call_id, name, piece in self.tool_pieces:
            if call_id is not None:
                ids[index] = call_id
            if name is not None:
                names[index] = name
            arguments.setdefault(index, []).append(piece)
        return [
            ToolCall(id=ids.get(i, ""), name=names.get(i, ""), arguments="".join(arguments[i]))
            for i in sorted(arguments)
        ]

    def on_text(self, delta: str) -> None:
        """Record a text delta."""
        self.deltas.append(delta)
        if self._hook is not None:
            self._hook(delta)

    def on_tool_call(
        self, index: int, call_id: str | None, name: str | None, arguments_delta: str
    ) -> None:
        """Record a tool call piece."""
        self.tool_pieces.append((index, call_id, name, arguments_delta))

    def on_usage(self, usage: Usage) -> None:
        """Record a usage report."""
        self.usages.append(usage)


class InMemoryClient:
    """An :class:`~twisted.web.iweb.IAgent` wired to a fake upstream in memory.

    Give ``client.agent`` to a provider instead of a real Agent, then call
    :meth:`pump` to let the fake write (it schedules on ``clock``) and move
    the bytes; everything stays synchronous and deterministic. Real HTTP/1.1
    framing is used on both sides (``treq.testing.RequestTraversalAgent``), but
    there is no socket backpressure in memory: use a loopback port for that.
    Needs ``treq`` (in the ``test`` extra; the gateway itself does not use it).
    """

    def __init__(self, resource: Resource, clock: Clock) -> None:
        from treq.testing import RequestTraversalAgent

        self._traversal = RequestTraversalAgent(resource)  # type: ignore[no-untyped-call]  # typing note: treq.testing is untyped
        self.agent: IAgent = self._traversal
        self.clock = clock

    def pump(self, rounds: int = 10, step: float = BATCH_YIELD) -> None:
        """Advance the clock by ``step`` and deliver the bytes, ``rounds`` times
        (each round lets a zero-delay stream write one more batch)."""
        for _ in range(rounds):
            self.clock.advance(step)
            self._traversal.flush()  # type: ignore[no-untyped-call]  # typing note: as above

    def advance(self, seconds: float) -> None:
        """Move the clock on, then pump."""
        self.clock.advance(seconds)
        self.pump()
