"""The HTTP foundation: probes, 404s, common headers, body limits, WS dispatch."""

from __future__ import annotations

import json
from typing import Any

import treq
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from openclaw.config.model import HttpConfig
from openclaw.gateway.http.app import GatewayHttpApp
from openclaw.gateway.http.request import GatewaySite, choose_request_id
from openclaw.gateway.lifecycle import InFlight, Readiness
from openclaw.gateway.resource import GatewayRootResource


class _Marker(Resource):
    """Stands in for the WebSocket resource: says which side served the request."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        return b"websocket-side"


class _Echo:
    """A chat-completions stand-in that records the bodies it saw."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def handle(self, request: Request) -> bytes:
        assert request.content is not None
        request.content.seek(0)
        self.bodies.append(request.content.read())
        return b"handled"


def _app(readiness: Readiness, clock: MemoryReactorClock, chat: Any = None) -> GatewayHttpApp:
    return GatewayHttpApp(readiness=readiness, clock=clock, chat_completions=chat, models=chat)


class ProbeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.readiness = Readiness()
        root = GatewayRootResource(
            http=_app(self.readiness, self.clock).resource(), websocket=_Marker()
        )
        self.client: Any = StubTreq(root)

    def _get(self, path: str, method: str = "GET", **kw: Any) -> tuple[Any, bytes]:
        response = self.successResultOf(self.client.request(method, "http://gw" + path, **kw))
        body = self.successResultOf(treq.content(response))
        return response, body

    def test_health_and_healthz(self) -> None:
        """Liveness answers {"ok":true,"status":"live"} on both paths, GET and HEAD."""
        for path in ("/health", "/healthz"):
            response, body = self._get(path)
            self.assertEqual(response.code, 200)
            self.assertEqual(json.loads(body), {"ok": True, "status": "live"})
            head, head_body = self._get(path, "HEAD")
            self.assertEqual((head.code, head_body), (200, b""))

    def test_ready_is_503_until_started_and_while_stopping(self) -> None:
        """Readiness follows the lifecycle: starting -> ready -> stopping."""
        for path in ("/ready", "/readyz"):
            self.assertEqual(self._get(path)[0].code, 503)
        self.readiness.mark_ready(self.clock)
        response, body = self._get("/readyz")
        self.assertEqual((response.code, json.loads(body)["ready"]), (200, True))
        self.readiness.mark_stopping()
        response, body = self._get("/ready")
        self.assertEqual((response.code, json.loads(body)["status"]), (503, "stopping"))

    def test_startupz_reports_uptime(self) -> None:
        """The CLI's start-up probe gets 503 while starting, then uptime."""
        self.assertEqual(self._get("/startupz")[0].code, 503)
        self.readiness.mark_ready(self.clock)
        self.clock.advance(2)
        body = json.loads(self._get("/startupz")[1])
        self.assertEqual((body["status"], body["uptimeMs"]), ("started", 2000))
        # OpenClaw's alias, and 503 draining once the gateway stops.
        self.assertEqual(json.loads(self._get("/startup")[1])["status"], "started")
        self.readiness.mark_stopping()
        for path in ("/startup", "/startupz"):
            response, body = self._get(path)
            self.assertEqual((response.code, json.loads(body)["status"]), (503, "draining"))

    def test_probe_wrong_method(self) -> None:
        """POST to a probe is 405 with Allow in OpenAI error shape."""
        response, body = self._get("/healthz", "POST")
        self.assertEqual(response.code, 405)
        self.assertIn(b"GET", response.headers.getRawHeaders(b"allow")[0])
        self.assertEqual(json.loads(body)["error"]["type"], "invalid_request_error")

    def test_unknown_path_and_disabled_endpoints_are_404(self) -> None:
        """Unknown paths are JSON 404s; the disabled OpenAI endpoints answer
        OpenClaw's plain-text ``Not Found``."""
        response, body = self._get("/nope", "GET")
        self.assertEqual(response.code, 404)
        error = json.loads(body)["error"]
        self.assertEqual(set(error), {"message", "type", "param", "code"})
        for path, method in (
            ("/v1/chat/completions", "POST"),
            ("/v1/models", "GET"),
            ("/v1/responses", "POST"),
            ("/v1/embeddings", "POST"),
        ):
            response, body = self._get(path, method)
            self.assertEqual((response.code, body), (404, b"Not Found"), path)
            self.assertEqual(
                response.headers.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"]
            )

    def test_websocket_upgrade_goes_to_the_websocket_side_on_any_path(self) -> None:
        """Upgrade: websocket requests reach the WebSocket resource whatever the path."""
        for path in ("/", "/anything/at/all", "/healthz"):
            _, body = self._get(path, headers={"Upgrade": "WebSocket", "Connection": "Upgrade"})
            self.assertEqual(body, b"websocket-side")


