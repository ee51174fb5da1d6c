"""Access lines for every request and WebSocket connection, flat JSON log
lines, secrets kept out of both, and the start-up report."""

from __future__ import annotations

import io
import json
from collections.abc import Collection
from pathlib import Path

import attrs
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    LogPublisher,
    formatEvent,
    globalLogPublisher,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from openclaw.agents.types import FailureKind, ProviderError
from openclaw.config.model import (
    AgentConfig,
    ChatCompletionsConfig,
    CorsConfig,
    RedisConfig,
    SessionConfig,
)
from openclaw.core.logformat import SecretScrubber, flat_event, flat_json_observer
from openclaw.core.secret_values import SecretValues
from openclaw.gateway.http.request import RequestHook
from openclaw.gateway.startup_report import log_startup, session_store_text
from openclaw.testing import Reply, ScriptedProvider, without_model_retry
from openclaw.testing.gateway import TEST_TOKEN, GatewayHarness, http_test_config

CHAT = {"model": "openclaw", "messages": [{"role": "user", "content": "hi"}]}


@implementer(ILogObserver)
class Collector:
    """Keeps the events of one namespace (every event when None), of the given
    levels (every level when None)."""

    def __init__(
        self, namespace: str | None = None, *, levels: Collection[LogLevel] | None = None
    ) -> None:
        self.namespace = namespace
        self.levels = levels
        self.events: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        if self.namespace is not None and event.get("log_namespace") != self.namespace:
            return
        if self.levels is None or event.get("log_level") in self.levels:
            self.events.append(event)

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def having(self, text: str) -> list[str]:
        """The lines that contain ``text``."""
        return [line for line in self.lines() if text in line]

    def attach(self, case: SynchronousTestCase) -> Collector:
        """Observe the global publisher for the rest of ``case``."""
        globalLogPublisher.addObserver(self)
        case.addCleanup(globalLogPublisher.removeObserver, self)
        return self


def access_events(case: SynchronousTestCase) -> list[LogEvent]:
    return Collector("openclaw.access").attach(case).events


