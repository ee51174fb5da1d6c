# -*- test-case-name: tests.test_model_health -*-
"""Cooldowns: models and providers that just failed wait before the next turn tries them.

OpenClaw (``concepts/model-failover.md``, "Cooldowns" and "Billing disables")
remembers failures per auth profile; this gateway has one credential per
provider, so a provider is its one profile. What it keeps:

- a rate limit, a timeout or an unknown model cools down *that model*: 30 s,
  doubled by each further rate limit (at most a day), or the upstream's
  ``Retry-After`` when that is longer; 30 s, 1 min, then 5 min for the others;
- an authentication or permission failure cools down the whole provider (30 s,
  1 min, 5 min);
- a billing failure disables the provider for 10 min, doubled each time (at
  most a day);
- a failure while a cooldown runs (a turn in flight, a strict turn) counts
  once with it; the next failure after it ends starts the next, longer one;
  counts restart after a day without a failure, and a model answering clears
  its model and provider.

Overloaded servers, 5xx answers, refused requests and context overflows leave
no trace, as in OpenClaw. Cooldowns only reorder a turn's candidates (see
:class:`openclaw.agents.fallback.FallbackChain`); they never refuse a turn. The
state is this process's own: it is lost on restart and not shared between
workers or instances.
"""

from __future__ import annotations

from typing import Final

from attrs import define, frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from openclaw.agents.types import FailureKind

#: Failures that cool down the model that failed (other models of the provider
#: may still answer).
MODEL_SCOPED: Final = frozenset(
    {FailureKind.RATE_LIMIT, FailureKind.TIMEOUT, FailureKind.MODEL_NOT_FOUND}
)
#: Failures of the provider's credential: every model of it cools down.
#: A 403 is not OpenClaw's high-confidence "key revoked" (it may be one model
#: the account lacks), so it gets the short steps, not the 10 min disable.
PROVIDER_SCOPED: Final = frozenset({FailureKind.AUTH, FailureKind.PERMISSION})
#: A billing failure disables the provider for longer: 10 min, doubling up to a day.
_DISABLE_MAX_SECONDS: Final = 86_400.0

log = Logger()

FAILURE_WINDOW_SECONDS: Final = 86_400.0
_DISABLE_BASE_SECONDS: Final = 600.0
_RATE_LIMIT_BASE_SECONDS: Final = 30.0
_RATE_LIMIT_MAX_SECONDS: Final = 86_400.0


def regular_cooldown_seconds(count: int) -> float:
    """30 s for a first failure, 1 min for a second, then 5 min."""
    return 30.0 if count <= 1 else 60.0 if count == 2 else 300.0


def doubling_seconds(count: int, base: float, cap: float) -> float:
    """``base`` doubled for each failure after the first, at most ``cap``."""
    return min(cap, base * 2.0 ** min(max(count, 1) - 1, 32))


@define
class _Record:
    """The failures of one model or one provider."""

    count: int = 0
    rate_limits: int = 0
    until: float = 0.0
    reason: str = ""
    last_failure: float = 0.0
    disables: int = 0


@frozen
class Cooldown:
    """Why a model should wait, and until when (the clock's seconds)."""

    until: float
    reason: str


class ModelHealth:
    """Remembers recent failures per ``provider/model`` and per provider."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._models: dict[str, _Record] = {}
        self._providers: dict[str, _Record] = {}

    def cooldown(self, model_ref: str) -> Cooldown | None:
        """The cooldown ``model_ref`` is in now, the longer of its own and its
        provider's; None when it may be tried at once."""
        now = self._clock.seconds()
        found: Cooldown | None = None
        for record in (self._models.get(model_ref), self._providers.get(_provider(model_ref))):
            if (
                record is not None
                and record.until > now
                and (found is None or record.until > found.until)
            ):
                found = Cooldown(record.until, record.reason)
        return found

    def failed(
        self, model_ref: str, kind: FailureKind, retry_after: float | None = None
    ) -> Cooldown | None:
        """Record a failed call; returns the cooldown it started, if any.

        A rate limit's ``Retry-After`` (seconds) lengthens its cooldown, within
        the rate-limit cap.
        """
        if kind in MODEL_SCOPED:
            record = self._models.setdefault(model_ref, _Record())
        elif kind in PROVIDER_SCOPED or kind is FailureKind.BILLING:
            record = self._providers.setdefault(_provider(model_ref), _Record())
        else:
            return None
        now = self._clock.seconds()
        if record.until > now:
            # A cooldown is running: the same outage, seen by turns that were
            # in flight or are strict. It counts once, not once per turn (a
            # burst of 429s must not double the next cooldown eight times);
            # a longer Retry-After still extends it.
            record.last_failure = now
            if kind is FailureKind.RATE_LIMIT and retry_after is not None:
                record.until = max(record.until, now + min(retry_after, _RATE_LIMIT_MAX_SECONDS))
            return Cooldown(record.until, record.reason)
        if now - record.last_failure > FAILURE_WINDOW_SECONDS:
            record.count = record.rate_limits = 0
            record.disables = 0
        record.count += 1
        record.last_failure = now
        if kind is FailureKind.BILLING:
            record.disables += 1
            seconds = doubling_seconds(record.disables, _DISABLE_BASE_SECONDS, _DISABLE_MAX_SECONDS)
        elif kind is FailureKind.RATE_LIMIT:
            record.rate_limits += 1
            seconds = doubling_seconds(
                record.rate_limits, _RATE_LIMIT_BASE_SECONDS, _RATE_LIMIT_MAX_SECONDS
            )
            if retry_after is not None and retry_after > seconds:
                seconds = min(retry_after, _RATE_LIMIT_MAX_SECONDS)
        else:
            seconds = regular_cooldown_seconds(record.count)
        record.until = now + seconds
        log.warn(
            "{scope} {name} cooling down for {seconds:.0f} s ({reason}); "
            "turns with other models try those first",
            scope="model" if kind in MODEL_SCOPED else "provider",
            name=model_ref if kind in MODEL_SCOPED else _provider(model_ref),
            seconds=seconds,
            reason=kind.value,
        )
        record.reason = kind.value
        return Cooldown(record.until, record.reason)

    def succeeded(self, model_ref: str) -> None:
        """The model answered: it and its provider are healthy again."""
        self._models.pop(model_ref, None)
        self._providers.pop(_provider(model_ref), None)


def _provider(model_ref: str) -> str:
    return model_ref.partition("/")[0]
