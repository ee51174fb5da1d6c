"""``session.maintenance.maxDiskBytes`` and ``highWaterBytes``: the per-agent
sessions budget, kept by deleting the oldest archived transcripts."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.runtime import build_runtime
from openclaw.config import parse_config_text
from openclaw.config.errors import ConfigError
from openclaw.config.model import SessionMaintenanceConfig
from openclaw.core.types import Usage
from openclaw.gateway import build_resource
from openclaw.sessions.disk_budget import BudgetResult, DiskBudget, enforce_budget
from openclaw.sessions.fileio import InlineIO
from openclaw.sessions.store import SessionStore
from openclaw.sessions.sweeper import ArchiveSweeper, sweep_state
from openclaw.sessions.transcript import archive_suffix
from openclaw.sessions.writes import WriteQueue
from tests import session_files
from tests.gateway_process import GatewayProcess, write_config
from tests.session_files import sessions_dir

NOW_MS = 1_700_000_000_000
MINUTE_MS = 60_000
GIB = 1 << 30


def maintenance(body: str, store: str = "") -> SessionMaintenanceConfig:
    text = "{session: {" + store + "maintenance: {" + body + "}}}"
    config = parse_config_text(text, source="test", env={}, state_dir=Path("state")).config
    return config.session.maintenance


def budget_of(body: str) -> tuple[int | None, int | None]:
    m = maintenance(body)
    return m.max_disk_bytes, m.high_water_bytes


class ConfigTests(SynchronousTestCase):
    def test_default_is_openclaws(self) -> None:
        """Unset: 10 GiB per agent, cleaned down to 80% of it (8 GiB)."""
        self.assertEqual(budget_of(""), (10 * GIB, 8 * GIB))
        self.assertEqual(budget_of('maxDiskBytes: ""'), (10 * GIB, 8 * GIB))

    def test_sizes(self) -> None:
        """OpenClaw's forms: binary units in any case, short units, decimals
        rounded, and a number (or a digit string) is bytes."""
        self.assertEqual(budget_of('maxDiskBytes: "500mb"')[0], 500 << 20)
        self.assertEqual(budget_of('maxDiskBytes: "1.5G"')[0], 3 << 29)
        self.assertEqual(budget_of('maxDiskBytes: " 64K "')[0], 64 << 10)
        self.assertEqual(budget_of('maxDiskBytes: "2tb"')[0], 2 << 40)
        self.assertEqual(budget_of("maxDiskBytes: 1048576")[0], 1 << 20)
        self.assertEqual(budget_of('maxDiskBytes: "1000"')[0], 1000)
        self.assertEqual(budget_of("maxDiskBytes: 2.5")[0], 3)

    def test_off(self) -> None:
        """``false``, 0 and "0" turn the budget off (and its target with it)."""
        for off in ("false", "0", '"0"', '"0mb"'):
            self.assertEqual(budget_of(f"maxDiskBytes: {off}"), (None, None), off)

    def test_high_water(self) -> None:
        """The target defaults to 80% of the budget; a larger one is the
        budget itself; 0 means the default."""
        self.assertEqual(budget_of('maxDiskBytes: "100kb"'), (100 << 10, 80 << 10))
        self.assertEqual(
            budget_of('maxDiskBytes: "100kb", highWaterBytes: "50kb"'), (100 << 10, 50 << 10)
        )
        self.assertEqual(
            budget_of('maxDiskBytes: "100kb", highWaterBytes: "1gb"'), (100 << 10, 100 << 10)
        )
        self.assertEqual(
            budget_of('maxDiskBytes: "100kb", highWaterBytes: 0'), (100 << 10, 80 << 10)
        )
        self.assertEqual(budget_of("maxDiskBytes: 1"), (1, 1))

    def test_bad_sizes_are_refused(self) -> None:
        """Negatives, unknown units, spaces inside, exponents, ``true``, lists
        and sizes past JavaScript's exact integers are config errors naming
        the key; so is ``highWaterBytes: false``."""
        bad_values = (
            "-1",
            '"-5mb"',
            '"10 gb"',
            '"10gigs"',
            '"1e3"',
            "true",
            "[1]",
            '"' + "9" * 400 + '"',
            '"9000tb"',
            '"\u0661\u0660gb"',  # Arabic-Indic digits: not digits to OpenClaw
            "1e-7",
            "1e21",
        )
        for bad in bad_values:
            with self.assertRaises(ConfigError, msg=bad) as caught:
                maintenance(f"maxDiskBytes: {bad}")
            self.assertIn("session.maintenance.maxDiskBytes", str(caught.exception))
            with self.assertRaises(ConfigError, msg=bad) as caught:
                maintenance(f"highWaterBytes: {bad}")
            self.assertIn("session.maintenance.highWaterBytes", str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            maintenance("highWaterBytes: false")
        self.assertIn("session.maintenance.highWaterBytes", str(caught.exception))

    def test_redis_store_warns(self) -> None:
        """A budget set with the Redis store is ignored, with a warning; the
        default budget warns about nothing."""
        redis = '{gateway: {redis: {url: "redis://127.0.0.1:6379/0"}}, session: {store: "redis",'
        loaded = parse_config_text(
            redis + ' maintenance: {maxDiskBytes: "1gb"}}}',
            source="test",
            env={},
            state_dir=Path("state"),
        )
        self.assertTrue(
            any("maxDiskBytes" in w and "file store only" in w for w in loaded.warnings),
            loaded.warnings,
        )
        quiet = parse_config_text(redis + "}}", source="test", env={}, state_dir=Path("state"))
        self.assertFalse(any("maxDiskBytes" in w for w in quiet.warnings), quiet.warnings)
        # resetArchiveRetention applies on Redis too (a TTL on each archive).
        retention = parse_config_text(
            redis + ' maintenance: {resetArchiveRetention: "7d"}}}',
            source="test",
            env={},
            state_dir=Path("state"),
        )
        self.assertEqual(retention.warnings, ())
        self.assertEqual(retention.config.session.maintenance.archive_retention_seconds, 7 * 86400)


def archive(directory: Path, session_id: str, made_ms: int, size: int = 1000) -> Path:
    """An archive of ``size`` bytes (1,000 unless the test says)."""
    return session_files.archive(directory, session_id, made_ms, size=size)


def live(directory: Path, session_id: str, size: int = 1000) -> Path:
    return session_files.live(directory, session_id, size)


class EnforceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = sessions_dir(Path(self.mktemp()))

    def test_within_budget_deletes_nothing(self) -> None:
        """A directory at or under the budget is measured and left alone."""
        archive(self.directory, "a", NOW_MS)
        live(self.directory, "b")
        result = enforce_budget(self.directory, DiskBudget(2000, 1000))
        self.assertEqual(result, BudgetResult(used_bytes=2000))
        self.assertEqual(len(list(self.directory.iterdir())), 2)

    def test_oldest_archives_go_first_down_to_the_target(self) -> None:
        """Past the budget, archives are deleted oldest first (one minute
        apart here) until the directory is at the target; live transcripts,
        the index and newer archives stay."""
        archives = [archive(self.directory, f"a{n}", NOW_MS + n * MINUTE_MS) for n in range(10)]
        keep = [live(self.directory, "s1"), live(self.directory, "s2")]
        (self.directory / "sessions.json").write_bytes(b"{}" * 500)
        keep.append(self.directory / "sessions.json")
        # 13,000 bytes in all; budget 12,000, target 8,000: the 5 oldest go.
        result = enforce_budget(self.directory, DiskBudget(12_000, 8_000))
        self.assertEqual(result, BudgetResult(used_bytes=8000, removed=5, freed_bytes=5000))
        self.assertEqual([p.exists() for p in archives], [False] * 5 + [True] * 5)
        self.assertTrue(all(p.exists() for p in keep))

    def test_the_boundary_minute_gives_only_what_is_still_needed(self) -> None:
        """Whatever order the directory lists them in, every older archive
        goes and of the last minute needed only enough to reach the target."""
        older = [archive(self.directory, f"o{n}", NOW_MS + n * MINUTE_MS) for n in range(19)]
        boundary = [
            archive(self.directory, f"b{n}", NOW_MS + 19 * MINUTE_MS + n) for n in range(100)
        ]
        # 119,000 bytes; budget 100,000, target 90,000: 19 older + 10 of the boundary minute.
        result = enforce_budget(self.directory, DiskBudget(100_000, 90_000))
        self.assertEqual(result, BudgetResult(used_bytes=90_000, removed=29, freed_bytes=29_000))
        self.assertFalse(any(p.exists() for p in older))
        self.assertEqual(sum(p.exists() for p in boundary), 90)

    def test_unreadable_directory(self) -> None:
        """A sessions directory that cannot be listed is reported as such,
        nothing measured or deleted."""
        real_scandir = os.scandir

        def scandir(path: Any) -> Any:
            if Path(path) == self.directory:
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        self.patch(os, "scandir", scandir)
        self.assertEqual(
            enforce_budget(self.directory, DiskBudget(1, 1)), BudgetResult(unreadable=True)
        )

    def test_live_sessions_are_never_deleted(self) -> None:
        """When deleting every archive is not enough the directory stays over
        the budget, its live sessions untouched."""
        archive(self.directory, "old", NOW_MS)
        sessions = [live(self.directory, f"s{n}") for n in range(5)]
        result = enforce_budget(self.directory, DiskBudget(3000, 2000))
        self.assertEqual(result, BudgetResult(used_bytes=5000, removed=1, freed_bytes=1000))
        self.assertTrue(all(p.exists() for p in sessions))

    def test_many_archives_in_one_minute(self) -> None:
        """Archives of the same minute are deleted until the target is met,
        not all at once."""
        same_minute = [archive(self.directory, f"a{n}", NOW_MS + n) for n in range(10)]
        result = enforce_budget(self.directory, DiskBudget(9000, 6000))
        self.assertEqual(result, BudgetResult(used_bytes=6000, removed=4, freed_bytes=4000))
        self.assertEqual(sum(p.exists() for p in same_minute), 6)

    def test_hostile_entries(self) -> None:
        """A directory or a symlink named like an archive is neither counted
        nor followed nor deleted; the real archives around it still go."""
        outside = Path(self.mktemp())
        outside.write_bytes(b"y" * 50_000)
        (self.directory / f"d.jsonl.deleted.{archive_suffix(NOW_MS)}").mkdir()
        link = self.directory / f"l.jsonl.deleted.{archive_suffix(NOW_MS)}"
        link.symlink_to(outside)
        old = [archive(self.directory, f"a{n}", NOW_MS + n * MINUTE_MS) for n in range(3)]
        result = enforce_budget(self.directory, DiskBudget(2000, 1000))
        self.assertEqual(result, BudgetResult(used_bytes=1000, removed=2, freed_bytes=2000))
        self.assertEqual([p.exists() for p in old], [False, False, True])
        self.assertTrue(outside.exists())
        self.assertTrue(link.is_symlink())

    def test_missing_directory_is_empty(self) -> None:
        self.assertEqual(
            enforce_budget(self.directory / "absent", DiskBudget(1, 1)), BudgetResult()
        )

    def test_stop(self) -> None:
        """A cleanup told to stop deletes nothing more; a long measurement
        (thousands of files) stops part way too."""
        first = archive(self.directory, "a", NOW_MS)
        result = enforce_budget(self.directory, DiskBudget(1, 1), stop=lambda: True)
        self.assertTrue(result.stopped)
        self.assertTrue(first.exists())
        for n in range(3000):
            (self.directory / f"s{n}.jsonl").touch()
        looks: list[int] = []

        def stop() -> bool:
            looks.append(1)
            return True

        self.assertEqual(
            enforce_budget(self.directory, DiskBudget(1, 1), stop), BudgetResult(stopped=True)
        )
        self.assertEqual(len(looks), 1)

    def test_every_agent(self) -> None:
        """A pass holds each agent to its own budget and says which were within it."""
        state = Path(self.mktemp())
        big, small = sessions_dir(state, "big"), sessions_dir(state, "small")
        for n in range(4):
            archive(big, f"a{n}", NOW_MS + n * MINUTE_MS)
        archive(small, "a", NOW_MS)
        result = sweep_state(state, None, DiskBudget(2000, 2000))
        self.assertEqual(result.within, ("small",))
        self.assertEqual(
            result.budgets, (("big", BudgetResult(used_bytes=2000, removed=2, freed_bytes=2000)),)
        )


class SweeperTests(SynchronousTestCase):
    def test_reports_once_while_over(self) -> None:
        """The sweeper deletes archives at start and every 10 minutes, and
        warns once while live sessions alone keep an agent over its budget,
        again only after it was under."""
        clock = Clock()
        clock.advance(NOW_MS / 1000)
        state = Path(self.mktemp())
        directory = sessions_dir(state)
        archive(directory, "old", NOW_MS)
        session = live(directory, "s", 3000)
        sweeper = ArchiveSweeper(
            state, clock=clock, writes=WriteQueue(InlineIO()), budget=DiskBudget(2000, 1000)
        )
        with capturedLogs() as events:
            sweeper.start()
            clock.advance(600)
            session.write_bytes(b"x")
            clock.advance(600)
            session.write_bytes(b"x" * 3000)
            clock.advance(600)
        messages = [formatEvent(e) for e in events]
        deleted = [m for m in messages if "deleted 1 oldest archived" in m]
        over = [m for m in messages if "over session.maintenance.maxDiskBytes" in m]
        self.assertEqual(len(deleted), 1, messages)
        self.assertEqual(len(over), 2, messages)
        self.assertIn("agent main: sessions use 3000 bytes", over[0])
        sweeper.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def sweeper(self, state: Path, clock: Clock, budget: DiskBudget) -> ArchiveSweeper:
        sweeper = ArchiveSweeper(state, clock=clock, writes=WriteQueue(InlineIO()), budget=budget)
        self.addCleanup(sweeper.stop)
        return sweeper

    def test_archives_that_cannot_go_are_not_blamed_on_live_sessions(self) -> None:
        """An archive that cannot be deleted is reported as such; the "live
        sessions alone" warning is not given while archives remain."""
        state = Path(self.mktemp())
        directory = sessions_dir(state)
        archive(directory, "stuck", NOW_MS, size=1500)
        live(directory, "s", 1500)

        def unlink(path: Any) -> None:
            raise PermissionError(13, "Permission denied", str(path))

        self.patch(os, "unlink", unlink)
        with capturedLogs() as events:
            self.sweeper(state, Clock(), DiskBudget(2000, 1000)).start()
        messages = [formatEvent(e) for e in events]
        self.assertTrue(any("could not delete 1 archived" in m for m in messages), messages)
        self.assertFalse(any("over session.maintenance" in m for m in messages), messages)

    def test_unreadable_directories_are_reported(self) -> None:
        """An unreadable sessions directory is reported and does not reset
        the once-only over-budget warning; an unreadable agents directory is
        one warning per pass, not a traceback."""
        clock = Clock()
        state = Path(self.mktemp())
        directory = sessions_dir(state)
        live(directory, "s", 3000)
        blocked: set[Path] = set()
        real_scandir = os.scandir

        def scandir(path: Any) -> Any:
            if Path(path) in blocked:
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        self.patch(os, "scandir", scandir)
        with capturedLogs() as events:
            self.sweeper(state, clock, DiskBudget(2000, 1000)).start()
            blocked.add(directory)
            clock.advance(600)
            blocked.clear()
            clock.advance(600)
            blocked.add(state / "agents")
            clock.advance(600)
        messages = [formatEvent(e) for e in events]
        self.assertEqual(sum("over session.maintenance" in m for m in messages), 1, messages)
        self.assertEqual(sum("cannot read its sessions directory" in m for m in messages), 1)
        self.assertEqual(sum(f"cannot read {state / 'agents'}" in m for m in messages), 1)
        self.assertFalse([e for e in events if e.get("log_failure")], messages)

    def test_no_start_after_stop(self) -> None:
        """A stopped sweeper (its store closed) does not start again."""
        clock = Clock()
        state = Path(self.mktemp())
        old = archive(sessions_dir(state), "old", NOW_MS, size=5000)
        sweeper = self.sweeper(state, clock, DiskBudget(1000, 1000))
        sweeper.stop()
        sweeper.start()
        self.assertTrue(old.exists())
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_retention_and_budget_together(self) -> None:
        """With both, the retention's interval is used and both apply in one pass."""
        clock = Clock()
        clock.advance(NOW_MS / 1000)
        state = Path(self.mktemp())
        directory = sessions_dir(state)
        expired = archive(directory, "expired", NOW_MS - 2 * 3_600_000)
        older = archive(directory, "older", NOW_MS - 10 * MINUTE_MS)
        newer = archive(directory, "newer", NOW_MS)
        sweeper = ArchiveSweeper(
            state,
            clock=clock,
            writes=WriteQueue(InlineIO()),
            retention_seconds=3600,
            budget=DiskBudget(1500, 1000),
        )
        self.assertEqual(sweeper.interval, 600)
        sweeper.start()
        self.assertEqual([expired.exists(), older.exists(), newer.exists()], [False, False, True])
        sweeper.stop()


