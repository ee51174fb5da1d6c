"""The same-model retry of transient failures (OpenClaw's recovery budget),
through the runtime on a Clock, and its schedule."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.model_retry import RetryBudget, message_hint
from openclaw.agents.types import FailureKind, LifecycleEvent, ProviderError, RunAbortedError
from openclaw.config import ConfigError, config_from_mapping
from openclaw.config.model import AgentDefaults, ModelRetryConfig
from openclaw.testing import Reply, ScriptedProvider, run_due, scripted_config
from tests.agent_loop_support import LoopCase, call


def failure(
    kind: FailureKind, status: int | None = None, retry_after: float | None = None
) -> Reply:
    return Reply.failure(
        ProviderError(
            kind, f"upstream {kind.value}", status=status, retry_after_seconds=retry_after
        )
    )


class ScheduleTests(SynchronousTestCase):
    """The waits and the budget, jitter fixed at none."""

    def budget(self, **config: int) -> RetryBudget:
        return RetryBudget(ModelRetryConfig(**config), rng=lambda low, high: 1.0)

    def test_backoff_doubles_to_its_cap(self) -> None:
        budget = self.budget()
        error = ProviderError(FailureKind.SERVER_ERROR, "down", status=503)
        waits = [budget.delay(error, now=0.0, can_fall_back=False) for _ in range(9)]
        self.assertEqual(waits, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, None])

    def test_outage_window_closes_after_90_seconds(self) -> None:
        """The window starts at the outage's first failure; a success closes it."""
        budget = self.budget()
        error = ProviderError(FailureKind.OVERLOADED, "busy")
        self.assertEqual(budget.delay(error, now=100.0, can_fall_back=False), 1.0)
        self.assertIsNone(budget.delay(error, now=190.0, can_fall_back=False))
        budget.succeeded()
        # A new outage: a new window, the count goes on (bounded per run).
        self.assertEqual(budget.delay(error, now=500.0, can_fall_back=False), 2.0)

    def test_rate_limits_get_ten_attempts(self) -> None:
        budget = self.budget(max_retries=50)
        error = ProviderError(FailureKind.RATE_LIMIT, "slow down", status=429)
        waits = [budget.delay(error, now=1000.0 * i, can_fall_back=False) for i in range(10)]
        self.assertEqual(waits.count(None), 1)
        self.assertIsNone(waits[-1])

    def test_retry_after_is_a_minimum_and_a_long_one_prefers_a_fallback(self) -> None:
        error = ProviderError(FailureKind.RATE_LIMIT, "slow", status=429, retry_after_seconds=45)
        self.assertEqual(self.budget().delay(error, now=0.0, can_fall_back=True), 45.0)
        long = ProviderError(FailureKind.RATE_LIMIT, "slow", status=429, retry_after_seconds=120)
        self.assertIsNone(self.budget().delay(long, now=0.0, can_fall_back=True))
        # Without a fallback the hint is honoured in full; a cap of 0 is no cap.
        self.assertEqual(self.budget().delay(long, now=0.0, can_fall_back=False), 120.0)
        uncapped = self.budget(max_retry_delay_ms=0)
        self.assertEqual(uncapped.delay(long, now=0.0, can_fall_back=True), 120.0)

    def test_jitter_spreads_the_wait(self) -> None:
        budget = RetryBudget(ModelRetryConfig(), rng=lambda low, high: high)
        error = ProviderError(FailureKind.CONNECTION, "reset")
        self.assertAlmostEqual(budget.delay(error, now=0.0, can_fall_back=False) or 0, 1.1)

    def test_failures_another_attempt_cannot_fix_are_not_retried(self) -> None:
        for kind in (
            FailureKind.AUTH,
            FailureKind.PERMISSION,
            FailureKind.BILLING,
            FailureKind.MODEL_NOT_FOUND,
            FailureKind.FORMAT,
            FailureKind.CONTEXT_OVERFLOW,
        ):
            error = ProviderError(kind, "no")
            self.assertIsNone(self.budget().delay(error, now=0.0, can_fall_back=False), kind)

    def test_a_wait_stated_in_the_message_is_a_minimum(self) -> None:
        for message, seconds in (
            ("Rate limit reached. Please try again in 20s.", 20.0),
            ("Please try again in 1.5 seconds", 1.5),
            ("try again in 6ms", 0.006),
            ("overloaded; retry after 2 minutes", 120.0),
            ("Retry-After: 7", 7.0),
        ):
            self.assertEqual(message_hint(message), seconds, message)
        self.assertIsNone(message_hint("slow down"))
        error = ProviderError(FailureKind.RATE_LIMIT, "Please try again in 20s.", status=429)
        self.assertEqual(self.budget().delay(error, now=0.0, can_fall_back=False), 20.0)

    def test_a_long_window_rate_limit_is_not_retried(self) -> None:
        for message in (
            "You exceeded your current quota, please check your plan",
            "Limit 10000 requests per day (RPD) reached",
            "weekly usage limit exhausted",
        ):
            error = ProviderError(FailureKind.RATE_LIMIT, message, status=429)
            self.assertIsNone(self.budget().delay(error, now=0.0, can_fall_back=True), message)
        minute = ProviderError(FailureKind.RATE_LIMIT, "daily burst: 60 requests per minute")
        self.assertEqual(self.budget().delay(minute, now=0.0, can_fall_back=True), 1.0)

    def test_max_retries_zero_turns_retries_off(self) -> None:
        budget = self.budget(max_retries=0)
        for kind in (FailureKind.RATE_LIMIT, FailureKind.SERVER_ERROR):
            self.assertIsNone(budget.delay(ProviderError(kind, "x"), now=0, can_fall_back=False))


