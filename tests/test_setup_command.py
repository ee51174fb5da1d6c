"""``openclaw setup``: directories and workspaces created, nothing overwritten."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from openclaw.cli.doctor import check_directory
from openclaw.cli.main import main
from openclaw.cli.setup_command import run_setup
from openclaw.config import load_config
from openclaw.config.model import AgentConfig, AgentDefaults, AgentsConfig, Config


class SetupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        env["OPENCLAW_STATE_DIR"] = str(self.root / "state")
        self.patch(os, "environ", env)

    def config(self, *agents: AgentConfig, skip: bool = False) -> Config:
        return Config(
            agents=AgentsConfig(defaults=AgentDefaults(skip_bootstrap=skip), list=agents),
            state_dir=self.root / "state",
        )

    def test_creates_state_dir_and_workspace_with_starter_files(self) -> None:
        """A fresh machine: the state directory and the main agent's workspace are
        created with the starter files (a git repository, as in OpenClaw), and
        each is printed."""
        out = io.StringIO()
        self.assertEqual(run_setup(self.config(), None, out), 0)
        workspace = self.root / "state" / "workspace"
        self.assertEqual(
            sorted(p.name for p in workspace.iterdir()),
            [".git", "AGENTS.md", "BOOTSTRAP.md", "IDENTITY.md", "SOUL.md", "USER.md"],
        )
        text = out.getvalue()
        self.assertIn(f"created {self.root / 'state'}/", text)
        self.assertIn(f"workspace of agent main: {workspace}/ (created)", text)
        self.assertIn("  wrote AGENTS.md", text)

    def test_directories_are_private_whatever_the_umask(self) -> None:
        """Under the usual umask 022 every directory setup creates is 0700, the
        parents included, so ``openclaw doctor`` right after has nothing to say."""
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)
        run_setup(self.config(), None, io.StringIO())
        for directory in (self.root / "state", self.root / "state" / "workspace"):
            self.assertEqual(directory.stat().st_mode & 0o777, 0o700, directory)
            self.assertEqual(check_directory("dir", directory).status, "ok")

    def test_second_run_keeps_edits(self) -> None:
        """Running setup again overwrites nothing and writes no file."""
        run_setup(self.config(), None, io.StringIO())
        agents = self.root / "state" / "workspace" / "AGENTS.md"
        agents.write_text("mine")
        out = io.StringIO()
        run_setup(self.config(), None, out)
        self.assertEqual(agents.read_text(), "mine")
        self.assertNotIn("wrote", out.getvalue())
        self.assertIn("(exists)", out.getvalue())

    def test_every_agent_and_skip_bootstrap(self) -> None:
        """Each configured agent gets its workspace; skipBootstrap writes no files."""
        out = io.StringIO()
        run_setup(self.config(AgentConfig(id="a"), AgentConfig(id="b"), skip=True), None, out)
        self.assertTrue((self.root / "state" / "workspace").is_dir())
        self.assertTrue((self.root / "state" / "workspace-b").is_dir())
        self.assertEqual(list((self.root / "state" / "workspace-b").iterdir()), [])


class StarterConfigTests(SynchronousTestCase):
    """``openclaw setup`` on a machine with no config writes one (doctor's fix
    for a missing config is this command)."""

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        env.update(OPENCLAW_STATE_DIR=str(self.root / "state"), HOME=str(self.root))
        self.patch(os, "environ", env)

    def test_writes_a_private_starter_config_once(self) -> None:
        path = self.root / "etc" / "openclaw.json5"
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        self.assertEqual(main(["setup", "--config", str(path)]), 0)
        self.assertIn(f"wrote {path}", out.getvalue())
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)
        config = load_config(str(path), env=os.environ).config
        token = config.gateway.auth.token
        self.assertEqual((config.gateway.auth.mode, config.gateway.bind), ("token", "loopback"))
        assert token is not None
        self.assertGreaterEqual(len(token), 32)
        self.assertEqual(config.agents.defaults.model_primary, "demo/echo")
        self.assertTrue(config.gateway.http.chat_completions.enabled)
        self.assertTrue(config.gateway.http.responses.enabled)
        # A second run keeps the file (and its token).
        self.assertEqual(main(["setup", "--config", str(path)]), 0)
        self.assertEqual(load_config(str(path), env=os.environ).config.gateway.auth.token, token)
