"""The public fakes in openclaw.testing behave like a real provider stream."""

from __future__ import annotations

import shutil
from pathlib import Path

from attrs import define, field
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.providers.base import ModelCall, ModelMessage
from openclaw.agents.types import (
    AgentEvent,
    AgentRequest,
    FailureKind,
    ProviderError,
    RunAbortedError,
    Usage,
)
from openclaw.testing import (
    FakeRun,
    Reply,
    ScriptedProvider,
    ScriptedToolCall,
    make_runtime,
    run_due,
    scripted_config,
)


@define
class RecordingSink:
    """A StreamSink that keeps what it was given."""

    text: list[str] = field(factory=list)
    tools: list[tuple[int, str | None, str | None, str]] = field(factory=list)
    usage: list[Usage] = field(factory=list)

    def on_text(self, delta: str) -> None:
        self.text.append(delta)

    def on_tool_call(
        self, index: int, call_id: str | None, name: str | None, arguments_delta: str
    ) -> None:
        self.tools.append((index, call_id, name, arguments_delta))

    def on_usage(self, usage: Usage) -> None:
        self.usage.append(usage)


CALL = ModelCall(model="m", messages=(ModelMessage(role="user", content="two words"),))


class ScriptedProviderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.sink = RecordingSink()

    def test_replies_in_order_then_echo(self) -> None:
        """Scripted replies are used in order; later calls echo the user message; every
        call is recorded."""
        provider = ScriptedProvider(["first"], clock=self.clock)
        one = provider.stream(CALL, self.sink)
        self.assertEqual(self.sink.text, [])
        run_due(self.clock)
        outcome = self.successResultOf(one.done)
        self.assertEqual(outcome.stop_reason, "stop")
        self.assertEqual(outcome.usage, Usage(input=2, output=1, total=3))
        provider.stream(CALL, self.sink)
        run_due(self.clock)
        self.assertEqual(self.sink.text, ["first", "echo: ", "two words"])
        self.assertEqual(provider.calls, [CALL, CALL])
        self.assertEqual(provider.provider_id, "scripted")

    def test_delays_follow_the_clock(self) -> None:
        """Each chunk waits its delay on the injected clock."""
        provider = ScriptedProvider([Reply.text("a", "b", delay=2)], clock=self.clock)
        stream = provider.stream(CALL, self.sink)
        self.clock.advance(1.9)
        self.assertEqual(self.sink.text, [])
        self.clock.advance(0.1)
        self.assertEqual(self.sink.text, ["a"])
        self.clock.advance(2)
        run_due(self.clock)
        self.assertTrue(stream.finished)

    def test_pause_resume_stop(self) -> None:
        """Paused streams deliver nothing; resumed ones continue; stopped ones fail
        done with CancelledError, idempotently."""
        provider = ScriptedProvider([Reply.text("a", "b", "c", delay=1)], clock=self.clock)
        stream = provider.stream(CALL, self.sink)
        self.clock.advance(1)
        stream.pauseProducing()
        self.clock.advance(5)
        self.assertEqual(self.sink.text, ["a"])
        stream.resumeProducing()
        self.clock.advance(1)
        self.assertEqual(self.sink.text, ["a", "b"])
        stream.stopProducing()
        stream.stopProducing()
        self.failureResultOf(stream.done, CancelledError)
        self.clock.advance(5)
        self.assertEqual(self.sink.text, ["a", "b"])
        self.assertTrue(stream.stopped)
        self.assertEqual((stream.pause_count, stream.resume_count), (1, 1))

    def test_tool_calls_and_errors(self) -> None:
        """Tool call arguments arrive in pieces (id and name on the first); an error
        reply fails done after its chunks."""
        error = ProviderError(FailureKind.OVERLOADED, "busy", status=529)
        provider = ScriptedProvider(
            [
                Reply(tool_calls=(ScriptedToolCall(name="f", arguments="abcdef", pieces=2),)),
                Reply.failure(error, "x"),
            ],
            clock=self.clock,
        )
        first = provider.stream(CALL, self.sink)
        run_due(self.clock)
        self.assertEqual(
            self.sink.tools, [(0, "call_scripted_0", "f", "abc"), (0, None, None, "def")]
        )
        self.assertEqual(self.successResultOf(first.done).stop_reason, "tool_calls")
        second = provider.stream(CALL, self.sink)
        run_due(self.clock)
        self.assertIs(self.failureResultOf(second.done, ProviderError).value, error)

    def test_hang_until_ended(self) -> None:
        """A hanging reply stays open until end() or stopProducing()."""
        provider = ScriptedProvider([Reply(chunks=("x",), hang=True)], clock=self.clock)
        stream = provider.stream(CALL, self.sink)
        run_due(self.clock)
        self.clock.advance(1000)
        self.assertNoResult(stream.done)
        stream.end()
        self.successResultOf(stream.done)


