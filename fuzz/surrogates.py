"""The lone-surrogate sweep: one case per string field of every endpoint and method.

``"\\ud800"`` is a valid JSON escape that decodes to text no UTF-8 writer can
encode. The random cases meet it now and then; this sweep makes sure every
string the gateway reads gets one, deterministically: each string leaf of a
full chat completions body (both as the ``\\ud800`` escape and as the raw
bytes ``ED A0 80`` a ``surrogatepass`` encoder writes), every header the
gateway reads, the models path, every string param of every WebSocket method
and of ``connect`` (``auth.token`` included), and the frame's own ``id`` and
``method``.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

from fuzz.cases import PNG_1X1, Case, HttpCase, WsCase
from fuzz.wire import ws_frame
from fuzz.ws_cases import CaseGenerator

#: Lone surrogates: high and low halves, at the ends of their ranges.
LONE_SURROGATES = ("\ud800", "\udbff", "\udc00", "\udfff")

Path = tuple[str | int, ...]


def string_paths(value: Any, path: Path = ()) -> Iterator[Path]:
    """The path of every string leaf of a JSON value."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from string_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from string_paths(item, (*path, index))


def with_surrogate(value: Any, path: Path, surrogate: str) -> Any:
    """A copy of ``value`` whose string at ``path`` carries ``surrogate``."""
    out = copy.deepcopy(value)
    parent = out
    for part in path[:-1]:
        parent = parent[part]
    leaf = parent[path[-1]]
    parent[path[-1]] = leaf[:1] + surrogate + leaf[1:]
    return out


