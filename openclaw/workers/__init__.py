"""Several gateway processes on one port: a supervising parent and its workers.

``twistd -n openclaw --workers N`` (or ``gateway.workers``) makes the process a
supervisor (:mod:`openclaw.workers.supervisor`): it binds the listeners once,
spawns N worker processes (:mod:`openclaw.workers.child`) that adopt those
sockets, and restarts, drains and reports on them as one group.
"""

from openclaw.workers.plan import (
    UNSAFE_FILE_STORE_ENV,
    WorkersError,
    resolve_worker_count,
    workers_problems,
)

__all__ = [
    "UNSAFE_FILE_STORE_ENV",
    "WorkersError",
    "resolve_worker_count",
    "workers_problems",
]
