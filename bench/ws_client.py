"""A small WebSocket client speaking OpenClaw's gateway protocol, for S7.

Each connection: HTTP upgrade (no extensions), wait for ``connect.challenge``,
send ``connect`` with ``auth.token``, then one ``agent`` request on its own
session key; count the ``event`` frames until the final ``res`` of the
``agent`` request arrives, then close. Event frames are counted by a byte
search, never parsed, so the client stays cheap.

Run as ``python -m bench.ws_client --port N --token T --runs 100``: it prints
one JSON summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import struct
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import attrs

from bench.sse_client import percentile

_EVENT = b'"type":"event"'
_EVENT_SPACED = b'"type": "event"'
_CHALLENGE = b'"connect.challenge"'


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte masking ``key`` (RFC 6455 §5.3)."""
    n = len(payload)
    if n == 0:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (FIN set)."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + mask(payload, key)


class FrameReader:
    """Splits the server's (unmasked) byte stream into ``(opcode, payload)``."""

    def __init__(self) -> None:
        self._buf = b""
        self._fragments: list[bytes] = []
        self._fragment_op = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Complete messages in ``data`` (continuations joined)."""
        buf = self._buf + data if self._buf else data
        out: list[tuple[int, bytes]] = []
        pos = 0
        while True:
            if len(buf) - pos < 2:
                break
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n = struct.unpack_from("!H", buf, pos + 2)[0]
                head = 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            masked = b1 & 0x80
            if masked:
                head += 4
            if len(buf) - pos < head + n:
                break
            payload = buf[pos + head : pos + head + n]
            if masked:
                payload = mask(payload, buf[pos + head - 4 : pos + head])
            pos += head + n
            opcode, fin = b0 & 0x0F, b0 & 0x80
            if opcode == 0:
                self._fragments.append(payload)
                if fin:
                    out.append((self._fragment_op, b"".join(self._fragments)))
                    self._fragments = []
            elif not fin and opcode < 8:
                self._fragment_op = opcode
                self._fragments = [payload]
            else:
                out.append((opcode, payload))
        self._buf = buf[pos:]
        return out


@attrs.define
class RunResult:
    """What one WebSocket agent run saw (monotonic seconds)."""

    index: int
    started: float = 0.0
    acked: float | None = None
    ended: float | None = None
    events: int = 0
    ok: bool = False
    status: str | None = None
    error: str | None = None


class AgentRunProtocol(asyncio.Protocol):
    """One connection: upgrade, challenge, connect, one ``agent`` run, close."""

    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        params: dict[str, Any],
        result: RunResult,
        done: asyncio.Future[RunResult],
    ) -> None:
        self._host, self._port, self._token = host, port, token
        self._params = params
        self.result = result
        self._done = done
        self._transport: asyncio.Transport | None = None
        self._upgraded = False
        self._head = b""
        self._reader = FrameReader()
        self._state = "challenge"
        self._agent_id = "2:" + str(uuid.uuid4())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the upgrade request."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        request = (
            "GET / HTTP/1.1\r\n"
            f"Host: {self._host}:{self._port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        transport.write(request.encode("ascii"))

    def data_received(self, data: bytes) -> None:
        """Upgrade response first, then frames."""
        if self._done.done():
            return
        if not self._upgraded:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self._head.split(b"\r\n", 1)[0]
            data = self._head[end + 4 :]
            self._head = b""
            if b" 101 " not in status + b" ":
                self._fail(f"upgrade refused: {status.decode('latin-1')}")
                return
            self._upgraded = True
        for opcode, payload in self._reader.feed(data):
            self._frame(opcode, payload)
            if self._done.done():
                return

    def connection_lost(self, exc: Exception | None) -> None:
        """Closed before the final response: an error."""
        if not self._done.done():
            self._fail(f"connection closed: {exc}" if exc else "connection closed early")

    def _send(self, frame: dict[str, Any]) -> None:
        assert self._transport is not None
        self._transport.write(encode_frame(1, json.dumps(frame).encode("utf-8")))

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 9:  # ping
            assert self._transport is not None
            self._transport.write(encode_frame(10, payload))
            return
        if opcode == 8:
            self._fail("server closed the WebSocket")
            return
        if opcode != 1:
            return
        if _EVENT in payload or _EVENT_SPACED in payload:
            if self._state == "challenge" and _CHALLENGE in payload:
                self._state = "connect"
                self._send(
                    {
                        "type": "req",
                        "id": "1:" + str(uuid.uuid4()),
                        "method": "connect",
                        "params": {
                            "minProtocol": 4,
                            "maxProtocol": 4,
                            "client": {
                                "id": "cli",
                                "version": "bench",
                                "platform": "linux",
                                "mode": "cli",
                            },
                            "caps": [],
                            "auth": {"token": self._token},
                            "role": "operator",
                            "scopes": ["operator.write"],
                        },
                    }
                )
            elif self._state == "run":
                self.result.events += 1
            return
        frame = json.loads(payload)
        if frame.get("type") != "res":
            return
        if not frame.get("ok"):
            error = frame.get("error") or {}
            self._fail(f"{self._state}: {error.get('code')}: {error.get('message')}")
            return
        body = frame.get("payload") or {}
        if self._state == "connect":
            self._state = "run"
            self.result.started = time.monotonic()
            self._send(
                {"type": "req", "id": self._agent_id, "method": "agent", "params": self._params}
            )
        elif self._state == "run" and frame.get("id") == self._agent_id:
            if isinstance(body, dict) and body.get("status") == "accepted":
                self.result.acked = time.monotonic()
                return
            self.result.status = body.get("status") if isinstance(body, dict) else None
            self.result.ok = self.result.status in ("ok", "completed", None)
            self._end()

    def _end(self) -> None:
        self.result.ended = time.monotonic()
        if self._transport is not None:
            self._transport.write(encode_frame(8, struct.pack("!H", 1000)))
            self._transport.close()
        self._done.set_result(self.result)

    def _fail(self, message: str) -> None:
        self.result.error = message
        self.result.ended = time.monotonic()
        if self._transport is not None:
            self._transport.abort()
        if not self._done.done():
            self._done.set_result(self.result)


async def agent_run(
    host: str, port: int, token: str, params: dict[str, Any], index: int, timeout: float
) -> RunResult:
    """One connection, one agent run."""
    loop = asyncio.get_running_loop()
    result = RunResult(index=index, started=time.monotonic())
    done: asyncio.Future[RunResult] = loop.create_future()
    try:
        transport, _protocol = await asyncio.wait_for(
            loop.create_connection(
                lambda: AgentRunProtocol(host, port, token, params, result, done), host, port
            ),
            timeout,
        )
    except (OSError, TimeoutError) as e:
        result.error = f"connect: {e!r}"
        return result
    try:
        return await asyncio.wait_for(asyncio.shield(done), timeout)
    except TimeoutError:
        result.error = "timeout"
        transport.abort()
        return result


async def run_agents(
    host: str,
    port: int,
    token: str,
    *,
    runs: int,
    agent_id: str,
    message: str = "hello",
    ramp: float = 0.0,
    timeout: float = 60.0,
) -> tuple[list[RunResult], float]:
    """``runs`` concurrent agent runs, each on its own connection and session."""
    started = time.monotonic()

    async def one(i: int) -> RunResult:
        if ramp:
            await asyncio.sleep(i * ramp)
        params = {
            "message": f"bench-id-{i} {message}",
            "agentId": agent_id,
            "sessionKey": f"agent:{agent_id}:bench-ws-{i}-{uuid.uuid4().hex[:8]}",
            "idempotencyKey": str(uuid.uuid4()),
            "deliver": False,
            "timeout": timeout,
        }
        return await agent_run(host, port, token, params, i, timeout)

    results = await asyncio.gather(*(one(i) for i in range(runs)))
    return list(results), time.monotonic() - started


def summarize(results: Sequence[RunResult], wall: float) -> dict[str, Any]:
    """Completed runs, events and their rate, run durations."""
    durations = [r.ended - r.started for r in results if r.ok and r.ended is not None]
    acks = [r.acked - r.started for r in results if r.acked is not None]
    events = sum(r.events for r in results)
    errors: dict[str, int] = {}
    for r in results:
        if r.error is not None:
            key = r.error[:120]
            errors[key] = errors.get(key, 0) + 1
    return {
        "runs": len(results),
        "complete": sum(1 for r in results if r.ok),
        "errors": errors,
        "events": events,
        "wall_s": wall,
        "events_per_s": events / wall if wall > 0 else 0.0,
        "ack_p50_ms": None if not acks else (percentile(acks, 50) or 0.0) * 1000,
        "run_p50_ms": None if not durations else (percentile(durations, 50) or 0.0) * 1000,
        "run_p99_ms": None if not durations else (percentile(durations, 99) or 0.0) * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    """Run the agent runs; print one JSON summary line."""
    p = argparse.ArgumentParser(description="WebSocket agent-run load client")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--agent", default="main")
    p.add_argument("--ramp", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    results, wall = asyncio.run(
        run_agents(
            args.host,
            args.port,
            args.token,
            runs=args.runs,
            agent_id=args.agent,
            ramp=args.ramp,
            timeout=args.timeout,
        )
    )
    sys.stdout.write(json.dumps(summarize(results, wall)) + "\n")


if __name__ == "__main__":
    main()
