"""One WebSocket connection speaking OpenClaw's gateway protocol (Autobahn).

Life of a connection: the HTTP upgrade (browser origins checked), then a
``connect.challenge`` event; the client's first frame must be a ``connect``
request within the handshake timeout; after ``hello-ok`` every ``req`` gets
exactly one ``res`` (``agent`` gets an ack first), and runs of the sessions the
client touched arrive as ``agent``/``chat`` events.

Slow consumers: a push producer registered on the transport learns when the
socket's send buffer is full; bytes written while it is full are counted.
Past ``maxBufferedBytes`` assistant deltas are coalesced (the next delta sent
carries the skipped text); past twice that the connection is closed 1008.

Autobahn owns ``.log`` on protocols, so this module logs through ``_log``;
exceptions in ``onConnect``/``onOpen`` are logged here because Autobahn would
only downgrade them to warnings.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from autobahn.exception import PayloadExceededError
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from openclaw.core.unavailable import SharedStateUnavailableError
from openclaw.gateway.ws.frames import (
    INVALID_REQUEST,
    UNAVAILABLE,
    FrameError,
    RequestError,
    RequestFrame,
    encode,
    encode_event_with_payload_json,
    event_frame,
    parse_request,
    response_error,
    response_ok,
)
from openclaw.gateway.ws.handshake import (
    ClientInfo,
    ConnectParams,
    DeviceIdentity,
    auth_failure,
    check_protocol,
    granted_scopes,
    parse_connect_params,
    verify_device,
)
from openclaw.gateway.ws.methods import CallContext, dispatch
from openclaw.gateway.ws.outbound import OutboundEvent

if TYPE_CHECKING:
    from openclaw.gateway.ws.factory import GatewayWebSocketFactory
    from openclaw.gateway.ws.server import WebSocketGateway

#: Close codes this protocol uses (RFC 6455 §7.4.1).
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY_VIOLATION = 1008
CLOSE_SERVICE_RESTART = 1012
#: Requests (and runs they started) one connection may have in flight before
#: new ones are refused.
MAX_PENDING_REQUESTS = 256
#: Methods whose answer comes before the run they start has ended.
_RUN_ACK_METHODS = frozenset({"chat.send"})
#: A close reason is at most 123 bytes of UTF-8.
_MAX_CLOSE_REASON = 123

# typing note: Autobahn leaves these unannotated; typed views keep strict mypy
# independent of how the project's mypy config treats untyped Autobahn calls.
_deny = cast(Callable[[int, str], Exception], ConnectionDeny)
_Send = Callable[..., None]


def _close_reason(text: str) -> bytes:
    return text.encode("utf-8")[:_MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")


@implementer(IPushProducer)
class SendBufferWatcher:
    """Learns from the transport's flow control how much output is waiting.

    The transport pauses its producer when its send buffer is full and
    resumes it once the buffer drained. Bytes written while paused are the
    estimate of what is buffered beyond the transport's own threshold.
    """

    def __init__(self) -> None:
        self.paused = False
        self.buffered = 0

    def wrote(self, size: int) -> None:
        """Account for ``size`` bytes handed to the transport."""
        if self.paused:
            self.buffered += size

    def pauseProducing(self) -> None:
        """The send buffer is full."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The send buffer drained."""
        self.paused = False
        self.buffered = 0

    def stopProducing(self) -> None:
        """The connection is gone."""
        self.paused = False
        self.buffered = 0


