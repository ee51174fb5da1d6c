"""S8R: scenario S8 (c=16, ``user`` spread over 1,000 users: sessions and
transcripts) against a gateway on the file store and one on the Redis store.

Both gateways run side by side for the whole measurement (each with its own
state directory; the Redis one on a ``redis-server`` started here on a unix
socket with ``appendonly yes`` / ``appendfsync everysec``, the durability
docs/deployment.md recommends) and the rounds alternate between them. The
Redis round trips per turn come from ``INFO commandstats`` deltas around each
round (every command Redis executed, divided by the requests answered).

Run alone: ``python -m bench.redis_bench [--rounds N] [--seconds S]``; within
``make bench`` it is the ``S8R`` scenario (``python -m bench.run --only S8R``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from bench import scenarios as sc

SCENARIO = "S8R"
CONNECTIONS = 16
USERS = 1000
STORES = ("file", "redis")

TABLE_ROWS = [
    ("rps", "req/s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("cpu_ms_per_req", "gateway CPU ms/req"),
    ("redis_cpu_ms_per_req", "redis-server CPU ms/req"),
    ("redis_round_trips_per_turn", "Redis round trips per turn"),
    ("redis_calls_per_turn", "Redis commands executed per turn"),
]

#: Commands the gateway sends itself (everything else in ``commandstats`` is
#: executed inside its Lua scripts): one of these is one round trip.
TOP_LEVEL = frozenset({"evalsha", "eval", "hgetall", "script", "ping"})


def variant(store: str) -> str:
    return f"c={CONNECTIONS} users={USERS} {store} store"


class RedisProcess:
    """A ``redis-server`` on a unix socket in ``directory``."""

    def __init__(self, directory: str) -> None:
        self.socket = os.path.join(directory, "redis.sock")
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                "--port", "0",
                "--unixsocket", self.socket,
                "--unixsocketperm", "700",
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--dir", directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.command("PING").startswith(b"+PONG"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def command(self, *args: str) -> bytes:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.socket)
            parts = [f"*{len(args)}\r\n".encode()]
            for arg in args:
                data = arg.encode()
                parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
            s.sendall(b"".join(parts))
            data = b""
            while True:
                chunk = s.recv(1 << 16)
                data += chunk
                if not chunk or _complete(data):
                    return data

    def calls(self) -> tuple[int, int]:
        """``(round trips, commands executed)`` so far, from ``INFO commandstats``
        (INFO itself excluded; commands run by a script count in the second)."""
        text = self.command("INFO", "commandstats").decode("utf-8", "replace")
        trips = total = 0
        for line in text.splitlines():
            if line.startswith("cmdstat_") and not line.startswith("cmdstat_info:"):
                name, _, rest = line[len("cmdstat_") :].partition(":")
                fields = dict(p.split("=", 1) for p in rest.split(","))
                total += int(fields["calls"])
                if name in TOP_LEVEL:
                    trips += int(fields["calls"])
        return trips, total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def _complete(data: bytes) -> bool:
    if data[:1] != b"$":
        return data.endswith(b"\r\n")
    header, _, rest = data.partition(b"\r\n")
    return len(rest) >= int(header[1:]) + 2


def start_gateways(
    bench: sc.Bench,
    workdir: str,
    profiles: Sequence[str],
    redis: RedisProcess,
    log: Callable[[str], None],
) -> list[Any]:
    """One gateway per store, ready; pids registered in ``bench.pids``."""
    from bench import run as bench_run

    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    procs = []
    for store in STORES:
        config = os.path.join(workdir, f"s8r-{store}.json")
        bench_run.gateway_config(bench.upstream_port, list(profiles), config)
        with open(config) as f:
            data = json.load(f)
        if store == "redis":
            data["session"] = {**data.get("session", {}), "store": "redis"}
            data["gateway"]["redis"] = {"url": redis.url}
        with open(config, "w") as f:
            json.dump(data, f)
        state = os.path.join(workdir, f"s8r-{store}-state")
        os.makedirs(state, exist_ok=True)
        env = dict(os.environ, OPENCLAW_STATE_DIR=state, HOME=state)
        env.pop("OPENCLAW_GATEWAY_TOKEN", None)
        cmd = [twistd, "-n", "--pidfile=", "openclaw", "--config", config]
        cmd += ["--listen", "tcp:0:interface=127.0.0.1"]
        proc = bench_run.start_process(f"gateway-{store}", cmd, workdir, env=env, timeout=60)
        procs.append(proc)
        assert proc.port is not None
        if not bench_run.wait_ready(proc.port):
            raise RuntimeError(f"{store}-store gateway: /readyz never answered 200")
        name = f"gw-{store}"
        bench.pids[name] = proc.pid
        servers = (name, "upstream", "redis") if store == "redis" else (name, "upstream")
        bench.targets[store] = sc.Target(
            store, proc.port, name, servers, agent_models=True, token=bench_run.TOKEN
        )
        log(f"{store}-store gateway on port {proc.port} (pid {proc.pid})")
    return procs


def measure(
    bench: sc.Bench, redis: RedisProcess, rounds: int, log: Callable[[str], None]
) -> list[sc.Record]:
    """``rounds`` alternating S8 runs against each gateway."""
    records: list[sc.Record] = []
    targets = [bench.targets[s] for s in STORES]
    for target in targets:  # warm up: imports, pools, the 1,000 sessions' first turns
        bench.run_wrk(target, "s1", CONNECTIONS, bench.durations.warmup_s, users=USERS)
    for round_no in range(1, rounds + 1):
        for store, target in zip(STORES, targets, strict=True):
            log(f"round {round_no}: {SCENARIO} {variant(store)}")
            record = sc.Record(SCENARIO, variant(store), "GW", round_no)
            calls_before = redis.calls()
            data, usage = bench.run_wrk(
                target, "s1", CONNECTIONS, bench.durations.wrk_s, users=USERS
            )
            trips_after, calls_after = redis.calls()
            trips, calls = trips_after - calls_before[0], calls_after - calls_before[1]
            ok = data["ok_requests"]
            record.usage = usage
            record.metrics = {
                "rps": data["rps"],
                "p50_ms": data["p50_us"] / 1000.0,
                "p99_ms": data["p99_us"] / 1000.0,
                "cpu_ms_per_req": _per_req(usage, target.server, ok),
                "errors": data["errors"],
            }
            if store == "redis":
                record.metrics["redis_cpu_ms_per_req"] = _per_req(usage, "redis", ok)
                record.metrics["redis_round_trips_per_turn"] = trips / ok if ok else None
                record.metrics["redis_calls_per_turn"] = calls / ok if ok else None
            records.append(record)
    return records


def _per_req(usage: dict[str, Any], name: str, ok: int) -> float | None:
    return 1000.0 * usage[name].cpu_s / ok if ok and name in usage else None


def s8r(
    bench: sc.Bench,
    workdir: str,
    profiles: Sequence[str],
    rounds: int,
    log: Callable[[str], None],
) -> list[sc.Record]:
    """The whole scenario: start Redis and both gateways, measure, stop them."""
    from bench import run as bench_run

    if bench.wrk is None:
        why = f"not run: {bench.wrk_missing}"
        return [sc.Record(SCENARIO, variant(s), "GW", 1, not_run=why) for s in STORES]
    if shutil.which("redis-server") is None and not os.path.exists("/usr/bin/redis-server"):
        why = "not run: redis-server is not installed (make deps)"
        return [sc.Record(SCENARIO, variant(s), "GW", 1, not_run=why) for s in STORES]
    procs: list[Any] = []
    redis: RedisProcess | None = None
    try:
        redis_dir = tempfile.mkdtemp(prefix="redis-", dir=workdir)
        redis = RedisProcess(redis_dir)
        bench.pids["redis"] = redis.process.pid
        procs = start_gateways(bench, workdir, profiles, redis, log)
        return measure(bench, redis, rounds, log)
    except Exception as e:
        log(f"{SCENARIO} failed: {e!r}")
        why = f"failed: {e!r}"[:300]
        return [sc.Record(SCENARIO, variant(s), "GW", 1, not_run=why) for s in STORES]
    finally:
        for proc in reversed(procs):
            bench_run.stop_process(proc)
        if redis is not None:
            redis.stop()


def main(argv: list[str] | None = None) -> int:
    """Run S8R alone (upstream + Redis + two gateways + wrk) and print the figures."""
    from bench import run as bench_run
    from bench.wrk import find_wrk

    parser = argparse.ArgumentParser(description="S8 (1,000 users) on the file and Redis stores")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="each wrk run")
    args = parser.parse_args(argv)
    durations = attrs.evolve(sc.Durations(), wrk_s=args.seconds)
    workdir = tempfile.mkdtemp(prefix="openclaw-bench-redis-")
    wrk = find_wrk()

    def log(message: str) -> None:
        sys.stderr.write(f"[bench.redis] {message}\n")
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
        records = s8r(bench, workdir, list(profiles), args.rounds, log)
    finally:
        bench_run.stop_process(upstream)
        shutil.rmtree(workdir, ignore_errors=True)
    rows = bench_run.summarize(records)
    for row in rows:
        m = row["metrics"]
        if row["not_run"]:
            print(f"{row['variant']}: {row['not_run']}")
            continue
        line = (
            f"{row['variant']}: {m['rps']['mean']:.0f} req/s (±{m['rps']['spread'] * 50:.0f}%),"
            f" p50 {m['p50_ms']['mean']:.1f} ms, p99 {m['p99_ms']['mean']:.1f} ms,"
            f" gateway CPU {m['cpu_ms_per_req']['mean']:.2f} ms/req"
        )
        if "redis_calls_per_turn" in m:
            line += (
                f", redis-server CPU {m['redis_cpu_ms_per_req']['mean']:.3f} ms/req,"
                f" {m['redis_round_trips_per_turn']['mean']:.2f} Redis round trips per turn"
                f" ({m['redis_calls_per_turn']['mean']:.1f} commands executed, scripts included)"
            )
        print(line)
    print(json.dumps({"loadavg_at_start": loadavg, "cpus": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
