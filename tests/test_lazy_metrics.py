"""The gateway's metrics exist only while something serves them (issue 16: an
idle gateway with ``/metrics`` off does not import ``prometheus_client``).

Through the real Site: off, requests are answered and nothing counts; a
reload that turns ``endpoints.metrics`` on starts counting from then;
``enable_metrics`` (what ``--metrics-listen`` calls) counts with the endpoint off.
"""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config.live import LiveConfig
from openclaw.config.model import Config, MetricsConfig
from openclaw.testing.gateway import TEST_TOKEN, GatewayHarness, http_test_config
from tests.test_metrics import sample, scrape


def _with_metrics(config: Config, enabled: bool) -> Config:
    http = attrs.evolve(config.gateway.http, metrics=MetricsConfig(enabled=enabled))
    return attrs.evolve(config, gateway=attrs.evolve(config.gateway, http=http))


def _requests(text: str, route: str) -> float | None:
    return sample(text, "openclaw_http_requests_total", route=route, method="GET", status="200")


class LazyMetricsTests(SynchronousTestCase):
    def test_off_means_no_metrics_and_requests_still_served(self) -> None:
        """With /metrics off the gateway has no metrics object, answers
        requests, and /metrics is 404."""
        h = GatewayHarness.create(self.mktemp(), http_test_config(self.mktemp()))
        self.assertIsNone(h.gateway.metrics)
        status, _, _ = h.request(b"GET", b"/healthz").response()
        self.assertEqual(status, 200)
        status, _, _ = h.request(b"GET", b"/metrics", token=TEST_TOKEN).response()
        self.assertEqual(status, 404)
        self.assertIsNone(h.gateway.metrics)

    def test_reload_turning_metrics_on_counts_from_then(self) -> None:
        """A reload that enables /metrics makes them: the scrape answers 200,
        requests after the reload are counted, those before it are not."""
        config = http_test_config(self.mktemp())
        live = LiveConfig(config)
        h = GatewayHarness.create(self.mktemp(), config, live=live)
        h.request(b"GET", b"/healthz").response()
        live.replace(_with_metrics(config, True))
        self.assertIsNotNone(h.gateway.metrics)
        self.assertIsNone(_requests(scrape(h), "/healthz"))
        h.request(b"GET", b"/healthz").response()
        h.request(b"GET", b"/healthz").response()
        self.assertEqual(_requests(scrape(h), "/healthz"), 2.0)

    def test_metrics_stay_through_a_reload_turning_them_off(self) -> None:
        """Turning /metrics off again answers 404; the metrics made keep
        counting (a --metrics-listen port may still serve them)."""
        config = _with_metrics(http_test_config(self.mktemp()), True)
        live = LiveConfig(config)
        h = GatewayHarness.create(self.mktemp(), config, live=live)
        metrics = h.gateway.metrics
        assert metrics is not None
        live.replace(_with_metrics(config, False))
        status, _, _ = h.request(b"GET", b"/metrics", token=TEST_TOKEN).response()
        self.assertEqual(status, 404)
        self.assertIs(h.gateway.metrics, metrics)
        text = metrics.render().decode("utf-8")
        self.assertEqual(
            sample(text, "openclaw_http_requests_total", route="/metrics", status="404"), 1.0
        )

    def test_enable_metrics_counts_with_the_endpoint_off(self) -> None:
        """enable_metrics (--metrics-listen) makes and wires the metrics once,
        and requests from then on are counted."""
        h = GatewayHarness.create(self.mktemp(), http_test_config(self.mktemp()))
        metrics = h.gateway.enable_metrics()
        self.assertIs(h.gateway.enable_metrics(), metrics)
        h.request(b"GET", b"/healthz").response()
        text = metrics.render().decode("utf-8")
        self.assertEqual(_requests(text, "/healthz"), 1.0)
