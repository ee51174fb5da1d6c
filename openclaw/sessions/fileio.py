"""Blocking file work for the session store, and where it runs.

Creating and appending to transcripts, ``fdatasync``, index writes and
renames can block on a slow disk, so they run on a :class:`BlockingIO`: a
thread pool of the store's own in the gateway (:class:`ThreadPoolIO`), inline
in tests (:class:`InlineIO`). Every function here is safe to call on an IO
thread: it touches only its arguments and the file system.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred, execute
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads
from twisted.python.failure import Failure

from openclaw.core.private_dirs import make_private_dirs

_P = ParamSpec("_P")
_T = TypeVar("_T")

#: A session header longer than this is not read for recovery.
MAX_HEADER_BYTES = 64 * 1024


def atomic_write(path: Path, data: bytes | Sequence[bytes], *, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old or the new file.

    ``data`` may come in pieces (written one after the other: a large index is
    not copied into one buffer first). Writes a temp file beside it, fsyncs it
    (when ``sync``), renames it over ``path``, then fsyncs the directory. On
    failure the temp file is removed and ``path`` is untouched.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            for piece in (data,) if isinstance(data, bytes) else data:
                _write_all(fd, piece)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if sync:
        _fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    try:
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse
        pass
    finally:
        os.close(dfd)


def read_header(path: Path) -> dict[str, Any] | None:
    """The first line of a transcript, parsed, if it is a ``session`` header."""
    with path.open("rb") as f:
        head = f.read(MAX_HEADER_BYTES)
    line = head.split(b"\n", 1)[0]
    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    if isinstance(parsed, dict) and parsed.get("type") == "session":
        return parsed
    return None


def _writev_all(fd: int, pieces: Sequence[bytes]) -> None:
    """Write ``pieces`` in order with as few ``writev`` calls as the kernel allows
    (one, for anything short): a large reply is not copied into one buffer."""
    pending: list[bytes | memoryview] = [piece for piece in pieces if piece]
    while pending:
        written = os.writev(fd, pending)
        while pending and written >= len(pending[0]):
            written -= len(pending.pop(0))
        if written:
            pending[0] = memoryview(pending[0])[written:]


def write_transcript(
    path: Path, header: bytes, body: Sequence[bytes], check_torn: bool, sync: bool
) -> bool:
    """Append the lines ``body`` (pieces of bytes) to a transcript (an IO
    thread's work); returns True when a torn last line had to be closed first.

    See :func:`append_lines`; with ``sync`` the data is ``fdatasync``ed
    before returning.
    """
    fd, torn = append_lines(path, header, body, check_torn)
    if sync:
        sync_and_close(fd)
    else:
        os.close(fd)
    return torn


def append_lines(
    path: Path, header: bytes, body: Sequence[bytes], check_torn: bool
) -> tuple[int, bool]:
    """Append ``body`` to a transcript and return its still open descriptor
    (the caller closes it, or has :func:`sync_and_close` do it) and whether a
    torn last line had to be closed first.

    A new (empty) file gets ``header`` first; with ``check_torn`` a last line
    without its newline (a crash mid-write) is ended so it cannot swallow
    ``body``.
    """
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        make_private_dirs(path.parent)
        fd = os.open(path, flags, 0o600)
    try:
        size = os.fstat(fd).st_size
        torn = False
        if size == 0:
            body = [header, *body]
        elif check_torn and os.pread(fd, 1, size - 1) != b"\n":
            torn = True
            body = [b"\n", *body]
        _writev_all(fd, body)
    except BaseException:
        os.close(fd)
        raise
    return fd, torn


def sync_and_close(fd: int) -> None:
    """``fdatasync`` then close ``fd`` (an IO thread's work: it waits on the disk)."""
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def rename_all(moves: Sequence[tuple[Path, Path]]) -> None:
    """Archive transcripts (an IO thread's batch); a file already gone is fine."""
    for source, target in moves:
        with contextlib.suppress(FileNotFoundError):
            os.replace(source, target)


# -- where blocking calls run -----------------------------------------------------


class BlockingIO(Protocol):
    """Where the store runs calls that may block on the disk (fsync, index writes)."""

    def run(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_T]:
        """Call ``fn``, possibly on another thread; the Deferred fires on the reactor's."""
        ...

    def stop(self) -> None:
        """Release threads; later calls run inline."""
        ...


class InlineIO:
    """Runs every call at once on the calling thread: for tests (a ``Clock``
    has no threads) and for reactors without thread support."""

    def run(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_T]:
        """Call ``fn`` now; the Deferred has its result or failure already."""
        return execute(fn, *args, **kwargs)

    def stop(self) -> None:
        """Nothing to release."""


_Job = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], Deferred[Any]]


