"""The benchmark's load clients, upstream, R1 and /proc sampler, end to end.

The Twisted servers run on an :class:`AsyncioSelectorReactor` built on a
private asyncio loop (never installed as the global reactor), so the asyncio
clients and the Twisted servers share one loop and talk over real loopback
sockets in one process, with no sleeps: every wait is on a Deferred or a
future that the traffic itself completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from bench import disk_budget, procstat, sse_client, ws_client
from bench.r1_server import Canned, R1Resource
from bench.upstream_server import BenchUpstream, ProfileSpec, build_site, parse_profile
from openclaw.testing import FakeReply

T = TypeVar("T")

PATH = "/v1/chat/completions"


class LoopTestCase(SynchronousTestCase):
    """A private asyncio loop with a Twisted reactor on top of it."""

    def setUp(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.reactor = AsyncioSelectorReactor(self.loop)
        self.ports: list[IListeningPort] = []
        self.addCleanup(self._close)

    def _close(self) -> None:
        for port in self.ports:
            d = port.stopListening()
            if isinstance(d, Deferred):
                self.loop.run_until_complete(d.asFuture(self.loop))
        self.loop.close()

    def listen(self, site: Any) -> int:
        """Serve ``site`` on a loopback port; its number."""
        port = self.reactor.listenTCP(0, site, interface="127.0.0.1")
        self.ports.append(port)
        return int(port.getHost().port)

    def drive(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the shared loop (bounded, so a bug cannot hang the suite)."""
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    def wait(self, d: Deferred[T]) -> T:
        """Wait for a Deferred fired by the servers."""
        return self.drive(_await(d.asFuture(self.loop)))

    def upstream(self, **profiles: ProfileSpec) -> tuple[int, BenchUpstream]:
        """The benchmark upstream on a port."""
        site, fake = build_site(self.reactor, FakeReply.sized(4, 10), profiles)
        return self.listen(site), fake


async def _await(future: asyncio.Future[T]) -> T:
    return await future


def _stream_request(port: int, model: str, text: str = "hello") -> bytes:
    return sse_client.build_request(
        "127.0.0.1",
        port,
        PATH,
        {"model": model, "stream": True, "messages": [{"role": "user", "content": text}]},
    )


