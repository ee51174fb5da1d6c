"""build_provider picks the implementation for each ``api``."""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.providers import (
    AnthropicMessagesProvider,
    DemoProvider,
    OpenAICompletionsProvider,
    build_provider,
    make_pool,
)
from openclaw.agents.providers.base import ModelCall, ModelMessage
from openclaw.config.model import ProviderConfig
from openclaw.fake_upstream import RecordingSink


class BuildProviderTests(SynchronousTestCase):
    """One entry point for every configured provider."""

    def test_each_api(self) -> None:
        """Each api value gets its provider, keeping the provider id."""
        reactor = MemoryReactorClock()
        pool = make_pool(reactor)
        cases = {
            "openai-completions": OpenAICompletionsProvider,
            "anthropic-messages": AnthropicMessagesProvider,
            "demo": DemoProvider,
        }
        for api, cls in cases.items():
            provider = build_provider(ProviderConfig(id=f"p-{api}", api=api), reactor, pool)  # type: ignore[arg-type]
            self.assertIsInstance(provider, cls)
            self.assertEqual(provider.provider_id, f"p-{api}")

    def test_demo_needs_no_pool(self) -> None:
        """The demo provider streams on the given clock without any network."""
        clock = Clock()
        provider = build_provider(ProviderConfig(id="demo", api="demo"), clock, None)
        sink = RecordingSink()
        results: list[object] = []
        provider.stream(
            ModelCall(model="demo", messages=(ModelMessage(role="user", content="hey"),)), sink
        ).done.addBoth(results.append)
        for _ in range(20):
            clock.advance(0)
        self.assertEqual(sink.text, 'Demo reply (no model configured): you said "hey".')
        self.assertEqual(len(results), 1)

    def test_uses_the_reactor_to_connect(self) -> None:
        """The HTTP providers connect through the injected reactor; stopping
        before the connection is made cancels the attempt."""
        reactor = MemoryReactorClock()
        provider = build_provider(
            ProviderConfig(id="local", api="openai-completions", base_url="http://127.0.0.1:9/v1"),
            reactor,
            make_pool(reactor),
        )
        stream = provider.stream(
            ModelCall(model="m", messages=(ModelMessage(role="user", content="x"),)),
            RecordingSink(),
        )
        [(host, port, _factory, _timeout, _bind)] = reactor.tcpClients
        self.assertEqual((host, port), ("127.0.0.1", 9))
        stream.stopProducing()
        self.failureResultOf(stream.done, CancelledError)
        self.assertEqual([c for c in reactor.getDelayedCalls() if c.active()], [])

    def test_make_pool(self) -> None:
        """make_pool is persistent with a short idle lifetime."""
        pool = make_pool(MemoryReactorClock(), max_per_host=4)
        self.assertTrue(pool.persistent)
        self.assertEqual((pool.maxPersistentPerHost, pool.cachedConnectionTimeout), (4, 30))
