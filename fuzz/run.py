"""``make fuzz``: fire generated and mutated HTTP requests and WebSocket frames at a
real ``twistd openclaw`` and check that it survives them.

    python -m fuzz.run [--seed N] [--count N] [--concurrency N] [--keep]

It starts the fake upstream (``fuzz.upstream``) and the gateway (own temp state
dir, loopback, token auth, the demo provider plus upstream providers that fail
in every way, and one that refuses connections), warms it up, measures RSS and
open file descriptors, runs the cases concurrently (bounded), waits for the
gateway to close the fuzz connections, measures again and prints a report.

Targets (exit status 1 when one is missed): no 5xx other than mapped upstream
failures (in-stream ``internal error`` frames and WebSocket ``1011`` closes
count as 5xx), no hang (a complete request left unanswered), the process alive
and answering ``/healthz``, descriptors back to their baseline (the provider's
connection pool is counted apart and may hold up to its limit), RSS growth
under ``--max-rss-growth-mb``, no secret in a response or the log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fuzz.cases import SLOW_AGENTS, UPSTREAM_AGENTS, Case, HttpCase, WsCase
from fuzz.report import POOL_LIMIT, Finding, Tally, report, scan_log
from fuzz.surrogates import surrogate_cases
from fuzz.wire import (
    OP_CLOSE,
    OP_TEXT,
    FdCensus,
    HttpResponse,
    ServerFrame,
    WireError,
    close_payload,
    describe_fds,
    fd_census,
    read_frame,
    read_head,
    read_response,
    rss_kib,
    ws_frame,
)
from fuzz.ws_cases import CaseGenerator, generate

TOKEN = "fuzz-gateway-token-0123456789"
UPSTREAM_KEY = "fuzz-upstream-key"
#: A provider header value whose name does not look secret (the ``echo``
#: upstream profile quotes it back in an error).
HEADER_SECRET = "fuzz-upstream-pass-5e6f7a8b"
#: Strings that must never appear in a response or in the gateway's log.
SECRETS = (TOKEN, UPSTREAM_KEY, "sk-fuzz-0123456789abcdef", HEADER_SECRET)
#: 5xx messages that are documented mappings of upstream or run failures.
MAPPED_5XX = {
    "upstream provider error",
    "upstream provider unavailable",
    "upstream provider overloaded",
    "upstream provider timeout",
    "agent run timed out",
    "agent run was aborted",
    "tool_choice=required was not satisfied by the agent response",
}
_MAPPED_5XX_PATTERNS = (
    re.compile(r"^tool_choice required a .+ tool call, but the agent did not produce one$"),
    # The agent loop's own stop (code agent_loop_stopped): the "tools" upstream
    # answers every call with a tool call, so the turn meets its step limit.
    re.compile(
        r"^the agent made \d+ model calls without a final answer \(the turn's step limit\)$"
    ),
)
#: Documented 503s of the connection limits (gateway/hygiene.py): not failures,
#: though the fuzzer's bounded concurrency should stay under them.
LIMIT_REFUSALS = ("Too many connections", "Too many unauthenticated sockets")
#: WebSocket error messages that mean "internal error", not a mapped failure.
WS_INTERNAL = {"internal error", "agent run failed"}
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def is_mapped_5xx(message: object) -> bool:
    """A documented mapping of an upstream / run failure."""
    return isinstance(message, str) and (
        message in MAPPED_5XX or any(p.match(message) for p in _MAPPED_5XX_PATTERNS)
    )


# --- processes --------------------------------------------------------------------


def _wait_for_line(path: Path, process: subprocess.Popen[bytes], deadline: float) -> int:
    """Poll a log file for the ``listening on`` line (a tool may poll; tests may not)."""
    while time.monotonic() < deadline:
        match = _LISTENING.search(path.read_text("utf-8", "replace"))
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args!r} exited {process.returncode}:\n{path.read_text()[-3000:]}"
            )
        time.sleep(0.05)
    raise TimeoutError(f"{process.args!r} did not start:\n{path.read_text()[-3000:]}")


def _start(argv: list[str], log: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    return process, _wait_for_line(log, process, time.monotonic() + 60)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def write_config(directory: Path, upstream_port: int) -> Path:
    """Token auth, chat completions on, demo provider plus failing upstreams."""
    agents: list[dict[str, Any]] = [{"id": "main", "default": True, "model": "demo/echo"}]
    agents += [
        {"id": name, "model": f"fake/{name}"}
        for name in (*UPSTREAM_AGENTS, *SLOW_AGENTS)
        if name != "refused"
    ]
    agents.append({"id": "refused", "model": "dead/x"})
    config = {
        "gateway": {
            "auth": {"mode": "token", "token": TOKEN},
            "http": {"endpoints": {"chatCompletions": {"enabled": True, "sseKeepAliveSeconds": 1}}},
            "shutdownGraceSeconds": 2,
        },
        "models": {
            "providers": {
                "demo": {"api": "demo", "delayMs": 0},
                "fake": {
                    "api": "openai-completions",
                    "baseUrl": f"http://127.0.0.1:{upstream_port}/v1",
                    "apiKey": UPSTREAM_KEY,
                    "headers": {"X-Upstream-Pass": HEADER_SECRET},
                    "timeoutSeconds": 2,
                },
                "dead": {
                    "api": "openai-completions",
                    "baseUrl": f"http://127.0.0.1:{_closed_port()}/v1",
                    "apiKey": UPSTREAM_KEY,
                    "timeoutSeconds": 2,
                },
            }
        },
        "agents": {"defaults": {"timeoutSeconds": 4}, "list": agents},
    }
    path = directory / "openclaw.json"
    path.write_text(json.dumps(config, indent=1))
    return path


# --- results ----------------------------------------------------------------------


# --- running cases ------------------------------------------------------------------


def around(data: bytes, secret: str) -> str:
    """The text around a leaked secret, the secret itself masked."""
    at = data.find(secret.encode())
    excerpt = data[max(0, at - 150) : at + len(secret) + 60]
    return repr(excerpt.replace(secret.encode(), b"<SECRET>"))


def note(tally: Tally, what: str, case: Case) -> None:
    """Count a remark that is not a target, keeping its first example."""
    tally.notes[what] += 1
    data = case.data if isinstance(case, HttpCase) else case.handshake
    tally.note_examples.setdefault(what, data[:200])


class Runner:
    """Runs cases against the gateway with bounded concurrency."""

    def __init__(self, port: int, tally: Tally, *, timeout: float) -> None:
        self.port = port
        self.tally = tally
        self.timeout = timeout

    async def run(self, cases: Iterable[Case], concurrency: int) -> None:
        """Every case, at most ``concurrency`` at a time."""
        queue: asyncio.Queue[Case] = asyncio.Queue()
        for case in cases:
            queue.put_nowait(case)

        async def worker() -> None:
            while True:
                try:
                    case = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    await self.one(case)
                except Exception as e:  # a bug in the fuzzer must not look like a gateway bug
                    self.tally.anomalies.append(
                        Finding("fuzzer error", case, f"{type(e).__name__}: {e}")
                    )

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def one(self, case: Case) -> None:
        """One case, on its own connection."""
        self.tally.kinds[case.kind] += 1
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20), self.timeout
        )
        try:
            if isinstance(case, HttpCase):
                self.tally.http_requests += case.units
                await self.http(case, reader, writer)
            else:
                self.tally.ws_frames += case.units
                await self.ws(case, reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, pieces: Iterable[bytes]) -> bool:
        """Write; False when the gateway already closed the connection."""
        try:
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def http(
        self, case: HttpCase, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Send, then read the responses the case's mode calls for."""
        if not await self._send(writer, case.pieces):
            self.tally.statuses["reset-while-sending"] += 1
            return
        if case.mode == "truncated":
            with contextlib.suppress(OSError):
                writer.write_eof()
        head: bytes | None = None
        if case.mode == "unknown":
            # The gateway may be waiting for more bytes: give it a moment to
            # answer, then end our side as a client that gives up would.
            try:
                head = await asyncio.wait_for(read_head(reader), 2.0)
            except TimeoutError:
                with contextlib.suppress(OSError):
                    writer.write_eof()
            except EOFError:
                self.tally.statuses["closed-without-answer"] += 1
                return
            except (ConnectionError, OSError):
                self.tally.statuses["reset"] += 1
                return
            except WireError as e:
                self.tally.statuses["malformed-response"] += 1
                self.tally.anomalies.append(Finding("malformed response", case, str(e)))
                return
        for answered in range(case.responses):
            try:
                response = await asyncio.wait_for(
                    read_response(reader, head_only=case.head, head=head), self.timeout
                )
                head = None
            except TimeoutError:
                if case.mode == "complete":
                    self.tally.hangs.append(
                        Finding("no answer", case, f"nothing within {self.timeout}s")
                    )
                self.tally.statuses["timeout"] += 1
                return
            except EOFError:
                if answered:  # e.g. a bare 400 (then close) for a later pipelined request
                    note(self.tally, "connection closed before every pipelined answer", case)
                    return
                self.tally.statuses["closed-without-answer"] += 1
                if case.mode == "complete":
                    self.tally.anomalies.append(Finding("closed without an answer", case, "EOF"))
                return
            except (ConnectionError, OSError):
                self.tally.statuses["reset"] += 1
                return
            except WireError as e:
                self.tally.statuses["malformed-response"] += 1
                self.tally.anomalies.append(Finding("malformed response", case, str(e)))
                return
            self.check_http(case, response)
            if response.header(b"connection") == b"close" and case.responses > 1:
                return

    def check_http(self, case: HttpCase, response: HttpResponse) -> None:
        """Classify one response."""
        tally = self.tally
        tally.statuses[str(response.status)] += 1
        for secret in SECRETS:
            if secret.encode() in response.body:
                tally.leaks.append(
                    Finding("secret in a response", case, around(response.body, secret))
                )
        content_type = (response.header(b"content-type") or b"").lower()
        error: Any = None
        if content_type.startswith(b"application/json") and response.body:
            try:
                error = json.loads(response.body).get("error") if response.status >= 400 else None
            except (ValueError, AttributeError):
                tally.anomalies.append(
                    Finding("invalid JSON body", case, repr(response.body[:200]))
                )
        if response.status >= 400 and not case.head:  # HEAD answers have no body
            shaped = isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}
            if not shaped:
                # Twisted's own 400s for unparseable HTTP carry no JSON: noted, not a target.
                note(tally, f"{response.status} without an OpenAI error body", case)
        if response.status >= 500:
            message = error.get("message") if isinstance(error, dict) else None
            if message in LIMIT_REFUSALS:
                note(tally, f"{response.status} {message} (documented limit)", case)
            elif is_mapped_5xx(message):
                tally.mapped_5xx[f"{response.status} {message}"] += 1
            else:
                detail = f"{response.status} {response.reason!r} body={response.body[:300]!r}"
                tally.unmapped.append(Finding("unmapped 5xx", case, detail))
        if response.status == 200 and content_type.startswith(b"text/event-stream"):
            self.check_stream(case, response)

    def check_stream(self, case: HttpCase, response: HttpResponse) -> None:
        """An SSE body: frames parse, errors are mapped, the stream ends with [DONE]."""
        tally = self.tally
        payloads = [
            line[6:]
            for line in response.body.decode("utf-8", "replace").split("\n")
            if line.startswith("data: ")
        ]
        if payloads[-1:] != ["[DONE]"] or not response.complete:
            tally.anomalies.append(
                Finding(
                    "stream cut without [DONE]",
                    case,
                    f"{len(payloads)} frames, last {payloads[-1:]!r}"[:300],
                )
            )
        for payload in payloads[:-1]:
            try:
                chunk = json.loads(payload)
            except ValueError:
                tally.anomalies.append(Finding("SSE frame is not JSON", case, payload[:200]))
                continue
            error = chunk.get("error") if isinstance(chunk, dict) else None
            if error is None:
                continue
            if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
                tally.anomalies.append(Finding("error frame shape", case, payload[:200]))
                continue
            message = error.get("message")
            if error.get("type") == "api_error" and not is_mapped_5xx(message):
                tally.unmapped.append(Finding("unmapped in-stream error", case, payload[:300]))
            else:
                tally.stream_errors[str(message)[:80]] += 1

    async def ws(
        self, case: WsCase, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Upgrade, read the challenge, send the frames and a close, read to the end."""
        tally = self.tally
        if not await self._send(writer, [case.handshake]):
            tally.statuses["ws-reset-while-upgrading"] += 1
            return
        try:
            response = await asyncio.wait_for(read_response(reader), self.timeout)
        except (TimeoutError, EOFError, WireError, ConnectionError, OSError) as e:
            tally.anomalies.append(Finding("no upgrade answer", case, type(e).__name__))
            return
        tally.statuses[f"ws-upgrade {response.status}"] += 1
        if response.status != 101:
            if any(limit.encode() in response.body for limit in LIMIT_REFUSALS):
                note(tally, f"{response.status} (documented limit) on upgrade", case)
            elif response.status >= 500:
                detail = f"{response.status} {response.body[:200]!r}"
                tally.unmapped.append(Finding("5xx on upgrade", case, detail))
            return
        frames: list[ServerFrame] = []
        close_code: int | None = None
        # One task reads frames for the whole session, so timeouts below never
        # cancel a read halfway through a frame.
        inbox: asyncio.Queue[ServerFrame | BaseException] = asyncio.Queue()

        async def pump() -> None:
            try:
                while True:
                    inbox.put_nowait(await read_frame(reader))
            except BaseException as e:  # EOF, reset, malformed, cancelled
                inbox.put_nowait(e)

        async def until(deadline: float, *, one: bool = False) -> BaseException | None:
            """Collect frames until the deadline, a close frame or the end (or ``one``)."""
            while (left := deadline - time.monotonic()) > 0:
                try:
                    item = await asyncio.wait_for(inbox.get(), left)
                except TimeoutError:
                    return None
                if isinstance(item, BaseException):
                    return item
                frames.append(item)
                if one or item.opcode == OP_CLOSE:
                    return None
            return None

        reading = asyncio.ensure_future(pump())
        ended: BaseException | None = None
        try:
            ended = await until(time.monotonic() + self.timeout, one=True)
            if frames and ended is None:
                await self._send(writer, case.frames)
                ended = await until(time.monotonic() + case.linger)
                if ended is None and case.close and frames[-1].opcode != OP_CLOSE:
                    await self._send(writer, [ws_frame(close_payload(1000), OP_CLOSE)])
                if ended is None and frames[-1].opcode != OP_CLOSE:
                    ended = await until(time.monotonic() + 3.0)
        finally:
            reading.cancel()
        if isinstance(ended, ConnectionError | OSError):
            note(tally, "WebSocket connection reset", case)
        elif isinstance(ended, WireError):
            tally.anomalies.append(
                Finding("malformed WebSocket frame from the gateway", case, str(ended))
            )
        if frames and frames[-1].opcode == OP_CLOSE:
            close_code = frames[-1].close_code or 1005
        tally.ws_closes["none" if close_code is None else str(close_code)] += 1
        if close_code == 1011:
            tally.unmapped.append(
                Finding(
                    "WebSocket closed 1011 (internal error)", case, repr(frames[-1].payload[:200])
                )
            )
        for frame in frames:
            if frame.opcode != OP_TEXT:
                continue
            try:
                message = json.loads(frame.payload)
            except ValueError:
                tally.anomalies.append(
                    Finding("gateway frame is not JSON", case, repr(frame.payload[:200]))
                )
                continue
            for secret in SECRETS:
                if secret.encode() in frame.payload:
                    tally.leaks.append(
                        Finding("secret in a WebSocket frame", case, around(frame.payload, secret))
                    )
            self.check_ws_message(case, message)

    def check_ws_message(self, case: WsCase, message: Any) -> None:
        """Error answers carry a code and a message; internal errors are findings."""
        if not isinstance(message, dict):
            self.tally.anomalies.append(
                Finding("gateway frame is not an object", case, repr(message)[:200])
            )
            return
        error = None
        if message.get("type") == "res" and message.get("ok") is False:
            error = message.get("error")
        elif message.get("type") == "event" and message.get("event") == "error":
            error = message.get("payload")
        if error is None:
            return
        if not (isinstance(error, dict) and error.get("code") and error.get("message")):
            self.tally.anomalies.append(
                Finding("error frame without code/message", case, repr(message)[:300])
            )
            return
        self.tally.statuses[f"ws-error {error['code']}"] += 1
        if error["message"] in WS_INTERNAL:
            self.tally.unmapped.append(
                Finding("WebSocket internal error", case, repr(message)[:300])
            )


# --- the gateway process -------------------------------------------------------------


def healthz(port: int) -> int | None:
    """The status of ``GET /healthz``, or None when nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return None
    match = re.match(rb"HTTP/1\.1 (\d{3})", data)
    return int(match.group(1)) if match else None


def settle(
    pid: int, port: int, upstream_port: int, baseline: FdCensus | None, deadline: float
) -> FdCensus:
    """Poll /proc until the descriptor count stops changing (and, given a
    baseline, comes back to it) or the deadline passes."""
    last: FdCensus | None = None
    stable_since = time.monotonic()
    while True:
        census = fd_census(pid, gateway_port=port, upstream_ports=(upstream_port,))
        now = time.monotonic()
        if last is None or census.total != last.total:
            stable_since = now
        last = census
        at_baseline = baseline is None or census.own <= baseline.own
        if (now - stable_since >= 1.0 and at_baseline and census.clients == 0) or now > deadline:
            return census
        time.sleep(0.1)


async def warm_up(port: int, tally: Tally) -> None:
    """A few requests of each kind, so lazy state exists before the baseline."""
    generator = CaseGenerator(random.Random(0), token=TOKEN, port=port)
    cases: list[Case] = []
    for agent in ("main", "ok", "tools", "e500", "reset", "malformed", "refused"):
        for stream in (False, True):
            body = json.dumps(
                {
                    "model": f"openclaw/{agent}",
                    "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}],
                }
            ).encode()
            headers = [("Host", "x"), ("Authorization", f"Bearer {TOKEN}")]
            cases.append(
                HttpCase(
                    "warmup",
                    (generator.render("POST", "/v1/chat/completions", headers, body),),
                    "complete",
                )
            )
    cases += [generator.ws_case() for _ in range(8)]
    await Runner(port, tally, timeout=20).run(cases * 3, POOL_LIMIT + 4)


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer; the exit status says whether every target was met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--count", type=int, default=10_000, help="HTTP requests + WebSocket frames"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="connections at a time")
    parser.add_argument(
        "--timeout", type=float, default=20.0, help="seconds to wait for one answer"
    )
    parser.add_argument("--max-rss-growth-mb", type=float, default=64.0)
    parser.add_argument(
        "--examples", type=int, default=3, help="findings shown per kind (0: every one)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (config, state, logs)"
    )
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="openclaw-fuzz-"))
    env = {
        **os.environ,
        "OPENCLAW_STATE_DIR": str(work / "state"),
        "HOME": str(work),
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PORT", "OPENCLAW_CONFIG_PATH"):
        env.pop(name, None)
    bin_dir = Path(sys.executable).parent
    processes: list[subprocess.Popen[bytes]] = []
    try:
        upstream, upstream_port = _start(
            [sys.executable, "-m", "fuzz.upstream", "--port", "0"], work / "upstream.log", env
        )
        processes.append(upstream)
        config = write_config(work, upstream_port)
        gateway_argv = [
            str(bin_dir / "twistd"),
            "--nodaemon",
            "--pidfile=",
            "openclaw",
            "--config",
            str(config),
            "--listen",
            "tcp:0:interface=127.0.0.1",
        ]
        gateway, port = _start(gateway_argv, work / "gateway.log", env)
        processes.append(gateway)
        print(
            f"gateway pid {gateway.pid} on 127.0.0.1:{port}, "
            f"upstream on {upstream_port}, work dir {work}",
            flush=True,
        )

        warm = Tally()
        asyncio.run(warm_up(port, warm))
        before = settle(gateway.pid, port, upstream_port, None, time.monotonic() + 20)
        rss_before = rss_kib(gateway.pid)

        # The lone-surrogate sweep (every string of every endpoint and method)
        # runs in every fuzz run, ahead of the seeded cases.
        sweep = surrogate_cases(CaseGenerator(random.Random(args.seed), token=TOKEN, port=port))
        cases = sweep + generate(args.seed, args.count, token=TOKEN, port=port)
        print(
            f"running {len(cases)} cases ({len(sweep)} lone-surrogate sweep cases, then "
            f"{args.count}+ requests and frames), "
            f"concurrency {args.concurrency}",
            flush=True,
        )
        tally = Tally()
        started = time.monotonic()
        asyncio.run(Runner(port, tally, timeout=args.timeout).run(cases, args.concurrency))
        elapsed = time.monotonic() - started

        alive = gateway.poll() is None
        health = healthz(port) if alive else None
        after = (
            settle(gateway.pid, port, upstream_port, before, time.monotonic() + 30)
            if alive
            else before
        )
        rss_after = rss_kib(gateway.pid) if alive else 0
        fd_lines = describe_fds(after, gateway.pid) if alive else []
        text, ok = report(
            tally,
            seed=args.seed,
            elapsed=elapsed,
            rss=(rss_before, rss_after),
            fds=(before, after),
            alive=alive,
            health=health,
            log_problems=scan_log(work / "gateway.log", SECRETS),
            max_rss_growth_mb=args.max_rss_growth_mb,
            fd_lines=fd_lines,
            examples=args.examples,
        )
        print(text, flush=True)
        if alive:
            gateway.send_signal(signal.SIGTERM)
            try:
                status = gateway.wait(timeout=30)
            except subprocess.TimeoutExpired:
                status = None
            print(f"gateway stopped with status {status}", flush=True)
            ok = ok and status == 0
        print("FUZZ PASSED" if ok else "FUZZ FAILED (see MISSED above)", flush=True)
        return 0 if ok else 1
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
