"""Automatic session resets (``session.reset``, ``resetByType``, ``resetByChannel``).

OpenClaw's rules, evaluated when a user message arrives for a session (never on
a timer):

* the policy: a ``resetByChannel`` entry for the message's channel wins
  outright; otherwise ``resetByType[<type>]`` over ``session.reset``, field by
  field. A type entry without ``mode`` takes the base mode (unless that is
  ``none``), else ``daily``; a base without ``mode`` is ``daily``; nothing
  configured is ``none``. ``atHour`` defaults to 4.
* the type of a key: ``thread`` for ``...:thread:<id>``, ``group`` for keys with
  ``:group:`` or ``:channel:``, else ``direct`` (every HTTP and WebSocket
  session of this gateway unless the client names such a key).
* stale when ``daily`` and the session started before the latest ``atHour``
  boundary (local time of the gateway host), or when ``idleMinutes`` is set
  (in ``idle`` mode, and in ``daily`` mode as a second limit) and the last user
  message is older than that. Whichever expires first is the reason.

A row's ``sessionStartedAt`` (when its sessionId began) and
``lastInteractionAt`` (the last user message) decide; ``updatedAt`` (any write,
the end of a turn included) does not. Rows written before these fields existed
fall back to ``updatedAt`` for the start, and to the start for the last
message. Times in the future are ignored the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from attrs import frozen

from openclaw.config.model import ResetMode, SessionConfig, SessionResetConfig

ResetType = Literal["direct", "group", "thread"]
StaleReason = Literal["daily", "idle"]

#: OpenClaw's ``session.reset.atHour`` default.
DEFAULT_AT_HOUR = 4
#: Row fields: when the current sessionId started, and the last user message.
STARTED_AT = "sessionStartedAt"
LAST_INTERACTION_AT = "lastInteractionAt"
_GROUP_MARKERS = (":group:", ":channel:")


@frozen
class ResetPolicy:
    """The policy one session is held to (resolved from the config)."""

    mode: ResetMode = "none"
    at_hour: int = DEFAULT_AT_HOUR
    #: None or 0: no idle limit.
    idle_minutes: int | None = None

    @property
    def active(self) -> bool:
        """False for ``none``: the session is never reset automatically."""
        return self.mode != "none"


NO_RESET = ResetPolicy()


def reset_type(session_key: str) -> ResetType:
    """``thread``, ``group`` or ``direct``, from the key as OpenClaw reads it."""
    lowered = session_key.strip().lower()
    marker = lowered.rfind(":thread:")
    if marker != -1 and lowered[marker + len(":thread:") :].strip():
        return "thread"
    if any(m in lowered for m in _GROUP_MARKERS):
        return "group"
    return "direct"


def resolve_policy(config: SessionConfig, session_key: str, channel: str | None) -> ResetPolicy:
    """The policy for ``session_key`` when a message comes in on ``channel``."""
    override = config.reset_by_channel.get((channel or "").strip().lower())
    base: SessionResetConfig | None = override if override is not None else config.reset
    typed = None if override is not None else config.reset_by_type.get(reset_type(session_key))
    if base is None and typed is None:
        return NO_RESET
    mode: ResetMode
    if typed is not None:
        inherited = base.mode if base is not None and base.mode != "none" else None
        mode = typed.mode or inherited or "daily"
    else:
        assert base is not None
        mode = base.mode or "daily"
    at_hour = _first(typed, base, "at_hour")
    idle = _first(typed, base, "idle_minutes")
    return ResetPolicy(
        mode=mode,
        at_hour=DEFAULT_AT_HOUR if at_hour is None else at_hour,
        idle_minutes=idle,
    )


def _first(
    typed: SessionResetConfig | None, base: SessionResetConfig | None, name: str
) -> int | None:
    for source in (typed, base):
        value = getattr(source, name) if source is not None else None
        if value is not None:
            return int(value)
    return None


def daily_boundary_ms(now_ms: int, at_hour: int, tz: tzinfo | None = None) -> int:
    """The latest ``at_hour``:00 at or before ``now_ms`` in ``tz`` (None: the
    machine's local time zone), in epoch milliseconds."""
    if tz is None:
        now = datetime.fromtimestamp(now_ms / 1000)  # naive local time
    else:
        now = datetime.fromtimestamp(now_ms / 1000, tz)
    boundary = now.replace(hour=at_hour, minute=0, second=0, microsecond=0)
    if boundary > now:
        day_before = now.date() - timedelta(days=1)
        boundary = boundary.replace(
            year=day_before.year, month=day_before.month, day=day_before.day
        )
    return int(boundary.timestamp() * 1000)


def _timestamp(value: Any, now_ms: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value or value < 0 or value > now_ms:  # NaN, negative, future
        return None
    return int(value)


def lifecycle(raw: Mapping[str, Any], now_ms: int) -> tuple[int, int]:
    """``(sessionStartedAt, lastInteractionAt)`` of a row, with the fallbacks
    for rows that predate them."""
    updated = _timestamp(raw.get("updatedAt"), now_ms) or 0
    started = _timestamp(raw.get(STARTED_AT), now_ms)
    if started is None:
        started = updated
    last = _timestamp(raw.get(LAST_INTERACTION_AT), now_ms)
    return started, started if last is None else last


def stale_reason(
    policy: ResetPolicy, raw: Mapping[str, Any], now_ms: int, tz: tzinfo | None = None
) -> StaleReason | None:
    """Why the session of row ``raw`` must start over now (None: it is fresh)."""
    if not policy.active:
        return None
    started, last = lifecycle(raw, now_ms)
    daily_at = daily_boundary_ms(now_ms, policy.at_hour, tz) if policy.mode == "daily" else None
    idle_until = (
        last + policy.idle_minutes * 60_000
        if policy.idle_minutes is not None and policy.idle_minutes > 0
        else None
    )
    stale_daily = daily_at is not None and started < daily_at
    stale_idle = idle_until is not None and now_ms > idle_until
    if stale_daily and stale_idle:
        assert daily_at is not None and idle_until is not None
        return "daily" if daily_at <= idle_until else "idle"
    if stale_idle:
        return "idle"
    return "daily" if stale_daily else None


def stamp_interaction(raw: dict[str, Any], now_ms: int) -> bool:
    """Record a user message on row ``raw``: ``lastInteractionAt`` becomes now,
    and a row from before ``sessionStartedAt`` keeps the start it was judged
    by. True when the row changed."""
    before = (raw.get(STARTED_AT), raw.get(LAST_INTERACTION_AT))
    if _timestamp(raw.get(STARTED_AT), now_ms) is None:
        raw[STARTED_AT] = lifecycle(raw, now_ms)[0] or now_ms
    raw[LAST_INTERACTION_AT] = now_ms
    return (raw.get(STARTED_AT), raw.get(LAST_INTERACTION_AT)) != before
