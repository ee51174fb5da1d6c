"""The file store's archive upkeep: ``resetArchiveRetention`` and
``maxDiskBytes`` applied to every agent's sessions directory, at start and
then periodically, on the store's IO threads.

Both delete archived transcripts only (see :mod:`.archive_retention` and
:mod:`.disk_budget`); one pass walks each directory for the retention first,
then for the budget. A directory still over its budget once its archives are
gone (its live sessions alone are that big) is reported once, and again only
after it has been under the budget.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from attrs import Factory, frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.sessions.archive_retention import (
    MAX_SWEEP_INTERVAL,
    SweepResult,
    sweep_directory,
    sweep_interval,
)
from openclaw.sessions.disk_budget import BudgetResult, DiskBudget, enforce_budget
from openclaw.sessions.transcript import archive_suffix
from openclaw.sessions.writes import WriteQueue

__all__ = ["ArchiveSweeper", "PassResult", "sweep_state"]

log = Logger()


@frozen
class PassResult:
    """One pass over every agent: the retention's result, and the budget's
    per agent where there is something to report (archives deleted or not
    deletable, an unreadable directory, or still over the budget)."""

    expired: SweepResult = Factory(SweepResult)
    budgets: tuple[tuple[str, BudgetResult], ...] = ()
    #: Agents whose directory is within the budget (or has none to keep).
    within: tuple[str, ...] = ()
    #: ``<state>/agents`` could not be read (no permission, not a directory).
    unreadable: bool = False


def sweep_state(
    state_dir: Path,
    cutoff_ms: int | None,
    budget: DiskBudget | None,
    stop: Callable[[], bool] = lambda: False,
) -> PassResult:
    """One pass over ``<state_dir>/agents/*/sessions`` (an IO thread's work):
    archives made before ``cutoff_ms`` are deleted, then each directory is
    held to ``budget``. None skips either."""
    try:
        agents = os.scandir(state_dir / "agents")
    except FileNotFoundError:
        return PassResult()
    except OSError:
        return PassResult(unreadable=True)
    cutoff = archive_suffix(cutoff_ms) if cutoff_ms is not None else None
    removed = failed = 0
    budgets: list[tuple[str, BudgetResult]] = []
    within: list[str] = []
    stopped = False
    with agents:
        for agent in agents:
            directory = Path(agent.path) / "sessions"
            if cutoff is not None:
                swept = sweep_directory(directory, cutoff, stop)
                removed += swept.removed
                failed += swept.failed
                stopped = swept.stopped
            if budget is not None and not stopped:
                kept = enforce_budget(directory, budget, stop)
                stopped = kept.stopped
                if (
                    kept.removed
                    or kept.failed
                    or kept.unreadable
                    or kept.used_bytes > budget.max_bytes
                ):
                    budgets.append((agent.name, kept))
                else:
                    within.append(agent.name)
            if stopped:
                break
    return PassResult(SweepResult(removed, failed, stopped), tuple(budgets), tuple(within))


class ArchiveSweeper:
    """Runs :func:`sweep_state` now and then every interval on the store's
    IO threads, and logs what it did."""

    def __init__(
        self,
        state_dir: Path,
        *,
        clock: IReactorTime,
        writes: WriteQueue,
        retention_seconds: float | None = None,
        budget: DiskBudget | None = None,
    ) -> None:
        """
        :param writes: the store's write queue: passes run on its IO threads
            and the store's ``close`` waits for one in progress.
        :param retention_seconds: delete archives older than this (None: keep).
        :param budget: hold each agent's sessions directory to this (None: no budget).
        """
        self._state_dir = state_dir
        self._retention = retention_seconds
        self._budget = budget
        self._clock = clock
        self._writes = writes
        self._sweeping: Deferred[PassResult] | None = None
        #: Agents reported over budget, not reported again until back under.
        self._over: set[str] = set()
        #: Set from the reactor, read by the pass on its IO thread.
        self._stopping = threading.Event()
        self._loop = LoopingCall(self.sweep)
        self._loop.clock = clock

    @property
    def interval(self) -> float:
        """Seconds between passes: a quarter of the retention, at most 10 minutes."""
        if self._retention is None:
            return MAX_SWEEP_INTERVAL
        return sweep_interval(self._retention)

    def start(self) -> None:
        """Sweep now and then every interval (not again once stopped)."""
        if not self._loop.running and not self._stopping.is_set():
            self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        """No more passes; one in progress ends at its next deletion."""
        self._stopping.set()
        if self._loop.running:
            self._loop.stop()

    def sweep(self) -> Deferred[PassResult] | None:
        """One pass (skipped while the previous one still runs)."""
        if self._sweeping is not None:
            return None
        cutoff = None
        if self._retention is not None:
            cutoff = int((self._clock.seconds() - self._retention) * 1000)
        sweeping = self._sweeping = self._writes.run(
            sweep_state, self._state_dir, cutoff, self._budget, self._stopping.is_set
        )
        sweeping.addCallback(self._swept)
        sweeping.addErrback(self._failed)
        return sweeping

    def _swept(self, result: PassResult) -> PassResult:
        """Log what a pass did (one line per kind of outcome)."""
        self._sweeping = None
        if result.unreadable:
            log.warn(
                "cannot read {path}: archived transcripts are neither expired nor held "
                "to the disk budget until it can be read",
                path=self._state_dir / "agents",
            )
        expired = result.expired
        if expired.removed:
            log.info(
                "deleted {count} archived transcripts older than {seconds:.0f} s",
                count=expired.removed,
                seconds=self._retention,
            )
        if expired.failed:
            log.warn(
                "could not delete {count} expired archived transcripts (not files, or no "
                "permission); the next sweep tries again",
                count=expired.failed,
            )
        self._over.difference_update(result.within)
        for agent, kept in result.budgets:
            self._report_budget(agent, kept)
        return result

    def _report_budget(self, agent: str, kept: BudgetResult) -> None:
        """Log one agent's budget cleanup; an agent still over the budget with
        nothing left to delete is warned about once until it is back under."""
        budget = self._budget
        assert budget is not None  # only a pass with a budget reports one
        if kept.unreadable:
            log.warn(
                "agent {agent}: cannot read its sessions directory; the disk budget is "
                "not applied to it",
                agent=agent,
            )
            return
        if kept.removed:
            log.info(
                "agent {agent}: sessions over maxDiskBytes ({max_bytes} bytes); deleted "
                "{count} oldest archived transcripts ({freed} bytes), {used} bytes now",
                agent=agent,
                max_bytes=budget.max_bytes,
                count=kept.removed,
                freed=kept.freed_bytes,
                used=kept.used_bytes,
            )
        if kept.failed:
            log.warn(
                "agent {agent}: could not delete {count} archived transcripts for "
                "maxDiskBytes (no permission?); the next sweep tries again",
                agent=agent,
                count=kept.failed,
            )
        if kept.stopped or kept.failed:
            return  # archives remain: not (yet) the live sessions' doing
        if kept.used_bytes > budget.max_bytes:
            if agent not in self._over:
                self._over.add(agent)
                log.warn(
                    "agent {agent}: sessions use {used} bytes, over "
                    "session.maintenance.maxDiskBytes ({max_bytes}), with no archived "
                    "transcripts left to delete; live sessions are never deleted for the "
                    "budget: raise maxDiskBytes, or delete sessions you no longer need",
                    agent=agent,
                    used=kept.used_bytes,
                    max_bytes=budget.max_bytes,
                )
        else:
            self._over.discard(agent)

    def _failed(self, failure: Failure) -> PassResult:
        """A pass that raised: logged; the next one runs as usual."""
        self._sweeping = None
        log.failure("could not sweep archived transcripts", failure)
        return PassResult()
