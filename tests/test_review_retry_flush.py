"""A review of the same-model retry (model_retry.py) and the pre-compaction
memory flush (memory_flush.py): each case states the behaviour OpenClaw
documents (or a user needs) and failed before its fix."""

from __future__ import annotations

from typing import Any

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.memory_flush import MAX_FLUSH_FAILURES
from openclaw.agents.model_retry import RetryBudget
from openclaw.agents.providers.base import ModelCall
from openclaw.agents.providers.errors import classify_http_error
from openclaw.agents.types import FailureKind, ProviderError, RunTimeoutError
from openclaw.config.model import AgentDefaults, ModelRetryConfig
from openclaw.testing import Reply, ScriptedProvider, echo_reply, run_due, scripted_config
from tests.agent_loop_support import LoopCase
from tests.test_memory_flush import BIG, FlushCase


def is_flush(call: ModelCall) -> bool:
    """A flush call, by its system prompt (its directive can be merged into a
    preceding user message by normalise_history, so the last message may not
    start with it)."""
    return "Pre-compaction memory flush turn." in (call.system_prompt or "")


# -- 1. memory flush vs the run timeout -------------------------------------------------


class FlushVersusRunTimeoutTests(FlushCase):
    """A flush that outlasts the run's timeout is cancelled as an abort is, so
    it is neither marked done nor counted as a failure: every later turn of
    the session starts the same flush again and times out again. The session
    is stuck until the operator turns the flush off (memory_flush.py says a
    flush "never fails the turn"; here it fails every turn)."""

    def test_a_flush_that_times_the_run_out_does_not_repeat_forever(self) -> None:
        def reply(call: ModelCall) -> Reply:
            # The flush model (say a slow local memoryFlush.model) never answers
            # within the run; every other call answers at once.
            return Reply(hang=True) if is_flush(call) else echo_reply(call)

        self.provider = ScriptedProvider(clock=self.clock, fallback=reply)
        self.make_runtime(self.config())
        self.turn("first " + BIG, "r1")
        outcomes = []
        for i in range(MAX_FLUSH_FAILURES + 2):
            run, _ = self.start(f"again {i} " + BIG, run_id=f"t{i}", timeout_seconds=60)
            run_due(self.clock)
            for _ in range(61):
                self.clock.advance(1)
                run_due(self.clock)
            result = run.result
            failures: list[Any] = []
            result.addErrback(failures.append)
            outcomes.append("timeout" if failures and failures[0].check(RunTimeoutError) else "ok")
        flushes = [c for c in self.provider.calls if is_flush(c)]
        # The flush takes at most half the run (so each turn still answers), a
        # stopped or timed-out flush counts as a failure, and after
        # MAX_FLUSH_FAILURES the cycle has no more flushes. (Before: every turn
        # ran the flush and timed out.)
        self.assertLessEqual(len(flushes), MAX_FLUSH_FAILURES, outcomes)
        self.assertEqual(outcomes, ["ok"] * len(outcomes))


# -- 2. retry of a usage-window (daily / quota) rate limit --------------------------------


class LongWindowRateLimitTests(LoopCase):
    """OpenClaw (concepts/retry.md): "Exhausted subscription, daily, weekly, or
    monthly usage windows go directly to eligible auth-profile or model
    fallback" (hasLongWindowRateLimitEvidence in failover-retry-controller).
    Here a 429 saying the daily quota is spent is retried 9 times (~2.5 min of
    waits and 9 more requests against a spent quota) before the fallback."""

    def setUp(self) -> None:
        super().setUp()
        self.backup = ScriptedProvider(clock=self.clock, provider_id="backup")
        config = scripted_config(self.state_dir)
        defaults = AgentDefaults(
            model_primary="scripted/test-model", model_fallbacks=("backup/b1",)
        )
        self.make_runtime(
            evolve(config, agents=evolve(config.agents, defaults=defaults)),
            providers={"backup": self.backup},
        )

    def test_a_daily_quota_429_goes_straight_to_the_fallback(self) -> None:
        self.provider.add(
            *(
                Reply.failure(
                    ProviderError(
                        FailureKind.RATE_LIMIT,
                        "Rate limit reached for test-model on requests per day (RPD): "
                        "Limit 10000, Used 10000",
                        status=429,
                    )
                )
                for _ in range(12)
            )
        )
        self.backup.add(Reply.text("from backup"))
        run, _ = self.start()
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).text, "from backup")
        self.assertEqual(len(self.provider.calls), 1)


# -- 3. Retry-After on 503/529 is dropped ----------------------------------------------------


class OverloadRetryAfterTests(SynchronousTestCase):
    """OpenClaw: "Provider pacing, including retry-after, retry-after-ms ...
    sets the minimum wait" for every transient failure (resolveTransientRetryDelayMs
    takes retryAfterMs whatever the reason). classify_http_error parses the
    header for 503/529 but classify_payload keeps it only for RATE_LIMIT, so an
    overloaded upstream that asks for 20 s is called again after ~1 s, 2 s, 4 s..."""

    def test_a_503_retry_after_is_the_minimum_wait(self) -> None:
        error = classify_http_error(
            503,
            b'{"error": {"message": "Service overloaded", "type": "overloaded_error"}}',
            {"retry-after": "20"},
            now=0.0,
        )
        self.assertIn(error.kind, (FailureKind.OVERLOADED, FailureKind.SERVER_ERROR))
        self.assertEqual(error.retry_after_seconds, 20.0)
        budget = RetryBudget(ModelRetryConfig(), rng=lambda low, high: 1.0)
        wait = budget.delay(error, now=0.0, can_fall_back=False)
        self.assertIsNotNone(wait)
        assert wait is not None
        self.assertGreaterEqual(wait, 20.0)


# -- 4. the run's retry count is two budgets, not one ---------------------------------------


class SharedRetryCountTests(SynchronousTestCase):
    """OpenClaw keeps ONE transientRetryCount per run; once a rate limit was
    seen the budget is at most 9 (min(budget, rateLimitSeen ? 9 : inf)).
    RetryBudget counts rate limits and other transient failures separately,
    so a run whose upstream alternates 429 and 503 retries 17 times."""

    def test_mixed_failures_share_the_run_budget(self) -> None:
        budget = RetryBudget(ModelRetryConfig(), rng=lambda low, high: 1.0)
        rate = ProviderError(FailureKind.RATE_LIMIT, "slow down", status=429)
        down = ProviderError(FailureKind.SERVER_ERROR, "down", status=503)
        retries = 0
        for i in range(40):
            error = rate if i % 2 == 0 else down
            if budget.delay(error, now=float(i), can_fall_back=False) is None:
                break
            retries += 1
        self.assertLessEqual(retries, 9)

    def test_no_retry_is_scheduled_past_the_outage_window(self) -> None:
        """OpenClaw returns no delay when it would end past the 90 s window
        (``delayMs <= remainingMs``); here a failure at 89 s still waits 30 s."""
        budget = RetryBudget(ModelRetryConfig(), rng=lambda low, high: 1.0)
        down = ProviderError(FailureKind.SERVER_ERROR, "down", status=503)
        budget.delay(down, now=0.0, can_fall_back=False)
        for _ in range(4):  # 2, 4, 8, 16
            budget.delay(down, now=1.0, can_fall_back=False)
        wait = budget.delay(down, now=89.0, can_fall_back=False)  # 30 s: ends at 119 s
        self.assertIsNone(wait)


# -- 5. the docs contradict themselves ---------------------------------------------------------
