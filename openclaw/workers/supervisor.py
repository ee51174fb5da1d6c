"""The parent of ``--workers N``: spawn, watch, restart and drain the workers.

The parent binds the listeners once (:mod:`openclaw.workers.sockets`) and
passes them to every worker, which adopts them; the kernel spreads new
connections over the workers that accept on the shared socket. The parent
serves nothing itself.

Group readiness: a worker says ``ready`` once it is serving. When all N have
said it, the parent tells every worker ``group ready`` and each one's
``/readyz`` turns 200 (until then it answers 503 ``starting``, so a probe that
lands on the first worker up does not report a half-started group). A worker
restarted later gets ``group ready`` as soon as it is up. On stop, the parent
says ``group stopping`` (every ``/readyz`` turns 503 at once), then sends
SIGTERM to each worker; they drain within ``gateway.shutdownGraceSeconds``,
and any worker still alive ``KILL_MARGIN_SECONDS`` after that is killed.

A worker that dies unasked is restarted after an exponential backoff
(``RESTART_BASE_SECONDS`` doubling up to ``RESTART_MAX_SECONDS``; back to the
base once a worker has lived ``STABLE_SECONDS``).

The config: workers never read the config file at start. The parent hands each
new worker the group's :class:`~openclaw.workers.control.GroupConfig` (the text
the group started with, and the text of the last reload a worker accepted,
which the worker reports on its control pipe), so a restarted worker runs what
its siblings run, not an edit on disk that no reload accepted. A worker whose
config is refused all the same exits ``EXIT_CONFIG_REFUSED``: it is logged as
such and retried after ``RESTART_MAX_SECONDS``, or as soon as a reload brings
another config.
"""

# mypy: allow-untyped-calls
# (Service's methods are unannotated and are called through super() here.)

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError, ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import LogEvent, Logger, LogLevel, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure

from openclaw import __version__
from openclaw.config import ConfigError
from openclaw.config.loader import load_config_text
from openclaw.config.model import Config
from openclaw.config.secret_values import configured_secrets
from openclaw.core.logformat import SecretScrubber
from openclaw.listen import StartupFailedError
from openclaw.workers import control
from openclaw.workers.control import GroupConfig
from openclaw.workers.sockets import SharedListener, bind_listeners, close_listeners, describe

log = Logger()

RESTART_BASE_SECONDS = 0.5
RESTART_MAX_SECONDS = 30.0
STABLE_SECONDS = 30.0
#: Past the drain grace: the workers' own connection flush, then SIGKILL.
KILL_MARGIN_SECONDS = 10.0
#: A worker's line (log record or control word) is held until its newline up to this.
MAX_LINE_BYTES = 1024 * 1024

#: ``argv`` of worker ``index`` (its listeners are on fds 6 and up, in order).
WorkerArgv = Callable[[int, Sequence[SharedListener]], list[str]]


def worker_argv(index: int, listeners: Sequence[SharedListener]) -> list[str]:
    """The command line of a worker: this interpreter, ``-m openclaw.workers.child``
    (no config path: the config comes on ``CONFIG_FD``)."""
    args = [sys.executable, "-m", "openclaw.workers.child", "--index", str(index)]
    for offset, listener in enumerate(listeners):
        args += ["--listen-fd", f"{control.FIRST_LISTEN_FD + offset}:{listener.family}"]
        args += ["--serves", listener.description]
    return args


@define
class WorkerSlot:
    """One of the N places a worker process runs in."""

    index: int
    process: IProcessTransport | None = None
    #: The pid of the current (or last) worker process.
    pid: int | None = None
    protocol: WorkerProcess | None = None
    started_at: float = 0.0
    ready: bool = False
    #: A reload came while the worker was starting: it is sent once it is ready
    #: (SIGHUP before the worker installed its handler would kill it).
    reload_pending: bool = False
    restarts: int = 0
    #: The last worker here exited because its config was refused (until one is ready).
    config_refused: bool = False
    #: Consecutive short-lived runs: the exponent of the restart backoff.
    failures: int = 0
    restart_call: IDelayedCall | None = None
    ended: Deferred[None] | None = field(default=None)


