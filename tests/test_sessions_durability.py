"""Session store scaling and crash safety: coalesced incremental index writes,
recovery of entries a crash lost, the stateless-session cap, and transcript
writes that run off the reactor thread (in order per transcript) without a
turn being reported before it is on disk."""

from __future__ import annotations

import json
import os
import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from openclaw.agents.history import load_history
from openclaw.agents.runtime import Runtime
from openclaw.agents.types import AgentRequest, Usage
from openclaw.config.model import AgentDefaults, AgentsConfig, Config, SessionConfig
from openclaw.core import ids as ids_module
from openclaw.sessions import fileio
from openclaw.sessions import index as index_module
from openclaw.sessions.entry import is_stateless_session_key
from openclaw.sessions.fileio import InlineIO, ThreadPoolIO, atomic_write, blocking_io_for
from openclaw.sessions.store import MaintenanceMode, SessionStore
from openclaw.testing import Reply, ScriptedProvider, run_due

_P = ParamSpec("_P")
_T = TypeVar("_T")

KEY = "agent:main:main"


class ManualIO:
    """A BlockingIO whose calls wait until the test runs them (as a slow disk)."""

    def __init__(self) -> None:
        self.queue: list[tuple[Deferred[Any], Callable[[], Any]]] = []
        self.stopped = False

    def run(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_T]:
        d: Deferred[_T] = Deferred()
        self.queue.append((d, partial(fn, *args, **kwargs)))
        return d

    def run_all(self) -> int:
        """Run every queued call in order (and those they queue); returns how many."""
        count = 0
        while self.queue:
            d, call = self.queue.pop(0)
            count += 1
            try:
                result = call()
            except Exception:
                d.errback()
            else:
                d.callback(result)
        return count

    def stop(self) -> None:
        self.stopped = True


def stateless_key() -> str:
    """A key as chat completions make for a request that names no session."""
    return f"agent:main:openai:{uuid.uuid4()}"


class DurabilityCase(SynchronousTestCase):
    """A store in a fresh state dir on a Clock, with helpers to record turns."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.state_dir = Path(self.mktemp())
        self.io = ManualIO()

    def new_store(self, **kwargs: Any) -> SessionStore:
        """A store over the state dir (a fresh one is a process restart)."""
        kwargs.setdefault("fsync", "never")
        return SessionStore(self.state_dir, clock=self.clock, **kwargs)

    def turn(
        self, store: SessionStore, key: str, run_id: str, text: str = "hi"
    ) -> tuple[str, Deferred[None]]:
        """Record a whole turn on ``key``; returns the session id and the
        finish_turn Deferred."""
        entry = store.ensure_session("main", key)
        ts = int(self.clock.seconds() * 1000)
        store.append_user("main", entry.session_id, run_id=run_id, text=text, timestamp=ts)
        done = store.finish_turn(
            "main",
            key,
            entry.session_id,
            run_id=run_id,
            text=f"reply to {text}",
            timestamp=ts + 1,
            usage=Usage(input=1, output=2, total=3),
            stop_reason="stop",
        )
        return entry.session_id, done

    def index_on_disk(self, store: SessionStore) -> dict[str, Any]:
        """sessions.json as written."""
        loaded: dict[str, Any] = json.loads(store.session_path("main").read_text())
        return loaded

    def names(self, store: SessionStore) -> list[str]:
        """The file names in the agent's sessions dir."""
        return sorted(p.name for p in store.sessions_dir("main").iterdir())


