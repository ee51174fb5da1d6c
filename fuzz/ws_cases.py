"""The fuzz cases' WebSocket side, and :func:`generate`, which mixes both kinds.

:class:`CaseGenerator` adds WebSocket sessions (upgrades, ``connect``, method
calls with plausible and garbage params, broken frames) to the HTTP
:class:`~fuzz.cases.Generator`.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from fuzz.cases import UPSTREAM_AGENTS, Case, Generator, WsCase
from fuzz.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    close_payload,
    ws_frame,
)


class CaseGenerator(Generator):
    """HTTP and WebSocket cases from one seeded random source."""

    # -- WebSocket -------------------------------------------------------------------

    def ws_handshake(self) -> tuple[bytes, bool]:
        """The upgrade request, and whether it is a valid one."""
        r = self.rng
        key = base64.b64encode(r.randbytes(16)).decode()
        headers = [
            ("Host", f"127.0.0.1:{self.port}"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
        ]
        if r.random() < 0.1:
            headers.append(
                ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
            )
        if r.random() > 0.1:
            return self.render(
                "GET", r.choice(["/", "/", "/ws", "/v1/models"]), headers, close=False
            ), True
        choice = r.randrange(6)
        if choice == 0:
            headers[3] = ("Sec-WebSocket-Key", r.choice(["", "short", "!!!!"]))
        elif choice == 1:
            headers[4] = ("Sec-WebSocket-Version", r.choice(["8", "99", "", "13, 8"]))
        elif choice == 2:
            headers.append(
                ("Origin", r.choice(["https://evil.test", "null", "http://localhost:1"]))
            )
        elif choice == 3:
            headers.pop(2)
        elif choice == 4:
            headers.pop(3)
        else:
            headers[1] = ("Upgrade", "WebSocket, h2c")
        method = r.choice(["GET", "GET", "POST"])
        return self.render(method, "/", headers, close=False), False

    def ws_request(self, method: str | None = None, params: Any = "auto") -> dict[str, Any]:
        """A request frame object."""
        r = self.rng
        if method is None:
            method = r.choice(
                [
                    "health", "status", "agents.list", "models.list", "sessions.list",
                    "chat.history", "chat.send", "chat.abort", "agent", "agent.wait",
                    "agent", "agent", "chat.send",
                    "sessions.reset", "sessions.delete", "sessions.subscribe", "logs.tail",
                    "connect", "nope", "", "x" * 200,
                ]
            )  # fmt: skip
        if params == "auto":
            params = self.ws_params(method)
        frame: dict[str, Any] = {
            "type": "req",
            "id": f"{r.randrange(10**6)}:{r.randrange(10**9)}",
            "method": method,
        }
        if params is not None or r.random() < 0.5:
            frame["params"] = params
        return frame

    def ws_params(self, method: str) -> Any:
        """Params for a method: plausible, with random garbage mixed in."""
        r = self.rng
        if r.random() < 0.15:
            return self.json_value()
        # Runs started over the WebSocket meet every upstream failure evenly.
        agent = r.choice(["main", *UPSTREAM_AGENTS]) if r.random() < 0.8 else self.agent()
        choices: dict[str, Any] = {
            "agent": {
                "message": r.choice(["hi", self.text(0, 30)]),
                "agentId": agent,
                "idempotencyKey": self.text(1, 12),
                "timeout": r.choice([0, 1, 5, -1, "x"]),
            },
            "chat.send": {
                "sessionKey": self.session_key(),
                "message": self.text(0, 20),
                "idempotencyKey": self.text(1, 12),
            },
            "chat.history": {
                "sessionKey": self.session_key(),
                "limit": r.choice([1, 50, -5, 10**12, "x", None]),
                "maxChars": r.choice([None, 0, 5, -1]),
            },
            "chat.abort": {"sessionKey": self.session_key(), "runId": self.text(0, 10)},
            "agent.wait": {
                "runId": self.text(0, 10),
                "timeoutMs": r.choice([0, 1, 200, -1, 10**15, "soon"]),
            },
            "sessions.reset": {"key": self.session_key()},
            "sessions.delete": {"key": self.session_key()},
            "sessions.subscribe": {
                "keys": [self.session_key()],
                "all": r.choice([True, False, "yes"]),
            },
            "logs.tail": {
                "limit": r.choice([1, 5, -1, 10**9]),
                "maxBytes": r.choice([10, 250000, -1]),
                "cursor": r.choice([None, 0, -1, 10**20, "x"]),
            },
            "sessions.list": {"agentId": agent, "limit": r.choice([1, 10, -1])},
        }
        params = dict(choices.get(method, {}))
        for _ in range(r.choice([0, 0, 1, 2])):
            key = r.choice([*params.keys(), "extra"]) if params else "extra"
            params[key] = self.json_value()
        return params

    def connect_params(self, *, good: bool = True) -> dict[str, Any]:
        """``connect`` params with the right (or a wrong) token."""
        params: dict[str, Any] = {
            "minProtocol": 4,
            "maxProtocol": 4,
            "client": {"id": "fuzz", "version": "1", "platform": "linux", "mode": "cli"},
            "role": "operator",
            "scopes": ["operator.admin", "operator.write", "operator.read"],
            "caps": ["tool-events"],
            "auth": {"token": self.token if good else self.text(0, 20)},
        }
        if not good and self.rng.random() < 0.5:
            key = self.rng.choice(list(params))
            params[key] = self.json_value()
        return params

    def ws_garbage_frame(self, *, authenticated: bool) -> bytes:
        """A frame that is wrong at the JSON, protocol or framing level."""
        r = self.rng
        choice = r.randrange(18)
        if choice == 0:
            return ws_frame(json.dumps(self.json_value()).encode())
        if choice == 1:
            return ws_frame(
                bytes(r.randrange(256) for _ in range(r.randint(0, 40)))
            )  # not UTF-8 / JSON
        if choice == 2:
            return ws_frame(self.mutate_bytes(json.dumps(self.ws_request()).encode()))
        if choice == 3:
            return ws_frame(json.dumps(self.ws_request()).encode(), OP_BINARY)
        if choice == 4:
            frame = self.ws_request()
            frame["id"] = r.choice(["", "i" * 300, 12, None, ["x"], "i" * 256])
            return ws_frame(json.dumps(frame).encode())
        if choice == 5:
            frame = self.ws_request()
            frame["type"] = r.choice(["res", "event", "REQ", 1, None])
            return ws_frame(json.dumps(frame).encode())
        if choice == 6:  # a nesting bomb, written as text (json.dumps would recurse)
            depth = r.choice([50, 900, 3000])
            head = json.dumps(self.ws_request(params=None))[:-1].encode()
            return ws_frame(head + b', "params": ' + b"[" * depth + b"]" * depth + b"}")
        if choice == 7:
            return ws_frame(b"{}", r.choice([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]))  # reserved opcode
        if choice == 8:
            return ws_frame(b"{}", rsv=r.randint(1, 7))
        if choice == 9:
            return ws_frame(json.dumps(self.ws_request("health")).encode(), mask=None)
        if choice == 10:  # a message in two fragments, a ping between them
            payload = json.dumps(self.ws_request("health")).encode()
            half = len(payload) // 2
            return (
                ws_frame(payload[:half], fin=False)
                + ws_frame(b"p", OP_PING)
                + ws_frame(payload[half:], OP_CONT)
            )
        if choice == 11:
            return ws_frame(b"orphan", OP_CONT)
        if choice == 12:
            return ws_frame(b"x" * r.choice([126, 200]), OP_PING)  # control frame too long
        if choice == 13:
            return ws_frame(b"ping-" + r.randbytes(4), r.choice([OP_PING, OP_PONG]))
        if choice == 14:
            code = r.choice([0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 1000, 4000])
            reason = r.choice([b"", b"bye", b"\xff\xfe", b"r" * 200])
            return ws_frame(close_payload(code, reason), OP_CLOSE)
        if choice == 15:
            return ws_frame(b"{}", declared_length=r.choice([2**62, 2**31, 70_000]))  # lying length
        if choice == 16:
            size = 70_000 if not authenticated else r.choice([70_000, 300_000])
            return ws_frame(
                json.dumps(
                    {"type": "req", "id": "big", "method": "health", "params": {"x": "y" * size}}
                ).encode()
            )
        return ws_frame(json.dumps(self.ws_request(params=self.json_value())).encode())

    def ws_case(self) -> WsCase:
        """One WebSocket session."""
        r = self.rng
        handshake, valid = self.ws_handshake()
        frames: list[bytes] = []
        if not valid:
            return WsCase("ws-bad-upgrade", handshake, (), close=False)
        roll = r.random()
        if roll < 0.7:
            kind = "ws-session"
            frames.append(
                ws_frame(json.dumps(self.ws_request("connect", self.connect_params())).encode())
            )
            authenticated = True
        elif roll < 0.8:
            kind = "ws-bad-connect"
            frames.append(
                ws_frame(
                    json.dumps(self.ws_request("connect", self.connect_params(good=False))).encode()
                )
            )
            authenticated = False
        else:
            kind = "ws-preauth"
            authenticated = False
        runs = False
        for _ in range(r.randint(1, 10)):
            if r.random() < 0.6:
                request = self.ws_request()
                runs = runs or request["method"] in ("agent", "chat.send")
                text = json.dumps(request, ensure_ascii=r.random() < 0.5)
                frames.append(ws_frame(text.encode("utf-8", "surrogatepass")))
            else:
                frames.append(self.ws_garbage_frame(authenticated=authenticated))
        linger = 1.0 if runs and authenticated else 0.0
        return WsCase(kind, handshake, tuple(frames), close=r.random() < 0.9, linger=linger)


def generate(seed: int, count: int, *, token: str, port: int, ws_share: float = 0.3) -> list[Case]:
    """Cases whose units (HTTP requests + WebSocket frames) add up to at least ``count``."""
    rng = random.Random(seed)
    generator = CaseGenerator(rng, token=token, port=port)
    cases: list[Case] = []
    http_units = ws_units = 0
    while http_units + ws_units < count:
        want_ws = ws_units < ws_share * (http_units + ws_units + 1)
        case: Case = generator.ws_case() if want_ws else generator.http_case()
        cases.append(case)
        if isinstance(case, WsCase):
            ws_units += case.units
        else:
            http_units += case.units
    return cases
