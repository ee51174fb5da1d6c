"""Retrying the same model after a transient failure, before any fallback.

OpenClaw's recovery policy for model calls (``concepts/retry.md``,
``concepts/model-failover.md``), per run:

- a rate limit gets up to 10 attempts in all (9 retries);
- other transient failures (overload, 5xx, timeout, a dropped connection, a
  stream cut before its end) get up to 8 retries, within a 90-second window
  that a successful model response closes (the count is not reset: it bounds
  the whole run);
- the wait starts near one second and doubles, with jitter, up to 30 seconds;
  a provider's ``retry-after`` is the minimum wait even past that cap, but a
  hint over ``maxRetryDelayMs`` (60 s) goes straight to a fallback when the
  turn has one (without one, the hint is honoured in full);
- auth, billing, refusals, format errors and context overflow are never
  retried (another model or compaction answers those);
- ``maxRetries`` overrides the budget; 0 turns retries off, and rate limits
  stay capped at 10 attempts.

Only when this budget is spent does the turn move down its fallback chain.
The loop retries only a step that sent no text to the client: its streams are
append-only, so a retry after partial output would repeat it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Final

from openclaw.agents.types import FailureKind, ProviderError
from openclaw.config.model import ModelRetryConfig

#: Attempts a rate-limited run may make in all (OpenClaw's cap).
RATE_LIMIT_ATTEMPTS: Final = 10
#: Retries of the other transient failures per run.
TRANSIENT_RETRIES: Final = 8
#: The outage window for the other transient failures, in seconds.
OUTAGE_WINDOW_SECONDS: Final = 90.0
FIRST_DELAY_SECONDS: Final = 1.0
MAX_BACKOFF_SECONDS: Final = 30.0
#: The backoff varies by this fraction either way, so concurrent runs spread out.
JITTER: Final = 0.1

#: Failures the same model may not have on the next attempt.
TRANSIENT_KINDS: Final = frozenset(
    {
        FailureKind.OVERLOADED,
        FailureKind.SERVER_ERROR,
        FailureKind.TIMEOUT,
        FailureKind.CONNECTION,
        FailureKind.MALFORMED_STREAM,
    }
)


class RetryBudget:
    """One run's retries: asked after each failed model call."""

    def __init__(
        self, config: ModelRetryConfig, rng: Callable[[float, float], float] = random.uniform
    ) -> None:
        self._config = config
        self._rng = rng
        self._rate_limited = 0
        self._transient = 0
        self._outage_since: float | None = None

    @property
    def retries(self) -> int:
        """Retries made so far (both kinds)."""
        return self._rate_limited + self._transient

    def succeeded(self) -> None:
        """A model call answered: the current outage is over."""
        self._outage_since = None

    def delay(self, error: ProviderError, *, now: float, can_fall_back: bool) -> float | None:
        """The wait before retrying the same model, or None when the failure
        goes to fallback or is reported. Counts the retry it allows."""
        limit = self._config.max_retries
        if error.kind is FailureKind.RATE_LIMIT:
            cap = RATE_LIMIT_ATTEMPTS - 1
            if self._rate_limited >= (cap if limit is None else min(limit, cap)):
                return None
            attempt = self._rate_limited + 1
        elif error.kind in TRANSIENT_KINDS:
            if self._transient >= (TRANSIENT_RETRIES if limit is None else limit):
                return None
            if self._outage_since is None:
                self._outage_since = now
            elif now - self._outage_since >= OUTAGE_WINDOW_SECONDS:
                return None
            attempt = self._transient + 1
        else:
            return None
        backoff = min(math.ldexp(FIRST_DELAY_SECONDS, attempt - 1), MAX_BACKOFF_SECONDS)
        wait = min(backoff * self._rng(1 - JITTER, 1 + JITTER), MAX_BACKOFF_SECONDS)
        hint = error.retry_after_seconds
        if hint is not None and math.isfinite(hint) and hint > 0:
            hint_cap = self._config.max_retry_delay_ms / 1000
            if hint_cap and hint > hint_cap and can_fall_back:
                return None
            wait = max(wait, hint)
        if error.kind is FailureKind.RATE_LIMIT:
            self._rate_limited += 1
        else:
            self._transient += 1
        return wait
