"""A worker process of ``--workers N``: the gateway on sockets lent by the parent.

Started by :mod:`openclaw.workers.supervisor` as
``python -m openclaw.workers.child --index I --listen-fd FD:FAMILY --serves ENDPOINT ...``
with the descriptors of :mod:`openclaw.workers.control`. It reads the group's
config from the parent (the text the group started with, and the text of the
last reload the workers accepted: never the file on disk, which may hold an
edit no reload accepted), builds the gateway, adopts the listening sockets and
says ``ready``; its ``/readyz`` follows the group (``group ready`` / ``group
stopping`` from the parent). Its own reloads read the config file, and each one
it accepts is reported to the parent, for the workers it starts later.
SIGTERM drains it like a single gateway; end of file on the control pipe (the
parent died) stops it too, so no worker outlives its supervisor.
"""

# mypy: allow-untyped-calls
# (Service's methods are unannotated.)

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from twisted.application import internet
from twisted.internet import tcp, unix
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorFromThreads,
    IStreamServerEndpoint,
)
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    jsonFileLogObserver,
)
from zope.interface import implementer

from openclaw.config.live import ReloadResult, as_running
from openclaw.config.loader import load_config_text
from openclaw.config.model import Config
from openclaw.config.secret_values import configured_secrets
from openclaw.core.logformat import SecretScrubber
from openclaw.core.secret_values import SecretValues
from openclaw.gateway.assembly import Gateway, build_gateway
from openclaw.workers import control
from openclaw.workers.control import GroupConfig
from openclaw.workers.sockets import FAMILIES, describe

log = Logger(namespace="openclaw.workers.child")

#: How often a worker's buffered log records go to the parent.
LOG_FLUSH_SECONDS = 0.2


class Worker:
    """One worker: the gateway service on adopted sockets, steered by the parent."""

    def __init__(
        self,
        *,
        reactor: Any,
        config: Config,
        index: int,
        listen_fds: Sequence[tuple[int, int]],
        reloaded: Config | None = None,
        gateway_factory: Callable[[Config, Any], Gateway] = build_gateway,
        serves: Sequence[str] = (),
        scrubber: SecretScrubber | None = None,
    ) -> None:
        """
        :param reactor: provides ``IReactorSocket``, ``IReactorTime``, ``IReactorCore``
            and ``IReactorFDSet`` (the control pipes).
        :param config: the config the group started with (its restart-only
            settings are the ones the group runs).
        :param listen_fds: ``(fd, address family)`` of each socket to adopt.
        :param reloaded: the config of the group's last accepted reload, applied
            as that reload was in the other workers (None: there was none).
        :param serves: the endpoint strings the parent bound those sockets from
            (a reload to auth ``none`` is refused when one is beyond loopback).
        :param scrubber: this process's first log observer: it learns the
            secrets of the group's configs and of each reload, so no record
            leaves the worker (to the parent, to ``logs.tail``) with one in clear.
        """
        from openclaw.service import GatewayService

        self._reactor = reactor
        self.index = index
        if scrubber is not None:
            scrubber.add(configured_secrets(config))
            if reloaded is not None:
                scrubber.add(configured_secrets(reloaded))
        self.gateway = gateway_factory(config, reactor)
        if reloaded is not None:
            self._catch_up(reloaded)
        self.service = GatewayService(
            # The reloaded settings, but the start config's restart-only ones:
            # the store, sockets and state dir were built from those, and the
            # start-up report must name what the worker really uses.
            config=config if reloaded is None else as_running(config, reloaded),
            gateway=self.gateway,
            reactor=reactor,
            endpoints=(),
            served_endpoints=serves,
            scrubber=scrubber,
        )
        self._ports: list[Deferred[IListeningPort]] = []
        for fd, family in listen_fds:
            adopted = AdoptedStreamServerEndpoint(reactor, fd, family)
            listener = internet.StreamServerEndpointService(
                _Recording(adopted, self._ports.append), self.gateway.site
            )
            listener._raiseSynchronously = True
            listener.setName(f"adopted[{fd}]")
            listener.setServiceParent(self.service)
            self.service.listeners.append(listener)
        self.control = control.ControlLines(self._heard, self._parent_gone)
        # gateway.reload over the WebSocket reaches one worker: it answers with its
        # own reload, and the parent has the other workers reload too.
        self.gateway.websocket.services.reload = self.reload_group

    def _catch_up(self, reloaded: Config) -> None:
        """Apply the group's reloaded config, as the reload did in the other workers."""
        live = self.gateway.live
        if live is None:  # pragma: no cover - build_gateway always makes one
            raise RuntimeError("a worker's gateway has no live config")
        live.replace(reloaded)
        log.info(
            "worker {worker}: running the group's reloaded config (from {path})",
            worker=self.index,
            path=live.path_text,
        )

    def reload(self) -> ReloadResult:
        """Reload here (SIGHUP); a config taken is reported to the parent, which
        hands it to the workers it starts from now on."""
        result = self.service.reload()
        live = self.gateway.live
        if result.ok and live is not None:
            source = live.current.source_path
            path = str(source) if source is not None else None
            self.control.say(control.config_report(path, live.text))
        return result

    def reload_group(self) -> ReloadResult:
        """Reload here; when the new config was taken, the parent has the others reload."""
        result = self.reload()
        if result.ok:
            self.control.say(control.RELOADED)
        return result

    def start(self) -> None:
        """Adopt the sockets, serve, and tell the parent; ``/readyz`` waits for the group."""
        self._reactor.addSystemEventTrigger("before", "shutdown", self.service.stopService)
        self.service.privilegedStartService()
        self.service.startService()
        # GatewayService reports ready by itself; a worker is ready only with its group.
        self.gateway.readiness.state = "starting"
        gatherResults(self._ports).addCallback(self._serving)

    def _serving(self, ports: list[IListeningPort]) -> None:
        for port in ports:
            accept_one_per_wakeup(port)
            leave_socket_file(port)
        log.info(
            "worker {worker} (pid {pid}) serving on {addresses}",
            worker=self.index,
            pid=os.getpid(),
            addresses=", ".join(describe(port.getHost()) for port in ports),
        )
        self.control.say(control.READY)

    def _heard(self, word: bytes) -> None:
        readiness = self.gateway.readiness
        if word == control.GROUP_READY and readiness.state == "starting":
            readiness.mark_ready(self._reactor)
        elif word == control.GROUP_STOPPING:
            readiness.mark_stopping()

    def _parent_gone(self) -> None:
        if self._reactor.running:
            log.warn("worker {worker}: the supervisor is gone; stopping", worker=self.index)
            self._reactor.stop()