class AccessLineTests(SynchronousTestCase):
    def test_every_request_gets_one_line_with_its_fields(self) -> None:
        """A probe gets an access line with client, method, path (no query),
        status, bytes, duration, agent, run id and user agent."""
        events = access_events(self)
        h = GatewayHarness.create(self.mktemp())
        h.request(b"GET", b"/healthz?token=sekrit", headers={"User-Agent": "probe/1.0"})
        (event,) = events
        self.assertEqual(event["client"], "127.0.0.1")
        self.assertEqual(event["method"], "GET")
        self.assertEqual(event["path"], "/healthz")
        self.assertEqual(event["status"], 200)
        self.assertGreater(event["bytes"], 0)
        self.assertEqual(event["duration_ms"], 0.0)
        self.assertEqual(event["agent"], "-")
        self.assertEqual(event["run_id"], "-")
        self.assertEqual(event["user_agent"], "probe/1.0")
        line = formatEvent(event)
        self.assertIn('"GET /healthz" 200', line)
        self.assertNotIn("sekrit", line)

    def test_control_characters_from_headers_are_escaped(self) -> None:
        """A User-Agent or agent header carrying terminal escapes reaches the
        line escaped: it cannot retitle, clear or colour an operator's terminal."""
        events = access_events(self)
        h = GatewayHarness.create(self.mktemp())
        hostile = "\x1b]0;pwned\x07\x1b[2J\x1b[31mX\x9b"
        h.request(b"GET", b"/healthz", headers={"User-Agent": hostile})
        h.request(b"POST", b"/v1/chat/completions", headers={"x-openclaw-agent-id": "\x1b[31mX"})
        ua, agent = events[0]["user_agent"], events[1]["agent"]
        line = formatEvent(events[0])
        for text in (ua, agent, line):
            self.assertFalse(any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text), text)
        self.assertIn("\\x1b]0;pwned\\x07", ua)
        self.assertEqual(agent, "\\x1b[31mX")

    def test_real_client_behind_a_trusted_proxy(self) -> None:
        """Through a trusted proxy the line names the forwarded client and the proxy."""
        events = access_events(self)
        base = self.mktemp()
        config = http_test_config(base)
        config = attrs.evolve(
            config, gateway=attrs.evolve(config.gateway, trusted_proxies=("10.0.0.1",))
        )
        h = GatewayHarness.create(base, config)
        h.request(b"GET", b"/readyz", headers={"X-Forwarded-For": "203.0.113.9"}, peer="10.0.0.1")
        h.request(b"GET", b"/readyz", headers={"X-Forwarded-For": "203.0.113.9"}, peer="10.0.0.2")
        self.assertEqual([e["client"] for e in events], ["203.0.113.9", "10.0.0.2"])
        self.assertEqual(events[0]["peer"], "10.0.0.1")
        self.assertIn("203.0.113.9 via 10.0.0.1", formatEvent(events[0]))

    def test_chat_completion_line_carries_the_agent_and_timing(self) -> None:
        """A completion's line names the agent header and its duration on the clock."""
        events = access_events(self)
        h = GatewayHarness.create(self.mktemp())
        h.request(
            b"POST",
            b"/v1/chat/completions",
            body=CHAT,
            token=TEST_TOKEN,
            headers={"x-openclaw-agent-id": "main"},
        )
        h.advance(0.25)
        chat = [e for e in events if e["path"] == "/v1/chat/completions"]
        self.assertEqual(len(chat), 1)
        self.assertEqual(chat[0]["status"], 200)
        self.assertEqual(chat[0]["agent"], "main")
        self.assertTrue(chat[0]["run_id"].startswith("chatcmpl"), chat[0]["run_id"])

    def test_preflight_and_foreign_origin_refusals_are_logged(self) -> None:
        """A CORS preflight and a refused foreign-origin request (auth none) get
        their lines and are counted like any request."""
        events = access_events(self)
        base = self.mktemp()
        config = http_test_config(base, metrics=True)
        gateway = attrs.evolve(
            config.gateway,
            auth=attrs.evolve(config.gateway.auth, mode="none"),
            http=attrs.evolve(
                config.gateway.http,
                cors=CorsConfig(allowed_origins=("https://app.example",)),
            ),
        )
        h = GatewayHarness.create(base, attrs.evolve(config, gateway=gateway))
        h.request(
            b"OPTIONS",
            b"/v1/chat/completions",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
            },
        )
        h.request(
            b"POST", b"/v1/chat/completions", body=CHAT, headers={"Origin": "https://evil.example"}
        )
        self.assertEqual(
            [(e["method"], e["status"]) for e in events], [("OPTIONS", 204), ("POST", 401)]
        )

    def test_refused_upgrade_is_logged_with_its_status(self) -> None:
        """An upgrade refused while draining is one line with 503, not "websocket open"."""
        events = access_events(self)
        h = GatewayHarness.create(self.mktemp())
        h.gateway.readiness.mark_stopping()
        h.request(b"GET", b"/", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        h.run_due()
        self.assertEqual([e["status"] for e in events], [503])
        self.assertNotIn("websocket", formatEvent(events[0]))

    def test_endpoint_detail_is_appended(self) -> None:
        """What an endpoint sets as openclaw_detail ends the line in parentheses."""
        events = access_events(self)
        h = GatewayHarness.create(self.mktemp())
        exchange = h.connect()
        site_request: list[object] = []
        observer = h.gateway.site.observer
        assert observer is not None
        original: RequestHook = observer

        class Spy:
            def started(self, request: object, *, upgrade: bool = False) -> None:
                site_request.append(request)
                request.openclaw_detail = "upstream rate limited"  # type: ignore[attr-defined]
                original.started(request, upgrade=upgrade)  # type: ignore[arg-type]  # a Request

            def stream_started(self) -> object:
                return original.stream_started()

        h.gateway.site.observer = Spy()  # type: ignore[assignment]
        exchange.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(formatEvent(events[-1]).endswith("(upstream rate limited)"))

    def test_websocket_connection_gets_an_open_and_a_close_line(self) -> None:
        """An upgrade is logged when handed over and again when the connection ends."""
        events = access_events(self)
        h = GatewayHarness.create(self.mktemp())
        conn = h.request(
            b"GET",
            b"/",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
                "User-Agent": "ws-client/2",
            },
        )
        self.assertIn(b"101", conn.raw().split(b"\r\n")[0])
        h.run_due()
        h.advance(3.0)
        conn.close()
        notes = [formatEvent(e) for e in events]
        self.assertEqual(len(notes), 2, notes)
        self.assertTrue(notes[0].endswith("(websocket open)"))
        self.assertIn("3000.0ms", notes[1])
        self.assertTrue(notes[1].endswith("(websocket closed)"))
        self.assertEqual(events[1]["user_agent"], "ws-client/2")


