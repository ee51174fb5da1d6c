"""Sessions on disk, in OpenClaw's layout under the state dir.

``agents/<agentId>/sessions/sessions.json`` maps a session key to
``{sessionId, updatedAt, ...}``; ``agents/<agentId>/sessions/<sessionId>.jsonl``
is that session's transcript, one JSON object per line (the pi-agent v3 line
format OpenClaw writes: a ``session`` header, then ``message`` entries whose
``message`` carries ``role``, ``content`` blocks, ``usage``, ``stopReason``).

Durability rules, because a gateway can be killed at any instant:

* the index is replaced atomically (temp file, fsync, rename), never edited;
  changes are written together at most once per ``index_flush_delay``, and at
  once on reset, delete and close;
* the transcript header records the session key (``sessionKey``), so a session
  whose index entry was lost in a crash is put back when the agent's index is
  first loaded (:meth:`SessionStore.recover`);
* transcripts are only appended, one whole line per ``write``; a torn last
  line is skipped on read (with a warning) and a newline is written before the
  next append so it cannot swallow the next entry;
* a finished turn is reported (:meth:`SessionStore.finish_turn`'s Deferred)
  only once its lines are written and, under ``fsync: "turn"``, synced;
* file names come from ids this module generates or validates, never from
  session keys, so no key or agent id can reach outside the state dir.

What can block on the disk (creating and appending to transcripts,
``fdatasync``, index writes, renames) runs on a :class:`BlockingIO`: a thread
pool in the gateway (:class:`ThreadPoolIO`), inline in tests. The reactor
thread only builds the lines; a transcript's writes reach the pool one after
the other (:meth:`SessionStore._serial`), so their order is kept. Reads
(history) stay on the reactor thread: they hit the page cache and a session's
lane guarantees its previous turn is on disk. The index is encoded
incrementally (one cached JSON fragment per entry), so a flush costs what
changed plus a join. Stateless chat-completion sessions
(``agent:<id>:openai:<uuid>``, never addressed again) are capped at
``max_entries``, oldest first.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, ParamSpec, Protocol, TypeVar

from attrs import define, field, frozen
from twisted.internet.defer import Deferred, execute, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorCore,
    IReactorFromThreads,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.providers.base import ModelMessage
from openclaw.agents.types import ImageInput, StopReason, ToolCall, Usage
from openclaw.config.model import FsyncPolicy
from openclaw.sessions.keys import normalize_agent_id, parse_agent_from_key

log = Logger()

_P = ParamSpec("_P")
_T = TypeVar("_T")

MaintenanceMode = Literal["warn", "enforce"]

#: Transcript line format version (pi-agent's session header ``version``).
TRANSCRIPT_VERSION = 3
INDEX_FILE = "sessions.json"
#: How many messages of history the model sees by default.
DEFAULT_HISTORY_LIMIT = 200
#: Index changes made within this many seconds are written together.
DEFAULT_INDEX_FLUSH_DELAY = 1.0
#: OpenClaw's ``session.maintenance.maxEntries`` default.
DEFAULT_MAX_ENTRIES = 500
#: Never read more than this much of a transcript's tail for one request.
MAX_TAIL_BYTES = 32 * 1024 * 1024
#: A session header longer than this is not read for recovery.
MAX_HEADER_BYTES = 64 * 1024
_CHUNK = 64 * 1024
_STATE_CACHE_SIZE = 1024
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_STATELESS_KEY = re.compile(
    r"^agent:[^:]+:openai:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_FAILED_STOPS = frozenset({"error", "aborted"})
_TO_DISK_STOP: Mapping[str, str] = {"tool_calls": "toolUse"}
_FROM_DISK_STOP: Mapping[str, StopReason] = {
    "toolUse": "tool_calls",
    "tool_use": "tool_calls",
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
    "aborted": "aborted",
}


def agent_id_for_session(session_key: str, default_agent_id: str) -> str:
    """The agent whose directory holds ``session_key``: the key's own agent for
    canonical ``agent:<id>:...`` keys, else ``default_agent_id`` (normalised)."""
    return parse_agent_from_key(session_key) or normalize_agent_id(default_agent_id)


def is_valid_session_id(value: str) -> bool:
    """True for ids safe to use as a file name (uuids and OpenClaw's ids are)."""
    return bool(_SESSION_ID.match(value))


def usage_to_disk(usage: Usage) -> dict[str, Any]:
    """Usage in the transcript's (pi-agent) shape."""
    return {
        "input": usage.input,
        "output": usage.output,
        "cacheRead": usage.cache_read,
        "cacheWrite": usage.cache_write,
        "totalTokens": usage.total,
        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0},
    }


def usage_from_disk(raw: object) -> Usage:
    """Read a usage object written by us or by OpenClaw; junk becomes zeros."""
    if not isinstance(raw, Mapping):
        return Usage()

    def num(*names: str) -> int:
        for name in names:
            value = raw.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return int(value)
        return 0

    return Usage(
        input=num("input"),
        output=num("output"),
        cache_read=num("cacheRead"),
        cache_write=num("cacheWrite"),
        total=num("totalTokens", "total"),
    )


_last_stamp: tuple[int, str] = (-1, "")


def iso_ms(ms: int) -> str:
    """``2026-01-02T03:04:05.678Z`` for an epoch-millisecond time."""
    global _last_stamp
    seconds = ms // 1000
    cached_seconds, stamp = _last_stamp
    if seconds != cached_seconds:  # strftime is the costly part; a turn repeats it
        stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_stamp = (seconds, stamp)
    return f"{stamp}.{ms % 1000:03d}Z"


