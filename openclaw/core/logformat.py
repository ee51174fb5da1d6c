"""Log output for operators: flat JSON lines, and secret scrubbing that follows reloads.

* :func:`flat_json_observer` writes one JSON object per event with exactly
  ``time``, ``level``, ``logger``, ``message`` and the event's own fields (an
  access line's ``client``, ``status``...). None of Twisted's ``log_*``
  internals (format strings, logger objects, source instances) appear; a
  failure becomes a ``traceback`` field.
* :class:`SecretScrubber` masks every configured secret in each event before
  any later observer sees it (added to the global publisher first), and can
  be told the secrets of a reloaded config: an old token stays masked as well.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import FileLogObserver, ILogObserver, LogEvent, formatEvent
from zope.interface import implementer

from openclaw.core.secret_values import SecretValues
from openclaw.core.textguard import scrub_text

_SCALARS = (str, int, float, bool, type(None))


def flat_event(event: LogEvent) -> dict[str, Any]:
    """The event as one flat JSON-able object."""
    when = event.get("log_time")
    stamp = (
        datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if isinstance(when, int | float)
        else None
    )
    level = event.get("log_level")
    out: dict[str, Any] = {
        "time": stamp,
        "level": getattr(level, "name", "info"),
        "logger": _logger_name(event.get("log_namespace")),
        "message": scrub_text(formatEvent(event)),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in out or key in ("format", "message", "isError"):
            continue
        out[key] = _jsonable(value)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            out["traceback"] = scrub_text(failure.getTraceback())
        except Exception:
            out["traceback"] = "(unformattable traceback)"
    return out


def _logger_name(namespace: object) -> str:
    """The event's namespace; Twisted's internal ``log_legacy`` (events from
    ``twisted.python.log``) is shown as ``twisted``."""
    if not isinstance(namespace, str) or not namespace:
        return "-"
    return "twisted" if namespace == "log_legacy" else namespace


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, _SCALARS):
        return scrub_text(value) if isinstance(value, str) else value
    if isinstance(value, bytes):
        return scrub_text(value.decode("utf-8", "replace"))
    if isinstance(value, list | tuple) and all(isinstance(v, _SCALARS) for v in value):
        return [_jsonable(v) for v in value]
    return scrub_text(str(value))


def format_json_line(event: LogEvent) -> str:
    """One line: the flat object, then a newline."""
    return json.dumps(flat_event(event), ensure_ascii=False, separators=(",", ":")) + "\n"


def flat_json_observer(out: IO[Any]) -> FileLogObserver:
    """A file observer writing :func:`format_json_line` lines (a
    ``fileLogObserverFactory`` for ``twist``, and twistd's ``--logger``)."""
    return FileLogObserver(out, format_json_line)


#: What a log line must not carry raw from a client: C0 and C1 controls and DEL
#: (terminal escapes, forged line breaks), Unicode line separators and bidi
#: overrides (lines that read differently than they are).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with control characters written as ``\\xNN`` / ``\\uNNNN``."""
    if text.isprintable():
        return text
    return _UNSAFE.sub(_escaped, text)


@implementer(ILogObserver)
class SecretScrubber:
    """Masks configured secrets in each event, in place, for the observers after
    it, and escapes control characters in its fields: any field may carry text
    a client chose (a User-Agent, a run id, a WebSocket client name), and a
    raw escape sequence would recolour, retitle or clear the terminal of an
    operator reading the log, or forge a line."""

    def __init__(self, secrets: SecretValues) -> None:
        self._secrets = secrets

    def add(self, secrets: SecretValues) -> None:
        """Mask these too (a reload: rotated-out secrets stay masked)."""
        self._secrets = self._secrets.merged(secrets)

    def __call__(self, event: LogEvent) -> None:
        """Rewrite ``event`` when it carries a secret (never raises)."""
        try:
            masked = self._secrets.redact_event(event)
        except Exception:
            masked = {
                k: v for k, v in event.items() if k in ("log_level", "log_namespace", "log_time")
            }
            masked["log_format"] = "(log event dropped: it could not be redacted)"
        if masked is not event:
            event.clear()
            event.update(masked)
        # Fields the format string does not use still reach a JSON line.
        secrets = self._secrets
        for key, value in list(event.items()):
            if key.startswith("log_") or not isinstance(value, str):
                continue
            event[key] = self._clean(value)
        # A record from a worker (jsonFileLogObserver) carries each format field's
        # text again in log_flattened, which formatEvent prefers to the fields.
        flattened = event.get("log_flattened")
        if isinstance(flattened, dict):
            if secrets:
                flattened = secrets.redact_flattened(flattened)
            event["log_flattened"] = {
                k: self._clean(v) if isinstance(v, str) else v for k, v in flattened.items()
            }

    def _clean(self, value: str) -> str:
        secrets = self._secrets
        if secrets and secrets.contains(value):
            value = secrets.redact(value)
        return escape_controls(value)


def json_logger() -> Callable[[LogEvent], None]:
    """For ``twistd --logger openclaw.core.logformat.json_logger``: JSON lines on stdout."""
    return flat_json_observer(sys.stdout)


__all__ = [
    "SecretScrubber",
    "escape_controls",
    "flat_event",
    "flat_json_observer",
    "format_json_line",
    "json_logger",
]
