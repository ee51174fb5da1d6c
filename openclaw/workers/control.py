"""The pipes between the supervisor and a worker, and the words said on them.

File descriptors of a worker process (set up by the parent's ``childFDs``):

- 0: control, parent -> worker (``group ready``, ``group stopping``);
- 1, 2: the parent's own stdout/stderr (interpreter tracebacks before logging starts);
- 3: control, worker -> parent (``ready``, ``reloaded``);
- 4: log events, worker -> parent, one JSON record per line (``jsonFileLogObserver``),
  which the parent publishes to its own observers (so ``--logfile``, JSON logs
  and the like apply to every worker);
- 5 and up: the listening sockets, in the order of the parent's endpoints.

When fd 0 reaches end of file the parent is gone: the worker stops.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

CONTROL_IN_FD = 0
CONTROL_OUT_FD = 3
LOG_FD = 4
FIRST_LISTEN_FD = 5

#: Worker -> parent: listening and serving.
READY = b"ready"
#: Worker -> parent: it reloaded its config (``gateway.reload`` over the
#: WebSocket); the parent asks every other worker to reload too.
RELOADED = b"reloaded"
#: Parent -> worker: every worker is ready (sent again to restarted workers).
GROUP_READY = b"group ready"
#: Parent -> worker: the group is shutting down.
GROUP_STOPPING = b"group stopping"


class ControlLines(LineOnlyReceiver):
    """One control word per line; calls ``on_line`` and, at EOF, ``on_closed``."""

    delimiter = b"\n"
    MAX_LENGTH = 1024

    def __init__(
        self, on_line: Callable[[bytes], None], on_closed: Callable[[], None] | None = None
    ) -> None:
        self._on_line = on_line
        self._on_closed = on_closed

    def lineReceived(self, line: bytes) -> None:
        """Hand the word on, without surrounding blanks."""
        self._on_line(line.strip())

    def say(self, word: bytes) -> None:
        """Send one control word."""
        self.sendLine(word)  # type: ignore[no-untyped-call]  # Twisted: unannotated

    def connectionLost(self, reason: Failure | None = None) -> None:
        """The other side closed its end."""
        if self._on_closed is not None:
            self._on_closed()
