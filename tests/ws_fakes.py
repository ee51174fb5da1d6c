"""Fakes and a tiny WebSocket client for the WebSocket protocol tests.

:class:`WsHarness` builds the real factory on a ``Clock`` and connects real
protocol instances over ``StringTransport``; :class:`WsClient` speaks the
WebSocket framing by hand (masked client frames, unmasked server frames) so a
test sees exactly the bytes the gateway writes, synchronously.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from attrs import frozen
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from openclaw.agents.approvals import ApprovalBroker
from openclaw.agents.types import (
    AgentRequest,
    CompactionReport,
    EmbeddingRequest,
    EmbeddingResult,
    EmbeddingsUnavailableError,
    UnknownAgentError,
)
from openclaw.config.model import (
    AgentConfig,
    AgentsConfig,
    AuthConfig,
    Config,
    GatewayConfig,
    RateLimitConfig,
    WebSocketConfig,
)
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.ws.factory import GatewayWebSocketFactory
from openclaw.gateway.ws.handshake import b64url_encode, device_id_for, device_payload_v3
from openclaw.gateway.ws.logbuffer import LogBuffer
from openclaw.gateway.ws.protocol import GatewayWebSocketProtocol
from openclaw.gateway.ws.server import build_ws_gateway
from openclaw.sessions.entry import SessionEntry
from openclaw.testing import FakeRun

TOKEN = "ws-test-token-0123456789abcdef"


def build_ws_factory(**parts: Any) -> GatewayWebSocketFactory:
    """The WebSocket side (``build_ws_gateway``'s keywords) and its Autobahn
    factory at once: the gateway makes the factory on the first upgrade, a
    test needs it before."""
    return build_ws_gateway(**parts).factory()


#: The clock starts here (epoch seconds), so timestamps look real.
START = 1_795_763_204.0


class FakeRuntime:
    """An AgentRuntime whose runs the test drives by hand."""

    def __init__(self, clock: IReactorTime, agent_ids: Sequence[str] = ("main", "beta")) -> None:
        self._clock = clock
        self._agent_ids = tuple(agent_ids)
        self.runs: dict[str, FakeRun] = {}
        self.started: list[FakeRun] = []
        self._observers: list[Callable[[Any], None]] = []
        #: A real approval broker (exec.approval.* tests drive it directly).
        self.approvals = ApprovalBroker(clock)
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
        return self._agent_ids[0]

    @property
    def agent_ids(self) -> Sequence[str]:
        return self._agent_ids

    @property
    def agents(self) -> Sequence[FakeAgent]:
        return [
            FakeAgent(agent_id, is_default=i == 0) for i, agent_id in enumerate(self._agent_ids)
        ]

    @property
    def sessions(self) -> None:
        """This fake keeps no sessions (tests hand the factory FakeSessions)."""
        return None

    def start(self, request: AgentRequest) -> FakeRun:
        if request.agent_id not in self._agent_ids:
            raise UnknownAgentError(request.agent_id)
        run = FakeRun(request, self._clock)
        self.runs[run.run_id] = run
        self.started.append(run)
        for observer in list(self._observers):
            observer(run)
        return run

    def get_run(self, run_id: str) -> FakeRun | None:
        return self.runs.get(run_id)

    def active_runs(self, session_key: str | None = None) -> Sequence[FakeRun]:
        return [
            run
            for run in self.runs.values()
            if not run.settled and (session_key is None or run.session_key == session_key)
        ]

    def observe_runs(self, listener: Callable[[Any], None]) -> Callable[[], None]:
        self._observers.append(listener)

        def stop() -> None:
            if listener in self._observers:
                self._observers.remove(listener)

        return stop

    @property
    def observer_count(self) -> int:
        """How many observers are registered."""
        return len(self._observers)

    def embed(self, request: EmbeddingRequest) -> Deferred[EmbeddingResult]:
        """This fake has no embedding provider."""
        raise EmbeddingsUnavailableError("the fake runtime embeds nothing")

    def refuse_new_runs(self) -> None:
        """Nothing to refuse: the tests start what they need."""

    def shutdown(self) -> Deferred[None]:
        for run in list(self.runs.values()):
            run.cancel()
        return succeed(None)


class FakeSessions:
    """An in-memory SessionsView."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, SessionEntry]] = {}
        self.messages: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.resets: list[tuple[str, str]] = []

    def add(
        self, agent_id: str, key: str, updated_at: int, messages: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Store a session with some transcript messages."""
        self.entries.setdefault(agent_id, {})[key] = SessionEntry(
            key=key,
            agent_id=agent_id,
            session_id=f"id-{len(self.resets)}-{key}",
            updated_at=updated_at,
            extra={"model": "demo"},
        )
        self.messages[(agent_id, key)] = list(messages)

    def list_sessions(self, agent_id: str) -> list[SessionEntry]:
        return list(self.entries.get(agent_id, {}).values())

    def get_session(self, agent_id: str, session_key: str) -> SessionEntry | None:
        return self.entries.get(agent_id, {}).get(session_key)

    def read_messages(
        self, agent_id: str, session_key: str, limit: int = 200, *, include_tools: bool = False
    ) -> list[dict[str, Any]]:
        return self.messages.get((agent_id, session_key), [])[-limit:]

    def reset(self, agent_id: str, session_key: str) -> SessionEntry:
        self.resets.append((agent_id, session_key))
        entry = SessionEntry(key=session_key, agent_id=agent_id, session_id="fresh", updated_at=1)
        self.entries.setdefault(agent_id, {})[session_key] = entry
        self.messages[(agent_id, session_key)] = []
        return entry

    def delete(self, agent_id: str, session_key: str) -> bool:
        self.messages.pop((agent_id, session_key), None)
        return self.entries.get(agent_id, {}).pop(session_key, None) is not None

    def session_path(self, agent_id: str) -> Path:
        return Path("/state/agents") / agent_id / "sessions" / "sessions.json"


@frozen
class FakeAgent:
    """An agent as the registry describes it."""

    id: str
    name: str | None = None
    model: str | None = None
    workspace: Path = Path("/work/space")
    is_default: bool = False


class FakeAgents:
    """An AgentsView over fixed agents; the first is the default."""

    def __init__(self, agents: Sequence[FakeAgent]) -> None:
        self._agents = tuple(agents)

    @property
    def default_agent_id(self) -> str:
        return self._agents[0].id

    @property
    def agents(self) -> Sequence[FakeAgent]:
        return self._agents


def make_config(
    *,
    mode: str = "token",
    token: str | None = TOKEN,
    password: str | None = None,
    rate_limit: RateLimitConfig | None = None,
    allowed_origins: Sequence[str] = (),
    **ws: Any,
) -> Config:
    """A gateway config with two agents and the given auth and ``gateway.ws`` values."""
    from openclaw.config.model import ControlUiConfig

    return Config(
        gateway=GatewayConfig(
            auth=AuthConfig(
                mode=mode,  # type: ignore[arg-type]  # tests pass valid literals
                token=token,
                password=password,
                rate_limit=rate_limit,
            ),
            ws=WebSocketConfig(**ws),
            control_ui=ControlUiConfig(allowed_origins=tuple(allowed_origins)),
        ),
        agents=AgentsConfig(
            list=(AgentConfig(id="main", default=True, name="Main"), AgentConfig(id="beta"))
        ),
        state_dir=Path("/state"),
    )


# -- the client side --------------------------------------------------------------------


def client_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One masked client frame."""
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


@frozen
class ServerFrame:
    """One frame the server wrote."""

    opcode: int
    payload: bytes

    @property
    def json(self) -> Any:
        """The payload of a text frame, parsed."""
        return json.loads(self.payload)

    @property
    def close_code(self) -> int | None:
        """The status code of a close frame (None when it has none)."""
        if len(self.payload) >= 2:
            return int(struct.unpack("!H", self.payload[:2])[0])
        return None

    @property
    def close_reason(self) -> str:
        """The reason of a close frame."""
        return self.payload[2:].decode("utf-8")


def decode_server_frames(data: bytes) -> tuple[list[ServerFrame], bytes]:
    """Split unmasked server frames off ``data``; returns (frames, leftover)."""
    frames: list[ServerFrame] = []
    pos = 0
    while len(data) - pos >= 2:
        b0, b1 = data[pos], data[pos + 1]
        assert not b1 & 0x80, "server frames must not be masked"
        length = b1 & 0x7F
        offset = pos + 2
        if length == 126:
            if len(data) - offset < 2:
                break
            length = struct.unpack("!H", data[offset : offset + 2])[0]
            offset += 2
        elif length == 127:
            if len(data) - offset < 8:
                break
            length = struct.unpack("!Q", data[offset : offset + 8])[0]
            offset += 8
        if len(data) - offset < length:
            break
        frames.append(ServerFrame(opcode=b0 & 0x0F, payload=data[offset : offset + length]))
        pos = offset + length
    return frames, data[pos:]


UPGRADE = (
    b"GET / HTTP/1.1\r\n"
    b"Host: 127.0.0.1:18789\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
)


class WsClient:
    """One connection to the real protocol over a StringTransport."""

    def __init__(self, protocol: GatewayWebSocketProtocol, transport: StringTransport) -> None:
        self.protocol = protocol
        self.transport = transport
        self.http_response = b""
        self._buffer = b""
        self._received: list[ServerFrame] = []
        self.lost = False
        self._ids = 0

    def upgrade(self, extra_headers: bytes = b"") -> bytes:
        """Send the HTTP upgrade; returns the HTTP response head."""
        self.protocol.dataReceived(UPGRADE + extra_headers + b"\r\n")
        data = self.transport.value()
        self.transport.clear()
        head, sep, rest = data.partition(b"\r\n\r\n")
        self.http_response = head + sep
        self._buffer = rest
        self._pump()
        return self.http_response

    def _pump(self) -> None:
        data = self.transport.value()
        self.transport.clear()
        frames, self._buffer = decode_server_frames(self._buffer + data)
        for frame in frames:
            self._received.append(frame)
        if self.transport.disconnecting and not self.lost:
            self.lose()

    def lose(self) -> None:
        """The TCP connection goes away (as the reactor would report it)."""
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionDone()))

    def frames(self) -> list[ServerFrame]:
        """Every frame received since the last call."""
        self._pump()
        out, self._received = self._received, []
        return out

    def messages(self) -> list[Any]:
        """The JSON text frames received since the last call (other frames dropped)."""
        return [f.json for f in self.frames() if f.opcode == 1]

    def send_raw(self, opcode: int, payload: bytes) -> None:
        """Send one frame."""
        self.protocol.dataReceived(client_frame(opcode, payload))
        self._pump()

    def send_text(self, text: str | bytes) -> None:
        """Send one text frame."""
        self.send_raw(1, text.encode("utf-8") if isinstance(text, str) else text)

    def send(self, obj: Any) -> None:
        """Send one JSON text frame."""
        self.send_text(json.dumps(obj))

    def request(self, method: str, params: Any = None, *, with_params: bool = True) -> str:
        """Send a ``req`` with a fresh id; returns the id."""
        self._ids += 1
        request_id = f"{self._ids}:req"
        frame: dict[str, Any] = {"type": "req", "id": request_id, "method": method}
        if with_params:
            frame["params"] = {} if params is None else params
        self.send(frame)
        return request_id

    def transport_full(self) -> None:
        """The socket's send buffer filled up: the transport pauses its producer."""
        assert self.transport.producer is not None
        self.transport.producer.pauseProducing()

    def transport_drained(self) -> None:
        """The send buffer drained: the transport resumes its producer."""
        assert self.transport.producer is not None
        self.transport.producer.resumeProducing()

    def close(self, code: int | None = None, reason: str = "") -> None:
        """Send a close frame (no status code when ``code`` is None)."""
        payload = b"" if code is None else struct.pack("!H", code) + reason.encode("utf-8")
        self.send_raw(8, payload)

    def challenge(self) -> dict[str, Any]:
        """The connect.challenge payload (first frame after the upgrade)."""
        first = self.messages()[0]
        assert first["event"] == "connect.challenge", first
        payload: dict[str, Any] = first["payload"]
        return payload


