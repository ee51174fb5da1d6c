"""``make_private_dirs``: every directory it creates is 0700, parents included."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from openclaw.core.private_dirs import make_private_dirs
from openclaw.sessions.fileio import append_lines


class PrivateDirsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = Path(self.mktemp())
        self.base.mkdir()
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)

    def test_each_created_level_is_private_and_existing_ones_are_kept(self) -> None:
        """Missing levels are made 0700; a directory that existed keeps its mode;
        a second call is a no-op."""
        shared = self.base / "shared"
        shared.mkdir(mode=0o755)
        target = shared / "state" / "agents" / "main"
        make_private_dirs(target)
        make_private_dirs(target)
        self.assertEqual(shared.stat().st_mode & 0o777, 0o755)
        for level in (shared / "state", shared / "state" / "agents", target):
            self.assertEqual(level.stat().st_mode & 0o777, 0o700, level)

    def test_a_file_in_the_way_is_an_error(self) -> None:
        """A file where a directory should be is not silently accepted."""
        (self.base / "state").write_text("not a directory")
        self.assertRaises(OSError, make_private_dirs, self.base / "state" / "agents")

    def test_first_transcript_makes_a_private_state_dir(self) -> None:
        """The session store's first write creates the state directory and its
        agent directories 0700, not 0755 (what ``mkdir -p`` gives parents)."""
        state = self.base / "state"
        path = state / "agents" / "main" / "sessions" / "s.jsonl"
        fd, _ = append_lines(path, b"{}\n", [b"{}\n"], False)
        os.close(fd)
        for level in (state, state / "agents", state / "agents" / "main", path.parent):
            self.assertEqual(level.stat().st_mode & 0o777, 0o700, level)