class RecoveryTests(DurabilityCase):
    def test_header_records_the_session_key(self) -> None:
        """The transcript's session header names the key, so the entry can be rebuilt."""
        store = self.new_store()
        session_id, _ = self.turn(store, KEY, "r1")
        header = json.loads(store.transcript_path("main", session_id).read_text().splitlines()[0])
        self.assertEqual(header["type"], "session")
        self.assertEqual(header["id"], session_id)
        self.assertEqual(header["sessionKey"], KEY)

    def test_entries_lost_in_a_crash_are_recovered(self) -> None:
        """Sessions created after the last index write (then a crash) are back in
        the index of the next process, with their history, and written to disk."""
        store = self.new_store()
        first, _ = self.turn(store, "agent:main:old", "r1")
        store.flush()
        lost, _ = self.turn(store, "agent:main:new", "r2", "lost?")
        self.assertNotIn("agent:main:new", self.index_on_disk(store))
        # crash: the pending index write never happens
        with capturedLogs() as events:
            after = self.new_store()
            entry = after.get_session("main", "agent:main:new")
        assert entry is not None
        self.assertEqual(entry.session_id, lost)
        self.assertEqual(
            [m.content for m in load_history(after, "main", lost)], ["lost?", "reply to lost?"]
        )
        old = after.get_session("main", "agent:main:old")
        assert old is not None
        self.assertEqual(old.session_id, first)
        self.assertTrue(any("recovered" in str(e.get("log_format")) for e in events))
        self.clock.advance(1)
        self.assertEqual(self.index_on_disk(after)["agent:main:new"]["sessionId"], lost)

    def test_recovery_leaves_keyless_and_conflicting_transcripts_alone(self) -> None:
        """A transcript without a sessionKey (OpenClaw's own), or naming a key the
        index maps to another session, is not indexed; nothing is renamed."""
        store = self.new_store()
        current, _ = self.turn(store, KEY, "r1")
        store.flush()
        directory = store.sessions_dir("main")
        keyless = directory / "keyless.jsonl"
        keyless.write_text(json.dumps({"type": "session", "version": 3, "id": "keyless"}) + "\n")
        stale = directory / "stale.jsonl"
        stale.write_text(json.dumps({"type": "session", "id": "stale", "sessionKey": KEY}) + "\n")
        (directory / "torn.jsonl").write_text('{"type":"sess')
        with capturedLogs():
            after = self.new_store()
            self.assertEqual([e.key for e in after.list_sessions("main")], [KEY])
        entry = after.get_session("main", KEY)
        assert entry is not None
        self.assertEqual(entry.session_id, current)
        self.assertIn("keyless.jsonl", self.names(after))
        self.assertIn("stale.jsonl", self.names(after))

    def test_the_runtime_recovers_at_start_up(self) -> None:
        """Building a Runtime loads each configured agent's index, so lost entries
        are recovered (and rewritten) before any request names them."""
        store = self.new_store()
        lost, _ = self.turn(store, "agent:main:lost", "r1")
        config = Config(
            agents=AgentsConfig(defaults=AgentDefaults(model_primary="scripted/m")),
            session=SessionConfig(fsync="never"),
            state_dir=self.state_dir,
        )
        with capturedLogs():
            runtime = Runtime(config, clock=self.clock, providers={})
        run_due(self.clock)
        index = json.loads(runtime.store.session_path("main").read_text())
        self.assertEqual(index["agent:main:lost"]["sessionId"], lost)