class WorkerProcess(ProcessProtocol):
    """The parent's end of one worker: its control and log pipes, and its end."""

    def __init__(self, supervisor: WorkerSupervisor, slot: WorkerSlot) -> None:
        self._supervisor = supervisor
        self._slot = slot
        self._pending = {control.CONTROL_OUT_FD: b"", control.LOG_FD: b""}
        #: Dropping an over-long control line up to its newline (never passed on in
        #: pieces: a piece of a config report would be taken for a word, and logged).
        self._skipping_control = False

    def say(self, word: bytes) -> None:
        """Tell the worker something on its fd 0 (ignored once it is gone)."""
        if self.transport is not None:
            self.transport.writeToChild(control.CONTROL_IN_FD, word + b"\n")

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        """Control words on fd 3, log records on fd 4, one per line."""
        if childFD not in self._pending:
            return
        *lines, rest = (self._pending[childFD] + data).split(b"\n")
        if childFD == control.CONTROL_OUT_FD:
            self._control_lines(lines, rest)
            return
        if len(rest) > MAX_LINE_BYTES:  # a runaway line: pass it on in pieces
            lines.append(rest)
            rest = b""
        self._pending[childFD] = rest
        for line in lines:
            self._supervisor.worker_logged(self._slot, line)

    def _control_lines(self, lines: list[bytes], rest: bytes) -> None:
        if lines and self._skipping_control:
            lines.pop(0)  # the end of the over-long line
            self._skipping_control = False
        if len(rest) > MAX_LINE_BYTES or (self._skipping_control and not lines):
            if not self._skipping_control:
                log.warn(
                    "worker {worker} sent a control line over {limit} bytes; dropped",
                    worker=self._slot.index,
                    limit=MAX_LINE_BYTES,
                )
            self._skipping_control = True
            rest = b""
        self._pending[control.CONTROL_OUT_FD] = rest
        for line in lines:
            self._supervisor.worker_said(self._slot, line.strip())

    def processEnded(self, reason: Failure) -> None:
        """The worker exited (or was killed)."""
        self._supervisor.worker_ended(self._slot, reason)


