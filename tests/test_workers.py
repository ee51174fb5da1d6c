"""The workers supervisor and a worker, in memory: spawning with the shared
sockets, group readiness, restart backoff, draining, log forwarding; and the
``--workers`` option with its refusal of the file store."""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IProcessProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    LogPublisher,
    eventAsJSON,
    formatEvent,
    globalLogPublisher,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config import ConfigError
from openclaw.config.loader import load_config, parse_config_text
from openclaw.core.logformat import SecretScrubber
from openclaw.core.secret_values import SecretValues
from openclaw.service import Options
from openclaw.workers import UNSAFE_FILE_STORE_ENV, control, resolve_worker_count, workers_problems
from openclaw.workers.child import (
    FlushWhenUrgent,
    TracebackAsText,
    Worker,
    accept_one_per_wakeup,
    load_group_config,
    read_group_config,
)
from openclaw.workers.control import GroupConfig, config_report, read_config_report
from openclaw.workers.sockets import SharedListener
from openclaw.workers.supervisor import (
    KILL_MARGIN_SECONDS,
    MAX_LINE_BYTES,
    RESTART_BASE_SECONDS,
    RESTART_MAX_SECONDS,
    STABLE_SECONDS,
    WorkerSupervisor,
    worker_argv,
)

#: Config texts of a group: what it started with, what a reload then accepted.
STARTED_TEXT = '{gateway: {auth: {mode: "token", token: "started-token-0123456789"}}}'
RELOADED_TEXT = '{gateway: {auth: {mode: "token", token: "reloaded-token-0123456789"}}}'


class FakeProcess:
    """The parent's view of a spawned worker."""

    def __init__(self, pid: int, protocol: IProcessProtocol, argv: list[str], fds: Any) -> None:
        self.pid: int | None = pid
        self.protocol = protocol
        self.argv = argv
        self.child_fds = fds
        self.signals: list[str] = []
        self.written: list[tuple[int, bytes]] = []
        self.closed: list[int] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)

    def writeToChild(self, fd: int, data: bytes) -> None:
        self.written.append((fd, data))

    def closeChildFD(self, fd: int) -> None:
        self.closed.append(fd)

    def handed_config(self) -> GroupConfig:
        """The config written to the worker's config pipe, which was then closed."""
        assert control.CONFIG_FD in self.closed
        data = b"".join(d for fd, d in self.written if fd == control.CONFIG_FD)
        return GroupConfig.decode(data)

    def words(self) -> list[bytes]:
        """Control words sent to the worker's fd 0."""
        return [d.strip() for fd, d in self.written if fd == control.CONTROL_IN_FD]

    def end(self, reason: Failure) -> None:
        """The process exits: Twisted clears the pid, then calls processEnded."""
        self.pid = None
        self.protocol.processEnded(reason)