class StoreTests(SynchronousTestCase):
    def test_stateless_archives_are_held_to_the_budget(self) -> None:
        """Stateless sessions past the cap are archived; with a budget the
        store, once its upkeep is started, deletes the oldest archives and
        keeps the live sessions."""
        clock = Clock()
        clock.advance(NOW_MS / 1000)
        state = Path(self.mktemp())
        store = SessionStore(
            state, clock=clock, fsync="never", max_entries=2, disk_budget=DiskBudget(3000, 2500)
        )
        self.assertEqual(clock.getDelayedCalls(), [])  # nothing until the gateway starts it
        store.start_upkeep()
        for n in range(12):
            key = f"agent:main:openai:{n:08d}-0000-4000-8000-000000000000"
            entry = store.ensure_session("main", key)
            ts = int(clock.seconds() * 1000)
            store.append_user(
                "main", entry.session_id, run_id=f"r{n}", text="hi" * 50, timestamp=ts
            )
            store.finish_turn(
                "main",
                key,
                entry.session_id,
                run_id=f"r{n}",
                text="ok",
                timestamp=ts,
                usage=Usage(),
                stop_reason="stop",
            )
            clock.advance(61)
        store.flush()
        directory = store.sessions_dir("main")
        live_before = sorted(p.name for p in directory.glob("*.jsonl"))
        archived_before = len(list(directory.glob("*.deleted.*")))
        self.assertGreater(archived_before, 0)
        clock.advance(600)
        after = list(directory.iterdir())
        self.assertLessEqual(sum(p.stat().st_size for p in after), 3000)
        self.assertEqual(sorted(p.name for p in directory.glob("*.jsonl")), live_before)
        self.assertLess(len(list(directory.glob("*.deleted.*"))), archived_before)
        store.close()
        self.assertEqual(clock.getDelayedCalls(), [])


