"""Model fallback: which models a turn may try, and when it may move on.

OpenClaw's rules (``concepts/model-failover.md``):

- a turn that starts from ``agents.defaults.model.primary`` may walk
  ``agents.defaults.model.fallbacks``;
- an agent with its own ``model`` is strict unless its model object lists its
  own ``fallbacks`` (``fallbacks: []`` is explicitly strict); an agent may also
  give only ``fallbacks`` and inherit the shared primary;
- an explicit per-request model choice is strict;
- the winner is turn-local: the next turn starts from the primary again.

This project adds one rule of its own, needed because its HTTP streams are
append-only: once any of the turn's output has reached the client, a failure
is reported instead of answered by another model.

Candidates in a cooldown (:mod:`openclaw.agents.model_health`) go to the end
of the chain, the soonest to recover first, as OpenClaw orders auth profiles:
a turn tries them only when every other candidate has failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from attrs import frozen

from openclaw.agents.model_health import Cooldown, ModelHealth
from openclaw.agents.types import FailureKind, ProviderError
from openclaw.config.model import AgentConfig, AgentDefaults

#: Failures another model may not have: auth and billing belong to one
#: provider's account, rate limits and outages to one service.
FALLBACK_KINDS: Final = frozenset(
    {
        FailureKind.AUTH,
        FailureKind.PERMISSION,
        FailureKind.RATE_LIMIT,
        FailureKind.BILLING,
        FailureKind.MODEL_NOT_FOUND,
        FailureKind.SERVER_ERROR,
        FailureKind.TIMEOUT,
        FailureKind.OVERLOADED,
        FailureKind.CONNECTION,
        FailureKind.MALFORMED_STREAM,
    }
)


def candidate_models(
    defaults: AgentDefaults, agent: AgentConfig | None = None, requested: str | None = None
) -> tuple[str, ...]:
    """The ``provider/model`` references to try, in order (duplicates removed).

    Empty when no model is configured at all (the caller reports that).
    """
    if requested is not None and requested.strip():
        return (requested.strip(),)
    own_fallbacks = agent.model_fallbacks if agent is not None else None
    if agent is not None and agent.model:
        chain: Sequence[str] = (agent.model, *(own_fallbacks or ()))
    elif defaults.model_primary:
        fallbacks = defaults.model_fallbacks if own_fallbacks is None else own_fallbacks
        chain = (defaults.model_primary, *fallbacks)
    else:
        return ()
    return tuple(dict.fromkeys(ref.strip() for ref in chain if ref.strip()))


def is_fallback_worthy(error: BaseException) -> bool:
    """Whether another model could succeed where this failure happened.

    Context overflow (compaction's job) and request-format errors (the same
    payload fails everywhere) are not; neither are cancellations, timeouts of
    the whole run, or anything that is not a classified provider failure (a
    bug should surface, not be masked by another model).
    """
    return isinstance(error, ProviderError) and error.kind in FALLBACK_KINDS


@frozen
class FallbackAttempt:
    """One failed candidate, for logs and the lifecycle event."""

    model: str
    reason: str
    message: str
    status: int | None = None


class FallbackChain:
    """Walks the candidates of one turn.

    The loop asks :attr:`current` for the model of its next call, tells the
    chain when output reached the client (:meth:`note_output`), and on a
    failed model call asks :meth:`advance` for the next model (None: report
    the failure).
    """

    def __init__(self, candidates: Sequence[str], health: ModelHealth | None = None) -> None:
        if not candidates:
            raise ValueError("a fallback chain needs at least one model")
        self._primary = candidates[0]
        self._health = health
        self._deferred: tuple[tuple[str, Cooldown], ...] = ()
        if health is not None and len(candidates) > 1:
            cooling = {ref: c for ref in candidates if (c := health.cooldown(ref)) is not None}
            if cooling:
                ready = [ref for ref in candidates if ref not in cooling]
                later = sorted(cooling.items(), key=lambda item: item[1].until)
                candidates = (*ready, *(ref for ref, _ in later))
                self._deferred = tuple(later)
        self._candidates = tuple(candidates)
        self._index = 0
        self._output_sent = False
        self._attempts: list[FallbackAttempt] = []

    @property
    def current(self) -> str:
        """The model the next call uses."""
        return self._candidates[self._index]

    @property
    def primary(self) -> str:
        """The model the turn would start with, cooldowns aside."""
        return self._primary

    @property
    def fell_back(self) -> bool:
        """Whether the turn is off its primary (a failure, or its cooldown)."""
        return self.current != self._primary

    @property
    def remaining(self) -> tuple[str, ...]:
        """The candidates after the current one (for compaction's summary)."""
        return self._candidates[self._index + 1 :]

    @property
    def deferred(self) -> tuple[tuple[str, Cooldown], ...]:
        """The candidates moved to the end for their cooldowns, soonest first."""
        return self._deferred

    @property
    def attempts(self) -> tuple[FallbackAttempt, ...]:
        """The candidates that failed so far, in order."""
        return tuple(self._attempts)

    @property
    def output_sent(self) -> bool:
        return self._output_sent

    @property
    def can_fall_back(self) -> bool:
        """Whether a failure could still move the turn to another candidate."""
        return not self._output_sent and self._index + 1 < len(self._candidates)

    def note_output(self) -> None:
        """Some of the turn's output reached the client: no fallback from now on."""
        self._output_sent = True

    def succeeded(self) -> None:
        """The current model answered a call: clear its cooldown state."""
        if self._health is not None:
            self._health.succeeded(self.current)

    def advance(self, error: BaseException) -> str | None:
        """Record ``error`` for the current model and return the next one to try,
        or None when the failure must be reported."""
        if isinstance(error, ProviderError):
            self._attempts.append(
                FallbackAttempt(self.current, error.kind.value, error.message, error.status)
            )
            if self._health is not None:
                self._health.failed(self.current, error.kind, error.retry_after_seconds)
        if self._output_sent or not is_fallback_worthy(error):
            return None
        if self._index + 1 >= len(self._candidates):
            return None
        # The next candidate that is not cooling down (a 401 just cooled down
        # the failed model's whole provider: its siblings would be refused
        # too), else simply the next one.
        self._index = self._next_ready() or self._index + 1
        return self.current

    def skip_cooling(self) -> str | None:
        """Before a call: when the current model went into a cooldown during the
        turn (its compaction summary failed, or another turn's call) and a later
        candidate is ready, move to it; the new model, or None when staying."""
        if self._health is None or self._output_sent:
            return None
        if self._health.cooldown(self.current) is None:
            return None
        ready = self._next_ready()
        if ready is None:
            return None
        self._attempts.append(FallbackAttempt(self.current, "cooldown", "cooling down"))
        self._index = ready
        return self.current

    def _next_ready(self) -> int | None:
        """The index of the first candidate after the current one that is not
        cooling down, if any."""
        if self._health is None:
            return None
        for index in range(self._index + 1, len(self._candidates)):
            if self._health.cooldown(self._candidates[index]) is None:
                return index
        return None