class CapTests(DurabilityCase):
    def test_stateless_key_shape(self) -> None:
        """Only agent:<id>:openai:<uuid> keys are stateless."""
        self.assertTrue(is_stateless_session_key(stateless_key()))
        self.assertFalse(is_stateless_session_key("agent:main:openai-user:bob"))
        self.assertFalse(is_stateless_session_key("agent:main:openai:not-a-uuid"))
        self.assertFalse(is_stateless_session_key(KEY))

    def test_stateless_sessions_are_capped_and_stateful_ones_kept(self) -> None:
        """Past max_entries plus a tenth, the oldest stateless sessions leave the
        index and their transcripts are archived; stateful sessions all stay
        (with one warning, mode "warn")."""
        store = self.new_store(max_entries=4)
        stateless = [stateless_key() for _ in range(10)]
        ids = {}
        with capturedLogs() as events:
            for n, key in enumerate(stateless):
                ids[key], _ = self.turn(store, key, f"s{n}")
            for n in range(6):
                self.turn(store, f"agent:main:user{n}", f"u{n}")
        keys = {e.key for e in store.list_sessions("main")}
        self.assertEqual(keys & set(stateless), set(stateless[-4:]))
        self.assertEqual(len(keys - set(stateless)), 6)
        store.flush()
        self.assertEqual(set(self.index_on_disk(store)), keys)
        names = self.names(store)
        for key in stateless[:6]:
            self.assertNotIn(f"{ids[key]}.jsonl", names)
            self.assertTrue(any(n.startswith(f"{ids[key]}.jsonl.deleted.") for n in names))
        for key in stateless[-4:]:
            self.assertIn(f"{ids[key]}.jsonl", names)
        warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("maxEntries", warnings[0]["log_format"])

    def test_enforce_caps_stateful_sessions_oldest_first(self) -> None:
        """With maintenance "enforce" the least recently updated stateful sessions
        go too (down to max_entries, once it is exceeded by a tenth)."""
        mode: MaintenanceMode = "enforce"
        store = self.new_store(max_entries=3, maintenance=mode)
        for n in range(5):
            self.turn(store, f"agent:main:user{n}", f"u{n}")
            self.clock.advance(1)
        self.turn(store, "agent:main:user0", "again")  # user0 is now the newest
        self.clock.advance(1)
        with capturedLogs() as events:
            self.turn(store, "agent:main:user5", "u5")
        keys = [e.key for e in store.list_sessions("main")]
        self.assertEqual(keys, ["agent:main:user5", "agent:main:user0", "agent:main:user4"])
        # More than one archived in a pass: one info line says how many.
        (line,) = [formatEvent(e) for e in events if "session maintenance" in formatEvent(e)]
        self.assertIn("archived 2 sessions of agent main (maxEntries 3, mode enforce)", line)

    def test_a_session_with_a_running_turn_is_archived_when_it_ends(self) -> None:
        """A stateless session dropped from the index mid-turn keeps its transcript
        until the turn is recorded, then it is archived whole."""
        store = self.new_store(max_entries=2)
        busy = stateless_key()
        entry = store.ensure_session("main", busy)
        store.append_user("main", entry.session_id, run_id="busy", text="slow", timestamp=1)
        for n in range(3):
            self.turn(store, stateless_key(), f"s{n}")
        self.assertIsNone(store.get_session("main", busy))
        self.assertIn(f"{entry.session_id}.jsonl", self.names(store))
        store.finish_turn(
            "main",
            busy,
            entry.session_id,
            run_id="busy",
            text="done",
            timestamp=2,
            usage=Usage(),
            stop_reason="stop",
        )
        names = self.names(store)
        self.assertNotIn(f"{entry.session_id}.jsonl", names)
        archived = [n for n in names if n.startswith(f"{entry.session_id}.jsonl.deleted.")]
        self.assertEqual(len(archived), 1)
        lines = (store.sessions_dir("main") / archived[0]).read_text().splitlines()
        self.assertEqual(
            [json.loads(line)["type"] for line in lines], ["session", "message", "message"]
        )


