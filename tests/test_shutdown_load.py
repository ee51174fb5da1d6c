"""Graceful shutdown under load (issue 7 item 6), against the real process.

200 streaming chat completions are running on ``twistd openclaw`` (demo
provider, ``delayMs`` so replies last from a fraction of a second to several
seconds) when it gets SIGTERM with ``gateway.shutdownGraceSeconds: 2``. Every
stream must end properly: a finish chunk and ``[DONE]``, or an error frame and
``[DONE]``, with the chunked body terminated; the process exits 0 soon after
the grace period; and the state dir is consistent: every ``sessions.json`` and
transcript line parses, every finished run is recorded as complete and every
cut one as aborted or failed.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.gateway_process import TOKEN, GatewayProcess, write_config

STREAMS = 200
GRACE_SECONDS = 2
#: Exit must come within the grace period plus this much.
EXIT_SLACK_SECONDS = 5
DELAY_MS = 40
#: Message sizes: the demo quotes up to 200 characters, one word per piece, so
#: these give replies of about 8, 36 and 106 pieces (0.3 s, 1.4 s, 4.2 s).
MESSAGES = ("hi", " ".join(["w"] * 30), " ".join(["w"] * 100))


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """Decode a chunked body as far as it goes; and whether it was terminated."""
    out = bytearray()
    rest = body
    while True:
        line, sep, after = rest.partition(b"\r\n")
        if not sep:
            return bytes(out), False
        try:
            size = int(line.split(b";")[0], 16)
        except ValueError:
            return bytes(out), False
        if size == 0:
            return bytes(out), after.startswith(b"\r\n")
        if len(after) < size + 2:
            out += after[:size]
            return bytes(out), False
        out += after[:size]
        rest = after[size + 2 :]


def sse_data(text: str) -> Iterator[str]:
    """The ``data:`` payloads of an SSE body (comments skipped)."""
    for frame in text.split("\n\n"):
        for line in frame.split("\n"):
            if line.startswith("data: "):
                yield line[len("data: ") :]


@attrs.define
class StreamOutcome:
    """What one client saw."""

    index: int
    status: bytes = b""
    headers: bytes = b""
    terminated: bool = False
    payloads: list[str] = attrs.Factory(list)

    @property
    def chunks(self) -> list[dict[str, Any]]:
        """Every JSON payload before ``[DONE]``."""
        return [json.loads(p) for p in self.payloads if p != "[DONE]"]

    @property
    def run_id(self) -> str | None:
        """The completion id (also the agent run id)."""
        return next((c["id"] for c in self.chunks if "id" in c), None)

    @property
    def finished(self) -> bool:
        """A finish chunk (non-null ``finish_reason``) came."""
        return any(
            choice.get("finish_reason") is not None
            for chunk in self.chunks
            for choice in chunk.get("choices", [])
        )

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Error frames."""
        return [c["error"] for c in self.chunks if "error" in c]


class StreamingChat(Protocol):
    """One raw HTTP/1.1 streaming chat completion; keeps every byte."""

    def __init__(self, index: int, port: int) -> None:
        self.index = index
        self.port = port
        self.received = bytearray()
        self.first_chunk: Deferred[None] = Deferred()
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        body = json.dumps(
            {
                "model": "openclaw",
                "stream": True,
                "messages": [{"role": "user", "content": MESSAGES[self.index % 3]}],
            }
        ).encode()
        assert self.transport is not None
        self.transport.write(
            b"POST /v1/chat/completions HTTP/1.1\r\n"
            b"Host: 127.0.0.1:%d\r\n"
            b"Authorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\n"
            b"Connection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (self.port, TOKEN.encode(), len(body), body)
        )

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if not self.first_chunk.called and b"\r\n\r\n" in self.received:
            _, _, body = bytes(self.received).partition(b"\r\n\r\n")
            if b"data: " in dechunk(body)[0]:
                self.first_chunk.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.first_chunk.called:
            self.first_chunk.errback(
                RuntimeError(f"stream {self.index} closed before its role chunk")
            )
        self.closed.callback(None)

    def outcome(self) -> StreamOutcome:
        """Parse what was received."""
        head, _, body = bytes(self.received).partition(b"\r\n\r\n")
        status, _, headers = head.partition(b"\r\n")
        decoded, terminated = dechunk(body)
        return StreamOutcome(
            index=self.index,
            status=status,
            headers=headers.lower(),
            terminated=terminated,
            payloads=list(sse_data(decoded.decode("utf-8", "replace"))),
        )


class _Prepared(Factory):
    """Connects one already-built protocol."""

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return self._protocol


