"""The scenarios S1-S8 of issue 6 and the targets they are judged by.

Each scenario function runs one round against the targets that can take it
and returns :class:`Record` values: the figures, plus the CPU seconds and RSS
of every process involved over that run (the machine is shared and noisy, so
CPU per request is the figure that travels). A target that cannot run a
scenario (a gateway feature still missing) gets a record that says
``not run: <why>`` instead of failing the benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from bench import wrk as wrk_mod
from bench.procstat import Meter, Usage, die_with_parent, rss_kb
from bench.sse_client import percentile

#: Upstream replies by model name: (chunks, bytes per chunk, chunk delay, first-token delay).
Profile = tuple[int, int, float, float]


@attrs.frozen
class Durations:
    """How long and how big each scenario is (``quick`` is for trying the harness)."""

    wrk_s: float = 4.0
    s2_s: float = 4.0
    s3_streams: int = 1000
    s3_first_token_s: float = 10.0
    s4_read_s: float = 10.0
    s5_streams: int = 100
    s7_runs: int = 100
    s8_users: int = 1000
    warmup_s: float = 1.0

    @classmethod
    def quick(cls) -> Durations:
        """A run of a minute or so: every scenario, small."""
        return cls(
            wrk_s=1.0,
            s2_s=1.0,
            s3_streams=100,
            s3_first_token_s=2.0,
            s4_read_s=2.0,
            s5_streams=20,
            s7_runs=10,
            warmup_s=0.5,
        )

    def profiles(self) -> dict[str, Profile]:
        """The upstream's replies, one per scenario (the model names the agents use)."""
        return {
            "s1": (8, 20, 0.0, 0.0),
            "s2": (256, 20, 0.0, 0.0),
            "s3": (8, 20, 0.0, self.s3_first_token_s),
            # 20 MB: 5,120 chunks of 4,096 bytes, as fast as the reader takes them.
            "s4": (5120, 4096, 0.0, 0.0),
            # Long enough that every client has left before it would end.
            "s5": (400, 20, 0.05, 0.0),
            "s7": (64, 20, 0.0, 0.0),
        }


