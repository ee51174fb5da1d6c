"""The file tools keep out of .git unless exec runs anything (real files, real git).

The reviewer's repro: mode ask with only ``git`` allowed, ``edit`` put a
``core.fsmonitor`` command into ``.git/config`` and the allowlisted
``git status`` then ran it.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from openclaw.agents.tools._common import inline_runner
from openclaw.agents.tools._proc import ProcessRegistry
from openclaw.agents.tools.base import Tool, ToolContext, ToolResult
from openclaw.agents.tools.catalog import (
    ToolServices,
    build_tools,
    settings_from_config,
)
from openclaw.config.model import ExecConfig, WebFetchConfig

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", "LANG": "C"}
FSMONITOR = '[core]\n\tfsmonitor = "touch pwned; false"\n'


def patch(*lines: str) -> str:
    return "\n".join(("*** Begin Patch", *lines, "*** End Patch"))


class GitGuardTests(TestCase):
    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        root = os.path.realpath(self.mktemp())
        self.ws = os.path.join(root, "ws")
        os.makedirs(os.path.join(self.ws, "sub"))
        subprocess.run(["git", "init", "-q", self.ws], check=True, env=ENV)
        subprocess.run(["git", "init", "-q", os.path.join(self.ws, "sub")], check=True, env=ENV)
        with open(os.path.join(self.ws, "notes.txt"), "w") as f:
            f.write("[core]\n")
        os.symlink(os.path.join(self.ws, ".git", "config"), os.path.join(self.ws, "cfg"))
        os.symlink(os.path.join(self.ws, ".git"), os.path.join(self.ws, "gitdir"))
        self.config = os.path.join(self.ws, ".git", "config")
        with open(self.config) as f:
            self.original = f.read()
        self.pwned = os.path.join(self.ws, "pwned")
        self.ctx = ToolContext(
            agent_id="main",
            session_key="agent:main:main",
            run_id="r1",
            tool_call_id="c1",
            workspace=FilePath(self.ws),
        )
        self.registry = ProcessRegistry(reactor)
        self.addCleanup(lambda: Deferred.fromCoroutine(self._cleanup()))

    async def _cleanup(self) -> None:
        for d in self.registry.stop_all():
            await d

    def tools(self, mode: str, allowlist: tuple[str, ...] = ("git",)) -> dict[str, Tool]:
        settings = settings_from_config(
            ExecConfig(mode=mode, allowlist=allowlist),  # type: ignore[arg-type]
            WebFetchConfig(),
        )
        services = ToolServices(
            reactor=self.reactor,  # type: ignore[arg-type]
            registry=self.registry,
            run_blocking=inline_runner,
            base_env=ENV,
        )
        return build_tools(settings, services)

    async def call(self, tool: Tool, **args: Any) -> ToolResult:
        result: ToolResult = await tool.run(args, self.ctx)
        return result

    def attempts(self) -> list[tuple[str, dict[str, Any]]]:
        """Every way the file tools could change a .git: direct, in any case,
        through symlinks (to the file and to the directory), a nested
        repository, create, modify, delete, move in and out."""
        edit = [{"oldText": "[core]", "newText": FSMONITOR.rstrip("\n")}]
        return [
            ("edit", {"path": ".git/config", "edits": edit}),
            ("edit", {"path": "cfg", "edits": edit}),
            ("edit", {"path": "gitdir/config", "edits": edit}),
            ("edit", {"path": "sub/.git/config", "edits": edit}),
            ("write", {"path": ".git/config", "content": FSMONITOR}),
            ("write", {"path": ".GIT/config", "content": FSMONITOR}),
            ("write", {"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\ntouch pwned\n"}),
            ("write", {"path": f"{self.ws}/.git/config", "content": FSMONITOR}),
            ("write", {"path": "cfg", "content": FSMONITOR}),
            ("write", {"path": "sub/.Git/config", "content": FSMONITOR}),
            ("write", {"path": "other/.git", "content": "gitdir: ../x\n"}),
            ("apply_patch", {"input": patch("*** Add File: .git/hooks/post-checkout", "+x")}),
            ("apply_patch", {"input": patch("*** Delete File: .git/config")}),
            ("apply_patch", {"input": patch("*** Update File: .git/config", "@@", "+x")}),
            (
                "apply_patch",
                {"input": patch("*** Update File: notes.txt", "*** Move to: .git/config")},
            ),
            (
                "apply_patch",
                {"input": patch("*** Update File: .git/config", "*** Move to: moved.txt")},
            ),
        ]

    async def test_ask_and_allowlist_modes_refuse_every_git_write(self) -> None:
        """In allowlist and ask mode every attempt is refused with the reason,
        .git/config is unchanged, and the allowlisted git status runs nothing."""
        for mode in ("allowlist", "ask"):
            tools = self.tools(mode)
            for name, args in self.attempts():
                res = await self.call(tools[name], **args)
                self.assertTrue(res.is_error, (mode, name, args))
                self.assertIn("in a .git directory", res.content, (mode, name, args))
                self.assertIn("tools.exec.mode", res.content)
            with open(self.config) as f:
                self.assertEqual(f.read(), self.original)
            self.assertFalse(os.path.exists(os.path.join(self.ws, "other", ".git")))
            status = await self.call(tools["exec"], command="git status --short")
            self.assertFalse(status.is_error, status.content)
            self.assertFalse(os.path.exists(self.pwned))
            # Everything else in the workspace stays writable.
            ok = await self.call(tools["write"], path=".gitignore", content="*.log\n")
            self.assertFalse(ok.is_error, ok.content)

    async def test_full_mode_leaves_git_to_the_model(self) -> None:
        """In full mode any command runs anyway, so .git is not guarded: the
        edit applies (and git then runs the hook it names)."""
        tools = self.tools("full", ())
        res = await self.call(
            tools["edit"],
            path=".git/config",
            edits=[{"oldText": "[core]", "newText": FSMONITOR.rstrip("\n")}],
        )
        self.assertFalse(res.is_error, res.content)
        await self.call(tools["exec"], command="git status --short")
        self.assertTrue(os.path.exists(self.pwned))
