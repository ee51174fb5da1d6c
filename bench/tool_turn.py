"""T1: the gateway's CPU cost of a tool-using turn, next to a plain turn's.

Issue 11's figure: how much gateway CPU one step of the agent loop costs
(model call out, tool call parsed, policy checked, the tool run, the
``toolResult`` recorded, the next model call built), excluding what a tool's
own process would spend. The tool is ``read`` of a small workspace file: it
runs inside the gateway (on its IO thread), so there is no child process to
exclude and the figure is the loop's own overhead plus one small file read.

Two sequential workloads against one ``twistd openclaw`` whose agent talks to
a fake model upstream (its own process, serving a scripted
:class:`~openclaw.testing.ToolConversation`):

- ``plain``: one model call, text answer;
- ``tool``: ``STEPS`` model calls that each call ``read``, then the answer.

``cpu_ms_per_turn`` is the gateway's CPU (``/proc`` utime+stime) per turn;
``cpu_ms_per_tool_step`` is (tool turn - plain turn) / ``STEPS``.

Run alone: ``python -m bench.tool_turn [--turns N] [--rounds R]``; within
``make bench`` it is the ``T1`` scenario (``python -m bench.run --only T1``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from bench import scenarios as sc
from bench.procstat import Usage, cpu_seconds, rss_kb

SCENARIO = "T1"
STEPS = 3
TOKEN = "bench-token-0123456789abcdef"
#: Rows of the report table for this scenario.
TABLE_ROWS = [
    ("cpu_ms_per_turn", "gateway CPU ms/turn"),
    ("cpu_ms_per_tool_step", "gateway CPU ms/tool step"),
    ("turn_ms", "turn wall ms"),
]


def serve_upstream(port: int) -> None:
    """The fake model: ``plain ...`` messages get text; others a read loop."""
    from twisted.internet import reactor as installed
    from twisted.web.server import Site

    from openclaw.testing import FakeOpenAIUpstream, FakeReply, FakeToolCall, ToolConversation
    from openclaw.testing.upstream import ReceivedRequest

    steps = [
        FakeReply(text="", tool_calls=(FakeToolCall("read", '{"path": "note.md"}', id=f"t{n}"),))
        for n in range(STEPS)
    ]
    conversation = ToolConversation(*steps, FakeReply(text="The note says hello."))
    plain = FakeReply(text="Plain answer.")
    reactor: Any = installed  # the installed reactor (TCP, time, run)

    def respond(request: ReceivedRequest) -> FakeReply:
        messages = request.body.get("messages", []) if isinstance(request.body, dict) else []
        users = [m.get("content") for m in messages if m.get("role") == "user"]
        if users and isinstance(users[-1], str) and users[-1].startswith("plain"):
            return plain
        reply: FakeReply = conversation(request)
        conversation.answered.clear()
        conversation.results.clear()
        return reply

    fake = FakeOpenAIUpstream(reactor)
    fake.responder = respond
    listening = reactor.listenTCP(port, Site(fake), interface="127.0.0.1")
    print(f"listening on 127.0.0.1:{listening.getHost().port}", flush=True)
    reactor.run()


def _start(cmd: list[str], log_path: str, env: dict[str, str] | None = None) -> tuple[Any, int]:
    from bench.run import _LISTENING, ROOT

    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(log_path, errors="replace") as f:
            found = _LISTENING.search(f.read())
        if found:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    with open(log_path, errors="replace") as f:
        raise RuntimeError(f"{cmd[0]} did not start:\n{f.read()[-2000:]}")


def _post(port: int, message: str) -> str:
    body = json.dumps({"model": "openclaw", "messages": [{"role": "user", "content": message}]})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=body.encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: str = json.load(response)["choices"][0]["message"]["content"]
        return answer


def _measure(pid: int, port: int, message: str, turns: int) -> tuple[float, float, str]:
    """Gateway CPU seconds and wall seconds for ``turns`` sequential turns."""
    answer = ""
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    for _ in range(turns):
        answer = _post(port, message)
    return cpu_seconds(pid) - cpu0, time.monotonic() - wall0, answer


def t1(workdir: str, rounds: int, log: Callable[[str], None], turns: int = 200) -> list[sc.Record]:
    """Both workloads, ``rounds`` times each (alternating), as T1 records."""
    records: list[sc.Record] = []
    upstream, upstream_port = _start(
        [sys.executable, "-m", "bench.tool_turn", "--serve", "0"],
        os.path.join(workdir, "t1-upstream.log"),
    )
    gateway = None
    try:
        state = os.path.join(workdir, "t1-state")
        os.makedirs(os.path.join(state, "workspace"))
        with open(os.path.join(state, "workspace", "note.md"), "w") as f:
            f.write("hello\n")
        config = {
            "gateway": {
                "auth": {"mode": "token", "token": TOKEN},
                "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
            },
            "models": {
                "providers": {
                    "fake": {
                        "api": "openai-completions",
                        "baseUrl": f"http://127.0.0.1:{upstream_port}/v1",
                        "apiKey": "sk-bench",
                        "models": [{"id": "m"}],
                    }
                }
            },
            "agents": {"list": [{"id": "main", "default": True, "model": "fake/m"}]},
            "session": {"fsync": "never"},
        }
        config_path = os.path.join(workdir, "t1-gateway.json")
        with open(config_path, "w") as f:
            json.dump(config, f)
        env = {**os.environ, "OPENCLAW_STATE_DIR": state}
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        gateway, port = _start(
            [
                twistd,
                "-n",
                "--pidfile=",
                "openclaw",
                "--config",
                config_path,
                "--listen",
                "tcp:0:interface=127.0.0.1",
            ],
            os.path.join(workdir, "t1-gateway.log"),
            env,
        )
        for message in ("plain warm-up", "warm-up"):  # imports, first workspace load
            _post(port, message)
        for round_no in range(1, rounds + 1):
            for variant, message in (
                ("plain turn", "plain hi"),
                (f"tool turn ({STEPS} steps)", "read it"),
            ):
                cpu, wall, answer = _measure(gateway.pid, port, message, turns)
                usage = {"gateway": Usage(cpu_s=cpu, rss_kb=rss_kb(gateway.pid), peak_rss_kb=0)}
                record = sc.Record(SCENARIO, variant, "GW", round_no, usage=usage)
                record.metrics = {
                    "cpu_ms_per_turn": cpu * 1000 / turns,
                    "turn_ms": wall * 1000 / turns,
                    "answer": answer,
                }
                records.append(record)
                log(f"T1 round {round_no} {variant}: {cpu * 1000 / turns:.2f} ms CPU/turn")
        failed = _tool_errors(state)
        if failed:
            log(f"T1: {failed} tool results were errors (the figure is not a clean read loop)")
        plain = [r for r in records if r.variant == "plain turn"]
        tool = [r for r in records if r.variant != "plain turn"]
        for p, t in zip(plain, tool, strict=True):
            extra = t.metrics["cpu_ms_per_turn"] - p.metrics["cpu_ms_per_turn"]
            t.metrics["cpu_ms_per_tool_step"] = extra / STEPS
    finally:
        for proc in (gateway, upstream):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return records


def _tool_errors(state: str) -> int:
    """How many ``toolResult`` messages in the gateway's transcripts are errors."""
    count = 0
    sessions = os.path.join(state, "agents", "main", "sessions")
    for name in os.listdir(sessions) if os.path.isdir(sessions) else []:
        if not name.endswith(".jsonl"):
            continue
        with open(os.path.join(sessions, name)) as f:
            for line in f:
                message = json.loads(line).get("message") or {}
                count += message.get("role") == "toolResult" and message.get("isError") is True
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", type=int, help="(internal) serve the fake upstream on PORT")
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve_upstream(args.serve)
        return 0
    workdir = tempfile.mkdtemp(prefix="openclaw-t1-")
    started = time.monotonic()

    def log(message: str) -> None:
        sys.stderr.write(f"[t1 {time.monotonic() - started:6.1f}s] {message}\n")

    try:
        records = t1(workdir, args.rounds, log, args.turns)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for variant in dict.fromkeys(r.variant for r in records):
        rows = [r for r in records if r.variant == variant]
        turn = sum(r.metrics["cpu_ms_per_turn"] for r in rows) / len(rows)
        line = f"{variant}: {turn:.2f} ms gateway CPU/turn"
        steps = [
            r.metrics["cpu_ms_per_tool_step"] for r in rows if "cpu_ms_per_tool_step" in r.metrics
        ]
        if steps:
            line += f", {sum(steps) / len(steps):.2f} ms per tool step"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