@attrs.frozen
class Target:
    """Something the load is pointed at: R0, R1 or the gateway (GW, OC)."""

    name: str
    port: int
    #: The process whose CPU per request is the figure (``upstream``, ``r1``, ``gateway``).
    server: str
    #: Every process that works for a request (the gateway needs the upstream).
    processes: tuple[str, ...]
    #: Model for a profile: the profile itself (R0, R1) or ``openclaw/<agent>``.
    agent_models: bool = False
    token: str | None = None
    #: Features that cannot run yet, with why: ``chat``, ``stream``, ``ws``.
    missing: Mapping[str, str] = attrs.field(factory=dict)

    def model(self, profile: str) -> str:
        """The ``model`` field that selects ``profile``."""
        return f"openclaw/{profile}" if self.agent_models else profile

    def headers(self) -> dict[str, str]:
        """Authorization, when the target wants it."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def url(self) -> str:
        """The chat completions URL."""
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"


@attrs.define
class Record:
    """One scenario run against one target in one round."""

    scenario: str
    variant: str
    target: str
    round: int
    metrics: dict[str, Any] = attrs.field(factory=dict)
    usage: dict[str, Usage] = attrs.field(factory=dict)
    not_run: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "scenario": self.scenario,
            "variant": self.variant,
            "target": self.target,
            "round": self.round,
            "metrics": self.metrics,
            "cpu_s": {k: round(u.cpu_s, 4) for k, u in self.usage.items()},
            "rss_kb": {k: u.rss_kb for k, u in self.usage.items()},
            "peak_rss_kb": {k: u.peak_rss_kb for k, u in self.usage.items()},
            "not_run": self.not_run,
        }


@attrs.define
class Bench:
    """What the scenarios need: processes, targets, tools, sizes."""

    pids: dict[str, int]
    targets: dict[str, Target]
    upstream_port: int
    durations: Durations
    wrk: str | None
    wrk_missing: str | None
    workdir: str
    python: str = sys.executable
    log: Callable[[str], None] = print
    state: dict[str, Any] = attrs.field(factory=dict)

    # -- helpers ----------------------------------------------------------------

    def upstream_stats(self, reset: bool = False) -> dict[str, Any]:
        """The upstream's counters (``/stats``)."""
        url = f"http://127.0.0.1:{self.upstream_port}/stats" + ("?reset=1" if reset else "")
        with urllib.request.urlopen(url, timeout=10) as response:
            data: dict[str, Any] = json.loads(response.read())
        return data

    def rss(self, name: str) -> int:
        """Current RSS of a process, KiB."""
        return rss_kb(self.pids[name])

    def run_wrk(
        self,
        target: Target,
        profile: str,
        connections: int,
        duration: float,
        *,
        users: int | None = None,
    ) -> tuple[dict[str, Any], dict[str, Usage]]:
        """One wrk run; its parsed output and the processes' usage."""
        assert self.wrk is not None
        body = {
            "model": target.model(profile),
            "messages": [{"role": "user", "content": "hello"}],
        }
        script = f"{self.workdir}/wrk-{target.name}-{profile}-{users or 0}.lua"
        with open(script, "w") as f:
            f.write(wrk_mod.lua_script(body, target.headers(), users=users))
        cmd = wrk_mod.wrk_command(
            self.wrk, target.url, script, connections=connections, duration=duration
        )
        began = time.monotonic()
        meter = Meter({name: self.pids[name] for name in target.processes}).start()
        proc = wrk_mod.start(cmd)
        meter.add("wrk", proc.pid)
        try:
            out, _ = proc.communicate(timeout=duration + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            meter.stop()
            raise
        usage = meter.stop()
        data = wrk_mod.parse_output(out)
        self.log(
            f"  wrk {target.name} {profile} c={connections}: {data['rps']:.0f} req/s,"
            f" {data['errors']} errors, {time.monotonic() - began:.1f}s"
        )
        return data, usage

    def run_client(
        self, module: str, args: Sequence[str], target: Target, timeout: float
    ) -> tuple[subprocess.Popen[str], Meter]:
        """Start a load client (``bench.sse_client`` / ``bench.ws_client``), metered."""
        meter = Meter({name: self.pids[name] for name in target.processes}).start()
        proc = subprocess.Popen(
            [self.python, "-m", module, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,
        )
        meter.add("client", proc.pid)
        return proc, meter

    @staticmethod
    def client_result(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
        """The client's JSON summary (raises with its stderr if it failed)."""
        out, err = proc.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"load client failed ({proc.returncode}): {err.strip()[-800:]}")
        data: dict[str, Any] = json.loads(lines[-1])
        return data

    def sse_args(self, target: Target, profile: str, *extra: str) -> list[str]:
        """Common ``bench.sse_client`` arguments for a target and profile."""
        args = ["--port", str(target.port), "--model", target.model(profile)]
        if target.token:
            args += ["--token", target.token]
        return [*args, *extra]


def _missing(target: Target, *features: str) -> str | None:
    for feature in features:
        if feature in target.missing:
            return f"not run: {target.missing[feature]}"
    return None


def _cpu_ms_per(usage: Mapping[str, Usage], name: str, count: float) -> float | None:
    if count <= 0 or name not in usage:
        return None
    return usage[name].cpu_s * 1000.0 / count


# -- S1 / S8: request/response with wrk ---------------------------------------------------


def s1(bench: Bench, targets: Sequence[Target], round_no: int) -> list[Record]:
    """Non-streaming, instant upstream, c=1/16/64."""
    records = []
    for connections in (1, 16, 64):
        for target in targets:
            record = Record("S1", f"c={connections}", target.name, round_no)
            record.not_run = _missing(target, "chat") or (
                f"not run: {bench.wrk_missing}" if bench.wrk is None else None
            )
            if record.not_run is None:
                _wrk_record(bench, record, target, "s1", connections, None)
            records.append(record)
    return records


def s8(bench: Bench, targets: Sequence[Target], round_no: int) -> list[Record]:
    """S1 at c=16 with ``user`` spread over 1,000 users (sessions and transcripts)."""
    records = []
    for target in targets:
        record = Record("S8", "c=16 users=1000", target.name, round_no)
        record.not_run = _missing(target, "chat") or (
            f"not run: {bench.wrk_missing}" if bench.wrk is None else None
        )
        if record.not_run is None:
            _wrk_record(bench, record, target, "s1", 16, bench.durations.s8_users)
        records.append(record)
    return records


def _wrk_record(
    bench: Bench,
    record: Record,
    target: Target,
    profile: str,
    connections: int,
    users: int | None,
) -> None:
    data, usage = bench.run_wrk(target, profile, connections, bench.durations.wrk_s, users=users)
    ok = data["ok_requests"]
    record.usage = usage
    record.metrics = {
        "rps": data["rps"],
        "p50_ms": data["p50_us"] / 1000.0,
        "p99_ms": data["p99_us"] / 1000.0,
        "cpu_ms_per_req": _cpu_ms_per(usage, target.server, ok),
        "requests": data["requests"],
        "errors": data["errors"],
        "timeouts": data["timeouts"],
        "rss_mb": usage[target.server].rss_kb / 1024.0,
    }
    if target.server != "upstream":
        record.metrics["upstream_cpu_ms_per_req"] = _cpu_ms_per(usage, "upstream", ok)
    record.metrics["wrk_cpu_ms_per_req"] = _cpu_ms_per(usage, "wrk", ok)


# -- S2: streaming throughput -------------------------------------------------------------


def s2(bench: Bench, targets: Sequence[Target], round_no: int) -> list[Record]:
    """Streaming, 256 chunks x 20 bytes, c=16: chunks/s and time to first byte."""
    records = []
    d = bench.durations
    for target in targets:
        record = Record("S2", "c=16 256x20B", target.name, round_no)
        record.not_run = _missing(target, "chat", "stream")
        if record.not_run is None:
            args = bench.sse_args(
                target, "s2", "--concurrency", "16", "--duration", str(d.s2_s), "--ramp", "0.002"
            )
            proc, meter = bench.run_client("bench.sse_client", args, target, d.s2_s + 60)
            data = bench.client_result(proc, d.s2_s + 60)
            usage = meter.stop()
            streams = data["complete"]
            record.usage = usage
            record.metrics = {
                "chunks_per_s": data["events_per_s"],
                "streams_per_s": streams / data["wall_s"] if data["wall_s"] else 0.0,
                "ttfb_p50_ms": data["ttfb_p50_ms"],
                "ttfb_p99_ms": data["ttfb_p99_ms"],
                "ttft_p50_ms": data["ttft_p50_ms"],
                "cpu_ms_per_stream": _cpu_ms_per(usage, target.server, streams),
                "cpu_us_per_chunk": (
                    None
                    if not data["events"]
                    else usage[target.server].cpu_s * 1e6 / data["events"]
                ),
                "streams": data["streams"],
                "complete": streams,
                "errors": data["errors"],
                "client_cpu_s": usage["client"].cpu_s if "client" in usage else None,
            }
        records.append(record)
    return records


# -- S3: 1,000 open streams ---------------------------------------------------------------


def s3(bench: Bench, targets: Sequence[Target], round_no: int) -> list[Record]:
    """1,000 SSE streams held open (first token after 10 s): all complete; RSS per stream."""
    records = []
    d = bench.durations
    for target in targets:
        record = Record("S3", f"{d.s3_streams} streams", target.name, round_no)
        record.not_run = _missing(target, "chat", "stream")
        if record.not_run is None:
            _s3_one(bench, target, record)
        records.append(record)
    return records


def _s3_one(bench: Bench, target: Target, record: Record) -> None:
    d = bench.durations
    bench.upstream_stats(reset=True)
    before = bench.rss(target.server)
    timeout = d.s3_first_token_s + 60
    # Spread the connects over ~1 s so the listen backlog is not the subject.
    ramp = min(0.001, 1.0 / max(1, d.s3_streams))
    args = bench.sse_args(
        target,
        "s3",
        "--count",
        str(d.s3_streams),
        "--concurrency",
        str(d.s3_streams),
        "--ramp",
        str(ramp),
        "--timeout",
        str(timeout),
    )
    started = time.monotonic()
    proc, meter = bench.run_client("bench.sse_client", args, target, timeout)
    # Wait until the upstream holds every stream (or the first tokens are near).
    open_streams = 0
    latest = started + d.s3_first_token_s * 0.85
    while time.monotonic() < latest:
        open_streams = bench.upstream_stats()["active_streams"]
        if open_streams >= d.s3_streams:
            break
        time.sleep(0.1)
    time.sleep(0.3)
    held = bench.rss(target.server)
    open_streams = bench.upstream_stats()["active_streams"]
    data = bench.client_result(proc, timeout)
    usage = meter.stop()
    record.usage = usage
    record.metrics = {
        "streams": data["streams"],
        "complete": data["complete"],
        "done": data["done"],
        "errors": data["errors"],
        "open_at_sample": open_streams,
        "rss_before_mb": before / 1024.0,
        "rss_open_mb": held / 1024.0,
        "rss_kb_per_stream": (held - before) / open_streams if open_streams else None,
        "peak_rss_mb": usage[target.server].peak_rss_kb / 1024.0,
        "ttft_p50_ms": data["ttft_p50_ms"],
        "ttft_p99_ms": data["ttft_p99_ms"],
        "cpu_ms_per_stream": _cpu_ms_per(usage, target.server, data["streams"]),
    }


# -- S4: slow reader ----------------------------------------------------------------------


def s4(bench: Bench, targets: Sequence[Target], round_no: int) -> list[Record]:
    """A 20 MB stream read at 64 KB/s for 10 s, then the client leaves: RSS growth."""
    records = []
    d = bench.durations
    for target in targets:
        record = Record("S4", f"20MB @64KB/s {d.s4_read_s:g}s", target.name, round_no)
        record.not_run = _missing(target, "chat", "stream")
        if record.not_run is None:
            bench.upstream_stats(reset=True)
            time.sleep(0.2)
            before = bench.rss(target.server)
            args = bench.sse_args(
                target,
                "s4",
                "--count",
                "1",
                "--read-rate",
                "65536",
                "--leave-after-seconds",
                str(d.s4_read_s),
                "--rcvbuf",
                "65536",
            )
            proc, meter = bench.run_client("bench.sse_client", args, target, d.s4_read_s + 30)
            data = bench.client_result(proc, d.s4_read_s + 30)
            time.sleep(0.5)
            usage = meter.stop()
            after = bench.rss(target.server)
            stats = bench.upstream_stats()
            record.usage = usage
            peak = usage[target.server].peak_rss_kb
            record.metrics = {
                "client_read_mb": data["body_bytes"] / 1e6,
                "upstream_sent_mb": stats["bytes_written"] / 1e6,
                "upstream_pauses": stats["pauses"],
                "upstream_closed": stats["client_closed"],
                "rss_before_mb": before / 1024.0,
                "rss_growth_kb": peak - before,
                "rss_after_leave_mb": after / 1024.0,
                "left": data["left"],
            }
        records.append(record)
    return records


# -- S5: clients that leave after the first chunk -----------------------------------------


def s5(bench: Bench, targets: Sequence[Target], round_no: int) -> list[Record]:
    """100 streams whose clients leave after the first chunk: upstream closed, how fast."""
    records = []
    d = bench.durations
    for target in targets:
        record = Record("S5", f"{d.s5_streams} streams", target.name, round_no)
        record.not_run = _missing(target, "chat", "stream")
        if record.not_run is None:
            _s5_one(bench, target, record)
        records.append(record)
    return records


def _s5_one(bench: Bench, target: Target, record: Record) -> None:
    d = bench.durations
    bench.upstream_stats(reset=True)
    args = bench.sse_args(
        target,
        "s5",
        "--count",
        str(d.s5_streams),
        "--concurrency",
        str(d.s5_streams),
        "--ramp",
        "0.005",
        "--leave-after-content",
        "1",
        "--marker",
        "--timeout",
        "30",
    )
    proc, meter = bench.run_client("bench.sse_client", args, target, 60)
    data = bench.client_result(proc, 60)
    # Give the closes time to arrive (the target is 100 ms; wait up to 2 s).
    deadline = time.monotonic() + 2.0
    stats = bench.upstream_stats()
    while time.monotonic() < deadline and stats["active_streams"] > 0:
        time.sleep(0.05)
        stats = bench.upstream_stats()
    usage = meter.stop()
    left: dict[str, float] = data["left_at"]
    closed: dict[str, float] = stats["close_times"]
    delays = sorted((closed[key] - when) * 1000.0 for key, when in left.items() if key in closed)
    record.usage = usage
    record.metrics = {
        "streams": data["streams"],
        "left": data["left"],
        "upstream_closed": len(closed),
        "still_open": stats["active_streams"],
        "close_p50_ms": percentile(delays, 50),
        "close_p99_ms": percentile(delays, 99),
        "close_max_ms": delays[-1] if delays else None,
    }


# -- S6: idle memory ----------------------------------------------------------------------


def s6(bench: Bench, targets: Sequence[Target], round_no: int, when: str) -> list[Record]:
    """RSS of each server process at rest (``when``: after start, after S1)."""
    records = []
    for target in targets:
        record = Record("S6", when, target.name, round_no)
        record.not_run = _missing(target, "start")
        if record.not_run is None:
            record.metrics = {"rss_mb": bench.rss(target.server) / 1024.0}
        records.append(record)
    return records


# -- S7: WebSocket agent runs -------------------------------------------------------------


def s7(bench: Bench, targets: Sequence[Target], round_no: int) -> list[Record]:
    """100 concurrent WebSocket ``agent`` runs streaming events: events/s, all complete."""
    records = []
    d = bench.durations
    for target in targets:
        record = Record("S7", f"{d.s7_runs} runs 64 chunks", target.name, round_no)
        record.not_run = _missing(target, "ws")
        if record.not_run is None:
            assert target.token is not None
            args = [
                "--port",
                str(target.port),
                "--token",
                target.token,
                "--runs",
                str(d.s7_runs),
                "--agent",
                "s7",
                "--ramp",
                "0.002",
            ]
            proc, meter = bench.run_client("bench.ws_client", args, target, 90)
            data = bench.client_result(proc, 90)
            usage = meter.stop()
            record.usage = usage
            record.metrics = {
                "runs": data["runs"],
                "complete": data["complete"],
                "errors": data["errors"],
                "events": data["events"],
                "events_per_s": data["events_per_s"],
                "run_p50_ms": data["run_p50_ms"],
                "run_p99_ms": data["run_p99_ms"],
                "cpu_ms_per_run": _cpu_ms_per(usage, target.server, data["complete"]),
                "client_cpu_s": usage["client"].cpu_s if "client" in usage else None,
            }
        records.append(record)
    return records


def warm_up(bench: Bench, targets: Sequence[Target]) -> None:
    """A short load on each target, so the first round does not pay for imports."""
    for target in targets:
        if "chat" in target.missing or bench.wrk is None:
            continue
        try:
            bench.run_wrk(target, "s1", 16, bench.durations.warmup_s)
        except Exception as e:  # a warm-up failure shows up again in S1
            bench.log(f"warm-up of {target.name} failed: {e}")
