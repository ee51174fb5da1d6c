"""The system prompt renderer (openclaw.agents.system_prompt)."""

from __future__ import annotations

from pathlib import Path

from attrs import frozen
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.skills import Skill
from openclaw.agents.system_prompt import (
    IDENTITY_LINE,
    PromptTool,
    RuntimeInfo,
    build_system_prompt,
    host_facts,
    tool_summaries,
)
from openclaw.agents.user_time import resolve_timezone
from openclaw.agents.workspace import BootstrapFile

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RUNTIME = RuntimeInfo(agent_id="main", host="box", os="Linux", arch="x86_64", model="demo/echo")
TOOLS = (
    PromptTool("read", "Read a file"),
    PromptTool("exec", "Run a shell command"),
    PromptTool("process", "Manage background commands"),
    PromptTool("memory_search", "Search memory"),
)


@frozen
class _Tool:
    name: str
    description: str


def files() -> tuple[BootstrapFile, ...]:
    return (
        BootstrapFile("AGENTS.md", Path("/ws/AGENTS.md"), "be tidy"),
        BootstrapFile("SOUL.md", Path("/ws/SOUL.md"), "[MISSING] Expected at: /ws/SOUL.md", True),
        BootstrapFile("USER.md", Path("/ws/USER.md"), "likes tea", truncated=True),
    )


def order(prompt: str, *markers: str) -> list[int]:
    return [prompt.index(m) for m in markers]


