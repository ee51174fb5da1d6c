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
from openclaw.agents.types import FailureKind, ProviderError
from openclaw.config.model import ProviderConfig
from openclaw.testing import RecordingSink


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
        self.assertEqual(
            sink.text, 'Demo reply (the offline demo model, not an LLM): you said "hey".'
        )
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
        """make_pool keeps idle connections per upstream for a short lifetime."""
        pool = make_pool(MemoryReactorClock(), max_per_host=4)
        self.assertEqual((pool.max_idle_per_host, pool.idle_timeout), (4, 30.0))

    def test_without_a_pool_a_provider_gets_its_own(self) -> None:
        """build_provider with neither pool nor agent still connects (own pool)."""
        reactor = MemoryReactorClock()
        provider = build_provider(
            ProviderConfig(id="local", api="openai-completions", base_url="http://127.0.0.1:9/v1"),
            reactor,
            None,
        )
        stream = provider.stream(
            ModelCall(model="m", messages=(ModelMessage(role="user", content="x"),)),
            RecordingSink(),
        )
        self.assertEqual([(h, p) for h, p, *_ in reactor.tcpClients], [("127.0.0.1", 9)])
        stream.stopProducing()
        self.failureResultOf(stream.done, CancelledError)

    def test_invalid_base_url_fails_the_call(self) -> None:
        """A base URL that is not http(s) fails each call with CONNECTION, not the build."""
        reactor = MemoryReactorClock()
        provider = build_provider(
            ProviderConfig(id="bad", api="openai-completions", base_url="ftp://example.com/v1"),
            reactor,
            make_pool(reactor),
        )
        stream = provider.stream(
            ModelCall(model="m", messages=(ModelMessage(role="user", content="x"),)),
            RecordingSink(),
        )
        error = self.failureResultOf(stream.done, ProviderError).value
        self.assertEqual(error.kind, FailureKind.CONNECTION)
        self.assertIn("scheme", error.message)
        self.assertEqual(reactor.tcpClients, [])


class EndpointCacheTests(SynchronousTestCase):
    """Upstream connections are made per scheme, host and port."""

    def test_requests_connect_through_the_reactor(self) -> None:
        """Two calls through one provider connect to the configured host twice
        (nothing answers, so nothing is pooled)."""
        reactor = MemoryReactorClock()
        provider = build_provider(
            ProviderConfig(id="local", api="openai-completions", base_url="http://127.0.0.1:9/v1"),
            reactor,
            make_pool(reactor),
        )
        call = ModelCall(model="m", messages=(ModelMessage(role="user", content="x"),))
        streams = [provider.stream(call, RecordingSink()) for _ in range(2)]
        self.assertEqual([(h, p) for h, p, *_ in reactor.tcpClients], [("127.0.0.1", 9)] * 2)
        for stream in streams:
            stream.stopProducing()
            self.failureResultOf(stream.done, CancelledError)

    def test_https_connects_with_tls_to_port_443(self) -> None:
        """An ``https`` base URL without a port connects to 443 (TLS itself is
        tested against a real TLS server in tests/test_wire_pool.py)."""
        reactor = MemoryReactorClock()
        provider = build_provider(
            ProviderConfig(id="o", api="openai-completions", base_url="https://127.0.0.1/v1"),
            reactor,
            make_pool(reactor),
        )
        stream = provider.stream(
            ModelCall(model="m", messages=(ModelMessage(role="user", content="x"),)),
            RecordingSink(),
        )
        [(host, port, _factory, _timeout, _bind)] = reactor.tcpClients
        self.assertEqual((host, port), ("127.0.0.1", 443))
        stream.stopProducing()
        self.failureResultOf(stream.done, CancelledError)

    def test_pool_keeps_enough_connections_for_64_concurrent_turns(self) -> None:
        """The default pool caches at least 64 idle connections per upstream."""
        self.assertGreaterEqual(make_pool(MemoryReactorClock()).max_idle_per_host, 64)