class TurnRetryTests(LoopCase):
    """A turn retries its model before it fails or falls back."""

    def test_a_transient_failure_is_retried_and_leaves_no_error(self) -> None:
        self.provider.add(failure(FailureKind.SERVER_ERROR, 503), Reply.text("recovered"))
        run, _ = self.start()
        run_due(self.clock)
        self.assertNoResult(run.result)
        self.assertEqual(len(self.provider.calls), 1)
        self.clock.advance(1.2)
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).text, "recovered")
        self.assertEqual(len(self.provider.calls), 2)
        # The retried call sends the same request; no error is recorded.
        self.assertEqual(self.provider.calls[0].messages, self.provider.calls[1].messages)
        stops = [m.get("stopReason") for m in self.messages() if m["role"] == "assistant"]
        self.assertEqual(stops, ["stop"])

    def test_a_step_after_tools_is_retried_without_rerunning_them(self) -> None:
        self.provider.add(
            Reply(tool_calls=(call("write", "c1", path="a.txt", content="x"),)),
            failure(FailureKind.OVERLOADED),
            Reply.text("done"),
        )
        run, _ = self.start()
        run_due(self.clock)
        self.clock.advance(1.2)
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).text, "done")
        roles = [m["role"] for m in self.messages()]
        self.assertEqual(roles, ["user", "assistant", "toolResult", "assistant"])

    def test_the_budget_runs_out_then_the_failure_is_reported(self) -> None:
        self.provider.add(*(failure(FailureKind.CONNECTION) for _ in range(20)))
        run, _ = self.start()
        for _ in range(200):
            self.clock.advance(1)
            run_due(self.clock)
        error = self.failureResultOf(run.result, ProviderError).value
        self.assertIs(error.kind, FailureKind.CONNECTION)
        # At most 8 retries, fewer when the 90 s window closes first.
        self.assertIn(len(self.provider.calls), range(7, 10))
        stops = [m.get("stopReason") for m in self.messages() if m["role"] == "assistant"]
        self.assertEqual(stops, ["error"])

    def test_text_already_sent_is_not_repeated(self) -> None:
        """A stream cut after some text reached the client is reported, not
        retried: the client's stream is append-only."""
        self.provider = ScriptedProvider(
            [Reply.failure(ProviderError(FailureKind.CONNECTION, "reset"), "half a rep")],
            clock=self.clock,
        )
        self.make_runtime(scripted_config(self.state_dir))
        run, _ = self.start()
        run_due(self.clock)
        self.failureResultOf(run.result, ProviderError)
        self.assertEqual(len(self.provider.calls), 1)

    def test_cancel_during_the_wait_makes_no_more_calls(self) -> None:
        self.provider.add(failure(FailureKind.SERVER_ERROR, 500), Reply.text("late"))
        run, _ = self.start()
        run_due(self.clock)
        run.cancel()
        self.failureResultOf(run.result, RunAbortedError)
        self.clock.advance(60)
        run_due(self.clock)
        self.assertEqual(len(self.provider.calls), 1)

    def test_a_wait_past_the_runs_limit_reports_the_failure_at_once(self) -> None:
        """A 429 asking for 30 s in a run with 10 s left (and no fallback) is
        reported at once, with its retry-after, rather than timing the run out;
        one asking for 5 s is waited for."""
        self.provider.add(failure(FailureKind.RATE_LIMIT, 429, retry_after=30))
        run, _ = self.start(timeout_seconds=10)
        run_due(self.clock)
        error = self.failureResultOf(run.result, ProviderError).value
        self.assertEqual((error.kind, error.retry_after_seconds), (FailureKind.RATE_LIMIT, 30))
        self.provider.add(failure(FailureKind.RATE_LIMIT, 429, retry_after=5), Reply.text("ok"))
        run, _ = self.start(run_id="run-2", timeout_seconds=10)
        run_due(self.clock)
        self.clock.advance(5.5)
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).text, "ok")

    def test_a_refusal_is_not_retried(self) -> None:
        self.provider.add(failure(FailureKind.AUTH, 401), Reply.text("never"))
        run, _ = self.start()
        run_due(self.clock)
        self.failureResultOf(run.result, ProviderError)
        self.assertEqual(len(self.provider.calls), 1)


