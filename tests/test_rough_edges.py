"""The rough edges a new user hit (issue 14, item 6), each run as the user would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.gateway.assembly import build_gateway
from openclaw.testing import TEST_TOKEN, http_test_config, make_runtime

REPO = Path(__file__).resolve().parent.parent
OPENCLAW = [sys.executable, "-c", "import sys; from openclaw.cli import main; sys.exit(main())"]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class CliRun:
    """``openclaw ...`` in a fresh state directory and HOME, outside the checkout."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.home = Path(case.mktemp()).resolve()
        self.home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")} | {
            "HOME": str(self.home),
            "OPENCLAW_STATE_DIR": str(self.home / "state"),
        }

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*OPENCLAW, *args],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


class NoGatewayTests(SynchronousTestCase):
    def test_gateway_call_with_nothing_listening_prints_one_line(self) -> None:
        """`openclaw gateway call health` against a closed port: exit 1 and one
        line on stderr, no "Unhandled error in Deferred" traceback."""
        run = CliRun(self)
        url = f"ws://127.0.0.1:{closed_port()}"
        result = run("gateway", "call", "health", "--url", url, "--token", TEST_TOKEN)
        self.assertEqual(result.returncode, 1)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn("cannot connect", lines[0])
        self.assertNotIn("Unhandled", result.stderr + result.stdout)

    def test_remote_agent_with_nothing_listening_prints_one_line(self) -> None:
        """`openclaw agent -m hi` with no gateway: one line, exit 1."""
        run = CliRun(self)
        run.env["OPENCLAW_GATEWAY_PORT"] = str(closed_port())
        run.env["OPENCLAW_GATEWAY_TOKEN"] = TEST_TOKEN
        result = run("agent", "-m", "hi")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertNotIn("Traceback", result.stderr)

    def test_status_and_reload_with_nothing_listening_print_one_line(self) -> None:
        """`openclaw status` and `openclaw gateway reload` fail the same clean way."""
        run = CliRun(self)
        url = f"ws://127.0.0.1:{closed_port()}"
        for args in (("status",), ("gateway", "reload")):
            result = run(*args, "--url", url, "--token", TEST_TOKEN)
            self.assertEqual(result.returncode, 1)
            self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)


class ConfigValidateTests(SynchronousTestCase):
    def test_names_the_file_it_checked(self) -> None:
        """validate says which file it read."""
        run = CliRun(self)
        path = run.home / "gw.json5"
        path.write_text('{gateway: {auth: {token: "' + TEST_TOKEN + '"}}}')
        result = run("config", "validate", str(path))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.splitlines(), [f"checked {path}", "ok"])

    def test_says_when_no_file_exists(self) -> None:
        """With no config anywhere, validate says it checked the defaults and where
        it looked."""
        run = CliRun(self)
        run.env["OPENCLAW_GATEWAY_TOKEN"] = TEST_TOKEN
        result = run("config", "validate")
        self.assertEqual(result.returncode, 0, result.stderr)
        expected = run.home / "state" / "openclaw.json"
        self.assertIn(f"no config file at {expected}; checked the defaults", result.stdout)

    def test_did_you_mean_even_with_other_errors(self) -> None:
        """`chatCompletion` and `baseURL` get their hints next to a real error."""
        run = CliRun(self)
        path = run.home / "typo.json5"
        path.write_text(
            json.dumps(
                {
                    "gateway": {
                        "port": "many",
                        "http": {"endpoints": {"chatCompletion": {"enabled": True}}},
                    },
                    "models": {
                        "providers": {"p": {"api": "openai-completions", "baseURL": "http://x"}}
                    },
                }
            )
        )
        result = run("config", "validate", str(path))
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"checked {path}", result.stdout)
        self.assertIn("gateway.port", result.stderr)
        self.assertIn('did you mean "chatCompletions"?', result.stderr)
        self.assertIn('did you mean "baseUrl"?', result.stderr)

    def test_warnings_are_counted_next_to_ok(self) -> None:
        """A file with only a typo is "ok (1 warning)", not a bare "ok"."""
        run = CliRun(self)
        path = run.home / "gw.json5"
        path.write_text(
            '{gateway: {auth: {token: "' + TEST_TOKEN + '"}, '
            "http: {endpoints: {chatCompletion: {enabled: true}}}}}"
        )
        result = run("config", "validate", str(path))
        self.assertEqual(result.returncode, 0)
        self.assertIn("ok (1 warning)", result.stdout)
        self.assertIn("did you mean", result.stderr)


class OutOfTheBoxTests(SynchronousTestCase):
    def test_local_agent_without_config_uses_the_demo_model(self) -> None:
        """`openclaw agent --local -m hello` with no config answers (demo model)."""
        run = CliRun(self)
        result = run("agent", "--local", "-m", "hello")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("hello", result.stdout)
        self.assertIn("demo model", result.stderr)


class TestingConfigTests(SynchronousTestCase):
    def test_http_test_config_serves_chat_completions_with_a_token(self) -> None:
        """An embedder's first StubTreq test: chat completions answer 200 with
        TEST_TOKEN (not 404), 401 without it."""
        clock = MemoryReactorClock()
        config = http_test_config(self.mktemp())
        gateway = build_gateway(config, clock, runtime=make_runtime(config, clock=clock))
        gateway.readiness.mark_ready(clock)
        treq = StubTreq(gateway.root)
        body = json.dumps({"model": "openclaw", "messages": [{"role": "user", "content": "hi"}]})
        answered = treq.post(  # type: ignore[attr-defined]
            "http://gw/v1/chat/completions",
            data=body.encode(),
            headers={"Authorization": f"Bearer {TEST_TOKEN}", "Content-Type": "application/json"},
        )
        for _ in range(5):
            clock.advance(0)
            treq.flush()
        self.assertEqual(self.successResultOf(answered).code, 200)
        post: Any = treq.post  # type: ignore[attr-defined]  # StubTreq forwards treq's API
        refused = post("http://gw/v1/chat/completions", data=body.encode())
        treq.flush()
        self.assertEqual(self.successResultOf(refused).code, 401)


class DocsClaimTests(SynchronousTestCase):
    def _doc(self, name: str) -> str:
        return (REPO / name).read_text()

    def test_agents_doc_does_not_say_maintenance_is_ignored(self) -> None:
        """session.maintenance.maxEntries/mode are read; the docs must not say otherwise."""
        text = self._doc("docs/agents.md")
        for line in text.splitlines():
            if "maxEntries" in line or "maintenance" in line:
                self.assertNotIn("not read", line)
                self.assertNotIn("ignored", line)

    def test_deployment_doc_does_not_install_from_pypi(self) -> None:
        """The package is not published: install from a clone or a built wheel."""
        text = self._doc("docs/deployment.md")
        self.assertNotIn("pip install openclaw-twisted", text)
        self.assertIn("-m build", text)

    def test_readme_says_which_log_format_twist_uses(self) -> None:
        """`twist` picks JSON when stdout is not a terminal; the README says so."""
        text = self._doc("README.md")
        self.assertIn("not a terminal", text)
