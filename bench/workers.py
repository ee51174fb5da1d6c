"""S1W: scenario S1 at c=16 against one gateway with 1 worker and one with 2.

Issue 12's target: on this 2-core machine, ``--workers 2`` serves at least
1.6x the chat completions per second of one process. Both gateways run side
by side for the whole measurement (each with its own state directory) and the
rounds alternate between them, so drift in the machine's load hits both alike.
The gateway's CPU is the sum of the supervisor and its workers.

Several workers refuse the file store unless ``OPENCLAW_WORKERS_UNSAFE_FILE_STORE=1``
(set here: S1's stateless requests do not depend on shared sessions).

Run alone: ``python -m bench.workers [--rounds N] [--seconds S]``; within
``make bench`` it is the ``S1W`` scenario (``python -m bench.run --only S1W``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from bench import scenarios as sc

SCENARIO = "S1W"
CONNECTIONS = 16
TARGET_RATIO = 1.6
WORKER_COUNTS = (1, 2)


def variant(workers: int) -> str:
    """The record variant of a worker count."""
    return f"c={CONNECTIONS} {workers} worker{'s' if workers > 1 else ''}"


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def start_gateways(
    bench: sc.Bench, workdir: str, profiles: Sequence[str], log: Callable[[str], None]
) -> list[Any]:
    """One gateway per worker count, ready; their pids registered in ``bench.pids``."""
    from bench import run as bench_run

    config = os.path.join(workdir, "workers-gateway.json5")
    bench_run.gateway_config(bench.upstream_port, list(profiles), config)
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    procs = []
    for workers in WORKER_COUNTS:
        state = os.path.join(workdir, f"workers-{workers}-state")
        os.makedirs(state, exist_ok=True)
        env = dict(os.environ, OPENCLAW_STATE_DIR=state, HOME=state)
        env["OPENCLAW_WORKERS_UNSAFE_FILE_STORE"] = "1"
        env.pop("OPENCLAW_GATEWAY_TOKEN", None)
        cmd = [twistd, "-n", "--pidfile=", "openclaw", "--config", config]
        cmd += ["--listen", "tcp:0:interface=127.0.0.1", "--workers", str(workers)]
        proc = bench_run.start_process(f"gateway-w{workers}", cmd, workdir, env=env, timeout=60)
        procs.append(proc)
        assert proc.port is not None
        if not bench_run.wait_ready(proc.port):
            raise RuntimeError(f"{workers}-worker gateway: /readyz never answered 200")
        names = [f"gw{workers}"]
        bench.pids[names[0]] = proc.pid
        if workers > 1:
            deadline = time.monotonic() + 30
            while len(_children(proc.pid)) < workers and time.monotonic() < deadline:
                time.sleep(0.05)
            for index, pid in enumerate(_children(proc.pid), 1):
                names.append(f"gw{workers}.w{index}")
                bench.pids[names[-1]] = pid
        bench.targets[f"W{workers}"] = sc.Target(
            f"W{workers}",
            proc.port,
            names[0],
            (*names, "upstream"),
            agent_models=True,
            token=bench_run.TOKEN,
        )
        log(f"{workers}-worker gateway on port {proc.port}: pids {[bench.pids[n] for n in names]}")
    return procs


def measure(bench: sc.Bench, rounds: int, log: Callable[[str], None]) -> list[sc.Record]:
    """``rounds`` alternating wrk runs of S1 at c=16 against each gateway."""
    records: list[sc.Record] = []
    targets = [bench.targets[f"W{w}"] for w in WORKER_COUNTS]
    for target in targets:  # warm both up (imports, pools) before measuring
        bench.run_wrk(target, "s1", CONNECTIONS, bench.durations.warmup_s)
    for round_no in range(1, rounds + 1):
        for workers, target in zip(WORKER_COUNTS, targets, strict=True):
            log(f"round {round_no}: {SCENARIO} {variant(workers)}")
            record = sc.Record(SCENARIO, variant(workers), "GW", round_no)
            data, usage = bench.run_wrk(target, "s1", CONNECTIONS, bench.durations.wrk_s)
            ok = data["ok_requests"]
            gateway_cpu = sum(u.cpu_s for name, u in usage.items() if name.startswith("gw"))
            per_worker = [u.cpu_s for name, u in usage.items() if ".w" in name]
            record.usage = usage
            record.metrics = {
                "rps": data["rps"],
                "p50_ms": data["p50_us"] / 1000.0,
                "p99_ms": data["p99_us"] / 1000.0,
                "cpu_ms_per_req": 1000.0 * gateway_cpu / ok if ok else None,
                "gateway_cpu_s": gateway_cpu,
                # The load generator and the fake upstream share the same cores:
                # with them, 2 workers can reach at most 2g/(g+u+w) times 1 worker.
                "upstream_cpu_ms_per_req": _per_req(usage, "upstream", ok),
                "wrk_cpu_ms_per_req": _per_req(usage, "wrk", ok),
                "errors": data["errors"],
            }
            if per_worker:
                # The parent serves nothing; it forwards the workers' log lines.
                record.metrics["supervisor_cpu_ms_per_req"] = _per_req(usage, target.server, ok)
            if per_worker and sum(per_worker):
                # 1/N when the kernel spreads the load evenly over the N workers.
                record.metrics["busiest_worker_cpu_share"] = max(per_worker) / sum(per_worker)
            records.append(record)
    return records


def _per_req(usage: dict[str, Any], name: str, ok: int) -> float | None:
    return 1000.0 * usage[name].cpu_s / ok if ok and name in usage else None


def ceiling(metrics: dict[str, Any], cores: int) -> float | None:
    """The best ratio these cores allow: all of them shared by gateway, upstream, wrk."""
    try:
        g = metrics["cpu_ms_per_req"]["mean"]
        others = metrics["upstream_cpu_ms_per_req"]["mean"] + metrics["wrk_cpu_ms_per_req"]["mean"]
    except (KeyError, TypeError):
        return None
    return min(float(max(WORKER_COUNTS)), cores * g / (g + others)) if g else None


def s1w(
    bench: sc.Bench,
    workdir: str,
    profiles: Sequence[str],
    rounds: int,
    log: Callable[[str], None],
) -> list[sc.Record]:
    """The whole scenario: start both gateways, measure, stop them."""
    from bench import run as bench_run

    if bench.wrk is None:
        why = f"not run: {bench.wrk_missing}"
        return [sc.Record(SCENARIO, variant(w), "GW", 1, not_run=why) for w in WORKER_COUNTS]
    procs: list[Any] = []
    try:
        procs = start_gateways(bench, workdir, profiles, log)
        return measure(bench, rounds, log)
    except Exception as e:
        log(f"{SCENARIO} failed: {e!r}")
        why = f"failed: {e!r}"[:300]
        return [sc.Record(SCENARIO, variant(w), "GW", 1, not_run=why) for w in WORKER_COUNTS]
    finally:
        for proc in reversed(procs):
            bench_run.stop_process(proc)


def ratio(rows: Sequence[dict[str, Any]]) -> float | None:
    """Mean req/s with 2 workers over the mean with 1 (from ``bench.run.summarize`` rows)."""
    means = {}
    for row in rows:
        if row["scenario"] == SCENARIO and not row["not_run"] and "rps" in row["metrics"]:
            means[row["variant"]] = row["metrics"]["rps"]["mean"]
    one, two = means.get(variant(1)), means.get(variant(2))
    return two / one if one and two else None


def evaluate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue-12 target, in ``bench.run.evaluate``'s shape."""
    value = ratio(rows)
    if value is None:
        verdict = "not run"
    elif value >= TARGET_RATIO:
        verdict = "met"
    else:
        verdict = f"missed by {TARGET_RATIO - value:.2f}x"
    return [
        {
            "target": f"S1 c={CONNECTIONS}: 2 workers >= {TARGET_RATIO}x the req/s of 1",
            "value": value,
            "limit": TARGET_RATIO,
            "unit": "x",
            "verdict": verdict,
        }
    ]


