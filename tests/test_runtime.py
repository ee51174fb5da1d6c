"""The agent runtime: runs, events, results, lanes, cancellation, flow control, sessions."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from attrs import evolve
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.history import FAILED_TURN_MARKER
from openclaw.agents.registry import ModelResolutionError
from openclaw.agents.run import Run
from openclaw.agents.runtime import Runtime, build_runtime
from openclaw.agents.types import (
    AgentEvent,
    AgentRequest,
    AgentRun,
    AssistantEvent,
    ClientTool,
    DuplicateRunError,
    FailureKind,
    ImageInput,
    LifecycleEvent,
    ProviderError,
    RunAbortedError,
    RuntimeClosedError,
    RunTimeoutError,
    StreamParams,
    ToolEvent,
    UnknownAgentError,
    Usage,
)
from openclaw.config.model import (
    AgentConfig,
    AgentDefaults,
    AgentsConfig,
    Config,
    SessionConfig,
)
from openclaw.testing import Reply, ScriptedProvider, ScriptedToolCall, collect_events, run_due

MAIN = "agent:main:main"


class RuntimeCase(SynchronousTestCase):
    """A runtime with agents main (default) and beta on a scripted provider."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.provider = ScriptedProvider(clock=self.clock)
        self.state_dir = Path(self.mktemp())
        self.config = Config(
            agents=AgentsConfig(
                defaults=AgentDefaults(model_primary="scripted/m", timeout_seconds=600),
                list=(
                    AgentConfig(id="main", default=True, system_prompt="You are Main."),
                    AgentConfig(id="beta", system_prompt="You are Beta."),
                ),
            ),
            session=SessionConfig(fsync="never"),
            state_dir=self.state_dir,
        )
        self.runtime = self.make_runtime(self.config)
        self._ids = itertools.count(1)

    def make_runtime(self, config: Config, **kwargs: Any) -> Runtime:
        return Runtime(config, clock=self.clock, providers={"scripted": self.provider}, **kwargs)

    def request(
        self, message: str = "hi", *, key: str = MAIN, agent: str = "main", **kwargs: Any
    ) -> AgentRequest:
        return AgentRequest(
            agent_id=agent,
            session_key=key,
            message=message,
            run_id=kwargs.pop("run_id", f"run-{next(self._ids)}"),
            **kwargs,
        )

    def start(self, message: str = "hi", **kwargs: Any) -> tuple[Run, list[AgentEvent]]:
        run = self.runtime.start(self.request(message, **kwargs))
        return run, collect_events(run)

    def transcript(self, run: AgentRun | None = None, key: str = MAIN) -> list[dict[str, Any]]:
        """The session's transcript messages (the ``message`` of each entry)."""
        entry = self.runtime.store.get_session("main", key)
        assert entry is not None
        path = self.state_dir / "agents" / "main" / "sessions" / f"{entry.session_id}.jsonl"
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        return [line["message"] for line in lines if line["type"] == "message"]


