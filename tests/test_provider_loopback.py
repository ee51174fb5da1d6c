"""Providers over real loopback sockets: pooling, backpressure, close, refusal.

These use the global reactor (async trial TestCase) because socket
backpressure and connection refusal only exist with real sockets. Every test
closes its client pool, waits until the server saw every connection close,
and stops listening.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import Clock
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from openclaw.agents.providers.anthropic_messages import AnthropicMessagesProvider
from openclaw.agents.providers.base import ModelCall, ModelMessage, StreamOutcome
from openclaw.agents.providers.factory import build_provider
from openclaw.agents.providers.http import HTTPModelStream, make_pool
from openclaw.agents.providers.openai_completions import OpenAICompletionsProvider
from openclaw.agents.types import FailureKind, ProviderError, Usage
from openclaw.config.model import ProviderConfig
from openclaw.testing import (
    FakeAnthropicUpstream,
    FakeOpenAIUpstream,
    FakeReply,
    FakeUpstream,
    FakeUsage,
    RecordingSink,
)

HELLO = ModelCall(model="m", messages=(ModelMessage(role="user", content="hi"),))
#: Upper bound on body bytes a paused stream may have received (see the test).
PAUSED_BOUND = 256 * 1024
#: How far the upstream must have written beyond what the paused client read.
BACKLOG = 128 * 1024


class TrackingFactory(WrappingFactory):
    """Counts server connections and reports when all of them have closed."""

    def __init__(self, wrapped: Site) -> None:
        super().__init__(wrapped)
        self.connections_made = 0
        self._waiters: list[Deferred[None]] = []

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        """Count a new connection."""
        self.connections_made += 1
        super().registerProtocol(p)

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        """Fire the waiters when the last connection closes."""
        super().unregisterProtocol(p)
        if not self.protocols:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(None)

    def all_closed(self) -> Deferred[None]:
        """Fires once no server connection is open."""
        d: Deferred[None] = Deferred()
        if not self.protocols:
            d.callback(None)
        else:
            self._waiters.append(d)
        return d


class SinkWaiter(RecordingSink):
    """A RecordingSink that can fire a Deferred after N text deltas."""

    def __init__(self, hook: Callable[[str], None] | None = None) -> None:
        super().__init__(self._seen)
        self.hook = hook
        self._waits: list[tuple[int, Deferred[None]]] = []

    def _seen(self, delta: str) -> None:
        if self.hook is not None:
            self.hook(delta)
        ready = [(n, d) for n, d in self._waits if len(self.deltas) >= n]
        self._waits = [(n, d) for n, d in self._waits if len(self.deltas) < n]
        for _n, d in ready:
            d.callback(None)

    def wait_for_deltas(self, count: int) -> Deferred[None]:
        """Fires when ``count`` text deltas have arrived."""
        d: Deferred[None] = Deferred()
        if len(self.deltas) >= count:
            d.callback(None)
        else:
            self._waits.append((count, d))
        return d


class LoopbackTests(TestCase):
    """Real sockets between a provider and a fake upstream on 127.0.0.1."""

    timeout = 30

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.pool = make_pool(reactor)
        self.addCleanup(self.pool.closeCachedConnections)

    def serve(self, fake: FakeUpstream) -> str:
        """Listen on a loopback port; returns the base URL."""
        factory = TrackingFactory(Site(fake))
        port: IListeningPort = self.reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.factory = factory

        @inlineCallbacks
        def cleanup() -> Generator[Deferred[Any], Any, None]:
            fake.close_all()
            yield self.pool.closeCachedConnections()
            yield factory.all_closed()
            stopped = port.stopListening()
            if stopped is not None:
                yield stopped

        self.addCleanup(cleanup)
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        return f"http://127.0.0.1:{address.port}/v1"

    def openai(self, base_url: str, clock: Any = None, **kwargs: Any) -> OpenAICompletionsProvider:
        """An OpenAI provider on the real reactor (timers on ``clock`` if given)."""
        config = ProviderConfig(id="t", api="openai-completions", base_url=base_url, **kwargs)
        return OpenAICompletionsProvider(config, client=self.pool, clock=clock or self.reactor)

    @inlineCallbacks
    def test_stream_and_connection_reuse(self) -> Any:
        """Two calls stream over one persistent connection from the pool."""
        fake = FakeOpenAIUpstream(
            self.reactor, FakeReply(text="one two three", usage=FakeUsage(input_tokens=4))
        )
        provider = build_provider(
            ProviderConfig(id="t", api="openai-completions", base_url=self.serve(fake)),
            self.reactor,
            self.pool,
        )
        for _ in range(2):
            sink = RecordingSink()
            outcome = yield provider.stream(HELLO, sink).done
            self.assertEqual(sink.deltas, ["one ", "two ", "three"])
            self.assertEqual(outcome, StreamOutcome("stop", Usage(4, 3, 0, 0, 7)))
        self.assertEqual((fake.request_count, self.factory.connections_made), (2, 1))

    @inlineCallbacks
    def test_stop_closes_the_upstream_connection(self) -> Any:
        """stopProducing on a live stream closes the socket: the fake sees the
        client close while it was still streaming."""
        fake = FakeOpenAIUpstream(self.reactor, FakeReply(text="tick ", mode="endless"))
        provider = self.openai(self.serve(fake))
        sink = SinkWaiter()
        stream = provider.stream(HELLO, sink)
        yield sink.wait_for_deltas(3)
        closed = fake.wait_for_client_closes(1)
        stream.stopProducing()
        yield closed
        yield self.assertFailure(stream.done, CancelledError)
        self.assertEqual(fake.active_streams, 0)

    @inlineCallbacks
    def test_pause_stops_reading(self) -> Any:
        """A paused stream stops reading the socket: a fast endless upstream fills
        the socket buffers and is paused by backpressure, while the body bytes
        received after the pause stay within one 64 KiB read and the total under
        PAUSED_BOUND (256 KiB). Resuming continues the stream."""
        fake = FakeOpenAIUpstream(self.reactor, FakeReply.sized(1, 1000, mode="endless"))
        provider = self.openai(self.serve(fake))
        box: list[HTTPModelStream] = []
        at_pause: list[int] = []

        def pause_once(_delta: str) -> None:
            if not at_pause:
                at_pause.append(box[0].bytes_received)
                box[0].pauseProducing()

        sink = SinkWaiter(pause_once)
        stream = provider.stream(HELLO, sink)
        box.append(stream)
        yield sink.wait_for_deltas(1)
        # The fake is paused by backpressure (checked at each pause) with far
        # more written than the paused client has read: the rest sits in the
        # socket buffers, not in this process.
        yield fake.wait_for(
            lambda f: f.paused_streams == 1 and f.bytes_written > stream.bytes_received + BACKLOG
        )
        self.assertEqual(len(sink.deltas), 1)
        # At most the rest of the socket read that was being delivered when
        # the pause came (Twisted reads 64 KiB at a time).
        self.assertLessEqual(stream.bytes_received - at_pause[0], 64 * 1024)
        self.assertLess(stream.bytes_received, PAUSED_BOUND)
        stream.resumeProducing()
        yield sink.wait_for_deltas(len(sink.deltas) + 50)
        closed = fake.wait_for_client_closes(1)
        stream.stopProducing()
        yield closed
        yield self.assertFailure(stream.done, CancelledError)

    @inlineCallbacks
    def test_connection_refused(self) -> Any:
        """A closed loopback port fails with CONNECTION."""
        port = self.reactor.listenTCP(
            0, Site(FakeOpenAIUpstream(self.reactor)), interface="127.0.0.1"
        )
        number = port.getHost().port
        yield port.stopListening()
        provider = self.openai(f"http://127.0.0.1:{number}/v1")
        error = yield self.assertFailure(
            provider.stream(HELLO, RecordingSink()).done, ProviderError
        )
        self.assertEqual(error.kind, FailureKind.CONNECTION)
        self.assertIn("connect", error.message)

    @inlineCallbacks
    def test_timeout_closes_the_connection(self) -> Any:
        """The idle timeout (on an injected Clock) fails the stream with TIMEOUT
        and closes the real connection."""
        fake = FakeOpenAIUpstream(self.reactor, FakeReply(text="a b", mode="stall"))
        clock = Clock()
        provider = self.openai(self.serve(fake), clock=clock, timeout_seconds=5.0)
        sink = SinkWaiter()
        stream = provider.stream(HELLO, sink)
        yield sink.wait_for_deltas(1)
        closed = fake.wait_for_client_closes(1)
        clock.advance(5.0)
        error = yield self.assertFailure(stream.done, ProviderError)
        self.assertEqual(error.kind, FailureKind.TIMEOUT)
        yield closed

    @inlineCallbacks
    def test_reset_mid_stream(self) -> Any:
        """The server dropping the connection mid-body is CONNECTION."""
        fake = FakeOpenAIUpstream(self.reactor, FakeReply(text="a b c", mode="reset_mid_stream"))
        provider = self.openai(self.serve(fake))
        error = yield self.assertFailure(
            provider.stream(HELLO, RecordingSink()).done, ProviderError
        )
        self.assertEqual(error.kind, FailureKind.CONNECTION)

    @inlineCallbacks
    def test_anthropic_over_loopback(self) -> Any:
        """The Anthropic provider streams from the fake over a real socket."""
        fake = FakeAnthropicUpstream(self.reactor, FakeReply(text="hey you"), api_key="ak-123")
        config = ProviderConfig(
            id="a", api="anthropic-messages", base_url=self.serve(fake), api_key="ak-123"
        )
        provider = build_provider(config, self.reactor, self.pool)
        self.assertIsInstance(provider, AnthropicMessagesProvider)
        sink = RecordingSink()
        outcome = yield provider.stream(HELLO, sink).done
        self.assertEqual((sink.text, outcome.stop_reason), ("hey you", "stop"))

    @inlineCallbacks
    def test_configured_headers_replace_defaults_whatever_their_case(self) -> Any:
        """headers: {"Anthropic-Version": ..., "X-Api-Key": ...} replace the
        provider's defaults on the wire, whatever their case (both used to be
        sent, the default first)."""
        fake = FakeAnthropicUpstream(self.reactor, FakeReply(text="ok"), api_key="other-key")
        config = ProviderConfig(
            id="a",
            api="anthropic-messages",
            base_url=self.serve(fake),
            api_key="ak-123",
            headers={"Anthropic-Version": "2099-01-01", "X-Api-Key": "other-key"},
        )
        provider = build_provider(config, self.reactor, self.pool)
        sink = RecordingSink()
        yield provider.stream(HELLO, sink).done
        headers = fake.requests[0].headers
        self.assertEqual(headers["anthropic-version"], "2099-01-01")
        self.assertEqual(headers["x-api-key"], "other-key")
