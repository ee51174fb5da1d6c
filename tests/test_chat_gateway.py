"""The endpoints inside the assembled gateway (its Klein app, Site and Request class)."""

from __future__ import annotations

from typing import Any

from attrs import evolve
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config.model import AuthConfig, Config, ImagesConfig
from openclaw.gateway.assembly import build_gateway
from tests.chat_fakes import FakeRuntime, RawConnection, chat_body, make_config


def gateway(enabled: bool = True) -> tuple[Any, FakeRuntime, RawConnection]:
    """A gateway over a fake runtime and one raw connection to its Site."""
    config: Config = make_config(
        auth=AuthConfig(mode="token", token="secret", rate_limit=None),
        keep_alive=15,
        images=ImagesConfig(),
    )
    if not enabled:
        chat = evolve(config.gateway.http.chat_completions, enabled=False)
        config = evolve(
            config,
            gateway=evolve(config.gateway, http=evolve(config.gateway.http, chat_completions=chat)),
        )
    runtime = FakeRuntime()
    built = build_gateway(config, MemoryReactorClock(), runtime=runtime)
    return built, runtime, RawConnection(site=built.site)


AUTH = {"Authorization": "Bearer secret"}


class GatewayChatTests(SynchronousTestCase):
    """Routing, common headers, streaming and disconnects through the real Site."""

    def test_disabled_is_404(self) -> None:
        """With ``chatCompletions.enabled`` false both paths answer 404."""
        for path in ("/v1/chat/completions", "/v1/models"):
            _, runtime, conn = gateway(enabled=False)
            conn.send(chat_body(), path=path, headers=AUTH)
            self.assertEqual(conn.response().status, 404)
            self.assertEqual(runtime.requests, [])

    def test_completion_has_common_headers(self) -> None:
        """A completion carries ``x-request-id`` and the security headers."""
        _, runtime, conn = gateway()
        runtime.on_start = lambda run: run.finish("hello")
        conn.send(chat_body(), headers=AUTH)
        response = conn.response()
        self.assertEqual(response.status, 200)
        self.assertTrue(response.headers["x-request-id"].startswith("req_"))
        self.assertEqual(response.headers["x-content-type-options"], "nosniff")
        # A conversation is never kept by a shared or browser cache.
        self.assertEqual(response.headers["cache-control"], "no-store")
        self.assertIn(b'"content":"hello"', response.body)

    def test_errors_have_request_id(self) -> None:
        """Errors carry the (echoed) request id too."""
        _, _, conn = gateway()
        conn.send(chat_body(), headers={"x-request-id": "abc-123"})
        response = conn.response()
        self.assertEqual(response.status, 401)
        self.assertEqual(response.headers["x-request-id"], "abc-123")

    def test_stream_and_in_flight(self) -> None:
        """A stream completes through the gateway's Request; in-flight drains after it."""
        built, runtime, conn = gateway()
        conn.send(chat_body(stream=True), headers=AUTH)
        self.assertEqual(len(built.site.in_flight), 1)
        self.assertEqual(
            conn.response().headers["content-type"], "text/event-stream; charset=utf-8"
        )
        runtime.last_run.say("hi")
        runtime.last_run.finish()
        response = conn.response()
        self.assertTrue(response.complete)
        self.assertEqual(response.events()[-1], "[DONE]")
        self.assertEqual(len(built.site.in_flight), 0)

    def test_disconnect_mid_stream(self) -> None:
        """A lost client cancels the run and leaves nothing in flight."""
        built, runtime, conn = gateway()
        conn.send(chat_body(stream=True), headers=AUTH)
        conn.disconnect()
        self.assertEqual(runtime.last_run.cancel_calls, 1)
        self.assertEqual(len(built.site.in_flight), 0)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_models_route(self) -> None:
        """``/v1/models/openclaw%2Fbeta`` reaches the models endpoint."""
        _, _, conn = gateway()
        conn.send(b"", method="GET", path="/v1/models/openclaw%2Fbeta", headers=AUTH)
        self.assertIn(b'"id":"openclaw/beta"', conn.response().body)
