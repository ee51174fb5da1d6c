"""The idle gateway's RSS alone, quickly: what an import costs (S6 "after start").

``python -m bench.idle_rss [--runs N] [--env NAME=VALUE ...] [--no-control-ui]``
starts ``twistd -n openclaw`` with the benchmark's gateway config (nothing is
requested, so no upstream runs), waits for ``/readyz`` and one more second,
reads ``VmRSS`` and stops it; ``N`` times. The figure repeats to 0.1 MB, so
one to three runs tell whether a lazy import pays. ``PYTHONPATH=<tree>``
measures another tree (issue 16 compared trees that way); ``--env`` passes
variables such as ``AUTOBAHN_USE_NVX=0`` to the gateway only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from bench.procstat import rss_kb
from bench.run import gateway_config, start_process, stop_process, wait_ready


def idle_rss_mb(env: dict[str, str], control_ui: bool = True) -> float:
    """One start: the gateway's RSS in MB one second after it is ready."""
    workdir = tempfile.mkdtemp(prefix="openclaw-idle-")
    try:
        state = os.path.join(workdir, "state")
        os.makedirs(state)
        config = os.path.join(workdir, "gateway.json5")
        gateway_config(9, ["s1", "s2"], config)  # port 9: never called
        if not control_ui:
            with open(config) as f:
                data = json.load(f)
            data["gateway"]["controlUi"] = {"enabled": False}
            with open(config, "w") as f:
                json.dump(data, f)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        full_env = dict(os.environ, OPENCLAW_STATE_DIR=state, HOME=state, **env)
        full_env.pop("OPENCLAW_GATEWAY_TOKEN", None)
        cmd = [twistd, "-n", "--pidfile=", "openclaw", "--config", config]
        cmd += ["--listen", "tcp:0:interface=127.0.0.1"]
        gw = start_process("gateway", cmd, workdir, env=full_env, timeout=60)
        try:
            assert gw.port is not None
            if not wait_ready(gw.port):
                raise RuntimeError("gateway: /readyz did not answer 200 within 30 s")
            time.sleep(1.0)
            return rss_kb(gw.pid) / 1024.0
        finally:
            stop_process(gw)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line: every run's RSS and the smallest."""
    p = argparse.ArgumentParser(description="idle RSS of twistd openclaw")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the gateway")
    p.add_argument("--no-control-ui", action="store_true")
    args = p.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    runs = [round(idle_rss_mb(env, not args.no_control_ui), 1) for _ in range(args.runs)]
    print(json.dumps({"env": env, "rss_mb": runs, "min_mb": min(runs)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
