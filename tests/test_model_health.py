"""Cooldowns of failed models (openclaw.agents.model_health) and how a turn's
fallback chain orders around them."""

from __future__ import annotations

from attrs import evolve
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.fallback import FallbackChain
from openclaw.agents.model_health import Cooldown, ModelHealth
from openclaw.agents.types import FailureKind, LifecycleEvent, ProviderError
from openclaw.config.model import AgentDefaults
from openclaw.testing import Reply, ScriptedProvider, run_due, scripted_config, without_model_retry
from tests.agent_loop_support import LoopCase


class ModelHealthTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.health = ModelHealth(self.clock)

    def remaining(self, ref: str) -> float | None:
        cooldown = self.health.cooldown(ref)
        return None if cooldown is None else cooldown.until - self.clock.seconds()

    def test_rate_limit_cools_down_the_model_only(self) -> None:
        """A rate limit: that model waits 30 s; other models of the provider do not."""
        self.health.failed("p/a", FailureKind.RATE_LIMIT)
        self.assertEqual(self.remaining("p/a"), 30.0)
        self.assertIsNone(self.remaining("p/b"))
        self.clock.advance(30)
        self.assertIsNone(self.remaining("p/a"))

    def test_repeated_rate_limits_double(self) -> None:
        """Each further rate limit doubles the wait, also after the last one ran out."""
        waits = []
        for _ in range(4):
            self.health.failed("p/a", FailureKind.RATE_LIMIT)
            wait = self.remaining("p/a")
            assert wait is not None
            waits.append(wait)
            self.clock.advance(wait)
        self.assertEqual(waits, [30.0, 60.0, 120.0, 240.0])

    def test_retry_after_lengthens_a_rate_limit(self) -> None:
        """The upstream's Retry-After counts when it is longer than the step."""
        self.health.failed("p/a", FailureKind.RATE_LIMIT, retry_after=120.0)
        self.assertEqual(self.remaining("p/a"), 120.0)
        self.health.failed("p/b", FailureKind.RATE_LIMIT, retry_after=5.0)
        self.assertEqual(self.remaining("p/b"), 30.0)

    def test_regular_steps_and_reset(self) -> None:
        """Timeouts in successive cooldowns step up (30 s, 1 min, 5 min); a
        failure while one runs keeps its end; a day without failures restarts."""
        self.health.failed("p/a", FailureKind.TIMEOUT)
        self.clock.advance(10)
        self.health.failed("p/a", FailureKind.TIMEOUT)
        self.assertEqual(self.remaining("p/a"), 20.0)
        waits = [30.0]
        for _ in range(3):
            self.clock.advance(self.remaining("p/a") or 0)
            self.health.failed("p/a", FailureKind.TIMEOUT)
            waits.append(self.remaining("p/a") or 0)
        self.assertEqual(waits, [30.0, 60.0, 300.0, 300.0])
        self.clock.advance(86_401)
        self.health.failed("p/a", FailureKind.TIMEOUT)
        self.assertEqual(self.remaining("p/a"), 30.0)

    def test_a_burst_counts_once(self) -> None:
        """Eight turns failing with 429 at once are one cooldown: the next one,
        after it ends, is 1 min, not 30 s doubled eight times; a longer
        Retry-After seen meanwhile still extends the running one."""
        for _ in range(8):
            self.health.failed("p/a", FailureKind.RATE_LIMIT)
        self.assertEqual(self.remaining("p/a"), 30.0)
        self.health.failed("p/a", FailureKind.RATE_LIMIT, retry_after=45.0)
        self.assertEqual(self.remaining("p/a"), 45.0)
        self.clock.advance(45)
        self.health.failed("p/a", FailureKind.RATE_LIMIT)
        self.assertEqual(self.remaining("p/a"), 60.0)

    def test_auth_and_billing_cool_down_the_provider(self) -> None:
        """Auth: every model of the provider, 30 s; billing: 10 min, then 20 min
        for the next billing failure after the first disable ended."""
        self.health.failed("p/a", FailureKind.AUTH)
        self.assertEqual((self.remaining("p/a"), self.remaining("p/b")), (30.0, 30.0))
        self.assertIsNone(self.remaining("q/a"))
        self.clock.advance(30)
        self.health.failed("q/a", FailureKind.BILLING)
        self.assertEqual(self.remaining("q/zzz"), 600.0)
        self.clock.advance(600)
        self.health.failed("q/a", FailureKind.BILLING)
        self.assertEqual(self.remaining("q/a"), 1200.0)

    def test_transient_server_failures_leave_no_trace(self) -> None:
        """5xx, overloaded, refused and too-long requests start no cooldown."""
        for kind in (
            FailureKind.SERVER_ERROR,
            FailureKind.OVERLOADED,
            FailureKind.FORMAT,
            FailureKind.CONTEXT_OVERFLOW,
            FailureKind.CONNECTION,
        ):
            self.assertIsNone(self.health.failed("p/a", kind), kind)
        self.assertIsNone(self.remaining("p/a"))

    def test_one_warning_per_cooldown(self) -> None:
        """The log gets one warning when a cooldown starts, none while it runs."""
        with capturedLogs() as events:
            self.health.failed("p/a", FailureKind.RATE_LIMIT)
            self.health.failed("p/a", FailureKind.RATE_LIMIT)
        (event,) = events
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual((event["name"], event["seconds"]), ("p/a", 30.0))
        self.assertIn("cooling down for 30 s (rate_limit)", formatEvent(event))

    def test_success_clears(self) -> None:
        """A model answering clears its own and its provider's cooldown."""
        self.health.failed("p/a", FailureKind.RATE_LIMIT)
        self.health.failed("p/b", FailureKind.AUTH)
        self.health.succeeded("p/a")
        self.assertIsNone(self.remaining("p/a"))
        self.assertIsNone(self.remaining("p/b"))


class ChainOrderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.health = ModelHealth(self.clock)

    def test_cooling_candidates_go_last_soonest_first(self) -> None:
        """Ready candidates keep their order; cooling ones follow by their end."""
        self.health.failed("a/one", FailureKind.AUTH)  # 30 s
        self.health.failed("b/two", FailureKind.BILLING)  # 600 s
        self.health.failed("c/three", FailureKind.RATE_LIMIT)  # 30 s, later
        self.clock.advance(1)
        self.health.failed("c/three", FailureKind.RATE_LIMIT)
        chain = FallbackChain(("b/two", "a/one", "c/three", "d/four"), self.health)
        self.assertEqual(chain.current, "d/four")
        self.assertTrue(chain.fell_back)
        self.assertEqual(chain.primary, "b/two")
        self.assertEqual([ref for ref, _ in chain.deferred], ["a/one", "c/three", "b/two"])
        order = [chain.current]
        while (nxt := chain.advance(ProviderError(FailureKind.SERVER_ERROR, "x"))) is not None:
            order.append(nxt)
        self.assertEqual(order, ["d/four", "a/one", "c/three", "b/two"])

    def test_a_lone_candidate_is_always_tried(self) -> None:
        """A strict chain (one model) is tried whatever its cooldown."""
        self.health.failed("a/one", FailureKind.AUTH)
        chain = FallbackChain(("a/one",), self.health)
        self.assertEqual((chain.current, chain.deferred, chain.fell_back), ("a/one", (), False))

    def test_a_provider_wide_cooldown_skips_the_siblings(self) -> None:
        """A 401 cools down the whole provider: the turn moves past its other
        models at once instead of sending them the refused key."""
        chain = FallbackChain(("a/one", "a/two", "b/three"), self.health)
        self.assertEqual(chain.advance(ProviderError(FailureKind.AUTH, "bad key")), "b/three")
        # Nothing ready left: the next one is tried anyway.
        chain = FallbackChain(("c/one", "c/two"), self.health)
        self.assertEqual(chain.advance(ProviderError(FailureKind.AUTH, "bad key")), "c/two")

    def test_skip_cooling_before_a_call(self) -> None:
        """A model that went into a cooldown during the turn is left for a ready
        later candidate, never once output was sent."""
        chain = FallbackChain(("a/one", "b/two"), self.health)
        self.assertIsNone(chain.skip_cooling())
        self.health.failed("a/one", FailureKind.RATE_LIMIT)
        self.assertEqual(chain.skip_cooling(), "b/two")
        late = FallbackChain(("a/one", "b/two"), None)
        self.assertIsNone(late.skip_cooling())
        sent = FallbackChain(("c/one", "b/two"), self.health)
        self.health.failed("c/one", FailureKind.RATE_LIMIT)
        sent.note_output()
        self.assertIsNone(sent.skip_cooling())

    def test_failures_and_success_are_recorded(self) -> None:
        """advance records the failure with its Retry-After; succeeded clears it."""
        chain = FallbackChain(("a/one", "b/two"), self.health)
        limited = ProviderError(FailureKind.RATE_LIMIT, "slow", retry_after_seconds=90.0)
        self.assertEqual(chain.advance(limited), "b/two")
        self.assertEqual(self.health.cooldown("a/one"), Cooldown(90.0, "rate_limit"))
        chain.succeeded()
        self.assertIsNone(self.health.cooldown("b/two"))
        self.assertIsNotNone(self.health.cooldown("a/one"))