class MakeRuntimeTests(SynchronousTestCase):
    def test_defaults_run_a_turn(self) -> None:
        """make_runtime() with no config runs agent main on an echoing scripted
        provider, with sessions under the given state dir."""
        clock = Clock()
        state_dir = Path(self.mktemp())
        runtime = make_runtime(clock=clock, state_dir=state_dir)
        run = runtime.start(
            AgentRequest(agent_id="main", session_key="agent:main:main", message="hi", run_id="r")
        )
        run_due(clock)
        self.assertEqual(self.successResultOf(run.result).text, "echo: hi")
        self.assertEqual(runtime.config.state_dir, state_dir)
        self.assertTrue((state_dir / "agents" / "main" / "sessions" / "sessions.json").exists())

    def test_state_dir_overrides_config(self) -> None:
        """An explicit state_dir replaces the config's."""
        clock = Clock()
        config = scripted_config("/elsewhere")
        runtime = make_runtime(config, clock=clock, state_dir=self.mktemp())
        self.assertNotEqual(runtime.config.state_dir, Path("/elsewhere"))
        self.assertEqual(runtime.config.agents, config.agents)

    def test_temporary_state_dir_by_default(self) -> None:
        """Without a state dir a fresh temporary one is used."""
        runtime = make_runtime(clock=Clock())
        self.addCleanup(shutil.rmtree, runtime.config.state_dir, True)
        self.assertTrue(runtime.config.state_dir.is_dir())


class FakeRunTests(SynchronousTestCase):
    """openclaw.testing.FakeRun, the hand-driven AgentRun for adapter tests."""

    def request(self) -> AgentRequest:
        """A request for the main session."""
        return AgentRequest(
            agent_id="main", session_key="agent:main:main", message="hi", run_id="r1"
        )

    def test_scripted_events_and_result(self) -> None:
        """start/say/finish reach a subscriber in order and the result carries
        the said text; a later subscriber-less result access still works."""
        clock = Clock()
        clock.advance(10)
        run = FakeRun(self.request(), clock)
        seen: list[AgentEvent] = []
        run.subscribe(seen.append)
        run.start()
        run.say("Hel")
        run.finish("lo")
        result = self.successResultOf(run.result)
        self.assertEqual(result.text, "Hello")
        self.assertEqual(
            [type(e).__name__ for e in seen][:3],
            ["LifecycleEvent", "AssistantEvent", "AssistantEvent"],
        )
        self.assertTrue(run.settled)
        self.assertEqual((result.started_at, result.ended_at), (9750, 10000))

    def test_cancel_is_recorded_and_idempotent(self) -> None:
        """cancel fails the result with RunAbortedError once; later cancels only count."""
        run = FakeRun(self.request(), Clock())
        run.pauseProducing()
        run.resumeProducing()
        run.cancel()
        run.cancel()
        self.failureResultOf(run.result, RunAbortedError)
        self.assertEqual((run.cancel_calls, run.pause_calls, run.resume_calls), (2, 1, 1))
        self.assertFalse(run.paused)