class StreamingTests(RuntimeCase):
    def test_deltas_cumulative_text_usage_and_lifecycle(self) -> None:
        """Assistant events carry each delta and the text so far, between lifecycle
        start and end; the result has the text, usage and stop reason."""
        usage = Usage(input=10, output=3, cache_read=4, total=17)
        self.provider.add(Reply.text("Hel", "lo", " you", usage=usage))
        run, events = self.start()
        self.assertIsInstance(run, Run)
        self.assertEqual(events, [])
        self.assertEqual(self.provider.calls, [])
        run_due(self.clock)
        start, *middle, end = events
        assert isinstance(start, LifecycleEvent) and isinstance(end, LifecycleEvent)
        self.assertEqual((start.phase, start.started_at), ("start", 1_700_000_000_000))
        self.assertEqual(
            [(e.delta, e.text) for e in middle if isinstance(e, AssistantEvent)],
            [("Hel", "Hel"), ("lo", "Hello"), (" you", "Hello you")],
        )
        self.assertEqual((end.phase, end.stop_reason, end.aborted), ("end", "stop", False))
        result = self.successResultOf(run.result)
        self.assertEqual(result.text, "Hello you")
        self.assertEqual(result.usage, usage)
        self.assertEqual(result.stop_reason, "stop")
        self.assertEqual((result.agent_id, result.session_key), ("main", MAIN))
        self.assertEqual(result.session_id, run.session_id)
        self.assertEqual(run.status, "ok")
        self.assertTrue(run.done)

    def test_usage_total_is_filled_in(self) -> None:
        """A provider usage without a total gets input+output+cache as total."""
        self.provider.add(Reply.text("x", usage=Usage(input=5, output=2, cache_write=1)))
        run, _ = self.start()
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).usage.total, 8)

    def test_model_call_carries_prompt_tools_params_and_images(self) -> None:
        """The provider gets the model id, system prompt (+extra), client tools,
        stream params and the user's images."""
        tool = ClientTool(name="lookup", parameters={"type": "object"})
        params = StreamParams(temperature=0.2, max_tokens=50, stop=("END",))
        image = ImageInput(data="aGk=", mime_type="image/png")
        self.start(
            "describe",
            extra_system_prompt="Be terse.",
            client_tools=(tool,),
            stream_params=params,
            images=(image,),
        )
        run_due(self.clock)
        (call,) = self.provider.calls
        self.assertEqual(call.model, "m")
        prompt = call.system_prompt or ""
        self.assertIn("## Agent Instructions\nYou are Main.\n", prompt)
        self.assertIn("## Conversation Context\nBe terse.\n", prompt)
        self.assertLess(prompt.index("You are Main."), prompt.index("Be terse."))
        self.assertEqual(call.tools, (tool,))
        self.assertEqual(call.stream_params, params)
        self.assertEqual(call.messages[-1].content, "describe")
        self.assertEqual(call.messages[-1].images, (image,))

    def test_result_is_a_new_deferred_per_access(self) -> None:
        """Each access to result is a fresh Deferred; cancelling one does not cancel
        the run or the others; access after the end still gets the result."""
        self.provider.add(Reply.text("ok", delay=1))
        run, _ = self.start()
        first, second = run.result, run.result
        self.assertIsNot(first, second)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        run_due(self.clock)
        self.clock.advance(1)
        run_due(self.clock)
        self.assertEqual(self.successResultOf(second).text, "ok")
        self.assertEqual(self.successResultOf(run.result).text, "ok")

    def test_many_subscribers_and_unsubscribe(self) -> None:
        """Every subscriber gets the events; an unsubscribed one gets no more; a
        failing listener is logged and does not disturb the run."""
        self.provider.add(Reply.text("a", "b"))
        run = self.runtime.start(self.request())
        got_a: list[AgentEvent] = []
        got_b: list[AgentEvent] = []
        run.subscribe(got_a.append)

        def once(event: AgentEvent) -> None:
            got_b.append(event)
            stop_b()

        stop_b = run.subscribe(once)

        def broken(event: AgentEvent) -> None:
            raise ValueError("listener bug")

        run.subscribe(broken)
        run_due(self.clock)
        self.assertEqual(len(got_b), 1)
        self.assertEqual(len(got_a), 4)
        self.assertEqual(self.successResultOf(run.result).text, "ab")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 4)

    def test_tool_calls_become_pending_tool_calls(self) -> None:
        """Streamed pieces of a client tool call become one pending tool call, with
        stop reason tool_calls; the run executes nothing, so no tool events."""
        self.provider.add(
            Reply(
                chunks=("Let me check.",),
                tool_calls=(
                    ScriptedToolCall(
                        name="weather", arguments='{"city":"Oslo"}', id="c1", pieces=3
                    ),
                ),
                stop_reason="stop",
            )
        )
        run, events = self.start("weather?", client_tools=(ClientTool(name="weather"),))
        run_due(self.clock)
        result = self.successResultOf(run.result)
        self.assertEqual(result.stop_reason, "tool_calls")
        self.assertEqual(len(result.pending_tool_calls), 1)
        call = result.pending_tool_calls[0]
        self.assertEqual((call.id, call.name, call.arguments), ("c1", "weather", '{"city":"Oslo"}'))
        self.assertEqual([e for e in events if isinstance(e, ToolEvent)], [])
        self.assertEqual(self.transcript()[-1]["stopReason"], "toolUse")


