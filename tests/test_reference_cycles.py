"""A finished request is freed by reference counting, not by the cycle collector.

Objects caught in a reference cycle live until Python's cycle collector runs,
and under load that collector pauses the event loop for tens of milliseconds
each time it walks them (issue 16). The gateway here is the real one: its
Site on a loopback port, the real runtime and OpenAI provider, a fake
upstream on another loopback port. With ``gc.DEBUG_SAVEALL`` whatever the
collector had to free is kept in ``gc.garbage``, where this test looks for the
gateway's objects.
"""

from __future__ import annotations

import gc
from collections.abc import Generator
from pathlib import Path
from typing import Any

import treq
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers

from openclaw.agents.runtime import build_runtime
from openclaw.config.loader import config_from_mapping
from openclaw.gateway.assembly import Gateway, build_gateway
from openclaw.testing import FakeOpenAIUpstream, FakeReply
from tests.gateway_process import TOKEN
from tests.integration_support import UPSTREAM_KEY, UpstreamPort, one_fake_agent


def _gateway_garbage() -> list[str]:
    """Collect, and name the gateway objects the collector had to free."""
    gc.collect()
    return sorted(
        f"{type(o).__module__}.{type(o).__qualname__}"
        for o in gc.garbage
        if type(o).__module__.startswith("openclaw.")
        and not type(o).__module__.startswith("openclaw.testing")
    )


class ReferenceCycleTests(TestCase):
    """Answers, streamed or not, leave nothing for the cycle collector."""

    timeout = 30

    # typing note: trial waits for a Deferred returned by setUp.
    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:  # type: ignore[override]
        from twisted.internet import reactor

        self.reactor: Any = reactor
        upstream_port = UpstreamPort()
        self.addCleanup(upstream_port.close)
        self.fake = FakeOpenAIUpstream(reactor, api_key=UPSTREAM_KEY)
        served = upstream_port.serve(reactor, self.fake)
        self.addCleanup(served.close)
        document = {
            "gateway": {
                "auth": {"mode": "token", "token": TOKEN},
                "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
            },
            **one_fake_agent(upstream_port.port),
        }
        state = Path(self.mktemp())
        config = config_from_mapping(document, env={}, state_dir=state).config
        self.runtime = build_runtime(config, reactor)
        self.gateway: Gateway = build_gateway(config, reactor, runtime=self.runtime)
        self.gateway.readiness.mark_ready(reactor)
        endpoint = serverFromString(reactor, "tcp:0:interface=127.0.0.1")
        self.port: IListeningPort = yield endpoint.listen(self.gateway.site)
        self.url = f"http://127.0.0.1:{self.port.getHost().port}/v1/chat/completions"
        self.addCleanup(self._stop)

    @inlineCallbacks
    def _stop(self) -> Any:
        yield self.gateway.site.connections.when_empty()
        yield self.port.stopListening()
        yield self.runtime.shutdown()

    @inlineCallbacks
    def _ask(self, stream: bool) -> Any:
        self.fake.enqueue(FakeReply(text="hello there"))
        response = yield treq.post(
            self.url,
            json={
                "model": "openclaw/main",
                "stream": stream,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers=Headers({b"Authorization": [f"Bearer {TOKEN}".encode()]}),
            persistent=False,
        )
        body = yield treq.content(response)
        self.assertEqual(response.code, 200, body)
        return body

    @inlineCallbacks
    def test_answers_leave_no_cycles(self) -> Any:
        """After a warm-up answer (first-use imports and caches), a plain and a
        streamed answer leave no gateway object to the cycle collector."""
        yield self._ask(stream=False)
        gc.collect()
        gc.garbage.clear()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            plain = yield self._ask(stream=False)
            streamed = yield self._ask(stream=True)
            yield self.gateway.site.connections.when_empty()
            leftovers = _gateway_garbage()
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        self.assertIn(b"hello there", plain)
        self.assertIn(b"data: [DONE]", streamed)
        self.assertEqual(leftovers, [])