def dotted(path: Path) -> str:
    """``messages[1].content`` for ``("messages", 1, "content")``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def encode(value: Any, *, raw: bool) -> bytes:
    """JSON with surrogates as ``\\uXXXX`` escapes, or as raw (invalid UTF-8) bytes."""
    return json.dumps(value, ensure_ascii=not raw).encode("utf-8", "surrogatepass")


def full_chat_body() -> dict[str, Any]:
    """A chat body using every string field the endpoint reads."""
    image = "data:image/png;base64," + base64.b64encode(PNG_1X1).decode()
    return {
        "model": "openclaw/main",
        "user": "sweep-user",
        "stream": False,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "dev note"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
                ],
                "name": "alice",
            },
            {
                "role": "assistant",
                "content": "earlier answer",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"x"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "sunny"},
            {"role": "user", "content": "and now?"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "weather by city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string", "description": "a city"}},
                    },
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "stop": ["\n\n"],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}},
        },
    }


#: Params of every WebSocket method, with every string field it reads.
METHOD_PARAMS: dict[str, dict[str, Any]] = {
    "health": {"probe": "x"},
    "status": {"extra": "x"},
    "agents.list": {"extra": "x"},
    "models.list": {"extra": "x"},
    "agent": {
        "message": "hi",
        "agentId": "main",
        "sessionKey": "sweep",
        "idempotencyKey": "sweep-key",
        "extraSystemPrompt": "be brief",
        "label": "sweep",
    },
    "agent.wait": {"runId": "sweep-run", "timeoutMs": 10},
    "chat.send": {"sessionKey": "sweep", "message": "hi", "idempotencyKey": "sweep-send"},
    "chat.history": {"sessionKey": "sweep", "limit": 5},
    "chat.abort": {"sessionKey": "sweep", "runId": "sweep-run"},
    "sessions.list": {"agentId": "main", "search": "x"},
    "sessions.reset": {"key": "sweep"},
    "sessions.delete": {"key": "sweep-other"},
    "sessions.subscribe": {"keys": ["sweep"]},
    "logs.tail": {"extra": "x"},
}

#: Methods whose sweep cases start runs (the session lingers for their answers).
RUN_METHODS = ("agent", "chat.send")


class SurrogateSweep:
    """Builds the sweep's cases with the fuzz generator's rendering helpers."""

    def __init__(self, generator: CaseGenerator) -> None:
        self.g = generator
        self._serial = 0

    def _unique(self, value: dict[str, Any]) -> dict[str, Any]:
        """Fresh idempotency keys, so each run-starting case starts its own run."""
        self._serial += 1
        for key in ("idempotencyKey",):
            if key in value and isinstance(value[key], str):
                value[key] = f"{value[key]}-{self._serial}"
        return value

    def http_cases(self) -> list[Case]:
        """Each string of a full chat body, each header, the models path."""
        g = self.g
        cases: list[Case] = []
        body = full_chat_body()
        auth = [("Authorization", f"Bearer {g.token}")]
        for n, path in enumerate(string_paths(body)):
            surrogate = LONE_SURROGATES[n % len(LONE_SURROGATES)]
            mutated = with_surrogate(body, path, surrogate)
            mutated["stream"] = n % 3 == 0
            for raw in (False, True):
                headers = [("Host", f"127.0.0.1:{g.port}"), *auth]
                data = g.render("POST", "/v1/chat/completions", headers, encode(mutated, raw=raw))
                cases.append(HttpCase(f"sweep-chat:{dotted(path)}", (data,), "complete"))
        plain = json.dumps({**body, "messages": [{"role": "user", "content": "hi"}]}).encode()
        for name, value in (
            ("x-openclaw-session-key", "sweep\ud800key"),
            ("x-openclaw-agent-id", "ma\udc00in"),
            ("x-openclaw-agent", "\udfff"),
            ("x-openclaw-message-channel", "web\ud800chat"),
            ("x-request-id", "id\ud800"),
            ("Origin", "http://127.0.0.1\ud800"),
            ("User-Agent", "sweep\udfff"),
        ):
            headers = [("Host", f"127.0.0.1:{g.port}"), *auth, (name, value)]
            data = g.render("POST", "/v1/chat/completions", headers, plain)
            cases.append(HttpCase(f"sweep-header:{name}", (data,), "complete"))
        for secret in (f"Bearer {g.token}\ud800", "Bearer \ud800", "\udfff"):
            headers = [("Host", f"127.0.0.1:{g.port}"), ("Authorization", secret)]
            data = g.render("POST", "/v1/chat/completions", headers, plain)
            cases.append(HttpCase("sweep-header:authorization", (data,), "complete"))
        paths = ("/v1/models/%ED%A0%80", "/v1/models/openclaw%2F%ED%A0%80", "/v1/models/\ud800")
        for target in paths:
            data = g.render("GET", target, [("Host", "x"), *auth])
            cases.append(HttpCase("sweep-models-path", (data,), "complete"))
        return cases

    def _session(self, kind: str, frames: list[bytes], *, linger: float = 0.0) -> WsCase:
        handshake = self.g.render(
            "GET",
            "/",
            [
                ("Host", f"127.0.0.1:{self.g.port}"),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ],
            close=False,
        )
        return WsCase(kind, handshake, tuple(frames), close=True, linger=linger)

    def _frame(self, method: str, params: Any, *, raw: bool, request_id: str = "sweep") -> bytes:
        request = {"type": "req", "id": request_id, "method": method, "params": params}
        return ws_frame(encode(request, raw=raw))

    def ws_cases(self) -> list[Case]:
        """Each string param of every method, of ``connect``, and of the frame itself."""
        cases: list[Case] = []
        connect = self.g.connect_params()
        connect["auth"]["password"] = "sweep-password"
        good = self._frame("connect", connect, raw=False, request_id="c")
        n = 0
        for path in string_paths(connect):
            for raw in (False, True):
                surrogate = LONE_SURROGATES[n % len(LONE_SURROGATES)]
                n += 1
                frame = self._frame("connect", with_surrogate(connect, path, surrogate), raw=raw)
                cases.append(self._session(f"sweep-connect:{dotted(path)}", [frame]))
        for method, params in METHOD_PARAMS.items():
            linger = 1.0 if method in RUN_METHODS else 0.0
            for path in string_paths(params):
                for raw in (False, True):
                    surrogate = LONE_SURROGATES[n % len(LONE_SURROGATES)]
                    n += 1
                    mutated = self._unique(with_surrogate(params, path, surrogate))
                    frame = self._frame(method, mutated, raw=raw)
                    kind = f"sweep-ws:{method}.{dotted(path)}"
                    cases.append(self._session(kind, [good, frame], linger=linger))
        for raw in (False, True):
            frames = [
                good,
                self._frame("health", {}, raw=raw, request_id="id\ud800"),
                self._frame("heal\udc00th", {}, raw=raw),
                ws_frame(encode({"type": "req\ud800", "id": "x", "method": "health"}, raw=raw)),
            ]
            cases.append(self._session("sweep-ws:frame", frames))
        return cases


def surrogate_cases(generator: CaseGenerator) -> list[Case]:
    """Every sweep case: HTTP first, then WebSocket."""
    sweep = SurrogateSweep(generator)
    return [*sweep.http_cases(), *sweep.ws_cases()]
