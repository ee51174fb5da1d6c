"""The upstream client alone: CPU per model call and per relayed chunk.

``python -m bench.client_micro [--calls N] [--concurrency C] [--rounds R]``
starts ``bench.upstream_server`` (the benchmark's fake upstream) in its own
process, then in this process runs the same provider calls through each
client in turn: Twisted's ``Agent`` on an ``HTTPConnectionPool`` (what the
providers used before issue 16) and the gateway's ``UpstreamPool``. It
reports this process's CPU (``getrusage``) per call for the S1 reply (8 x 20
bytes) and per chunk for the S2 reply (256 x 20 bytes). Only the client side
runs here, so the figures are not diluted by the HTTP server, the runtime or
the transcript, and alternating the clients in one process makes them
comparable on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.task import react
from twisted.web.client import Agent, HTTPConnectionPool

from openclaw.agents.providers.base import ModelCall, ModelMessage
from openclaw.agents.providers.http import make_pool
from openclaw.agents.providers.openai_completions import OpenAICompletionsProvider
from openclaw.config.model import ProviderConfig
from openclaw.testing import RecordingSink


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_upstream() -> tuple[subprocess.Popen[bytes], int]:
    """The fake upstream with profiles s1 (8 x 20 B) and s2 (256 x 20 B)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.upstream_server",
            "--port",
            "0",
            "--profile",
            "s1=8:20:0:0",
            "--profile",
            "s2=256:20:0:0",
        ],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    return proc, int(line.rsplit(":", 1)[1])


@inlineCallbacks
def run_calls(
    provider: OpenAICompletionsProvider, model: str, calls: int, concurrency: int
) -> Generator[Deferred[Any], Any, int]:
    """``calls`` calls, ``concurrency`` at a time; returns the text deltas received."""
    call = ModelCall(model=model, messages=(ModelMessage(role="user", content="hi"),))
    remaining = [calls]
    deltas = [0]

    @inlineCallbacks
    def worker() -> Generator[Deferred[Any], Any, None]:
        while remaining[0] > 0:
            remaining[0] -= 1
            sink = RecordingSink()
            yield provider.stream(call, sink).done
            deltas[0] += len(sink.deltas)

    yield DeferredList([worker() for _ in range(concurrency)], fireOnOneErrback=True)
    return deltas[0]


@inlineCallbacks
def main(reactor: Any, argv: list[str]) -> Generator[Deferred[Any], Any, None]:
    """Alternate the clients; print one JSON line per measurement and a summary."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--client", choices=["agent", "wire"], action="append", default=None)
    args = p.parse_args(argv)
    upstream, port = start_upstream()
    try:
        config = ProviderConfig(
            id="fake", api="openai-completions", base_url=f"http://127.0.0.1:{port}/v1"
        )
        agent_pool = HTTPConnectionPool(reactor, persistent=True)
        agent_pool.maxPersistentPerHost = 128
        clients: dict[str, Callable[[], OpenAICompletionsProvider]] = {
            "agent": lambda: OpenAICompletionsProvider(
                config, agent=Agent(reactor, pool=agent_pool), clock=reactor
            ),
            "wire": lambda: OpenAICompletionsProvider(
                config, client=make_pool(reactor), clock=reactor
            ),
        }
        if args.client:
            clients = {name: clients[name] for name in args.client}
        results: dict[str, dict[str, list[float]]] = {}
        for round_no in range(args.rounds):
            for name, build in clients.items():
                provider = build()
                yield run_calls(provider, "s1", 50, args.concurrency)  # warm up
                for model, calls in (("s1", args.calls), ("s2", max(args.calls // 8, 10))):
                    start, wall = _cpu(), time.monotonic()
                    deltas = yield run_calls(provider, model, calls, args.concurrency)
                    cpu = _cpu() - start
                    per = cpu / calls * 1e6 if model == "s1" else cpu / max(deltas, 1) * 1e6
                    unit = "us/call" if model == "s1" else "us/chunk"
                    row = {
                        "round": round_no + 1,
                        "client": name,
                        "reply": model,
                        "calls": calls,
                        unit: round(per, 2),
                        "wall_s": round(time.monotonic() - wall, 2),
                    }
                    print(json.dumps(row), flush=True)
                    results.setdefault(name, {}).setdefault(unit, []).append(per)
        summary = {
            name: {unit: round(sorted(v)[len(v) // 2], 2) for unit, v in units.items()}
            for name, units in results.items()
        }
        print(json.dumps({"median": summary, "load": os.getloadavg()[0]}), flush=True)
        yield agent_pool.closeCachedConnections()
    finally:
        upstream.terminate()
        upstream.wait()


if __name__ == "__main__":
    react(main, [sys.argv[1:]])
