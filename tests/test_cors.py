"""CORS through the assembled gateway: off by default, preflights answered
without auth for allowed origins, headers on every response (JSON, errors,
SSE) for allowed origins only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from attrs import evolve
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config.model import AuthConfig, Config, ControlUiConfig, CorsConfig, ImagesConfig
from openclaw.gateway.assembly import build_gateway
from openclaw.gateway.http.cors import BrowserOriginGuard, CorsPolicy, allowed_headers
from openclaw.gateway.http.request import GatewaySite
from tests.chat_fakes import FakeRuntime, RawConnection, RawResponse, chat_body, make_config
from tests.test_hygiene import Conn

APP = "https://app.example.com"
EVIL = "https://evil.example.net"
AUTH = {"Authorization": "Bearer secret"}
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": (
        "authorization,content-type,x-stainless-os,x-stainless-retry-count,x-custom-thing"
    ),
}


class _Gateway:
    """A gateway (token auth, chat enabled) over a fake runtime."""

    def __init__(self, origins: Sequence[str] = ()) -> None:
        config: Config = make_config(
            auth=AuthConfig(mode="token", token="secret", rate_limit=None),
            keep_alive=15,
            images=ImagesConfig(),
        )
        http = evolve(config.gateway.http, cors=CorsConfig(allowed_origins=tuple(origins)))
        config = evolve(config, gateway=evolve(config.gateway, http=http))
        self.runtime = FakeRuntime()
        self.built = build_gateway(config, MemoryReactorClock(), runtime=self.runtime)

    def request(
        self,
        method: str,
        path: str = "/v1/chat/completions",
        *,
        headers: dict[str, str] | None = None,
        body: Any = b"",
    ) -> tuple[RawConnection, RawResponse]:
        conn = RawConnection(site=self.built.site)
        conn.send(body, method=method, path=path, headers=headers)
        return conn, conn.response()


class CorsOffTests(SynchronousTestCase):
    def test_no_origins_no_cors_headers(self) -> None:
        """Without allowedOrigins no response carries CORS headers, even for a
        request with an Origin."""
        gw = _Gateway()
        gw.runtime.on_start = lambda run: run.finish("hi")
        _, response = gw.request("POST", headers={"Origin": APP, **AUTH}, body=chat_body())
        self.assertEqual(response.status, 200)
        self.assertNotIn("access-control-allow-origin", response.headers)
        self.assertNotIn("vary", response.headers)

    def test_options_on_chat_completions_is_405_when_off(self) -> None:
        """As OpenClaw: with CORS off a preflight to the endpoint is a 405."""
        gw = _Gateway()
        _, response = gw.request("OPTIONS", headers={"Origin": APP, **PREFLIGHT})
        self.assertEqual(response.status, 405)
        self.assertNotIn("access-control-allow-origin", response.headers)
        self.assertEqual(gw.runtime.requests, [])


class PreflightTests(SynchronousTestCase):
    def test_preflight_for_an_allowed_origin_is_204_without_auth(self) -> None:
        """OPTIONS with Origin and Access-Control-Request-Method, no credentials:
        204 with the origin, methods, requested headers (Authorization among
        them), Max-Age; nothing reaches the endpoint or the runtime."""
        gw = _Gateway([APP])
        _, response = gw.request("OPTIONS", headers={"Origin": APP, **PREFLIGHT})
        self.assertEqual(response.status, 204)
        self.assertEqual(response.body, b"")
        headers = response.headers
        self.assertEqual(headers["access-control-allow-origin"], APP)
        self.assertEqual(headers["vary"], "Origin")
        self.assertEqual(headers["access-control-allow-methods"], "GET, POST, OPTIONS")
        allowed = {h.strip() for h in headers["access-control-allow-headers"].split(",")}
        for name in (
            "authorization",
            "content-type",
            "x-openclaw-agent-id",
            "x-openclaw-session-key",
            "x-stainless-os",
            "x-stainless-retry-count",
            "x-custom-thing",
        ):
            self.assertIn(name, allowed)
        self.assertEqual(headers["access-control-max-age"], "600")
        self.assertTrue(headers["x-request-id"].startswith("req_"))
        self.assertNotIn("access-control-allow-credentials", headers)
        self.assertEqual(gw.runtime.requests, [])
        self.assertEqual(len(gw.built.site.in_flight), 0)

    def test_preflight_for_any_path(self) -> None:
        """The preflight is answered for every API path (models too)."""
        gw = _Gateway([APP])
        for path in ("/v1/models", "/v1/models/openclaw", "/healthz"):
            _, response = gw.request("OPTIONS", path, headers={"Origin": APP, **PREFLIGHT})
            self.assertEqual(response.status, 204, path)

    def test_preflight_from_a_foreign_origin_is_not_answered(self) -> None:
        """A disallowed origin's preflight gets no CORS headers (the browser
        blocks the call): it is routed like any OPTIONS, here 405."""
        gw = _Gateway([APP])
        _, response = gw.request("OPTIONS", headers={"Origin": EVIL, **PREFLIGHT})
        self.assertEqual(response.status, 405)
        self.assertNotIn("access-control-allow-origin", response.headers)
        self.assertEqual(response.headers["vary"], "Origin")

    def test_wildcard_allows_any_origin_and_echoes_it(self) -> None:
        """With "*" every origin is allowed; the answer names the origin itself."""
        gw = _Gateway(["*"])
        _, response = gw.request("OPTIONS", headers={"Origin": EVIL, **PREFLIGHT})
        self.assertEqual(response.status, 204)
        self.assertEqual(response.headers["access-control-allow-origin"], EVIL)

    def test_plain_options_without_request_method_is_not_a_preflight(self) -> None:
        """OPTIONS with an Origin but no Access-Control-Request-Method is routed."""
        gw = _Gateway([APP])
        _, response = gw.request("OPTIONS", headers={"Origin": APP})
        self.assertEqual(response.status, 405)
        self.assertEqual(response.headers["access-control-allow-origin"], APP)


class ActualResponseTests(SynchronousTestCase):
    def test_json_completion_carries_cors_headers(self) -> None:
        """A completion for an allowed origin: ACAO = the origin, Vary: Origin,
        x-request-id exposed."""
        gw = _Gateway([APP])
        gw.runtime.on_start = lambda run: run.finish("hello")
        _, response = gw.request("POST", headers={"Origin": APP, **AUTH}, body=chat_body())
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["access-control-allow-origin"], APP)
        self.assertEqual(response.headers["vary"], "Origin")
        self.assertIn("x-request-id", response.headers["access-control-expose-headers"])

    def test_errors_carry_cors_headers(self) -> None:
        """401, 400 and 404 answers carry them too (browser code can read the error)."""
        gw = _Gateway([APP])
        cases = [
            ("POST", "/v1/chat/completions", {}, chat_body(), 401),
            ("POST", "/v1/chat/completions", AUTH, b"{not json", 400),
            ("GET", "/v1/nope", AUTH, b"", 404),
        ]
        for method, path, auth, body, status in cases:
            _, response = gw.request(method, path, headers={"Origin": APP, **auth}, body=body)
            self.assertEqual(response.status, status)
            self.assertEqual(response.headers["access-control-allow-origin"], APP, path)

    def test_sse_stream_carries_cors_headers_from_the_first_byte(self) -> None:
        """The stream's head, written before the first event, has the headers."""
        gw = _Gateway([APP])
        conn, _ = gw.request("POST", headers={"Origin": APP, **AUTH}, body=chat_body(stream=True))
        run = gw.runtime.last_run
        run.say("Hel")
        head = conn.response()
        self.assertEqual(head.status, 200)
        self.assertEqual(head.headers["content-type"], "text/event-stream; charset=utf-8")
        self.assertEqual(head.headers["access-control-allow-origin"], APP)
        run.say("lo")
        run.finish()
        self.assertIn(b"[DONE]", conn.response().body)

    def test_foreign_origin_gets_no_allow_origin(self) -> None:
        """A disallowed origin's request is still served (CORS is enforced by
        the browser) but gets no Access-Control-Allow-Origin."""
        gw = _Gateway([APP])
        gw.runtime.on_start = lambda run: run.finish("hi")
        _, response = gw.request("POST", headers={"Origin": EVIL, **AUTH}, body=chat_body())
        self.assertEqual(response.status, 200)
        self.assertNotIn("access-control-allow-origin", response.headers)
        self.assertNotIn("access-control-expose-headers", response.headers)