class IncrementalIndexTests(DurabilityCase):
    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["turn", "reset", "delete", "flush"]),
                st.integers(min_value=0, max_value=5),
            ),
            max_size=30,
        )
    )
    def test_written_index_always_matches_memory(self, ops: list[tuple[str, int]]) -> None:
        """Whatever sequence of turns, resets and deletes, each written sessions.json
        (incrementally encoded) equals a fresh encoding of the entries in memory."""
        state_dir = Path(self.mktemp())
        store = SessionStore(state_dir, clock=self.clock, fsync="never", index_flush_delay=0)
        for n, (op, which) in enumerate(ops):
            key = f"agent:main:k{which}"
            if op == "turn":
                self.turn(store, key, f"r{n}")
            elif op == "reset":
                store.reset("main", key)
            elif op == "delete":
                store.delete("main", key)
            else:
                store.flush()
            self.clock.advance(0)
            if store.session_path("main").exists():
                on_disk = json.loads(store.session_path("main").read_text())
                expected = {
                    e.key: {
                        **e.extra,
                        "sessionId": e.session_id,
                        "updatedAt": e.updated_at,
                    }
                    for e in store.list_sessions("main")
                }
                self.assertEqual(on_disk, expected)

    def test_an_older_snapshot_never_overwrites_a_newer_one(self) -> None:
        """A coalesced write still queued on the IO executor when a synchronous
        flush (reset, delete, close) wrote a newer index is skipped."""
        store = self.new_store(io=self.io)
        self.turn(store, "agent:main:a", "r1")
        self.clock.advance(1)  # snapshot {a} queued on the slow disk
        self.assertTrue(self.io.queue)
        store.reset("main", "agent:main:a")  # writes {a: new id} now
        fresh = self.index_on_disk(store)["agent:main:a"]["sessionId"]
        self.io.run_all()
        self.assertEqual(self.index_on_disk(store)["agent:main:a"]["sessionId"], fresh)

    def test_a_failed_background_write_is_retried(self) -> None:
        """An index write that fails on the IO executor (a full disk) is logged
        once, without a traceback, and tried again after the flush delay until
        it works, which is logged too."""
        store = self.new_store(io=self.io)
        self.turn(store, KEY, "r1")
        real = atomic_write
        fail = [True]

        def flaky(path: Path, data: bytes | Sequence[bytes], *, sync: bool = True) -> None:
            if fail[0]:
                raise OSError(28, "No space left on device")
            real(path, data, sync=sync)

        self.patch(index_module, "atomic_write", flaky)
        with capturedLogs() as events:
            for _ in range(3):  # three failed attempts: one error line, no traceback
                self.clock.advance(1)
                self.io.run_all()
                self.turn(store, KEY, "again")
        said = [formatEvent(e) for e in events if "session index" in formatEvent(e)]
        self.assertEqual(len(said), 1, said)
        self.assertIn("No space left on device; retrying", said[0])
        self.assertFalse(any(e.get("log_failure") for e in events))
        self.assertFalse(store.session_path("main").exists())
        fail[0] = False
        with capturedLogs() as events:
            self.clock.advance(1)
            self.io.run_all()
        self.assertIn(KEY, self.index_on_disk(store))
        self.assertIn("written again", " ".join(formatEvent(e) for e in events))


