"""Retrying the same model after a transient failure, before any fallback.

OpenClaw's recovery policy for model calls (``concepts/retry.md``,
``concepts/model-failover.md``), per run:

- one count per run for every kind: 8 retries, 9 (10 attempts) once a rate
  limit was seen;
- transient failures other than rate limits (overload, 5xx, timeout, a
  dropped connection, a stream cut before its end) retry only while the wait
  ends within 90 seconds of the outage's first failure; a successful model
  response closes the outage (the count is not reset);
- the wait starts near one second and doubles, with jitter, up to 30 seconds;
  a provider's ``retry-after`` (header, or "try again in 20s" in its message)
  is the minimum wait even past that cap, but a rate limit's hint over
  ``maxRetryDelayMs`` (60 s) goes straight to a fallback when the turn has
  one (without one, the hint is honoured in full);
- a rate limit over a long window (a daily quota, a subscription's usage)
  goes to fallback at once; auth, billing, refusals, format errors and
  context overflow are never retried (another model or compaction answers
  those);
- ``maxRetries`` overrides the budget; 0 turns retries off, and rate limits
  stay capped at 10 attempts.

Only when this budget is spent does the turn move down its fallback chain.
The loop retries only a step that sent no text to the client: its streams are
append-only, so a retry after partial output would repeat it.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from typing import Final

from openclaw.agents.types import FailureKind, ProviderError
from openclaw.config.model import ModelRetryConfig

#: Attempts a rate-limited run may make in all (OpenClaw's cap).
RATE_LIMIT_ATTEMPTS: Final = 10
#: Retries per run when no rate limit was seen.
TRANSIENT_RETRIES: Final = 8
#: The outage window of the transient failures other than rate limits, in seconds.
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


#: A rate limit over a long window (a day's quota, a subscription's usage, a
#: spent balance) will not pass in minutes: it goes to fallback at once, as
#: OpenClaw's long-window evidence does, unless the message names a
#: per-minute unit.
_LONG_WINDOW = re.compile(
    r"\b(?:daily|weekly|monthly|(?:tokens|requests) per day|per[- ](?:day|week|month)"
    r"|usage limit|subscription|insufficient[_ -]?quota|current quota|quota[_ -]?exceeded"
    r"|(?:go|free)usagelimiterror|available balance|out of budget)\b",
    re.IGNORECASE,
)
_PER_MINUTE = re.compile(
    r"\b(?:(?:requests|tokens) per minute|per-minute|rpm|tpm)\b", re.IGNORECASE
)
#: "Please try again in 20s", "retry after 1.5 seconds": a wait the upstream
#: states in its message rather than a header.
_MESSAGE_HINT = re.compile(
    r"(?:retry[- ]after\s*:?\s*(?:in\s+)?|try again in\s+)(\d+(?:\.\d+)?)\s*"
    r"(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?)?\b",
    re.IGNORECASE,
)


def long_window_rate_limit(message: str) -> bool:
    """Whether a rate limit's message says its window is a day or longer."""
    return bool(_LONG_WINDOW.search(message)) and not _PER_MINUTE.search(message)


def message_hint(message: str) -> float | None:
    """The wait, in seconds, a failure's message asks for, if any."""
    match = _MESSAGE_HINT.search(message)
    if match is None:
        return None
    unit = (match.group(2) or "s").lower()
    scale = 0.001 if unit.startswith("ms") or unit.startswith("milli") else 1.0
    if unit[0] == "m" and scale == 1.0:
        scale = 60.0
    elif unit[0] == "h":
        scale = 3600.0
    return float(match.group(1)) * scale


class RetryBudget:
    """One run's retries: asked after each failed model call."""

    def __init__(
        self,
        config: ModelRetryConfig,
        rng: Callable[[float, float], float] = random.uniform,
        *,
        deadline: float | None = None,
    ) -> None:
        """:param deadline: when the run's time limit ends (None: no limit); a
        retry that would wait past it is not made, so the client gets the
        upstream's error (a 429 with its retry-after) rather than a timeout."""
        self._config = config
        self._rng = rng
        self._deadline = deadline
        self._retries = 0
        self._saw_rate_limit = False
        self._outage_since: float | None = None

    @property
    def retries(self) -> int:
        """Retries made so far."""
        return self._retries

    def succeeded(self) -> None:
        """A model call answered: the current outage is over."""
        self._outage_since = None

    def _budget(self) -> int:
        """Retries this run may make: one count for every kind (OpenClaw's),
        8 by default, 9 once a rate limit was seen; ``maxRetries`` overrides
        it, rate limits staying at 9 at most."""
        limit = self._config.max_retries
        if not self._saw_rate_limit:
            return TRANSIENT_RETRIES if limit is None else limit
        cap = RATE_LIMIT_ATTEMPTS - 1
        return cap if limit is None else min(limit, cap)

    def delay(self, error: ProviderError, *, now: float, can_fall_back: bool) -> float | None:
        """The wait before retrying the same model, or None when the failure
        goes to fallback or is reported. Counts the retry it allows."""
        rate_limited = error.kind is FailureKind.RATE_LIMIT
        if rate_limited:
            if long_window_rate_limit(error.message):
                return None
            self._saw_rate_limit = True
        elif error.kind not in TRANSIENT_KINDS:
            return None
        if self._retries >= self._budget():
            return None
        backoff = min(math.ldexp(FIRST_DELAY_SECONDS, self._retries), MAX_BACKOFF_SECONDS)
        wait = min(backoff * self._rng(1 - JITTER, 1 + JITTER), MAX_BACKOFF_SECONDS)
        hint = error.retry_after_seconds
        if hint is None:
            hint = message_hint(error.message)
        if hint is not None and math.isfinite(hint) and hint > 0:
            hint_cap = self._config.max_retry_delay_ms / 1000
            if rate_limited and hint_cap and hint > hint_cap and can_fall_back:
                return None
            wait = max(wait, hint)
        if not rate_limited:
            # Other transient failures retry within the outage's 90 s window,
            # waits included.
            if self._outage_since is None:
                self._outage_since = now
            if now + wait - self._outage_since > OUTAGE_WINDOW_SECONDS:
                return None
        if self._deadline is not None and now + wait >= self._deadline:
            return None
        self._retries += 1
        return wait
