"""The user's time zone and the time as OpenClaw shows it.

The system prompt gives the date in ``agents.defaults.userTimezone`` (a
stable prompt cache) and ``session_status`` gives the time: both read the
zone here.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo


def resolve_timezone(name: str | None) -> tzinfo:
    """The IANA zone ``name``; the host's local zone when None or unknown."""
    if name:
        # Imported here: only a configured zone needs it (0.2 MB idle, issue 16).
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    local = datetime.now().astimezone().tzinfo
    return local if local is not None else UTC


def zone_name(zone: tzinfo) -> str:
    """``Europe/Berlin`` for an IANA zone, else what the zone calls itself."""
    return getattr(zone, "key", None) or str(zone)


def format_user_time(now: float, timezone: str | None) -> str:
    """The time as OpenClaw's status card shows it, with the zone:
    ``Monday, December 7th, 2026 - 10:34 PM (Europe/Berlin)``."""
    zone = resolve_timezone(timezone)
    local = datetime.fromtimestamp(now, tz=zone)
    day = local.day
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    clock = f"{local.hour % 12 or 12}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"
    return f"{local.strftime('%A, %B')} {day}{suffix}, {local.year} - {clock} ({zone_name(zone)})"