class BackgroundSyncTests(DurabilityCase):
    def test_finish_turn_fires_after_the_write_and_sync(self) -> None:
        """Under fsync "turn" the lines are appended at once and only the
        fdatasync waits on the IO executor; finish_turn's Deferred fires after
        the sync."""
        synced: list[int] = []
        self.patch(os, "fdatasync", synced.append)
        store = self.new_store(fsync="turn", io=self.io)
        session_id, done = self.turn(store, KEY, "r1")
        self.assertNoResult(done)
        path = store.transcript_path("main", session_id)
        self.assertEqual(len(path.read_text().splitlines()), 3)
        self.assertEqual(synced, [])
        self.assertEqual(self.io.run_all(), 1)
        self.successResultOf(done)
        self.assertEqual(len(synced), 1)

    def test_fsync_never_writes_without_syncing(self) -> None:
        """Under fsync "never" a turn's lines are written at once, without the
        IO executor and without a sync."""
        synced: list[int] = []
        self.patch(os, "fdatasync", synced.append)
        store = self.new_store(fsync="never", io=self.io)
        session_id, done = self.turn(store, KEY, "r1")
        self.successResultOf(done)
        self.assertEqual(self.io.queue, [])
        path = store.transcript_path("main", session_id)
        self.assertEqual(len(path.read_text().splitlines()), 3)
        self.assertEqual(synced, [])

    def test_writes_behind_a_pending_sync_wait_for_it(self) -> None:
        """While a transcript's sync is queued, its next write queues behind it
        (so a pool can never reorder them); another transcript's write goes
        at once."""
        self.patch(os, "fdatasync", lambda fd: None)
        store = self.new_store(fsync="turn", io=self.io)
        one_id, done = self.turn(store, "agent:main:one", "a")
        self.assertEqual(len(self.io.queue), 1)  # one's sync
        store.append_user("main", one_id, run_id="b", text="2", timestamp=2)
        self.assertEqual(len(self.io.queue), 1)  # b waits for the sync
        two = store.ensure_session("main", "agent:main:two")
        store.append_user("main", two.session_id, run_id="c", text="3", timestamp=3)
        self.assertEqual(len(self.io.queue), 1)
        two_lines = store.transcript_path("main", two.session_id).read_text().splitlines()
        self.assertEqual([json.loads(line).get("runId") for line in two_lines], [None, "c"])
        self.io.run_all()
        self.successResultOf(done)
        lines = store.transcript_path("main", one_id).read_text().splitlines()
        self.assertEqual([json.loads(line).get("runId") for line in lines], [None, "a", "a", "b"])

    def test_an_append_after_maintenance_drops_the_session_is_not_archived(self) -> None:
        """Maintenance archives dropped transcripts on the IO executor; an append
        made for such a session before that rename ran waits for it, so its line
        lands in a new live transcript, not in the ``.deleted`` archive."""
        store = self.new_store(io=self.io, max_entries=2, maintenance="enforce")
        old = store.ensure_session("main", "agent:main:old")
        for name in ("b", "c", "d"):
            self.clock.advance(1)  # "old" stays the oldest
            store.ensure_session("main", f"agent:main:{name}")
        self.assertNotIn("agent:main:old", [e.key for e in store.list_sessions("main")])
        self.assertTrue(self.io.queue)  # the archive renames, queued
        store.append_user("main", old.session_id, run_id="late", text="hi", timestamp=5)
        self.io.run_all()
        live = store.transcript_path("main", old.session_id)
        lines = [json.loads(line) for line in live.read_text().splitlines()]
        self.assertEqual([line.get("runId") for line in lines], [None, "late"])
        archived = [n for n in self.names(store) if n.startswith(f"{old.session_id}.jsonl.")]
        for name in archived:
            self.assertNotIn("late", (live.parent / name).read_text())

    def test_reset_renames_after_the_pending_append(self) -> None:
        """Resetting a session whose write is still queued (its sync) archives
        the transcript after that write lands, never leaving a stray file."""
        self.patch(os, "fdatasync", lambda fd: None)
        store = self.new_store(fsync="turn", io=self.io)
        session_id, _ = self.turn(store, KEY, "r1")
        fresh = store.reset("main", KEY)
        self.assertIn(f"{session_id}.jsonl", self.names(store))
        self.io.run_all()
        names = self.names(store)
        self.assertNotIn(f"{session_id}.jsonl", names)
        archived = [n for n in names if n.startswith(f"{session_id}.jsonl.reset.")]
        self.assertEqual(len(archived), 1)
        self.assertNotEqual(fresh.session_id, session_id)

    def test_run_result_waits_for_the_sync_and_holds_the_lane(self) -> None:
        """A run reports its result only once its transcript is synced, and the
        next turn on the session starts only then (appends stay in order)."""
        self.patch(os, "fdatasync", lambda fd: None)
        store = self.new_store(fsync="turn", io=self.io, index_flush_delay=0)
        provider = ScriptedProvider([Reply.text("one"), Reply.text("two")], clock=self.clock)
        config = Config(
            agents=AgentsConfig(defaults=AgentDefaults(model_primary="scripted/m")),
            state_dir=self.state_dir,
        )
        runtime = Runtime(config, clock=self.clock, providers={"scripted": provider}, store=store)
        first = runtime.start(
            AgentRequest(agent_id="main", session_key=KEY, message="a", run_id="r1")
        )
        second = runtime.start(
            AgentRequest(agent_id="main", session_key=KEY, message="b", run_id="r2")
        )
        results = (first.result, second.result)
        run_due(self.clock)
        self.assertNoResult(results[0])
        self.assertEqual(len(provider.calls), 1)
        self.io.run_all()
        self.assertEqual(self.successResultOf(results[0]).text, "one")
        run_due(self.clock)
        self.assertEqual(len(provider.calls), 2)
        self.assertNoResult(results[1])
        self.io.run_all()
        self.assertEqual(self.successResultOf(results[1]).text, "two")
        entry = store.get_session("main", KEY)
        assert entry is not None
        runs = [
            json.loads(line).get("runId")
            for line in store.transcript_path("main", entry.session_id).read_text().splitlines()
        ]
        self.assertEqual(runs, [None, "r1", "r1", "r2", "r2"])

    def test_close_waits_for_pending_syncs_then_writes_and_stops(self) -> None:
        """close() fires after the pending syncs, with the index written and the
        executor stopped; later work runs inline."""
        self.patch(os, "fdatasync", lambda fd: None)
        store = self.new_store(fsync="turn", io=self.io)
        _, done = self.turn(store, KEY, "r1")
        closed = store.close()
        self.assertNoResult(closed)
        self.io.run_all()
        self.successResultOf(done)
        self.successResultOf(closed)
        self.assertTrue(self.io.stopped)
        self.assertIn(KEY, self.index_on_disk(store))
        _, later = self.turn(store, "agent:main:late", "r2")
        self.successResultOf(later)


