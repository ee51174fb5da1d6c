"""The fuzz cases: HTTP requests and WebSocket sessions, generated and mutated.

Every case is built from one ``random.Random`` so a seed gives the same cases
(the order in which concurrent cases reach the gateway varies; their content
does not). A case says how it ends: ``complete`` requests must be answered
(no answer within the timeout is a hang), ``truncated`` ones half-close the
socket after sending (the client went away), ``unknown`` ones wait a moment
and then half-close.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable
from typing import Any, Literal

import attrs

Mode = Literal["complete", "truncated", "unknown"]

#: Agents of the fuzz config: ``main`` is the demo, the rest map to upstream profiles.
UPSTREAM_AGENTS = (
    "ok", "tools", "e500", "e502", "e503", "e429", "e401", "e403", "e400",
    "reset", "midreset", "malformed", "errorframe", "garbage", "refused", "echo",
)  # fmt: skip
#: Agents whose runs take seconds (upstream stall, drip, endless stream): rarer.
SLOW_AGENTS = ("stall", "slow", "endless")
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PATHS = (
    "/", "/health", "/healthz", "/ready", "/readyz", "/startupz", "/v1/models",
    "/v1/models/openclaw", "/v1/models/openclaw%2Fmain", "/v1/models/openclaw/ok",
    "/v1/models/%ff", "/v1/models/", "/v1/chat/completions", "/v1/chat/completions/",
    "/v1/completions", "/v1/embeddings", "//", "/../../etc/passwd", "/%2e%2e/", "/%00",
    "/v1/chat/completions?stream=true", "/favicon.ico", "/v1/models/" + "a" * 3000, "*",
)  # fmt: skip
#: Top-level fields the JSON mutator likes to touch.
MUTABLE_FIELDS = (
    "messages", "model", "stream", "n", "tools", "max_tokens", "temperature", "stop",
    "response_format", "tool_choice", "stream_options", "seed", "top_p",
)  # fmt: skip
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT")


@attrs.frozen
class HttpCase:
    """Bytes to write on one connection, in pieces, and how the exchange ends."""

    kind: str
    pieces: tuple[bytes, ...]
    mode: Mode
    #: Responses to read (pipelined requests get several).
    responses: int = 1
    head: bool = False

    @property
    def units(self) -> int:
        """Requests this case counts for."""
        return self.responses

    @property
    def data(self) -> bytes:
        """Everything written."""
        return b"".join(self.pieces)


@attrs.frozen
class WsCase:
    """A WebSocket session: the upgrade request, then frames, then (maybe) a close."""

    kind: str
    handshake: bytes
    frames: tuple[bytes, ...]
    #: Send a proper close frame after the frames.
    close: bool = True
    #: Seconds to keep reading before closing (runs answer later).
    linger: float = 0.0

    @property
    def units(self) -> int:
        """Frames this case counts for (the upgrade is one)."""
        return 1 + len(self.frames)


Case = HttpCase | WsCase


class Generator:
    """Builds cases from a seeded random source."""

    def __init__(self, rng: random.Random, *, token: str, port: int) -> None:
        self.rng = rng
        self.token = token
        self.port = port

    # -- small random values -------------------------------------------------------

    def text(self, low: int = 0, high: int = 12) -> str:
        """Random text with some hostile characters."""
        r = self.rng
        alphabet = (
            string.ascii_letters
            + string.digits
            + " :/._-\\'\"{}[]%\t\u00e9\u0130\u2028\x00\x7f\ud800\udfff"
        )
        return "".join(r.choice(alphabet) for _ in range(r.randint(low, high)))

    def json_value(self, depth: int = 0) -> Any:
        """A random JSON value (bounded size)."""
        r = self.rng
        roll = r.random()
        if depth > 3 or roll < 0.5:
            return r.choice(
                [
                    None, True, False, 0, -1, 1, 2**53, 2**64, -(2**63), 0.5, 1e308, -1e-308,
                    "", self.text(), "x" * r.choice([1, 100, 5000]),
                ]
            )  # fmt: skip
        if roll < 0.75:
            return [self.json_value(depth + 1) for _ in range(r.randint(0, 4))]
        return {self.text(0, 6): self.json_value(depth + 1) for _ in range(r.randint(0, 4))}

    def nest(self, depth: int, leaf: Any = 1) -> Any:
        """``leaf`` inside ``depth`` arrays/objects."""
        for i in range(depth):
            leaf = [leaf] if i % 2 else {"a": leaf}
        return leaf

    def agent(self) -> str:
        """An agent id: mostly the demo, sometimes an upstream failure, rarely a slow one."""
        r = self.rng.random()
        if r < 0.5:
            return "main"
        if r < 0.96:
            return self.rng.choice(UPSTREAM_AGENTS)
        if r < 0.985:
            return self.rng.choice(SLOW_AGENTS)
        return self.rng.choice(["nope", "MAIN", "Ok", "../main", ""])

    def session_key(self) -> str:
        """A session header value, from sensible to hostile."""
        return self.rng.choice(
            [
                "fuzz-chat",
                f"agent:{self.agent()}:fuzz",
                "agent:main: cron:x",
                "subagent:x",
                "../../../etc/passwd",
                "/abs/path",
                "k" * self.rng.choice([511, 512, 513, 10_000]),
                "agent::x",
                "agent:main:",
                self.text(1, 30),
            ]
        )

    # -- chat bodies ---------------------------------------------------------------

    def chat_body(self) -> dict[str, Any]:
        """A plausible chat completions body."""
        r = self.rng
        content: Any = r.choice(["hi", "call get_weather", "tell me a story", self.text(1, 40)])
        if r.random() < 0.15:
            url = "data:image/png;base64," + base64.b64encode(PNG_1X1).decode()
            content = [
                {"type": "text", "text": "what is this"},
                {
                    "type": "image_url",
                    "image_url": {"url": r.choice([url, "https://x.test/a.png"])},
                },
            ]
        messages: list[Any] = [{"role": "user", "content": content}]
        if r.random() < 0.3:
            messages = [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "earlier"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"x"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                *messages,
            ]
        body: dict[str, Any] = {
            "model": r.choice(["openclaw", f"openclaw/{self.agent()}", f"agent:{self.agent()}"]),
            "messages": messages,
            "stream": r.random() < 0.5,
        }
        if r.random() < 0.3:
            body["stream_options"] = {"include_usage": r.random() < 0.5}
        if r.random() < 0.2:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": "get_weather", "parameters": {"type": "object"}},
                }
            ]
            body["tool_choice"] = r.choice(["auto", "required", "none"])
        for name, value in (
            ("max_tokens", r.choice([1, 3, 100])),
            ("temperature", r.choice([0, 0.7, 2])),
            ("stop", ["\n"]),
            ("user", self.text(1, 8)),
            ("n", 1),
        ):
            if r.random() < 0.1:
                body[name] = value
        return body

    def mutate_json(self, body: dict[str, Any]) -> Any:
        """0 to 3 structural mutations of a body."""
        r = self.rng
        for _ in range(r.choice([0, 1, 1, 2, 3])):
            op = r.random()
            keys = [*body.keys(), *MUTABLE_FIELDS]
            key = r.choice(keys)
            if op < 0.2:
                body.pop(key, None)
            elif op < 0.55:
                body[key] = self.json_value()
            elif op < 0.7 and isinstance(body.get("messages"), list) and body["messages"]:
                index = r.randrange(len(body["messages"]))
                message = body["messages"][index]
                if isinstance(message, dict) and r.random() < 0.7:
                    message[r.choice(["role", "content", "tool_calls", "name", "tool_call_id"])] = (
                        self.json_value()
                    )
                else:
                    body["messages"][index] = self.json_value()
            elif op < 0.8:
                body[key] = self.nest(r.choice([10, 200, 900, 2000, 50_000]))
            elif op < 0.9:
                body[key] = "x" * r.choice([10_000, 300_000])
            else:
                return self.json_value()
        return body

    def mutate_bytes(self, data: bytes) -> bytes:
        """Flip, drop, insert or truncate bytes."""
        r = self.rng
        out = bytearray(data)
        for _ in range(r.randint(1, 4)):
            if not out:
                break
            at = r.randrange(len(out))
            op = r.random()
            if op < 0.3:
                out[at] = r.randrange(256)
            elif op < 0.5:
                del out[at]
            elif op < 0.7:
                out[at:at] = r.choice([b"\x00", b"\xff", b'"', b"}", b"[", b"\\u", b"\xc3"])
            else:
                del out[at:]
        return bytes(out)

    # -- HTTP ------------------------------------------------------------------------

    def headers(
        self, *, auth: str | None = None, extra: list[tuple[str, str]] | None = None
    ) -> list[tuple[str, str]]:
        """Headers of a plausible request."""
        r = self.rng
        found = [("Host", f"127.0.0.1:{self.port}")]
        if auth is None:
            auth = self.authorization()
        if auth:
            found.append(("Authorization", auth))
        if r.random() < 0.5:
            found.append(
                ("Content-Type", r.choice(["application/json", "text/plain", "x/y; charset=zz"]))
            )
        if r.random() < 0.2:
            found.append(("x-openclaw-session-key", self.session_key()))
        if r.random() < 0.15:
            found.append((r.choice(["x-openclaw-agent-id", "x-openclaw-agent"]), self.agent()))
        if r.random() < 0.05:
            found.append(("x-openclaw-message-channel", self.text(0, 70)))
        if r.random() < 0.05:
            found.append(("x-request-id", r.choice(["abc", "x" * 500, "bad id\x01"])))
        if r.random() < 0.05:
            found.append(("Origin", r.choice(["https://evil.test", "null", "http://127.0.0.1"])))
        found.extend(extra or [])
        return found

    def authorization(self) -> str:
        """Mostly the right bearer; sometimes wrong, odd or absent."""
        r = self.rng
        roll = r.random()
        if roll < 0.8:
            return r.choice(
                [f"Bearer {self.token}", f"bearer {self.token}", f"BEARER  {self.token}"]
            )
        return r.choice(
            [
                "",
                "Bearer",
                "Bearer ",
                f"Bearer {self.token}x",
                f"Bearer {self.token[:-1]}",
                f"Basic {base64.b64encode(b'user:' + self.token.encode()).decode()}",
                "Bearer " + "A" * 8000,
                f"Token {self.token}",
                self.text(1, 30),
            ]
        )

    @staticmethod
    def render(
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        *,
        version: str = "HTTP/1.1",
        length: str | None = "auto",
        close: bool = True,
    ) -> bytes:
        """A request's bytes (header values encoded UTF-8, as a hostile client might)."""
        lines = [f"{method} {target} {version}".encode("utf-8", "surrogatepass")]
        for name, value in headers:
            lines.append(f"{name}: {value}".encode("utf-8", "surrogatepass"))
        if length == "auto" and (body or method in ("POST", "PUT", "PATCH")):
            lines.append(b"Content-Length: %d" % len(body))
        elif length not in (None, "auto"):
            lines.append(b"Content-Length: " + str(length).encode())
        if close:
            lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def split(self, data: bytes) -> tuple[bytes, ...]:
        """Send in one write, or in a few pieces (a slow or fragmenting client)."""
        if self.rng.random() < 0.85 or len(data) < 4:
            return (data,)
        cuts = sorted(self.rng.sample(range(1, len(data)), min(3, len(data) - 1)))
        return tuple(data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True))

    def http_chat(self) -> HttpCase:
        """A chat body, JSON-mutated and sometimes byte-mutated."""
        r = self.rng
        body = self.mutate_json(self.chat_body())
        try:
            raw = json.dumps(body).encode("utf-8", "surrogatepass")
        except (RecursionError, ValueError):
            raw = b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        if r.random() < 0.2:
            raw = self.mutate_bytes(raw)
        data = self.render("POST", "/v1/chat/completions", self.headers(), raw)
        return HttpCase("chat", self.split(data), "complete")

    def http_framing(self) -> HttpCase:
        """A chat request with hostile framing: lengths, chunking, Expect, truncation."""
        r = self.rng
        raw = json.dumps(self.chat_body()).encode()
        head = self.headers()
        choice = r.randrange(12)
        if choice == 0:  # body shorter than declared: the client then goes away
            data = self.render(
                "POST", "/v1/chat/completions", head, raw[: len(raw) // 2], length=str(len(raw))
            )
            return HttpCase("framing-short-body", (data,), "truncated")
        if choice == 1:  # declared shorter than sent: the rest is a bogus next request
            data = self.render("POST", "/v1/chat/completions", head, raw, length=str(len(raw) // 2))
            return HttpCase("framing-long-body", (data,), "unknown")
        if choice == 2:
            value = r.choice(["-1", "abc", "1e3", "0x10", " 5", "99999999999999999999", "5, 6", ""])
            data = self.render("POST", "/v1/chat/completions", head, raw, length=value)
            return HttpCase("framing-bad-length", (data,), "unknown")
        if choice == 3:  # two different Content-Length headers
            extra = [("Content-Length", str(len(raw) + 3))]
            data = self.render("POST", "/v1/chat/completions", head + extra, raw)
            return HttpCase("framing-two-lengths", (data,), "unknown")
        if choice == 4:  # a declared body over the 20 MB limit
            data = self.render(
                "POST", "/v1/chat/completions", head, b"", length=str(r.choice([20_971_521, 2**40]))
            )
            return HttpCase("framing-too-large", (data,), "complete")
        chunked = [("Transfer-Encoding", "chunked")]
        if choice in (5, 6):  # valid chunked, possibly in many small chunks
            size = r.choice([len(raw), 7, 1])
            body = b"".join(
                b"%x\r\n%s\r\n" % (len(raw[i : i + size]), raw[i : i + size])
                for i in range(0, len(raw), size)
            )
            data = self.render(
                "POST", "/v1/chat/completions", head + chunked, body + b"0\r\n\r\n", length=None
            )
            return HttpCase("framing-chunked", (data,), "complete")
        if choice == 7:  # chunked garbage
            body = r.choice(
                [
                    b"zz\r\nhello\r\n0\r\n\r\n",
                    b"5\r\nhelloXX0\r\n\r\n",
                    b"-1\r\n\r\n",
                    b"ffffffffffffffffff\r\nx\r\n0\r\n\r\n",
                    b"3;ext=\x00\r\nabc\r\n0\r\n\r\n",
                    b"5\r\nhello\r\n0\r\ntrailer: x\r\n\r\n",
                ]
            )
            data = self.render("POST", "/v1/chat/completions", head + chunked, body, length=None)
            return HttpCase("framing-chunked-garbage", (data,), "unknown")
        if choice == 8:  # chunked, never finished
            data = self.render(
                "POST", "/v1/chat/completions", head + chunked, b"10\r\n0123", length=None
            )
            return HttpCase("framing-chunked-truncated", (data,), "truncated")
        if choice == 9:  # both Content-Length and chunked
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(raw), raw)
            data = self.render(
                "POST", "/v1/chat/completions", head + chunked, body, length=str(len(raw))
            )
            return HttpCase("framing-length-and-chunked", (data,), "unknown")
        if choice == 10:  # Expect: 100-continue, body sent right away
            data = self.render(
                "POST", "/v1/chat/completions", [*head, ("Expect", "100-continue")], raw
            )
            return HttpCase("framing-expect", (data,), "complete")
        # keep-alive: two requests on one connection
        first = self.render("GET", "/healthz", head[:1], close=False)
        second = self.render("POST", "/v1/chat/completions", head, raw)
        return HttpCase("framing-keepalive", (first + second,), "complete", responses=2)

    def http_request_line(self) -> HttpCase:
        """Malformed or odd request lines."""
        r = self.rng
        host = f"Host: 127.0.0.1:{self.port}\r\nConnection: close\r\n\r\n".encode()
        line = r.choice(
            [
                b"GET / HTTP/1.1",
                b"GET /healthz HTTP/1.0",
                b"GET /healthz",
                b"GET",
                b"",
                b"get /healthz HTTP/1.1",
                b"GET /healthz HTTP/2.0",
                b"GET /healthz HTTP/9.9",
                b"GET /healthz FOO/1.1",
                b"GET  /healthz  HTTP/1.1",
                b"GET\t/healthz\tHTTP/1.1",
                b"GET http://127.0.0.1/healthz HTTP/1.1",
                b"GET /" + b"a" * r.choice([8000, 17000, 70000]) + b" HTTP/1.1",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
                b"PRI * HTTP/2.0\r\n\r\nSM",
                bytes(r.randrange(256) for _ in range(r.randint(1, 60))),
                (self.text(1, 10) + " " + self.text(1, 20) + " HTTP/1.1").encode(
                    "utf-8", "surrogatepass"
                ),
                b"GET /%zz%00%ff HTTP/1.1",
                b"GET /v1/models/\xff\xfe HTTP/1.1",
                b"POST /v1/chat/completions HTTP/1.1 extra",
            ]
        )
        return HttpCase("request-line", (line + b"\r\n" + host,), "unknown")

    def http_headers(self) -> HttpCase:
        """Huge, numerous, malformed or duplicated headers."""
        r = self.rng
        base = self.headers()
        choice = r.randrange(9)
        extra: list[bytes] = []
        if choice == 0:
            extra = [b"X-Big: " + b"a" * r.choice([4000, 16000, 65000])]
        elif choice == 1:
            extra = [b"X-H%d: v" % i for i in range(r.choice([100, 499, 600, 3000]))]
        elif choice == 2:
            extra = [
                r.choice(
                    [
                        b"No colon here",
                        b": empty name",
                        b"Bad Name: x",
                        b"X-Nul: a\x00b",
                        b"X-Utf: \xff\xfe",
                        b"\x00: \x00",
                    ]
                )
            ]
        elif choice == 3:
            extra = [b"X-Fold: a", b" continued", b"\tmore"]
        elif choice == 4:
            extra = [b"Host: other", b"Host: third"]
        elif choice == 5:
            extra = [
                b"Authorization: Bearer wrong",
                b"Authorization: Bearer " + self.token.encode(),
            ]
        elif choice == 6:
            extra = [b"Upgrade: websocket"]  # an upgrade without the rest of the handshake
        elif choice == 7:
            extra = [b"Content-Type: application/json; " + b"p=" * 2000]
        else:
            extra = [
                b"X-"
                + bytes(r.randrange(33, 127) for _ in range(10))
                + b": "
                + bytes(r.randrange(256) for _ in range(20))
            ]
        raw = json.dumps(self.chat_body()).encode()
        data = self.render("POST", "/v1/chat/completions", base, raw)
        head, _, body = data.partition(b"\r\n\r\n")
        data = head + b"\r\n" + b"\r\n".join(extra) + b"\r\n\r\n" + body
        return HttpCase("headers", self.split(data), "unknown")

    def http_paths(self) -> HttpCase:
        """Random methods on the gateway's paths and beyond."""
        r = self.rng
        method = r.choice([*METHODS, "PROPFIND", "get", "X" * 40, self.text(1, 8).replace(" ", "")])
        target = r.choice(PATHS) if r.random() < 0.8 else "/" + self.text(0, 30).replace(" ", "%20")
        body = b""
        if method in ("POST", "PUT", "PATCH") and r.random() < 0.5:
            body = json.dumps(self.json_value()).encode()
        try:
            data = self.render(method, target, self.headers(), body)
        except UnicodeEncodeError:
            data = self.render("GET", "/", self.headers())
        valid = (
            method in METHODS and " " not in target and "\t" not in method and method.isprintable()
        )
        return HttpCase(
            "paths", self.split(data), "complete" if valid else "unknown", head=method == "HEAD"
        )

    def http_pipelined(self) -> HttpCase:
        """Several requests in one write."""
        r = self.rng
        count = r.randint(2, 4)
        parts = []
        for i in range(count):
            last = i == count - 1
            if r.random() < 0.5:
                parts.append(self.render("GET", r.choice(PATHS[:7]), self.headers(), close=last))
            else:
                raw = json.dumps(self.chat_body()).encode()
                parts.append(
                    self.render("POST", "/v1/chat/completions", self.headers(), raw, close=last)
                )
        return HttpCase("pipelined", (b"".join(parts),), "complete", responses=count)

    def http_case(self) -> HttpCase:
        """One HTTP case, by weight."""
        makers: list[tuple[float, Callable[[], HttpCase]]] = [
            (0.42, self.http_chat),
            (0.14, self.http_framing),
            (0.12, self.http_request_line),
            (0.12, self.http_headers),
            (0.15, self.http_paths),
            (0.05, self.http_pipelined),
        ]
        roll = self.rng.random()
        for weight, maker in makers:
            if roll < weight:
                return maker()
            roll -= weight
        return makers[0][1]()