class RetryThenFallbackTests(LoopCase):
    """With a fallback: the primary's retries come first (OpenClaw's order)."""

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

    def end(self, events: Sequence[object]) -> LifecycleEvent:
        return [e for e in events if isinstance(e, LifecycleEvent)][-1]

    def test_a_rate_limited_primary_gets_ten_attempts_then_the_fallback(self) -> None:
        self.provider.add(*(failure(FailureKind.RATE_LIMIT, 429) for _ in range(12)))
        self.backup.add(Reply.text("from backup"))
        run, events = self.start()
        for _ in range(300):
            self.clock.advance(1)
            run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).text, "from backup")
        self.assertEqual(len(self.provider.calls), 10)
        self.assertEqual(self.end(events).provider, "backup")

    def test_a_retry_after_over_the_cap_goes_straight_to_the_fallback(self) -> None:
        self.provider.add(failure(FailureKind.RATE_LIMIT, 429, retry_after=120))
        self.backup.add(Reply.text("from backup"))
        run, _ = self.start()
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).text, "from backup")
        self.assertEqual(len(self.provider.calls), 1)


def load_config_data(data: dict[str, Any]) -> Any:
    return config_from_mapping(data, env={}, state_dir=Path("/state")).config


class ConfigTests(SynchronousTestCase):
    def test_model_retry_is_read_and_checked(self) -> None:
        config = load_config_data(
            {"agents": {"defaults": {"modelRetry": {"maxRetries": 2, "maxRetryDelayMs": 0}}}}
        )
        self.assertEqual(
            config.agents.defaults.model_retry,
            ModelRetryConfig(max_retries=2, max_retry_delay_ms=0),
        )
        self.assertEqual(load_config_data({}).agents.defaults.model_retry, ModelRetryConfig())
        for bad in ({"maxRetries": -1}, {"maxRetries": "3"}, {"maxRetryDelayMs": 1.5}):
            with self.assertRaises(ConfigError) as raised:
                load_config_data({"agents": {"defaults": {"modelRetry": bad}}})
            self.assertIn("agents.defaults.modelRetry", str(raised.exception))