class EmbeddingTests(SynchronousTestCase):
    def test_build_resource_starts_the_upkeep(self) -> None:
        """An embedder's ``build_resource`` starts the store's upkeep (the
        runtime alone does not); shutting the runtime down stops it."""
        clock = Clock()
        clock.advance(NOW_MS / 1000)
        state = Path(self.mktemp())
        old = archive(sessions_dir(state), "old", NOW_MS - MINUTE_MS, size=3000)
        text = '{session: {maintenance: {maxDiskBytes: "2kb"}}}'
        config = parse_config_text(text, source="test", env={}, state_dir=state).config
        runtime = build_runtime(config, clock)
        self.assertTrue(old.exists())
        build_resource(config, runtime, clock)
        self.assertFalse(old.exists())
        self.successResultOf(runtime.shutdown())
        self.assertEqual(clock.getDelayedCalls(), [])


class ProcessTests(SynchronousTestCase):
    def test_gateway_holds_the_budget_at_start(self) -> None:
        """``twistd openclaw`` with a small budget deletes the oldest archive
        when it starts, says so, and keeps the newer one and the live transcript."""
        tmp = Path(self.mktemp())
        state = tmp / "state"
        directory = sessions_dir(state)
        now_ms = int(time.time() * 1000)
        old = archive(directory, "old", now_ms - 3_600_000, size=2000)
        recent = archive(directory, "recent", now_ms, size=500)
        session = live(directory, "live", size=500)
        config = write_config(tmp, {"session": {"maintenance": {"maxDiskBytes": "2kb"}}})
        gateway = GatewayProcess(config, state)
        self.addCleanup(gateway.ensure_stopped)
        gateway.wait_for_output(r"agent main: sessions over maxDiskBytes \(2048 bytes\); deleted 1")
        self.assertFalse(old.exists())
        self.assertTrue(recent.exists())
        self.assertTrue(session.exists())
        self.assertEqual(gateway.stop(), 0)