def main(argv: list[str] | None = None) -> int:
    """Run S1W alone (upstream + two gateways + wrk) and print the figures."""
    from bench import run as bench_run
    from bench.wrk import find_wrk

    parser = argparse.ArgumentParser(description="S1 at c=16 with 1 and 2 gateway workers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="each wrk run")
    args = parser.parse_args(argv)
    durations = attrs.evolve(sc.Durations(), wrk_s=args.seconds)
    workdir = tempfile.mkdtemp(prefix="openclaw-bench-workers-")
    wrk = find_wrk()

    def log(message: str) -> None:
        sys.stderr.write(f"[bench.workers] {message}\n")
        sys.stderr.flush()

    profiles = {"s1": durations.profiles()["s1"]}
    profile_args = [f"--profile={n}={c}:{b}:{d}:{f}" for n, (c, b, d, f) in profiles.items()]
    upstream = bench_run.start_process(
        "upstream",
        [sys.executable, "-m", "bench.upstream_server", "--port", "0", *profile_args],
        workdir,
    )
    try:
        assert upstream.port is not None
        bench = sc.Bench(
            pids={"upstream": upstream.pid},
            targets={},
            upstream_port=upstream.port,
            durations=durations,
            wrk=wrk,
            wrk_missing=None if wrk else "wrk is not installed",
            workdir=workdir,
            log=log,
        )
        loadavg = os.getloadavg()[0]
        records = s1w(bench, workdir, list(profiles), args.rounds, log)
    finally:
        bench_run.stop_process(upstream)
        shutil.rmtree(workdir, ignore_errors=True)
    rows = bench_run.summarize(records)
    for row in rows:
        m = row["metrics"]
        if row["not_run"]:
            print(f"{row['variant']}: {row['not_run']}")
            continue
        print(
            f"{row['variant']}: {m['rps']['mean']:.0f} req/s (±{m['rps']['spread'] * 50:.0f}%),"
            f" p50 {m['p50_ms']['mean']:.1f} ms, gateway CPU {m['cpu_ms_per_req']['mean']:.2f}"
            " ms/req"
            + (
                f", busiest worker {m['busiest_worker_cpu_share']['mean']:.0%} of workers' CPU"
                f", supervisor {m['supervisor_cpu_ms_per_req']['mean']:.2f} ms/req"
                if "busiest_worker_cpu_share" in m
                else ""
            )
        )
    for row in rows:
        if row["variant"] == variant(1) and not row["not_run"]:
            m = row["metrics"]
            print(
                f"CPU per request with 1 worker: gateway {m['cpu_ms_per_req']['mean']:.2f} ms,"
                f" upstream {m['upstream_cpu_ms_per_req']['mean']:.2f} ms,"
                f" wrk {m['wrk_cpu_ms_per_req']['mean']:.2f} ms; on {os.cpu_count()} cores"
                f" the best possible ratio is {ceiling(m, os.cpu_count() or 1) or 0:.2f}x"
            )
    [verdict] = evaluate(rows)
    print(f"{verdict['target']}: {verdict['value']} ({verdict['verdict']})")
    print(json.dumps({"loadavg_at_start": loadavg, "cpus": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