class TurnCooldownTests(LoopCase):
    """Through the runtime: a rate-limited primary is skipped by later turns."""

    def setUp(self) -> None:
        super().setUp()
        self.backup = ScriptedProvider(clock=self.clock, provider_id="backup")
        config = scripted_config(self.state_dir)
        defaults = AgentDefaults(
            model_primary="scripted/test-model", model_fallbacks=("backup/b1",)
        )
        config = evolve(config, agents=evolve(config.agents, defaults=defaults))
        # Cooldowns alone: no same-model retry before a fallback.
        self.make_runtime(without_model_retry(config), providers={"backup": self.backup})

    def turn(self, run_id: str) -> LifecycleEvent:
        run, events = self.start(run_id=run_id)
        run_due(self.clock)
        self.successResultOf(run.result)
        return [e for e in events if isinstance(e, LifecycleEvent)][-1]

    def test_rate_limited_primary_waits_out_its_cooldown(self) -> None:
        self.provider.add(
            Reply.failure(ProviderError(FailureKind.RATE_LIMIT, "slow down", status=429))
        )
        self.backup.add(Reply.text("backup 1"), Reply.text("backup 2"))
        self.assertEqual(self.turn("run-1").provider, "backup")
        self.assertEqual(len(self.provider.calls), 1)

        # Within the 30 s cooldown the next turn goes straight to the fallback.
        self.clock.advance(10)
        self.assertEqual(self.turn("run-2").provider, "backup")
        self.assertEqual(len(self.provider.calls), 1)

        # Once it has run out, the primary is tried first again.
        self.clock.advance(25)
        self.provider.add(Reply.text("primary again"))
        end = self.turn("run-3")
        self.assertEqual((end.provider, end.model), ("scripted", "test-model"))
        self.assertEqual(len(self.provider.calls), 2)
        self.assertEqual(len(self.backup.calls), 2)

    def test_everything_cooling_is_still_tried(self) -> None:
        """When every candidate is cooling down, the turn still tries them, the
        soonest to recover first, rather than refuse."""
        self.provider.add(
            Reply.failure(ProviderError(FailureKind.RATE_LIMIT, "slow down", status=429))
        )
        self.backup.add(Reply.failure(ProviderError(FailureKind.AUTH, "bad key", status=401)))
        run, _ = self.start(run_id="run-1")
        run_due(self.clock)
        self.failureResultOf(run.result, ProviderError)
        self.clock.advance(5)
        # Both cool down until the same time: a tie keeps the chain's order.
        self.provider.add(Reply.text("recovered"))
        end = self.turn("run-2")
        self.assertEqual(end.provider, "scripted")