class SSEClientTests(LoopTestCase):
    def test_counts_every_event_of_a_chunked_stream(self) -> None:
        """A 256-chunk stream through Twisted's chunked encoding: every event
        counted, [DONE] seen, the stream complete, first content timed."""
        port, fake = self.upstream(s2=ProfileSpec(256, 20))
        result = self.drive(
            sse_client.open_stream("127.0.0.1", port, _stream_request(port, "s2"), 0)
        )
        self.assertEqual(result.status, 200)
        self.assertTrue(result.complete)
        self.assertTrue(result.done)
        # role chunk + 256 content chunks + the finish chunk ([DONE] not counted)
        self.assertEqual(result.events, 258)
        self.assertIsNone(result.error)
        assert result.ttft is not None and result.ttfb is not None
        self.assertGreaterEqual(result.ttft, result.ttfb)
        self.assertEqual(fake.stats()["requests"], 1)

    def test_many_streams_and_summary(self) -> None:
        """run_streams starts exactly ``count`` streams over its workers and
        the summary adds them up."""
        port, _fake = self.upstream(s=ProfileSpec(10, 5))
        results, wall = self.drive(
            sse_client.run_streams(
                "127.0.0.1", port, lambda i: _stream_request(port, "s"), count=7, concurrency=3
            )
        )
        summary = sse_client.summarize(results, wall)
        self.assertEqual(summary["streams"], 7)
        self.assertEqual(summary["complete"], 7)
        self.assertEqual(summary["events"], 7 * 12)
        self.assertEqual(summary["errors"], {})
        self.assertIsNotNone(summary["ttfb_p50_ms"])

    def test_leaving_after_first_content_closes_the_upstream_stream(self) -> None:
        """A client that leaves after the first content event: the upstream
        sees its stream closed early and records when, under the marker."""
        port, fake = self.upstream(d=ProfileSpec(50, 20, 0.01, 0.0))
        options = sse_client.StreamOptions(leave_after_content=1)
        request = _stream_request(port, "d", "bench-id-42 hi")
        result = self.drive(sse_client.open_stream("127.0.0.1", port, request, 42, options))
        self.assertIsNotNone(result.left_at)
        self.assertFalse(result.complete)
        self.assertIsNone(result.error)
        self.wait(fake.wait_for_client_closes(1))
        stats = fake.stats()
        self.assertEqual(stats["client_closed"], 1)
        self.assertEqual(list(stats["close_times"]), ["42"])
        assert result.left_at is not None
        self.assertGreaterEqual(stats["close_times"]["42"], result.left_at)

    def test_slow_reader_backpressure_pauses_the_upstream(self) -> None:
        """A paced reader with a small receive buffer reads at about its rate,
        and the upstream is paused by the backpressure instead of sending it all."""
        port, fake = self.upstream(big=ProfileSpec(4096, 4096))  # 16 MB
        rate = 2_000_000
        options = sse_client.StreamOptions(read_rate=rate, leave_after_seconds=0.5, rcvbuf=65536)
        result = self.drive(
            sse_client.open_stream("127.0.0.1", port, _stream_request(port, "big"), 0, options)
        )
        self.assertIsNotNone(result.left_at)
        assert result.ended is not None
        # The rate over the time it actually read, plus one read of slack.
        self.assertLessEqual(result.body_bytes, rate * (result.ended - result.started) + 512 * 1024)
        self.assertGreater(result.body_bytes, 0)
        self.wait(fake.wait_for_pause(1))
        # Socket buffers hold a few MB at most: far from the whole stream.
        self.assertLess(fake.stats()["bytes_written"], 12 * 1024 * 1024)

    def test_content_length_response(self) -> None:
        """A non-streamed JSON answer (Content-Length) is read to its end."""
        port, _fake = self.upstream()
        request = sse_client.build_request("127.0.0.1", port, PATH, {"model": "x", "messages": []})
        result = self.drive(sse_client.open_stream("127.0.0.1", port, request, 0))
        self.assertTrue(result.complete)
        self.assertEqual(result.status, 200)
        self.assertGreater(result.body_bytes, 100)

    def test_refused_connection_is_an_error_not_an_exception(self) -> None:
        """Nothing listening: the result carries a connect error."""
        port, _fake = self.upstream()
        d = self.ports.pop().stopListening()
        if isinstance(d, Deferred):
            self.wait(d)
        result = self.drive(sse_client.open_stream("127.0.0.1", port, b"", 0, timeout=5))
        assert result.error is not None
        self.assertTrue(result.error.startswith("connect"))

    def test_percentile(self) -> None:
        """Nearest-rank percentiles; None for no values."""
        values = [float(v) for v in range(1, 101)]
        self.assertEqual(sse_client.percentile(values, 50), 50.0)
        self.assertEqual(sse_client.percentile(values, 99), 99.0)
        self.assertEqual(sse_client.percentile(values, 100), 100.0)
        self.assertEqual(sse_client.percentile([3.0], 99), 3.0)
        self.assertIsNone(sse_client.percentile([], 50))