def transcript_lines(state: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every line of every transcript, parsed (a line that does not parse fails)."""
    for path in sorted(state.glob("agents/*/sessions/*.jsonl")):
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            try:
                yield path, json.loads(line)
            except ValueError as error:
                raise AssertionError(f"{path.name}:{number} does not parse: {error}") from None


class ShutdownUnderLoadTests(TestCase):
    """SIGTERM during 200 active streams."""

    timeout = 60

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir(parents=True)
        self.state = self.dir / "state"

    def start_gateway(self) -> GatewayProcess:
        """The gateway, with its output drained on a thread (200 streams log a lot)."""
        config = write_config(
            self.dir,
            extra={
                "models": {"providers": {"demo": {"api": "demo", "delayMs": DELAY_MS}}},
                # Every stream runs at once (run admission is tested elsewhere).
                "agents": {"defaults": {"maxConcurrent": STREAMS}},
            },
            shutdownGraceSeconds=GRACE_SECONDS,
        )
        gateway = GatewayProcess(config, self.state)
        self.addCleanup(gateway.ensure_stopped)
        drainer = threading.Thread(target=self._drain, args=(gateway,), daemon=True)
        drainer.start()
        self.addCleanup(drainer.join, 10)
        return gateway

    @staticmethod
    def _drain(gateway: GatewayProcess) -> None:
        """Read output lines until the process closes it."""
        with contextlib.suppress(RuntimeError, TimeoutError):
            gateway.wait_for_output(r"(?!)", timeout=120)

    async def test_sigterm_during_200_streams(self) -> None:
        """Each stream ends with a finish chunk or an error frame, then ``[DONE]``
        and the end of the chunked body; exit 0 within grace + 5 s; the
        transcripts agree with what the clients saw."""
        from twisted.internet import reactor

        gateway = self.start_gateway()
        clients = [StreamingChat(i, gateway.port) for i in range(STREAMS)]
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port, timeout=10)
        await gatherResults([endpoint.connect(_Prepared(c)) for c in clients])
        await gatherResults([c.first_chunk for c in clients])

        gateway.process.send_signal(signal.SIGTERM)
        await DeferredList([c.closed for c in clients])
        try:
            status = gateway.process.wait(timeout=GRACE_SECONDS + EXIT_SLACK_SECONDS)
        except subprocess.TimeoutExpired:
            self.fail(
                f"still running {GRACE_SECONDS + EXIT_SLACK_SECONDS}s after the streams ended"
            )
        self.assertEqual(status, 0, gateway.text[-3000:])

        outcomes = [c.outcome() for c in clients]
        problems = []
        for o in outcomes:
            if not o.status.startswith(b"HTTP/1.1 200"):
                problems.append(f"stream {o.index}: status {o.status!r}")
                continue
            if o.payloads[-1:] != ["[DONE]"]:
                problems.append(
                    f"stream {o.index} ({o.run_id}): cut without [DONE] after"
                    f" {len(o.payloads)} frames, finished={o.finished} errors={o.errors}"
                )
                continue
            if not o.terminated:
                problems.append(f"stream {o.index}: [DONE] but the chunked body never ended")
            if o.finished == bool(o.errors):
                problems.append(f"stream {o.index}: finished={o.finished} errors={o.errors}")
            for error in o.errors:
                if set(error) != {"message", "type", "param", "code"}:
                    problems.append(f"stream {o.index}: error frame {error}")
        if problems:
            cut_ids = [o.run_id for o in outcomes if o.payloads[-1:] != ["[DONE]"] and o.run_id]
            logged = [line for line in gateway.output if any(r in line for r in cut_ids[:2])]
            self.fail(
                f"{len(problems)} of {STREAMS} streams:\n"
                + "\n".join(problems[:20])
                + "\ngateway log of the first cut runs:\n"
                + "".join(logged[-20:])
                + "\nend of the gateway log:\n"
                + "".join(gateway.output[-15:])
            )

        runs = {o.run_id for o in outcomes}
        finished = {o.run_id for o in outcomes if o.finished}
        cut = runs - finished
        # The mix must really exercise both outcomes.
        self.assertTrue(finished and cut, (len(finished), len(cut)))

        for index_file in self.state.glob("agents/*/sessions/sessions.json"):
            json.loads(index_file.read_text("utf-8"))
        users: set[str] = set()
        replies: dict[str | None, object] = {}
        for _path, entry in transcript_lines(self.state):
            message = entry.get("message") if entry.get("type") == "message" else None
            if not isinstance(message, dict):
                continue
            if message.get("role") == "user":
                users.add(entry["runId"])
            elif message.get("role") == "assistant":
                self.assertNotIn(entry["runId"], replies, "two replies for one run")
                replies[entry["runId"]] = message.get("stopReason")
        self.assertEqual(users, runs)
        self.assertEqual(
            {run: replies.get(run) for run in finished}, dict.fromkeys(finished, "stop")
        )
        wrong = {
            run: replies.get(run) for run in cut if replies.get(run) not in ("aborted", "error")
        }
        self.assertEqual(wrong, {}, "cut runs not recorded as aborted/error")