class GatewayWebSocketProtocol(WebSocketServerProtocol):
    """OpenClaw's gateway protocol on one WebSocket connection."""

    _log = Logger()
    factory: GatewayWebSocketFactory

    @property
    def gateway(self) -> WebSocketGateway:
        """What every connection shares (hub, services, auth, config)."""
        return self.factory.gateway

    def __init__(self) -> None:
        super().__init__()
        self.conn_id = str(uuid.uuid4())
        self.phase = "connecting"  # connecting, challenged, ready, closed
        self.client_address = "unknown"
        self.device: DeviceIdentity | None = None
        #: The gateway auth's generation this connection authenticated under.
        self.auth_generation = -1
        self._client: ClientInfo | None = None
        self._scopes: tuple[str, ...] = ()
        self._caps: tuple[str, ...] = ()
        self._nonce = ""
        self._seq = 0
        self._handshake_timer: IDelayedCall | None = None
        self._pending: set[Deferred[Any]] = set()
        #: Runs started by methods answered before the run ends (``chat.send``),
        #: counted with the pending requests against MAX_PENDING_REQUESTS.
        self._runs: set[str] = set()
        self._skipped: dict[tuple[str, str], str] = {}
        self._closed: list[Deferred[None]] = []
        self.watcher = SendBufferWatcher()
        self.coalesced = 0

    # -- Connection (what methods see) ---------------------------------------------

    @property
    def scopes(self) -> tuple[str, ...]:
        """Scopes granted at ``connect``."""
        return self._scopes

    @property
    def client(self) -> ClientInfo | None:
        """The client's self-description from ``connect``."""
        return self._client

    @property
    def wants_tool_events(self) -> bool:
        """Tool streams only go to clients that declared the ``tool-events`` cap."""
        return "tool-events" in self._caps

    def subscribe(self, session_key: str) -> None:
        """Deliver the runs of ``session_key`` to this connection."""
        if self.phase == "ready":
            self.gateway.hub.subscribe(self, session_key)

    def subscribe_all(self) -> None:
        """Deliver every run to this connection."""
        if self.phase == "ready":
            self.gateway.hub.subscribe_all(self)

    # -- transport --------------------------------------------------------------------

    def connectionMade(self) -> None:
        """Take the transport's producer slot to learn about its send buffer."""
        super().connectionMade()
        transport = self.transport
        assert transport is not None
        peer = transport.getPeer()
        self.client_address = peer.host if isinstance(peer, IPv4Address | IPv6Address) else "unix"
        consumer = IConsumer(transport)
        try:
            consumer.registerProducer(self.watcher, True)
        except RuntimeError:
            # twisted.web's HTTPChannel registered itself before the upgrade
            # handed the transport over; the channel is out of the picture now.
            consumer.unregisterProducer()
            consumer.registerProducer(self.watcher, True)

    def onConnect(self, request: ConnectionRequest) -> None:
        """Refuse the upgrade for foreign browser origins and while stopping."""
        try:
            # Behind a trusted proxy the client is named by X-Forwarded-For, so
            # the auth limiter keys on the real client, not the proxy.
            self.client_address = self.gateway.auth.client_address_for(
                self.client_address, request.headers.get("x-forwarded-for")
            )
            if self.gateway.stopping:
                raise _deny(ConnectionDeny.SERVICE_UNAVAILABLE, "gateway stopping")
            origin = request.headers.get("origin")
            if origin is not None and not self.gateway.origin_allowed(
                origin, request.headers.get("host"), self.client_address
            ):
                self._log.warn(
                    "refused WebSocket upgrade from {address}: origin {origin} not allowed",
                    address=self.client_address,
                    origin=origin,
                )
                raise _deny(ConnectionDeny.FORBIDDEN, "origin not allowed")
            self.gateway.connection_opening(self)
        except ConnectionDeny:
            raise
        except Exception:
            self._log.failure("onConnect failed")
            raise

    def onOpen(self) -> None:
        """Send the challenge and start the handshake clock."""
        try:
            self.phase = "challenged"
            self._nonce = str(uuid.uuid4())
            self._write_frame(
                encode(
                    event_frame(
                        "connect.challenge",
                        {"nonce": self._nonce, "ts": self.gateway.now_ms()},
                    )
                )
            )
            timeout = self.gateway.config.gateway.ws.handshake_timeout_ms / 1000
            self._handshake_timer = self.gateway.reactor.callLater(timeout, self._handshake_expired)
        except Exception:
            self._log.failure("onOpen failed")
            self.dropConnection(abort=True)

    def onClose(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        """Forget everything about this connection (idempotent)."""
        if self.phase == "closed":
            return
        was_ready = self.phase == "ready"
        self.phase = "closed"
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None
        pending, self._pending = self._pending, set()
        for d in pending:
            d.cancel()
        self._skipped.clear()
        self.gateway.hub.forget(self)
        self.gateway.connection_closed(self)
        if was_ready:
            self._log.info(
                "ws {conn_id} closed (code {code}, clean {clean})",
                conn_id=self.conn_id,
                code=code,
                clean=was_clean,
            )
        waiters, self._closed = self._closed, []
        for waiter in waiters:
            waiter.callback(None)

    def when_closed(self) -> Deferred[None]:
        """Fire once the connection is gone."""
        if self.phase == "closed":
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed.append(d)
        return d

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with ``code`` (any code, unlike sendClose)."""
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=_close_reason(reason), isReply=False)
        elif self.state in (self.STATE_CONNECTING, self.STATE_PROXY_CONNECTING):
            self.dropConnection(abort=True)

    def shutdown(self, reason: str) -> None:
        """Tell the client the gateway is stopping, then close 1012."""
        if self.state == self.STATE_OPEN:
            self._send_event("shutdown", {"reason": reason, "restartExpectedMs": None})
        self.close(CLOSE_SERVICE_RESTART, reason)

    # -- sending ------------------------------------------------------------------------

    def _write_frame(self, data: bytes) -> bool:
        if self.state != self.STATE_OPEN:
            return False
        try:
            cast(_Send, self.sendMessage)(data, isBinary=False)
        except PayloadExceededError:
            return False
        self.watcher.wrote(len(data) + 10)
        limit = self.gateway.config.gateway.ws.max_buffered_bytes
        if self.watcher.buffered > 2 * limit:
            self._log.warn(
                "ws {conn_id}: slow consumer ({buffered} bytes buffered); closing",
                conn_id=self.conn_id,
                buffered=self.watcher.buffered,
            )
            self.close(CLOSE_POLICY_VIOLATION, "slow consumer")
        return True

    def _send_response(self, frame: dict[str, Any]) -> None:
        if self.phase == "closed":
            return
        if not self._write_frame(encode(frame)) and self.state == self.STATE_OPEN:
            # Only an oversized answer fails to send on an open connection.
            self._write_frame(
                encode(
                    response_error(
                        frame["id"],
                        RequestError(UNAVAILABLE, "response exceeds the maximum payload size"),
                    )
                )
            )

    def _next_seq(self) -> int | None:
        if self.phase != "ready":
            return None
        self._seq += 1
        return self._seq

    def _send_event(self, name: str, payload: Any) -> None:
        self._write_frame(encode(event_frame(name, payload, self._next_seq())))

    def _over_limit(self) -> bool:
        return self.watcher.buffered > self.gateway.config.gateway.ws.max_buffered_bytes

    def deliver(self, event: OutboundEvent) -> None:
        """Send a run event, coalescing deltas while this client is slow."""
        if self.phase != "ready":
            return
        payload_json = event.payload_json
        if event.delta_key is not None:
            if self._over_limit():
                key = event.delta_key
                self._skipped[key] = self._skipped.get(key, "") + event.delta
                self.coalesced += 1
                return
            skipped = self._skipped.pop(event.delta_key, None)
            if skipped:
                payload_json = event.payload_json_with_prefix(skipped)
        elif event.terminal:
            # The final message carries the whole text; skipped deltas are moot.
            self._skipped.pop((event.run_id, "agent"), None)
            self._skipped.pop((event.run_id, "chat"), None)
        self._write_frame(
            encode_event_with_payload_json(event.name, payload_json, self._next_seq())
        )

    def send_tick(self, ts: int) -> None:
        """A keepalive tick; skipped (like deltas) while the client is slow."""
        if self.phase == "ready" and not self._over_limit():
            self._send_event("tick", {"ts": ts})

    # -- receiving ------------------------------------------------------------------------

    def onMessage(self, payload: bytes, is_binary: bool) -> None:
        """Route one client message by connection phase."""
        try:
            if self.phase == "challenged":
                self._on_handshake_message(payload, is_binary)
            elif self.phase == "ready":
                self._on_request_message(payload, is_binary)
        except Exception:
            self._log.failure("ws {conn_id}: message handling failed", conn_id=self.conn_id)
            self.close(1011, "internal error")

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if self.phase == "challenged":
            self._log.info(
                "ws {conn_id}: no connect within the handshake timeout", conn_id=self.conn_id
            )
            self.phase = "closing"
            self.close(CLOSE_POLICY_VIOLATION, "handshake timeout")

    def _reject_handshake(self, request_id: str | None, error: RequestError, code: int) -> None:
        self.phase = "closing"
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None
        if request_id is not None:
            self._write_frame(encode(response_error(request_id, error)))
        else:
            self._write_frame(encode(event_frame("error", error.error_shape())))
        self.close(code, error.message)

    def _on_handshake_message(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            self._reject_handshake(
                None,
                RequestError(INVALID_REQUEST, "invalid handshake: binary frames are not supported"),
                CLOSE_POLICY_VIOLATION,
            )
            return
        try:
            frame = parse_request(payload, self.gateway.config.gateway.max_json_depth)
        except FrameError as e:
            self._reject_handshake(
                e.request_id,
                RequestError(INVALID_REQUEST, f"invalid handshake: {e.message}"),
                CLOSE_POLICY_VIOLATION,
            )
            return
        if frame.method != "connect":
            self._reject_handshake(
                frame.id,
                RequestError(INVALID_REQUEST, "invalid handshake: first request must be connect"),
                CLOSE_POLICY_VIOLATION,
            )
            return
        try:
            params = self._authenticate(frame)
        except RequestError as error:
            code = CLOSE_POLICY_VIOLATION
            if error.details is not None and error.details.get("code") == "PROTOCOL_MISMATCH":
                code = CLOSE_PROTOCOL_ERROR
            self._log.info(
                "ws {conn_id} from {address}: connect refused: {message}",
                conn_id=self.conn_id,
                address=self.client_address,
                message=error.message,
            )
            self._reject_handshake(frame.id, error, code)
            return
        self._accept(frame, params)

    def _authenticate(self, frame: RequestFrame) -> ConnectParams:
        params = parse_connect_params(frame.params)
        check_protocol(params)
        decision = self.gateway.auth.check(
            token=params.token, password=params.password, client_address=self.client_address
        )
        if not decision.ok:
            raise auth_failure(
                decision, self.gateway.auth.mode, has_device=params.device is not None
            )
        self.device = verify_device(
            params, challenge_nonce=self._nonce, now_ms=self.gateway.now_ms()
        )
        return params

    def _accept(self, frame: RequestFrame, params: ConnectParams) -> None:
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None
        self._client = params.client
        self._scopes = granted_scopes(params)
        self._caps = params.caps
        limit = self.gateway.config.gateway.ws.max_payload
        self.maxMessagePayloadSize = limit
        self.maxFramePayloadSize = limit
        self._write_frame(encode(response_ok(frame.id, self.gateway.hello_payload(self))))
        self.auth_generation = self.gateway.auth.generation
        self.phase = "ready"
        self.gateway.connection_ready(self)
        self._log.info(
            "ws {conn_id} connected from {address}: client {client_id}/{client_mode} "
            "{client_version}{device}",
            conn_id=self.conn_id,
            address=self.client_address,
            client_id=params.client.id,
            client_mode=params.client.mode,
            client_version=params.client.version,
            device=f" device {self.device.id[:12]}" if self.device else "",
        )

    def _on_request_message(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            self._send_event(
                "error",
                {"code": INVALID_REQUEST, "message": "binary frames are not supported"},
            )
            return
        try:
            frame = parse_request(payload, self.gateway.config.gateway.max_json_depth)
        except FrameError as e:
            if e.request_id is not None:
                self._send_response(
                    response_error(e.request_id, RequestError(INVALID_REQUEST, e.message))
                )
            else:
                self._send_event("error", {"code": INVALID_REQUEST, "message": e.message})
            return
        if len(self._pending) + len(self._runs) >= MAX_PENDING_REQUESTS:
            self._send_response(
                response_error(
                    frame.id,
                    RequestError(
                        UNAVAILABLE,
                        "too many requests in flight on this connection",
                        retryable=True,
                    ),
                )
            )
            return
        self._call(frame.id, frame.method, frame.params)

    def _track_run(self, payload: Any) -> None:
        """Count a run this connection started (and was answered for at once)
        against its in-flight limit until the run ends."""
        run_id = payload.get("runId") if isinstance(payload, dict) else None
        if not isinstance(run_id, str) or run_id in self._runs:
            return
        run = self.gateway.services.runtime.get_run(run_id)
        if run is None:
            return
        self._runs.add(run_id)

        def ended(_: object) -> None:
            self._runs.discard(run_id)

        run.result.addBoth(ended)

    def _call(self, request_id: str, method: str, params: Mapping[str, Any]) -> None:
        ctx = CallContext(
            request_id=request_id,
            method=method,
            connection=self,
            services=self.gateway.services,
            ack=lambda payload: self._send_response(response_ok(request_id, payload)),
        )
        try:
            d = dispatch(ctx, params)
        except RequestError as error:
            self._send_response(response_error(request_id, error))
            return
        self._pending.add(d)

        def answered(payload: Any) -> None:
            self._send_response(response_ok(request_id, payload))
            if method in _RUN_ACK_METHODS:
                self._track_run(payload)

        def failed(failure: Failure) -> None:
            error = failure.value
            if isinstance(error, RequestError):
                self._send_response(response_error(request_id, error))
            elif isinstance(error, CancelledError) and self.phase == "closed":
                return
            elif isinstance(error, SharedStateUnavailableError):
                # Redis away (sessions.list, chat.history...): the caller retries.
                unavailable = RequestError(
                    UNAVAILABLE,
                    "session store unavailable",
                    retryable=True,
                    retry_after_ms=error.retry_after_ms,
                )
                self._send_response(response_error(request_id, unavailable))
            else:
                self._log.failure(
                    "ws {conn_id}: method {method} failed",
                    failure,
                    conn_id=self.conn_id,
                    method=method,
                )
                self._send_response(
                    response_error(request_id, RequestError(UNAVAILABLE, "internal error"))
                )

        def forget(_: None) -> None:
            self._pending.discard(d)

        d.addCallbacks(answered, failed).addBoth(forget)
