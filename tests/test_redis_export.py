"""``openclaw sessions import|export`` against a real ``redis-server``.

A layout written by the file store (OpenClaw's on-disk shape) goes into
Redis and comes back out identical; the CLI runs as a real process.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.core.types import Usage
from openclaw.sessions.fileio import InlineIO
from openclaw.sessions.redis.keys import KeySchema
from openclaw.sessions.store import SessionStore
from tests.gateway_process import VENV_BIN
from tests.redis_support import RedisServer


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "openclaw"), *args], capture_output=True, text=True, timeout=60
    )


def layout(root: Path) -> dict[str, Any]:
    """sessions.json and every transcript's parsed lines, per agent."""
    out: dict[str, Any] = {}
    for directory in sorted((root / "agents").glob("*/sessions")):
        index = json.loads((directory / "sessions.json").read_text())
        out[directory.parent.name] = {
            "index": index,
            "transcripts": {
                entry["sessionId"]: [
                    json.loads(line)
                    for line in (directory / f"{entry['sessionId']}.jsonl").read_text().splitlines()
                ]
                for entry in index.values()
            },
        }
    return out


class SessionsExportImportTests(SynchronousTestCase):
    """The file layout -> Redis -> the file layout."""

    def setUp(self) -> None:
        self.server = RedisServer()
        self.server.start()
        self.addCleanup(self.server.cleanup)
        self.root = Path(self.mktemp())
        self.root.mkdir()
        self.config = self.root / "openclaw.json"
        self.config.write_text(
            json.dumps(
                {"session": {"store": "redis"}, "gateway": {"redis": {"url": self.server.url}}}
            )
        )

    def write_file_layout(self, state: Path) -> None:
        store = SessionStore(state, clock=Clock(), io=InlineIO(), index_flush_delay=0)
        for agent, key in (
            ("main", "agent:main:one"),
            ("main", "agent:main:two"),
            ("ops", "agent:ops:x"),
        ):
            entry = store.ensure_session(agent, key)
            for n in range(2):
                store.append_user(
                    agent, entry.session_id, run_id=f"r{n}", text=f"q{n} ü", timestamp=1000 + n
                )
                store.finish_turn(
                    agent,
                    key,
                    entry.session_id,
                    run_id=f"r{n}",
                    text=f"a{n}",
                    timestamp=1001 + n,
                    usage=Usage(input=3, output=4, total=7),
                    stop_reason="stop",
                )
        store.flush()

    def test_round_trip_keeps_index_and_transcripts(self) -> None:
        """Import then export gives back the same sessions.json entries and the
        same transcript lines, for every agent."""
        source, target = self.root / "from", self.root / "to"
        self.write_file_layout(source)
        imported = run_cli(
            "sessions", "import", "--from", str(source), "--config", str(self.config)
        )
        self.assertEqual(imported.returncode, 0, imported.stderr)
        self.assertIn("imported 3 sessions", imported.stdout)
        exported = run_cli("sessions", "export", "--to", str(target), "--config", str(self.config))
        self.assertEqual(exported.returncode, 0, exported.stderr)
        self.assertIn("exported 3 sessions", exported.stdout)
        self.assertEqual(layout(target), layout(source))

    def test_existing_sessions_are_kept_unless_replace(self) -> None:
        """A second import skips what Redis has; --replace overwrites it."""
        source = self.root / "from"
        self.write_file_layout(source)
        run_cli("sessions", "import", "--from", str(source), "--config", str(self.config))
        again = run_cli("sessions", "import", "--from", str(source), "--config", str(self.config))
        self.assertIn("imported 0 sessions", again.stdout)
        self.assertIn("3 skipped", again.stdout)
        forced = run_cli(
            "sessions", "import", "--from", str(source), "--replace", "--config", str(self.config)
        )
        self.assertIn("imported 3 sessions", forced.stdout)

    def test_a_key_of_the_wrong_type_leaves_out_only_its_session(self) -> None:
        """A transcript key holding a string (WRONGTYPE) does not abort the
        export: that session is left out and named with its key, sessions.json
        lists the others, every other transcript is written, exit status 0."""
        source, target = self.root / "from", self.root / "to"
        self.write_file_layout(source)
        run_cli("sessions", "import", "--from", str(source), "--config", str(self.config))
        schema = KeySchema()
        raw = self.server.command("HGET", schema.index("main"), "agent:main:two")
        broken = schema.transcript("main", json.loads(raw.split(b"\r\n")[1])["sessionId"])
        self.server.command("DEL", broken)
        self.server.command("SET", broken, "not a list")
        exported = run_cli("sessions", "export", "--to", str(target), "--config", str(self.config))
        self.assertEqual(exported.returncode, 0, exported.stderr)
        self.assertIn("exported 2 sessions", exported.stdout)
        self.assertIn("1 left out (unreadable in Redis)", exported.stdout)
        self.assertIn(
            f"session agent:main:two: Redis key {broken} holds the wrong type", exported.stdout
        )
        written, expected = layout(target), layout(source)
        self.assertEqual(written["ops"], expected["ops"])
        self.assertEqual(list(written["main"]["index"]), ["agent:main:one"])
        self.assertEqual(
            written["main"]["transcripts"],
            {
                sid: lines
                for sid, lines in expected["main"]["transcripts"].items()
                if sid == written["main"]["index"]["agent:main:one"]["sessionId"]
            },
        )

    def test_unreachable_redis_is_one_line(self) -> None:
        """Without a Redis at the URL the command exits 1 with one line."""
        self.server.stop()
        result = run_cli(
            "sessions", "export", "--to", str(self.root / "x"), "--config", str(self.config)
        )
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertIn("cannot reach Redis", result.stderr)

    def test_mistakes_are_errors(self) -> None:
        """A missing import directory, an export of an agent with no sessions and
        a file-store config each exit 1 with one line saying what is wrong."""
        missing = run_cli(
            "sessions", "import", "--from", str(self.root / "nope"), "--config", str(self.config)
        )
        self.assertEqual(missing.returncode, 1)
        self.assertIn("no agents/ directory to import", missing.stderr)
        nobody = run_cli(
            "sessions", "export", "--to", str(self.root / "out"), "--agent", "nobody",
            "--config", str(self.config),
        )  # fmt: skip
        self.assertEqual(nobody.returncode, 1)
        self.assertIn("no sessions of agent nobody in Redis", nobody.stderr)
        file_store = self.root / "file.json"
        file_store.write_text("{}")
        wrong = run_cli(
            "sessions", "export", "--to", str(self.root / "x"), "--config", str(file_store)
        )
        self.assertEqual(wrong.returncode, 1)
        self.assertIn("this config uses the file store", wrong.stderr)
        self.assertNotIn("redis.url is not set", wrong.stderr)
