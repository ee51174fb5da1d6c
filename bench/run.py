"""``make bench``: start everything, run S1-S8 twice, print the table, write JSON.

One run starts, all on 127.0.0.1: the fake upstream (``bench.upstream_server``,
one reply profile per scenario), R1 (``bench.r1_server``), the real
``twistd openclaw`` gateway with a config that points at the upstream (one
agent per profile), and the load generators (wrk for request/response,
``bench.sse_client`` and ``bench.ws_client`` for streams). R0 is the fake
upstream hit directly. Each figure is the mean of the rounds, with the spread
((max - min) / mean) and its ratio to R0 and R1; CPU seconds and RSS of every
process come from ``/proc``.

``python -m bench.run [--quick] [--rounds N] [--only S1,S2]``;
``BENCH_OPENCLAW=1`` adds the real OpenClaw gateway (see bench/openclaw_real.sh);
``BENCH_LITELLM=1`` adds the LiteLLM proxy to every round (see bench/litellm_bench.py);
``BENCH_PROFILE=/tmp/gw.prof`` runs the gateway under cProfile and saves the stats
there (read them with ``python -m bench.profile_top /tmp/gw.prof``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from bench import scenarios as sc
from bench.wrk import find_wrk

TOKEN = "bench-token-0123456789abcdef"
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)(?: pid (\d+))?")
_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(_HERE)

#: Metrics shown in the table, per scenario: (key, label, better: "high"/"low"/None).
TABLE: dict[str, list[tuple[str, str]]] = {
    "S1": [
        ("rps", "req/s"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("cpu_ms_per_req", "server CPU ms/req"),
    ],
    # bench/workers.py: S1 at c=16 with 1 and 2 gateway workers (issue 12).
    "S1W": [
        ("rps", "req/s"),
        ("cpu_ms_per_req", "server CPU ms/req"),
        ("busiest_worker_cpu_share", "busiest worker's CPU share"),
    ],
    "S8": [
        ("rps", "req/s"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("cpu_ms_per_req", "server CPU ms/req"),
    ],
    "S2": [
        ("chunks_per_s", "chunks/s"),
        ("ttfb_p50_ms", "TTFB p50 ms"),
        ("ttft_p50_ms", "first content p50 ms"),
        ("cpu_us_per_chunk", "server CPU us/chunk"),
    ],
    "S3": [
        ("complete", "streams complete"),
        ("rss_kb_per_stream", "RSS KB/open stream"),
        ("peak_rss_mb", "peak RSS MB"),
        ("ttft_p99_ms", "first content p99 ms"),
    ],
    "S4": [
        ("rss_growth_kb", "RSS growth KB"),
        ("client_read_mb", "client read MB"),
        ("upstream_sent_mb", "upstream sent MB"),
        ("upstream_pauses", "upstream paused"),
    ],
    "S5": [
        ("upstream_closed", "upstream closed"),
        ("still_open", "upstream still open"),
        ("close_p50_ms", "close p50 ms"),
        ("close_p99_ms", "close p99 ms"),
    ],
    "S6": [("rss_mb", "RSS MB")],
    "S7": [
        ("complete", "runs complete"),
        ("events_per_s", "events/s"),
        ("run_p50_ms", "run p50 ms"),
        ("cpu_ms_per_run", "server CPU ms/run"),
    ],
}
ORDER = ["S1", "S1W", "S8", "S2", "S3", "S4", "S5", "S6", "S7"]
TARGET_ORDER = ["R0", "R1", "GW", "LL", "OC"]


@attrs.define
class Proc:
    """A process the benchmark started (and will stop)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: str
    port: int | None = None
    #: The process doing the work, when a wrapper script started it.
    server_pid: int | None = None

    @property
    def pid(self) -> int:
        """The pid to meter: the server's own, else the one we started."""
        return self.server_pid or self.popen.pid

    def log_tail(self, lines: int = 15) -> str:
        """The end of its log, for error messages."""
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def start_process(
    name: str,
    cmd: Sequence[str],
    workdir: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Proc:
    """Start ``cmd`` with its output in a log file; wait for ``listening on 127.0.0.1:<port>``."""
    log_path = os.path.join(workdir, f"{name}.log")
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    proc = Proc(name, popen, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path, errors="replace") as f:
            found = _LISTENING.search(f.read())
        if found:
            proc.port = int(found.group(1))
            if found.group(2):
                proc.server_pid = int(found.group(2))
            return proc
        if popen.poll() is not None:
            break
        time.sleep(0.05)
    tail = proc.log_tail()
    stop_process(proc)
    last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
    raise RuntimeError(f"{name} did not start: {last}")


def stop_process(proc: Proc) -> None:
    """SIGTERM, then SIGKILL after 10 s; only the process we started."""
    if proc.popen.poll() is not None:
        return
    proc.popen.send_signal(signal.SIGTERM)
    try:
        proc.popen.wait(10)
    except subprocess.TimeoutExpired:
        proc.popen.kill()
        proc.popen.wait(5)


def gateway_config(
    upstream_port: int, profiles: Sequence[str], path: str, fsync: str | None = None
) -> None:
    """The gateway's config: one fake provider, one agent per profile, token auth."""
    config: dict[str, Any] = {
        "gateway": {
            "bind": "loopback",
            "auth": {"mode": "token", "token": TOKEN},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
            # S7 opens 100 WebSocket connections from one loopback address at
            # once; the default pre-auth cap (16 per address) is for hostile clients.
            "ws": {"maxPreauthSocketsPerAddress": 256},
        },
        "models": {
            "providers": {
                "fake": {
                    "api": "openai-completions",
                    "baseUrl": f"http://127.0.0.1:{upstream_port}/v1",
                    "models": [{"id": p} for p in profiles],
                }
            }
        },
        "agents": {
            "list": [
                {"id": p, "default": i == 0, "model": f"fake/{p}"} for i, p in enumerate(profiles)
            ]
        },
    }
    if fsync is not None:
        config["session"] = {"fsync": fsync}
    with open(path, "w") as f:
        json.dump(config, f, indent=2)


def _http(
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    timeout: float = 30.0,
    token: str = TOKEN,
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 0, str(e).encode("utf-8")


def wait_ready(port: int, timeout: float = 30.0) -> bool:
    """Poll ``/readyz`` until 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _ = _http("GET", f"http://127.0.0.1:{port}/readyz", timeout=2)
        if status == 200:
            return True
        time.sleep(0.1)
    return False


def probe_gateway(bench: sc.Bench, port: int) -> dict[str, str]:
    """Which gateway features work now: missing ones with why."""
    missing: dict[str, str] = {}
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    msg = [{"role": "user", "content": "probe"}]
    status, body = _http("POST", url, {"model": "openclaw/s1", "messages": msg})
    if status != 200 or b'"choices"' not in body:
        missing["chat"] = f"POST /v1/chat/completions answered {status}: {body[:160]!r}"
    status, body = _http("POST", url, {"model": "openclaw/s1", "stream": True, "messages": msg})
    if status != 200 or b"data: [DONE]" not in body:
        missing["stream"] = f"streaming chat completion answered {status}: {body[:160]!r}"
    proc = subprocess.run(
        [
            bench.python,
            "-m",
            "bench.ws_client",
            "--port",
            str(port),
            "--token",
            TOKEN,
            "--runs",
            "1",
            "--agent",
            "s1",
            "--timeout",
            "15",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    try:
        ws = json.loads(proc.stdout.strip().splitlines()[-1])
        if ws["complete"] != 1:
            missing["ws"] = f"WebSocket agent run failed: {ws['errors']}"
    except (IndexError, ValueError, KeyError):
        missing["ws"] = f"WebSocket client failed: {proc.stderr.strip()[-200:]}"
    return missing


# -- aggregation and reporting ---------------------------------------------------------


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def summarize(records: Sequence[sc.Record]) -> list[dict[str, Any]]:
    """Per (scenario, variant, target): mean, min, max and spread of each metric."""
    groups: dict[tuple[str, str, str], list[sc.Record]] = {}
    for r in records:
        groups.setdefault((r.scenario, r.variant, r.target), []).append(r)
    rows = []
    for (scenario, variant, target), group in groups.items():
        run = [r for r in group if r.not_run is None]
        row: dict[str, Any] = {
            "scenario": scenario,
            "variant": variant,
            "target": target,
            "rounds": len(run),
            "not_run": None if run else group[0].not_run,
            "metrics": {},
            "cpu_s": {},
        }
        keys = {k for r in run for k, v in r.metrics.items() if isinstance(v, int | float)}
        for key in sorted(keys):
            values = [
                float(r.metrics[key])
                for r in run
                if isinstance(r.metrics.get(key), int | float)
                and not isinstance(r.metrics.get(key), bool)
            ]
            if not values:
                continue
            mean = _mean(values)
            spread = (max(values) - min(values)) / abs(mean) if mean else 0.0
            row["metrics"][key] = {
                "mean": mean,
                "min": min(values),
                "max": max(values),
                "spread": spread,
            }
        procs = {p for r in run for p in r.usage}
        for p in sorted(procs):
            row["cpu_s"][p] = _mean([r.usage[p].cpu_s for r in run if p in r.usage])
        rows.append(row)
    return rows


def _find(
    rows: Sequence[dict[str, Any]], scenario: str, variant: str | None, target: str
) -> dict[str, Any] | None:
    for row in rows:
        if (
            row["scenario"] == scenario
            and row["target"] == target
            and (variant is None or row["variant"] == variant)
        ):
            return row
    return None


def _metric(row: dict[str, Any] | None, key: str) -> float | None:
    if row is None or key not in row["metrics"]:
        return None
    value: float = row["metrics"][key]["mean"]
    return value


def fmt(value: float | None) -> str:
    """A figure with about three significant digits."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def evaluate(rows: Sequence[dict[str, Any]], durations: sc.Durations) -> list[dict[str, Any]]:
    """Each target of issue 6: the measured value, the limit, met or missed and by how much."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, le: bool, unit: str, why: str) -> None:
        if value is None:
            verdict = f"not run: {why}" if why else "not run"
        elif (value <= limit) if le else (value >= limit):
            verdict = "met"
        else:
            gap = value - limit if le else limit - value
            verdict = f"missed by {fmt(gap)}{unit}"
        out.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "unit": unit,
                "verdict": verdict,
            }
        )

    def why(scenario: str, variant: str | None = None) -> str:
        row = _find(rows, scenario, variant, "GW")
        return "" if row is None or row["not_run"] is None else str(row["not_run"])[9:]

    gw16 = _find(rows, "S1", "c=16", "GW")
    r116 = _find(rows, "S1", "c=16", "R1")
    g, r = _metric(gw16, "cpu_ms_per_req"), _metric(r116, "cpu_ms_per_req")
    add(
        "S1 gateway CPU/request <= 3x R1 at c=16",
        None if g is None or not r else g / r,
        3.0,
        True,
        "x",
        why("S1", "c=16"),
    )
    g, r = (
        _metric(_find(rows, "S1", "c=1", "GW"), "p50_ms"),
        _metric(_find(rows, "S1", "c=1", "R0"), "p50_ms"),
    )
    add(
        "S1 added p50 latency over R0 at c=1 <= 1 ms",
        None if g is None or r is None else g - r,
        1.0,
        True,
        " ms",
        why("S1", "c=1"),
    )
    g, r = (
        _metric(_find(rows, "S2", None, "GW"), "ttfb_p50_ms"),
        _metric(_find(rows, "S2", None, "R0"), "ttfb_p50_ms"),
    )
    add(
        "S2 added TTFB p50 over R0 <= 2 ms",
        None if g is None or r is None else g - r,
        2.0,
        True,
        " ms",
        why("S2"),
    )
    s3 = _find(rows, "S3", f"{durations.s3_streams} streams", "GW")
    complete = _metric(s3, "complete")
    add(
        f"S3 all {durations.s3_streams} streams complete",
        complete,
        float(durations.s3_streams),
        False,
        " streams",
        why("S3", f"{durations.s3_streams} streams"),
    )
    add(
        "S3 RSS per open stream <= 30 KB",
        _metric(s3, "rss_kb_per_stream"),
        30.0,
        True,
        " KB",
        why("S3", f"{durations.s3_streams} streams"),
    )
    add(
        "S4 RSS growth under a slow reader <= 2 MB",
        _metric(_find(rows, "S4", None, "GW"), "rss_growth_kb"),
        2048.0,
        True,
        " KB",
        why("S4"),
    )
    s5 = _find(rows, "S5", None, "GW")
    add(
        "S5 every upstream connection closed",
        _metric(s5, "upstream_closed"),
        float(durations.s5_streams),
        False,
        " connections",
        why("S5"),
    )
    add(
        "S5 upstream closed p99 <= 100 ms after the client left",
        _metric(s5, "close_p99_ms"),
        100.0,
        True,
        " ms",
        why("S5"),
    )
    add(
        "S6 RSS idle after start <= 60 MB",
        _metric(_find(rows, "S6", "after start", "GW"), "rss_mb"),
        60.0,
        True,
        " MB",
        why("S6", "after start"),
    )
    add(
        "S6 RSS after S1 <= 80 MB",
        _metric(_find(rows, "S6", "after S1", "GW"), "rss_mb"),
        80.0,
        True,
        " MB",
        why("S6", "after S1"),
    )
    add(
        f"S7 all {durations.s7_runs} WebSocket runs complete",
        _metric(_find(rows, "S7", None, "GW"), "complete"),
        float(durations.s7_runs),
        False,
        " runs",
        why("S7"),
    )
    s8 = _metric(_find(rows, "S8", None, "GW"), "rps")
    plain = _metric(gw16, "rps")
    add(
        "S8 throughput >= 80% of plain S1 (c=16)",
        None if s8 is None or not plain else 100.0 * s8 / plain,
        80.0,
        False,
        "%",
        why("S8"),
    )
    return out


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table (also readable in a terminal)."""
    present = [t for t in TARGET_ORDER if any(r["target"] == t for r in rows)]
    ratio_cols = [
        (t, ref)
        for t in ("GW", "LL", "OC")
        if t in present
        for ref in ("R0", "R1")
        if ref in present
    ]
    header = ["scenario", "metric", *present, *(f"{t}/{ref}" for t, ref in ratio_cols)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    seen: list[tuple[str, str]] = []
    for scenario in ORDER:
        for r in rows:
            pair = (r["scenario"], r["variant"])
            if r["scenario"] == scenario and pair not in seen:
                seen.append(pair)
    for scenario, variant in seen:
        by_target = {t: _find(rows, scenario, variant, t) for t in present}
        name = f"{scenario} {variant}"
        for key, label in TABLE.get(scenario, []):
            cells: list[str] = [name, label]
            for t in present:
                row = by_target[t]
                if row is None:
                    cells.append("")
                elif row["not_run"]:
                    cells.append("not run")
                elif key in row["metrics"]:
                    m = row["metrics"][key]
                    spread = f" ±{m['spread'] * 50:.0f}%" if row["rounds"] > 1 else ""
                    cells.append(fmt(m["mean"]) + spread)
                else:
                    cells.append("-")
            for t, ref in ratio_cols:
                a, b = _metric(by_target[t], key), _metric(by_target[ref], key)
                cells.append("" if a is None or not b else f"{a / b:.2f}")
            lines.append("| " + " | ".join(cells) + " |")
            name = ""
        # CPU seconds of each process (mean per round), one line per scenario.
        cpu_cells: list[str] = ["", "CPU s (server/upstream/load)"]
        for t in present:
            row = by_target[t]
            if row is None or row["not_run"] or not row["cpu_s"]:
                cpu_cells.append("")
                continue
            cpu = row["cpu_s"]
            server = {
                "R0": "upstream",
                "R1": "r1",
                "GW": "gateway",
                "LL": "litellm",
                "OC": "openclaw",
            }[t]
            parts = [fmt(cpu.get(server))]
            parts.append(fmt(cpu.get("upstream")) if server != "upstream" else "-")
            parts.append(fmt(cpu.get("wrk", cpu.get("client"))))
            cpu_cells.append("/".join(parts))
        cpu_cells += [""] * len(ratio_cols)
        if TABLE.get(scenario) and scenario != "S6":
            lines.append("| " + " | ".join(cpu_cells) + " |")
    notes = sorted(
        {
            f"{r['scenario']} {r['variant']} {r['target']}: {r['not_run']}"
            for r in rows
            if r["not_run"]
        }
    )
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


def targets_table(verdicts: Sequence[dict[str, Any]]) -> str:
    """The targets of issue 6 with the measured values."""
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    for v in verdicts:
        measured = "-" if v["value"] is None else f"{fmt(v['value'])}{v['unit']}"
        lines.append(f"| {v['target']} | {measured} | {v['verdict']} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_gb"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
        info["loadavg_at_start"] = os.getloadavg()[0]
    except OSError:
        pass
    try:
        import twisted

        info["twisted"] = twisted.__version__
    except ImportError:
        pass
    return info


# -- the run ------------------------------------------------------------------------------


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 unless the harness itself broke."""
    p = argparse.ArgumentParser(description="openclaw-twisted benchmark (issue 6)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="small sizes, to try the harness")
    p.add_argument("--only", default="", help="comma-separated scenarios, e.g. S1,S2")
    p.add_argument("--out", default=os.path.join(_HERE, "results"))
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    p.add_argument(
        "--fsync",
        choices=["turn", "never"],
        default=None,
        help="the gateway's session.fsync (default: the gateway's own default, turn)",
    )
    args = p.parse_args(argv)
    only = {s.strip().upper() for s in args.only.split(",") if s.strip()}
    durations = sc.Durations.quick() if args.quick else sc.Durations()
    openclaw = os.environ.get("BENCH_OPENCLAW") == "1"
    litellm = os.environ.get("BENCH_LITELLM") == "1"
    _raise_fd_limit()
    # SIGTERM (a CI timeout, kill) still stops every process started here.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="openclaw-bench-")

    def log(message: str) -> None:
        sys.stderr.write(f"[bench {time.monotonic() - started:6.1f}s] {message}\n")
        sys.stderr.flush()

    wrk = find_wrk()
    wrk_missing = None if wrk else "wrk is not installed (apt-get install wrk)"
    log(f"wrk: {wrk or wrk_missing}; work dir {workdir}")
    procs: list[Proc] = []
    records: list[sc.Record] = []
    try:
        profiles = durations.profiles()
        profile_args = [
            f"--profile={name}={c}:{b}:{d}:{f}" for name, (c, b, d, f) in profiles.items()
        ]
        upstream = start_process(
            "upstream",
            [sys.executable, "-m", "bench.upstream_server", "--port", "0", *profile_args],
            workdir,
        )
        procs.append(upstream)
        # R1 precomputes its answers: leave out S4's 20 MB (R1 does not run S4).
        r1_args = [a for a in profile_args if not a.startswith("--profile=s4=")]
        r1 = start_process(
            "r1", [sys.executable, "-m", "bench.r1_server", "--port", "0", *r1_args], workdir
        )
        procs.append(r1)
        assert upstream.port is not None and r1.port is not None
        pids = {"upstream": upstream.pid, "r1": r1.pid}
        targets = {
            "R0": sc.Target("R0", upstream.port, "upstream", ("upstream",)),
            "R1": sc.Target("R1", r1.port, "r1", ("r1",)),
        }
        bench = sc.Bench(
            pids=pids,
            targets=targets,
            upstream_port=upstream.port,
            durations=durations,
            wrk=wrk,
            wrk_missing=wrk_missing,
            workdir=workdir,
            log=log,
        )
        gw = _start_gateway(bench, workdir, list(profiles), log, args.fsync)
        if gw is not None:
            procs.append(gw)
        if litellm:
            from bench.litellm_bench import start_litellm

            ll = start_litellm(bench, workdir, log)
            if isinstance(ll, str):
                records.append(sc.Record("S1", "c=1", "LL", 1, not_run=f"not run: {ll}"))
            else:
                procs.append(ll)
        # S6 "after start": idle, before any request (the probes come next).
        time.sleep(1.0)
        if not only or "S6" in only:
            records += sc.s6(bench, list(targets.values()), 1, "after start")
        gw_target = targets["GW"]
        if not gw_target.missing:
            targets["GW"] = attrs.evolve(gw_target, missing=probe_gateway(bench, gw_target.port))
        log("targets: " + ", ".join(f"{t.name}:{t.port}" for t in targets.values()))
        for t in targets.values():
            for feature, why in t.missing.items():
                log(f"{t.name} {feature}: {why}")
        sc.warm_up(bench, [t for t in targets.values() if t.name != "OC"])
        records += _rounds(bench, args.rounds, only, log)
        if not only or "S1W" in only:
            from bench import workers as workers_bench

            records += workers_bench.s1w(bench, workdir, list(profiles), args.rounds, log)
        if openclaw:
            # Last, and stopped right after: it takes 1-2 GB and a core while idle.
            oc = _start_openclaw(bench, workdir, log)
            if isinstance(oc, Proc):
                procs.append(oc)
                records += _openclaw_rounds(bench, log)
                stop_process(oc)
            else:
                records.append(sc.Record("S1", "c=1", "OC", 1, not_run=f"not run: {oc}"))
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    rows = summarize(records)
    verdicts = evaluate(rows, durations)
    from bench import workers as workers_bench

    verdicts += workers_bench.evaluate(rows)
    elapsed = time.monotonic() - started
    text = table(rows)
    print("\n" + text + "\n")
    print(targets_table(verdicts) + "\n")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "when": stamp,
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "elapsed_s": elapsed,
        "machine": machine(),
        "durations": attrs.asdict(durations),
        "rounds": args.rounds,
        "records": [r.to_json() for r in records],
        "summary": rows,
        "targets": verdicts,
        "table": text,
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"bench-{stamp}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    shutil.copyfile(path, os.path.join(args.out, "latest.json"))
    log(f"done in {elapsed:.0f}s; results in {path}")
    return 0


def _start_gateway(
    bench: sc.Bench,
    workdir: str,
    profiles: list[str],
    log: Callable[[str], None],
    fsync: str | None = None,
) -> Proc | None:
    """Start ``twistd openclaw``; a gateway that cannot start is reported, not fatal."""
    state = os.path.join(workdir, "gw-state")
    os.makedirs(state)
    config = os.path.join(workdir, "gateway.json5")
    gateway_config(bench.upstream_port, profiles, config, fsync)
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    env = dict(os.environ, OPENCLAW_STATE_DIR=state, HOME=state)
    env.pop("OPENCLAW_GATEWAY_TOKEN", None)
    cmd = [twistd, "-n", "--pidfile="]
    profile = os.environ.get("BENCH_PROFILE")
    if profile:
        # twistd's own profiler: cProfile stats written when the gateway stops.
        cmd += [f"--profile={profile}", "--profiler=cprofile", "--savestats"]
        log(f"gateway runs under cProfile; stats in {profile} (figures are slower)")
    cmd += ["openclaw", "--config", config]
    cmd += ["--listen", "tcp:0:interface=127.0.0.1"]
    try:
        gw = start_process("gateway", cmd, workdir, env=env, timeout=60)
    except RuntimeError as e:
        log(str(e))
        reason = str(e)
        bench.targets["GW"] = sc.Target(
            "GW",
            0,
            "gateway",
            ("gateway", "upstream"),
            agent_models=True,
            token=TOKEN,
            missing={"start": reason, "chat": reason, "stream": reason, "ws": reason},
        )
        return None
    assert gw.port is not None
    bench.pids["gateway"] = gw.pid
    if not wait_ready(gw.port):
        log("gateway: /readyz did not answer 200 within 30 s")
    bench.targets["GW"] = sc.Target(
        "GW", gw.port, "gateway", ("gateway", "upstream"), agent_models=True, token=TOKEN
    )
    return gw


def _rounds(
    bench: sc.Bench, rounds: int, only: set[str], log: Callable[[str], None]
) -> list[sc.Record]:
    targets = [bench.targets[t] for t in ("R0", "R1", "GW", "LL") if t in bench.targets]
    r0_gw = [t for t in targets if t.name in ("R0", "GW", "LL")]
    gw = [t for t in targets if t.name == "GW"]
    records: list[sc.Record] = []

    def want(name: str) -> bool:
        return not only or name in only

    def run(name: str, round_no: int, fn: Callable[[int], list[sc.Record]]) -> None:
        if not want(name):
            return
        log(f"round {round_no}: {name}")
        try:
            got = fn(round_no)
        except Exception as e:
            log(f"{name} failed: {e!r}")
            got = [sc.Record(name, "", "GW", round_no, not_run=f"failed: {e!r}"[:300])]
        for r in got:
            if r.not_run:
                log(f"  {r.scenario} {r.variant} {r.target}: {r.not_run}")
        records.extend(got)

    for n in range(1, rounds + 1):
        run("S1", n, lambda k: sc.s1(bench, targets, k))
        if want("S1"):
            run("S6", n, lambda k: sc.s6(bench, targets, k, "after S1"))
        run("S8", n, lambda k: sc.s8(bench, gw, k))
        run("S2", n, lambda k: sc.s2(bench, targets, k))
        run("S3", n, lambda k: sc.s3(bench, r0_gw, k))
        run("S4", n, lambda k: sc.s4(bench, r0_gw, k))
        run("S5", n, lambda k: sc.s5(bench, r0_gw, k))
        run("S7", n, lambda k: sc.s7(bench, gw, k))
    return records


def _start_openclaw(bench: sc.Bench, workdir: str, log: Callable[[str], None]) -> Proc | str:
    """The real OpenClaw gateway (BENCH_OPENCLAW=1), installed by bench/openclaw_real.sh;
    or why it could not start."""
    script = os.path.join(_HERE, "openclaw_real.sh")
    state = os.path.join(workdir, "oc-state")
    os.makedirs(state)
    env = dict(os.environ, OC_STATE=state, OC_UPSTREAM_PORT=str(bench.upstream_port))
    env["OC_TOKEN"] = TOKEN
    try:
        oc = start_process("openclaw", ["bash", script, "run"], workdir, env=env, timeout=900)
    except RuntimeError as e:
        log(f"real OpenClaw: {e}")
        return f"real OpenClaw gateway: {e}"
    assert oc.port is not None
    # Its chat endpoint takes 20-30 s to answer the first time.
    status, body = 0, b""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status, body = _http(
            "POST",
            f"http://127.0.0.1:{oc.port}/v1/chat/completions",
            {"model": "openclaw/s1", "messages": [{"role": "user", "content": "probe"}]},
            timeout=120,
        )
        if status == 200:
            break
        time.sleep(2)
    missing = {} if status == 200 else {"chat": f"answered {status}: {body[:160]!r}"}
    bench.pids["openclaw"] = oc.pid
    bench.targets["OC"] = sc.Target(
        "OC",
        oc.port,
        "openclaw",
        ("openclaw", "upstream"),
        agent_models=True,
        token=TOKEN,
        missing=missing,
    )
    return oc


def _openclaw_rounds(bench: sc.Bench, log: Callable[[str], None]) -> list[sc.Record]:
    """S1 (c=1, c=8, 20 s), S3 (50 streams) and S6 against the real OpenClaw gateway,
    with R0, R1 and this gateway measured the same way beside it."""
    oc = bench.targets["OC"]
    records = sc.s6(bench, [oc], 1, "after start")
    d = bench.durations
    others = [bench.targets[t] for t in ("R0", "R1", "GW") if t in bench.targets]
    try:
        for connections in (1, 8):
            for target in [*others, oc]:
                # 20 s for OpenClaw (about 3 requests/s); the others settle sooner.
                seconds = 20.0 if target is oc else d.wrk_s
                bench.durations = attrs.evolve(d, wrk_s=seconds)
                log(f"OpenClaw comparison: S1 c={connections} {target.name}")
                record = sc.Record("S1", f"c={connections}", target.name, 1)
                if connections == 1 and target is not oc:
                    continue  # already measured in the rounds
                record.not_run = sc._missing(target, "chat") or (
                    f"not run: {bench.wrk_missing}" if bench.wrk is None else None
                )
                if record.not_run is None:
                    sc._wrk_record(bench, record, target, "s1", connections, None)
                records.append(record)
        bench.durations = d
        records += sc.s6(bench, [oc], 1, "after S1")
        bench.durations = attrs.evolve(d, s3_streams=50)
        log("OpenClaw comparison: S3 50 streams")
        records += sc.s3(bench, [t for t in [*others, oc] if t.name != "R1"], 1)
    finally:
        bench.durations = d
    return records


if __name__ == "__main__":
    raise SystemExit(main())
