"""A blocking OpenClaw WebSocket client for tests against real gateway processes.

It connects with the gateway token (answering ``connect.challenge``), sends
requests and reads frames with a deadline; events seen while waiting for a
response are kept for :meth:`SyncWsClient.wait_event`.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import websocket

from tests.gateway_process import TOKEN


class SyncWsClient:
    """One operator connection to ``ws://127.0.0.1:<port>/``."""

    def __init__(
        self, port: int, timeout: float = 15.0, *, token: str = TOKEN, caps: Sequence[str] = ()
    ) -> None:
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/", timeout=timeout)
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._timeout = timeout
        challenge = self._recv(time.monotonic() + timeout)
        assert challenge.get("event") == "connect.challenge", challenge
        hello = self.request(
            "connect",
            {
                "minProtocol": 4,
                "maxProtocol": 4,
                "auth": {"token": token},
                "client": {"id": "cli", "version": "test", "platform": "linux", "mode": "cli"},
                "role": "operator",
                "scopes": ["operator.read", "operator.write", "operator.admin"],
                "caps": list(caps),
            },
        )
        assert hello.get("ok"), hello

    def _recv(self, deadline: float) -> dict[str, Any]:
        self.ws.settimeout(max(0.01, deadline - time.monotonic()))
        frame: dict[str, Any] = json.loads(self.ws.recv())
        return frame

    def send(self, method: str, params: dict[str, Any] | None = None) -> str:
        request_id = f"r{next(self._ids)}"
        frame = {"type": "req", "id": request_id, "method": method, "params": params or {}}
        self.ws.send(json.dumps(frame))
        return request_id

    def response(self, request_id: str, *, final: bool = False) -> dict[str, Any]:
        """The response to ``request_id`` (``final``: skip an ``accepted`` ack)."""
        deadline = time.monotonic() + self._timeout
        while True:
            frame = self._recv(deadline)
            if frame.get("type") == "event":
                self.events.append(frame)
                continue
            if frame.get("id") != request_id:
                continue
            payload = frame.get("payload") or {}
            if final and frame.get("ok") and payload.get("status") == "accepted":
                continue
            return frame

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.response(self.send(method, params))

    def wait_event(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        """The first event (already seen or arriving within ``timeout``) that matches."""
        for frame in self.events:
            if match(frame):
                return frame
        deadline = time.monotonic() + timeout
        while True:
            frame = self._recv(deadline)
            if frame.get("type") == "event":
                self.events.append(frame)
                if match(frame):
                    return frame

    def close(self) -> None:
        self.ws.close()
