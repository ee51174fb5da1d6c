"""The gateway's Prometheus metrics: one :class:`Metrics` object per gateway.

Every metric lives in the object's own ``CollectorRegistry`` (never the
process-wide default), so two gateways in one process, or two tests, count
separately, and an embedder's own registry is not polluted.

Label values are bounded by construction: routes are templates (never raw
paths), methods are the HTTP verbs (anything else is ``OTHER``), agents,
providers and models come from the configuration (and are capped, see
:meth:`Metrics.bounded`), tools are those the run offered (a name the model
made up is ``other``). Nothing here ever sees a session key, a user or a token.

The recording methods cache label children, so the per-request cost is a
dict lookup and a lock-protected add (measured in docs/operations.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

#: What ``GET /metrics`` answers with: the classic text format every
#: Prometheus version reads (what ``generate_latest`` writes).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: HTTP verbs kept as label values; anything else is counted as ``OTHER``.
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: Request latency buckets (seconds): probes in microseconds, turns in minutes.
LATENCY_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0,
)  # fmt: skip
#: Time to first token and lane wait (seconds).
SHORT_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip

#: A label value for "not known" (a run that failed before choosing a model).
UNKNOWN: Final = "unknown"
#: At most this many distinct model (and provider) label values; later ones
#: count as ``other``. Per-request model overrides come from clients, and the
#: demo provider takes any model name: unbounded labels would grow /metrics.
MAX_MODEL_LABELS: Final = 100
OTHER: Final = "other"
#: A tool label longer than this is ``other`` (OpenAI caps function names at 64).
MAX_TOOL_LABEL_CHARS: Final = 64


def method_label(method: str) -> str:
    """The HTTP method as a bounded label value."""
    return method if method in _METHODS else "OTHER"


class Metrics:
    """Every metric the gateway exports, in a registry of its own."""

    def __init__(self, *, process: bool = True, namespace: str = "openclaw") -> None:
        """
        :param process: also export ``process_*``, ``python_info`` and
            ``python_gc_*`` (off for tests that compare whole expositions).
        """
        # Imported here: a gateway that serves no metrics never makes a
        # Metrics, and never loads prometheus_client (0.7 MB, issue 16).
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client.gc_collector import GCCollector
        from prometheus_client.platform_collector import PlatformCollector
        from prometheus_client.process_collector import ProcessCollector

        self._label_values: dict[str, set[str]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ns = namespace
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            namespace=ns,
            registry=r,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "From the request head to the last byte of the answer, by route template.",
            ["route"],
            namespace=ns,
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.http_in_flight = Gauge(
            "http_requests_in_flight", "HTTP requests being answered.", namespace=ns, registry=r
        )
        self.http_streams = Gauge(
            "http_streams_active",
            "Server-sent event streams open (streaming completions).",
            namespace=ns,
            registry=r,
        )
        self.ws_connections = Gauge(
            "websocket_connections_active", "Open WebSocket connections.", namespace=ns, registry=r
        )
        self.ws_connections_total = Counter(
            "websocket_connections_total",
            "WebSocket connections accepted since start.",
            namespace=ns,
            registry=r,
        )
        self.runs = Counter(
            "runs_total",
            "Agent runs finished, by agent, model and outcome (ok, error, aborted, timeout).",
            ["agent", "model", "outcome"],
            namespace=ns,
            registry=r,
        )
        self.runs_active = Gauge(
            "runs_active", "Agent runs executing (past their lane).", namespace=ns, registry=r
        )
        self.runs_queued = Gauge(
            "runs_queued",
            "Agent runs waiting for their session lane (queue depth).",
            namespace=ns,
            registry=r,
        )
        self.lane_wait = Histogram(
            "lane_wait_seconds",
            "Time a run waited for its session lane before starting.",
            namespace=ns,
            registry=r,
            buckets=SHORT_BUCKETS,
        )
        self.ttft = Histogram(
            "time_to_first_token_seconds",
            "From a run's start to its first reply text, by agent.",
            ["agent"],
            namespace=ns,
            registry=r,
            buckets=SHORT_BUCKETS,
        )
        self.tokens = Counter(
            "model_tokens_total",
            "Tokens reported by upstream models, by agent, provider, model and direction.",
            ["agent", "provider", "model", "direction"],
            namespace=ns,
            registry=r,
        )
        self.upstream_errors = Counter(
            "upstream_errors_total",
            "Failed model calls that ended a run, by failure kind.",
            ["kind"],
            namespace=ns,
            registry=r,
        )
        self.tool_calls = Counter(
            "tool_calls_total",
            "Built-in tool calls finished, by tool and outcome (ok, error).",
            ["tool", "outcome"],
            namespace=ns,
            registry=r,
        )
        self.config_reloads = Counter(
            "config_reloads_total",
            "Configuration reloads, by result (ok, refused).",
            ["result"],
            namespace=ns,
            registry=r,
        )
        self._requests: dict[tuple[str, str, int], Counter] = {}
        self._durations: dict[str, Histogram] = {}

    def bounded(self, label: str, value: str) -> str:
        """``value`` for the label named ``label`` (``model``, ``provider``), or
        ``other`` once :data:`MAX_MODEL_LABELS` distinct values were seen for it."""
        seen = self._label_values.setdefault(label, set())
        if value in seen:
            return value
        if len(seen) >= MAX_MODEL_LABELS:
            return OTHER
        seen.add(value)
        return value

    def tool_label(self, name: str, *, offered: bool) -> str:
        """The ``tool`` label of a finished call: the name of a tool the run
        offered (within :data:`MAX_TOOL_LABEL_CHARS`, and :meth:`bounded`),
        ``other`` for any name the model made up."""
        if not offered or not name or len(name) > MAX_TOOL_LABEL_CHARS:
            return OTHER
        return self.bounded("tool", name)

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered HTTP request (the hot path: cached children)."""
        key = (route, method if method in _METHODS else "OTHER", status)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.http_requests.labels(key[0], key[1], str(status))
        counter.inc()
        histogram = self._durations.get(route)
        if histogram is None:
            histogram = self._durations[route] = self.http_duration.labels(route)
        histogram.observe(seconds)

    def render(self) -> bytes:
        """The exposition in Prometheus' text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "MAX_TOOL_LABEL_CHARS", "OTHER", "UNKNOWN", "Metrics", "method_label"]
