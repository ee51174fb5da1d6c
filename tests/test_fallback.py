"""Model fallback candidates and decisions (openclaw.agents.fallback)."""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.fallback import (
    FallbackChain,
    candidate_models,
    is_fallback_worthy,
)
from openclaw.agents.types import FailureKind, ProviderError, RunAbortedError, RunTimeoutError
from openclaw.config.model import AgentConfig, AgentDefaults

DEFAULTS = AgentDefaults(model_primary="a/one", model_fallbacks=("b/two", "c/three", "a/one"))


def failure(kind: FailureKind, status: int | None = None) -> ProviderError:
    return ProviderError(kind, f"{kind.value} happened", status=status)


class CandidateTests(SynchronousTestCase):
    def test_default_primary_walks_default_fallbacks(self) -> None:
        """An agent without its own model uses the shared primary and fallbacks, deduplicated."""
        self.assertEqual(candidate_models(DEFAULTS), ("a/one", "b/two", "c/three"))
        self.assertEqual(
            candidate_models(DEFAULTS, AgentConfig(id="x")), ("a/one", "b/two", "c/three")
        )

    def test_agent_primary_is_strict(self) -> None:
        """An agent's own model without its own fallbacks never falls back."""
        self.assertEqual(
            candidate_models(DEFAULTS, AgentConfig(id="x", model="d/four")), ("d/four",)
        )

    def test_agent_fallbacks(self) -> None:
        """An agent's own fallbacks apply to its own or the inherited primary."""
        own = AgentConfig(id="x", model="d/four", model_fallbacks=("e/five",))
        self.assertEqual(candidate_models(DEFAULTS, own), ("d/four", "e/five"))
        inherited = AgentConfig(id="x", model_fallbacks=("e/five",))
        self.assertEqual(candidate_models(DEFAULTS, inherited), ("a/one", "e/five"))
        strict = AgentConfig(id="x", model_fallbacks=())
        self.assertEqual(candidate_models(DEFAULTS, strict), ("a/one",))

    def test_requested_model_is_strict(self) -> None:
        """An explicit per-request model is the only candidate."""
        self.assertEqual(candidate_models(DEFAULTS, None, " z/zed "), ("z/zed",))

    def test_nothing_configured(self) -> None:
        """No primary anywhere gives no candidates."""
        self.assertEqual(candidate_models(AgentDefaults()), ())


class WorthinessTests(SynchronousTestCase):
    def test_transient_and_account_failures_fall_back(self) -> None:
        """Connection, timeout, 429, 5xx, overloaded, auth, billing and missing models do."""
        for kind in (
            FailureKind.CONNECTION,
            FailureKind.TIMEOUT,
            FailureKind.RATE_LIMIT,
            FailureKind.SERVER_ERROR,
            FailureKind.OVERLOADED,
            FailureKind.AUTH,
            FailureKind.BILLING,
            FailureKind.MODEL_NOT_FOUND,
            FailureKind.MALFORMED_STREAM,
        ):
            self.assertTrue(is_fallback_worthy(failure(kind)), kind)

    def test_format_overflow_and_cancellation_do_not(self) -> None:
        """Format errors, context overflow, aborts, run timeouts and bugs do not."""
        for error in (
            failure(FailureKind.FORMAT),
            failure(FailureKind.CONTEXT_OVERFLOW),
            RunAbortedError(),
            RunTimeoutError(),
            CancelledError(),
            TypeError("bug"),
        ):
            self.assertFalse(is_fallback_worthy(error), error)


class ChainTests(SynchronousTestCase):
    def test_walks_candidates_in_order(self) -> None:
        """Each fallback-worthy failure moves to the next model, then gives up."""
        chain = FallbackChain(("a/one", "b/two", "c/three"))
        self.assertEqual(chain.current, "a/one")
        self.assertEqual(chain.advance(failure(FailureKind.RATE_LIMIT, 429)), "b/two")
        self.assertTrue(chain.fell_back)
        self.assertEqual(chain.advance(failure(FailureKind.SERVER_ERROR, 503)), "c/three")
        self.assertIsNone(chain.advance(failure(FailureKind.CONNECTION)))
        self.assertEqual(chain.current, "c/three")
        self.assertEqual(
            [(a.model, a.reason, a.status) for a in chain.attempts],
            [
                ("a/one", "rate_limit", 429),
                ("b/two", "server_error", 503),
                ("c/three", "connection", None),
            ],
        )

    def test_never_after_output(self) -> None:
        """Once output reached the client the failure is reported, not retried elsewhere."""
        chain = FallbackChain(("a/one", "b/two"))
        chain.note_output()
        self.assertTrue(chain.output_sent)
        self.assertIsNone(chain.advance(failure(FailureKind.CONNECTION)))
        self.assertEqual(chain.current, "a/one")
        self.assertFalse(chain.fell_back)

    def test_not_worthy_stops(self) -> None:
        """A format error is reported at once."""
        chain = FallbackChain(("a/one", "b/two"))
        self.assertIsNone(chain.advance(failure(FailureKind.FORMAT)))
        self.assertEqual(chain.primary, "a/one")

    def test_empty_chain_is_refused(self) -> None:
        """A chain needs a model."""
        self.assertRaises(ValueError, FallbackChain, ())