class PolicyTests(SynchronousTestCase):
    def test_origin_matching(self) -> None:
        """Origins compare case-insensitively without a trailing slash; "null"
        and empty origins are never allowed."""
        policy = CorsPolicy.from_origins(["https://App.Example.com/"])
        self.assertTrue(policy.allows("https://app.example.com"))
        self.assertTrue(policy.allows("HTTPS://APP.EXAMPLE.COM/"))
        self.assertFalse(policy.allows("https://app.example.com:8443"))
        self.assertFalse(policy.allows("http://app.example.com"))
        self.assertFalse(policy.allows("null"))
        self.assertFalse(CorsPolicy.from_origins(["*"]).allows(""))
        self.assertFalse(CorsPolicy.from_origins([]).enabled)

    def test_requested_headers_are_echoed_only_when_well_formed(self) -> None:
        """Header names that are not HTTP tokens are dropped, and at most a
        bounded number are echoed."""
        value = allowed_headers(
            b"X-Ok, b@d name, x-\xe9, " + b",".join(b"x-%d" % i for i in range(200))
        )
        names = value.decode("ascii").split(", ")
        self.assertIn("x-ok", names)
        self.assertNotIn("b@d name", names)
        self.assertLess(len(names), 100)


class BrowserOriginGuardTests(SynchronousTestCase):
    """``none`` auth: CORS cannot stop a browser *sending* a simple request, so
    requests from foreign origins are refused before they reach an endpoint."""

    def setUp(self) -> None:
        config: Config = make_config(
            auth=AuthConfig(mode="none", rate_limit=None), keep_alive=15, images=ImagesConfig()
        )
        config = evolve(
            config,
            gateway=evolve(
                config.gateway, control_ui=ControlUiConfig(allowed_origins=("https://ui.test",))
            ),
        )
        self.runtime = FakeRuntime()
        self.runtime.on_start = lambda run: run.finish("ran")
        clock = MemoryReactorClock()
        built = build_gateway(config, clock, runtime=self.runtime)
        guard = BrowserOriginGuard.from_origins(
            config.gateway.control_ui.allowed_origins, built.auth.client_address
        )
        self.site = GatewaySite(
            built.root, http_config=config.gateway.http, clock=clock, origin_guard=guard
        )

    def post(self, headers: dict[str, str], peer: str = "127.0.0.1") -> RawResponse:
        conn = Conn(self.site, peer=peer)
        body = json.dumps(chat_body()).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        conn.send(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:18789\r\n"
            + head.encode()
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )
        return RawResponse.parse(conn.take())

    def test_foreign_origin_simple_request_is_refused(self) -> None:
        """A text/plain POST from a foreign page (no preflight needed) gets 401
        and never starts an agent run; an opaque "null" origin too."""
        for origin in (EVIL, "null", "file://", "http://127.0.0.1.evil.example"):
            response = self.post({"Origin": origin, "Content-Type": "text/plain"})
            self.assertEqual(response.status, 401, origin)
            self.assertEqual(json.loads(response.body)["error"]["type"], "unauthorized")
        self.assertEqual(self.runtime.requests, [])

    def test_acceptable_origins_pass(self) -> None:
        """No Origin (SDKs, curl), a listed origin, the gateway's own origin and
        a loopback page on a loopback connection are served."""
        for headers in (
            {},
            {"Origin": "https://ui.test"},
            {"Origin": "http://127.0.0.1:18789"},
            {"Origin": "http://localhost:3000"},
        ):
            self.assertEqual(self.post(headers).status, 200, headers)
        self.assertEqual(len(self.runtime.requests), 4)

    def test_loopback_origin_from_a_remote_client_is_refused(self) -> None:
        """A "localhost" origin means nothing when the connection is not loopback."""
        response = self.post({"Origin": "http://localhost:3000"}, peer="192.0.2.10")
        self.assertEqual(response.status, 401)