class _RandomBytes:
    """OS randomness fetched 4 KiB at a time: ids cost a slice, not a syscall.

    Reactor thread only. A forked child starts with a fresh buffer.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._buf = b""
        self._pos = 0
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        """Forget the buffered bytes (a fork must not repeat its parent's ids)."""
        self._buf = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        """``n`` random bytes (``n`` at most the buffer size)."""
        pos = self._pos
        if pos + n > len(self._buf):
            self._buf = os.urandom(self._size)
            pos = 0
        self._pos = pos + n
        return self._buf[pos : pos + n]


_RANDOM = _RandomBytes()


def random_uuid4() -> str:
    """``str(uuid.uuid4())`` from buffered OS randomness (reactor thread only)."""
    raw = bytearray(_RANDOM.take(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _entry_id() -> str:
    """A transcript entry id: 8 hex digits, as OpenClaw writes them."""
    return _RANDOM.take(4).hex()


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


def _dumps_line(entry: Mapping[str, Any]) -> bytes:
    return _ENCODER.encode(entry).encode("utf-8") + b"\n"


def _line_pieces(entry: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """A JSONL line as two pieces (the JSON, then the newline): no copy of a
    large entry just to append one byte."""
    return _ENCODER.encode(entry).encode("utf-8"), b"\n"


def _archive_suffix(ms: int) -> str:
    return iso_ms(ms).replace(":", "-")


@frozen
class SessionEntry:
    """One row of ``sessions.json``, with the key and agent it belongs to."""

    key: str
    agent_id: str
    session_id: str
    updated_at: int
    #: The other fields of the index entry, as stored (token counts, model, ...).
    extra: Mapping[str, Any] = field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``sessions.list`` shape: ``{key, agentId, sessionId, updatedAt, ...}``."""
        out: dict[str, Any] = dict(self.extra)
        out.update(
            key=self.key,
            agentId=self.agent_id,
            sessionId=self.session_id,
            updatedAt=self.updated_at,
        )
        return out


def is_stateless_session_key(session_key: str) -> bool:
    """True for the one-off keys chat completions make when a request names no
    session (``agent:<id>:openai:<uuid>``): nobody addresses them again."""
    return bool(_STATELESS_KEY.match(session_key))


def _read_header(path: Path) -> dict[str, Any] | None:
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


def _write_transcript(
    path: Path, header: bytes, body: Sequence[bytes], check_torn: bool, sync: bool
) -> bool:
    """Append the lines ``body`` (pieces of bytes) to a transcript (an IO
    thread's work); returns True when a torn last line had to be closed first.

    A new (empty) file gets ``header`` first; with ``check_torn`` a last line
    without its newline (a crash mid-write) is ended so it cannot swallow
    ``body``. With ``sync`` the data is ``fdatasync``ed before returning.
    """
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    return torn


def _rename_all(moves: Sequence[tuple[Path, Path]]) -> None:
    """Archive transcripts (an IO thread's batch); a file already gone is fine."""
    for source, target in moves:
        with contextlib.suppress(FileNotFoundError):
            os.replace(source, target)


class TranscriptStore(Protocol):
    """What the runtime and the WebSocket methods need from session storage."""

    def load_agent(self, agent_id: str) -> None:
        """Load the agent's index now (at start-up), recovering lost entries."""
        ...

    def ensure_session(
        self, agent_id: str, session_key: str, *, cwd: str | None = None
    ) -> SessionEntry:
        """The session under ``session_key``, created (new sessionId) when absent."""
        ...

    def get_session(self, agent_id: str, session_key: str) -> SessionEntry | None: ...

    def load_history(
        self, agent_id: str, session_id: str, limit: int = DEFAULT_HISTORY_LIMIT
    ) -> list[ModelMessage]:
        """The completed turns to send to the model, oldest first."""
        ...

    def append_user(
        self,
        agent_id: str,
        session_id: str,
        *,
        run_id: str,
        text: str,
        images: Sequence[ImageInput] = (),
        timestamp: int,
    ) -> None: ...

    def finish_turn(
        self,
        agent_id: str,
        session_key: str,
        session_id: str,
        *,
        run_id: str,
        text: str,
        timestamp: int,
        usage: Usage,
        stop_reason: StopReason,
        tool_calls: Sequence[ToolCall] = (),
        error: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        api: str | None = None,
        channel: str | None = None,
    ) -> Deferred[None]:
        """Append the assistant outcome (complete, failed or aborted) and settle it;
        fires once the turn is durable under the fsync policy."""
        ...

    def list_sessions(self, agent_id: str) -> list[SessionEntry]:
        """Every session of the agent, most recently updated first."""
        ...

    def message_count(self, agent_id: str, session_key: str) -> int: ...

    def count_sessions(self, agent_id: str) -> int: ...

    def read_messages(
        self, agent_id: str, session_key: str, limit: int = 200
    ) -> list[dict[str, Any]]: ...

    def reset(self, agent_id: str, session_key: str) -> SessionEntry: ...

    def delete(self, agent_id: str, session_key: str) -> bool: ...

    def session_path(self, agent_id: str) -> Path: ...

    def flush(self) -> None:
        """Write every changed index now."""
        ...

    def close(self) -> Deferred[None]:
        """Wait for pending writes, write the indexes, release IO threads."""
        ...


# -- blocking IO ------------------------------------------------------------------


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


# -- the store ----------------------------------------------------------------------


@define
class _TranscriptState:
    """What appending needs to remember per transcript between turns."""

    last_id: str | None = None
    #: The file was checked for a torn last line since this process opened it.
    checked: bool = False
    cwd: str | None = None
    #: The session key, recorded in the header so a lost index entry can be rebuilt.
    key: str | None = None
    #: Made for a session id created here and nothing appended yet: there is no
    #: file, so there is no history to read.
    empty: bool = False
    #: The transcript's path, once computed.
    path: Path | None = None
    #: The encoded ``session`` header line (written only to an empty file).
    header: bytes | None = None


class _AgentIndex:
    """One agent's ``sessions.json`` in memory, and what writing it needs.

    Each entry's JSON (``"key":{...}``) is cached, so a write re-encodes only
    the entries changed since the last one and joins the rest.
    """

    def __init__(self, entries: dict[str, dict[str, Any]]) -> None:
        self.entries = entries
        self._fragments: dict[str, bytes] = {}
        self._stale: set[str] = set(entries)
        #: Stateless keys, least recently used first.
        self.stateless: OrderedDict[str, None] = OrderedDict(
            (key, None)
            for key, _ in sorted(
                ((k, v) for k, v in entries.items() if is_stateless_session_key(k)),
                key=lambda kv: _updated_at(kv[1]),
            )
        )
        #: Held while a snapshot is written (reactor thread or an IO thread).
        self.lock = threading.Lock()
        #: Snapshot counter (reactor thread) and the newest one on disk (under lock).
        self.generation = 0
        self.written = 0
        self.warned = False

    def changed(self, key: str) -> None:
        """``key`` was added, modified or removed since the last snapshot."""
        self._stale.add(key)

    def snapshot(self) -> tuple[int, list[bytes]]:
        """``(generation, pieces)``: the entries as they are now, as the pieces of
        ``sessions.json`` (joined by the writer, off the reactor thread)."""
        fragments = self._fragments
        for key in self._stale:
            raw = self.entries.get(key)
            if raw is None:
                fragments.pop(key, None)
            else:
                fragments[key] = (_ENCODER.encode(key) + ":" + _ENCODER.encode(raw)).encode()
        self._stale.clear()
        pieces = [fragments[key] for key in self.entries]
        self.generation += 1
        return self.generation, pieces


def _updated_at(raw: Mapping[str, Any]) -> int:
    value = raw.get("updatedAt")
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


class SessionStore:
    """The on-disk :class:`TranscriptStore` (OpenClaw's layout)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        clock: IReactorTime,
        fsync: FsyncPolicy = "turn",
        index_flush_delay: float = DEFAULT_INDEX_FLUSH_DELAY,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        maintenance: MaintenanceMode = "warn",
        io: BlockingIO | None = None,
    ) -> None:
        """
        :param state_dir: the gateway state dir (``$OPENCLAW_STATE_DIR``).
        :param clock: time for ``updatedAt`` and for coalescing index writes.
        :param fsync: ``"turn"``: fsync each transcript once per finished turn
            and every index write; ``"never"``: leave it to the OS.
        :param index_flush_delay: index changes within this many seconds are
            written together (0 = once per reactor turn). A crash loses at most
            this interval of index updates (transcripts are recovered).
        :param max_entries: stateless sessions kept in an agent's index (the
            oldest are dropped and their transcripts archived); with
            ``maintenance="enforce"`` also the cap on the other sessions
            (``"warn"`` only logs). 0 = no cap.
        :param io: where blocking calls run (default: inline); the store owns
            it and stops it in :meth:`close`.
        """
        self.state_dir = Path(state_dir)
        self._clock = clock
        self._sync = fsync == "turn"
        self._flush_delay = index_flush_delay
        self._max_entries = max_entries
        self._maintenance: MaintenanceMode = maintenance
        self._io: BlockingIO = io if io is not None else InlineIO()
        self._indexes: dict[str, _AgentIndex] = {}
        self._dirs: dict[str, Path] = {}
        self._dirty: set[str] = set()
        self._flush_call: IDelayedCall | None = None
        self._states: OrderedDict[tuple[str, str], _TranscriptState] = OrderedDict()
        self._warned: set[Path] = set()
        self._archived: set[tuple[str, str]] = set()
        #: Transcripts with a user message appended and no outcome yet.
        self._open: dict[tuple[str, str], int] = {}
        #: Dropped from the index while a turn was open: archived when it ends.
        self._retire_later: set[tuple[str, str]] = set()
        #: Writes submitted to the IO executor and not finished yet.
        self._pending = 0
        self._idle_waiters: list[Deferred[None]] = []
        #: Per transcript, fires when its last submitted write has finished.
        self._tails: dict[tuple[str, str], Deferred[None]] = {}

    # -- paths ------------------------------------------------------------

    def sessions_dir(self, agent_id: str) -> Path:
        """``<state>/agents/<agentId>/sessions`` (the agent id is normalised)."""
        directory = self._dirs.get(agent_id)
        if directory is None:
            if len(self._dirs) >= _STATE_CACHE_SIZE:
                self._dirs.clear()
            directory = self._dirs[agent_id] = (
                self.state_dir / "agents" / normalize_agent_id(agent_id) / "sessions"
            )
        return directory

    def session_path(self, agent_id: str) -> Path:
        """The agent's ``sessions.json`` (what OpenClaw reports as the store path)."""
        return self.sessions_dir(agent_id) / INDEX_FILE

    def transcript_path(self, agent_id: str, session_id: str) -> Path:
        """The transcript file of ``session_id``; refuses ids unsafe as file names."""
        if not is_valid_session_id(session_id):
            raise ValueError(f"invalid session id {session_id!r}")
        return self.sessions_dir(agent_id) / f"{session_id}.jsonl"

    # -- blocking work ----------------------------------------------------------

    def _run_io(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_T]:
        """Run ``fn`` on the IO executor, counted so :meth:`close` can wait for it."""
        self._pending += 1
        d = self._io.run(fn, *args, **kwargs)
        d.addBoth(self._io_settled)
        return d

    def _io_settled(self, result: object) -> object:
        self._pending -= 1
        if self._pending == 0 and self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)
        return result

    def _serial(
        self,
        key: tuple[str, str],
        fn: Callable[_P, _T],
        /,
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        """Run ``fn`` on the IO executor after every write submitted earlier for
        the same transcript ``key`` (so appends and renames keep their order)."""
        self._pending += 1
        before = self._tails.get(key)
        done: Deferred[None] = Deferred()
        self._tails[key] = done
        result: Deferred[_T] = Deferred()

        def start(_: object = None) -> None:
            self._io.run(fn, *args, **kwargs).chainDeferred(result)

        def finished(outcome: object) -> object:
            if self._tails.get(key) is done:
                del self._tails[key]
            done.callback(None)
            return self._io_settled(outcome)

        result.addBoth(finished)
        if before is None:
            start()
        else:
            before.addCallback(start)
        return result

    def when_idle(self) -> Deferred[None]:
        """Fires when no fsync or index write is in progress."""
        if self._pending == 0:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def close(self) -> Deferred[None]:
        """Wait for pending fsyncs and index writes, write what is left of the
        indexes, then stop the IO threads (later calls run inline)."""

        def finish(_: object) -> None:
            self.flush()
            io, self._io = self._io, InlineIO()
            io.stop()

        return self.when_idle().addCallback(finish)

    # -- index --------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    def _index(self, agent_id: str) -> _AgentIndex:
        agent = normalize_agent_id(agent_id)
        index = self._indexes.get(agent)
        if index is None:
            index = self._indexes[agent] = _AgentIndex(self._load_index(agent))
            self._recover(agent, index)
            self._maintain(agent, index)
        return index

    def load_agent(self, agent_id: str) -> None:
        """Load the agent's index now, recovering sessions it lost in a crash."""
        self._index(agent_id)

    def _load_index(self, agent: str) -> dict[str, dict[str, Any]]:
        path = self.session_path(agent)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            aside = path.with_name(f"{INDEX_FILE}.corrupt.{_archive_suffix(self._now())}")
            log.error(
                "session index {path} is unreadable ({reason}); moved aside to {aside}",
                path=str(path),
                reason=str(exc),
                aside=str(aside),
            )
            os.replace(path, aside)
            return {}
        return {str(key): dict(value) for key, value in data.items() if isinstance(value, dict)}

    def _recover(self, agent: str, index: _AgentIndex) -> None:
        """Index the transcripts the index lost (a crash before its last write).

        A ``<sessionId>.jsonl`` that no entry names, whose header records a
        ``sessionKey`` the index does not have, gets its entry back (``updatedAt``
        from the file's modification time). Files without a key in their header
        (written by OpenClaw or an older version) are left alone.
        """
        try:
            scan = os.scandir(self.sessions_dir(agent))
        except (FileNotFoundError, NotADirectoryError):
            return
        known = {str(raw.get("sessionId")) for raw in index.entries.values()}
        found: dict[str, tuple[float, str]] = {}
        skipped = 0
        with scan:
            for item in scan:
                name = item.name
                if not name.endswith(".jsonl"):
                    continue
                session_id = name[: -len(".jsonl")]
                if session_id in known or not is_valid_session_id(session_id):
                    continue
                try:
                    header = _read_header(Path(item.path))
                    mtime = item.stat().st_mtime
                except OSError:
                    skipped += 1
                    continue
                key = (
                    header.get("sessionKey") if header and header.get("id") == session_id else None
                )
                if not isinstance(key, str) or not key or key in index.entries:
                    skipped += 1
                    continue
                seen = found.get(key)
                if seen is None or seen[0] < mtime:
                    found[key] = (mtime, session_id)
        for key, (mtime, session_id) in sorted(found.items(), key=lambda item: item[1][0]):
            index.entries[key] = {"sessionId": session_id, "updatedAt": int(mtime * 1000)}
            index.changed(key)
            if is_stateless_session_key(key):
                index.stateless[key] = None
        if found:
            log.warn(
                "recovered {count} sessions of agent {agent_id} missing from its index"
                " (their transcripts were written after its last update before a crash)",
                count=len(found),
                agent_id=agent,
            )
            self._mark_dirty(agent)
        if skipped:
            log.info(
                "{count} transcripts of agent {agent_id} are not in its index and name no"
                " session key that could be restored; left as they are",
                count=skipped,
                agent_id=agent,
            )

    def _maintain(self, agent: str, index: _AgentIndex) -> None:
        """Apply ``max_entries``: stateless sessions always, the others when
        enforcing (else warn once). Cuts happen in batches (a tenth of the cap
        over it), oldest first, and never to a session with a turn running."""
        cap = self._max_entries
        if cap <= 0:
            return
        slack = max(1, cap // 10)
        dropped: list[tuple[str, dict[str, Any]]] = []
        if len(index.stateless) > cap + slack:
            while len(index.stateless) > cap:
                key, _ = index.stateless.popitem(last=False)
                raw = index.entries.pop(key, None)
                index.changed(key)
                if raw is not None:
                    dropped.append((key, raw))
        stateful = len(index.entries) - len(index.stateless)
        if stateful > cap and self._maintenance == "enforce":
            if stateful > cap + slack:
                candidates = sorted(
                    (_updated_at(raw), key)
                    for key, raw in index.entries.items()
                    if key not in index.stateless
                    and (agent, str(raw.get("sessionId"))) not in self._open
                )
                for _, key in candidates[: stateful - cap]:
                    dropped.append((key, index.entries.pop(key)))
                    index.changed(key)
        elif stateful > cap and not index.warned:
            index.warned = True
            log.warn(
                "agent {agent_id} has {count} sessions, more than session.maintenance"
                '.maxEntries ({cap}); they are kept (mode "warn")',
                agent_id=agent,
                count=stateful,
                cap=cap,
            )
        if dropped:
            self._mark_dirty(agent)
            self._retire(agent, [raw for _, raw in dropped])

    def _retire(self, agent: str, dropped: Sequence[Mapping[str, Any]]) -> None:
        """Archive the transcripts of sessions dropped from the index
        (``.deleted.<time>``), later for those with a turn still running."""
        suffix = f".deleted.{_archive_suffix(self._now())}"
        moves: list[tuple[Path, Path]] = []
        for raw in dropped:
            session_id = str(raw.get("sessionId", ""))
            if not is_valid_session_id(session_id):
                continue
            if (agent, session_id) in self._open:
                self._retire_later.add((agent, session_id))
                continue
            self._states.pop((agent, session_id), None)
            path = self.transcript_path(agent, session_id)
            move = (path, path.with_name(path.name + suffix))
            if (agent, session_id) in self._tails:  # after its last append lands
                self._serial((agent, session_id), _rename_all, [move]).addErrback(
                    self._log_failure, "archiving a transcript"
                )
            else:
                moves.append(move)
        if moves:
            self._run_io(_rename_all, moves).addErrback(self._log_failure, "archiving transcripts")

    def _log_failure(self, failure: Failure, what: str) -> None:
        log.failure("session store: {what} failed", failure, what=what)

    def _mark_dirty(self, agent_id: str) -> None:
        self._dirty.add(normalize_agent_id(agent_id))
        if self._flush_call is None:
            self._flush_call = self._clock.callLater(self._flush_delay, self._scheduled_flush)

    def _cancel_flush_call(self) -> None:
        call, self._flush_call = self._flush_call, None
        if call is not None and call.active():
            call.cancel()

    def _scheduled_flush(self) -> None:
        """The coalesced write: encode here, write and sync on the IO executor."""
        self._flush_call = None
        dirty, self._dirty = self._dirty, set()
        for agent in sorted(dirty):
            index = self._indexes.get(agent)
            if index is None:
                continue
            generation, pieces = index.snapshot()
            d = self._run_io(self._write_index, self.sessions_dir(agent), index, generation, pieces)
            d.addErrback(self._index_write_failed, agent)

    def _index_write_failed(self, failure: Failure, agent: str) -> None:
        log.failure("could not write session index for agent {agent_id}", failure, agent_id=agent)
        self._mark_dirty(agent)

    def flush(self) -> None:
        """Write every changed index now, on the calling thread (atomically)."""
        self._cancel_flush_call()
        for agent in sorted(self._dirty):
            index = self._indexes.get(agent)
            if index is None:
                self._dirty.discard(agent)
                continue
            generation, pieces = index.snapshot()
            try:
                self._write_index(self.sessions_dir(agent), index, generation, pieces)
            except OSError:
                log.failure("could not write session index for agent {agent_id}", agent_id=agent)
            else:
                self._dirty.discard(agent)

    def _write_index(
        self, directory: Path, index: _AgentIndex, generation: int, pieces: list[bytes]
    ) -> None:
        """Replace ``directory/sessions.json`` with snapshot ``generation`` unless
        a newer one is already there (writes may finish out of order across
        threads). Touches no store state but the index's lock-guarded fields."""
        with index.lock:
            if generation <= index.written:
                return
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write(directory / INDEX_FILE, (b"{", b",".join(pieces), b"}"), sync=self._sync)
            index.written = generation

    def _entry(self, agent: str, key: str, raw: Mapping[str, Any]) -> SessionEntry:
        extra = {k: v for k, v in raw.items() if k not in ("sessionId", "updatedAt")}
        return SessionEntry(
            key=key,
            agent_id=agent,
            session_id=str(raw.get("sessionId", "")),
            updated_at=_updated_at(raw),
            extra=extra,
        )

    def get_session(self, agent_id: str, session_key: str) -> SessionEntry | None:
        """The index entry for ``session_key``, if any (and usable)."""
        agent = normalize_agent_id(agent_id)
        raw = self._index(agent).entries.get(session_key)
        if raw is None or not is_valid_session_id(str(raw.get("sessionId", ""))):
            return None
        return self._entry(agent, session_key, raw)

    def ensure_session(
        self, agent_id: str, session_key: str, *, cwd: str | None = None
    ) -> SessionEntry:
        """Return the session under ``session_key``, creating it when absent.

        An entry whose ``sessionId`` is not a safe file name is replaced.
        """
        agent = normalize_agent_id(agent_id)
        index = self._index(agent)
        raw = index.entries.get(session_key)
        if raw is not None and not is_valid_session_id(str(raw.get("sessionId", ""))):
            log.warn(
                "session {key} of agent {agent_id} has an unusable sessionId; starting fresh",
                key=session_key,
                agent_id=agent,
            )
            raw = None
        created = raw is None
        if raw is None:
            raw = {"sessionId": random_uuid4(), "updatedAt": self._now()}
            index.entries[session_key] = raw
            index.changed(session_key)
            self._mark_dirty(agent)
        if is_stateless_session_key(session_key):
            index.stateless[session_key] = None
            index.stateless.move_to_end(session_key)
        entry = self._entry(agent, session_key, raw)
        state = self._state(agent, entry.session_id, new=created)
        if state.key != session_key or (cwd is not None and state.cwd != cwd):
            state.header = None  # the header records both
        state.key = session_key
        if cwd is not None:
            state.cwd = cwd
        if created:
            self._maintain(agent, index)
        return entry

    def list_sessions(self, agent_id: str) -> list[SessionEntry]:
        """Every usable session of the agent, most recently updated first
        (``entry.to_json()`` is the ``sessions.list`` row)."""
        agent = normalize_agent_id(agent_id)
        entries = [
            self._entry(agent, key, raw)
            for key, raw in self._index(agent).entries.items()
            if is_valid_session_id(str(raw.get("sessionId", "")))
        ]
        entries.sort(key=lambda e: e.updated_at, reverse=True)
        return entries

    def count_sessions(self, agent_id: str) -> int:
        """How many sessions the agent's index holds."""
        return len(self._index(agent_id).entries)

    def reset(self, agent_id: str, session_key: str) -> SessionEntry:
        """Start a fresh ``sessionId`` under ``session_key``.

        The old transcript is kept, renamed ``<id>.jsonl.reset.<time>`` (as
        OpenClaw does); token counters are dropped, other fields kept. The
        index is written at once.
        """
        agent = normalize_agent_id(agent_id)
        index = self._index(agent)
        now = self._now()
        old = index.entries.get(session_key)
        fresh: dict[str, Any] = {}
        if old is not None:
            self._archive(agent, str(old.get("sessionId", "")), "reset", now)
            fresh = {
                k: v
                for k, v in old.items()
                if k not in ("inputTokens", "outputTokens", "totalTokens", "contextTokens")
            }
        fresh.update(sessionId=random_uuid4(), updatedAt=now)
        index.entries[session_key] = fresh
        index.changed(session_key)
        self._dirty.add(agent)
        self.flush()
        return self._entry(agent, session_key, fresh)

    def delete(self, agent_id: str, session_key: str) -> bool:
        """Remove the index entry (written at once); the transcript is renamed
        ``.deleted.<time>``."""
        agent = normalize_agent_id(agent_id)
        index = self._index(agent)
        old = index.entries.pop(session_key, None)
        if old is None:
            return False
        index.changed(session_key)
        index.stateless.pop(session_key, None)
        self._archive(agent, str(old.get("sessionId", "")), "deleted", self._now())
        self._dirty.add(agent)
        self.flush()
        return True

    def _archive(self, agent: str, session_id: str, why: str, now: int) -> None:
        if not is_valid_session_id(session_id):
            return
        path = self.transcript_path(agent, session_id)
        key = (agent, session_id)
        self._states.pop(key, None)
        self._archived.add(key)
        self._retire_later.discard(key)
        move = (path, path.with_name(f"{path.name}.{why}.{_archive_suffix(now)}"))
        if key in self._tails:  # an append is still on its way: rename after it
            self._serial(key, _rename_all, [move]).addErrback(
                self._log_failure, "archiving a transcript"
            )
        else:
            _rename_all([move])

    # -- transcripts ----------------------------------------------------------

    def _report_bad_line(self, path: Path, last: bool) -> None:
        """Warn once per transcript and process about lines that do not parse."""
        if path in self._warned:
            return
        if len(self._warned) >= _STATE_CACHE_SIZE:
            self._warned.clear()
        self._warned.add(path)
        log.warn(
            "skipping {what} in transcript {path}",
            what="a torn last line (interrupted write)" if last else "an unreadable line",
            path=str(path),
        )

    def _state(self, agent: str, session_id: str, *, new: bool = False) -> _TranscriptState:
        """What appending remembers about a transcript; ``new`` for a session id
        made just now (nothing to read: the file does not exist yet)."""
        key = (agent, session_id)
        state = self._states.get(key)
        if state is None:
            state = _TranscriptState(empty=new)
            if not new:
                path = self.transcript_path(agent, session_id)
                for entry in _read_backwards(path, MAX_TAIL_BYTES, self._report_bad_line):
                    entry_id = entry.get("id")
                    if isinstance(entry_id, str):
                        state.last_id = entry_id
                        break
            self._states[key] = state
            while len(self._states) > _STATE_CACHE_SIZE:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(key)
        return state

    def _append(
        self,
        agent: str,
        session_id: str,
        messages: Sequence[tuple[str, int, dict[str, Any]]],
        *,
        sync: bool,
    ) -> Deferred[None]:
        """Append ``(run_id, timestamp, message)`` entries in one write.

        The lines (ids, parent chain) are made here; opening, writing and
        syncing happen on the IO executor, after earlier writes to the same
        transcript. Fires when the write (and sync) is done.
        """
        key = (agent, session_id)
        if key in self._archived:
            log.warn(
                "not writing to session {session_id} of agent {agent_id}: it was reset or deleted",
                session_id=session_id,
                agent_id=agent,
            )
            return succeed(None)
        state = self._state(agent, session_id)
        path = state.path
        if path is None:
            path = state.path = self.transcript_path(agent, session_id)
        state.empty = False
        header_line = state.header
        if header_line is None:
            first_ts = messages[0][1] if messages else self._now()
            header: dict[str, Any] = {
                "type": "session",
                "version": TRANSCRIPT_VERSION,
                "id": session_id,
                "timestamp": iso_ms(first_ts),
                "cwd": state.cwd or "",
            }
            if state.key is not None:
                header["sessionKey"] = state.key
            header_line = state.header = _dumps_line(header)
        chunks: list[bytes] = []
        for run_id, ts, message in messages:
            entry_id = _entry_id()
            entry = {
                "type": "message",
                "id": entry_id,
                "parentId": state.last_id,
                "timestamp": iso_ms(ts),
                "runId": run_id,
                "message": message,
            }
            chunks.extend(_line_pieces(entry))
            state.last_id = entry_id
        check_torn = not state.checked
        state.checked = True
        written = self._serial(key, _write_transcript, path, header_line, chunks, check_torn, sync)

        def torn(was_torn: bool) -> None:
            if was_torn:
                log.warn(
                    "transcript {path} ends with a torn line; it will be skipped",
                    path=str(path),
                )

        return written.addCallback(torn)

    def append_user(
        self,
        agent_id: str,
        session_id: str,
        *,
        run_id: str,
        text: str,
        images: Sequence[ImageInput] = (),
        timestamp: int,
    ) -> None:
        """Append the user turn (content is a string, or blocks when images come).

        The turn stays open (its session is not archived by maintenance) until
        :meth:`finish_turn`.
        """
        agent = normalize_agent_id(agent_id)
        content: Any = text
        if images:
            content = [{"type": "text", "text": text}] + [
                {"type": "image", "data": image.data, "mimeType": image.mime_type}
                for image in images
            ]
        message = {"role": "user", "content": content, "timestamp": timestamp}
        self._append(agent, session_id, [(run_id, timestamp, message)], sync=False).addErrback(
            self._log_failure, "appending a user message"
        )
        key = (agent, session_id)
        self._open[key] = self._open.get(key, 0) + 1

    def _close_turn(self, agent: str, session_id: str) -> None:
        key = (agent, session_id)
        count = self._open.pop(key, 0) - 1
        if count > 0:
            self._open[key] = count
        elif key in self._retire_later:
            self._retire_later.discard(key)
            self._retire(agent, [{"sessionId": session_id}])

    def finish_turn(
        self,
        agent_id: str,
        session_key: str,
        session_id: str,
        *,
        run_id: str,
        text: str,
        timestamp: int,
        usage: Usage,
        stop_reason: StopReason,
        tool_calls: Sequence[ToolCall] = (),
        error: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        api: str | None = None,
        channel: str | None = None,
    ) -> Deferred[None]:
        """Append the assistant outcome and update the index entry.

        The Deferred fires once the lines are written and (policy ``turn``)
        synced, on the IO executor: report the turn only then. Failed and
        aborted turns keep their partial text, ``stopReason``
        ``error``/``aborted`` and ``errorMessage``; history replay skips them.
        """
        agent = normalize_agent_id(agent_id)
        content: list[dict[str, Any]] = []
        if text:
            content.append({"type": "text", "text": text})
        for call in tool_calls:
            try:
                arguments: Any = json.loads(call.arguments) if call.arguments else {}
            except ValueError:
                arguments = call.arguments
            content.append(
                {"type": "toolCall", "id": call.id, "name": call.name, "arguments": arguments}
            )
        message: dict[str, Any] = {"role": "assistant", "content": content}
        for name, value in (("api", api), ("provider", provider), ("model", model)):
            if value is not None:
                message[name] = value
        message.update(
            {
                "usage": usage_to_disk(usage),
                "stopReason": _TO_DISK_STOP.get(stop_reason, stop_reason),
                "timestamp": timestamp,
            }
        )
        if error is not None:
            message["errorMessage"] = error
        try:
            written = self._append(
                agent, session_id, [(run_id, timestamp, message)], sync=self._sync
            )
        finally:
            self._close_turn(agent, session_id)
        index = self._index(agent)
        raw = index.entries.get(session_key)
        if raw is not None and raw.get("sessionId") == session_id:
            raw["updatedAt"] = timestamp
            if stop_reason not in _FAILED_STOPS:
                raw.update(
                    inputTokens=usage.input,
                    outputTokens=usage.output,
                    totalTokens=usage.total,
                )
            if model is not None:
                raw["model"] = model
            if provider is not None:
                raw["modelProvider"] = provider
            if channel is not None:
                raw["lastChannel"] = channel
            index.changed(session_key)
            self._mark_dirty(agent)
        return written

    def load_history(
        self, agent_id: str, session_id: str, limit: int = DEFAULT_HISTORY_LIMIT
    ) -> list[ModelMessage]:
        """The last ``limit`` messages of completed turns, oldest first.

        A turn whose reply failed, was aborted or never arrived (crash) is left
        out entirely, so the model never sees half a turn. Consecutive messages
        of one role are merged and the history starts with a user message, so
        strict upstreams (Anthropic) accept it.
        """
        if limit <= 0:
            return []
        agent = normalize_agent_id(agent_id)
        state = self._states.get((agent, session_id))
        if state is not None and state.empty:
            return []  # created here just now: no file yet
        path = state.path if state is not None and state.path is not None else None
        if path is None:
            path = self.transcript_path(agent, session_id)
        ok_runs: set[str] = set()
        kept: list[ModelMessage] = []
        for entry in _read_backwards(path, MAX_TAIL_BYTES, self._report_bad_line):
            message = _message_of(entry)
            if message is None:
                continue
            run_id = entry.get("runId") or message.get("runId")
            role = message.get("role")
            if role == "assistant":
                stop = message.get("stopReason")
                if stop in _FAILED_STOPS:
                    continue
                if isinstance(run_id, str):
                    ok_runs.add(run_id)
                converted = _assistant_for_model(message)
            elif role == "user":
                if isinstance(run_id, str) and run_id not in ok_runs:
                    continue
                converted = _user_for_model(message)
            else:
                continue
            if converted is not None:
                kept.append(converted)
            if len(kept) >= limit + 1:
                break
        kept.reverse()
        history = _normalise_history(kept)
        if len(history) > limit:
            history = _normalise_history(history[-limit:])
        return history

    def read_messages(
        self, agent_id: str, session_key: str, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The last ``limit`` transcript messages in ``chat.history``'s display shape.

        Failed and aborted replies are included (with their ``stopReason``);
        image data is replaced by its type and size.
        """
        entry = self.get_session(agent_id, session_key)
        if entry is None or limit <= 0:
            return []
        path = self.transcript_path(entry.agent_id, entry.session_id)
        out: list[dict[str, Any]] = []
        for raw in _read_backwards(path, MAX_TAIL_BYTES, self._report_bad_line):
            message = _message_of(raw)
            if message is None or message.get("role") not in ("user", "assistant"):
                continue
            out.append(_for_display(message))
            if len(out) >= limit:
                break
        out.reverse()
        return out

    def message_count(self, agent_id: str, session_key: str) -> int:
        """How many user/assistant messages the session's transcript holds."""
        entry = self.get_session(agent_id, session_key)
        if entry is None:
            return 0
        path = self.transcript_path(entry.agent_id, entry.session_id)
        count = 0
        try:
            with path.open("rb") as f:
                for line in f:
                    try:
                        parsed = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(parsed, dict):
                        message = _message_of(parsed)
                        if message is not None and message.get("role") in ("user", "assistant"):
                            count += 1
        except FileNotFoundError:
            return 0
        return count


# -- reading helpers ------------------------------------------------------------


def _read_backwards(
    path: Path, max_bytes: int, on_bad: Callable[[Path, bool], None]
) -> Iterator[dict[str, Any]]:
    """Parsed lines of ``path`` from the last to the first.

    Unparseable lines (a torn last line after a crash, or damage) are skipped
    and reported to ``on_bad(path, is_last_line)``. Stops after ``max_bytes``
    from the end.
    """
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    with f:
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        floor = max(0, pos - max_bytes)
        carry = b""
        at_end = True
        while pos > floor:
            step = min(_CHUNK, pos - floor)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + carry
            lines = buf.split(b"\n")
            carry = lines[0]
            tail = lines[1:]
            for i in range(len(tail) - 1, -1, -1):
                parsed = _parse_line(path, tail[i], at_end and i == len(tail) - 1, on_bad)
                if parsed is not None:
                    yield parsed
            at_end = at_end and not tail
        if pos == 0 and carry:
            parsed = _parse_line(path, carry, at_end, on_bad)
            if parsed is not None:
                yield parsed


def _parse_line(
    path: Path, line: bytes, last: bool, on_bad: Callable[[Path, bool], None]
) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        parsed = json.loads(line)
    except ValueError:
        on_bad(path, last)
        return None
    return parsed if isinstance(parsed, dict) else None


def _message_of(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The message of a ``message`` entry (nested pi form, or a flat line)."""
    if entry.get("type") != "message":
        return None
    nested = entry.get("message")
    if isinstance(nested, dict):
        return nested
    if "role" in entry:
        return dict(entry)
    return None


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            block["text"]
            for block in content
            if isinstance(block, dict)
            and block.get("type") == "text"
            and isinstance(block.get("text"), str)
        ]
        return "\n".join(parts)
    return ""


def _user_for_model(message: Mapping[str, Any]) -> ModelMessage | None:
    content = message.get("content")
    images: list[ImageInput] = []
    if isinstance(content, list):
        for block in content:
            if (
                isinstance(block, dict)
                and block.get("type") == "image"
                and isinstance(block.get("data"), str)
                and isinstance(block.get("mimeType"), str)
            ):
                images.append(ImageInput(data=block["data"], mime_type=block["mimeType"]))
    text = _text_of(content)
    if not text and not images:
        return None
    return ModelMessage(role="user", content=text, images=tuple(images))


def _assistant_for_model(message: Mapping[str, Any]) -> ModelMessage | None:
    """Assistant text plus its tool calls rendered as text lines.

    Client tool calls are replayed as text (``tool_call id=... name=...
    arguments=...``, OpenClaw's rendering) because their results come back as
    text in a later user turn; a structured call without a matching ``tool``
    message would be rejected by OpenAI-compatible upstreams.
    """
    content = message.get("content")
    pieces = [_text_of(content)] if _text_of(content) else []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "toolCall":
                args = block.get("arguments")
                args_text = args if isinstance(args, str) else json.dumps(args)
                pieces.append(
                    f"tool_call id={block.get('id')} name={block.get('name')} arguments={args_text}"
                )
    text = "\n".join(pieces)
    if not text:
        return None
    return ModelMessage(role="assistant", content=text)


def _normalise_history(messages: list[ModelMessage]) -> list[ModelMessage]:
    out: list[ModelMessage] = []
    for message in messages:
        if not out and message.role != "user":
            continue
        if out and out[-1].role == message.role:
            previous = out[-1]
            out[-1] = ModelMessage(
                role=previous.role,
                content="\n\n".join(p for p in (previous.content, message.content) if p),
                images=previous.images + message.images,
            )
            continue
        out.append(message)
    return out


def _for_display(message: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(message)
    content = out.get("content")
    if isinstance(content, list):
        shown: list[Any] = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "image":
                data = block.get("data")
                shown.append(
                    {
                        "type": "image",
                        "mimeType": block.get("mimeType"),
                        "bytes": (len(data) * 3) // 4 if isinstance(data, str) else None,
                        "omitted": True,
                    }
                )
            else:
                shown.append(block)
        out["content"] = shown
    stop = out.get("stopReason")
    if isinstance(stop, str):
        out["stopReason"] = _FROM_DISK_STOP.get(stop, stop)
    return out


def stop_reason_from_disk(value: object) -> StopReason | None:
    """Map a stored ``stopReason`` (ours or pi-agent's) to the runtime's vocabulary."""
    return _FROM_DISK_STOP.get(value) if isinstance(value, str) else None