class RunLineTests(SynchronousTestCase):
    """A run endpoint's request gets the site's one line, with what the run adds."""

    def chat_line(self, h: GatewayHarness, events: list[LogEvent]) -> LogEvent:
        """The one access line of the chat request (the endpoint writes none of its own)."""
        lines = [e for e in events if e.get("path") == "/v1/chat/completions"]
        self.assertEqual(len(lines), 1, lines)
        return lines[0]

    def everything(self) -> list[LogEvent]:
        """Every log event for the rest of the test."""
        return Collector().attach(self).events

    def test_one_line_for_an_answer(self) -> None:
        """A successful completion logs one info line naming its run id, with
        no note, and nothing at all from the endpoint's own module."""
        events = self.everything()
        h = GatewayHarness.create(self.mktemp())
        exchange = h.request(b"POST", b"/v1/chat/completions", body=CHAT, token=TEST_TOKEN)
        h.run_due()
        line = self.chat_line(h, [e for e in events if e.get("log_namespace") == "openclaw.access"])
        self.assertEqual(line["log_level"], LogLevel.info)
        self.assertEqual((line["status"], line["run_id"]), (200, exchange.json()["id"]))
        self.assertTrue(formatEvent(line).endswith(f'run={line["run_id"]} ua="-"'))
        self.assertEqual(
            [e for e in events if e.get("log_namespace", "").startswith("openclaw.gateway.http")],
            [],
        )

    def test_refusal_is_logged_with_its_status(self) -> None:
        """A request refused before any run: one line, its status, no run id."""
        events = access_events(self)
        h = GatewayHarness.create(self.mktemp())
        h.request(b"POST", b"/v1/chat/completions", body={"messages": "nope"}, token=TEST_TOKEN)
        line = self.chat_line(h, events)
        self.assertEqual((line["status"], line["run_id"]), (400, "-"))

    def test_failed_run_says_why(self) -> None:
        """An upstream failure: the line has the mapped status and the failure kind."""
        events = access_events(self)
        base = self.mktemp()
        clock = MemoryReactorClock()
        error = ProviderError(FailureKind.SERVER_ERROR, "boom", status=500)
        provider = ScriptedProvider([Reply.failure(error)], clock=clock)
        config = without_model_retry(http_test_config(base))
        h = GatewayHarness.create(base, config, provider=provider, clock=clock)
        exchange = h.request(b"POST", b"/v1/chat/completions", body=CHAT, token=TEST_TOKEN)
        h.run_due()
        line = self.chat_line(h, events)
        self.assertEqual(line["status"], exchange.response()[0])
        self.assertTrue(formatEvent(line).endswith("(upstream server_error 500)"))

    def test_stream_logged_once_at_its_end(self) -> None:
        """A stream's line is written when it ends, not when it starts."""
        events = access_events(self)
        clock = MemoryReactorClock()
        provider = ScriptedProvider([Reply.text("hi", " there", delay=1.0)], clock=clock)
        h = GatewayHarness.create(self.mktemp(), provider=provider, clock=clock)
        exchange = h.request(
            b"POST", b"/v1/chat/completions", body={**CHAT, "stream": True}, token=TEST_TOKEN
        )
        h.advance(0.5)
        self.assertIn(b"text/event-stream", exchange.raw())
        self.assertEqual([e for e in events if e.get("path") == "/v1/chat/completions"], [])
        for _ in range(4):
            h.advance(1.0)
        self.assertIn(b"[DONE]", exchange.raw())
        line = self.chat_line(h, events)
        self.assertEqual(line["status"], 200)
        self.assertNotIn("(", formatEvent(line).rpartition('ua="-"')[2])

    def test_client_that_left_is_logged_once(self) -> None:
        """A client leaving mid-run: one line saying so, and the run is cancelled."""
        events = access_events(self)
        clock = MemoryReactorClock()
        provider = ScriptedProvider([Reply(hang=True)], clock=clock)
        h = GatewayHarness.create(self.mktemp(), provider=provider, clock=clock)
        exchange = h.request(b"POST", b"/v1/chat/completions", body=CHAT, token=TEST_TOKEN)
        h.run_due()
        exchange.close()
        h.advance(1.0)
        line = self.chat_line(h, events)
        self.assertTrue(formatEvent(line).endswith("(client left)"), formatEvent(line))
        self.assertTrue(h.provider.streams[0].stopped)


