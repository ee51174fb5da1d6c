"""The ``openclaw`` console script: config validate, agent (local and remote),
gateway call — run as real subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from twisted.trial.unittest import SynchronousTestCase

from tests.browser_support import ScriptedUpstream
from tests.gateway_process import TOKEN, VENV_BIN, GatewayProcess, write_config

REPO = Path(__file__).resolve().parent.parent


def openclaw(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the console script with a private HOME/state dir."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_") and k != "HOME"}
    clean.update({"HOME": str(home), "OPENCLAW_STATE_DIR": str(home / "state"), **env})
    return subprocess.run(
        [str(VENV_BIN / "openclaw"), *args], capture_output=True, text=True, timeout=60, env=clean
    )


class ConfigValidateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir()

    def test_sample_config_is_ok(self) -> None:
        """The sample config validates: names the file, prints ok, exit 0."""
        sample = REPO / "conf" / "openclaw.json5"
        result = openclaw(["config", "validate", str(sample)], self.home)
        self.assertEqual(
            (result.returncode, result.stdout), (0, f"checked {sample}\nok\n"), result.stderr
        )

    def test_problems_one_per_line(self) -> None:
        """Each problem on its own line naming its key path; exit 1."""
        bad = self.home / "bad.json5"
        bad.write_text("{gateway: {port: 0, bind: 5}, agents: {list: [{id: 3}]}}")
        result = openclaw(["config", "validate", str(bad)], self.home)
        self.assertEqual(result.returncode, 1)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 3, result.stderr)
        for key in ("gateway.port", "gateway.bind", "agents.list[0].id"):
            self.assertTrue(any(line.startswith(key) for line in lines), (key, lines))

    def test_config_option_names_the_file(self) -> None:
        """``--config PATH`` (as doctor, agent and gateway take it) checks that
        file like the positional PATH does; naming two files is refused."""
        bad = self.home / "bad.json5"
        bad.write_text("{gateway: {port: 0}}")
        result = openclaw(["config", "validate", "--config", str(bad)], self.home)
        self.assertEqual((result.returncode, result.stdout), (1, f"checked {bad}\n"), result.stderr)
        self.assertTrue(result.stderr.startswith("gateway.port"), result.stderr)
        sample = REPO / "conf" / "openclaw.json5"
        both = openclaw(["config", "validate", str(sample), "-c", str(bad)], self.home)
        self.assertEqual(both.returncode, 2, both.stderr)
        self.assertIn("give the file once", both.stderr)

    def test_missing_explicit_file(self) -> None:
        """A named file that does not exist is an error."""
        result = openclaw(["config", "validate", str(self.home / "nope.json5")], self.home)
        self.assertEqual(result.returncode, 1)
        self.assertIn("nope.json5", result.stderr)


class AgentLocalTests(SynchronousTestCase):
    def test_local_turn_streams_the_demo_reply(self) -> None:
        """``openclaw agent --local -m hello`` streams the demo reply and stores the turn."""
        home = Path(self.mktemp()).resolve()
        home.mkdir()
        config = str(REPO / "conf" / "openclaw.json5")
        result = openclaw(["agent", "--local", "-m", "hello", "--config", config], home)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn('you said "hello"', result.stdout)
        index = home / "state" / "agents" / "main" / "sessions" / "sessions.json"
        self.assertIn("agent:main:main", json.loads(index.read_text()))

    def test_local_json_result(self) -> None:
        """``--json`` prints the final result object."""
        home = Path(self.mktemp()).resolve()
        home.mkdir()
        config = str(REPO / "conf" / "openclaw.json5")
        result = openclaw(["agent", "--local", "--json", "-m", "hi", "--config", config], home)
        self.assertEqual(result.returncode, 0, result.stderr)
        payload: Any = json.loads(result.stdout)
        self.assertEqual(payload["status"], "ok")
        self.assertIn("hi", payload["result"]["payloads"][0]["text"])


def _sleepers() -> list[int]:
    """Pids of the ``sleep 3071`` the scripted model's exec call starts."""
    found = subprocess.run(["pgrep", "-f", "sleep 3071"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _wait_for(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while (value := check()) in (None, False, []):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling a condition in another process, bounded
    return value


class AgentLocalInterruptTests(SynchronousTestCase):
    def test_ctrl_c_aborts_the_turn_and_kills_its_command(self) -> None:
        """SIGINT while a tool runs: the command's process group is killed, the
        turn is recorded as aborted, and the CLI says so and exits 1."""
        upstream = ScriptedUpstream()
        self.addCleanup(upstream.stop)
        home = Path(self.mktemp()).resolve()
        home.mkdir()
        config = home / "openclaw.json"
        config.write_text(
            json.dumps(
                {
                    "models": {
                        "providers": {
                            "fake": {
                                "api": "openai-completions",
                                "baseUrl": f"http://127.0.0.1:{upstream.port}/v1",
                            }
                        }
                    },
                    "agents": {"defaults": {"model": {"primary": "fake/m"}}},
                    "session": {"fsync": "never"},
                }
            )
        )
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        clean.update({"HOME": str(home), "OPENCLAW_STATE_DIR": str(home / "state")})
        # A suite started in the background by a non-interactive shell (`make
        # test &`) runs with SIGINT ignored, and a child inherits that, so its
        # reactor rightly leaves Ctrl-C alone; start the CLI as a terminal would.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            cli = subprocess.Popen(
                [str(VENV_BIN / "openclaw"), "agent", "--local", "-m", "sleeper", "--config",
                 str(config)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=clean,
            )  # fmt: skip
        finally:
            signal.signal(signal.SIGINT, previous)
        self.addCleanup(_kill_all, [cli.pid])
        pids = _wait_for(_sleepers, "the tool's command to start")
        self.addCleanup(_kill_all, pids)
        cli.send_signal(signal.SIGINT)
        _, err = cli.communicate(timeout=30)
        self.assertEqual(cli.returncode, 1, err)
        self.assertIn("error: run aborted", err)
        _wait_for(lambda: not set(pids) & set(_sleepers()), "the command to be killed")
        sessions = home / "state" / "agents" / "main" / "sessions"
        (transcript,) = sessions.glob("*.jsonl")
        last = json.loads(transcript.read_text().splitlines()[-1])
        self.assertEqual(last["message"]["stopReason"], "aborted")


class RemoteTests(SynchronousTestCase):
    """``gateway call`` and remote ``agent`` against a real gateway process,
    one for the class (the tests change nothing in it); each test's CLI runs
    get their own HOME."""

    gateway: ClassVar[GatewayProcess]
    gateway_home: ClassVar[Path]

    @classmethod
    def setUpClass(cls) -> None:
        cls.gateway_home = Path(tempfile.mkdtemp(prefix="openclaw-cli-")).resolve()
        try:
            cls.gateway = GatewayProcess(
                write_config(cls.gateway_home), cls.gateway_home / "gw-state"
            )
        except BaseException:
            shutil.rmtree(cls.gateway_home, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            cls.gateway.ensure_stopped()
        finally:
            shutil.rmtree(cls.gateway_home, ignore_errors=True)

    def setUp(self) -> None:
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir()
        self.url = f"ws://127.0.0.1:{self.gateway.port}"

    def test_gateway_call_and_remote_agent(self) -> None:
        """health, agent --expect-final, remote agent via env; bad token and unknown
        method fail with rc 1 and the gateway's message."""
        flags = ["--url", self.url, "--token", TOKEN, "--json"]
        health = openclaw(["gateway", "call", "health", *flags], self.home)
        self.assertEqual(health.returncode, 0, health.stderr)
        self.assertTrue(json.loads(health.stdout)["ok"])

        params = json.dumps({"message": "hi", "agentId": "main", "idempotencyKey": "k-1"})
        agent = openclaw(
            ["gateway", "call", "agent", "--expect-final", "--params", params, *flags], self.home
        )
        self.assertEqual(agent.returncode, 0, agent.stderr)
        self.assertEqual(json.loads(agent.stdout)["status"], "ok")

        env = {"OPENCLAW_GATEWAY_URL": self.url, "OPENCLAW_GATEWAY_TOKEN": TOKEN}
        remote = openclaw(["agent", "-m", "over the wire"], self.home, **env)
        self.assertEqual(remote.returncode, 0, remote.stderr)
        self.assertIn('you said "over the wire"', remote.stdout)

        unknown = openclaw(["gateway", "call", "no.such.method", *flags], self.home)
        self.assertEqual(unknown.returncode, 1)
        self.assertIn("unknown method: no.such.method", unknown.stderr)

        wrong = openclaw(
            ["gateway", "call", "health", "--url", self.url, "--token", "x"], self.home
        )
        self.assertEqual(wrong.returncode, 1)
        self.assertIn("unauthorized", wrong.stderr)

    def test_url_without_credentials_is_refused(self) -> None:
        """Like the real CLI: a URL override needs explicit credentials."""
        result = openclaw(["gateway", "call", "health", "--url", self.url], self.home)
        self.assertEqual(result.returncode, 1)
        self.assertIn("requires explicit credentials", result.stderr)
