"""What the gateway tells an operator: metrics and one access line per request.

* :class:`RequestObserver` is the single hook of the HTTP request path
  (:class:`~openclaw.gateway.http.request.GatewaySite` calls
  :meth:`RequestObserver.started` for every dispatched request): it counts the
  request by route template, method and status, times it, tracks open SSE
  streams and writes the access line. A WebSocket upgrade gets a line when it
  is handed over and another when the connection closes.
* :class:`RunMetrics` observes every run the runtime starts (any ingress):
  lane wait and queue depth, time to first token, runs by outcome, tokens,
  upstream failures and tool calls.

The access line carries the client address (the real one behind
``gateway.trustedProxies``), method, path without its query (a query may
carry a secret), status, bytes, duration, agent, run id and user agent.
Endpoints add what only they know as request attributes:
``openclaw_agent_id``, ``openclaw_run_id`` and ``openclaw_detail`` (why a
run failed, shown in parentheses).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from openclaw.agents.types import (
    AgentEvent,
    AgentResult,
    AgentRun,
    AgentRuntime,
    AssistantEvent,
    LifecycleEvent,
    ProviderError,
    RunAbortedError,
    RunTimeoutError,
    ToolEvent,
)
from openclaw.core.logformat import escape_controls
from openclaw.core.metrics import UNKNOWN, Metrics

log = Logger(namespace="openclaw.access")
_runlog = Logger()

#: Exact paths with a route of their own (the label is the path itself).
_ROUTES: dict[bytes, str] = {
    p.encode("ascii"): p
    for p in (
        "/health",
        "/healthz",
        "/ready",
        "/readyz",
        "/startup",
        "/startupz",
        "/metrics",
        "/v1/chat/completions",
        "/v1/models",
        "/v1/responses",
        "/v1/embeddings",
    )
}
_MODEL_PREFIX = b"/v1/models/"
#: The route label of accepted WebSocket upgrades (any path).
_ROUTES[b"websocket"] = "websocket"
_AGENT_HEADERS = (b"x-openclaw-agent-id", b"x-openclaw-agent")
_MAX_FIELD = 200


def route_template(path: bytes, control_ui: Callable[[bytes], bool] | None = None) -> str:
    """The bounded route label of ``path`` (never the raw path)."""
    route = _ROUTES.get(path)
    if route is not None:
        return route
    if path.startswith(_MODEL_PREFIX):
        return "/v1/models/{id}"
    if control_ui is not None and control_ui(path):
        return "control-ui"
    return "other"


def _text(value: bytes | None) -> str:
    if not value:
        return "-"
    # A header a client chose: no quote (the field's delimiter) and no raw
    # control character (a terminal escape, a forged line) in the log.
    return escape_controls(value[:_MAX_FIELD].decode("latin-1").replace('"', "'"))


#: A path with only printable ASCII, no quote and no ``%`` escape.
_PLAIN_PATH = re.compile(rb"[\x21\x23-\x24\x26-\x7e]+")


def _path_text(path: bytes) -> str:
    """The path percent-decoded, so a secret a client encoded (``%74oken``) is
    still seen and masked by the log's secret scrubber; bytes that are not
    printable ASCII (controls, spaces, quotes, non-ASCII) are written as
    ``%XX`` so the line cannot be broken or coloured from outside."""
    if not path:
        return "-"
    if _PLAIN_PATH.fullmatch(path):  # the usual path: nothing to decode or escape
        return path[:_MAX_FIELD].decode("ascii")
    decoded = unquote_to_bytes(path[:_MAX_FIELD])
    return "".join(
        chr(byte) if 0x21 <= byte <= 0x7E and byte != 0x22 else f"%{byte:02X}" for byte in decoded
    )


class RequestObserver:
    """Metrics and the access line for every HTTP request and WebSocket connection."""

    def __init__(
        self,
        *,
        clock: IReactorTime,
        metrics: Metrics | None,
        client_address: Callable[[IRequest], str],
        control_ui: Callable[[bytes], bool] | None = None,
        access_log: bool = True,
    ) -> None:
        """
        :param metrics: where to count (None: access lines only).
        :param client_address: the real client of a request (the auth's, which
            honours ``X-Forwarded-For`` from trusted proxies only).
        :param control_ui: whether a path belongs to the Control UI.
        """
        self._clock = clock
        self._metrics = metrics
        self._client_address = client_address
        self._control_ui = control_ui
        self._access_log = access_log

    def started(self, request: Request, *, upgrade: bool = False) -> None:
        """A request is being dispatched (called once, before the resource runs)."""
        begun = self._clock.seconds()
        if upgrade:
            self._websocket(request, begun)
            return
        request.notifyFinish().addBoth(self._finished, request, begun)

    def stream_started(self) -> Callable[[], None]:
        """An SSE stream opened; call the result when it ends."""
        metrics = self._metrics
        if metrics is None:
            return _nothing
        metrics.http_streams.inc()
        return metrics.http_streams.dec

    def _finished(self, result: object, request: Request, begun: float) -> None:
        seconds = self._clock.seconds() - begun
        status = request.code
        path = request.path
        metrics = self._metrics
        if metrics is not None:
            route = route_template(path, self._control_ui)
            metrics.request_done(route, request.method.decode("latin-1"), status, seconds)
        if self._access_log:
            # An endpoint may say why a run ended (``request.openclaw_detail``).
            note = getattr(request, "openclaw_detail", None) or ""
            if isinstance(result, Failure):
                note = f"{note}; client left" if note else "client left"
            self._line(request, status, request.sentLength, seconds, note)

    def refused(
        self, channel: object, status: int, sent: int, request: Request | None = None
    ) -> None:
        """A request answered straight on the transport before dispatch (413,
        431, 408, a head Twisted could not parse): counted and logged like any
        other, from what the channel parsed so far (no forwarded client: the
        head may be incomplete, so the line names the socket peer)."""
        command: bytes | None = getattr(channel, "_command", None)
        raw_path: bytes | None = getattr(channel, "_path", None)
        path = raw_path.split(b"?", 1)[0] if raw_path else b""
        method = command.decode("latin-1") if command else "-"
        if self._metrics is not None:
            route = route_template(path, self._control_ui)
            self._metrics.request_done(route, method, status, 0.0)
        if not self._access_log:
            return
        transport = getattr(channel, "transport", None)
        peer = transport.getPeer() if transport is not None else None
        host = getattr(peer, "host", None) or "unix"
        _access_line(
            client=host,
            peer=host,
            method=method,
            path=path,
            status=status,
            sent=sent,
            seconds=0.0,
            agent=_first_header(request, _AGENT_HEADERS) if request is not None else "-",
            run_id="-",
            user_agent=request.getHeader(b"user-agent") if request is not None else None,
            note="refused before dispatch",
        )

    def _websocket(self, request: Request, begun: float) -> None:
        """An upgrade: refused, it finishes like any request (its status is
        logged and counted); accepted, Autobahn owns the connection from the
        same reactor turn on: one line then, and one when it closes."""
        request.notifyFinish().addBoth(self._finished, request, begun)
        # The channel's transport (the counted connection) before Autobahn takes it.
        channel: Any = request.channel
        transport = getattr(channel, "transport", None)
        self._clock.callLater(0, self._upgraded, request, begun, transport)

    def _upgraded(self, request: Request, begun: float, transport: object) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return  # refused (503, 400...): already logged by _finished
        metrics = self._metrics
        if metrics is not None:
            metrics.ws_connections_total.inc()
            metrics.request_done(route_template(b"websocket"), "GET", 101, 0.0)
        if not self._access_log:
            return
        self._line(request, 101, 0, self._clock.seconds() - begun, "websocket open")
        watch = getattr(transport, "on_lost", None)
        if watch is not None:

            def closed() -> None:
                seconds = self._clock.seconds() - begun
                self._line(request, 101, 0, seconds, "websocket closed")

            watch(closed)

    def _line(self, request: Request, status: int, sent: int, seconds: float, note: str) -> None:
        peer = request.getClientAddress()
        _access_line(
            client=self._client_address(request),
            peer=getattr(peer, "host", None) or "unix",
            method=request.method.decode("latin-1"),
            path=request.path,
            status=status,
            sent=sent,
            seconds=seconds,
            agent=getattr(request, "openclaw_agent_id", None)
            or _first_header(request, _AGENT_HEADERS),
            run_id=getattr(request, "openclaw_run_id", None) or "-",
            user_agent=request.getHeader(b"user-agent"),
            note=note,
        )


def _access_line(
    *,
    client: str,
    peer: str,
    method: str,
    path: bytes,
    status: int,
    sent: int,
    seconds: float,
    agent: str,
    run_id: str,
    user_agent: bytes | None,
    note: str,
) -> None:
    """Write one ``openclaw.access`` line with its fields (every request's,
    dispatched or refused before dispatch)."""
    fields = {
        "client": client,
        "peer": peer,
        "method": method,
        "path": _path_text(path),
        "status": status,
        "bytes": sent,
        "duration_ms": round(seconds * 1000.0, 1),
        "agent": agent,
        "run_id": run_id,
        "user_agent": _text(user_agent),
    }
    via = f" via {peer}" if client != peer else ""
    line = (
        f'{client}{via} "{method} {fields["path"]}" {status} {sent}B '
        f'{fields["duration_ms"]}ms agent={agent} run={run_id} ua="{fields["user_agent"]}"'
    )
    log.info("{access}", access=f"{line} ({note})" if note else line, **fields)


def _first_header(request: Request, names: tuple[bytes, ...]) -> str:
    for name in names:
        value = request.getHeader(name)
        if value:
            return _text(value.strip())
    return "-"


def _nothing() -> None:
    return None


class RunMetrics:
    """Counts what every run does, whatever started it."""

    def __init__(self, metrics: Metrics, clock: IReactorTime) -> None:
        self._metrics = metrics
        self._clock = clock

    def attach(self, runtime: AgentRuntime) -> Callable[[], None]:
        """Observe ``runtime``'s runs from now on; returns the detach callable."""
        return runtime.observe_runs(self.run_started)

    def run_started(self, run: AgentRun) -> None:
        """A run was accepted: queued until its lane lets it start."""
        _RunWatch(self._metrics, self._clock, run)


