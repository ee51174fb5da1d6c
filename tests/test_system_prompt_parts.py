"""The system prompt kept as a shared head and a per-run tail (issue 16 memory)."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.system_prompt import (
    IDENTITY_LINE,
    PromptTool,
    RuntimeInfo,
    build_system_prompt,
    system_prompt_parts,
)
from openclaw.agents.workspace import BootstrapFile

TOOLS = (PromptTool("read", "Read a file"), PromptTool("exec", "Run a command"))
FILES = (BootstrapFile("AGENTS.md", Path("/w/AGENTS.md"), "Be careful.\n"),)


def _parts(session: str, extra: str | None = None) -> tuple[str, str, str]:
    kwargs = {
        "now": 1_765_000_000.0,
        "tools": TOOLS,
        "workspace": "/w",
        "bootstrap_files": FILES,
        "extra_system_prompt": extra,
        "timezone": "UTC",
    }
    runtime = RuntimeInfo(agent_id="main", session_key=session)
    parts = system_prompt_parts(runtime=runtime, **kwargs)  # type: ignore[arg-type]
    whole = build_system_prompt(runtime=runtime, **kwargs)  # type: ignore[arg-type]
    return parts.head, parts.text(), whole


class SystemPromptPartsTests(SynchronousTestCase):
    def test_runs_share_one_head(self) -> None:
        """Two runs of one agent (different sessions) hold the same head
        object; only their tails, with the session key, differ."""
        head_a, text_a, _ = _parts("openai:a")
        head_b, text_b, _ = _parts("openai:b")
        self.assertIs(head_a, head_b)
        self.assertIn("session=openai:a", text_a)
        self.assertIn("session=openai:b", text_b)
        self.assertNotEqual(text_a, text_b)

    def test_text_is_the_rendered_prompt(self) -> None:
        """Joined, the parts are exactly what build_system_prompt renders,
        with and without a conversation context."""
        for extra in (None, "  the client's own system text  "):
            head, text, whole = _parts("k", extra)
            self.assertEqual(text, whole)
            self.assertTrue(text.startswith(head + "\n## Temporal Context\n"))
            self.assertTrue(text.endswith("session=k\n"))

    def test_mode_none_is_the_identity_line(self) -> None:
        """Mode none is the identity line alone, as before."""
        parts = system_prompt_parts(runtime=RuntimeInfo(agent_id="main"), now=0.0, mode="none")
        self.assertEqual(parts.text(), IDENTITY_LINE)