class ThreadPoolIO:
    """Threads of the store's own, so a slow disk holds up neither the reactor
    nor the reactor's shared pool (DNS lookups use that one).

    Cheaper per call than ``deferToThreadPool``: a job is one queue put; the
    workers hand results back in batches, with one ``callFromThread`` for all
    that finished since the reactor last collected them. Threads start on
    demand (up to ``max_threads``); :meth:`stop` (from
    :meth:`SessionStore.close`, or the reactor's shutdown as a safety net)
    lets them finish what was queued and joins them.
    """

    def __init__(
        self,
        reactor: IReactorFromThreads,
        *,
        max_threads: int = 4,
        name: str = "openclaw-session-io",
    ) -> None:
        self._reactor = reactor
        self._max_threads = max_threads
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        #: Workers waiting for a job (under the lock).
        self._idle = 0
        #: Finished jobs not handed back yet, and whether a hand-back is scheduled.
        self._finished: deque[tuple[Deferred[Any], bool, Any]] = deque()
        self._collect_scheduled = False
        self._running = False
        self._hooked = False

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    def start(self) -> None:
        """Accept work (threads are made as work arrives)."""
        if self._running:
            return
        self._running = True
        if not self._hooked and IReactorCore.providedBy(self._reactor):
            self._hooked = True
            self._reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def stop(self) -> None:
        """Finish queued work and join the threads; idempotent."""
        if not self._running:
            return
        self._running = False
        threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            thread.join()

    def run(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_T]:
        """Call ``fn`` on a worker thread (inline when the pool is not running)."""
        if not self._running:
            return execute(fn, *args, **kwargs)
        d: Deferred[_T] = Deferred()
        self._jobs.put((fn, args, kwargs, d))
        with self._lock:
            spawn = self._idle == 0 and len(self._threads) < self._max_threads
            if spawn:
                self._idle += 1  # counted until it takes its first job
        if spawn:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return d

    def _work(self) -> None:
        """A worker: run jobs until the ``None`` that :meth:`stop` queues."""
        jobs = self._jobs
        lock = self._lock
        while True:
            job = jobs.get()
            with lock:
                self._idle -= 1
            if job is None:
                return
            fn, args, kwargs, d = job
            try:
                outcome: tuple[Deferred[Any], bool, Any] = (d, True, fn(*args, **kwargs))
            except BaseException:
                outcome = (d, False, Failure())  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted
            with lock:
                self._idle += 1
                self._finished.append(outcome)
                wake = not self._collect_scheduled
                self._collect_scheduled = True
            if wake:
                self._reactor.callFromThread(self._collect)

    def _collect(self) -> None:
        """On the reactor thread: fire the Deferreds of every finished job."""
        with self._lock:
            finished = list(self._finished)
            self._finished.clear()
            self._collect_scheduled = False
        for d, ok, result in finished:
            if ok:
                d.callback(result)
            else:
                d.errback(result)


def blocking_io_for(reactor: object) -> BlockingIO:
    """A started :class:`ThreadPoolIO` when ``reactor`` can take results from
    threads, else :class:`InlineIO` (``Clock``, ``MemoryReactorClock``)."""
    if IReactorFromThreads.providedBy(reactor):
        io = ThreadPoolIO(reactor)
        io.start()
        return io
    return InlineIO()
