"""The LiteLLM proxy beside the gateway (``BENCH_LITELLM=1``).

``bench/litellm_real.sh`` installs ``litellm[proxy]`` into its own
virtualenv under ``.cache/`` (never the project's) and starts it with one
worker, no database and no master key, with one model per bench profile
(``openclaw/<profile>``) pointing at the same fake upstream as the gateway.
The rounds then run the same scenarios against it as target ``LL`` (S1-S6;
S7 and S8 need the OpenClaw WebSocket protocol and sessions).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import scenarios as sc
from bench.run import Proc, start_process
from bench.run import _http as http_call

_HERE = os.path.dirname(os.path.abspath(__file__))


def start_litellm(bench: sc.Bench, workdir: str, log: Callable[[str], None]) -> Proc | str:
    """Start the proxy and probe it; the Proc, or why it could not start (a str:
    ``bench.run`` runs as ``__main__``, so its ``Proc`` is another class object)."""
    script = os.path.join(_HERE, "litellm_real.sh")
    state = os.path.join(workdir, "ll-state")
    os.makedirs(state)
    key = "sk-bench-" + secrets.token_hex(16)
    env = dict(
        os.environ, LL_STATE=state, LL_UPSTREAM_PORT=str(bench.upstream_port), LL_MASTER_KEY=key
    )
    # The virtualenv is made from the interpreter running the bench (any 3.11+).
    env.setdefault("BENCH_LITELLM_PYTHON", sys.executable)
    log("LiteLLM: installing (first time: a few minutes) and starting")
    try:
        proc = start_process("litellm", ["bash", script, "run"], workdir, env=env, timeout=1200)
    except RuntimeError as e:
        log(f"LiteLLM: {e}")
        return f"LiteLLM proxy: {e}"
    assert proc.port is not None
    url = f"http://127.0.0.1:{proc.port}/v1/chat/completions"
    msg: list[dict[str, Any]] = [{"role": "user", "content": "probe"}]
    missing: dict[str, str] = {}
    status, body = 0, b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = http_call("POST", url, {"model": "openclaw/s1", "messages": msg}, token=key)
        if status == 200:
            break
        time.sleep(1)
    if status != 200 or b'"choices"' not in body:
        missing["chat"] = f"answered {status}: {body[:160]!r}"
    stream_body = {"model": "openclaw/s1", "stream": True, "messages": msg}
    status, body = http_call("POST", url, stream_body, token=key)
    if status != 200 or b"[DONE]" not in body:
        missing["stream"] = f"streaming answered {status}: {body[:160]!r}"
    missing["ws"] = "LiteLLM has no OpenClaw WebSocket protocol"
    version_file = os.path.join(
        os.environ.get("BENCH_LITELLM_DIR", os.path.join(_HERE, "..", ".cache", "litellm-bench")),
        ".installed",
    )
    try:
        with open(version_file) as f:
            log(f"LiteLLM {f.read().strip()} on port {proc.port}: {json.dumps(missing)}")
    except OSError:
        pass
    bench.pids["litellm"] = proc.pid
    bench.targets["LL"] = sc.Target(
        "LL",
        proc.port,
        "litellm",
        ("litellm", "upstream"),
        agent_models=True,
        token=key,
        missing=missing,
    )
    return proc