class WorkerSupervisor(Service):
    """Runs N workers on the shared listeners; see the module docstring."""

    def __init__(
        self,
        *,
        reactor: Any,
        listeners: Sequence[SharedListener],
        count: int,
        argv: WorkerArgv,
        config: GroupConfig,
        grace_seconds: float,
        env: Mapping[str, str] | None = None,
        observer: Callable[[LogEvent], None] | None = None,
        standalone: bool = False,
        scrubber: SecretScrubber | None = None,
    ) -> None:
        """
        :param reactor: provides ``IReactorProcess`` and ``IReactorTime`` (and
            ``IReactorCore`` when ``standalone``).
        :param config: the config the group starts with (handed to every worker).
        :param observer: where workers' log events are published (the global one).
        :param standalone: run by twistd: SIGTERM/SIGINT stop the group, exit 0.
        :param scrubber: the log observer masking secrets in the workers' records
            (they are published here); a reload's new secrets are added to it.
        """
        self._reactor = reactor
        self.listeners = tuple(listeners)
        self.slots = [WorkerSlot(index) for index in range(1, count + 1)]
        self._argv = argv
        #: What a new worker is handed: the group's config (updated by reloads).
        self.config = config
        self._grace = grace_seconds
        self._env = dict(os.environ if env is None else env)
        self._observer = observer if observer is not None else globalLogPublisher
        self._standalone = standalone
        self._scrubber = scrubber
        #: ``starting`` until every worker is ready once, then ``ready``; ``stopping``.
        self.state = "starting"
        self._ready_waiters: list[Deferred[None]] = []
        self._stopping_by_signal = False

    # -- starting ------------------------------------------------------------------

    def startService(self) -> None:
        """Spawn every worker."""
        super().startService()
        for slot in self.slots:
            self._spawn(slot)
        if self._standalone:
            self._reactor.callWhenRunning(self._install_signal_handlers)

    def _spawn(self, slot: WorkerSlot) -> None:
        slot.restart_call = None
        slot.ready = False
        slot.ended = Deferred()
        child_fds: dict[int, int | str] = {
            control.CONTROL_IN_FD: "w",
            1: 1,
            2: 2,
            control.CONTROL_OUT_FD: "r",
            control.LOG_FD: "r",
            control.CONFIG_FD: "w",
        }
        for offset, listener in enumerate(self.listeners):
            child_fds[control.FIRST_LISTEN_FD + offset] = listener.fileno
        argv = self._argv(slot.index, self.listeners)
        protocol = WorkerProcess(self, slot)
        slot.protocol = protocol
        slot.started_at = self._reactor.seconds()
        slot.process = self._reactor.spawnProcess(
            protocol, argv[0], argv, env=self._env, childFDs=child_fds
        )
        slot.pid = slot.process.pid
        # The text of the group's config, on a pipe (nothing on disk, nothing in argv);
        # closing it once written is the worker's end of file.
        slot.process.writeToChild(control.CONFIG_FD, self.config.encode())
        slot.process.closeChildFD(control.CONFIG_FD)
        log.info("worker {worker} started (pid {pid})", worker=slot.index, pid=slot.pid, argv=argv)

    def ready(self) -> Deferred[None]:
        """Fires once every worker has been ready (at once if that happened)."""
        if self.state == "ready":
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._ready_waiters.append(waiter)
        return waiter

    def worker_said(self, slot: WorkerSlot, word: bytes) -> None:
        """A control word from a worker."""
        if word.startswith(control.CONFIG + b" "):
            self._group_reloaded(slot, word)
            return
        if word == control.RELOADED:
            # gateway.reload reached one worker: the group's config is one config.
            log.info("worker {worker} reloaded the config; reloading the others", worker=slot.index)
            self._signal_all("HUP", but=slot)
            return
        if word != control.READY:
            log.warn("worker {worker} said {word!r}; ignored", worker=slot.index, word=word[:64])
            return
        slot.ready = True
        slot.config_refused = False
        log.info("worker {worker} ready (pid {pid})", worker=slot.index, pid=slot.pid)
        if slot.reload_pending:
            slot.reload_pending = False
            if slot.process is not None:
                _signal(slot.process, "HUP")
        if self.state == "ready":
            self._tell(slot, control.GROUP_READY)
        elif self.state == "starting" and all(s.ready for s in self.slots):
            self.state = "ready"
            for each in self.slots:
                self._tell(each, control.GROUP_READY)
            log.info(
                "openclaw gateway {version} listening on {addresses} with {count} workers",
                version=__version__,
                count=len(self.slots),
                addresses=", ".join(describe(listener.address) for listener in self.listeners),
                pids=[s.pid for s in self.slots],
            )
            waiters, self._ready_waiters = self._ready_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _group_reloaded(self, slot: WorkerSlot, line: bytes) -> None:
        """A worker accepted a reload: new workers get its config from now on, and
        one held back by a refused config is started again at once."""
        try:
            path, text = control.read_config_report(line)
        except ValueError as e:
            log.warn(
                "worker {worker} reported its config unreadably ({error}); restarted "
                "workers keep the previous one",
                worker=slot.index,
                error=str(e),
            )
            return
        if (path, text) == (self.config.path, self.config.current):
            return
        self.config = attrs.evolve(self.config, path=path, current=text)
        self._learn_secrets(path, text)
        log.info(
            "worker {worker} accepted a reloaded config; restarted workers run it too",
            worker=slot.index,
        )
        for held in self.slots:
            call = held.restart_call
            if held.config_refused and call is not None and call.active():
                call.cancel()
                self._spawn(held)

    def _learn_secrets(self, path: str | None, text: str | None) -> None:
        """Mask a reloaded config's secrets (a rotated token) in the workers'
        records too, as a single gateway's reload does."""
        if self._scrubber is None:
            return
        try:
            loaded = load_config_text(text, Path(path) if path else None, env=self._env)
        except ConfigError:
            return  # a worker accepted it; this process's environment may differ
        self._scrubber.add(configured_secrets(loaded.config))

    def _tell(self, slot: WorkerSlot, word: bytes) -> None:
        if slot.protocol is not None and slot.process is not None:
            slot.protocol.say(word)

    def worker_logged(self, slot: WorkerSlot, line: bytes) -> None:
        """Publish one of a worker's log records as the parent's own, tagged."""
        text = line.decode("utf-8", "replace").lstrip("\x1e").strip()
        if not text:
            return
        try:
            event = eventFromJSON(text)
        except ValueError:
            event = {"log_format": "{line}", "line": text, "log_level": LogLevel.info}
        level_name = getattr(event.get("log_level"), "name", "-")
        event["worker"] = slot.index
        event["worker_pid"] = slot.pid
        event["log_system"] = f"worker-{slot.index} {event.get('log_namespace', '-')}#{level_name}"
        self._observer(event)

    # -- restarting ----------------------------------------------------------------

    def worker_ended(self, slot: WorkerSlot, reason: Failure) -> None:
        """Restart a worker that died unasked; count it down while stopping."""
        pid = slot.pid
        lived = self._reactor.seconds() - slot.started_at
        slot.process = None
        slot.protocol = None
        slot.ready = False
        ended, slot.ended = slot.ended, None
        status = _exit_status(reason)
        if self.state == "stopping" or not self.running:
            log.info(
                "worker {worker} (pid {pid}) stopped: {status}",
                worker=slot.index,
                pid=pid,
                status=status,
            )
        elif _exit_code(reason) == control.EXIT_CONFIG_REFUSED:
            self._held_back(slot, pid)
        else:
            slot.config_refused = False
            slot.failures = 0 if lived >= STABLE_SECONDS else slot.failures + 1
            delay = min(RESTART_MAX_SECONDS, RESTART_BASE_SECONDS * 2 ** max(0, slot.failures - 1))
            slot.restarts += 1
            log.warn(
                "worker {worker} (pid {pid}) died ({status}) after {lived:.1f}s; "
                "restart {restarts} in {delay}s",
                worker=slot.index,
                pid=pid,
                status=status,
                lived=lived,
                restarts=slot.restarts,
                delay=delay,
                failures=slot.failures,
            )
            slot.restart_call = self._reactor.callLater(delay, self._spawn, slot)
        if ended is not None:
            ended.callback(None)

    def _held_back(self, slot: WorkerSlot, pid: int | None) -> None:
        """A worker refused the config it was handed: the same text would be refused
        again, so no quick restarts; said at error level, with how many still serve."""
        slot.config_refused = True
        slot.restarts += 1
        log.error(
            "worker {worker} (pid {pid}) cannot start: the group's config is refused "
            "(the reasons are logged above); {serving} of {count} workers running; "
            "restart {restarts} in {delay}s, or at the next accepted reload",
            worker=slot.index,
            pid=pid,
            serving=sum(1 for s in self.slots if s.process is not None),
            count=len(self.slots),
            restarts=slot.restarts,
            delay=RESTART_MAX_SECONDS,
        )
        slot.restart_call = self._reactor.callLater(RESTART_MAX_SECONDS, self._spawn, slot)

    # -- stopping ------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop the group and exit 0 (twistd's handlers would exit 143)."""

        def stop(signum: int, frame: object) -> None:
            if self._stopping_by_signal:
                return
            self._stopping_by_signal = True
            log.info("received signal {signum}, stopping the workers", signum=signum)
            self._reactor.callFromThread(self._reactor.stop)

        def hangup(signum: int, frame: object) -> None:
            log.info("received SIGHUP, asking every worker to reload the config")
            self._reactor.callFromThread(self._signal_all, "HUP")

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)
        signal.signal(signal.SIGHUP, hangup)

    def _signal_all(self, name: str, but: WorkerSlot | None = None) -> None:
        """Send every running worker (``but`` one) ``SIG<name>`` (SIGHUP: each
        reloads its config)."""
        for slot in self.slots:
            if slot is but:
                continue
            if slot.process is not None and slot.ended is not None and not slot.ended.called:
                if name == "HUP" and not slot.ready:
                    slot.reload_pending = True  # sent when it says ready
                    continue
                _signal(slot.process, name)

    def stopService(self) -> Deferred[None]:
        """Say ``group stopping``, SIGTERM every worker, wait (SIGKILL past the grace)."""
        super().stopService()
        self.state = "stopping"
        close_listeners(self.listeners)
        waits: list[Deferred[None]] = []
        for slot in self.slots:
            if slot.restart_call is not None and slot.restart_call.active():
                slot.restart_call.cancel()
            slot.restart_call = None
            if slot.process is None or slot.ended is None:
                continue
            self._tell(slot, control.GROUP_STOPPING)
            _signal(slot.process, "TERM")
            waits.append(slot.ended)
        log.info("stopping {count} workers (grace {grace}s)", count=len(waits), grace=self._grace)
        deadline = self._reactor.callLater(self._grace + KILL_MARGIN_SECONDS, self._kill_all)
        done: Deferred[None] = Deferred()
        remaining = [len(waits)]

        def one_ended(_: object) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                finish()

        def finish() -> None:
            if deadline.active():
                deadline.cancel()
            log.info("all workers stopped")
            done.callback(None)

        if not waits:
            finish()
        for wait in waits:
            wait.addCallback(one_ended)
        return done

    def _kill_all(self) -> None:
        for slot in self.slots:
            if slot.process is not None:
                log.warn(
                    "worker {worker} (pid {pid}) still running after the grace; killing it",
                    worker=slot.index,
                    pid=slot.pid,
                )
                _signal(slot.process, "KILL")


