"""Acceptance (issue 14): a run the client aborts after the model began to
answer is counted under that model, not ``unknown`` (the docs keep
``unknown`` for runs that failed before a model answered)."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import AgentRequest
from openclaw.core.metrics import Metrics
from openclaw.gateway.observability import RunMetrics
from openclaw.testing import SCRIPTED_MODEL, Reply, ScriptedProvider, make_runtime
from openclaw.testing.scripted import SCRIPTED_PROVIDER_ID
from tests.test_metrics import sample


class AbortedRunModelLabelTests(SynchronousTestCase):
    def test_aborted_mid_answer_keeps_the_model_label(self) -> None:
        """A run cancelled while the model streams: runs_total{outcome="aborted"}
        names provider/model."""
        clock = MemoryReactorClock()
        provider = ScriptedProvider(clock=clock, replies=[Reply(chunks=("a ", "b "), hang=True)])
        runtime = make_runtime(clock=clock, providers={SCRIPTED_PROVIDER_ID: provider})
        self.addCleanup(lambda: self.successResultOf(runtime.shutdown()))
        metrics = Metrics(process=False)
        RunMetrics(metrics, clock).attach(runtime)
        run = runtime.start(
            AgentRequest(run_id="r1", agent_id="main", session_key="agent:main:x", message="hi")
        )
        clock.advance(0)
        clock.advance(0)
        self.assertEqual(run.text, "a b ")
        run.cancel()
        clock.advance(0)
        self.failureResultOf(run.result)
        text = metrics.render().decode()
        model = f"{SCRIPTED_PROVIDER_ID}/{SCRIPTED_MODEL.split('/', 1)[-1]}"
        self.assertEqual(sample(text, "openclaw_runs_total", outcome="aborted", model=model), 1.0)
        self.assertIsNone(sample(text, "openclaw_runs_total", outcome="aborted", model="unknown"))