class _ChannelHarness:
    """A real HTTPChannel from a GatewaySite over a StringTransport."""

    def __init__(self, http_config: HttpConfig | None = None) -> None:
        self.clock = MemoryReactorClock()
        self.readiness = Readiness()
        self.readiness.mark_ready(self.clock)
        self.echo = _Echo()
        app = _app(self.readiness, self.clock, self.echo)
        root = GatewayRootResource(http=app.resource(), websocket=_Marker())
        self.site = GatewaySite(
            root, http_config=http_config or HttpConfig(), clock=self.clock, reactor=self.clock
        )
        self.channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        self.transport = StringTransport()
        assert self.channel is not None
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        assert self.channel is not None
        self.channel.dataReceived(data)


class RequestLimitTests(SynchronousTestCase):
    def test_common_headers_on_every_response(self) -> None:
        """nosniff, no-referrer and a generated x-request-id on a normal answer."""
        h = _ChannelHarness()
        h.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        out = h.transport.value().lower()
        self.assertIn(b"x-content-type-options: nosniff", out)
        self.assertIn(b"referrer-policy: no-referrer", out)
        self.assertIn(b"x-request-id: req_", out)

    def test_sane_request_id_is_echoed_and_hostile_one_replaced(self) -> None:
        """A well-formed client id is echoed; one with spaces or CR/LF is not."""
        self.assertEqual(choose_request_id(b"abc-123"), b"abc-123")
        self.assertTrue(choose_request_id(b"a b").startswith(b"req_"))
        self.assertTrue(choose_request_id(b"x" * 300).startswith(b"req_"))
        h = _ChannelHarness()
        h.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: trace-42\r\n\r\n")
        self.assertIn(b"x-request-id: trace-42", h.transport.value().lower())

    def test_declared_oversized_body_is_refused_before_reading(self) -> None:
        """Content-Length over the limit: 413 in OpenAI shape, connection closed,
        nothing dispatched."""
        h = _ChannelHarness(HttpConfig(max_body_bytes=100))
        h.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n")
        out = h.transport.value()
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "))
        body = json.loads(out.split(b"\r\n\r\n", 1)[1])
        self.assertEqual(body["error"]["message"], "Payload too large")
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(h.echo.bodies, [])

    def test_chunked_body_growing_past_the_limit_is_refused(self) -> None:
        """A chunked body is counted as it arrives; past the limit: 413 and close,
        and no more than the limit is ever stored."""
        h = _ChannelHarness(HttpConfig(max_body_bytes=100))
        h.send(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        h.send(b"40\r\n" + b"a" * 64 + b"\r\n")
        self.assertEqual(h.transport.value(), b"")
        h.send(b"40\r\n" + b"a" * 64 + b"\r\n0\r\n\r\n")
        self.assertTrue(h.transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertEqual(h.echo.bodies, [])

    def test_body_within_limit_is_dispatched(self) -> None:
        """A body at the limit reaches the endpoint intact."""
        h = _ChannelHarness(HttpConfig(max_body_bytes=100))
        h.send(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
            + b"b" * 100
        )
        self.assertEqual(h.echo.bodies, [b"b" * 100])

    def test_slow_body_gets_408(self) -> None:
        """A body that does not arrive within bodyTimeoutSeconds gets 408 and a close."""
        h = _ChannelHarness(HttpConfig(body_timeout_seconds=30))
        h.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        h.clock.advance(29)
        self.assertEqual(h.transport.value(), b"")
        h.clock.advance(1)
        out = h.transport.value()
        self.assertTrue(out.startswith(b"HTTP/1.1 408 "))
        self.assertIn(b"Request body timeout", out)
        self.assertTrue(h.transport.disconnecting)

    def test_timer_cancelled_when_body_completes(self) -> None:
        """A complete body leaves no body timer behind."""
        h = _ChannelHarness()
        h.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual([c for c in h.clock.getDelayedCalls() if "_body_timed_out" in repr(c)], [])

    def test_in_flight_counts_requests(self) -> None:
        """The site counts unfinished requests; a drained Deferred fires at zero."""
        h = _ChannelHarness()
        self.assertEqual(len(h.site.in_flight), 0)
        h.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(len(h.site.in_flight), 0)
        self.successResultOf(h.site.in_flight.drained())

    def test_in_flight_waiters(self) -> None:
        """drained() waits for the last request to finish."""
        in_flight = InFlight()
        in_flight.started()
        d = in_flight.drained()
        self.assertNoResult(d)
        in_flight.finished()
        self.successResultOf(d)


class PathEncodingTests(SynchronousTestCase):
    def test_non_utf8_path_is_a_json_400(self) -> None:
        """A percent-encoded path that is not UTF-8 gets a JSON 400, not Klein's text."""
        root = GatewayRootResource(
            http=_app(Readiness(), MemoryReactorClock()).resource(), websocket=_Marker()
        )
        client: Any = StubTreq(root)
        response = self.successResultOf(client.get("http://gw/v1/models/%FF"))
        body = json.loads(self.successResultOf(treq.content(response)))
        self.assertEqual(response.code, 400)
        self.assertEqual(body["error"]["type"], "invalid_request_error")
