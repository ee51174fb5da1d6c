"""One model call of a run: tool calls streamed without an id are named by
the run (one generator for every provider)."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.model_step import ModelStep, StepOutcome
from openclaw.agents.providers.base import ModelCall, ModelStream, StreamOutcome, StreamSink
from openclaw.agents.types import Usage


class _Stream:
    """A model stream the test ends by hand."""

    def __init__(self) -> None:
        self._done: Deferred[StreamOutcome] = Deferred()

    @property
    def done(self) -> Deferred[StreamOutcome]:
        """Fired by the test."""
        return self._done

    def pauseProducing(self) -> None:
        """Nothing to pause."""

    def resumeProducing(self) -> None:
        """Nothing to resume."""

    def stopProducing(self) -> None:
        """Nothing to close."""


class _Provider:
    """Hands out one stream and keeps its sink, so the test plays the upstream."""

    def __init__(self) -> None:
        self.stream_ = _Stream()
        self.sink: StreamSink | None = None

    @property
    def provider_id(self) -> str:
        """A name for messages."""
        return "fake"

    def stream(self, call: ModelCall, sink: StreamSink) -> ModelStream:
        """Keep the sink; the test plays the upstream."""
        self.sink = sink
        return self.stream_


class ToolCallIdTests(SynchronousTestCase):
    def finished_step(self, *pieces: tuple[int, str | None, str | None, str]) -> StepOutcome:
        """The outcome of a step whose stream delivered ``pieces`` and stopped."""
        provider = _Provider()
        step = ModelStep(provider, ModelCall(model="m", messages=()), lambda _: None)
        assert provider.sink is not None
        for piece in pieces:
            provider.sink.on_tool_call(*piece)
        provider.stream_.done.callback(StreamOutcome("stop", Usage()))
        return self.successResultOf(step.done)

    def test_missing_ids_get_distinct_openai_shaped_ids(self) -> None:
        """Calls a provider passed without an id (None) get ``call_<24 hex>``
        ids, a different one each, and the step ends as a tool-call stop."""
        outcome = self.finished_step((0, None, "a", "{}"), (1, None, "b", "{}"))
        ids = [call.id for call in outcome.tool_calls]
        self.assertEqual(len(set(ids)), 2)
        for call_id in ids:
            self.assertRegex(call_id, r"^call_[0-9a-f]{24}$")
        self.assertEqual(outcome.stop_reason, "tool_calls")

    def test_upstream_id_is_kept(self) -> None:
        """An id the upstream sent is the call's id, unchanged."""
        outcome = self.finished_step((0, "toolu_9", "a", '{"x":'), (0, None, None, "1}"))
        [call] = outcome.tool_calls
        self.assertEqual((call.id, call.name, call.arguments), ("toolu_9", "a", '{"x":1}'))
