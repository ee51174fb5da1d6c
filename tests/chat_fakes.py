"""Fakes and harnesses for the chat completions and models endpoint tests.

:class:`FakeRuntime` implements the ``AgentRuntime`` protocol with runs a test
scripts by hand (emit text, resolve, fail) and that record what the endpoint
asked of them (the ``AgentRequest``, cancel, pause, resume).

:class:`ChatHarness` wires the real endpoints into the gateway's real HTTP
app (:class:`GatewayHttpApp`), reachable through ``StubTreq`` (a real ``Site`` over an
in-memory connection) or through :class:`RawConnection` (a real
``HTTPChannel`` on a ``StringTransport``, for flow control and disconnects).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IResponse
from twisted.web.resource import IResource
from twisted.web.server import Site

from openclaw import testing
from openclaw.agents.approvals import ApprovalBroker
from openclaw.agents.types import (
    AgentInfo,
    AgentRequest,
    AgentResult,
    AgentRun,
    CompactionReport,
    EmbeddingRequest,
    EmbeddingResult,
    EmbeddingsUnavailableError,
    LifecycleEvent,
    RunAbortedError,
    StopReason,
    ToolCall,
    UnknownAgentError,
    Usage,
)
from openclaw.config.model import (
    AuthConfig,
    ChatCompletionsConfig,
    Config,
    GatewayConfig,
    HttpConfig,
    ImagesConfig,
    RateLimitConfig,
)
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.http.app import GatewayHttpApp
from openclaw.gateway.http.chat_completions import ChatCompletionsEndpoint
from openclaw.gateway.http.image_fetch import ImageFetcher
from openclaw.gateway.http.models import ModelsEndpoint
from openclaw.gateway.http.sse import DEFAULT_MAX_BUFFERED_BYTES
from openclaw.gateway.lifecycle import Readiness

CHAT_PATH = "/v1/chat/completions"
#: A real 1x1 transparent PNG.
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


class FakeRun(testing.FakeRun):
    """:class:`openclaw.testing.FakeRun` as the HTTP tests drive it: events at
    ``ts`` 0, ``finish`` does not say its text first, ``cancel`` emits no
    lifecycle event, and listeners stay attached after the outcome (the tests
    check that the endpoint detaches itself)."""

    def __init__(self, request: AgentRequest) -> None:
        super().__init__(request, Clock())

    def finish(
        self,
        text: str | None = None,
        usage: Usage | None = None,
        *,
        stop_reason: StopReason = "stop",
        tool_calls: Sequence[ToolCall] = (),
    ) -> None:
        """Resolve the run (text defaults to what was said)."""
        result = AgentResult(
            run_id=self.run_id,
            agent_id=self.agent_id,
            session_key=self.session_key,
            session_id="session-1",
            text=self.text if text is None else text,
            usage=usage or Usage(),
            stop_reason=stop_reason,
            pending_tool_calls=tuple(tool_calls),
        )
        self._settle(result, LifecycleEvent(self.run_id, "end", 0))

    def fail(self, error: BaseException, *, emit_lifecycle: bool = True) -> None:
        """Fail the run with ``error`` (any exception: tests fail runs with odd ones)."""
        event = LifecycleEvent(self.run_id, "error", 0, error=str(error))
        self._settle(Failure(error), event if emit_lifecycle else None)

    def cancel(self) -> None:
        """Count the call; the result fails with RunAbortedError."""
        self.cancel_calls += 1
        self._settle(Failure(RunAbortedError("cancelled")), None)

    def _settle(self, outcome: AgentResult | Failure, event: LifecycleEvent | None) -> None:
        if self.settled:
            return
        if event is not None:
            self.emit(event)
        self._broadcast.settle(outcome, drop_listeners=False)
        if isinstance(outcome, Failure):
            # Like a real run: the failure is "handled" by whoever observes it.
            outcome.cleanFailure()


class FakeRuntime:
    """An :class:`AgentRuntime` whose runs are :class:`FakeRun` objects."""

    def __init__(self, agent_ids: Sequence[str] = ("main", "beta"), default: str = "main") -> None:
        self._agent_ids = tuple(agent_ids)
        self._default = default
        self.requests: list[AgentRequest] = []
        self.runs: list[FakeRun] = []
        #: Called with each new run before ``start`` returns (scripts replies).
        self.on_start: Callable[[FakeRun], None] | None = None
        #: Raised by ``start`` when set.
        self.start_error: Exception | None = None
        #: A real approval broker (exec.approval.* tests drive it directly).
        self.approvals = ApprovalBroker(Clock())
        #: ``(agent_id, session_key)`` of each compact_session call.
        self.compactions: list[tuple[str, str]] = []
        #: What compact_session answers.
        self.compaction_report = CompactionReport(False, reason="fake runtime")

    def compact_session(
        self, agent_id: str, session_key: str, *, focus: str | None = None
    ) -> Deferred[CompactionReport]:
        """Record the call and answer :attr:`compaction_report`."""
        self.compactions.append((agent_id, session_key))
        return succeed(self.compaction_report)

    @property
    def default_agent_id(self) -> str:
        return self._default

    @property
    def agent_ids(self) -> Sequence[str]:
        return self._agent_ids

    @property
    def agents(self) -> Sequence[AgentInfo]:
        """This fake lists no agent details (the HTTP side needs only ids)."""
        return ()

    @property
    def sessions(self) -> None:
        """This fake keeps no sessions."""
        return None

    @property
    def last_run(self) -> FakeRun:
        """The most recently started run."""
        return self.runs[-1]

    def start(self, request: AgentRequest) -> AgentRun:
        self.requests.append(request)
        if self.start_error is not None:
            raise self.start_error
        if request.agent_id not in self._agent_ids and request.agent_id != self._default:
            raise UnknownAgentError(request.agent_id)
        run = FakeRun(request)
        self.runs.append(run)
        if self.on_start is not None:
            self.on_start(run)
        return run

    def get_run(self, run_id: str) -> AgentRun | None:
        return next((run for run in self.runs if run.run_id == run_id), None)

    def active_runs(self, session_key: str | None = None) -> Sequence[AgentRun]:
        return [
            run
            for run in self.runs
            if not run.settled and (session_key is None or run.session_key == session_key)
        ]

    def observe_runs(self, listener: Callable[[AgentRun], None]) -> Callable[[], None]:
        return lambda: None

    def embed(self, request: EmbeddingRequest) -> Deferred[EmbeddingResult]:
        """This fake has no embedding provider."""
        raise EmbeddingsUnavailableError("the fake runtime embeds nothing")

    def refuse_new_runs(self) -> None:
        """Nothing to refuse: the tests start what they need."""

    def shutdown(self) -> Deferred[None]:
        for run in self.runs:
            run.cancel()
        return succeed(None)


def build_resource(
    chat: ChatCompletionsEndpoint, models: ModelsEndpoint, clock: IReactorTime
) -> IResource:
    """The gateway's real HTTP app (:class:`GatewayHttpApp`) over these endpoints."""
    readiness = Readiness()
    readiness.mark_ready(clock)
    app = GatewayHttpApp(readiness=readiness, clock=clock, chat_completions=chat, models=models)
    resource: IResource = app.resource()
    return resource


