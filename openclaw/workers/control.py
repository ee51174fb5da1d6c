"""The pipes between the supervisor and a worker, and the words said on them.

File descriptors of a worker process (set up by the parent's ``childFDs``):

- 0: control, parent -> worker (``group ready``, ``group stopping``);
- 1, 2: the parent's own stdout/stderr (interpreter tracebacks before logging starts);
- 3: control, worker -> parent (``ready``, ``reloaded``, ``config ...``);
- 4: log events, worker -> parent, one JSON record per line (``jsonFileLogObserver``),
  which the parent publishes to its own observers (so ``--logfile``, JSON logs
  and the like apply to every worker);
- 5: the group's config, parent -> worker, once (a :class:`GroupConfig`, then end
  of file): a worker never reads the config file at start, so a restarted worker
  runs what its siblings run, not an edit no reload accepted;
- 6 and up: the listening sockets, in the order of the parent's endpoints.

When fd 0 reaches end of file the parent is gone: the worker stops.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from attrs import field, frozen
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

CONTROL_IN_FD = 0
CONTROL_OUT_FD = 3
LOG_FD = 4
CONFIG_FD = 5
FIRST_LISTEN_FD = 6

#: A worker's exit status when the config it was handed is refused (sysexits'
#: EX_CONFIG): the supervisor does not restart it in a tight loop.
EXIT_CONFIG_REFUSED = 78

#: Worker -> parent: listening and serving.
READY = b"ready"
#: Worker -> parent: it reloaded its config (``gateway.reload`` over the
#: WebSocket); the parent asks every other worker to reload too.
RELOADED = b"reloaded"
#: Worker -> parent: ``config <base64 JSON>``, the config file text a reload it
#: accepted read (see :func:`config_report`); the parent hands it to restarted workers.
CONFIG = b"config"
#: Parent -> worker: every worker is ready (sent again to restarted workers).
GROUP_READY = b"group ready"
#: Parent -> worker: the group is shutting down.
GROUP_STOPPING = b"group stopping"


@frozen
class GroupConfig:
    """The config a group of workers runs, as file text (``${VAR}`` still to substitute).

    ``started`` is what the group was started with: its restart-only settings
    (listeners, session store, ...) are the ones in effect. ``current`` is the
    text of the last reload the workers accepted (``started`` until one). A
    text of None means no config file (the defaults).
    """

    #: The config file (None: none was found, and a reload searches again).
    path: str | None
    started: str | None = field(repr=False)
    current: str | None = field(repr=False)

    def encode(self) -> bytes:
        """What the parent writes to a new worker's ``CONFIG_FD``."""
        document = {"path": self.path, "started": self.started, "current": self.current}
        return json.dumps(document).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> GroupConfig:
        """Read :meth:`encode`'s output; ValueError when it is not that."""
        document = _json_object(data)
        return cls(
            path=_optional_text(document, "path"),
            started=_optional_text(document, "started"),
            current=_optional_text(document, "current"),
        )


def config_report(path: str | None, text: str | None) -> bytes:
    """The line a worker says after a reload it accepted: the file and its text.

    Base64, so a newline in the text does not end the line.
    """
    document = json.dumps({"path": path, "text": text}).encode("utf-8")
    return CONFIG + b" " + base64.b64encode(document)


def read_config_report(line: bytes) -> tuple[str | None, str | None]:
    """``(path, text)`` of a :func:`config_report` line; ValueError when it is not one."""
    word, _, payload = line.partition(b" ")
    if word != CONFIG:
        raise ValueError("not a config report")
    try:
        data = base64.b64decode(payload, validate=True)
    except binascii.Error as e:
        raise ValueError(f"not base64: {e}") from None
    document = _json_object(data)
    return _optional_text(document, "path"), _optional_text(document, "text")


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8: {e}") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


def _optional_text(document: dict[str, Any], key: str) -> str | None:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key}: not a string")
    return value


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