class HistoryTests(RuntimeCase):
    def test_second_turn_carries_the_first(self) -> None:
        """The second model call on a session key carries the first turn."""
        self.provider.add("Hi, I am Main.", "You said hello.")
        run1, _ = self.start("hello")
        run_due(self.clock)
        run2, _ = self.start("what did I say?")
        run_due(self.clock)
        self.successResultOf(run2.result)
        first, second = self.provider.calls
        self.assertEqual([(m.role, m.content) for m in first.messages], [("user", "hello")])
        self.assertEqual(
            [(m.role, m.content) for m in second.messages],
            [("user", "hello"), ("assistant", "Hi, I am Main."), ("user", "what did I say?")],
        )
        self.assertEqual(run1.session_id, run2.session_id)

    def test_sessions_do_not_share_history(self) -> None:
        """Another key starts with no history."""
        self.start("hello")
        run_due(self.clock)
        self.start("fresh", key="agent:main:other")
        run_due(self.clock)
        self.assertEqual(len(self.provider.calls[1].messages), 1)

    def test_history_is_bounded(self) -> None:
        """Only the configured number of stored messages is sent."""
        self.runtime = self.make_runtime(self.config, history_limit=2)
        for n in range(3):
            self.start(f"m{n}")
            run_due(self.clock)
        self.assertEqual(
            [m.content for m in self.provider.calls[-1].messages], ["m1", "echo: m1", "m2"]
        )

    def test_turns_are_recorded_with_usage(self) -> None:
        """Each turn appends the user message and the assistant reply with usage."""
        self.provider.add(Reply.text("fine", usage=Usage(input=4, output=1, total=5)))
        run, _ = self.start("how are you?")
        run_due(self.clock)
        user, assistant = self.transcript()
        self.assertEqual(user["content"], "how are you?")
        self.assertEqual(assistant["content"], [{"type": "text", "text": "fine"}])
        self.assertEqual(assistant["usage"]["totalTokens"], 5)
        self.assertEqual(assistant["stopReason"], "stop")
        self.assertEqual((assistant["provider"], assistant["model"]), ("scripted", "m"))
        self.clock.advance(0)
        index = json.loads(
            (self.state_dir / "agents" / "main" / "sessions" / "sessions.json").read_text()
        )
        self.assertEqual(index[MAIN]["sessionId"], run.session_id)
        self.assertEqual(index[MAIN]["lastChannel"], "webchat")

    def test_keys_of_another_agent_are_stored_under_that_agent(self) -> None:
        """A run of beta on key agent:beta:x writes under agents/beta and uses beta's prompt."""
        run, _ = self.start("hi", agent="beta", key="agent:beta:x")
        run_due(self.clock)
        self.successResultOf(run.result)
        self.assertIn(
            "## Agent Instructions\nYou are Beta.\n", self.provider.calls[0].system_prompt or ""
        )
        self.assertIsNotNone(self.runtime.store.get_session("beta", "agent:beta:x"))
        self.assertIsNone(self.runtime.store.get_session("main", "agent:beta:x"))


class LaneTests(RuntimeCase):
    def test_same_key_runs_one_after_the_other(self) -> None:
        """A second run on a busy session key waits; the provider sees it only after
        the first run ended, and it carries the first turn."""
        self.provider.add(Reply.text("one", delay=5), Reply.text("two"))
        first, _ = self.start("a")
        second, _ = self.start("b")
        run_due(self.clock)
        self.assertEqual(len(self.provider.calls), 1)
        self.assertEqual(second.state, "queued")
        self.assertEqual(
            [r.run_id for r in self.runtime.active_runs(MAIN)], [first.run_id, second.run_id]
        )
        self.clock.advance(5)
        run_due(self.clock)
        self.assertEqual(self.successResultOf(first.result).text, "one")
        self.assertEqual(self.successResultOf(second.result).text, "two")
        self.assertEqual([m.content for m in self.provider.calls[1].messages], ["a", "one", "b"])

    def test_different_keys_run_concurrently(self) -> None:
        """Runs on different keys both reach the provider before either finishes."""
        self.provider.add(Reply.text("one", delay=5), Reply.text("two", delay=5))
        first, _ = self.start("a", key="agent:main:k1")
        second, _ = self.start("b", key="agent:main:k2")
        run_due(self.clock)
        self.assertEqual(len(self.provider.calls), 2)
        self.assertEqual((first.state, second.state), ("running", "running"))
        self.clock.advance(5)
        run_due(self.clock)
        self.successResultOf(first.result)
        self.successResultOf(second.result)

    def test_fifo_order_of_many_runs(self) -> None:
        """Queued runs on one key reach the provider in start order."""
        for n in range(4):
            self.provider.add(Reply.text(f"r{n}", delay=1))
            self.start(f"m{n}")
        for _ in range(4):
            run_due(self.clock)
            self.clock.advance(1)
        run_due(self.clock)
        self.assertEqual(
            [c.messages[-1].content for c in self.provider.calls], ["m0", "m1", "m2", "m3"]
        )
        self.assertEqual(len(self.runtime.lanes), 0)