def make_config(
    *,
    auth: AuthConfig,
    keep_alive: float,
    images: ImagesConfig,
) -> Config:
    """A config with the endpoint enabled."""
    return Config(
        gateway=GatewayConfig(
            auth=auth,
            http=HttpConfig(
                chat_completions=ChatCompletionsConfig(
                    enabled=True, sse_keep_alive_seconds=keep_alive, images=images
                )
            ),
        )
    )


class ChatHarness:
    """The endpoints over a fake runtime, a Clock and an in-memory HTTP client."""

    def __init__(
        self,
        *,
        auth: AuthConfig | None = None,
        keep_alive: float = 15.0,
        images: ImagesConfig | None = None,
        agent_ids: Sequence[str] = ("main", "beta"),
        default_agent: str = "main",
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        image_fetcher: ImageFetcher | None = None,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.runtime = FakeRuntime(agent_ids, default_agent)
        self.config = make_config(
            auth=auth or AuthConfig(mode="none", rate_limit=None),
            keep_alive=keep_alive,
            images=images or ImagesConfig(),
        )
        self.auth = GatewayAuth(self.config.gateway.auth, self.clock)
        self.chat = ChatCompletionsEndpoint(
            config=self.config,
            runtime=self.runtime,
            auth=self.auth,
            clock=self.clock,
            image_fetcher=image_fetcher,
            max_buffered_bytes=max_buffered_bytes,
        )
        self.models = ModelsEndpoint(runtime=self.runtime, auth=self.auth)
        self.resource = build_resource(self.chat, self.models, self.clock)
        self.stub = StubTreq(self.resource)

    def request(
        self,
        method: str,
        path: str = CHAT_PATH,
        *,
        body: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> Deferred[IResponse]:
        """Send a request; ``body`` is JSON-encoded unless it is bytes."""
        data: bytes | None
        if body is None:
            data = None
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode("utf-8")
        all_headers = {"content-type": "application/json", **(headers or {})}
        # typing note: StubTreq copies treq's functions onto itself at runtime.
        d: Deferred[IResponse] = self.stub.request(  # type: ignore[attr-defined]
            method,
            "http://127.0.0.1:18789" + path,
            data=data,
            headers={k: [v] for k, v in all_headers.items()},
        )
        self.stub.flush()
        return d

    def raw(self) -> RawConnection:
        """A raw HTTP connection to the same app."""
        return RawConnection(self.resource)


def chat_body(content: str = "hi", **fields: Any) -> dict[str, Any]:
    """A minimal valid body with one user message plus ``fields``."""
    body: dict[str, Any] = {"model": "openclaw", "messages": [{"role": "user", "content": content}]}
    body.update(fields)
    return body


def parse_sse(data: bytes) -> list[Any]:
    """The events of an SSE body: JSON objects, ``"[DONE]"``, or ``(":", comment)``."""
    events: list[Any] = []
    for block in data.decode("utf-8").split("\n\n"):
        if not block:
            continue
        for line in block.split("\n"):
            if line.startswith(":"):
                events.append((":", line[1:].strip()))
            elif line.startswith("data: "):
                payload = line[len("data: ") :]
                events.append(payload if payload == "[DONE]" else json.loads(payload))
            else:
                raise AssertionError(f"unexpected SSE line {line!r}")
    return events


class RawConnection:
    """One HTTP/1.1 connection: a real ``HTTPChannel`` over a ``StringTransport``.

    Tests drive the transport side by hand: :meth:`pause`/:meth:`resume` are
    what a full/drained socket does, :meth:`disconnect` what a lost one does
    (the transport stops its producer, then the protocol learns of the loss).
    """

    def __init__(self, resource: IResource | None = None, *, site: Site | None = None) -> None:
        self.reactor = MemoryReactorClock()
        if site is None:
            assert resource is not None
            site = Site(resource, reactor=self.reactor)
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        protocol = site.buildProtocol(peer)
        assert protocol is not None
        self.channel: Any = protocol
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 18789), peerAddress=peer
        )
        self.channel.makeConnection(self.transport)

    def send(
        self,
        body: object,
        *,
        method: str = "POST",
        path: str = CHAT_PATH,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Write one complete request to the server."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        lines.extend(f"{k}: {v}" for k, v in all_headers.items())
        lines.append(f"Content-Length: {len(data)}")
        self.channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)

    def response(self) -> RawResponse:
        """What the server wrote so far, parsed."""
        return RawResponse.parse(self.transport.value())

    @property
    def _producer(self) -> Any:
        """The HTTPChannel, as registered with its transport."""
        producer = self.transport.producer
        assert producer is not None
        return producer

    def pause(self) -> None:
        """The socket's send buffer is full."""
        self._producer.pauseProducing()

    def resume(self) -> None:
        """The socket drained."""
        self._producer.resumeProducing()

    def disconnect(self, *, stop_producer: bool = True) -> None:
        """The client went away (``stopProducing`` first, as a real transport does)."""
        if stop_producer:
            self._producer.stopProducing()
        self.channel.connectionLost(Failure(ConnectionDone("client closed")))


