"""GET /metrics: what the gateway counts, who may read it, and that labels stay bounded."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import cast

import attrs
from prometheus_client import REGISTRY
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.runtime import Runtime
from openclaw.agents.tools._proc import ProcessRegistry
from openclaw.agents.tools.catalog import CatalogReactor, ToolServices
from openclaw.agents.types import (
    AgentRequest,
    FailureKind,
    LifecycleEvent,
    ProviderError,
    RunTimeoutError,
    ToolEvent,
)
from openclaw.config.model import MetricsConfig
from openclaw.core.metrics import MAX_MODEL_LABELS, Metrics, method_label
from openclaw.gateway.assembly import build_gateway
from openclaw.gateway.http.metrics_endpoint import scrape_site
from openclaw.gateway.observability import RunMetrics, route_template
from openclaw.sessions.store import SessionStore
from openclaw.testing import FakeRun
from openclaw.testing.gateway import TEST_TOKEN, GatewayHarness, http_test_config
from openclaw.testing.scripted import (
    SCRIPTED_PROVIDER_ID,
    Reply,
    ScriptedProvider,
    ScriptedToolCall,
)

CHAT = {"model": "openclaw", "messages": [{"role": "user", "content": "hello there"}]}


def sample(exposition: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a text exposition (None when absent)."""
    for line in exposition.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        match = re.match(r"^([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)$", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


def harness(base: str, *, auth: str = "gateway", enabled: bool = True) -> GatewayHarness:
    config = http_test_config(base, metrics=enabled)
    http = config.gateway.http
    config = attrs.evolve(
        config,
        gateway=attrs.evolve(
            config.gateway,
            http=attrs.evolve(http, metrics=MetricsConfig(enabled=enabled, auth=auth)),  # type: ignore[arg-type]
        ),
    )
    return GatewayHarness.create(base, config)


def harness_with_tools(base: str) -> GatewayHarness:
    """A gateway (metrics on) whose runtime offers the real built-in tools
    (``exec`` and ``web_fetch`` fail on a Clock: not called here)."""
    clock = MemoryReactorClock()
    config = http_test_config(base, metrics=True)
    provider = ScriptedProvider(clock=clock)
    store = SessionStore(Path(base), clock=clock, fsync="never", index_flush_delay=0.0)
    services = ToolServices(
        reactor=cast(CatalogReactor, clock), registry=ProcessRegistry(clock), sessions=store
    )
    runtime = Runtime(
        config,
        clock=clock,
        providers={SCRIPTED_PROVIDER_ID: provider},
        store=store,
        tool_services=services,
    )
    gateway = build_gateway(config, clock, runtime=runtime)
    gateway.readiness.mark_ready(clock)
    return GatewayHarness(clock=clock, gateway=gateway, provider=provider)


def scrape(h: GatewayHarness, token: str | None = TEST_TOKEN) -> str:
    status, headers, body = h.request(b"GET", b"/metrics", token=token).response()
    assert status == 200, (status, body)
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return body.decode("utf-8")


class MetricsEndpointTests(SynchronousTestCase):
    def test_one_chat_completion_moves_request_run_and_token_counters(self) -> None:
        """The issue's acceptance: after one completion the request, run and
        token counters, the latency histogram, TTFT and lane wait all moved."""
        h = harness(self.mktemp())
        before = scrape(h)
        self.assertIsNone(
            sample(before, "openclaw_http_requests_total", route="/v1/chat/completions")
        )
        exchange = h.request(b"POST", b"/v1/chat/completions", body=CHAT, token=TEST_TOKEN)
        h.run_due()
        self.assertEqual(exchange.response()[0], 200)
        text = scrape(h)
        self.assertEqual(
            sample(
                text,
                "openclaw_http_requests_total",
                route="/v1/chat/completions",
                method="POST",
                status="200",
            ),
            1.0,
        )
        self.assertEqual(
            sample(
                text, "openclaw_http_request_duration_seconds_count", route="/v1/chat/completions"
            ),
            1.0,
        )
        self.assertEqual(sample(text, "openclaw_runs_total", agent="main", outcome="ok"), 1.0)
        tokens_in = sample(text, "openclaw_model_tokens_total", direction="input", agent="main")
        tokens_out = sample(text, "openclaw_model_tokens_total", direction="output")
        assert tokens_in is not None and tokens_out is not None
        self.assertGreater(tokens_in, 0)
        self.assertGreater(tokens_out, 0)
        self.assertEqual(sample(text, "openclaw_time_to_first_token_seconds_count"), 1.0)
        self.assertEqual(sample(text, "openclaw_lane_wait_seconds_count"), 1.0)
        self.assertEqual(sample(text, "openclaw_runs_active"), 0.0)
        self.assertEqual(sample(text, "openclaw_runs_queued"), 0.0)
        # The earlier scrape itself was counted under its own route.
        self.assertEqual(
            sample(text, "openclaw_http_requests_total", route="/metrics", status="200"), 1.0
        )

    def test_open_stream_shows_in_the_gauges(self) -> None:
        """While a streamed completion is open, the stream and in-flight gauges count it."""
        h = harness(self.mktemp())
        h.provider.add("one two three")
        stream = h.request(
            b"POST", b"/v1/chat/completions", body={**CHAT, "stream": True}, token=TEST_TOKEN
        )
        # The run is due on the next turn; the SSE head is written at once.
        text = scrape(h)
        self.assertEqual(sample(text, "openclaw_http_streams_active"), 1.0)
        self.assertEqual(sample(text, "openclaw_http_requests_in_flight"), 2.0)
        h.run_due()
        self.assertTrue(stream.raw().endswith(b"0\r\n\r\n"))
        text = scrape(h)
        self.assertEqual(sample(text, "openclaw_http_streams_active"), 0.0)

    def test_invented_tool_names_do_not_grow_the_exposition(self) -> None:
        """The reviewer's repro: a model calling many long invented tool names
        made a series of each (850 KB of /metrics after one request). Names the
        run does not offer count as ``other``; an offered built-in keeps its
        name; the client tool the request offered is returned to the client."""
        h = harness_with_tools(self.mktemp())
        invented = [ScriptedToolCall(f"zz{i:05d}_" + "A" * 2000) for i in range(60)]
        h.provider.add(
            Reply(
                tool_calls=(
                    ScriptedToolCall("session_status"),
                    *invented,
                    ScriptedToolCall("get_weather", '{"city":"Oslo"}'),
                )
            )
        )
        before = len(scrape(h))
        body = {
            **CHAT,
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
        }
        exchange = h.request(b"POST", b"/v1/chat/completions", body=body, token=TEST_TOKEN)
        h.run_due()
        answer = json.loads(exchange.response()[2])
        self.assertEqual(answer["choices"][0]["finish_reason"], "tool_calls")
        text = scrape(h)
        self.assertNotIn('tool="zz', text)
        self.assertEqual(
            sample(text, "openclaw_tool_calls_total", tool="other", outcome="error"), 60.0
        )
        self.assertEqual(
            sample(text, "openclaw_tool_calls_total", tool="session_status", outcome="ok"), 1.0
        )
        self.assertNotIn("A" * 100, text)
        self.assertLess(len(text) - before, 20_000)  # 60 series of 2 KB names were 250 KB

    def test_scrape_needs_the_gateway_token_unless_auth_none(self) -> None:
        """With auth "gateway" a scrape without the token is refused 401; with
        auth "none" it is answered."""
        guarded = harness(self.mktemp())
        self.assertEqual(guarded.request(b"GET", b"/metrics").response()[0], 401)
        self.assertEqual(
            guarded.request(b"GET", b"/metrics", token="wrong-token-xxxxxxxx").response()[0], 401
        )
        open_ = harness(self.mktemp(), auth="none")
        self.assertIn("openclaw_http_requests_total", scrape(open_, token=None))

    def test_metrics_are_off_by_default(self) -> None:
        """Without endpoints.metrics.enabled, /metrics is a 404 even with the token."""
        h = harness(self.mktemp(), enabled=False)
        self.assertEqual(h.request(b"GET", b"/metrics", token=TEST_TOKEN).response()[0], 404)

    def test_labels_are_route_templates_never_raw_paths(self) -> None:
        """Paths carrying ids or junk are counted under their template or
        "other"; neither the raw path nor a session key appears in the output."""
        h = harness(self.mktemp())
        h.request(b"GET", b"/v1/models/secret-model-id", token=TEST_TOKEN)
        h.request(b"GET", b"/users/alice/sessions/agent:main:xyz?token=abc", token=TEST_TOKEN)
        h.request(b"BREW", b"/healthz")
        text = scrape(h)
        self.assertEqual(
            sample(text, "openclaw_http_requests_total", route="/v1/models/{id}", method="GET"),
            1.0,
        )
        self.assertEqual(sample(text, "openclaw_http_requests_total", route="other"), 1.0)
        self.assertIsNotNone(
            sample(text, "openclaw_http_requests_total", route="/healthz", method="OTHER")
        )
        for leaked in ("secret-model-id", "alice", "agent:main", "BREW"):
            self.assertNotIn(leaked, text)

    def test_process_metrics_are_exported(self) -> None:
        """The process and Python collectors are part of every gateway's registry."""
        text = scrape(harness(self.mktemp()))
        self.assertIsNotNone(sample(text, "process_resident_memory_bytes"))
        self.assertIsNotNone(sample(text, "python_info"))


class RegistryTests(SynchronousTestCase):
    def test_each_gateway_has_its_own_registry(self) -> None:
        """Two Metrics objects count separately and never touch the global registry."""
        a, b = Metrics(process=False), Metrics(process=False)
        a.request_done("/healthz", "GET", 200, 0.001)
        self.assertIn(b'route="/healthz"', a.render())
        self.assertNotIn(b'route="/healthz"', b.render())
        self.assertIsNone(REGISTRY.get_sample_value("openclaw_http_requests_total"))

    def test_unknown_methods_share_one_label(self) -> None:
        """Arbitrary request methods collapse into OTHER (bounded label set)."""
        self.assertEqual(method_label("GET"), "GET")
        self.assertEqual(method_label("PROPFIND"), "OTHER")

    def test_route_template(self) -> None:
        """Known routes keep their path; model ids and the UI are templated."""
        self.assertEqual(route_template(b"/v1/chat/completions"), "/v1/chat/completions")
        self.assertEqual(route_template(b"/v1/models/a/b"), "/v1/models/{id}")
        self.assertEqual(route_template(b"/assets/x.js", lambda p: True), "control-ui")
        self.assertEqual(route_template(b"/x/y"), "other")

    def test_separate_scrape_listener_serves_only_metrics_without_auth(self) -> None:
        """--metrics-listen's site answers /metrics without a token, 404 elsewhere."""
        metrics = Metrics(process=False)
        metrics.request_done("/healthz", "GET", 200, 0.001)
        clock = MemoryReactorClock()
        site = scrape_site(metrics, clock)
        answers = []
        for path in (b"/metrics", b"/v1/chat/completions"):
            channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
            assert channel is not None
            transport = StringTransport()
            channel.makeConnection(transport)
            channel.dataReceived(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
            answers.append(transport.value())
        self.assertTrue(answers[0].startswith(b"HTTP/1.1 200"))
        self.assertIn(b'openclaw_http_requests_total{method="GET",route="/healthz"', answers[0])
        self.assertTrue(answers[1].startswith(b"HTTP/1.1 404"))


class RunMetricsTests(SynchronousTestCase):
    def _watched_run(self) -> tuple[Metrics, FakeRun, MemoryReactorClock]:
        metrics = Metrics(process=False)
        clock = MemoryReactorClock()
        run = FakeRun(
            AgentRequest(run_id="r1", agent_id="main", session_key="agent:main:main", message="x"),
            clock,
        )
        RunMetrics(metrics, clock).run_started(run)
        return metrics, run, clock

    def value(self, metrics: Metrics, name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    def test_model_labels_are_bounded(self) -> None:
        """Model names come from clients too (per-request overrides, the demo
        provider's any-name models): past MAX_MODEL_LABELS distinct values the
        label is "other", so /metrics cannot be grown without bound."""
        metrics = Metrics(process=False)
        clock = MemoryReactorClock()
        watcher = RunMetrics(metrics, clock)
        for n in range(MAX_MODEL_LABELS + 20):
            run = FakeRun(
                AgentRequest(
                    run_id=f"r{n}", agent_id="main", session_key="agent:main:main", message="x"
                ),
                clock,
            )
            watcher.run_started(run)
            run.start()
            run.emit(
                LifecycleEvent(run_id=f"r{n}", phase="end", ts=0, provider="demo", model=f"m{n}")
            )
            run.finish("done")
        models = {
            sample.labels["model"]
            for family in metrics.registry.collect()
            if family.name == "openclaw_runs"
            for sample in family.samples
        }
        self.assertEqual(len(models), MAX_MODEL_LABELS + 1)
        self.assertIn("other", models)
        self.assertEqual(
            self.value(metrics, "openclaw_runs_total", agent="main", model="other", outcome="ok"),
            20.0,
        )

    def test_queue_depth_then_active_then_done(self) -> None:
        """A run counts as queued until its lifecycle start (lane wait measured
        on the clock), then active, then neither."""
        metrics, run, clock = self._watched_run()
        self.assertEqual(self.value(metrics, "openclaw_runs_queued"), 1.0)
        clock.advance(2.5)
        run.start()
        self.assertEqual(self.value(metrics, "openclaw_runs_queued"), 0.0)
        self.assertEqual(self.value(metrics, "openclaw_runs_active"), 1.0)
        self.assertEqual(self.value(metrics, "openclaw_lane_wait_seconds_sum"), 2.5)
        run.finish("done")
        self.assertEqual(self.value(metrics, "openclaw_runs_active"), 0.0)

    def test_tool_calls_by_tool_and_outcome(self) -> None:
        """Tool results are counted by tool name and ok/error."""
        metrics, run, _ = self._watched_run()
        run.start()
        for name, error in (("exec", False), ("exec", True), ("read", False)):
            run.emit(ToolEvent(run_id="r1", phase="start", name=name, tool_call_id="c", ts=0))
            run.emit(
                ToolEvent(
                    run_id="r1", phase="result", name=name, tool_call_id="c", ts=0, is_error=error
                )
            )
        run.finish("done")
        get = self.value
        self.assertEqual(get(metrics, "openclaw_tool_calls_total", tool="exec", outcome="ok"), 1)
        self.assertEqual(get(metrics, "openclaw_tool_calls_total", tool="exec", outcome="error"), 1)
        self.assertEqual(get(metrics, "openclaw_tool_calls_total", tool="read", outcome="ok"), 1)

    def test_tool_labels_are_bounded(self) -> None:
        """A name the run did not offer, or one longer than a function name can
        be, counts as ``other``."""
        metrics, run, _ = self._watched_run()
        run.start()
        for name, offered in (("made_up", False), ("x" * 65, True), ("x" * 64, True)):
            run.emit(
                ToolEvent(
                    run_id="r1", phase="result", name=name, tool_call_id="c", ts=0, offered=offered
                )
            )
        run.finish("done")
        get = self.value
        self.assertEqual(get(metrics, "openclaw_tool_calls_total", tool="other", outcome="ok"), 2)
        self.assertEqual(get(metrics, "openclaw_tool_calls_total", tool="x" * 64, outcome="ok"), 1)

    def test_upstream_errors_by_kind_and_run_outcomes(self) -> None:
        """A provider failure counts as an upstream error of its kind and a run
        with outcome error; a timeout is its own outcome."""
        metrics, run, _ = self._watched_run()
        run.start()
        run.fail(ProviderError(FailureKind.RATE_LIMIT, "slow down"))
        self.assertEqual(
            self.value(metrics, "openclaw_upstream_errors_total", kind="rate_limit"), 1.0
        )
        self.assertEqual(
            self.value(
                metrics, "openclaw_runs_total", agent="main", model="unknown", outcome="error"
            ),
            1.0,
        )
        metrics2, run2, _ = self._watched_run()
        run2.fail(RunTimeoutError("too long"))
        self.assertEqual(
            self.value(
                metrics2, "openclaw_runs_total", agent="main", model="unknown", outcome="timeout"
            ),
            1.0,
        )
        # A run that never left the queue is no longer counted as queued.
        self.assertEqual(self.value(metrics2, "openclaw_runs_queued"), 0.0)


class ConfigTests(SynchronousTestCase):
    def test_metrics_keys_parse(self) -> None:
        """gateway.http.endpoints.metrics.{enabled,auth} are read; a bad auth value is a problem."""
        from openclaw.config import ConfigError
        from openclaw.config.loader import parse_config_text

        loaded = parse_config_text(
            '{gateway: {http: {endpoints: {metrics: {enabled: true, auth: "none"}}}}}',
            source="t",
            env={},
            state_dir=Path(self.mktemp()),
        )
        self.assertEqual(loaded.config.gateway.http.metrics, MetricsConfig(True, "none"))
        self.assertEqual(loaded.warnings, ())
        with self.assertRaises(ConfigError) as caught:
            parse_config_text(
                '{gateway: {http: {endpoints: {metrics: {auth: "open"}}}}}',
                source="t",
                env={},
                state_dir=Path(self.mktemp()),
            )
        self.assertIn("gateway.http.endpoints.metrics.auth", caught.exception.problems[0])