class CancelTests(RuntimeCase):
    def test_cancel_before_start_never_calls_the_provider(self) -> None:
        """Cancelled before its first reactor turn, a run never reaches the provider,
        writes nothing, ends aborted and fails with RunAbortedError."""
        run, events = self.start()
        run.cancel()
        run.cancel()
        run_due(self.clock)
        self.assertEqual(self.provider.calls, [])
        self.failureResultOf(run.result, RunAbortedError)
        (end,) = events
        assert isinstance(end, LifecycleEvent)
        self.assertEqual((end.phase, end.aborted, end.stop_reason), ("end", True, "aborted"))
        self.assertEqual(run.status, "aborted")
        self.assertIsNone(self.runtime.store.get_session("main", MAIN))
        self.assertEqual(len(self.runtime.lanes), 0)

    def test_cancel_while_queued(self) -> None:
        """A run cancelled while waiting in its lane never calls the provider; the
        runs before and after it are unaffected."""
        self.provider.add(Reply.text("one", delay=5), Reply.text("three"))
        first, _ = self.start("a")
        second, _ = self.start("b")
        third, _ = self.start("c")
        run_due(self.clock)
        second.cancel()
        self.failureResultOf(second.result, RunAbortedError)
        self.clock.advance(5)
        run_due(self.clock)
        self.assertEqual([c.messages[-1].content for c in self.provider.calls], ["a", "c"])
        self.successResultOf(first.result)
        self.assertEqual(self.successResultOf(third.result).text, "three")

    def test_cancel_while_streaming(self) -> None:
        """Cancelling mid-stream stops the provider stream (closes upstream), fails the
        result with RunAbortedError, records the partial reply as aborted, and the
        next turn's history keeps the aborted turn's question with OpenClaw's
        failed-turn marker in place of its partial reply."""
        self.provider.add(Reply.text("partial ", "never", delay=1))
        run, events = self.start("long question")
        run_due(self.clock)
        self.clock.advance(1)
        self.assertEqual(run.text, "partial ")
        run.cancel()
        (stream,) = self.provider.streams
        self.assertTrue(stream.stopped)
        self.failureResultOf(run.result, RunAbortedError)
        end = events[-1]
        assert isinstance(end, LifecycleEvent)
        self.assertEqual((end.phase, end.aborted), ("end", True))
        self.clock.advance(10)
        self.assertEqual(stream.sent, ["partial "])
        _, assistant = self.transcript()
        self.assertEqual(assistant["stopReason"], "aborted")
        self.assertEqual(assistant["content"], [{"type": "text", "text": "partial "}])
        self.assertEqual(assistant["errorMessage"], "run aborted")
        self.start("next")
        run_due(self.clock)
        self.assertEqual(
            [(m.role, m.content) for m in self.provider.calls[1].messages],
            [("user", "long question"), ("assistant", FAILED_TURN_MARKER), ("user", "next")],
        )

    def test_cancel_after_the_end_is_a_no_op(self) -> None:
        """cancel, pause and resume after the end change nothing."""
        run, events = self.start()
        run_due(self.clock)
        count = len(events)
        run.cancel()
        run.pauseProducing()
        run.resumeProducing()
        self.assertEqual(run.status, "ok")
        self.assertEqual(len(events), count)
        self.successResultOf(run.result)

    def test_listener_cancelling_inside_start_event(self) -> None:
        """A listener may cancel the run from its lifecycle start event."""
        run = self.runtime.start(self.request())
        run.subscribe(lambda event: run.cancel())
        run_due(self.clock)
        self.assertEqual(self.provider.calls, [])
        self.failureResultOf(run.result, RunAbortedError)

    def test_listener_cancelling_on_first_delta(self) -> None:
        """A listener that cancels on the first delta stops the stream there."""
        self.provider.add(Reply.text("a", "b", "c"))
        run = self.runtime.start(self.request())
        run.subscribe(lambda e: run.cancel() if isinstance(e, AssistantEvent) else None)
        run_due(self.clock)
        self.assertEqual(self.provider.streams[0].sent, ["a"])
        self.assertTrue(self.provider.streams[0].stopped)
        self.failureResultOf(run.result, RunAbortedError)
        self.assertEqual(self.transcript()[-1]["stopReason"], "aborted")


