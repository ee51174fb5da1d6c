"""The toolbox: an agent's tools as the tool policy leaves them, run for real."""

from __future__ import annotations

import os

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from openclaw.agents.toolbox import Toolbox
from openclaw.agents.tools._proc import ProcessRegistry
from openclaw.agents.tools.base import ToolContext, ToolResult
from openclaw.agents.tools.catalog import ToolServices
from openclaw.config.model import (
    AgentConfig,
    AgentToolsConfig,
    Config,
    ToolPolicyConfig,
    ToolsConfig,
)


class ExecWithoutProcessTests(TestCase):
    """OpenClaw: "If process is disallowed, exec runs synchronously and ignores
    yieldMs/background" (nobody could read a backgrounded command's output)."""

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.registry = ProcessRegistry(reactor)
        self.services = ToolServices(reactor=reactor, registry=self.registry)  # type: ignore[arg-type]
        ws = os.path.realpath(self.mktemp())
        os.makedirs(ws)
        self.ctx = ToolContext("main", "agent:main:main", "r1", "c1", FilePath(ws))
        self.addCleanup(lambda: Deferred.fromCoroutine(self._cleanup()))

    async def _cleanup(self) -> None:
        for d in self.registry.stop_all():
            await d

    async def _exec(
        self, toolbox: Toolbox, entry: AgentConfig | None, **args: object
    ) -> ToolResult:
        tool = toolbox.for_agent(entry.id if entry else "main", entry).tools["exec"]
        result: ToolResult = await tool.run(args, self.ctx)
        return result

    async def test_exec_waits_when_the_agent_policy_drops_process(self) -> None:
        """An agent allowed ``read`` and ``bash`` only: yieldMs and background are
        ignored and the call returns the command's output."""
        entry = AgentConfig(
            id="main", tools=AgentToolsConfig(policy=ToolPolicyConfig(allow=("read", "bash")))
        )
        toolbox = Toolbox(Config(), self.services)
        tools = toolbox.for_agent("main", entry)
        self.assertEqual(set(tools.tools), {"read", "exec"})
        # What the model is shown says so: no background fields, no process tool.
        (schema,) = [t for t in tools.schemas if t.name == "exec"]
        assert schema.parameters is not None
        self.assertNotIn("yieldMs", schema.parameters["properties"])
        self.assertNotIn("background", schema.parameters["properties"])
        self.assertNotIn("process", schema.description)
        self.assertIn("wait for it to finish", schema.description)
        waited = await self._exec(toolbox, entry, command="sleep 0.1; echo waited", yieldMs=10)
        self.assertEqual(
            (waited.content.strip(), waited.details["status"]), ("waited", "completed")
        )
        bg = await self._exec(toolbox, entry, command="echo bg", background=True)
        self.assertEqual((bg.content.strip(), bg.details["status"]), ("bg", "completed"))
        self.assertEqual(self.registry.for_agent("main"), [])

    async def test_exec_waits_when_the_global_policy_denies_process(self) -> None:
        """The same through ``tools.deny`` of the global scope."""
        config = evolve(Config(), tools=ToolsConfig(policy=ToolPolicyConfig(deny=("process",))))
        bg = await self._exec(
            Toolbox(config, self.services), None, command="echo bg", background=True
        )
        self.assertEqual((bg.content.strip(), bg.details["status"]), ("bg", "completed"))

    async def test_exec_still_backgrounds_when_process_is_allowed(self) -> None:
        """With process offered, background: true hands the command over at once."""
        toolbox = Toolbox(Config(), self.services)
        tools = toolbox.for_agent("main", None)
        self.assertIn("process", tools.tools)
        (schema,) = [t for t in tools.schemas if t.name == "exec"]
        assert schema.parameters is not None
        self.assertIn("background", schema.parameters["properties"])
        res = await self._exec(toolbox, None, command="sleep 1000", background=True)
        self.assertEqual(res.details["status"], "running")