def connect_params(
    *,
    token: str | None = TOKEN,
    password: str | None = None,
    min_protocol: int = 4,
    max_protocol: int = 4,
    scopes: Sequence[str] | None = ("operator.admin",),
    client_id: str = "cli",
    mode: str = "cli",
    **extra: Any,
) -> dict[str, Any]:
    """``connect`` params in the shape the real CLI sends."""
    params: dict[str, Any] = {
        "minProtocol": min_protocol,
        "maxProtocol": max_protocol,
        "client": {
            "id": client_id,
            "version": "2026.9.6",
            "platform": "linux",
            "deviceFamily": "Linux",
            "mode": mode,
            "instanceId": "5de9d485-47da-4e74-9155-221ac8dc6a39",
        },
        "caps": [],
        "role": "operator",
    }
    if scopes is not None:
        params["scopes"] = list(scopes)
    auth: dict[str, Any] = {}
    if token is not None:
        auth["token"] = token
    if password is not None:
        auth["password"] = password
    if auth:
        params["auth"] = auth
    params.update(extra)
    return params


def signed_device(
    key: Ed25519PrivateKey,
    params: dict[str, Any],
    *,
    nonce: str,
    signed_at: int,
    tamper: bool = False,
) -> dict[str, Any]:
    """A device block for ``params`` signed the way the CLI signs it (v3)."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    device_id = device_id_for(raw)
    client = params["client"]
    text = device_payload_v3(
        device_id=device_id,
        client_id=client["id"],
        client_mode=client["mode"],
        role=params["role"],
        scopes=params.get("scopes", []),
        signed_at=signed_at,
        token=(params.get("auth") or {}).get("token") or "",
        nonce=nonce,
        platform=client["platform"],
        device_family=client.get("deviceFamily", ""),
    )
    signature = key.sign(text.encode("utf-8"))
    if tamper:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    return {
        "id": device_id,
        "publicKey": b64url_encode(raw),
        "signature": b64url_encode(signature),
        "signedAt": signed_at,
        "nonce": nonce,
    }


class WsConnector:
    """Connects clients to a factory over StringTransports, on a Clock."""

    def __init__(self, factory: GatewayWebSocketFactory, clock: Clock) -> None:
        self.factory = factory
        self.clock = clock
        self.clients: list[WsClient] = []

    def open(self, peer: str = "127.0.0.1", extra_headers: bytes = b"") -> WsClient:
        """A connection past the HTTP upgrade (challenge not yet read)."""
        address = IPv4Address("TCP", peer, 40000 + len(self.clients))
        protocol: object = self.factory.buildProtocol(address)
        assert isinstance(protocol, GatewayWebSocketProtocol)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        client = WsClient(protocol, transport)
        client.upgrade(extra_headers)
        self.clients.append(client)
        return client

    def connect(self, **params: Any) -> tuple[WsClient, dict[str, Any]]:
        """An authenticated connection and its hello-ok response frame."""
        client = self.open()
        client.challenge()
        client.send(
            {
                "type": "req",
                "id": "1:connect",
                "method": "connect",
                "params": connect_params(**params),
            }
        )
        frames = client.messages()
        assert len(frames) == 1 and frames[0]["ok"], frames
        return client, frames[0]

    def cleanup(self) -> None:
        """Drop every connection and check nothing is left scheduled."""
        for client in self.clients:
            client.lose()
        # Autobahn's close-handshake timers may still be due; they are no-ops now.
        self.clock.advance(5)
        pending = [call for call in self.clock.getDelayedCalls() if call.active()]
        assert not pending, f"timers left running: {pending}"


class WsHarness(WsConnector):
    """The real factory on a Clock, with fake runtime, sessions and agents."""

    def __init__(self, config: Config | None = None, *, with_store: bool = True) -> None:
        clock = Clock()
        clock.advance(START)
        self.config = config or make_config()
        self.runtime = FakeRuntime(clock)
        self.sessions = FakeSessions()
        self.agents = FakeAgents(
            [FakeAgent("main", name="Main", model="demo/echo", is_default=True), FakeAgent("beta")]
        )
        self.auth = GatewayAuth(self.config.gateway.auth, clock)
        self.log_buffer = LogBuffer(max_lines=50)
        factory = build_ws_factory(
            config=self.config,
            runtime=self.runtime,
            auth=self.auth,
            reactor=clock,
            log_buffer=self.log_buffer,
            started_at_ms=int(START * 1000) - 5000,
            sessions=self.sessions if with_store else None,
            agents=self.agents,
        )
        super().__init__(factory, clock)
