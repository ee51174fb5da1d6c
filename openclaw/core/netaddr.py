"""Client addresses as limiter keys: one spelling per address.

Budgets (the failed-auth limiter, per-address connection caps) are kept per
address string, so two spellings of one address must become one key:
``::ffff:9.9.9.9`` is ``9.9.9.9``, ``2001:DB8:0::1`` is ``2001:db8::1``, and a
forwarded hop written with a port (``1.2.3.4:5555``, ``[2001:db8::1]:443``) or
in brackets is the bare address.

A value that is not an address at all never borrows another one's identity:
it becomes the key ``unparseable:<value>`` (cut and made printable), which is
not loopback, so it is never exempt from a limit. Refusing such requests was
the alternative; a key of its own keeps a misconfigured proxy working while
still counting every failure behind it.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from openclaw.core.memo import cache_short_text

#: Prefix of the key an unparseable address gets.
UNPARSEABLE_PREFIX: Final = "unparseable:"
#: Characters of an unparseable value kept in its key.
MAX_UNPARSEABLE_CHARS: Final = 64


#: Longer values (no address is) are parsed every time rather than remembered.
_CACHED_CHARS: Final = 80
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


# The same few peers send every request (several lookups each): parse once.
@cache_short_text(_CACHED_CHARS, maxsize=4096)
def parse_address(value: str) -> _IP | None:
    """The IP address ``value`` names (ports, brackets, zone ids tolerated), or None.

    IPv4-mapped IPv6 addresses are returned as their IPv4 address.
    """
    text = value.strip()
    if not text:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        rest = text[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port.isdigit():
            return None
        text = host
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return mapped
        if ip.scope_id is not None:
            ip = ipaddress.IPv6Address(text.split("%", 1)[0])
    return ip


@cache_short_text(_CACHED_CHARS, maxsize=4096)
def normalize_address(value: str) -> str:
    """The canonical key for ``value``: an address in its compressed lower-case
    form (IPv4 for IPv4-mapped), ``unix`` kept, else ``unparseable:<value>``."""
    if value == "unix":
        return value
    ip = parse_address(value)
    if ip is not None:
        return str(ip)
    shown = "".join(ch if ch.isprintable() else "?" for ch in value.strip()[:MAX_UNPARSEABLE_CHARS])
    return UNPARSEABLE_PREFIX + shown


def is_unparseable(key: str) -> bool:
    """True for the key of a value that was not an address."""
    return key.startswith(UNPARSEABLE_PREFIX)