def _signal(process: IProcessTransport, name: str) -> None:
    with contextlib.suppress(ProcessExitedAlready):
        process.signalProcess(name)


def _exit_code(reason: Failure) -> int | None:
    """The exit status of a worker that exited (None: killed by a signal)."""
    if isinstance(reason.value, ProcessDone):
        return 0
    code = getattr(reason.value, "exitCode", None)
    return code if isinstance(code, int) else None


def _exit_status(reason: Failure) -> str:
    """``exit 0``, ``exit 3`` or ``signal 9``."""
    if isinstance(reason.value, ProcessDone):
        return "exit 0"
    code = getattr(reason.value, "exitCode", None)
    sig = getattr(reason.value, "signal", None)
    if sig is not None:
        return f"signal {sig}"
    return f"exit {code}"


def build_supervisor(
    config: Config,
    text: str | None,
    reactor: Any,
    endpoints: Sequence[str],
    count: int,
    scrubber: SecretScrubber | None = None,
) -> WorkerSupervisor:
    """twistd wiring: bind ``endpoints`` now and supervise ``count`` workers.

    ``text`` is the config file's text as ``config`` was loaded from it (None:
    no file): the workers are handed it, not the path.

    A bind failure exits 1 with one line, as the single-process gateway does.
    """
    try:
        listeners = bind_listeners(reactor, endpoints)
    except CannotListenError as e:
        # Not a bare SystemExit: a daemonizing twistd must hear of it (see the class).
        message = f"openclaw: cannot listen on {e.interface or '*'}:{e.port}: {e.socketError}"
        raise StartupFailedError(message) from None
    source = str(config.source_path) if config.source_path is not None else None
    return WorkerSupervisor(
        reactor=reactor,
        listeners=listeners,
        count=count,
        argv=worker_argv,
        config=GroupConfig(path=source, started=text, current=text),
        grace_seconds=config.gateway.shutdown_grace_seconds,
        standalone=True,
        scrubber=scrubber,
    )