def accept_one_per_wakeup(port: IListeningPort) -> None:
    """Make a shared listening port take one connection each time it is woken.

    Twisted's ``tcp.Port`` (checked against 26.10) accepts up to
    ``numberAccepts`` connections per readiness event and raises that number
    under load. With several workers on one socket, the first worker awake
    would then take a whole burst (all 16 keep-alive connections of a client
    pool, leaving the other workers idle). One accept per wakeup lets every
    woken worker take its turn, and a busy worker, woken later, takes fewer.
    """
    if not hasattr(port, "numberAccepts"):
        return
    read = port.doRead  # type: ignore[attr-defined]  # tcp.Port / unix.Port

    def one_at_a_time() -> object:
        port.numberAccepts = 1
        return read()

    port.doRead = one_at_a_time  # type: ignore[attr-defined]


def leave_socket_file(port: IListeningPort) -> None:
    """A worker's UNIX listening port must not remove the socket's file when it stops.

    The parent created the file and removes it when the group stops; Twisted's
    ``unix.Port.connectionLost`` (checked against 26.10) would unlink it from
    every worker, the second one failing with ``FileNotFoundError``. The rest of
    that method is ``tcp.Port``'s, which is what runs instead.
    """
    if isinstance(port, unix.Port):
        port.connectionLost = functools.partial(tcp.Port.connectionLost, port)  # type: ignore[method-assign]


@implementer(IStreamServerEndpoint)
class _Recording:
    """An endpoint that hands the Deferred of each ``listen`` to ``record``."""

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        record: Callable[[Deferred[IListeningPort]], None],
    ) -> None:
        self._endpoint = endpoint
        self._record = record

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        listening = self._endpoint.listen(protocolFactory)
        self._record(listening)
        return listening


@implementer(ILogObserver)
class TracebackAsText:
    """Puts a failure's traceback into the event as text before it goes out as JSON.

    A ``Failure`` does not survive the trip to the parent (its frames and
    exception become "unpersistable"); its formatted traceback does.
    """

    def __init__(self, observer: Callable[[LogEvent], None]) -> None:
        self._observer = observer

    def __call__(self, event: LogEvent) -> None:
        failure = event.get("log_failure")
        if failure is not None:
            event = {k: v for k, v in event.items() if k != "log_failure"}
            event["log_format"] = (event.get("log_format") or "") + "\n{worker_traceback}"
            event["worker_traceback"] = failure.getTraceback()
        self._observer(event)