class _RunWatch:
    """One run's bookkeeping (only what the metrics need)."""

    __slots__ = (
        "_agent",
        "_clock",
        "_executing",
        "_first_token",
        "_metrics",
        "_model",
        "_provider",
        "_queued",
        "_started",
        "_unsubscribe",
    )

    def __init__(self, metrics: Metrics, clock: IReactorTime, run: AgentRun) -> None:
        self._metrics = metrics
        self._clock = clock
        self._agent = run.agent_id
        self._queued = clock.seconds()
        self._started: float | None = None
        self._first_token = False
        self._executing = False
        self._provider = UNKNOWN
        self._model = UNKNOWN
        metrics.runs_queued.inc()
        self._unsubscribe = run.subscribe(self._event)
        run.result.addCallbacks(self._succeeded, self._failed)

    def _event(self, event: AgentEvent) -> None:
        if isinstance(event, AssistantEvent):
            if not self._first_token and event.delta and self._started is not None:
                self._first_token = True
                self._metrics.ttft.labels(self._agent).observe(
                    self._clock.seconds() - self._started
                )
        elif isinstance(event, ToolEvent):
            if event.phase == "result":
                outcome = "error" if event.is_error else "ok"
                tool = self._metrics.tool_label(event.name, offered=event.offered)
                self._metrics.tool_calls.labels(tool, outcome).inc()
        elif isinstance(event, LifecycleEvent):
            if event.phase == "start":
                now = self._clock.seconds()
                self._started = now
                self._metrics.runs_queued.dec()
                self._metrics.runs_active.inc()
                self._executing = True
                self._metrics.lane_wait.observe(now - self._queued)
            else:
                if event.provider:
                    self._provider = event.provider
                if event.model:
                    self._model = event.model

    def _settle(self) -> None:
        self._unsubscribe()
        if self._executing:
            self._metrics.runs_active.dec()
        else:
            self._metrics.runs_queued.dec()

    def _succeeded(self, result: AgentResult) -> None:
        self._settle()
        metrics = self._metrics
        model = self._model_label()
        metrics.runs.labels(self._agent, model, "ok").inc()
        usage = result.usage
        provider, model = (
            metrics.bounded("provider", self._provider),
            metrics.bounded("model_id", self._model),
        )
        labels = (self._agent, provider, model)
        if usage.input:
            metrics.tokens.labels(*labels, "input").inc(usage.input)
        if usage.output:
            metrics.tokens.labels(*labels, "output").inc(usage.output)

    def _failed(self, failure: Failure) -> None:
        self._settle()
        error = failure.value
        if isinstance(error, ProviderError):
            outcome = "error"
            self._metrics.upstream_errors.labels(error.kind.value).inc()
        elif isinstance(error, RunTimeoutError):
            outcome = "timeout"
        elif isinstance(error, RunAbortedError):
            outcome = "aborted"
        else:
            outcome = "error"
        self._metrics.runs.labels(self._agent, self._model_label(), outcome).inc()

    def _model_label(self) -> str:
        if self._model == UNKNOWN:
            return UNKNOWN
        return self._metrics.bounded("model", f"{self._provider}/{self._model}")


__all__ = ["RequestObserver", "RunMetrics", "route_template"]
