"""How many workers, and whether this configuration may run several.

Several workers need a session store every process can share. The file store
cannot be shared (each process keeps the session index in memory and rewrites
``sessions.json`` from it, and lanes are per process), so with it the gateway
refuses to start more than one worker and names ``session.store: "redis"``.
``OPENCLAW_WORKERS_UNSAFE_FILE_STORE=1`` lifts the refusal for benchmarks and
the supervisor's own tests only: sessions are then NOT shared between workers
and index entries written by one worker are lost at the next flush of another.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

from openclaw.config.model import Config

#: Test/benchmark escape hatch (see the module docstring). Never for real use.
UNSAFE_FILE_STORE_ENV = "OPENCLAW_WORKERS_UNSAFE_FILE_STORE"

#: Listener kinds a worker can adopt from the parent.
ADOPTABLE_KINDS = ("tcp", "tcp6", "unix")


class WorkersError(ValueError):
    """A ``--workers`` / ``gateway.workers`` value that cannot be used."""


def resolve_worker_count(
    cli_value: str | None,
    configured: int | str,
    cpu_count: Callable[[], int | None] = os.cpu_count,
) -> int:
    """``--workers`` beats ``gateway.workers``; ``auto`` is the number of cores."""
    raw: int | str = cli_value if cli_value is not None else configured
    text = str(raw).strip().lower()
    if text == "auto":
        return max(1, cpu_count() or 1)
    if not text.isdigit() or int(text) < 1:
        raise WorkersError(f"--workers must be a whole number >= 1 or auto, got {str(raw)!r}")
    return int(text)


def shares_sessions(config: Config) -> bool:
    """Whether the configured session store can be shared by several processes.

    The file store cannot; the Redis store (``session.store: "redis"``) is made for it.
    """
    return config.session.store == "redis"


def workers_problems(
    config: Config, count: int, endpoints: Sequence[str], env: Mapping[str, str]
) -> list[str]:
    """One line per reason ``count`` workers cannot run with this config."""
    if count <= 1:
        return []
    problems: list[str] = []
    if not shares_sessions(config) and env.get(UNSAFE_FILE_STORE_ENV) != "1":
        problems.append(
            f"{count} workers need a session store all of them share: the file store "
            'belongs to one process; set session.store: "redis" (with gateway.redis.url) '
            "or run one worker"
        )
    for description in endpoints:
        kind = description.partition(":")[0]
        if kind not in ADOPTABLE_KINDS:
            problems.append(
                f"--workers cannot share the listener {description!r}: workers adopt "
                "tcp, tcp6 and unix listeners only (terminate TLS in a reverse proxy)"
            )
    return problems
