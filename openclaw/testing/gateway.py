"""A whole gateway in a test: a ready config and a harness speaking real HTTP.

An embedder's first HTTP-level test should not meet a 404 because the chat
endpoint is off by default, or a 401 because no token was set.
:func:`http_test_config` is the scripted runtime's config with chat
completions on and :data:`TEST_TOKEN` as the gateway token;
:class:`GatewayHarness` builds the real gateway around a scripted runtime and
feeds raw HTTP through its real ``Site`` (limits, access log, metrics) over
in-memory transports, on a ``MemoryReactorClock``::

    h = GatewayHarness.create(self.mktemp())
    conn = h.request(b"POST", b"/v1/chat/completions", body=..., token=TEST_TOKEN)
    h.run_due()
    status, headers, body = conn.response()
"""

# mypy: allow-untyped-calls
# (twisted.internet.testing is unannotated.)

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from openclaw.config.live import LiveConfig
from openclaw.config.model import (
    AuthConfig,
    ChatCompletionsConfig,
    Config,
    GatewayConfig,
    HttpConfig,
    MetricsConfig,
    ResponsesConfig,
)
from openclaw.gateway.assembly import Gateway, build_gateway
from openclaw.testing.scripted import (
    SCRIPTED_MODEL,
    SCRIPTED_PROVIDER_ID,
    ScriptedProvider,
    make_runtime,
    run_due,
    scripted_config,
)

#: The gateway token of :func:`http_test_config` (long enough for doctor's check).
TEST_TOKEN = "test-token-0123456789abcdef0123456789"


def http_test_config(
    state_dir: Path | str,
    *,
    token: str = TEST_TOKEN,
    model: str = SCRIPTED_MODEL,
    metrics: bool = False,
    responses: bool = False,
) -> Config:
    """:func:`scripted_config` with ``/v1/chat/completions`` on and token auth
    (``Authorization: Bearer <token>``); ``metrics`` also serves ``/metrics``,
    ``responses`` also ``/v1/responses``."""
    base = scripted_config(state_dir, model=model)
    return attrs.evolve(
        base,
        gateway=GatewayConfig(
            auth=AuthConfig(mode="token", token=token),
            http=HttpConfig(
                chat_completions=ChatCompletionsConfig(enabled=True),
                metrics=MetricsConfig(enabled=metrics),
                responses=ResponsesConfig(enabled=responses),
            ),
        ),
    )


class Exchange:
    """One client connection to the harness's site."""

    def __init__(self, transport: StringTransport, protocol: IProtocol) -> None:
        self.transport = transport
        self.protocol = protocol

    def send(self, data: bytes) -> None:
        """More bytes from the client (a pipelined request, a WebSocket frame)."""
        self.protocol.dataReceived(data)

    def close(self) -> None:
        """The client hangs up."""
        self.protocol.connectionLost(Failure(ConnectionDone("client closed")))

    def raw(self) -> bytes:
        """Everything the gateway wrote so far."""
        return bytes(self.transport.value())

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-case names) and body of the first answer.

        A chunked body (a stream) is returned de-chunked.
        """
        head, _, body = self.raw().partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = _dechunk(body)
        return status, headers, body

    def json(self) -> Any:
        """The answer's body as JSON."""
        return json.loads(self.response()[2])


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


@attrs.define
class GatewayHarness:
    """A gateway on a scripted runtime, driven by raw HTTP over StringTransports."""

    clock: MemoryReactorClock
    gateway: Gateway
    provider: ScriptedProvider

    @classmethod
    def create(
        cls,
        state_dir: Path | str,
        config: Config | None = None,
        *,
        provider: ScriptedProvider | None = None,
        clock: MemoryReactorClock | None = None,
        live: LiveConfig | None = None,
    ) -> GatewayHarness:
        """:func:`http_test_config` (or ``config``) on a ready gateway.

        :param live: the holder a reload replaces the config of (default: one
            around ``config``, reloading from ``config.source_path``).
        """
        clock = clock or MemoryReactorClock()
        if config is None:
            config = http_test_config(state_dir)
        if provider is None:
            provider = ScriptedProvider(clock=clock)
        runtime = make_runtime(config, clock=clock, providers={SCRIPTED_PROVIDER_ID: provider})
        gateway = build_gateway(config, clock, runtime=runtime, live=live)
        gateway.readiness.mark_ready(clock)
        return cls(clock=clock, gateway=gateway, provider=provider)

    def connect(self, peer: str = "127.0.0.1") -> Exchange:
        """A new client connection (from ``peer``)."""
        address = IPv4Address("TCP", peer, 40000)
        protocol = self.gateway.site.buildProtocol(address)
        assert protocol is not None
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return Exchange(transport, protocol)

    def request(
        self,
        method: bytes,
        path: bytes,
        *,
        body: bytes | Mapping[str, Any] | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        peer: str = "127.0.0.1",
    ) -> Exchange:
        """Send one request on a new connection; the answer accumulates in the
        returned :class:`Exchange` as the clock runs."""
        exchange = self.connect(peer)
        if isinstance(body, Mapping):
            body = json.dumps(body).encode("utf-8")
        lines = [b"%s %s HTTP/1.1" % (method, path), b"Host: gateway.test"]
        if token is not None:
            lines.append(b"Authorization: Bearer " + token.encode("ascii"))
        if body is not None:
            lines.append(b"Content-Type: application/json")
            lines.append(b"Content-Length: %d" % len(body))
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}".encode("latin-1"))
        data = b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")
        exchange.send(data)
        return exchange

    def run_due(self) -> None:
        """Run everything due now (stream chunks, callLater(0) steps)."""
        run_due(self.clock)

    def advance(self, seconds: float) -> None:
        """Move the clock on, running what falls due."""
        self.clock.advance(seconds)
        self.run_due()


__all__ = ["TEST_TOKEN", "Exchange", "GatewayHarness", "http_test_config"]