@implementer(IReactorFromThreads)
class ThreadedReactor:
    """Just enough reactor for deferToThreadPool: results come back through a queue."""

    def __init__(self) -> None:
        self.calls: queue.Queue[Callable[[], object]] = queue.Queue()

    def callFromThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        self.calls.put(partial(callable, *args, **kwargs))

    def run_one(self) -> None:
        """Wait (bounded) for one call from a pool thread and run it here."""
        self.calls.get(timeout=30)()


class ThreadPoolIOTests(SynchronousTestCase):
    def test_calls_run_on_a_pool_thread(self) -> None:
        """run() executes on a thread of the pool and fires on the caller's."""
        reactor = ThreadedReactor()
        io = ThreadPoolIO(reactor, max_threads=2)
        io.start()
        self.addCleanup(io.stop)
        d = io.run(threading.get_ident)
        reactor.run_one()
        self.assertNotEqual(self.successResultOf(d), threading.get_ident())
        io.stop()
        self.assertFalse(io.running)
        self.assertEqual(self.successResultOf(io.run(threading.get_ident)), threading.get_ident())

    def test_errors_come_back_as_failures(self) -> None:
        """An exception on the pool thread becomes the Deferred's failure."""
        reactor = ThreadedReactor()
        io = ThreadPoolIO(reactor)
        io.start()
        self.addCleanup(io.stop)
        d = io.run(os.stat, self.mktemp())
        reactor.run_one()
        self.failureResultOf(d, FileNotFoundError)

    def test_many_calls_all_come_back(self) -> None:
        """Results and failures of many calls reach their own Deferreds, on
        the caller's thread, using at most ``max_threads`` threads."""
        reactor = ThreadedReactor()
        io = ThreadPoolIO(reactor, max_threads=3)
        io.start()
        self.addCleanup(io.stop)
        caller = threading.get_ident()

        def job(n: int) -> tuple[int, int]:
            if n % 7 == 3:
                raise ValueError(n)
            return n * n, threading.get_ident()

        calls = [io.run(job, n) for n in range(40)]
        results: dict[int, object] = {}
        fired_on: set[int] = set()
        for n, d in enumerate(calls):
            d.addBoth(partial(self._record, results, fired_on, n))
        while len(results) < len(calls):
            reactor.run_one()
        self.assertEqual(fired_on, {caller})
        threads = set()
        for n in range(40):
            outcome = results[n]
            if n % 7 == 3:
                self.assertIsInstance(outcome, Failure)
                assert isinstance(outcome, Failure)
                outcome.trap(ValueError)
            else:
                assert isinstance(outcome, tuple)
                self.assertEqual(outcome[0], n * n)
                threads.add(outcome[1])
        self.assertLessEqual(len(threads), 3)
        self.assertNotIn(caller, threads)

    @staticmethod
    def _record(results: dict[int, object], fired_on: set[int], n: int, outcome: object) -> None:
        results[n] = outcome
        fired_on.add(threading.get_ident())

    def test_stop_finishes_queued_work(self) -> None:
        """stop() lets the threads finish every call queued before it, then
        joins them; the results are then delivered by the reactor."""
        reactor = ThreadedReactor()
        io = ThreadPoolIO(reactor, max_threads=1)
        io.start()
        gate = threading.Event()
        done: list[int] = []

        def job(n: int) -> int:
            gate.wait(30)
            done.append(n)
            return n

        calls = [io.run(job, n) for n in range(5)]
        gate.set()
        io.stop()
        self.assertEqual(done, [0, 1, 2, 3, 4])
        while not reactor.calls.empty():
            reactor.run_one()
        self.assertEqual([self.successResultOf(d) for d in calls], [0, 1, 2, 3, 4])
        self.assertFalse(io.running)

    def test_blocking_io_for_picks_threads_only_when_the_reactor_has_them(self) -> None:
        """A Clock gets inline IO; a reactor that takes calls from threads gets a
        started pool."""
        self.assertIsInstance(blocking_io_for(Clock()), InlineIO)
        io = blocking_io_for(ThreadedReactor())
        self.addCleanup(io.stop)
        assert isinstance(io, ThreadPoolIO)
        self.assertTrue(io.running)


