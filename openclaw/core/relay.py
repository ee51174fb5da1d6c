"""The seam between one process' runs and the runs of the others.

A gateway alone sees every run it has to report: :class:`LocalRelay` (the
default) knows no other process. With a shared backend (the Redis store),
a :class:`RunRelay` carries what the WebSocket layer needs across
processes: events of runs to clients watching their session elsewhere, how
a run ended (``agent.wait``), aborts (``chat.abort``), and whether a session
is busy anywhere (``sessions.reset``). Only plain values cross it (run ids,
session keys, JSON-ready mappings), so any layer may implement it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from twisted.internet.defer import Deferred, succeed


class RelaySink(Protocol):
    """What a relay delivers to this process (the WebSocket run hub)."""

    def remote_events(self, session_key: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Events of a run another process runs, for local clients of ``session_key``."""
        ...

    def remote_finished(self, run_id: str, outcome: Mapping[str, Any]) -> None:
        """A run another process ran has ended (``agent.wait``'s answer)."""
        ...

    def remote_abort(self, session_key: str | None, run_id: str | None) -> Sequence[str]:
        """Another process was asked to abort runs: abort the matching local
        ones; returns their ids."""
        ...


class RunRelay(Protocol):
    """Runs across processes (see the module docstring)."""

    def attach(self, sink: RelaySink) -> None:
        """Start delivering to ``sink``."""
        ...

    def detach(self) -> None:
        """Stop delivering (shutdown)."""
        ...

    def watch(self, session_key: str | None) -> None:
        """A local client follows ``session_key`` (None: every session)."""
        ...

    def unwatch(self, session_key: str | None) -> None:
        """The last local client of ``session_key`` (None: of every session) left."""
        ...

    def wants(self, session_key: str) -> bool:
        """Whether another process has clients following ``session_key``."""
        ...

    def publish(self, session_key: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Send events of a local run to the other processes' clients."""
        ...

    def run_started(self, run_id: str, session_key: str) -> None:
        """A local run started (other processes can abort it and wait for it)."""
        ...

    def run_finished(self, run_id: str, session_key: str, outcome: Mapping[str, Any]) -> None:
        """A local run ended with ``outcome`` (kept for others' ``agent.wait``)."""
        ...

    def outcome(self, run_id: str) -> Deferred[Mapping[str, Any] | None]:
        """How a run of another process ended, if it has (None: unknown or running)."""
        ...

    def abort(self, session_key: str | None, run_id: str | None) -> Deferred[Sequence[str]]:
        """Ask the other processes to abort matching runs; fires with their ids."""
        ...

    def busy_elsewhere(self, session_key: str) -> Deferred[bool]:
        """Whether another process runs a turn on ``session_key`` now."""
        ...

    def claim(self, run_id: str) -> Deferred[bool]:
        """Claim an idempotency key for a run here: False when another process
        already started (or finished) the run of that key."""
        ...


@runtime_checkable
class ProvidesRunRelay(Protocol):
    """A session store that comes with a relay (the Redis store)."""

    @property
    def run_relay(self) -> RunRelay:
        """The relay of the processes sharing this store."""
        ...


class LocalRelay:
    """The single-process relay: nobody else to tell or ask."""

    def attach(self, sink: RelaySink) -> None:
        """Nothing ever arrives."""

    def detach(self) -> None:
        """Nothing to stop."""

    def watch(self, session_key: str | None) -> None:
        """Nobody else to tell."""

    def unwatch(self, session_key: str | None) -> None:
        """Nobody else to tell."""

    def wants(self, session_key: str) -> bool:
        return False

    def publish(self, session_key: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Nobody else to send to."""

    def run_started(self, run_id: str, session_key: str) -> None:
        """Nobody else to tell."""

    def run_finished(self, run_id: str, session_key: str, outcome: Mapping[str, Any]) -> None:
        """Nobody else to tell."""

    def outcome(self, run_id: str) -> Deferred[Mapping[str, Any] | None]:
        return succeed(None)

    def abort(self, session_key: str | None, run_id: str | None) -> Deferred[Sequence[str]]:
        return succeed(())

    def busy_elsewhere(self, session_key: str) -> Deferred[bool]:
        return succeed(False)

    def claim(self, run_id: str) -> Deferred[bool]:
        return succeed(True)


class LockoutSink(Protocol):
    """The failed-auth limiter, as the other instances reach it."""

    def lock(self, key: str, for_ms: int) -> None:
        """Lock ``key`` out for ``for_ms`` (its failures across instances reached the limit)."""
        ...

    def clear(self, key: str) -> None:
        """``key`` authenticated somewhere: forget its failures and lockout."""
        ...


class AuthPeers(Protocol):
    """Failed authentications counted across instances (one budget per client)."""

    def attach_limiter(self, sink: LockoutSink) -> None:
        """Deliver lockouts decided elsewhere to ``sink``."""
        ...

    def failed(self, key: str, *, window_ms: int, max_attempts: int, lockout_ms: int) -> None:
        """Count a failure of ``key``; at ``max_attempts`` within the window every
        instance locks it out for ``lockout_ms``."""
        ...

    def succeeded(self, key: str) -> None:
        """``key`` authenticated after failing: clear it everywhere."""
        ...


@runtime_checkable
class ProvidesAuthPeers(Protocol):
    """A session store whose instances share the failed-auth budget (Redis)."""

    @property
    def auth_peers(self) -> AuthPeers:
        """The instances' shared failed-auth counter."""
        ...


class ApprovalSink(Protocol):
    """The exec approval broker, as the other instances reach it."""

    def remote_requested(self, record: Mapping[str, Any]) -> None:
        """Another instance's command waits for an operator (show it to ours)."""
        ...

    def remote_resolved(self, approval_id: str, decision: str, ts: int, source: str) -> None:
        """An approval was answered or withdrawn elsewhere (apply it if it is ours)."""
        ...


class ApprovalRelay(Protocol):
    """Exec approvals across instances: one shared pending record per request,
    resolved once (the first answer wins) from any instance."""

    def attach_approvals(self, sink: ApprovalSink) -> None:
        """Deliver other instances' requests and resolutions to ``sink``."""
        ...

    def request(self, approval_id: str, record: Mapping[str, Any]) -> Deferred[int]:
        """Share a pending request; fires with the number of operator clients
        connected to the other live instances."""
        ...

    def resolve(self, approval_id: str, decision: str, ts: int, source: str) -> Deferred[bool]:
        """Answer (or withdraw) a request: True when this call removed the shared
        record (it won), False when it was already resolved, withdrawn or unknown."""
        ...

    def pending(self) -> Deferred[Sequence[Mapping[str, Any]]]:
        """Every instance's requests still waiting."""
        ...

    def operators(self, count: int) -> None:
        """How many clients able to answer are connected to this instance."""
        ...


@runtime_checkable
class ProvidesApprovalRelay(Protocol):
    """A session store whose instances share exec approvals (Redis)."""

    @property
    def approval_relay(self) -> ApprovalRelay:
        """The instances' shared pending approvals."""
        ...