class UpstreamAndR1Tests(LoopTestCase):
    def test_profiles_pick_the_reply_by_model(self) -> None:
        """``--profile`` replies are chosen by the request's model; others get the default."""
        name, spec = parse_profile("s7=64:20:0.5:2")
        self.assertEqual((name, spec), ("s7", ProfileSpec(64, 20, 0.5, 2.0)))
        port, fake = self.upstream(s7=ProfileSpec(3, 5))
        picked = self.drive(
            sse_client.open_stream("127.0.0.1", port, _stream_request(port, "s7"), 0)
        )
        other = self.drive(
            sse_client.open_stream("127.0.0.1", port, _stream_request(port, "zz"), 1)
        )
        self.assertEqual(picked.events, 3 + 2)
        self.assertEqual(other.events, 4 + 2)
        self.assertEqual(fake.stats()["streams_started"], 2)
        self.assertEqual(fake.requests, [])  # bodies are not kept
        fake.reset()
        self.assertEqual(fake.stats()["requests"], 0)

    def test_bad_profile(self) -> None:
        """A malformed profile is refused with its text."""
        with self.assertRaises(ValueError):
            parse_profile("s1=8:20")

    def test_stats_endpoint(self) -> None:
        """GET /stats answers the counters; ?reset=1 zeroes them after reading."""
        port, _fake = self.upstream()
        self.drive(sse_client.open_stream("127.0.0.1", port, _stream_request(port, "x"), 0))

        def get(path: str) -> dict[str, Any]:
            raw = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            result = self.drive(sse_client.open_stream("127.0.0.1", port, raw, 0))
            self.assertEqual(result.status, 200)
            return {"bytes": result.body_bytes}

        self.assertGreater(get("/stats?reset=1")["bytes"], 20)
        self.assertEqual(_fake.stats()["requests"], 0)

    def test_r1_answers_json_and_sse(self) -> None:
        """R1 answers the canned completion, and streams the same frames the fake would."""
        canned = Canned.build("m", 8, 20)
        body = json.loads(canned.body)
        self.assertEqual(body["choices"][0]["message"]["content"], "abcdefghijklmnopqrst" * 8)
        port = self.listen(Site(R1Resource(canned, {"s2": Canned.build("s2", 256, 20)})))
        plain = sse_client.build_request("127.0.0.1", port, PATH, {"model": "m"})
        result = self.drive(sse_client.open_stream("127.0.0.1", port, plain, 0))
        self.assertEqual(result.body_bytes, len(canned.body))
        streamed = self.drive(
            sse_client.open_stream("127.0.0.1", port, _stream_request(port, "s2"), 1)
        )
        self.assertTrue(streamed.done and streamed.complete)
        self.assertEqual(streamed.events, 258)


class _AgentServer(WebSocketServerProtocol):
    """A stand-in for the gateway's WebSocket side: challenge, connect, agent."""

    events_per_run = 5

    def onOpen(self) -> None:
        self.sendMessage(
            b'{"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}}'
        )

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        frame = json.loads(payload)
        if frame["method"] == "connect":
            ok = frame["params"]["auth"]["token"] == "tok"
            res: dict[str, Any] = {"type": "res", "id": frame["id"], "ok": ok}
            if ok:
                res["payload"] = {"type": "hello-ok"}
            else:
                res["error"] = {"code": "INVALID_REQUEST", "message": "bad token"}
            self.sendMessage(json.dumps(res).encode())
            return
        run = frame["params"]["idempotencyKey"]
        ack = {"runId": run, "status": "accepted"}
        self.sendMessage(
            json.dumps({"type": "res", "id": frame["id"], "ok": True, "payload": ack}).encode()
        )
        # One big event (16-bit length) and a fragmented one, then small ones.
        self.sendMessage(
            json.dumps({"type": "event", "event": "agent", "payload": "x" * 70000}).encode()
        )
        self.sendMessage(
            json.dumps({"type": "event", "event": "agent", "payload": "y" * 300}).encode(),
            fragmentSize=64,
        )
        for i in range(self.events_per_run - 2):
            event = {"type": "event", "event": "chat", "payload": {"i": i}}
            self.sendMessage(json.dumps(event).encode())
        final = {"runId": run, "status": "ok", "result": {"payloads": [{"text": "hi"}]}}
        self.sendMessage(
            json.dumps({"type": "res", "id": frame["id"], "ok": True, "payload": final}).encode()
        )


