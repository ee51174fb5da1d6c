"""The offline demo provider, driven by a Clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.providers.base import ModelCall, ModelMessage, StreamOutcome
from openclaw.agents.providers.demo import DemoProvider, DemoStream, demo_script
from openclaw.agents.types import ClientTool, StreamParams, ToolCall, Usage
from openclaw.config.model import ProviderConfig
from openclaw.testing import RecordingSink

REPLY = 'Demo reply (the offline demo model, not an LLM): you said "hello there".'


def call(text: str = "hello there", **kwargs: Any) -> ModelCall:
    """A one-message call."""
    return ModelCall(model="demo", messages=(ModelMessage(role="user", content=text),), **kwargs)


def start(
    model_call: ModelCall, delay_ms: float = 0.0, sink: RecordingSink | None = None
) -> tuple[Clock, DemoStream, RecordingSink, list[Any]]:
    """Start a demo stream on a fresh Clock."""
    clock = Clock()
    provider = DemoProvider(ProviderConfig(id="demo", api="demo", delay_ms=delay_ms), clock=clock)
    sink = sink or RecordingSink()
    stream = provider.stream(model_call, sink)
    results: list[Any] = []
    stream.done.addBoth(results.append)
    return clock, stream, sink, results


def drain(clock: Clock, step: float = 0.0, rounds: int = 100) -> None:
    """Advance the clock until nothing is pending (or ``rounds`` steps)."""
    for _ in range(rounds):
        if not clock.getDelayedCalls():
            return
        clock.advance(step)


class DemoProviderTests(SynchronousTestCase):
    """Deterministic, asynchronous, flow-controlled stand-in replies."""

    def test_reply_word_by_word(self) -> None:
        """The reply quotes the last user message and streams word by word, and
        nothing is emitted synchronously inside stream()."""
        clock, _stream, sink, results = start(call())
        self.assertEqual(sink.deltas, [])
        drain(clock)
        self.assertEqual(sink.text, REPLY)
        self.assertEqual(sink.deltas[:3], ["Demo ", "reply ", "(the "])
        self.assertEqual(len(sink.deltas), 13)
        usage = Usage(input=2, output=13, total=15)
        self.assertEqual(sink.usages, [usage])
        self.assertEqual(results, [StreamOutcome("stop", usage)])

    def test_provider_id(self) -> None:
        """provider_id is the config id."""
        provider = DemoProvider(ProviderConfig(id="offline", api="demo"), clock=Clock())
        self.assertEqual(provider.provider_id, "offline")

    def test_delay_between_words(self) -> None:
        """With delayMs, one word per delay of the injected clock."""
        clock, _stream, sink, _results = start(call(), delay_ms=250)
        clock.advance(0.249)
        self.assertEqual(sink.deltas, [])
        clock.advance(0.001)
        self.assertEqual(sink.deltas, ["Demo "])
        clock.pump([0.25, 0.25])
        self.assertEqual(sink.deltas, ["Demo ", "reply ", "(the "])

    def test_long_message_is_truncated(self) -> None:
        """The quote is cut to 200 characters."""
        script = demo_script(call("word " * 100))
        text = "".join(script.pieces)
        quoted = text.split('"')[1]
        self.assertEqual(len(quoted), 200)
        self.assertTrue(quoted.endswith("…"))

    def test_last_user_message_and_system_prompt(self) -> None:
        """The last user message is quoted; input usage counts every word."""
        model_call = ModelCall(
            model="demo",
            system_prompt="be nice",
            messages=(
                ModelMessage(role="user", content="first"),
                ModelMessage(role="assistant", content="ok then"),
                ModelMessage(role="user", content="second one"),
            ),
        )
        script = demo_script(model_call)
        self.assertIn('"second one"', "".join(script.pieces))
        self.assertEqual(script.input_tokens, 7)

    def test_pause_resume(self) -> None:
        """A paused stream emits nothing until resumed."""
        box: list[DemoStream] = []
        sink = RecordingSink(lambda _d: box[0].pauseProducing() if len(sink.deltas) == 2 else None)
        clock, stream, _sink, results = start(call(), sink=sink)
        box.append(stream)
        drain(clock)
        self.assertEqual(sink.deltas, ["Demo ", "reply "])
        self.assertEqual(clock.getDelayedCalls(), [])
        stream.resumeProducing()
        drain(clock)
        self.assertEqual(sink.text, REPLY)
        self.assertEqual(results[0].stop_reason, "stop")

    def test_stop(self) -> None:
        """stopProducing ends the stream with CancelledError and cancels timers."""
        clock, stream, sink, results = start(call(), delay_ms=10)
        clock.advance(0.01)
        stream.stopProducing()
        stream.stopProducing()
        results[0].trap(CancelledError)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(sink.deltas, ["Demo "])

    def test_cancel_done(self) -> None:
        """Cancelling done stops the stream."""
        clock, stream, _sink, results = start(call())
        stream.done.cancel()
        results[0].trap(CancelledError)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_tool_call_when_asked(self) -> None:
        """ "call <tool>" with that client tool offered asks for the tool."""
        model_call = call("please call get_time now", tools=(ClientTool(name="get_time"),))
        clock, _stream, sink, results = start(model_call)
        drain(clock)
        self.assertEqual(sink.tool_calls(), [ToolCall("call_demo_1", "get_time", "{}")])
        self.assertEqual(results[0].stop_reason, "tool_calls")
        self.assertIn("get_time", sink.text)

    def test_no_tool_call_without_the_tool(self) -> None:
        """Without that tool offered, "call x" is just quoted."""
        self.assertIsNone(demo_script(call("call get_time")).tool_call)

    def test_tool_result(self) -> None:
        """A trailing tool result is quoted back."""
        model_call = ModelCall(
            model="demo",
            messages=(
                ModelMessage(role="user", content="call f"),
                ModelMessage(role="tool", content="sunny", tool_call_id="call_demo_1"),
            ),
        )
        self.assertIn('the tool returned "sunny"', "".join(demo_script(model_call).pieces))

    def test_max_tokens(self) -> None:
        """max_tokens caps the words and the stop reason is length."""
        clock, _stream, sink, results = start(call(stream_params=StreamParams(max_tokens=3)))
        drain(clock)
        self.assertEqual(sink.deltas, ["Demo ", "reply ", "(the "])
        self.assertEqual(results[0].stop_reason, "length")

    def test_deterministic(self) -> None:
        """The same call gives the same script."""
        self.assertEqual(demo_script(call()), demo_script(call()))

    def test_no_messages(self) -> None:
        """An empty conversation still gets a clear stand-in reply."""
        script = demo_script(ModelCall(model="demo", messages=()))
        self.assertEqual(
            "".join(script.pieces), 'Demo reply (the offline demo model, not an LLM): you said "".'
        )
