"""Acceptance (issue 11): bootstrap files under a small total budget.

When ``bootstrapTotalMaxChars`` was nearly spent, the next file was injected
as its truncation marker alone (the marker is longer than what was left), so
the prompt carried an empty ``## SOUL.md`` section that said it was cut, and
the total went over the budget. Such a file is now left out.
"""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.workspace import MIN_TRUNCATED_CHARS, load_bootstrap_files


class SpentBudgetTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ws = Path(self.mktemp())
        self.ws.mkdir()
        for name in ("AGENTS.md", "SOUL.md", "IDENTITY.md"):
            (self.ws / name).write_text(name[0] * 640)

    def load(self, total: int) -> dict[str, str]:
        files = load_bootstrap_files(
            self.ws, main_session=False, max_chars=20_000, total_max_chars=total
        )
        self.omitted = [f.name for f in files if f.omitted]
        return {f.name: f.content for f in files if not f.omitted}

    def test_nearly_spent_budget_leaves_the_next_file_out(self) -> None:
        """AGENTS.md takes 640 of 700 characters: SOUL.md (which would get 60)
        and IDENTITY.md are left out, and the total stays within the budget."""
        files = self.load(700)
        self.assertEqual(list(files), ["AGENTS.md"])
        self.assertEqual(self.omitted, ["SOUL.md", "IDENTITY.md"])  # named by the notice
        self.assertLessEqual(sum(len(c) for c in files.values()), 700)

    def test_enough_left_for_a_useful_cut(self) -> None:
        """With MIN_TRUNCATED_CHARS or more left, the next file is cut to fit,
        showing its head and tail around the marker."""
        files = self.load(640 + MIN_TRUNCATED_CHARS)
        self.assertEqual(list(files), ["AGENTS.md", "SOUL.md"])
        self.assertEqual(len(files["SOUL.md"]), MIN_TRUNCATED_CHARS)
        self.assertTrue(files["SOUL.md"].startswith("SSS"))
        self.assertIn("SOUL.md truncated", files["SOUL.md"])

    def test_a_short_file_that_fits_is_kept_whole(self) -> None:
        """A file shorter than what is left is injected whole, however little is left."""
        (self.ws / "SOUL.md").write_text("be kind")
        files = self.load(660)
        self.assertEqual(files["SOUL.md"], "be kind")
