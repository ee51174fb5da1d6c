"""memory_search / memory_get on real files; the session tools through SessionsView."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.tools._common import inline_runner
from openclaw.agents.tools.base import ToolContext, ToolResult
from openclaw.agents.tools.memory import MemoryGetTool, MemorySearchTool
from openclaw.agents.tools.sessions import (
    SessionsHistoryTool,
    SessionsListTool,
    SessionStatusTool,
    SessionsView,
    kind_of,
)
from openclaw.sessions.entry import SessionEntry
from openclaw.sessions.store import SessionStore


def _store_is_a_view(store: SessionStore) -> SessionsView:
    """Typing-only: mypy proves the real store satisfies SessionsView."""
    return store


def ctx(workspace: str, session_key: str = "agent:main:main") -> ToolContext:
    return ToolContext("main", session_key, "r", "c", FilePath(workspace))


class MemoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ws = os.path.realpath(self.mktemp())
        os.makedirs(os.path.join(self.ws, "memory", "imports"))
        files = {
            "MEMORY.md": (
                "# Memory\n\nUser prefers green tea over coffee.\nTimezone: Europe/Paris.\n"
            ),
            "memory/2026-12-01.md": "\n".join(f"filler line {i}" for i in range(30))
            + "\nDeploy key rotation happens on Fridays.\n",
            "memory/imports/old.md": "Green tea order placed with the usual shop.\n",
            "notes.md": "green tea outside the memory corpus\n",
        }
        for name, text in files.items():
            with open(os.path.join(self.ws, name), "w") as f:
                f.write(text)
        outside = os.path.join(os.path.dirname(self.ws), "secret.md")
        with open(outside, "w") as f:
            f.write("green tea secret outside\n")
        os.symlink(outside, os.path.join(self.ws, "memory", "leak.md"))
        self.ctx = ctx(self.ws)

    def call(self, tool: Any, **args: Any) -> ToolResult:
        result: ToolResult = self.successResultOf(tool.run(args, self.ctx))
        return result

    def test_search_ranks_and_locates(self) -> None:
        """Hits come from MEMORY.md and memory/**.md only, best first, with line ranges."""
        res = self.call(MemorySearchTool(inline_runner), query="green tea")
        hits = json.loads(res.content)["results"]
        paths = [h["path"] for h in hits]
        self.assertEqual(set(paths), {"MEMORY.md", "memory/imports/old.md"})
        self.assertEqual(hits[0]["startLine"], 1)
        self.assertIn("green tea", hits[0]["snippet"])
        self.assertGreater(hits[0]["score"], 0.5)
        deep = json.loads(
            self.call(MemorySearchTool(inline_runner), query="rotation Fridays").content
        )
        self.assertEqual(deep["results"][0]["path"], "memory/2026-12-01.md")
        self.assertLessEqual(deep["results"][0]["startLine"], 31)
        self.assertGreaterEqual(deep["results"][0]["endLine"], 31)
        none = json.loads(self.call(MemorySearchTool(inline_runner), query="quantum").content)
        self.assertEqual(none["results"], [])

    def test_search_arguments(self) -> None:
        """Empty queries, bad maxResults/minScore and hostile strings are tool errors."""
        tool = MemorySearchTool(inline_runner)
        for args in (
            {},
            {"query": " "},
            {"query": "x", "maxResults": 0},
            {"query": "x", "minScore": 2},
            {"query": "\ud800"},
            {"query": "x" * 5000},
        ):
            self.assertTrue(self.call(tool, **args).is_error, repr(args)[:50])
        limited = json.loads(self.call(tool, query="tea green line", maxResults=1).content)
        self.assertEqual(len(limited["results"]), 1)

    def test_get_ranges_and_refusals(self) -> None:
        """memory_get reads line ranges of memory files and refuses anything else."""
        tool = MemoryGetTool(inline_runner)
        got = json.loads(self.call(tool, path="MEMORY.md", **{"from": 3, "lines": 1}).content)
        self.assertEqual(got["text"], "User prefers green tea over coffee.")
        whole = json.loads(self.call(tool, path="memory/imports/old.md").content)
        self.assertIn("usual shop", whole["text"])
        for path in (
            "notes.md",
            "memory/leak.md",
            "../secret.md",
            "memory/missing.md",
            "/etc/passwd",
        ):
            res = self.call(tool, path=path)
            self.assertTrue(res.is_error, path)
            self.assertNotIn("secret outside", res.content)


class FakeView:
    def __init__(self) -> None:
        now = int(time.time() * 1000)
        self.entries = [
            SessionEntry(
                "agent:main:main", "main", "s-main", now, {"model": "m1", "totalTokens": 42}
            ),
            SessionEntry("agent:main:cron:nightly", "main", "s-cron", now - 3_600_000 * 48, {}),
            SessionEntry("agent:main:openai:abc", "main", "s-api", now - 1000, {"label": "api"}),
        ]
        self.messages: list[dict[str, Any]] = [
            {"role": "user", "content": "use key sk-abcdef123456 please"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "x" * 5000},
                    {"type": "thinking", "thinking": "secret"},
                ],
            },
            {"role": "toolResult", "toolName": "read", "content": "tool output"},
        ]

    def list_sessions(self, agent_id: str) -> Sequence[SessionEntry]:
        return [e for e in self.entries if e.agent_id == agent_id]

    def get_session(self, agent_id: str, session_key: str) -> SessionEntry | None:
        return next((e for e in self.entries if e.key == session_key), None)

    def read_messages(
        self, agent_id: str, session_key: str, limit: int = 200, *, include_tools: bool = False
    ) -> Sequence[dict[str, Any]]:
        roles = ("user", "assistant", "toolResult") if include_tools else ("user", "assistant")
        return [m for m in self.messages if m.get("role") in roles][-limit:]


class SessionToolsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.view: SessionsView = FakeView()
        self.ctx = ctx(self.mktemp())

    def call(self, tool: Any, **args: Any) -> ToolResult:
        result: ToolResult = self.successResultOf(tool.run(args, self.ctx))
        return result

    def test_list_filters_and_pages(self) -> None:
        """sessions_list filters by kind/recency/search and pages with nextOffset."""
        tool = SessionsListTool(self.view)
        all_rows = json.loads(self.call(tool).content)
        self.assertEqual(all_rows["count"], 3)
        self.assertEqual(
            json.loads(self.call(tool, kinds=["cron"]).content)["sessions"][0]["key"],
            "agent:main:cron:nightly",
        )
        self.assertEqual(json.loads(self.call(tool, activeMinutes=60).content)["count"], 2)
        self.assertEqual(json.loads(self.call(tool, search="API").content)["count"], 1)
        page = json.loads(self.call(tool, limit=2).content)
        self.assertEqual((page["count"], page["hasMore"], page["nextOffset"]), (2, True, 2))
        previews = json.loads(self.call(tool, limit=1, messageLimit=1).content)
        self.assertEqual(len(previews["sessions"][0]["messages"]), 1)
        self.assertTrue(self.call(tool, agentId="other").is_error)
        self.assertTrue(self.call(tool, kinds="main").is_error)
        self.assertTrue(self.call(tool, messageLimit=50).is_error)

    def test_history_is_bounded_and_redacted(self) -> None:
        """sessions_history masks credentials, truncates long text, hides tools by default."""
        tool = SessionsHistoryTool(self.view)
        body = json.loads(self.call(tool, sessionKey="main").content)
        self.assertEqual(body["sessionKey"], "agent:main:main")
        self.assertEqual([m["role"] for m in body["messages"]], ["user", "assistant"])
        self.assertNotIn("sk-abcdef123456", json.dumps(body))
        self.assertTrue(body["contentRedacted"])
        self.assertTrue(body["contentTruncated"])
        self.assertNotIn("thinking", json.dumps(body["messages"][1]))
        with_tools = json.loads(self.call(tool, sessionKey="main", includeTools=True).content)
        self.assertEqual(with_tools["messages"][-1]["toolName"], "read")
        self.assertTrue(self.call(tool, sessionKey="agent:other:main").is_error)
        self.assertTrue(self.call(tool).is_error)

    def test_status(self) -> None:
        """session_status describes the current session by default; overrides are refused."""
        clock = Clock()
        clock.advance(1_767_225_600)  # 2026-01-01 00:00 UTC
        tool = SessionStatusTool(self.view, clock=clock, timezone="UTC")
        res = self.call(tool)
        self.assertIn("Time: Thursday, January 1st, 2026 - 12:00 AM (UTC)", res.content)
        self.assertIn("Session id: s-main", res.content)
        self.assertIn("Model: m1", res.content)
        self.assertTrue(self.call(tool, sessionKey="nope").is_error)
        self.assertTrue(self.call(tool, model="gpt").is_error)

    def test_kinds(self) -> None:
        """Session keys classify into OpenClaw's kinds."""
        self.assertEqual(kind_of("agent:main:main"), "main")
        self.assertEqual(kind_of("agent:main:discord:group:1"), "group")
        self.assertEqual(kind_of("agent:main:hook:x"), "hook")
        self.assertEqual(kind_of("agent:main:openai:u"), "other")
