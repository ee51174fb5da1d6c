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

from bench import redis_bench, tool_turn
from bench import scenarios as sc
from bench.report import (
    ORDER,
    TABLE,
    TARGET_ORDER,
    evaluate,
    fmt,
    summarize,
    table,
    targets_table,
)
from bench.wrk import find_wrk

# bench/tool_turn.py (issue 11): a tool-using turn's gateway CPU next to a plain turn's.
TABLE.setdefault(tool_turn.SCENARIO, tool_turn.TABLE_ROWS)
if tool_turn.SCENARIO not in ORDER:
    ORDER.append(tool_turn.SCENARIO)
# bench/redis_bench.py (issue 12): S8 on the file store and on the Redis store.
TABLE.setdefault(redis_bench.SCENARIO, redis_bench.TABLE_ROWS)
if redis_bench.SCENARIO not in ORDER:
    ORDER.insert(ORDER.index("S8") + 1 if "S8" in ORDER else len(ORDER), redis_bench.SCENARIO)

# The report's names are re-exported: tests and bench.workers use them from here.
__all__ = [
    "ORDER",
    "TABLE",
    "TARGET_ORDER",
    "evaluate",
    "fmt",
    "gateway_config",
    "main",
    "summarize",
    "table",
    "targets_table",
]

TOKEN = "bench-token-0123456789abcdef"
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)(?: pid (\d+))?")
_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(_HERE)


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
            # Every benchmark client connects from one loopback address (S3: 1000
            # streams at once): no per-address connection cap, and no share of
            # gateway.maxConnections (1024) kept for other addresses (by default
            # the last 64 slots are, so one address gets at most 960).
            "http": {
                "endpoints": {"chatCompletions": {"enabled": True}},
                "maxConnectionsPerAddress": 0,
                "reservedConnections": 0,
            },
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
            # Measure the gateway, not OpenClaw's default run cap (8 on 2 CPUs).
            "defaults": {"maxConcurrent": 4096},
            "list": [
                {"id": p, "default": i == 0, "model": f"fake/{p}"} for i, p in enumerate(profiles)
            ],
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
        if not only or redis_bench.SCENARIO in only:
            records += redis_bench.s8r(bench, workdir, list(profiles), args.rounds, log)
        if not only or "T1" in only:
            records += tool_turn.t1(workdir, args.rounds, log)
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
