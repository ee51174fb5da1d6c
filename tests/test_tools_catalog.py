"""The catalog: names, groups, schemas, config mapping, and hostile input for every tool."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.tools._proc import ProcessRegistry
from openclaw.agents.tools.base import ToolContext, ToolResult
from openclaw.agents.tools.catalog import (
    BUILTIN_TOOLS,
    ToolServices,
    ToolSettings,
    build_tools,
    settings_from_config,
    tool_groups,
)
from openclaw.config.model import ExecConfig, SsrfPolicyConfig, WebFetchConfig

HOSTILE: list[Any] = [
    None,
    [],
    "string",
    {
        "path": "\ud800",
        "command": "\ud800",
        "url": "\ud800",
        "query": "\ud800",
        "input": "\ud800",
        "action": "\ud800",
        "sessionKey": "\ud800",
        "search": "\ud800",
        "content": "\ud800",
    },
    {
        "path": "a\x00",
        "command": "a\x00",
        "url": "a\x00",
        "query": "a\x00",
        "input": "a\x00",
        "action": "a\x00",
        "sessionKey": "a\x00",
        "search": "a\x00",
        "content": "a\x00",
        "oldText": "a",
        "newText": 1,
    },
    {
        "path": {"x": 1},
        "command": ["ls"],
        "url": 5,
        "query": 1.5,
        "input": True,
        "action": None,
        "sessionKey": [],
        "limit": "10",
        "offset": -5,
        "maxChars": 1e309,
    },
    {
        "path": "x" * 2_000_000,
        "command": "x" * 2_000_000,
        "url": "x" * 2_000_000,
        "query": "x" * 2_000_000,
        "input": "x" * 20_000_000,
        "action": "x" * 2_000_000,
        "sessionKey": "x" * 2_000_000,
        "search": "x" * 2_000_000,
    },
]


class FakeView:
    def list_sessions(self, agent_id: str) -> list[Any]:
        return []

    def get_session(self, agent_id: str, session_key: str) -> None:
        return None

    def read_messages(
        self, agent_id: str, session_key: str, limit: int = 200, *, include_tools: bool = False
    ) -> list[Any]:
        return []


class CatalogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.services = ToolServices(
            reactor=self.reactor,  # type: ignore[arg-type]
            registry=ProcessRegistry(self.reactor),
            sessions=FakeView(),
            secrets=["tok", ""],
        )

    def test_all_tools_built_with_openclaw_names_and_schemas(self) -> None:
        """Every built-in tool is present under its OpenClaw name with an object schema."""
        tools = build_tools(ToolSettings(), self.services)
        self.assertEqual(tuple(tools), BUILTIN_TOOLS)
        for name, tool in tools.items():
            self.assertEqual(tool.name, name)
            self.assertTrue(tool.description)
            self.assertEqual(tool.parameters["type"], "object")
            json.dumps(tool.parameters)
        self.assertEqual(tools["exec"].parameters["required"], ["command"])
        self.assertEqual(tools["edit"].parameters["required"], ["path", "edits"])
        self.assertIn("timeoutSeconds", tools["exec"].parameters["properties"])

    def test_groups(self) -> None:
        """Group membership follows OpenClaw's tool-policy table."""
        self.assertEqual(tool_groups("read"), ("group:fs",))
        self.assertEqual(tool_groups("exec"), ("group:runtime",))
        self.assertIn("group:web", tool_groups("web_fetch"))
        self.assertIn("group:openclaw", tool_groups("web_fetch"))
        self.assertIn("group:memory", tool_groups("memory_get"))
        self.assertIn("group:sessions", tool_groups("session_status"))

    def test_disabled_and_unwired_tools_left_out(self) -> None:
        """No process without background, no sessions without a view, switches honoured."""
        services = ToolServices(reactor=self.reactor, registry=ProcessRegistry(self.reactor))  # type: ignore[arg-type]
        tools = build_tools(
            ToolSettings(
                background_enabled=False, web_fetch_enabled=False, apply_patch_enabled=False
            ),
            services,
        )
        for name in ("process", "web_fetch", "apply_patch", "sessions_list", "session_status"):
            self.assertNotIn(name, tools)
        self.assertEqual(services.secrets, frozenset())

    def test_settings_from_config(self) -> None:
        """tools.exec / tools.web.fetch values reach the settings."""
        settings = settings_from_config(
            ExecConfig(mode="allowlist", allowlist=("git",), timeout_seconds=60, background_ms=500),
            WebFetchConfig(
                max_chars=1000,
                max_redirects=1,
                ssrf_policy=SsrfPolicyConfig(
                    dangerously_allow_private_network=True, allowed_hostnames=("a.test",)
                ),
            ),
        )
        self.assertEqual(
            (settings.exec_policy.security, settings.exec_policy.ask), ("allowlist", "off")
        )
        self.assertEqual(settings.exec_policy.allowlist, ("git",))
        self.assertEqual(
            (settings.exec_limits.timeout_seconds, settings.exec_limits.yield_ms), (60, 500)
        )
        self.assertEqual(settings.web_fetch_limits.max_chars, 1000)
        self.assertEqual(settings.web_fetch_limits.max_redirects, 1)
        self.assertTrue(settings.ssrf_policy.allow_private_network)
        self.assertEqual(settings.ssrf_policy.allowed_hostnames, frozenset({"a.test"}))

    def test_hostile_input_never_raises(self) -> None:
        """Garbage arguments give every tool a readable tool error, never an exception,
        and nothing is spawned or fetched."""
        ws = os.path.realpath(self.mktemp())
        os.makedirs(ws)
        ctx = ToolContext("main", "agent:main:main", "r", "c", FilePath(ws))
        tools = build_tools(ToolSettings(), self.services)
        for name, tool in tools.items():
            for args in HOSTILE:
                with self.subTest(tool=name, args=repr(args)[:40]):
                    result: ToolResult = self.successResultOf(tool.run(args, ctx))
                    self.assertTrue(result.is_error)
                    self.assertIsInstance(result.content, str)
                    self.assertLess(len(result.content), 2000)
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(os.listdir(ws), [])