class FlowControlTests(RuntimeCase):
    def test_pause_and_resume_reach_the_provider_stream(self) -> None:
        """pauseProducing stops the stream until resumeProducing."""
        self.provider.add(Reply.text("a", "b", "c", delay=1))
        run, _ = self.start()
        run_due(self.clock)
        self.clock.advance(1)
        run.pauseProducing()
        stream = self.provider.streams[0]
        self.assertTrue(stream.paused)
        self.clock.advance(10)
        self.assertEqual(run.text, "a")
        run.resumeProducing()
        self.assertFalse(stream.paused)
        self.clock.advance(1)
        self.clock.advance(1)
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).text, "abc")
        self.assertEqual((stream.pause_count, stream.resume_count), (1, 1))

    def test_pause_before_the_stream_starts(self) -> None:
        """A run paused before its model call holds the call until resumed."""
        self.provider.add(Reply.text("a", "b"))
        run, _ = self.start()
        run.pauseProducing()
        run_due(self.clock)
        self.assertEqual(self.provider.streams, [])
        self.assertTrue(run.paused)
        run.resumeProducing()
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).text, "ab")


class TimeoutTests(RuntimeCase):
    def test_request_timeout(self) -> None:
        """request.timeout_seconds bounds the run: the stream is stopped, the result
        fails with RunTimeoutError, lifecycle error, and the turn is recorded aborted."""
        self.provider.add(Reply(chunks=("thinking",), hang=True))
        run, events = self.start(timeout_seconds=5)
        result = run.result
        run_due(self.clock)
        self.clock.advance(4.9)
        self.assertNoResult(result)
        self.clock.advance(0.1)
        failure = self.failureResultOf(result, RunTimeoutError)
        self.assertIn("5s", str(failure.value))
        self.assertTrue(self.provider.streams[0].stopped)
        end = events[-1]
        assert isinstance(end, LifecycleEvent)
        self.assertEqual((end.phase, end.aborted), ("error", True))
        self.assertEqual(run.status, "timeout")
        assistant = self.transcript()[-1]
        self.assertEqual(assistant["stopReason"], "aborted")
        self.assertIn("timed out", assistant["errorMessage"])

    def test_agent_default_timeout(self) -> None:
        """Without a request timeout, agents.defaults.timeoutSeconds applies."""
        config = evolve(
            self.config,
            agents=evolve(
                self.config.agents,
                defaults=AgentDefaults(model_primary="scripted/m", timeout_seconds=30),
            ),
        )
        self.runtime = self.make_runtime(config)
        self.provider.add(Reply(hang=True))
        run, _ = self.start()
        result = run.result
        run_due(self.clock)
        self.clock.advance(29)
        self.assertNoResult(result)
        self.clock.advance(1)
        self.failureResultOf(result, RunTimeoutError)

    def test_zero_timeout_means_none(self) -> None:
        """timeout_seconds=0 disables the run timeout."""
        self.provider.add(Reply(hang=True))
        run, _ = self.start(timeout_seconds=0)
        result = run.result
        run_due(self.clock)
        self.clock.advance(10_000)
        self.assertNoResult(result)
        self.provider.streams[0].end()
        self.successResultOf(result)

    def test_timeout_clock_starts_when_the_run_starts(self) -> None:
        """Time spent queued behind another run does not count."""
        self.provider.add(Reply.text("slow", delay=8), Reply.text("ok", delay=4))
        first, _ = self.start(timeout_seconds=10)
        second, _ = self.start(timeout_seconds=5)
        run_due(self.clock)
        self.clock.advance(8)
        run_due(self.clock)
        self.successResultOf(first.result)
        self.clock.advance(4)
        run_due(self.clock)
        self.assertEqual(self.successResultOf(second.result).text, "ok")