class PromptTests(SynchronousTestCase):
    def test_sections_in_openclaw_order(self) -> None:
        """Identity, instructions, tooling, safety, skills, memory, workspace, project
        context, date, conversation context and runtime appear in that order."""
        prompt = build_system_prompt(
            runtime=RUNTIME,
            now=NOW,
            tools=TOOLS,
            workspace="/ws",
            bootstrap_files=files(),
            skills=(Skill("hello", "Say hi", Path("/ws/skills/hello/SKILL.md")),),
            agent_instructions="Answer in French.",
            extra_system_prompt="You are talking to a CLI user.",
            timezone="UTC",
        )
        positions = order(
            prompt,
            IDENTITY_LINE,
            "## Agent Instructions\nAnswer in French.",
            "## Tooling",
            "## Safety",
            "## Skills",
            "## Memory Recall",
            "## Workspace\nWorking directory: /ws",
            "# Project Context",
            "## AGENTS.md\n\nbe tidy",
            "## Temporal Context",
            "## Conversation Context\nYou are talking to a CLI user.",
            "## Runtime",
        )
        self.assertEqual(positions, sorted(positions))
        self.assertIn("- read: Read a file", prompt)
        self.assertIn("`process`", prompt)

    def test_client_text_is_added_never_replacing(self) -> None:
        """The client's system text is a section; the agent's own prompt stays."""
        prompt = build_system_prompt(runtime=RUNTIME, now=NOW, extra_system_prompt="Be brief.")
        self.assertTrue(prompt.startswith(IDENTITY_LINE))
        self.assertIn("## Conversation Context\nBe brief.", prompt)
        minimal = build_system_prompt(
            runtime=RUNTIME, now=NOW, extra_system_prompt="Be brief.", mode="minimal"
        )
        self.assertIn("## Subagent Context\nBe brief.", minimal)

    def test_missing_marker_and_truncation_notice(self) -> None:
        """Missing files show their marker; truncation adds the notice."""
        prompt = build_system_prompt(runtime=RUNTIME, now=NOW, bootstrap_files=files())
        self.assertIn("## SOUL.md\n\n[MISSING] Expected at: /ws/SOUL.md", prompt)
        self.assertIn("## Bootstrap Context Notice", prompt)
        self.assertIn("USER.md holds", prompt)
        self.assertNotIn("SOUL.md is your persona", prompt)

    def test_bootstrap_pending(self) -> None:
        """A present BOOTSTRAP.md adds the Bootstrap Pending section."""
        pending = (BootstrapFile("BOOTSTRAP.md", Path("/ws/BOOTSTRAP.md"), "ritual"),)
        prompt = build_system_prompt(runtime=RUNTIME, now=NOW, bootstrap_files=pending)
        self.assertIn("## Bootstrap Pending", prompt)
        self.assertNotIn("## Bootstrap Context Notice", prompt)

    def test_no_tools_no_tooling_and_no_skills_without_read(self) -> None:
        """Without tools there is no Tooling section; skills need the read tool."""
        skills = (Skill("hello", "Say hi", Path("/s/SKILL.md")),)
        prompt = build_system_prompt(runtime=RUNTIME, now=NOW, skills=skills)
        self.assertNotIn("## Tooling", prompt)
        self.assertNotIn("## Skills", prompt)
        self.assertNotIn("## Memory Recall", prompt)

    def test_skills_are_escaped_and_budgeted(self) -> None:
        """Skill fields are XML-escaped; over budget, descriptions go, then skills."""
        skills = tuple(
            Skill(f"s{i}", "uses <tags> & more " * 5, Path(f"/ws/skills/s{i}/SKILL.md"))
            for i in range(20)
        )
        tools = (PromptTool("read", "Read a file"),)
        full = build_system_prompt(runtime=RUNTIME, now=NOW, tools=tools, skills=skills)
        self.assertIn("uses &lt;tags&gt; &amp; more", full)
        compact = build_system_prompt(
            runtime=RUNTIME, now=NOW, tools=tools, skills=skills, skills_max_chars=2500
        )
        self.assertNotIn("<description>", compact)
        self.assertIn("<name>s19</name>", compact)
        cut = build_system_prompt(
            runtime=RUNTIME, now=NOW, tools=tools, skills=skills, skills_max_chars=500
        )
        self.assertIn("of 20 skills are listed", cut)
        self.assertNotIn("<name>s19</name>", cut)

    def test_date_in_the_configured_zone(self) -> None:
        """The date line uses the configured IANA zone."""
        prompt = build_system_prompt(runtime=RUNTIME, now=NOW, timezone="America/Chicago")
        self.assertIn(
            "## Temporal Context\nCurrent date: 2025-12-31 (Wednesday)\n"
            "Time zone: America/Chicago (UTC-0600)\n",
            prompt,
        )
        utc = build_system_prompt(runtime=RUNTIME, now=NOW, timezone="UTC")
        self.assertIn("Current date: 2026-01-01 (Thursday)\nTime zone: UTC (UTC+0000)", utc)
        # No clock: the prompt is the same all day (a provider's prompt cache holds).
        later = build_system_prompt(runtime=RUNTIME, now=NOW + 3 * 3600, timezone="UTC")
        self.assertEqual(later, utc)

    def test_unknown_zone_falls_back_to_host(self) -> None:
        """An unknown zone name does not fail: the host's zone is used."""
        self.assertIsNotNone(resolve_timezone("Not/AZone"))
        build_system_prompt(runtime=RUNTIME, now=NOW, timezone="Not/AZone")

    def test_runtime_line(self) -> None:
        """The runtime line lists the set facts only, default model only when different."""
        info = RuntimeInfo(
            agent_id="main", os="Linux", arch="arm64", model="a/b", default_model="a/b"
        )
        self.assertEqual(info.line(), "Runtime: agent=main | os=Linux (arm64) | model=a/b")
        other = RuntimeInfo(agent_id="ops", model="a/c", default_model="a/b", channel="webchat")
        self.assertEqual(
            other.line(), "Runtime: agent=ops | model=a/c | default_model=a/b | channel=webchat"
        )
        self.assertIn(
            "Runtime: agent=main | host=box", build_system_prompt(runtime=RUNTIME, now=NOW)
        )

    def test_none_mode(self) -> None:
        """Mode none is the identity line alone."""
        self.assertEqual(build_system_prompt(runtime=RUNTIME, now=NOW, mode="none"), IDENTITY_LINE)

    def test_tool_summaries_and_host_facts(self) -> None:
        """Summaries are the first description line; host facts are filled in."""
        tool = _Tool("x", "First line.\nMore detail.")
        self.assertEqual(
            tool_summaries([tool, _Tool("y", "")]),
            (
                PromptTool("x", "First line."),
                PromptTool("y", ""),
            ),
        )
        self.assertEqual(set(host_facts()), {"host", "os", "arch", "python"})

    def test_deterministic(self) -> None:
        """Same inputs, same prompt (prefix caches can reuse it)."""
        a = build_system_prompt(runtime=RUNTIME, now=NOW, tools=TOOLS, bootstrap_files=files())
        b = build_system_prompt(runtime=RUNTIME, now=NOW, tools=TOOLS, bootstrap_files=files())
        self.assertEqual(a, b)
