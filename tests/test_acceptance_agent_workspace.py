"""Acceptance (issue 11): bootstrap files under a small total budget.

When ``bootstrapTotalMaxChars`` was nearly spent, the next file was injected
as its truncation marker alone (the marker is longer than what was left), so
the prompt carried an empty ``## SOUL.md`` section that said it was cut, and
the total went over the budget. As in OpenClaw, once less than 64 characters
are left, that file and the ones after it are left out (the prompt's notice
names them); with 64 or more, the file is cut with a marker that fits.
"""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.workspace import MIN_FILE_BUDGET_CHARS, load_bootstrap_files


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
        """With 64 characters left (OpenClaw's MIN_BOOTSTRAP_FILE_BUDGET_CHARS),
        the next file is cut to fit: its head and tail around OpenClaw's short
        marker (the long one would leave no room for the text)."""
        self.assertEqual(MIN_FILE_BUDGET_CHARS, 64)
        files = self.load(640 + 64)
        self.assertEqual(list(files), ["AGENTS.md", "SOUL.md"])
        self.assertEqual(files["SOUL.md"], "S" * 31 + "[…truncated 31+10/640]" + "S" * 10)

    def test_a_file_that_fits_is_kept_whole_with_64_left(self) -> None:
        """A file shorter than what is left is injected whole once 64 or more
        characters are left; with less, it is left out as OpenClaw does."""
        (self.ws / "SOUL.md").write_text("be kind")
        files = self.load(640 + 64)
        self.assertEqual(files["SOUL.md"], "be kind")
        files = self.load(640 + 63)
        self.assertEqual(list(files), ["AGENTS.md"])
        self.assertEqual(self.omitted, ["SOUL.md", "IDENTITY.md"])