class JsonLineTests(SynchronousTestCase):
    def _lines(
        self, *events: LogEvent, secrets: SecretValues | None = None
    ) -> list[dict[str, object]]:
        out = io.StringIO()
        publisher = LogPublisher()
        if secrets is not None:
            publisher.addObserver(SecretScrubber(secrets))
        publisher.addObserver(flat_json_observer(out))
        for event in events:
            publisher(event)
        return [json.loads(line) for line in out.getvalue().splitlines()]

    def test_one_flat_object_per_event_without_twisted_internals(self) -> None:
        """time, level, logger, message and the event's own fields; no log_* keys."""
        collector = Collector()
        collected = collector.events
        log = Logger(namespace="openclaw.test", observer=collector)
        log.info("run {run_id} done", run_id="r-1", tokens=12)
        (line,) = self._lines(*collected)
        self.assertEqual(line["level"], "info")
        self.assertEqual(line["logger"], "openclaw.test")
        self.assertEqual(line["message"], "run r-1 done")
        self.assertEqual(line["run_id"], "r-1")
        self.assertEqual(line["tokens"], 12)
        self.assertTrue(str(line["time"]).endswith("Z"))
        self.assertFalse([k for k in line if k.startswith("log_")])

    def test_failures_become_a_traceback_field(self) -> None:
        """log.failure gives level critical and the traceback as a string field."""
        collector = Collector()
        collected = collector.events
        log = Logger(namespace="t", observer=collector)
        try:
            raise ValueError("bad thing")
        except ValueError:
            log.failure("it broke", Failure())
        (line,) = self._lines(*collected)
        self.assertEqual(line["level"], "critical")
        self.assertIn("ValueError: bad thing", str(line["traceback"]))

    def test_secrets_are_masked_in_messages_and_in_fields(self) -> None:
        """A configured secret never reaches a JSON line, whether it is in the
        formatted message or only in a field the format does not use."""
        collector = Collector()
        collected = collector.events
        log = Logger(namespace="t", observer=collector)
        log.info("token is {token}", token=TEST_TOKEN)
        log.info("request", user_agent=f"curl {TEST_TOKEN}")
        lines = self._lines(*collected, secrets=SecretValues([TEST_TOKEN]))
        text = json.dumps(lines)
        self.assertNotIn(TEST_TOKEN, text)
        self.assertIn("[redacted]", str(lines[0]["message"]))
        self.assertEqual(lines[1]["user_agent"], "curl [redacted]")

    def test_rotated_secrets_stay_masked(self) -> None:
        """After a reload adds the new secrets, old and new are both masked."""
        scrubber = SecretScrubber(SecretValues(["old-secret-value-1234"]))
        scrubber.add(SecretValues(["new-secret-value-5678"]))
        event: LogEvent = {"log_format": "{a} {b}", "a": "old-secret-value-1234"}
        event["b"] = "new-secret-value-5678"
        scrubber(event)
        self.assertEqual(formatEvent(event), "[redacted] [redacted]")

    def test_flat_event_makes_odd_values_json_safe(self) -> None:
        """Bytes, objects and non-finite floats become strings."""
        flat = flat_event({"log_format": "x", "b": b"\xff", "o": object(), "f": float("nan")})
        json.dumps(flat, allow_nan=False)


class StartupReportTests(SynchronousTestCase):
    def test_startup_names_the_redis_store_without_its_password(self) -> None:
        """With session.store redis the start-up names the URL (password masked)
        and key prefix, expanding ${VAR} from the environment."""
        config = attrs.evolve(
            http_test_config(self.mktemp()),
            session=SessionConfig(store="redis"),
        )
        redis = RedisConfig(url="redis://:${PW}@cache.internal:6380/2", key_prefix="gw1:")
        config = attrs.evolve(config, gateway=attrs.evolve(config.gateway, redis=redis))
        text = session_store_text(config, {"PW": "hunter2"})
        self.assertEqual(text, "redis redis://:***@cache.internal:6380/2, key prefix 'gw1:'")
        self.assertNotIn("hunter2", text)

    def test_startup_lines_name_config_agents_and_endpoints(self) -> None:
        """The report names the config file, each agent with its model, the
        endpoints, and how to switch on a disabled chat endpoint."""
        collector = Collector().attach(self)
        base = self.mktemp()
        config = attrs.evolve(http_test_config(base), source_path=Path("/etc/openclaw.json5"))
        off = attrs.evolve(
            config.gateway.http, chat_completions=ChatCompletionsConfig(enabled=False)
        )
        config = attrs.evolve(config, gateway=attrs.evolve(config.gateway, http=off))
        h = GatewayHarness.create(base, attrs.evolve(config, agents=attrs.evolve(
            config.agents, list=(AgentConfig(id="main", model="scripted/test-model"),)
        )))  # fmt: skip
        log_startup(config, h.gateway.runtime.agents)
        text = "\n".join(collector.lines())
        self.assertIn("config file: /etc/openclaw.json5", text)
        self.assertIn(f"sessions: files under {config.state_dir / 'agents'}", text)
        self.assertIn("agent main (default): model", text)
        self.assertIn("endpoints: /healthz, /readyz", text)
        self.assertIn("gateway.http.endpoints.chatCompletions.enabled: true", text)