@implementer(ILogObserver)
class FlushWhenUrgent:
    """Flushes the buffered log pipe after a warning or worse, so the records that
    explain a crash are not left in a dying worker's buffer (the rest go every
    ``LOG_FLUSH_SECONDS``)."""

    def __init__(self, observer: Callable[[LogEvent], None], flush: Callable[[], None]) -> None:
        self._observer = observer
        self._flush = flush

    def __call__(self, event: LogEvent) -> None:
        self._observer(event)
        level = event.get("log_level")
        if level is not None and level >= LogLevel.warn:
            self._flush()


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="openclaw-worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--listen-fd", action="append", default=[], dest="listen_fds")
    parser.add_argument("--serves", action="append", default=[], dest="serves")
    return parser.parse_args(list(argv))


def _listen_fds(values: Sequence[str]) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    for value in values:
        fd, _, family = value.partition(":")
        pairs.append((int(fd), FAMILIES[family]))
    return pairs


def read_group_config(fd: int = control.CONFIG_FD) -> GroupConfig:
    """The group's config, as the parent writes it on ``fd`` (read to its end, closed)."""
    chunks: list[bytes] = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return GroupConfig.decode(b"".join(chunks))


def load_group_config(group: GroupConfig, env: Mapping[str, str]) -> tuple[Config, Config | None]:
    """The config the group started with, and the one of its last accepted reload
    (None: no reload changed it); ``${VAR}`` from ``env``. Raises ConfigError.

    Both keep the real file as ``source_path``: this worker's own reloads read it.
    """
    path = Path(group.path) if group.path is not None else None
    started = load_config_text(
        group.started, path if group.started is not None else None, env=env
    ).config
    if group.current == group.started:
        return started, None
    current = load_config_text(
        group.current, path if group.current is not None else None, env=env
    ).config
    return started, current


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a worker process (wiring: the global reactor lives here)."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    # Block-buffered: the parent then reads many records per wakeup (one per request
    # otherwise, which cost it a tenth of a request's CPU); see FlushWhenUrgent.
    log_file = os.fdopen(control.LOG_FD, "w", buffering=65536, encoding="utf-8")
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    to_parent = FlushWhenUrgent(TracebackAsText(jsonFileLogObserver(log_file)), log_file.flush)
    # First, as in a single gateway: every later observer (the records to the
    # parent, the logs.tail ring) sees events with the configured secrets masked.
    # It knows none until the config is read (Worker teaches it that one's).
    scrubber = SecretScrubber(SecretValues())
    globalLogBeginner.beginLoggingTo(
        [scrubber, FilteringLogObserver(to_parent, [predicate])], redirectStandardIO=False
    )
    from openclaw.config import ConfigError

    try:
        group = read_group_config()
    except (OSError, ValueError) as e:
        log.error(
            "worker {worker}: no config from the supervisor: {error}",
            worker=args.index,
            error=str(e),
        )
        return 1
    try:
        config, reloaded = load_group_config(group, os.environ)
    except ConfigError as e:
        for problem in e.problems:
            log.error("worker {worker}: {problem}", worker=args.index, problem=problem)
        log.error("worker {worker}: the group's config is refused; not starting", worker=args.index)
        return control.EXIT_CONFIG_REFUSED
    from twisted.internet import reactor, stdio, task

    from openclaw.core.gc_tuning import tune_collector_when_running

    flusher = task.LoopingCall(log_file.flush)
    flusher.clock = reactor
    flusher.start(LOG_FLUSH_SECONDS, now=False)

    worker = Worker(
        reactor=reactor,
        config=config,
        index=args.index,
        listen_fds=_listen_fds(args.listen_fds),
        reloaded=reloaded,
        serves=args.serves,
        scrubber=scrubber,
    )
    # The POSIX StandardIO takes the two descriptors (the win32 stub does not).
    stdio.StandardIO(  # type: ignore[call-arg]
        worker.control,
        stdin=control.CONTROL_IN_FD,
        stdout=control.CONTROL_OUT_FD,
        reactor=reactor,
    )
    worker.start()
    tune_collector_when_running(reactor)
    # SIGINT (Ctrl-C reaches the whole process group) is the parent's to handle: it
    # forwards SIGTERM. A second SIGTERM (the parent's, after a service manager
    # signalled the group) must not kill a worker that has drained and is exiting:
    # the reactor handles SIGTERM while it runs and restores SIG_IGN afterwards.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # SIGHUP (forwarded by the parent): re-read the config, as a single gateway does.
    threads = IReactorFromThreads(reactor)
    signal.signal(signal.SIGHUP, lambda signum, frame: threads.callFromThread(worker.reload))
    reactor.run()
    log_file.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a process by the supervisor
    sys.exit(main())
