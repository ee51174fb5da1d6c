"""``session.maintenance.resetArchiveRetention``: archived transcripts older
than the retention are deleted, live transcripts never (real files, a Clock)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config import parse_config_text
from openclaw.config.errors import ConfigError
from openclaw.sessions.archive_retention import (
    SweepResult,
    archive_time_ms,
    sweep_interval,
)
from openclaw.sessions.fileio import InlineIO
from openclaw.sessions.store import SessionStore
from openclaw.sessions.sweeper import ArchiveSweeper, sweep_state
from openclaw.sessions.transcript import archive_suffix
from openclaw.sessions.writes import WriteQueue
from tests.gateway_process import GatewayProcess, write_config
from tests.session_files import archive, sessions_dir

NOW_MS = 1_700_000_000_000
HOUR_MS = 3_600_000


def retention(value: str) -> float | None:
    """``resetArchiveRetention`` as the config loader reads it."""
    text = "{session: {maintenance: {resetArchiveRetention: " + value + "}}}"
    config = parse_config_text(text, source="test", env={}, state_dir=Path("state")).config
    return config.session.maintenance.archive_retention_seconds


class ConfigTests(SynchronousTestCase):
    def test_durations(self) -> None:
        """OpenClaw's forms: units (any case), compound values, a bare number as
        days; false, "" and absence keep archives."""
        self.assertEqual(retention('"30d"'), 30 * 86400)
        self.assertEqual(retention('"12h"'), 12 * 3600)
        self.assertEqual(retention('"1.5h"'), 5400)
        self.assertEqual(retention('"90m"'), 5400)
        self.assertEqual(retention('"1h30m"'), 5400)
        self.assertEqual(retention('"45S"'), 45)
        self.assertEqual(retention('"2w"'), 14 * 86400)
        self.assertEqual(retention("30"), 30 * 86400)
        self.assertEqual(retention('"7"'), 7 * 86400)
        self.assertIsNone(retention("false"))
        self.assertIsNone(retention('""'))
        config = parse_config_text("{}", source="test", env={}, state_dir=Path("state")).config
        self.assertIsNone(config.session.maintenance.archive_retention_seconds)

    def test_bad_values_are_refused(self) -> None:
        """Zero, negatives, words, ``true``, spaces inside and non-finite values
        are config errors naming the key."""
        for bad in ('"0d"', "-1", '"soon"', "true", '"30 days"', '"1e400d"', '"nan"', "[1]"):
            with self.assertRaises(ConfigError, msg=bad) as caught:
                retention(bad)
            self.assertIn("session.maintenance.resetArchiveRetention", str(caught.exception))

    def test_redis_store_takes_it_without_a_warning(self) -> None:
        """With the Redis store the retention is a TTL on each archive (see
        tests/test_redis_lanes.py), so it is read, not ignored with a warning."""
        text = (
            '{gateway: {redis: {url: "redis://127.0.0.1:6379/0"}}, session: {store: "redis",'
            ' maintenance: {resetArchiveRetention: "1d"}}}'
        )
        loaded = parse_config_text(text, source="test", env={}, state_dir=Path("state"))
        self.assertEqual(loaded.warnings, ())
        self.assertEqual(loaded.config.session.maintenance.archive_retention_seconds, 86400)


def remove_expired(
    state: Path, cutoff_ms: int, stop: Callable[[], bool] = lambda: False
) -> SweepResult:
    """The retention's part of a sweeper pass (no disk budget)."""
    return sweep_state(state, cutoff_ms, None, stop).expired


class SweepTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.state = Path(self.mktemp())
        self.main = sessions_dir(self.state)
        self.other = sessions_dir(self.state, "other")

    def test_archive_names(self) -> None:
        """An archive's name gives its time; other files give None."""
        self.assertEqual(
            archive_time_ms(f"a.jsonl.deleted.{archive_suffix(NOW_MS + 7)}"), NOW_MS + 7
        )
        self.assertEqual(archive_time_ms(f"a.jsonl.reset.{archive_suffix(NOW_MS)}"), NOW_MS)
        for name in ("a.jsonl", "sessions.json", "a.jsonl.deleted.garbage", "a.txt.deleted.x"):
            self.assertIsNone(archive_time_ms(name))

    def test_only_expired_archives_are_removed(self) -> None:
        """Older archives of every agent go; newer archives, live transcripts,
        the index and unknown files stay."""
        old = archive(self.main, "old", NOW_MS - 2 * HOUR_MS)
        old_reset = archive(self.other, "older", NOW_MS - 3 * HOUR_MS, why="reset")
        recent = archive(self.main, "recent", NOW_MS - HOUR_MS // 2)
        kept = [recent, self.main / "live.jsonl", self.main / "sessions.json", self.main / "x.txt"]
        for path in kept[1:]:
            path.write_text("{}\n")
        result = remove_expired(self.state, NOW_MS - HOUR_MS)
        self.assertEqual(result, SweepResult(removed=2))
        self.assertFalse(old.exists())
        self.assertFalse(old_reset.exists())
        for path in kept:
            self.assertTrue(path.exists(), path)

    def test_missing_state_dir_is_nothing_to_do(self) -> None:
        """A state dir without agents (a fresh gateway) sweeps to zero."""
        self.assertEqual(remove_expired(Path(self.mktemp()), NOW_MS), SweepResult())

    def test_an_entry_that_cannot_go_does_not_hold_back_the_rest(self) -> None:
        """A directory with an archive's name is counted as failed and skipped;
        every expired archive around it, in every agent, is removed."""
        blocker = self.main / f"x.jsonl.deleted.{archive_suffix(NOW_MS - 2 * HOUR_MS)}"
        blocker.mkdir()
        expired = [
            archive(d, f"a{n}", NOW_MS - 2 * HOUR_MS)
            for n in range(20)
            for d in (self.main, self.other)
        ]
        result = remove_expired(self.state, NOW_MS - HOUR_MS)
        self.assertEqual(result, SweepResult(removed=40, failed=1))
        self.assertTrue(blocker.is_dir())
        self.assertFalse(any(path.exists() for path in expired))

    def test_stop_ends_a_sweep(self) -> None:
        """A sweep told to stop returns at once, having removed nothing more."""
        expired = archive(self.main, "a", NOW_MS - 2 * HOUR_MS)
        result = remove_expired(self.state, NOW_MS - HOUR_MS, stop=lambda: True)
        self.assertTrue(result.stopped)
        self.assertTrue(expired.exists())

    def test_sweeper_runs_now_and_every_interval(self) -> None:
        """The first sweep runs at start; archives that expire later go at a
        later sweep; stop ends the schedule."""
        clock = Clock()
        clock.advance(NOW_MS / 1000)
        expired = archive(self.main, "a", NOW_MS - 2 * HOUR_MS)
        later = archive(self.main, "b", NOW_MS)
        sweeper = ArchiveSweeper(
            self.state, retention_seconds=3600, clock=clock, writes=WriteQueue(InlineIO())
        )
        sweeper.start()
        self.assertFalse(expired.exists())
        self.assertTrue(later.exists())
        clock.advance(3601)
        self.assertFalse(later.exists())
        sweeper.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_interval(self) -> None:
        """A quarter of the retention, between 1 s and 10 minutes."""
        self.assertEqual(sweep_interval(8), 2)
        self.assertEqual(sweep_interval(2), 1)
        self.assertEqual(sweep_interval(30 * 86400), 600)


class StoreRetentionTests(SynchronousTestCase):
    def test_deleted_session_archive_expires(self) -> None:
        """A store with a retention deletes a deleted session's archive once it
        is older than the retention, keeps the live sessions, and stops
        sweeping when closed."""
        clock = Clock()
        clock.advance(NOW_MS / 1000)
        state = Path(self.mktemp())
        store = SessionStore(state, clock=clock, fsync="never", archive_retention_seconds=60)
        store.start_upkeep()
        gone = store.ensure_session("main", "agent:main:gone")
        store.append_user("main", gone.session_id, run_id="r1", text="hi", timestamp=NOW_MS)
        kept = store.ensure_session("main", "agent:main:kept")
        store.append_user("main", kept.session_id, run_id="r2", text="hi", timestamp=NOW_MS)
        self.assertTrue(store.delete("main", "agent:main:gone"))
        directory = store.sessions_dir("main")
        [archived] = [p for p in directory.iterdir() if ".deleted." in p.name]
        clock.advance(30)
        self.assertTrue(archived.exists())
        clock.advance(60)
        self.assertFalse(archived.exists())
        self.assertTrue((directory / f"{kept.session_id}.jsonl").exists())
        store.close()
        self.assertEqual(clock.getDelayedCalls(), [])


class ProcessTests(SynchronousTestCase):
    def test_gateway_deletes_expired_archives_at_start(self) -> None:
        """``twistd openclaw`` with a retention deletes an archive older than it
        when it starts, says so, and keeps a newer archive and the live transcript."""
        tmp = Path(self.mktemp())
        state = tmp / "state"
        directory = sessions_dir(state)
        now_ms = int(time.time() * 1000)
        old = archive(directory, "old", now_ms - 3 * 86_400_000)
        recent = archive(directory, "recent", now_ms)
        live = directory / "live.jsonl"
        live.write_text('{"type":"session"}\n')
        config = write_config(tmp, {"session": {"maintenance": {"resetArchiveRetention": "1d"}}})
        gateway = GatewayProcess(config, state)
        self.addCleanup(gateway.ensure_stopped)
        gateway.wait_for_output(r"deleted 1 archived transcripts older than 86400 s")
        self.assertFalse(old.exists())
        self.assertTrue(recent.exists())
        self.assertTrue(live.exists())
        self.assertEqual(gateway.stop(), 0)