class IdTests(SynchronousTestCase):
    """Ids from buffered randomness look and behave like uuid4s."""

    def test_random_uuid4_is_a_version_4_uuid(self) -> None:
        """Canonical text, version 4, RFC 4122 variant, no repeats."""
        ids = [ids_module.random_uuid4() for _ in range(5000)]
        self.assertEqual(len(set(ids)), len(ids))
        for text in ids[:300]:
            parsed = uuid.UUID(text)
            self.assertEqual(str(parsed), text)
            self.assertEqual((parsed.version, parsed.variant), (4, uuid.RFC_4122))

    def test_forked_child_does_not_repeat_the_parent(self) -> None:
        """A child process draws fresh randomness, not the parent's buffer."""
        ids_module.random_uuid4()  # the buffer is filled
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.write(write_end, ids_module.random_uuid4().encode("ascii"))
            finally:
                os._exit(0)
        os.close(write_end)
        child = os.read(read_end, 64).decode("ascii")
        os.close(read_end)
        os.waitpid(pid, 0)
        self.assertNotEqual(child, ids_module.random_uuid4())


class LargeTurnTests(SynchronousTestCase):
    """A reply of megabytes is written whole (in pieces, not copied) and read back."""

    def test_large_reply_round_trips(self) -> None:
        """A 3 MB reply with non-ASCII text is one line on disk and the history."""
        clock = Clock()
        clock.advance(1_700_000_000)
        store = SessionStore(Path(self.mktemp()), clock=clock)
        entry = store.ensure_session("main", KEY)
        text = "é" * (3 * 1024 * 1024 // 2)
        store.append_user("main", entry.session_id, run_id="r1", text="long?", timestamp=1)
        self.successResultOf(
            store.finish_turn(
                "main",
                KEY,
                entry.session_id,
                run_id="r1",
                text=text,
                timestamp=2,
                usage=Usage(),
                stop_reason="stop",
            )
        )
        lines = store.transcript_path("main", entry.session_id).read_bytes().split(b"\n")
        self.assertEqual(lines[-1], b"")
        self.assertEqual(len(lines), 4)  # header, user, assistant, and the final newline
        history = load_history(store, "main", entry.session_id)
        self.assertEqual(
            [(m.role, len(m.content)) for m in history], [("user", 5), ("assistant", len(text))]
        )

    def test_short_writes_are_continued(self) -> None:
        """When the kernel takes only part of the pieces, the rest follows in order."""
        path = Path(self.mktemp())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.addCleanup(os.close, fd)
        real_writev = os.writev
        sizes: list[int] = []

        def stingy(fd: int, buffers: Sequence[Any]) -> int:
            first = bytes(buffers[0])[:3]  # at most 3 bytes per call
            sizes.append(len(first))
            return real_writev(fd, [first])

        self.patch(os, "writev", stingy)
        fileio._writev_all(fd, [b"abcdefg", b"", b"\n", b"hij"])
        self.assertEqual(path.read_bytes(), b"abcdefg\nhij")
        self.assertEqual(sizes, [3, 3, 1, 1, 3])
