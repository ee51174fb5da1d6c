"""The CLI's WebSocket client against the real WebSocket factory, in this process.

``openclaw gateway call`` and remote ``openclaw agent`` are also run as real
subprocesses (tests/test_cli.py); these tests drive
:func:`openclaw.cli.ws_client.call_gateway` over a loopback socket so the
client's handshake, final-response wait and failures are covered directly.
"""

from __future__ import annotations

import io
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import Site

from openclaw.agents.types import ToolEvent
from openclaw.cli.ws_client import (
    GatewayCallError,
    Target,
    call_gateway,
    print_tool_event,
    resolve_target,
)
from openclaw.config.model import RateLimitConfig
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.ws.logbuffer import LogBuffer
from openclaw.testing import FakeRun
from tests.ws_fakes import (
    TOKEN,
    FakeAgent,
    FakeAgents,
    FakeRuntime,
    FakeSessions,
    build_ws_factory,
    make_config,
)


class CallGatewayTests(TestCase):
    """call_gateway against the gateway's WebSocket factory on 127.0.0.1."""

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        config = make_config(rate_limit=RateLimitConfig())
        self.runtime = FakeRuntime(reactor)
        factory = build_ws_factory(
            config=config,
            runtime=self.runtime,
            auth=GatewayAuth(config.gateway.auth, reactor),
            reactor=reactor,
            log_buffer=LogBuffer(),
            started_at_ms=int(reactor.seconds() * 1000),
            sessions=FakeSessions(),
            agents=FakeAgents([FakeAgent("main", is_default=True)]),
        )
        site = Site(WebSocketResource(factory))
        # typing note: twisted.web's Site predates the generic ServerFactory annotations.
        self.port: IListeningPort = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]
        self.addCleanup(self.port.stopListening)
        address = self.port.getHost()
        assert isinstance(address, IPv4Address)
        self.url = f"ws://127.0.0.1:{address.port}"

    @inlineCallbacks
    def test_health_call(self) -> Any:
        """Handshake with the token, one request, the response frame back."""
        frame = yield call_gateway(self.reactor, Target(self.url, token=TOKEN), "health")
        self.assertTrue(frame["ok"])
        self.assertEqual(frame["type"], "res")
        self.assertIn("ok", frame["payload"])

    @inlineCallbacks
    def test_agent_waits_for_the_final_response(self) -> Any:
        """With ``expect_final`` the ``accepted`` answer is skipped and the call
        fires with the run's final payload."""

        def answer(run: FakeRun) -> None:
            self.reactor.callLater(0, run.finish, "Hello from the agent")

        self.runtime.observe_runs(answer)
        frame = yield call_gateway(
            self.reactor,
            Target(self.url, token=TOKEN),
            "agent",
            {"message": "hi", "idempotencyKey": "cli-1"},
            expect_final=True,
        )
        self.assertTrue(frame["ok"])
        self.assertEqual(frame["payload"]["status"], "ok")
        payloads = frame["payload"]["result"]["payloads"]
        self.assertEqual(payloads[0]["text"], "Hello from the agent")
        self.assertEqual(self.runtime.started[0].request.message, "hi")

    @inlineCallbacks
    def test_tool_events_reach_a_tool_events_client(self) -> Any:
        """With caps ["tool-events"] the run's tool events reach ``on_event``, and the
        remote agent command's formatter turns them into stderr lines."""

        def answer(run: FakeRun) -> None:
            def go() -> None:
                run.start()
                run.emit(ToolEvent(run.run_id, "start", "read", "c1", 1, args={"path": "a.md"}))
                run.emit(ToolEvent(run.run_id, "result", "read", "c1", 2, result="hello\nmore"))
                run.finish("done")

            self.reactor.callLater(0, go)

        self.runtime.observe_runs(answer)
        events: list[dict[str, Any]] = []
        frame = yield call_gateway(
            self.reactor,
            Target(self.url, token=TOKEN),
            "agent",
            {"message": "hi", "idempotencyKey": "cli-2"},
            expect_final=True,
            caps=["tool-events"],
            on_event=events.append,
        )
        self.assertTrue(frame["ok"])
        err = io.StringIO()
        for event in events:
            print_tool_event(event, err)
        self.assertEqual(
            err.getvalue().splitlines(), ['[tool] read {"path": "a.md"}', "[tool] read ok: hello"]
        )

    @inlineCallbacks
    def test_wrong_token_is_a_call_error(self) -> Any:
        """A refused ``connect`` fails the call with the gateway's message."""
        d = call_gateway(self.reactor, Target(self.url, token="wrong-token"), "health")
        error = yield self.assertFailure(d, GatewayCallError)
        self.assertIn("unauthorized", str(error))

    @inlineCallbacks
    def test_refused_connection_is_a_call_error(self) -> Any:
        """Nothing listening: the call fails saying it cannot connect."""
        yield self.port.stopListening()
        d = call_gateway(self.reactor, Target(self.url, token=TOKEN), "health")
        error = yield self.assertFailure(d, GatewayCallError)
        self.assertIn("cannot connect", str(error))


class TargetTests(SynchronousTestCase):
    def test_bad_url_scheme_is_refused(self) -> None:
        """Only ws:// and wss:// URLs are called."""
        with self.assertRaises(GatewayCallError):
            call_gateway(Clock(), Target("http://127.0.0.1:1", token=TOKEN), "health")

    def test_url_override_needs_credentials(self) -> None:
        """An explicit gateway URL without a token or password is refused (the
        config's secret is not sent to a URL the config did not name)."""
        with self.assertRaises(GatewayCallError):
            resolve_target(url="ws://127.0.0.1:1", token=None, password=None, env={})

    def test_environment_supplies_url_and_token(self) -> None:
        """OPENCLAW_GATEWAY_URL and OPENCLAW_GATEWAY_TOKEN are used when no flag is given."""
        target = resolve_target(
            url=None,
            token=None,
            password=None,
            env={"OPENCLAW_GATEWAY_URL": "ws://127.0.0.1:9", "OPENCLAW_GATEWAY_TOKEN": "t"},
        )
        self.assertEqual(target, Target("ws://127.0.0.1:9", token="t"))