class FailureTests(RuntimeCase):
    def test_provider_failure_is_recorded_as_failure(self) -> None:
        """A classified provider error fails the result with that error, emits
        lifecycle error, and is recorded (partial text, stopReason error), never as a
        reply: the next turn sees the question and OpenClaw's failed-turn marker."""
        error = ProviderError(
            FailureKind.RATE_LIMIT, "slow down", status=429, retry_after_seconds=3
        )
        self.provider.add(Reply.failure(error, "par"))
        run, events = self.start("q1")
        run_due(self.clock)
        failure = self.failureResultOf(run.result, ProviderError)
        self.assertIs(failure.value, error)
        end = events[-1]
        assert isinstance(end, LifecycleEvent)
        self.assertEqual((end.phase, end.error), ("error", "slow down"))
        self.assertEqual(run.status, "error")
        _, assistant = self.transcript()
        self.assertEqual(assistant["stopReason"], "error")
        self.assertEqual(assistant["errorMessage"], "slow down")
        self.assertEqual(assistant["content"], [{"type": "text", "text": "par"}])
        self.start("q2")
        run_due(self.clock)
        self.assertEqual(
            [m.content for m in self.provider.calls[1].messages], ["q1", FAILED_TURN_MARKER, "q2"]
        )

    def test_unexpected_stream_error(self) -> None:
        """A non-provider exception from the stream fails the run and is logged."""
        self.provider.add(Reply.failure(RuntimeError("bug")))
        run, _ = self.start()
        run_due(self.clock)
        self.failureResultOf(run.result, RuntimeError)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.transcript()[-1]["errorMessage"], "bug")

    def test_unknown_provider(self) -> None:
        """A model naming an unconfigured provider fails with a classified error
        naming it; the user turn is recorded with the error."""
        config = evolve(
            self.config,
            agents=AgentsConfig(defaults=AgentDefaults(model_primary="nowhere/m")),
        )
        self.runtime = self.make_runtime(config)
        run, _ = self.start()
        run_due(self.clock)
        failure = self.failureResultOf(run.result, ModelResolutionError)
        self.assertEqual(failure.value.kind, FailureKind.MODEL_NOT_FOUND)
        self.assertEqual(failure.value.code, "unknown_provider")
        self.assertIn("'nowhere'", failure.value.message)
        self.assertEqual(self.transcript()[-1]["stopReason"], "error")

    def test_provider_stream_raising_synchronously(self) -> None:
        """A provider whose stream() raises fails the run instead of the reactor."""

        class Broken:
            provider_id = "scripted"

            def stream(self, call: object, sink: object) -> Any:
                raise ValueError("cannot start")

        self.runtime = Runtime(self.config, clock=self.clock, providers={"scripted": Broken()})
        run, _ = self.start()
        run_due(self.clock)
        self.failureResultOf(run.result, ValueError)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_callable_provider_lookup(self) -> None:
        """providers may be a callable raising KeyError for unknown ids."""

        def lookup(provider_id: str) -> ScriptedProvider:
            if provider_id == "scripted":
                return self.provider
            raise KeyError(provider_id)

        self.runtime = Runtime(self.config, clock=self.clock, providers=lookup)
        run, _ = self.start()
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).text, "echo: hi")


