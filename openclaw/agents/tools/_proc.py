"""One shell command in its own process group, its output, and the registry of them.

Commands run as ``setsid /bin/sh -c <command>`` (util-linux ``setsid`` execs in
place because a freshly spawned child is never a group leader, so the shell's
pid is its process-group id; a tiny Python wrapper is the fallback when
``setsid`` is missing). Stopping a command signals the whole group: SIGTERM,
then SIGKILL after a grace period. When the shell exits, whatever it left
running in its group is stopped too (OpenClaw does the same), so nothing in
the group outlives its command. A process that starts a session of its own
(``setsid``) is out of the group's reach and may outlive it; if it still holds
the output pipes a grace period after the shell exited, our ends are closed so
the command ends (and shutdown is not held up) anyway.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorProcess,
    IReactorTime,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger()

#: Exit codes with which the shell reports it could not run the command:
#: 126 not executable, 127 not found.
SHELL_FAILURES = (126, 127)

_PY_SETSID = "import os,sys; os.setsid(); os.execv('/bin/sh', ['/bin/sh', '-c', sys.argv[1]])"


def shell_argv(command: str, setsid_path: str | None = None) -> list[str]:
    """argv that runs ``command`` under ``/bin/sh -c`` as a new session/group leader."""
    setsid = setsid_path if setsid_path is not None else shutil.which("setsid")
    if setsid:
        return [setsid, "/bin/sh", "-c", command]
    return [sys.executable, "-c", _PY_SETSID, command]


class OutputBuffer:
    """Merged stdout/stderr kept as head + rolling tail within ``max_chars``."""

    def __init__(self, max_chars: int) -> None:
        self._max = max_chars
        self._head = ""
        self._tail = ""
        self.omitted = 0
        self.total = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        """Add bytes; return the decoded text (for progress updates and polls)."""
        text: str = self._decoder.decode(data)
        self.total += len(text)
        half = self._max // 2
        if len(self._head) < half:
            take = text[: half - len(self._head)]
            self._head += take
            text_rest = text[len(take) :]
        else:
            text_rest = text
        self._tail += text_rest
        if len(self._tail) > self._max - half:
            cut = len(self._tail) - (self._max - half)
            self.omitted += cut
            self._tail = self._tail[cut:]
        return text

    def clipped(self, limit: int) -> str:
        """Head and tail of the whole output within ``limit`` characters; the
        marker counts everything left out, not only what was retained."""
        if self.total <= limit:
            return self.text()
        half = limit // 2
        retained = self._head + self._tail
        head, tail = retained[:half], retained[-half:] if half else ""
        omitted = self.total - len(head) - len(tail)
        return f"{head}\n\n[... {omitted} characters omitted ...]\n\n{tail}"

    def text(self) -> str:
        """Everything retained, with a marker where output was dropped."""
        if self.omitted:
            return f"{self._head}\n\n[... {self.omitted} characters omitted ...]\n\n{self._tail}"
        return self._head + self._tail


class ProcessSession(ProcessProtocol):
    """A running or finished command: output, exit status, and the group to kill."""

    def __init__(
        self,
        clock: IReactorTime,
        *,
        agent_id: str,
        command: str,
        cwd: str,
        max_output_chars: int,
        kill_grace_seconds: float,
        on_output: Callable[[str], None] = lambda _t: None,
    ) -> None:
        self.id = secrets.token_hex(4)
        self.agent_id = agent_id
        self.command = command
        self.cwd = cwd
        self.started_at = time.time()
        self.ended_at: float | None = None
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self.timed_out = False
        self.killed = False
        self.backgrounded = False
        self.pid: int | None = None
        self.output = OutputBuffer(max_output_chars)
        self.pending = ""
        self.on_output = on_output
        self._clock = clock
        self._grace = kill_grace_seconds
        self._kill_call: IDelayedCall | None = None
        self._timeout_call: IDelayedCall | None = None
        self._release_call: IDelayedCall | None = None
        self._ended: list[Deferred[ProcessSession]] = []
        self._pending_waiters: list[Deferred[None]] = []
        self._done = False
        self._exited = False
        self._max_pending = max_output_chars

    # -- lifecycle -----------------------------------------------------------------

    def start(
        self, reactor: IReactorProcess, argv: list[str], env: Mapping[str, str], timeout: float
    ) -> None:
        """Spawn the command; ``timeout`` seconds (0 = none) later the group is killed."""
        transport = reactor.spawnProcess(
            self, argv[0], argv, env=dict(env), path=self.cwd, usePTY=False
        )
        self.pid = transport.pid
        if timeout > 0:
            self._timeout_call = self._clock.callLater(timeout, self._on_timeout)

    @property
    def running(self) -> bool:
        """True until the process and its pipes are done."""
        return not self._done

    def when_ended(self) -> Deferred[ProcessSession]:
        """Fires (with self) once the command has finished and its group is gone."""
        if self._done:
            d: Deferred[ProcessSession] = Deferred()
            d.callback(self)
            return d
        d = Deferred()
        self._ended.append(d)
        return d

    def when_output(self) -> Deferred[None]:
        """Fires on the next output or at the end (for ``process poll`` waits)."""
        d: Deferred[None] = Deferred(lambda d: self._pending_waiters.remove(d))
        if self._done or self.pending:
            d.callback(None)
        else:
            self._pending_waiters.append(d)
        return d

    def terminate(self, *, killed: bool = True) -> None:
        """SIGTERM the whole group, SIGKILL it after the grace period."""
        if self._done:
            return
        self.killed = self.killed or killed
        self._signal_group(signal.SIGTERM)
        if self._kill_call is None:
            self._kill_call = self._clock.callLater(self._grace, self._signal_group, signal.SIGKILL)

    def write_stdin(self, data: bytes, eof: bool) -> None:
        """Send input; ``eof`` closes stdin."""
        if self.transport is None or self._done:
            raise ValueError("the process is not running")
        if data:
            self.transport.write(data)
        if eof:
            self.transport.closeStdin()

    def drain(self) -> str:
        """Output since the last drain."""
        text, self.pending = self.pending, ""
        return text

    # -- ProcessProtocol -----------------------------------------------------------

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        """Record output from stdout or stderr."""
        text = self.output.feed(data)
        if text:
            self.pending = (self.pending + text)[-self._max_pending :]
            self.on_output(text)
            waiters, self._pending_waiters = self._pending_waiters, []
            for d in waiters:
                d.callback(None)

    def processExited(self, reason: Failure) -> None:
        """The shell exited: stop whatever it left in its group, record the status."""
        self._exited = True
        value = reason.value
        self.exit_code = getattr(value, "exitCode", None)
        self.exit_signal = getattr(value, "signal", None)
        self._signal_group(signal.SIGTERM)
        if self._kill_call is None:
            self._kill_call = self._clock.callLater(self._grace, self._signal_group, signal.SIGKILL)
        self._release_call = self._clock.callLater(self._grace, self._release_pipes)

    def processEnded(self, reason: Failure) -> None:
        """All pipes closed and the shell reaped: make sure the group is gone, notify."""
        self._signal_group(signal.SIGKILL)
        for call in (self._kill_call, self._timeout_call, self._release_call):
            if call is not None and call.active():
                call.cancel()
        self.ended_at = time.time()
        self._done = True
        ended, self._ended = self._ended, []
        waiters, self._pending_waiters = self._pending_waiters, []
        for d in waiters:
            d.callback(None)
        for e in ended:
            e.callback(self)

    # -- internals -----------------------------------------------------------------

    def _on_timeout(self) -> None:
        self.timed_out = True
        self.terminate(killed=False)

    def _release_pipes(self) -> None:
        """The shell exited and its group was given the grace period, yet the
        output pipes are still open: a process that left the group (``setsid``,
        a daemon) holds them. Close our ends so the command ends; that process
        is out of reach of the group kill and keeps running."""
        if not self._done and self.transport is not None:
            _log.warn(
                "exec pid={pid}: a process outside the command's group holds its output; "
                "output from it is no longer read",
                pid=self.pid,
            )
            self.transport.loseConnection()

    def _signal_group(self, sig: int) -> None:
        if self.pid is None:
            return
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            # Right after spawn the child may not have called setsid() yet, so its
            # group does not exist; it has no children then, so signal it alone.
            # Until processExited the pid is unreaped, hence still ours. (A SIGTERM
            # that lands between fork and exec can be lost; the SIGKILL after the
            # grace period is not.)
            if not self._exited:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, sig)
        except OSError as e:
            _log.warn("could not signal process group {pgid}: {error}", pgid=self.pid, error=e)

    def status(self) -> str:
        """``running``, ``completed`` or ``failed``, as OpenClaw judges an exit.

        The command ran to its own exit with any code but 126/127 (not
        executable, not found): ``completed``, so ``grep`` without a match or a
        failing test run is an answer, not a tool failure. A timeout, a kill,
        a signal or the shell not finding the command: ``failed``.
        """
        if self.running:
            return "running"
        ordinary = not (self.timed_out or self.killed or self.exit_signal is not None)
        if ordinary and self.exit_code is not None and self.exit_code not in SHELL_FAILURES:
            return "completed"
        return "failed"

    def summary(self) -> dict[str, object]:
        """Structured facts for ``details`` and ``process list``."""
        end = self.ended_at if self.ended_at is not None else time.time()
        return {
            "sessionId": self.id,
            "status": self.status(),
            "command": self.command[:200],
            "cwd": self.cwd,
            "pid": self.pid,
            "exitCode": self.exit_code,
            "signal": _signal_name(self.exit_signal),
            "timedOut": self.timed_out,
            "killed": self.killed,
            "durationMs": int((end - self.started_at) * 1000),
        }


def _signal_name(sig: int | None) -> str | None:
    if sig is None:
        return None
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


class ProcessRegistry:
    """Background sessions per agent, with a TTL and a count cap for finished ones."""

    def __init__(self, clock: IReactorTime, *, ttl_seconds: float = 1800.0, max_finished: int = 50):
        self._clock = clock
        self._ttl = ttl_seconds
        self._max_finished = max_finished
        self._sessions: dict[str, ProcessSession] = {}
        self._expiries: dict[str, IDelayedCall] = {}
        self._foreground: set[ProcessSession] = set()

    def track(self, session: ProcessSession) -> None:
        """Know about a foreground command (not listed) so shutdown can stop it."""
        self._foreground.add(session)
        session.when_ended().addCallback(self._foreground.discard)

    def add(self, session: ProcessSession) -> None:
        """Track a backgrounded session; expire it ``ttl`` after it ends."""
        session.backgrounded = True
        self._sessions[session.id] = session
        session.when_ended().addCallback(self._ended)

    def _ended(self, session: ProcessSession) -> None:
        if session.id not in self._sessions:
            return
        self._expiries[session.id] = self._clock.callLater(self._ttl, self.remove, session.id)
        finished = [s for s in self._sessions.values() if not s.running]
        for old in finished[: max(0, len(finished) - self._max_finished)]:
            self.remove(old.id)

    def get(self, agent_id: str, session_id: str) -> ProcessSession | None:
        """The agent's session with that id (another agent's is invisible)."""
        session = self._sessions.get(session_id)
        return session if session is not None and session.agent_id == agent_id else None

    def for_agent(self, agent_id: str) -> list[ProcessSession]:
        """The agent's sessions, oldest first."""
        return [s for s in self._sessions.values() if s.agent_id == agent_id]

    def remove(self, session_id: str) -> None:
        """Forget a session."""
        self._sessions.pop(session_id, None)
        expiry = self._expiries.pop(session_id, None)
        if expiry is not None and expiry.active():
            expiry.cancel()

    def stop_all(self) -> list[Deferred[ProcessSession]]:
        """Terminate every running session and forget all (gateway shutdown); wait on
        the result."""
        running = [s for s in self._sessions.values() if s.running]
        running += [s for s in self._foreground if s.running and s not in running]
        for session_id in list(self._sessions):
            self.remove(session_id)
        for s in running:
            s.terminate()
        return [s.when_ended() for s in running]


__all__ = ["SHELL_FAILURES", "OutputBuffer", "ProcessRegistry", "ProcessSession", "shell_argv"]
