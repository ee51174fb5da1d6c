"""Browser ``Origin`` checks shared by the HTTP side (mode ``none``) and the
WebSocket upgrade: one rule, so the two cannot drift apart.

An origin is acceptable when it is on the allow-list (or the list has ``*``),
when it is the gateway's own origin (matches ``Host``), or when a loopback page
talks to a loopback gateway from a loopback address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from urllib.parse import urlsplit

from openclaw.gateway.auth import is_loopback


def origin_key(value: str) -> str:
    """An origin as compared: trimmed, no trailing slash, lower-cased."""
    return value.strip().rstrip("/").lower()


def is_loopback_name(host: str) -> bool:
    """``localhost``, ``*.localhost`` or a loopback IP literal."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def origin_allowed(
    origin: str, host: str | None, client_address: str, allowed: Collection[str]
) -> bool:
    """Whether a browser ``origin`` may talk to this gateway (see the module doc).

    ``allowed`` holds :func:`origin_key` forms; ``host`` is the request's
    ``Host`` header; ``client_address`` the caller's address.
    """
    key = origin_key(origin)
    if "*" in allowed or key in allowed:
        return True
    try:
        parts = urlsplit(key)
        origin_host = parts.hostname
    except ValueError:
        return False
    if not origin_host or parts.scheme not in ("http", "https"):
        return False
    if host is not None and parts.netloc == host.strip().lower():
        return True
    return is_loopback_name(origin_host) and is_loopback(client_address)
