"""A small client of the gateway's WebSocket protocol, for the CLI.

``openclaw gateway call METHOD`` and ``openclaw agent`` (without ``--local``)
connect, answer the ``connect.challenge`` with a ``connect`` request carrying
the shared secret, send one request and print its (final) response.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO
from urllib.parse import urlparse

from attrs import frozen
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw import __version__

PROTOCOL_VERSION = 4


class GatewayCallError(Exception):
    """The gateway answered with an error, or the call could not complete."""


@frozen
class Target:
    """Where to connect and with what secret."""

    url: str
    token: str | None = None
    password: str | None = None


def resolve_target(
    *,
    url: str | None,
    token: str | None,
    password: str | None,
    env: Mapping[str, str],
    config_path: str | None = None,
) -> Target:
    """Flags, then ``OPENCLAW_GATEWAY_URL``/``_TOKEN``/``_PASSWORD``, then the config."""
    token = token or env.get("OPENCLAW_GATEWAY_TOKEN") or None
    password = password or env.get("OPENCLAW_GATEWAY_PASSWORD") or None
    url = url or env.get("OPENCLAW_GATEWAY_URL") or None
    if url is not None and token is None and password is None:
        raise GatewayCallError("gateway url override requires explicit credentials")
    if url is None:
        from openclaw.config import ConfigError, load_config

        try:
            config = load_config(config_path, env=env).config
        except ConfigError as e:
            raise GatewayCallError(str(e)) from e
        url = f"ws://127.0.0.1:{env.get('OPENCLAW_GATEWAY_PORT') or config.gateway.port}"
        token = token or config.gateway.auth.token
        password = password or config.gateway.auth.password
    return Target(url=url, token=token, password=password)


def target_from_args(args: argparse.Namespace, err: TextIO, prefix: str) -> Target | None:
    """The gateway a command's ``--url``/``--token``/``--password``/``--config``
    name (see :func:`resolve_target`); None once ``<prefix>: why`` is on ``err``."""
    try:
        return resolve_target(
            url=getattr(args, "url", None),
            token=getattr(args, "token", None),
            password=getattr(args, "password", None),
            env=os.environ,
            config_path=args.config,
        )
    except GatewayCallError as e:
        err.write(f"{prefix}: {e}\n")
        return None


class _CallProtocol(WebSocketClientProtocol):
    """Handshake, one request, then close."""

    _log = Logger()
    factory: _CallFactory

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            frame = json.loads(payload)
        except ValueError:
            return
        if not isinstance(frame, dict):
            return
        call = self.factory.call
        if frame.get("type") == "event":
            if frame.get("event") == "connect.challenge":
                self._send_frame(call.connect_frame())
            elif call.on_event is not None:
                call.on_event(frame)
            return
        if frame.get("type") != "res":
            return
        if frame.get("id") == call.connect_id:
            if not frame.get("ok"):
                # Reported once the close handshake ends, like a response.
                call.refusal = _error_text(frame)
                self.sendClose()
                return
            self._send_frame(call.request_frame())
            return
        if frame.get("id") != call.request_id:
            return
        payload_obj = frame.get("payload")
        if (
            call.expect_final
            and frame.get("ok")
            and isinstance(payload_obj, dict)
            and payload_obj.get("status") == "accepted"
        ):
            return
        # Close politely; the call completes once the server answers the close.
        call.response = frame
        self.sendClose()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        call = self.factory.call
        if call.response is not None:
            call.finish(call.response)
        elif call.refusal is not None:
            call.fail(call.refusal)
        else:
            call.fail(f"connection closed before a response ({code}: {reason or ''})")

    def _send_frame(self, frame: dict[str, Any]) -> None:
        data = json.dumps(frame).encode("utf-8")
        self.sendMessage(data, isBinary=False)  # type: ignore[no-untyped-call]  # autobahn is unannotated


class _CallFactory(WebSocketClientFactory):
    protocol = _CallProtocol  # type: ignore[assignment]  # autobahn's factory attribute

    def __init__(self, call: _Call, url: str, reactor: IReactorTime) -> None:
        super().__init__(url, reactor=reactor)  # type: ignore[no-untyped-call]
        self.call = call


class _Call:
    """State of one gateway call; ``done`` fires with the response frame."""

    def __init__(
        self,
        target: Target,
        method: str,
        params: Any,
        *,
        expect_final: bool,
        scopes: list[str],
        caps: Sequence[str] = (),
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.caps = list(caps)
        self.on_event = on_event
        self.target = target
        self.method = method
        self.params = params
        self.expect_final = expect_final
        self.scopes = scopes
        self.connect_id = f"1:{uuid.uuid4()}"
        self.request_id = f"2:{uuid.uuid4()}"
        self.done: Deferred[dict[str, Any]] = Deferred()
        #: The response frame, kept until the close handshake ends.
        self.response: dict[str, Any] | None = None
        #: Why the gateway refused ``connect``, kept until the close handshake ends.
        self.refusal: str | None = None

    def connect_frame(self) -> dict[str, Any]:
        auth: dict[str, str] = {}
        if self.target.token:
            auth["token"] = self.target.token
        if self.target.password:
            auth["password"] = self.target.password
        return {
            "type": "req",
            "id": self.connect_id,
            "method": "connect",
            "params": {
                "minProtocol": PROTOCOL_VERSION,
                "maxProtocol": PROTOCOL_VERSION,
                "client": {
                    "id": "cli",
                    "version": __version__,
                    "platform": "python",
                    "mode": "cli",
                    "instanceId": str(uuid.uuid4()),
                },
                "caps": self.caps,
                "auth": auth,
                "role": "operator",
                "scopes": self.scopes,
            },
        }

    def request_frame(self) -> dict[str, Any]:
        return {"type": "req", "id": self.request_id, "method": self.method, "params": self.params}

    def finish(self, frame: dict[str, Any]) -> None:
        if not self.done.called:
            self.done.callback(frame)

    def fail(self, message: str) -> None:
        if not self.done.called:
            self.done.errback(GatewayCallError(message))


def _error_text(frame: Mapping[str, Any]) -> str:
    error = frame.get("error")
    if isinstance(error, Mapping):
        return str(error.get("message") or error.get("code") or "error")
    return "error"


def call_gateway(
    reactor: IReactorTime,
    target: Target,
    method: str,
    params: Any = None,
    *,
    expect_final: bool = False,
    timeout_seconds: float = 10.0,
    scopes: list[str] | None = None,
    caps: Sequence[str] = (),
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> Deferred[dict[str, Any]]:
    """Connect, authenticate, send one request; fires with the response frame.

    ``caps`` are declared in ``connect`` (``tool-events`` asks for tool
    streams); ``on_event`` gets every event frame after the challenge.

    ``reactor`` also needs ``IReactorTCP`` (and ``IReactorSSL`` for ``wss://``)
    for the connection; only its clock is typed here.
    """
    parsed = urlparse(target.url)
    if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
        raise GatewayCallError(f"not a ws:// or wss:// URL: {target.url}")
    call = _Call(
        target,
        method,
        {} if params is None else params,
        expect_final=expect_final,
        scopes=scopes or ["operator.read", "operator.write"],
        caps=caps,
        on_event=on_event,
    )
    factory = _CallFactory(call, target.url, reactor)
    factory.setProtocolOptions(perMessageCompressionOffers=[])  # type: ignore[no-untyped-call]
    port = parsed.port or (443 if parsed.scheme == "wss" else 80)
    host = parsed.hostname.replace(":", "\\:")
    kind = "tls" if parsed.scheme == "wss" else "tcp"
    endpoint = clientFromString(reactor, f"{kind}:host={host}:port={port}")  # type: ignore[no-untyped-call]
    connecting = endpoint.connect(factory)
    connecting.addErrback(lambda f: call.fail(f"cannot connect to {target.url}: {f.value}"))
    timer = reactor.callLater(
        timeout_seconds, call.fail, f"gateway timeout after {int(timeout_seconds * 1000)}ms"
    )

    def abort(proto: object) -> None:
        # None when the connection attempt itself failed; no transport once
        # the connection is already gone.
        transport = getattr(proto, "transport", None)
        if transport is not None:
            transport.abortConnection()

    def cleanup(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        if isinstance(result, Failure):
            # Timed out or refused: drop the connection (a clean close already
            # happened on success).
            connecting.addCallback(abort)
        return result

    return call.done.addBoth(cleanup)


def run_main(main: Any) -> int:
    """Run ``main(reactor)`` (a coroutine function returning the exit status)
    under ``react``; the status it returns, or 1."""
    return _run(main)


def _run(main: Any) -> int:

    from twisted.internet.task import react

    codes: list[int] = []

    def wrapped(reactor: IReactorTime) -> Deferred[None]:
        return Deferred.fromCoroutine(main(reactor)).addCallback(codes.append)

    try:
        react(wrapped)
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    return codes[0] if codes else 1


def run_gateway_call(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``openclaw gateway call METHOD``."""
    try:
        params = json.loads(args.params) if args.params else {}
    except ValueError as e:
        err.write(f"Gateway call failed: {e}\n")
        return 1
    target = target_from_args(args, err, "Gateway call failed")
    if target is None:
        return 1

    async def main(reactor: IReactorTime) -> int:
        try:
            frame = await call_gateway(
                reactor,
                target,
                args.method,
                params,
                expect_final=args.expect_final,
                timeout_seconds=args.timeout / 1000.0,
            )
        except GatewayCallError as e:
            err.write(f"Gateway call failed: {e}\n")
            return 1
        if not frame.get("ok"):
            err.write(f"Gateway call failed: {_error_text(frame)}\n")
            return 1
        if not args.json:
            out.write(f"Gateway call: {args.method}\n")
        out.write(json.dumps(frame.get("payload"), indent=None if args.json else 2) + "\n")
        return 0

    return _run(main)


def run_remote_agent(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``openclaw agent -m TEXT`` against a running gateway."""
    target = target_from_args(args, err, "openclaw agent")
    if target is None:
        return 1
    params: dict[str, Any] = {"message": args.message, "idempotencyKey": str(uuid.uuid4())}
    if args.session_key:
        params["sessionKey"] = args.session_key
    elif args.agent_id:
        params["agentId"] = args.agent_id
    if args.timeout is not None:
        params["timeout"] = args.timeout
    wait = (args.timeout or 600) + 30

    async def main(reactor: IReactorTime) -> int:
        try:
            frame = await call_gateway(
                reactor,
                target,
                "agent",
                params,
                expect_final=True,
                timeout_seconds=wait,
                caps=["tool-events"],
                on_event=lambda event: print_tool_event(event, err),
            )
        except GatewayCallError as e:
            err.write(f"openclaw agent: {e}\n")
            return 1
        payload = frame.get("payload") if isinstance(frame.get("payload"), dict) else {}
        assert isinstance(payload, dict)
        if not frame.get("ok"):
            err.write(f"{_error_text(frame)}\n")
            return 1
        if args.json:
            out.write(json.dumps(payload) + "\n")
        else:
            for item in (payload.get("result") or {}).get("payloads") or []:
                text = str(item.get("text") or "").rstrip()
                if text:
                    out.write(text + "\n")
        return 0 if payload.get("status") in ("ok", "completed", None) else 1

    return _run(main)


def print_tool_event(frame: Mapping[str, Any], err: TextIO) -> None:
    """A tool event of the run as one stderr line (as ``openclaw agent --local``)."""
    payload = frame.get("payload")
    if frame.get("event") != "agent" or not isinstance(payload, Mapping):
        return
    data = payload.get("data")
    if payload.get("stream") != "tool" or not isinstance(data, Mapping):
        return
    phase = data.get("phase")
    if phase == "start":
        args = data.get("args")
        detail = args if isinstance(args, str) else json.dumps(args)
    elif phase == "result":
        first = str(data.get("result") or "").strip().splitlines()
        status = "error" if data.get("isError") else "ok"
        detail = f"{status}: {first[0]}" if first else status
    else:
        return
    detail = " ".join(str(detail).split())
    if len(detail) > 200:
        detail = detail[:199] + "\u2026"
    err.write(f"[tool] {data.get('name')} {detail}".rstrip() + "\n")
    err.flush()