class RuntimeApiTests(RuntimeCase):
    def test_unknown_agent(self) -> None:
        """start() raises UnknownAgentError for an agent that is not configured."""
        with self.assertRaises(UnknownAgentError):
            self.runtime.start(self.request(agent="ghost"))
        self.assertEqual(self.runtime.active_runs(), [])

    def test_agents(self) -> None:
        """default_agent_id and agent_ids come from the registry."""
        self.assertEqual(self.runtime.default_agent_id, "main")
        self.assertEqual(list(self.runtime.agent_ids), ["main", "beta"])

    def test_duplicate_active_run_id(self) -> None:
        """An active run id cannot be started twice."""
        self.start(run_id="same")
        with self.assertRaises(DuplicateRunError):
            self.start(run_id="same")

    def test_observers_get_every_run(self) -> None:
        """observe_runs listeners see each run as it starts, until they stop."""
        seen: list[str] = []
        stop = self.runtime.observe_runs(lambda run: seen.append(run.run_id))
        self.start(run_id="a")
        stop()
        self.start(run_id="b", key="agent:main:other")
        self.assertEqual(seen, ["a"])

    def test_get_run_keeps_recent_runs_bounded(self) -> None:
        """Finished runs stay available for agent.wait, up to a count and an age."""
        self.runtime = self.make_runtime(self.config, keep_finished=2, keep_finished_seconds=60)
        for name in ("a", "b", "c"):
            self.start(run_id=name)
            run_due(self.clock)
        self.assertIsNone(self.runtime.get_run("a"))
        run_b = self.runtime.get_run("b")
        assert run_b is not None
        self.assertEqual(run_b.status, "ok")
        self.clock.advance(61)
        self.assertIsNone(self.runtime.get_run("c"))
        self.assertIsNone(self.runtime.get_run("never"))

    def test_active_runs(self) -> None:
        """active_runs lists unfinished runs, optionally of one session."""
        self.provider.add(Reply(hang=True), Reply(hang=True))
        a, _ = self.start(run_id="a")
        self.start(run_id="b", key="agent:main:other")
        self.assertEqual([r.run_id for r in self.runtime.active_runs()], ["a", "b"])
        self.assertEqual([r.run_id for r in self.runtime.active_runs(MAIN)], ["a"])
        self.assertIs(self.runtime.get_run("a"), a)

    def test_shutdown_aborts_runs_and_refuses_new_ones(self) -> None:
        """shutdown cancels active runs (recorded as aborted), flushes the index and
        refuses later starts."""
        self.provider.add(Reply(chunks=("x",), hang=True))
        run, _ = self.start()
        run_due(self.clock)
        self.successResultOf(self.runtime.shutdown())
        self.failureResultOf(run.result, RunAbortedError)
        self.assertEqual(self.transcript()[-1]["stopReason"], "aborted")
        index = self.state_dir / "agents" / "main" / "sessions" / "sessions.json"
        self.assertIn(MAIN, json.loads(index.read_text()))
        with self.assertRaises(RuntimeClosedError):
            self.start()


class BuildRuntimeTests(SynchronousTestCase):
    def test_demo_model_without_provider_config(self) -> None:
        """build_runtime wires the real provider factory: demo/<anything> works with no
        models.providers entry, and shutdown closes the connection pool."""
        reactor = MemoryReactorClock()
        config = Config(
            agents=AgentsConfig(defaults=AgentDefaults(model_primary="demo/echo")),
            session=SessionConfig(fsync="never"),
            state_dir=Path(self.mktemp()),
        )
        runtime = build_runtime(config, reactor)
        run = runtime.start(
            AgentRequest(agent_id="main", session_key=MAIN, message="hello", run_id="r")
        )
        result = run.result
        run_due(reactor)
        self.assertIn('you said "hello"', self.successResultOf(result).text)
        self.successResultOf(runtime.shutdown())


class LoggingTests(RuntimeCase):
    """A turn logs nothing on success (the ingress writes the one access line)."""

    def test_successful_turn_logs_nothing(self) -> None:
        """No event at any level from the runtime, the run or the store."""
        self.provider.add(Reply.text("fine"))
        with capturedLogs() as events:
            run, _ = self.start()
            run_due(self.clock)
            self.assertEqual(run.status, "ok")
        self.assertEqual([e["log_format"] for e in events], [])

    def test_failed_turn_is_logged_once(self) -> None:
        """A failed run is logged at info with its status and error."""
        self.provider.add(Reply.failure(ProviderError(FailureKind.FORMAT, "busy")))
        with capturedLogs() as events:
            run, _ = self.start()
            run_due(self.clock)
        ours = [e for e in events if e.get("log_namespace") == "openclaw.agents.runtime"]
        self.assertEqual(len(ours), 1)
        self.assertEqual(ours[0]["log_level"], LogLevel.info)
        self.assertEqual(formatEvent(ours[0]), f"run {run.run_id} error: busy")
