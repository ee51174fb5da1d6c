"""Exec allowlist path patterns match the program that really runs (real subprocesses).

The reviewer's repro: with ``/usr/local/bin/*`` allowed,
``/usr/local/bin/../../bin/sh -c id`` ran, in allowlist and in ask mode
without asking. Patterns are now matched against the real path of the program
(``..``, ``.``, ``//`` and symlinks resolved), and ``*`` stays within a
directory, as in OpenClaw.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.agents.tools._proc import ProcessRegistry
from openclaw.agents.tools.base import ToolContext, ToolResult
from openclaw.agents.tools.exec import ExecTool
from openclaw.agents.tools.exec_match import matches_path_pattern, resolve_program
from openclaw.agents.tools.exec_policy import ApprovalRequest, NoApproverError
from openclaw.agents.tools.policy import ExecPolicy

BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LANG": "C.UTF-8"}


def script(path: str, body: str) -> None:
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\n{body}\n")
    os.chmod(path, 0o755)


class AllowlistPathTests(TestCase):
    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        root = os.path.realpath(self.mktemp())
        self.tools = os.path.join(root, "tools")
        self.bin = os.path.join(self.tools, "bin")
        os.makedirs(os.path.join(self.bin, "sub"))
        os.makedirs(os.path.join(self.tools, "other"))
        self.ws = os.path.join(root, "ws")
        os.makedirs(self.ws)
        script(os.path.join(self.bin, "hello"), "echo hello-from-bin")
        script(os.path.join(self.bin, "sub", "deep"), "echo deep")
        # Anything outside the allowed directory leaves a marker in the workspace.
        script(os.path.join(self.tools, "other", "evil"), 'touch "$PWD/pwned"; echo evil')
        os.symlink("/bin/sh", os.path.join(self.bin, "sh-link"))
        os.symlink(os.path.join(self.tools, "other", "evil"), os.path.join(self.bin, "evil-link"))
        os.symlink(os.path.join(self.bin, "hello"), os.path.join(self.ws, "hello-link"))
        os.symlink(self.bin, os.path.join(root, "bin-link"))
        # <bin>/inner-link/../hello reads as <bin>/hello but runs other/hello.
        os.makedirs(os.path.join(self.tools, "other", "inner"))
        script(os.path.join(self.tools, "other", "hello"), 'touch "$PWD/pwned"; echo evil')
        os.symlink(os.path.join(self.tools, "other", "inner"), os.path.join(self.bin, "inner-link"))
        self.root = root
        self.pwned = os.path.join(self.ws, "pwned")
        self.ctx = ToolContext(
            agent_id="main",
            session_key="agent:main:main",
            run_id="r1",
            tool_call_id="c1",
            workspace=FilePath(self.ws),
        )
        self.registry = ProcessRegistry(reactor)
        self.tools_made: list[ExecTool] = []
        self.addCleanup(lambda: Deferred.fromCoroutine(self._cleanup()))

    async def _cleanup(self) -> None:
        for tool in self.tools_made:
            await tool.stop_all()
        for d in self.registry.stop_all():
            await d

    def make(self, policy: ExecPolicy, **kw: Any) -> ExecTool:
        tool = ExecTool(self.reactor, self.registry, policy=policy, base_env=BASE_ENV, **kw)  # type: ignore[arg-type]
        self.tools_made.append(tool)
        return tool

    async def call(self, tool: ExecTool, command: str, **args: Any) -> ToolResult:
        result: ToolResult = await tool.run({"command": command, **args}, self.ctx)
        return result

    def escapes(self) -> list[str]:
        """Ways out of ``<bin>/*``: ``..`` in any spelling, subdirectories,
        symlinks inside the allowed directory that lead elsewhere."""
        up_to_root = "../" * len(self.bin.strip("/").split("/"))
        return [
            f"{self.bin}/../other/evil",
            f"{self.bin}/./../other/evil",
            f"{self.bin}//../other/evil",
            f"{self.bin}/sub/../../other/evil",
            f"{self.bin}/sub/deep",
            f"{self.bin}/evil-link",
            f"{self.bin}/sh-link -c 'touch pwned'",
            f"{self.bin}/{up_to_root}bin/sh -c 'touch pwned'",
            f"{self.bin}/inner-link/../hello",  # normpath would say <bin>/hello
        ]

    def runs_in_bin(self) -> list[str]:
        """Spellings of a program that really is in ``<bin>``."""
        return [
            f"{self.bin}/hello",
            f"{self.bin}/./hello",
            f"{self.bin}//hello",
            f"{self.tools}/other/../bin/hello",
            f"{self.root}/bin-link/hello",
            "./hello-link",  # a symlink elsewhere whose target is in <bin>
            "../tools/bin/hello",  # relative to the command's working directory
        ]

    async def test_allowlist_mode_runs_only_what_really_lies_in_the_directory(self) -> None:
        """In allowlist mode every ``..``/``.``/``//``/subdirectory/symlink escape
        is refused without running; every spelling of a program in the
        directory runs."""
        tool = self.make(ExecPolicy(security="allowlist", ask="off", allowlist=(f"{self.bin}/*",)))
        for command in self.escapes():
            res = await self.call(tool, command)
            self.assertTrue(res.is_error, command)
            self.assertIn("not on the exec allowlist", res.content, command)
        self.assertFalse(os.path.exists(self.pwned))
        for command in self.runs_in_bin():
            res = await self.call(tool, command)
            self.assertEqual(res.content.strip(), "hello-from-bin", command)

    async def test_ask_mode_asks_for_every_escape(self) -> None:
        """In ask mode an escape is no allowlist match: the operator is asked
        (and refuses), and with no operator connected it is denied; a real
        match runs without asking."""
        asked: list[str] = []

        def refuse(request: ApprovalRequest) -> Deferred[bool]:
            asked.append(request.command)
            return succeed(False)

        policy = ExecPolicy(security="allowlist", ask="on-miss", allowlist=(f"{self.bin}/*",))
        tool = self.make(policy, approver=refuse)
        for command in self.escapes():
            res = await self.call(tool, command)
            self.assertIn("denied by operator", res.content, command)
        self.assertEqual(asked, self.escapes())

        def nobody(request: ApprovalRequest) -> Deferred[bool]:
            return fail(NoApproverError())

        alone = self.make(policy, approver=nobody)
        for command in self.escapes():
            res = await self.call(alone, command)
            self.assertIn("no operator client is connected", res.content, command)
        self.assertFalse(os.path.exists(self.pwned))
        res = await self.call(tool, f"{self.bin}/../bin/hello")
        self.assertEqual(res.content.strip(), "hello-from-bin")
        self.assertEqual(len(asked), len(self.escapes()))

    async def test_double_star_crosses_directories_and_nothing_else(self) -> None:
        """``<tools>/bin/**`` covers subdirectories, still not a ``..`` way out."""
        tool = self.make(ExecPolicy(security="allowlist", ask="off", allowlist=(f"{self.bin}/**",)))
        self.assertEqual((await self.call(tool, f"{self.bin}/sub/deep")).content.strip(), "deep")
        res = await self.call(tool, f"{self.bin}/sub/../../other/evil")
        self.assertIn("not on the exec allowlist", res.content)
        self.assertFalse(os.path.exists(self.pwned))

    async def test_bare_names_resolve_on_the_command_path(self) -> None:
        """A bare name is looked up on the command's PATH and judged by its real
        path: ``hello`` from ``<bin>`` runs, ``evil`` from another directory on
        PATH does not."""
        tool = self.make(
            ExecPolicy(security="allowlist", ask="off", allowlist=(f"{self.bin}/*",)),
            path_prepend=[self.bin, os.path.join(self.tools, "other")],
        )
        self.assertEqual((await self.call(tool, "hello")).content.strip(), "hello-from-bin")
        res = await self.call(tool, "evil")
        self.assertIn("not on the exec allowlist", res.content)
        self.assertFalse(os.path.exists(self.pwned))


class MatchUnitTests(SynchronousTestCase):
    def test_star_stays_within_a_segment(self) -> None:
        """``*`` and ``?`` do not cross ``/``; ``**`` does; other characters are literal."""
        self.assertTrue(matches_path_pattern("/opt/t/*", "/opt/t/rg"))
        self.assertFalse(matches_path_pattern("/opt/t/*", "/opt/t/sub/rg"))
        self.assertTrue(matches_path_pattern("/opt/**/rg", "/opt/t/sub/rg"))
        self.assertFalse(matches_path_pattern("/opt/t/r?", "/opt/t/r/"))
        self.assertFalse(matches_path_pattern("/opt/t/[r]g", "/opt/t/rg"))
        self.assertFalse(matches_path_pattern("bin/*", "/opt/bin/rg"))

    def test_words_the_shell_expands_resolve_to_nothing(self) -> None:
        """``$``, globs, braces and ``~user`` cannot be resolved, so never match."""
        for word in ("$HOME/x", "/bin/s?", "/bin/s*", "/bin/{sh,ls}", "~root/x", "/bin/[s]h"):
            self.assertIsNone(resolve_program(word, cwd="/", search_path="/bin", home="/tmp"))
        self.assertEqual(
            resolve_program("sh", cwd="/", search_path="/nonexistent:/bin", home=None),
            os.path.realpath("/bin/sh"),
        )
