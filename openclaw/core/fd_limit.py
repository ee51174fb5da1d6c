# -*- test-case-name: tests.test_fd_limit -*-
"""The open-file limit the gateway needs, raised at start when it can be.

Every client connection is a descriptor, and so is its upstream connection,
its transcript while a turn writes, and a tool's pipes. Below what
``gateway.maxConnections`` implies, accepting fails with EMFILE before the
connection cap can answer its clear 503, and turns fail opening their files.
A soft limit may be raised up to the hard one without privileges, as servers
commonly do; past the hard limit the operator has to act, so say so once.
"""

from __future__ import annotations

import resource
from collections.abc import Callable

#: Descriptors beyond two per connection: listeners, logs, the state lock,
#: transcripts and index writes, tools' pipes, the event loop's own.
FD_HEADROOM = 256

GetLimit = Callable[[int], tuple[int, int]]
SetLimit = Callable[[int, tuple[int, int]], None]


def descriptors_needed(max_connections: int) -> int:
    """Two per connection (the client's and its upstream's) plus headroom."""
    return 2 * max(max_connections, 0) + FD_HEADROOM


def ensure_fd_limit(
    needed: int,
    *,
    get: GetLimit = resource.getrlimit,
    set_: SetLimit = resource.setrlimit,
) -> tuple[int, str | None]:
    """Raise the soft ``RLIMIT_NOFILE`` towards ``needed`` (never above the hard
    limit, never down); the limit now, and a warning when it stays short."""
    soft, hard = get(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft, None
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        try:
            set_(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft >= needed:
        return soft, None
    return soft, (
        f"the open-file limit is {soft} (hard limit {hard}), below the {needed} that "
        f"gateway.maxConnections needs; connections past it are reset and turns fail "
        f"to open their files: raise it (ulimit -n, LimitNOFILE=) or lower maxConnections"
    )