class RawResponse:
    """A parsed (possibly partial) HTTP/1.1 response."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes, complete: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.complete = complete

    @classmethod
    def parse(cls, data: bytes) -> RawResponse:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return cls(0, {}, b"", False)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") != "chunked":
            length = int(headers.get("content-length", "0"))
            return cls(status, headers, rest[:length], len(rest) >= length)
        body = b""
        complete = False
        while rest:
            size_line, sep, rest = rest.partition(b"\r\n")
            if not sep:
                break
            size = int(size_line, 16)
            if size == 0:
                complete = True
                break
            body += rest[:size]
            rest = rest[size + 2 :]
        return cls(status, headers, body, complete)

    def events(self) -> list[Any]:
        """The SSE events of the body."""
        return parse_sse(self.body)


def token_auth(token: str = "secret", rate_limit: RateLimitConfig | None = None) -> AuthConfig:
    """Token-mode auth with the limiter off unless given."""
    return AuthConfig(mode="token", token=token, rate_limit=rate_limit)


class Reply:
    """A complete response seen by the client."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        """The ``error`` object of an OpenAI error body (checked to have all four keys)."""
        error = self.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error, dict)
        return error


class StreamClient:
    """A streaming response being read incrementally by the client."""

    def __init__(self, harness: ChatHarness, response: IResponse) -> None:
        self.harness = harness
        self.response = response
        self.status = response.code
        self.headers = {
            k.decode("latin-1").lower(): v[-1].decode("latin-1")
            for k, v in response.headers.getAllRawHeaders()
        }
        self._chunks: list[bytes] = []
        self.finished = treq_collect(response, self._chunks.append)
        harness.stub.flush()

    @property
    def data(self) -> bytes:
        """All body bytes received so far."""
        self.harness.stub.flush()
        return b"".join(self._chunks)

    def events(self) -> list[Any]:
        """The SSE events received so far."""
        return parse_sse(self.data)

    def chunks(self) -> list[dict[str, Any]]:
        """Only the JSON events."""
        return [e for e in self.events() if isinstance(e, dict)]


def treq_collect(response: IResponse, collector: Callable[[bytes], None]) -> Deferred[None]:
    """``treq.collect`` with a precise type."""
    import treq

    d: Deferred[None] = treq.collect(response, collector)
    return d


class ChatTestCase(SynchronousTestCase):
    """Helpers to call the endpoints through StubTreq."""

    def call(
        self,
        harness: ChatHarness,
        body: object = None,
        *,
        method: str = "POST",
        path: str = CHAT_PATH,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send a request and return the complete response (it must be complete)."""
        import treq

        response = self.successResultOf(harness.request(method, path, body=body, headers=headers))
        content: Deferred[bytes] = treq.content(response)
        harness.stub.flush()
        data = self.successResultOf(content)
        headers_out = {
            k.decode("latin-1").lower(): v[-1].decode("latin-1")
            for k, v in response.headers.getAllRawHeaders()
        }
        return Reply(response.code, headers_out, data)

    def call_pending(
        self,
        harness: ChatHarness,
        body: object,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Deferred[IResponse]:
        """Send a request whose response is not expected yet."""
        d = harness.request("POST", body=body, headers=headers)
        self.assertNoResult(d)
        return d

    def stream(
        self,
        harness: ChatHarness,
        body: object,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> StreamClient:
        """Open a streaming request; the headers must arrive at once."""
        response = self.successResultOf(harness.request("POST", body=body, headers=headers))
        return StreamClient(harness, response)

    def assertError(
        self, reply: Reply, status: int, message: str, error_type: str = "invalid_request_error"
    ) -> dict[str, Any]:
        """The reply is an OpenAI error with this status, message and type."""
        self.assertEqual(reply.status, status, reply.body)
        self.assertTrue(reply.headers["content-type"].startswith("application/json"))
        error = reply.error
        self.assertEqual(error["message"], message)
        self.assertEqual(error["type"], error_type)
        return error
