"""The real ``exec`` tool in allowlist mode, for the allowlist's tests.

:class:`ExecToolCase` gives each test a workspace (``<base>/workspace``), a
home beside it, a process registry stopped at cleanup, and :meth:`make` /
:meth:`call` / :meth:`write` to drive the tools as the model does.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from openclaw.agents.tools._common import inline_runner
from openclaw.agents.tools._proc import ProcessRegistry
from openclaw.agents.tools.base import ToolContext, ToolResult
from openclaw.agents.tools.exec import ExecTool
from openclaw.agents.tools.files import WriteTool
from openclaw.agents.tools.policy import DEFAULT_SAFE_BINS, ExecPolicy

#: What the policy says when it refuses a command.
DENIED = "not on the exec allowlist"


class ExecToolCase(TestCase):
    """A workspace and exec tools with the default safe bins (override
    :attr:`safe_bins`); commands get :attr:`env` (``HOME`` is the case's home)."""

    safe_bins: tuple[str, ...] = DEFAULT_SAFE_BINS

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.base = os.path.realpath(self.mktemp())
        self.ws = os.path.join(self.base, "workspace")
        os.makedirs(self.ws)
        # The gateway user's home (HOME is passed through to commands).
        self.home = os.path.join(self.base, "home")
        os.makedirs(self.home)
        self.env = {"PATH": "/usr/bin:/bin", "HOME": self.home, "LANG": "C.UTF-8"}
        self.pwned = os.path.join(self.ws, "pwned")
        self.ctx = ToolContext(
            agent_id="main",
            session_key="agent:main:main",
            run_id="r1",
            tool_call_id="c1",
            workspace=FilePath(self.ws),
        )
        self.registry = ProcessRegistry(reactor)
        self.tools: list[ExecTool] = []
        self.addCleanup(lambda: Deferred.fromCoroutine(self._cleanup()))

    async def _cleanup(self) -> None:
        for tool in self.tools:
            await tool.stop_all()
        for d in self.registry.stop_all():
            await d

    def make(
        self,
        *allowlist: str,
        safe_bins: tuple[str, ...] | None = None,
        base_env: dict[str, str] | None = None,
        **tool_options: Any,
    ) -> ExecTool:
        """An exec tool in allowlist mode (``ask: off``) with ``allowlist``."""
        policy = ExecPolicy(
            security="allowlist",
            ask="off",
            allowlist=allowlist,
            safe_bins=self.safe_bins if safe_bins is None else safe_bins,
        )
        tool = ExecTool(
            self.reactor,  # type: ignore[arg-type]
            self.registry,
            policy=policy,
            base_env=base_env or self.env,
            **tool_options,
        )
        self.tools.append(tool)
        return tool

    async def call(self, tool: ExecTool, command: str, **args: Any) -> ToolResult:
        result: ToolResult = await tool.run({"command": command, **args}, self.ctx)
        return result

    def write(self, path: str, content: str = "") -> None:
        """The model's ``write`` tool (confined to the workspace)."""
        res = WriteTool(inline_runner).run({"path": path, "content": content}, self.ctx)
        out: list[ToolResult] = []
        res.addCallback(out.append)
        self.assertFalse(out[0].is_error, out[0].content)