class WSClientTests(LoopTestCase):
    def server(self) -> int:
        factory = WebSocketServerFactory(reactor=self.reactor)
        factory.protocol = _AgentServer
        return self.listen(factory)

    def test_agent_runs_complete_and_events_are_counted(self) -> None:
        """Three concurrent runs: each connects with the token, gets its final
        response, and counts every event (big and fragmented ones included)."""
        port = self.server()
        results, wall = self.drive(
            ws_client.run_agents("127.0.0.1", port, "tok", runs=3, agent_id="main", timeout=10)
        )
        summary = ws_client.summarize(results, wall)
        self.assertEqual(summary["complete"], 3, summary["errors"])
        self.assertEqual(summary["events"], 3 * _AgentServer.events_per_run)
        self.assertIsNotNone(summary["ack_p50_ms"])

    def test_wrong_token_is_reported(self) -> None:
        """A refused connect is an error naming the server's message."""
        port = self.server()
        results, _wall = self.drive(
            ws_client.run_agents("127.0.0.1", port, "nope", runs=1, agent_id="main", timeout=10)
        )
        self.assertFalse(results[0].ok)
        self.assertIn("bad token", results[0].error or "")

    def test_frame_codec_round_trip(self) -> None:
        """Masked client frames of each length class parse back to their payload."""
        reader = ws_client.FrameReader()
        for size in (0, 5, 125, 126, 65535, 65536):
            payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
            frame = ws_client.encode_frame(1, payload)
            # Fed in two pieces, split inside the header or the payload.
            cut = min(3, len(frame) - 1)
            self.assertEqual(reader.feed(frame[:cut]), [])
            self.assertEqual(reader.feed(frame[cut:]), [(1, payload)])


class ProcStatTests(SynchronousTestCase):
    def test_stat_line_with_parentheses_in_the_name(self) -> None:
        """utime + stime are found after the last ')' of the command name."""
        fields = ["S"] + ["0"] * 10 + ["150", "50"] + ["0"] * 30
        raw = b"42 (we (ird) name) " + " ".join(fields).encode()
        self.assertEqual(procstat.cpu_from_stat(raw, ticks=100), 2.0)

    def test_meter_sees_cpu_and_memory_of_a_process(self) -> None:
        """The meter reports the CPU this process burns and the memory it holds."""
        import os

        pid = os.getpid()
        meter = procstat.Meter({"self": pid}, interval=0.01).start()
        before = procstat.rss_kb(pid)
        start = procstat.cpu_seconds(pid)
        block = bytearray(32 * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        while procstat.cpu_seconds(pid) - start < 0.05:
            sum(range(10000))
        held = meter.sample_rss()["self"]
        usage = meter.stop()["self"]
        del block
        self.assertGreaterEqual(usage.cpu_s, 0.05)
        self.assertGreaterEqual(held - before, 24 * 1024)
        self.assertGreaterEqual(usage.peak_rss_kb, held)
        self.assertGreater(procstat.hwm_kb(pid), 0)
        self.assertEqual(procstat.total_cpu([usage, usage]), 2 * usage.cpu_s)


class DiskBudgetBenchTests(SynchronousTestCase):
    def test_both_passes_and_cleanup(self) -> None:
        """``python -m bench.disk_budget``: a measuring pass that deletes
        nothing, a pass that deletes half, one JSON line each; its directory
        is removed and ``--dir`` itself is left alone."""
        parent = Path(self.mktemp())
        parent.mkdir()
        (parent / "keep.txt").write_text("mine")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(disk_budget.main(["--files", "300", "--dir", str(parent)]), 0)
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        self.assertEqual([line["pass"] for line in lines], ["measure only", "delete half"])
        self.assertEqual([line["removed"] for line in lines], [0, 150])
        self.assertEqual([p.name for p in parent.iterdir()], ["keep.txt"])