class ProcessReactor(MemoryReactorClock):
    """A memory reactor that records spawned processes."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[FakeProcess] = []

    def spawnProcess(
        self,
        processProtocol: IProcessProtocol,
        executable: str,
        args: Sequence[str] = (),
        env: Any = None,
        path: Any = None,
        uid: Any = None,
        gid: Any = None,
        usePTY: bool = False,
        childFDs: Any = None,
    ) -> FakeProcess:
        process = FakeProcess(1000 + len(self.spawned), processProtocol, list(args), childFDs)
        self.spawned.append(process)
        processProtocol.makeConnection(process)  # type: ignore[arg-type]
        return process


class _Port:
    """A stand-in listening port with a descriptor."""

    def __init__(self, fileno: int) -> None:
        self._fileno = fileno
        self.stopped = False

    def fileno(self) -> int:
        return self._fileno

    def getHost(self) -> Any:
        from twisted.internet.address import IPv4Address

        return IPv4Address("TCP", "127.0.0.1", 4321)

    def stopListening(self) -> None:
        self.stopped = True


def _argv(index: int, listeners: Sequence[SharedListener]) -> list[str]:
    return ["worker", str(index), *(str(listener.fileno) for listener in listeners)]


def killed(signal_number: int = 9) -> Failure:
    return Failure(ProcessTerminated(signal=signal_number))


class SupervisorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = ProcessReactor()
        self.port = _Port(17)
        self.events: list[dict[str, Any]] = []
        self.supervisor = WorkerSupervisor(
            reactor=self.reactor,
            listeners=[SharedListener("tcp:0", self.port, "inet")],  # type: ignore[arg-type]
            count=2,
            argv=_argv,
            config=GroupConfig("/etc/openclaw.json", STARTED_TEXT, STARTED_TEXT),
            grace_seconds=5.0,
            env={"A": "1"},
            observer=self.events.append,
        )
        self.supervisor.startService()

    def _ready_all(self) -> None:
        for process in self.reactor.spawned:
            process.protocol.childDataReceived(control.CONTROL_OUT_FD, b"ready\n")

    def test_spawns_with_shared_socket(self) -> None:
        """N workers start, each with the listening socket on fd 6, the control
        and log pipes on fds 0, 3 and 4, and the config pipe on fd 5."""
        self.assertEqual(len(self.reactor.spawned), 2)
        for index, process in enumerate(self.reactor.spawned, 1):
            self.assertEqual(process.argv, ["worker", str(index), "17"])
            self.assertEqual(process.child_fds, {0: "w", 1: 1, 2: 2, 3: "r", 4: "r", 5: "w", 6: 17})

    def test_group_ready_only_when_all_are(self) -> None:
        """``group ready`` goes to every worker once the last one is up, not before."""
        first, second = self.reactor.spawned
        waited = self.supervisor.ready()
        first.protocol.childDataReceived(control.CONTROL_OUT_FD, b"rea")
        first.protocol.childDataReceived(control.CONTROL_OUT_FD, b"dy\n")
        self.assertEqual(first.words(), [])
        self.assertNoResult(waited)
        self.assertEqual(self.supervisor.state, "starting")
        second.protocol.childDataReceived(control.CONTROL_OUT_FD, b"ready\n")
        self.assertEqual(first.words(), [b"group ready"])
        self.assertEqual(second.words(), [b"group ready"])
        self.assertEqual(self.supervisor.state, "ready")
        self.successResultOf(waited)

    def test_restart_with_backoff(self) -> None:
        """A worker that dies is respawned after the base delay, then twice that if it
        dies again quickly; a worker that lived long restarts after the base again.
        A restarted worker is told ``group ready`` as soon as it is up."""
        self._ready_all()
        first = self.reactor.spawned[0]
        first.end(killed())
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.advance(RESTART_BASE_SECONDS - 0.01)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.advance(0.01)
        self.assertEqual(len(self.reactor.spawned), 3)
        again = self.reactor.spawned[2]
        self.assertEqual(again.argv[1], "1")
        again.protocol.childDataReceived(control.CONTROL_OUT_FD, b"ready\n")
        self.assertEqual(again.words(), [b"group ready"])
        again.end(killed())
        self.reactor.advance(RESTART_BASE_SECONDS * 2 - 0.01)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.reactor.advance(0.01)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.reactor.advance(STABLE_SECONDS)
        self.reactor.spawned[3].end(killed())
        self.reactor.advance(RESTART_BASE_SECONDS)
        self.assertEqual(len(self.reactor.spawned), 5)
        self.assertEqual(self.supervisor.slots[0].restarts, 3)

    def test_workers_are_handed_the_config_text(self) -> None:
        """Each worker gets the group's config text on its config pipe, which is then
        closed; argv names no config file (a worker never reads it at start)."""
        for process in self.reactor.spawned:
            self.assertEqual(
                process.handed_config(),
                GroupConfig("/etc/openclaw.json", STARTED_TEXT, STARTED_TEXT),
            )
            self.assertNotIn("--config", process.argv)

    def test_a_starting_worker_gets_its_reload_once_ready(self) -> None:
        """A reload reaching the group while a worker starts is sent to it once it
        says ready: SIGHUP before it installed its handler would kill it."""
        first, second = self.reactor.spawned
        first.protocol.childDataReceived(control.CONTROL_OUT_FD, b"ready\n")
        first.protocol.childDataReceived(control.CONTROL_OUT_FD, control.RELOADED + b"\n")
        self.assertEqual(second.signals, [])
        second.protocol.childDataReceived(control.CONTROL_OUT_FD, b"ready\n")
        self.assertEqual(second.signals, ["HUP"])
        self.assertEqual(first.signals, [])

    def test_restarted_worker_runs_the_last_accepted_reload(self) -> None:
        """After a worker reports a reload it accepted, a restarted worker is handed
        that text (and the one the group started with), not whatever the file holds."""
        self._ready_all()
        first, second = self.reactor.spawned
        second.protocol.childDataReceived(
            control.CONTROL_OUT_FD, config_report("/etc/openclaw.json", RELOADED_TEXT) + b"\n"
        )
        first.end(killed())
        self.reactor.advance(RESTART_BASE_SECONDS)
        restarted = self.reactor.spawned[2]
        self.assertEqual(
            restarted.handed_config(),
            GroupConfig("/etc/openclaw.json", STARTED_TEXT, RELOADED_TEXT),
        )

    def test_a_reloaded_secret_is_masked_in_workers_records(self) -> None:
        """The parent publishes the workers' records through its scrubber: a
        token a reload brings in is masked there too, as a single gateway's is."""
        scrubber = SecretScrubber(SecretValues(["started-token-0123456789"]))
        seen: list[dict[str, Any]] = []
        publisher = LogPublisher()
        publisher.addObserver(scrubber)
        publisher.addObserver(cast(ILogObserver, seen.append))
        reactor = ProcessReactor()
        supervisor = WorkerSupervisor(
            reactor=reactor,
            listeners=[SharedListener("tcp:0", _Port(18), "inet")],  # type: ignore[arg-type]
            count=1,
            argv=_argv,
            config=GroupConfig("/etc/openclaw.json", STARTED_TEXT, STARTED_TEXT),
            grace_seconds=5.0,
            env={"OPENCLAW_STATE_DIR": self.mktemp()},
            observer=publisher,
            scrubber=scrubber,
        )
        supervisor.startService()
        self.addCleanup(supervisor.stopService)
        (worker,) = reactor.spawned
        worker.protocol.childDataReceived(
            control.CONTROL_OUT_FD, config_report("/etc/openclaw.json", RELOADED_TEXT) + b"\n"
        )
        Logger(namespace="t", observer=publisher).info(
            "GET {path}", path="/x/reloaded-token-0123456789"
        )
        self.assertEqual(formatEvent(seen[-1]), "GET /x/[redacted]")

    def test_a_workers_flattened_copy_is_masked_too(self) -> None:
        """A worker's record arrives as JSON with each format field's text again in
        ``log_flattened``, which ``formatEvent`` prefers: the parent's text line and
        its JSON ``message`` are masked there as the fields are, and its control
        characters escaped."""
        import io

        from twisted.logger import jsonFileLogObserver

        from openclaw.core.logformat import flat_event

        scrubber = SecretScrubber(SecretValues(["started-token-0123456789"]))
        seen: list[dict[str, Any]] = []
        publisher = LogPublisher()
        publisher.addObserver(scrubber)
        publisher.addObserver(cast(ILogObserver, seen.append))
        reactor = ProcessReactor()
        supervisor = WorkerSupervisor(
            reactor=reactor,
            listeners=[SharedListener("tcp:0", _Port(18), "inet")],  # type: ignore[arg-type]
            count=1,
            argv=_argv,
            config=GroupConfig("/etc/openclaw.json", STARTED_TEXT, STARTED_TEXT),
            grace_seconds=5.0,
            env={"OPENCLAW_STATE_DIR": self.mktemp()},
            observer=publisher,
            scrubber=scrubber,
        )
        supervisor.startService()
        self.addCleanup(supervisor.stopService)
        # What a worker without a scrubber of its own writes on its log pipe.
        out = io.StringIO()
        Logger(namespace="openclaw.access", observer=jsonFileLogObserver(out)).info(
            '"GET {path}" {status}', path="/x/started-token-0123456789\x1b[2J", status=404
        )
        self.assertIn("log_flattened", out.getvalue())
        (worker,) = reactor.spawned
        worker.protocol.childDataReceived(control.LOG_FD, out.getvalue().encode())
        [event] = seen
        self.assertEqual(formatEvent(event), '"GET /x/[redacted]\\x1b[2J" 404')
        line = flat_event(event)
        self.assertEqual(line["message"], '"GET /x/[redacted]\\x1b[2J" 404')
        self.assertEqual(line["path"], "/x/[redacted]\\x1b[2J")

    def test_unreadable_config_report_is_ignored_without_its_content(self) -> None:
        """A garbled report keeps the group's config, and its bytes are not logged
        (a config report carries secrets)."""
        from twisted.logger import capturedLogs

        process = self.reactor.spawned[0]
        with capturedLogs() as events:
            process.protocol.childDataReceived(control.CONTROL_OUT_FD, b"config c2VjcmV0!!\n")
        self.assertEqual(self.supervisor.config.current, STARTED_TEXT)
        [event] = events
        self.assertNotIn("c2VjcmV0", json.dumps({k: str(v) for k, v in event.items()}))

    def test_overlong_control_line_dropped_whole(self) -> None:
        """A control line past MAX_LINE_BYTES is dropped up to its newline, not passed
        on in pieces (which would be logged as unknown words); the next word counts."""
        from twisted.logger import capturedLogs

        process = self.reactor.spawned[0]
        payload = base64.b64encode(b"secret " * (MAX_LINE_BYTES // 5))
        with capturedLogs() as events:
            process.protocol.childDataReceived(control.CONTROL_OUT_FD, b"config " + payload[:-7])
            process.protocol.childDataReceived(control.CONTROL_OUT_FD, payload[-7:] + b"\nready\n")
        self.assertTrue(self.supervisor.slots[0].ready)
        self.assertEqual(self.supervisor.config.current, STARTED_TEXT)
        self.assertEqual(
            [e["log_format"] for e in events if e.get("log_level") == LogLevel.warn],
            ["worker {worker} sent a control line over {limit} bytes; dropped"],
        )

    def test_refused_config_is_not_restarted_in_a_loop(self) -> None:
        """A worker exiting EXIT_CONFIG_REFUSED is logged at error level with how many
        workers still run, and restarted only after RESTART_MAX_SECONDS, or at once
        when another worker reports a newly accepted config."""
        from twisted.logger import capturedLogs

        self._ready_all()
        first, second = self.reactor.spawned
        with capturedLogs() as events:
            first.end(Failure(ProcessTerminated(exitCode=control.EXIT_CONFIG_REFUSED)))
        [event] = [e for e in events if e.get("log_level") == LogLevel.error]
        self.assertEqual((event["worker"], event["serving"], event["count"]), (1, 1, 2))
        self.assertTrue(self.supervisor.slots[0].config_refused)
        self.reactor.advance(RESTART_MAX_SECONDS - 0.1)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.reactor.spawned[2].end(
            Failure(ProcessTerminated(exitCode=control.EXIT_CONFIG_REFUSED))
        )
        second.protocol.childDataReceived(
            control.CONTROL_OUT_FD, config_report("/etc/openclaw.json", RELOADED_TEXT) + b"\n"
        )
        self.assertEqual(len(self.reactor.spawned), 4)
        self.assertEqual(self.reactor.spawned[3].handed_config().current, RELOADED_TEXT)
        self.reactor.spawned[3].protocol.childDataReceived(control.CONTROL_OUT_FD, b"ready\n")
        self.assertFalse(self.supervisor.slots[0].config_refused)

    def test_death_is_logged_with_fields(self) -> None:
        """The restart warning carries the worker, pid, exit status and delay as fields."""
        from twisted.logger import capturedLogs

        with capturedLogs() as events:
            self.reactor.spawned[1].end(killed(9))
        [event] = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(
            (event["worker"], event["pid"], event["status"], event["delay"]),
            (2, 1001, "signal 9", RESTART_BASE_SECONDS),
        )

    def test_stop_drains_all(self) -> None:
        """Stopping says ``group stopping``, sends SIGTERM, closes the parent's socket
        and fires once every worker has exited; nothing is restarted."""
        self._ready_all()
        stopped = self.supervisor.stopService()
        self.assertTrue(self.port.stopped)
        for process in self.reactor.spawned:
            self.assertEqual(process.words()[-1], b"group stopping")
            self.assertEqual(process.signals, ["TERM"])
        self.reactor.spawned[0].end(Failure(ProcessDone(0)))
        self.assertNoResult(stopped)
        self.reactor.spawned[1].end(Failure(ProcessDone(0)))
        self.successResultOf(stopped)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_kills_after_grace(self) -> None:
        """A worker still running past the grace (and margin) is sent SIGKILL."""
        stopped = self.supervisor.stopService()
        self.reactor.spawned[0].end(Failure(ProcessDone(0)))
        self.reactor.advance(5.0 + KILL_MARGIN_SECONDS - 0.1)
        self.assertEqual(self.reactor.spawned[1].signals, ["TERM"])
        self.reactor.advance(0.1)
        self.assertEqual(self.reactor.spawned[1].signals, ["TERM", "KILL"])
        self.reactor.spawned[1].end(killed(9))
        self.successResultOf(stopped)

    def test_stop_cancels_pending_restart(self) -> None:
        """A worker waiting for its restart is not started once the group stops."""
        self.reactor.spawned[0].end(killed())
        stopped = self.supervisor.stopService()
        self.reactor.spawned[1].end(Failure(ProcessDone(0)))
        self.successResultOf(stopped)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_worker_logs_published_tagged(self) -> None:
        """A worker's JSON log records reach the parent's observer, split across
        reads, tagged with the worker's index and pid."""
        record = eventAsJSON(
            {
                "log_format": "hello {who}",
                "who": "there",
                "log_level": LogLevel.info,
                "log_namespace": "openclaw.x",
                "log_time": 1.0,
            }
        )
        data = ("\x1e" + record + "\n").encode()
        process = self.reactor.spawned[1]
        process.protocol.childDataReceived(control.LOG_FD, data[:10])
        self.assertEqual(self.events, [])
        process.protocol.childDataReceived(control.LOG_FD, data[10:] + b"not json\n")
        self.assertEqual(len(self.events), 2)
        event, raw = self.events
        self.assertEqual((event["who"], event["worker"], event["worker_pid"]), ("there", 2, 1001))
        self.assertEqual(event["log_system"], "worker-2 openclaw.x#info")
        self.assertEqual(raw["line"], "not json")

    def test_runaway_line_bounded(self) -> None:
        """A worker's output without newlines is not buffered without bound: past
        MAX_LINE_BYTES it is passed on as it is."""
        process = self.reactor.spawned[0]
        chunk = b"x" * (MAX_LINE_BYTES // 2 + 1)
        process.protocol.childDataReceived(control.LOG_FD, chunk)
        self.assertEqual(self.events, [])
        process.protocol.childDataReceived(control.LOG_FD, chunk)
        [event] = self.events
        self.assertEqual(len(event["line"]), 2 * len(chunk))

    def test_failure_reaches_parent_as_text(self) -> None:
        """A worker's logged failure arrives at the parent with its traceback as text
        (a Failure itself does not survive JSON)."""
        import io

        from twisted.logger import Logger, formatEvent, jsonFileLogObserver

        out = io.StringIO()
        logger = Logger(observer=TracebackAsText(jsonFileLogObserver(out)))
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            logger.failure("request {rid} broke", rid="r1")
        self.reactor.spawned[0].protocol.childDataReceived(control.LOG_FD, out.getvalue().encode())
        [event] = self.events
        text = formatEvent(event)
        self.assertIn("request r1 broke", text)
        self.assertIn("ZeroDivisionError", text)
        self.assertIn("Traceback", text)


class WorkerTests(SynchronousTestCase):
    def setUp(self) -> None:
        tmp = Path(self.mktemp())
        tmp.mkdir()
        self.config = parse_config_text(
            '{gateway: {auth: {mode: "token", token: "t0ken-value"}}}',
            source="test",
            env={},
            state_dir=tmp,
        ).config
        self.reactor = MemoryReactorClock()
        # The adopting endpoint closes the descriptor it was given (the reactor
        # holds its own copy): hand it descriptors of our own.
        self.fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(2)]
        self.worker = Worker(
            reactor=self.reactor,
            config=self.config,
            index=2,
            listen_fds=[(self.fds[0], socket.AF_INET), (self.fds[1], socket.AF_INET6)],
        )
        self.control = StringTransport()
        self.worker.control.makeConnection(self.control)

    def test_adopts_and_reports_ready(self) -> None:
        """Start adopts every lent socket into the gateway's Site and says ``ready``,
        while the worker's own readiness waits for the group."""
        self.worker.start()
        self.assertEqual(
            [(fd, family) for fd, family, _ in self.reactor.adoptedPorts],
            [(self.fds[0], socket.AF_INET), (self.fds[1], socket.AF_INET6)],
        )
        for _, _, factory in self.reactor.adoptedPorts:
            self.assertIs(factory, self.worker.gateway.site)
        self.assertEqual(self.control.value(), b"ready\n")
        self.assertEqual(self.worker.gateway.readiness.state, "starting")

    def test_follows_group(self) -> None:
        """``group ready`` makes the worker ready; ``group stopping`` makes it stop
        reporting ready."""
        self.worker.start()
        self.worker.control.dataReceived(b"group ready\n")
        self.assertEqual(self.worker.gateway.readiness.state, "ready")
        self.worker.control.dataReceived(b"group stopping\n")
        self.assertEqual(self.worker.gateway.readiness.state, "stopping")

    def test_parent_gone_stops(self) -> None:
        """End of file on the control pipe (the parent died) stops the reactor."""
        self.worker.start()
        self.reactor.running = True
        self.worker.control.connectionLost(None)
        self.assertTrue(self.reactor.hasStopped)


class WorkerConfigTests(SynchronousTestCase):
    """A worker runs the config its parent hands it and reports the reloads it takes."""

    def setUp(self) -> None:
        self.tmp = Path(self.mktemp()).resolve()
        self.tmp.mkdir()
        self.env = {"OPENCLAW_STATE_DIR": str(self.tmp / "state"), "HOME": str(self.tmp)}
        self.path = self.tmp / "openclaw.json5"

    def _worker(self, config: Any, reloaded: Any = None, serves: Any = ()) -> Worker:
        from openclaw.config.live import LiveConfig
        from openclaw.gateway.assembly import build_gateway

        worker = Worker(
            reactor=MemoryReactorClock(),
            config=config,
            index=1,
            listen_fds=[],
            reloaded=reloaded,
            gateway_factory=lambda c, r: build_gateway(c, r, live=LiveConfig(c, env=self.env)),
            serves=serves,
        )
        self.control = StringTransport()
        worker.control.makeConnection(self.control)
        return worker

    def _accepts(self, worker: Worker, token: str) -> bool:
        return worker.gateway.auth.check(token=token, password=None, client_address="10.0.0.9").ok

    def test_auth_none_is_refused_when_the_group_listens_beyond_loopback(self) -> None:
        """A worker judges a reload by the endpoints its parent bound: auth
        ``none`` is refused when one of them is beyond loopback, as in a single
        gateway (the worker has no listener of its own to look at)."""
        self.path.write_text(STARTED_TEXT)
        config = load_config(str(self.path), env=self.env).config
        open_to_all = self._worker(config, serves=["tcp:18789"])
        loopback = self._worker(config, serves=["tcp:18789:interface=127.0.0.1"])
        self.path.write_text('{gateway: {auth: {mode: "none"}}}')
        refused = open_to_all.reload()
        self.assertFalse(refused.ok)
        self.assertIn("beyond loopback", " ".join(refused.problems))
        self.assertTrue(loopback.reload().ok)

    def test_worker_argv_names_what_each_socket_serves(self) -> None:
        listener = SharedListener("tcp:18789:interface=0.0.0.0", _Port(9), "inet")  # type: ignore[arg-type]
        argv = worker_argv(3, [listener])
        self.assertEqual(argv[-4:], ["--listen-fd", "6:inet", "--serves", listener.description])

    def test_reload_reports_the_accepted_config(self) -> None:
        """A reload the worker takes is reported with the file and its text; a
        refused one says nothing; gateway.reload then asks for the others' reload."""
        self.path.write_text(STARTED_TEXT)
        worker = self._worker(load_config(str(self.path), env=self.env).config)
        self.path.write_text(RELOADED_TEXT)
        self.assertTrue(worker.reload().ok)
        [line] = self.control.value().splitlines()
        self.assertEqual(read_config_report(line), (str(self.path), RELOADED_TEXT))
        self.control.clear()
        self.path.write_text("{ broken")
        self.assertFalse(worker.reload().ok)
        self.assertFalse(worker.reload_group().ok)
        self.assertEqual(self.control.value(), b"")
        self.path.write_text(STARTED_TEXT)
        self.assertTrue(worker.reload_group().ok)
        report, word = self.control.value().splitlines()
        self.assertEqual(read_config_report(report), (str(self.path), STARTED_TEXT))
        self.assertEqual(word, control.RELOADED)

    def test_starts_on_the_groups_reloaded_config(self) -> None:
        """Handed a reloaded config, a new worker serves with it (its token), while its
        restart-only settings stay the ones the group started with, as in its
        siblings: its next reload names them as waiting for a restart."""
        reloaded_text = (
            '{gateway: {auth: {mode: "token", token: "reloaded-token-0123456789"},'
            " http: {maxHeaderBytes: 600}}}"
        )
        self.path.write_text(reloaded_text)
        started, reloaded = load_group_config(
            GroupConfig(str(self.path), STARTED_TEXT, reloaded_text), self.env
        )
        assert reloaded is not None
        worker = self._worker(started, reloaded)
        self.assertTrue(self._accepts(worker, "reloaded-token-0123456789"))
        self.assertFalse(self._accepts(worker, "started-token-0123456789"))
        running = worker.service.config.gateway
        self.assertEqual(running.auth.token, "reloaded-token-0123456789")
        self.assertEqual(running.http.max_header_bytes, started.gateway.http.max_header_bytes)
        result = worker.reload()
        self.assertTrue(result.ok, result.problems)
        self.assertEqual(result.changed, ())
        self.assertEqual(result.restart_needed, ("gateway.http header limits and keep-alive",))

    def test_a_restarted_worker_reports_the_store_it_uses(self) -> None:
        """A group reloaded to another gateway.redis.keyPrefix (restart-only):
        a worker started afterwards writes under the prefix the group started
        with, and its start-up report names that one, not the reloaded one."""
        redis = f"unix://{self.tmp / 'redis.sock'}?db=0"
        texts = [
            json.dumps(
                {
                    "gateway": {
                        "auth": {"mode": "token", "token": "started-token-0123456789"},
                        "redis": {"url": redis, "keyPrefix": prefix},
                    },
                    "session": {"store": "redis"},
                }
            )
            for prefix in ("oc5:", "oc6:")
        ]
        self.path.write_text(texts[1])
        started, reloaded = load_group_config(
            GroupConfig(str(self.path), texts[0], texts[1]), self.env
        )
        assert reloaded is not None
        worker = self._worker(started, reloaded)
        lines: list[str] = []
        observer = cast(ILogObserver, lambda event: lines.append(formatEvent(event) or ""))
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        worker.start()
        [report] = [line for line in lines if line.startswith("sessions: redis")]
        self.assertIn("key prefix 'oc5:'", report)

    def test_group_config_loads_like_the_file(self) -> None:
        """The handed text is read as the file would be: ``${VAR}`` from the
        environment, the real path as source (for later reloads); no reload since
        start gives no second config; no file gives the defaults."""
        text = '{gateway: {auth: {mode: "token", token: "${OC_TEST_TOKEN}"}}}'
        env = {**self.env, "OC_TEST_TOKEN": "from-the-environment-0123"}
        started, reloaded = load_group_config(GroupConfig(str(self.path), text, text), env)
        self.assertIsNone(reloaded)
        self.assertEqual(started.gateway.auth.token, "from-the-environment-0123")
        self.assertEqual(started.source_path, self.path)
        defaults, none = load_group_config(GroupConfig(None, None, None), env)
        self.assertIsNone(none)
        self.assertIsNone(defaults.source_path)
        with self.assertRaises(ConfigError):
            load_group_config(GroupConfig(str(self.path), text, text), self.env)

    def test_reads_the_config_pipe_to_its_end(self) -> None:
        """The config comes on a pipe the parent closes; the worker closes its end."""
        group = GroupConfig(str(self.path), STARTED_TEXT, RELOADED_TEXT)
        read_end, write_end = os.pipe()
        os.write(write_end, group.encode())
        os.close(write_end)
        self.assertEqual(read_group_config(read_end), group)
        self.assertRaises(OSError, os.fstat, read_end)


class FlushTests(SynchronousTestCase):
    def test_flush_after_warnings_only(self) -> None:
        """The buffered log pipe is flushed right after a warning or an error, not
        after every info record."""
        seen: list[dict[str, Any]] = []
        flushes: list[int] = []
        observer = FlushWhenUrgent(seen.append, lambda: flushes.append(len(seen)))
        observer({"log_level": LogLevel.info})
        observer({"log_level": LogLevel.debug})
        self.assertEqual(flushes, [])
        observer({"log_level": LogLevel.warn})
        observer({"log_level": LogLevel.error})
        observer({})
        self.assertEqual(flushes, [3, 4])


class AcceptTests(SynchronousTestCase):
    def test_one_accept_per_wakeup(self) -> None:
        """A shared port's accept loop is held to one connection per wakeup, even
        after Twisted raised its batch size under load; ports without one are left be."""

        class Port:
            numberAccepts = 100
            seen: list[int] = []

            def doRead(self) -> None:
                self.seen.append(self.numberAccepts)
                self.numberAccepts += 20  # what tcp.Port does after a full batch

        port = Port()
        accept_one_per_wakeup(port)  # type: ignore[arg-type]
        port.doRead()
        port.doRead()
        self.assertEqual(port.seen, [1, 1])
        other = object()
        accept_one_per_wakeup(other)  # type: ignore[arg-type]


class PlanTests(SynchronousTestCase):
    def test_count(self) -> None:
        """--workers beats gateway.workers; auto is the number of cores; bad values fail."""
        self.assertEqual(resolve_worker_count(None, 1), 1)
        self.assertEqual(resolve_worker_count("3", 1), 3)
        self.assertEqual(resolve_worker_count(None, "auto", lambda: 8), 8)
        self.assertEqual(resolve_worker_count("auto", 4, lambda: None), 1)
        for bad in ("0", "-2", "many"):
            self.assertRaises(ValueError, resolve_worker_count, bad, 1)

    def test_file_store_refused(self) -> None:
        """Several workers with the file store are refused with a line that names
        session.store "redis"; one worker, or the test escape hatch, passes."""
        config = parse_config_text("{}", source="t", env={}, state_dir=Path("/x")).config
        [problem] = workers_problems(config, 2, ["tcp:0"], {})
        self.assertIn('session.store: "redis"', problem)
        self.assertEqual(workers_problems(config, 1, ["tcp:0"], {}), [])
        self.assertEqual(workers_problems(config, 2, ["tcp:0"], {UNSAFE_FILE_STORE_ENV: "1"}), [])

    def test_tls_listener_refused(self) -> None:
        """Only tcp, tcp6 and unix listeners can be lent to workers."""
        config = parse_config_text("{}", source="t", env={}, state_dir=Path("/x")).config
        problems = workers_problems(
            config, 2, ["ssl:443:privateKey=k.pem"], {UNSAFE_FILE_STORE_ENV: "1"}
        )
        self.assertEqual(len(problems), 1)
        self.assertIn("ssl:443", problems[0])

    def _exit(self, tmp: Path, argv: list[str], config: dict[str, Any]) -> list[str]:
        import io
        import sys

        path = tmp / "openclaw.json"
        path.write_text(json.dumps(config))
        options = Options(env={"HOME": str(tmp), "OPENCLAW_STATE_DIR": str(tmp)})
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit) as caught:
            options.parseOptions(["--config", str(path), *argv])
        self.assertEqual(caught.exception.code, 1)
        return err.getvalue().splitlines()

    def test_options(self) -> None:
        """``--workers`` and ``gateway.workers`` reach the options; the refusal and a
        bad count exit 1 with one line each."""
        tmp = Path(self.mktemp())
        tmp.mkdir()
        auth = {"auth": {"mode": "token", "token": "t0ken-value"}}
        options = Options(env={"HOME": str(tmp), "OPENCLAW_STATE_DIR": str(tmp)})
        path = tmp / "one.json"
        path.write_text(json.dumps({"gateway": {**auth, "workers": 1}}))
        options.parseOptions(["--config", str(path)])
        self.assertEqual(options.workers, 1)
        [line] = self._exit(tmp, [], {"gateway": {**auth, "workers": 2}})
        self.assertIn('session.store: "redis"', line)
        [line] = self._exit(tmp, ["--workers", "zero"], {"gateway": auth})
        self.assertIn("--workers must be", line)

    def test_gateway_run_passes_workers(self) -> None:
        """``openclaw gateway run --workers N`` hands the flag to the gateway's options."""
        from openclaw.cli.main import main

        seen: list[list[str]] = []
        try:  # the runner of openclaw gateway run (being split out of cli/main.py)
            from openclaw.cli import gateway_run  # type: ignore[attr-defined, unused-ignore]
        except ImportError:
            from twisted.application.twist._twist import Twist

            self.patch(Twist, "main", staticmethod(seen.append))
        else:

            def run(argv: Sequence[str], log_format: str) -> int:
                seen.append(list(argv))
                return 0

            self.patch(gateway_run, "run_gateway", run)
        self.assertEqual(main(["gateway", "run", "--workers", "auto"]), 0)
        self.assertEqual(seen[0][-2:], ["--workers", "auto"])
        main(["gateway", "run"])
        self.assertNotIn("--workers", seen[1])
