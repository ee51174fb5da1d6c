"""The agent loop through the runtime: tools called, results fed back, recorded."""

from __future__ import annotations

import json

from attrs import evolve
from twisted.logger import capturedLogs, formatEvent

from openclaw.agents.types import (
    AgentLoopError,
    ClientTool,
    ClientToolConflictError,
    FailureKind,
    LifecycleEvent,
    ProviderError,
    Usage,
)
from openclaw.config.model import (
    AgentConfig,
    AgentDefaults,
    LoopDetectionConfig,
    ToolPolicyConfig,
    ToolsConfig,
)
from openclaw.testing import (
    Reply,
    ScriptedProvider,
    ScriptedToolCall,
    run_due,
    scripted_config,
    without_model_retry,
)
from tests.agent_loop_support import MAIN, LoopCase, call, tool_events


class ToolLoopTests(LoopCase):
    def test_write_then_read_then_answer(self) -> None:
        """The model writes notes/today.md, reads it back and answers: the file is
        in the workspace, each result reaches the next model call, and the
        transcript holds both calls and both results in OpenClaw's shapes."""
        self.provider.add(
            Reply(tool_calls=(call("write", "c1", path="notes/today.md", content="buy milk"),)),
            Reply(
                chunks=("Reading it back.",),
                tool_calls=(call("read", "c2", path="notes/today.md"),),
            ),
            Reply.text("It says: buy milk"),
        )
        run, events = self.start("write and read my notes")
        run_due(self.clock)
        result = self.successResultOf(run.result)
        self.assertEqual(result.stop_reason, "stop")
        self.assertEqual(result.pending_tool_calls, ())
        self.assertEqual(result.text, "Reading it back.\n\nIt says: buy milk")
        self.assertEqual((self.workspace / "notes" / "today.md").read_text(), "buy milk")

        first, second, third = self.provider.calls
        self.assertIn("write", [t.name for t in first.tools])
        self.assertEqual([m.role for m in second.messages], ["user", "assistant", "tool"])
        self.assertEqual(second.messages[1].tool_calls[0].name, "write")
        self.assertEqual(second.messages[2].tool_call_id, "c1")
        self.assertEqual(third.messages[-1].content, "buy milk")
        self.assertEqual(third.messages[-1].tool_call_id, "c2")

        messages = self.messages()
        self.assertEqual(
            [m["role"] for m in messages],
            ["user", "assistant", "toolResult", "assistant", "toolResult", "assistant"],
        )
        self.assertEqual(messages[1]["stopReason"], "toolUse")
        self.assertEqual(
            messages[1]["content"],
            [
                {
                    "type": "toolCall",
                    "id": "c1",
                    "name": "write",
                    "arguments": {"path": "notes/today.md", "content": "buy milk"},
                }
            ],
        )
        read_result = messages[4]
        self.assertEqual(read_result["toolCallId"], "c2")
        self.assertEqual(read_result["toolName"], "read")
        self.assertEqual(read_result["content"], [{"type": "text", "text": "buy milk"}])
        self.assertIs(read_result["isError"], False)
        self.assertIsInstance(read_result["timestamp"], int)
        self.assertEqual(messages[-1]["content"], [{"type": "text", "text": "It says: buy milk"}])
        self.assertEqual(
            tool_events(events),
            [
                ("start", "write", False),
                ("result", "write", False),
                ("start", "read", False),
                ("result", "read", False),
            ],
        )
        # chat.history shows the conversation; sessions_history's includeTools
        # asks the store for the tool results too.
        store = self.runtime.store
        shown = [m["role"] for m in store.read_messages("main", MAIN, 20)]
        self.assertEqual(shown, ["user", "assistant", "assistant", "assistant"])
        with_tools = store.read_messages("main", MAIN, 20, include_tools=True)
        self.assertEqual([m["role"] for m in with_tools], [m["role"] for m in messages])
        self.assertEqual(with_tools[4]["toolName"], "read")

    def test_each_assistant_message_carries_its_own_calls_usage(self) -> None:
        """A tool turn of two model calls: each assistant message holds its own
        call's usage (OpenClaw adds them up per message), the answer reports
        the turn's total, and the index keeps the turn's input/output with the
        last call's prompt as totalTokens (the context in use)."""
        self.provider.add(
            Reply(
                tool_calls=(call("write", "c1", path="a.txt", content="x"),),
                usage=Usage(input=12, output=1, total=13),
            ),
            Reply.text("written", usage=Usage(input=20, output=4, cache_read=5, total=29)),
        )
        run, _ = self.start("write")
        run_due(self.clock)
        result = self.successResultOf(run.result)
        self.assertEqual((result.usage.input, result.usage.output), (32, 5))
        step, answer = (m for m in self.messages() if m["role"] == "assistant")
        self.assertEqual((step["usage"]["input"], step["usage"]["output"]), (12, 1))
        self.assertEqual((answer["usage"]["input"], answer["usage"]["output"]), (20, 4))
        self.assertEqual(answer["usage"]["cacheRead"], 5)
        entry = self.runtime.store.get_session("main", MAIN)
        assert entry is not None
        self.assertEqual(entry.extra["inputTokens"], 32)
        self.assertEqual(entry.extra["outputTokens"], 5)
        self.assertEqual(entry.extra["totalTokens"], 25)

    def test_next_turn_replays_the_tool_steps(self) -> None:
        """A later turn sends the earlier turn's tool calls and results back to the
        model as assistant tool_calls followed by tool messages."""
        self.provider.add(
            Reply(tool_calls=(call("write", "c1", path="a.txt", content="x"),)),
            Reply.text("written"),
            Reply.text("yes"),
        )
        run, _ = self.start("write", run_id="r1")
        run_due(self.clock)
        self.successResultOf(run.result)
        run, _ = self.start("did you?", run_id="r2")
        run_due(self.clock)
        self.successResultOf(run.result)
        last = self.provider.calls[-1]
        self.assertEqual(
            [(m.role, m.tool_call_id) for m in last.messages],
            [
                ("user", None),
                ("assistant", None),
                ("tool", "c1"),
                ("assistant", None),
                ("user", None),
            ],
        )
        self.assertEqual(last.messages[1].tool_calls[0].id, "c1")

    def test_path_escape_is_a_tool_error(self) -> None:
        """write ../outside.txt is refused: the model reads an error result, nothing is
        written outside the workspace, and the turn goes on to an answer."""
        self.provider.add(
            Reply(tool_calls=(call("write", "c1", path="../outside.txt", content="x"),)),
            Reply.text("I cannot write there."),
        )
        run, events = self.start()
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).text, "I cannot write there.")
        self.assertFalse((self.state_dir / "outside.txt").exists())
        self.assertEqual(tool_events(events)[-1], ("result", "write", True))
        tool_message = self.provider.calls[1].messages[-1]
        self.assertEqual(tool_message.role, "tool")
        self.assertIn("outside", tool_message.content.lower())

    def test_private_address_fetch_is_refused(self) -> None:
        """web_fetch of a loopback URL is refused before any connection: the model
        reads why, and the turn goes on."""
        self.provider.add(
            Reply(tool_calls=(call("web_fetch", "c1", url="http://127.0.0.1:8080/admin"),)),
            Reply.text("That address is off limits."),
        )
        run, events = self.start()
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).text, "That address is off limits.")
        self.assertEqual(tool_events(events)[-1], ("result", "web_fetch", True))
        refusal = self.provider.calls[1].messages[-1].content
        self.assertIn("127.0.0.1", refusal)
        self.assertIn("blocked", refusal.lower())

    def test_malformed_arguments_are_a_tool_error(self) -> None:
        """Arguments that are not JSON are answered with an error the model can read."""
        self.provider.add(
            Reply(tool_calls=(ScriptedToolCall(name="read", arguments="{path: x", id="c1"),)),
            Reply.text("sorry"),
        )
        run, events = self.start()
        run_due(self.clock)
        self.successResultOf(run.result)
        tool_message = self.provider.calls[1].messages[-1]
        self.assertTrue(tool_message.content.startswith("Invalid arguments for read: "))
        self.assertEqual(tool_events(events), [("start", "read", False), ("result", "read", True)])
        self.assertIs(self.messages()[2]["isError"], True)

    def test_unknown_tool_is_a_tool_error(self) -> None:
        """A tool the agent does not have is answered, not run."""
        self.provider.add(Reply(tool_calls=(call("browser", "c1"),)), Reply.text("ok"))
        run, _ = self.start()
        run_due(self.clock)
        self.successResultOf(run.result)
        self.assertEqual(
            self.provider.calls[1].messages[-1].content,
            "Tool browser is not available to this agent.",
        )


class PolicyTests(LoopCase):
    def test_denied_tool_schema_is_never_sent_and_a_call_is_refused(self) -> None:
        """tools.deny: exec's schema is not offered; a call to it anyway is refused."""
        config = evolve(
            scripted_config(self.state_dir),
            tools=ToolsConfig(policy=ToolPolicyConfig(deny=("exec", "process"))),
        )
        self.make_runtime(config)
        self.provider.add(Reply(tool_calls=(call("exec", "c1", command="id"),)), Reply.text("ok"))
        run, _ = self.start()
        run_due(self.clock)
        self.successResultOf(run.result)
        offered = [t.name for t in self.provider.calls[0].tools]
        self.assertNotIn("exec", offered)
        self.assertIn("read", offered)
        self.assertIn("not available", self.provider.calls[1].messages[-1].content)

    def test_client_tool_named_like_a_builtin_is_refused(self) -> None:
        """A client tool called "read" cannot shadow the built-in: start() raises."""
        with self.assertRaises(ClientToolConflictError):
            self.start(client_tools=(ClientTool(name="read"),))
        self.assertEqual(self.provider.calls, [])

    def test_prompt_comes_from_the_workspace(self) -> None:
        """The workspace is created with starter files on first use; AGENTS.md is in
        the prompt, and the client's system text is an extra section after it."""
        run, _ = self.start(extra_system_prompt="Answer in French.")
        run_due(self.clock)
        self.successResultOf(run.result)
        self.assertTrue((self.workspace / "AGENTS.md").exists())
        prompt = self.provider.calls[0].system_prompt or ""
        self.assertIn("## Tooling", prompt)
        self.assertIn("AGENTS.md", prompt)
        self.assertIn(f"Working directory: {self.workspace.absolute()}", prompt)
        self.assertGreater(prompt.index("Answer in French."), prompt.index("AGENTS.md"))


class MixedToolsTests(LoopCase):
    def test_builtin_calls_run_before_client_calls_end_the_turn(self) -> None:
        """A step calling a built-in and a client tool: the built-in runs, the turn
        ends with the client call pending, and the transcript has the assistant
        message with both calls followed by the built-in's result."""
        self.provider.add(
            Reply(
                tool_calls=(
                    call("write", "c1", path="w.txt", content="x"),
                    call("weather", "c2", city="Oslo"),
                )
            )
        )
        run, _ = self.start(client_tools=(ClientTool(name="weather"),))
        run_due(self.clock)
        result = self.successResultOf(run.result)
        self.assertEqual(result.stop_reason, "tool_calls")
        self.assertEqual([c.name for c in result.pending_tool_calls], ["weather"])
        self.assertTrue((self.workspace / "w.txt").exists())
        messages = self.messages()
        self.assertEqual([m["role"] for m in messages], ["user", "assistant", "toolResult"])
        self.assertEqual([b["name"] for b in messages[1]["content"]], ["write", "weather"])
        self.assertEqual(messages[2]["toolCallId"], "c1")

        # The next turn replays the built-in call with its result, and the
        # client call as text (its answer comes in the user's message).
        self.provider.add(Reply.text("It is sunny."))
        second, _ = self.start("weather: sunny", run_id="run-2")
        run_due(self.clock)
        self.successResultOf(second.result)
        sent = self.provider.calls[-1].messages
        self.assertEqual([m.role for m in sent], ["user", "assistant", "tool", "user"])
        self.assertEqual([c.id for c in sent[1].tool_calls], ["c1"])
        self.assertIn("tool_call id=c2 name=weather", sent[1].content)
        self.assertEqual(sent[2].tool_call_id, "c1")


class CutOffStepTests(LoopCase):
    def test_a_step_cut_off_by_the_output_cap_runs_no_tool(self) -> None:
        """A step that ended for length may hold a half-written tool call: no
        tool runs, none is returned to the client, the turn ends "length"."""
        self.provider.add(
            Reply(
                chunks=("Writing it",),
                tool_calls=(call("write", "c1", path="w.txt", content="x"),),
                stop_reason="length",
            )
        )
        run, events = self.start(client_tools=(ClientTool(name="weather"),))
        run_due(self.clock)
        result = self.successResultOf(run.result)
        self.assertEqual((result.stop_reason, result.pending_tool_calls), ("length", ()))
        self.assertFalse((self.workspace / "w.txt").exists())
        self.assertEqual(tool_events(events), [])


class LoopingModelTests(LoopCase):
    def test_step_limit_ends_a_model_that_never_answers(self) -> None:
        """A model that calls tools forever is stopped at the step limit with
        AgentLoopError, and the turn is recorded as failed."""
        self.provider = ScriptedProvider(
            clock=self.clock,
            fallback=lambda _call: Reply(tool_calls=(call("read", "c", path="x"),)),
        )
        self.make_runtime(scripted_config(self.state_dir), max_steps=4)
        run, events = self.start()
        run_due(self.clock)
        error = self.failureResultOf(run.result, AgentLoopError).value
        self.assertIn("4 model calls", str(error))
        self.assertEqual(len(self.provider.calls), 4)
        self.assertEqual(self.messages()[-1]["stopReason"], "error")
        end = [e for e in events if isinstance(e, LifecycleEvent)][-1]
        self.assertEqual(end.phase, "error")

    def test_loop_detection_blocks_then_aborts(self) -> None:
        """With tools.loopDetection enabled, identical calls are blocked at the
        critical threshold (the model is told), and the run ends when it persists."""
        self.provider = ScriptedProvider(
            clock=self.clock,
            fallback=lambda _call: Reply(tool_calls=(call("read", "c", path="x"),)),
        )
        loop = LoopDetectionConfig(
            enabled=True,
            warning_threshold=2,
            critical_threshold=3,
            global_circuit_breaker_threshold=50,
        )
        config = evolve(scripted_config(self.state_dir), tools=ToolsConfig(loop_detection=loop))
        self.make_runtime(config)
        run, _ = self.start()
        run_due(self.clock)
        error = self.failureResultOf(run.result, AgentLoopError).value
        self.assertIn("persisted", str(error))
        results = [m for m in self.messages() if m["role"] == "toolResult"]
        self.assertTrue(any(r["isError"] for r in results))
        self.assertLess(len(self.provider.calls), 10)


class UpstreamFailureTests(LoopCase):
    def test_failure_after_a_tool_step_fails_the_run(self) -> None:
        """An upstream failing on the call after a tool step: the run fails with the
        provider error; the tool step and its result stay in the transcript."""
        self.provider.add(
            Reply(tool_calls=(call("write", "c1", path="a.txt", content="x"),)),
            Reply.failure(ProviderError(FailureKind.SERVER_ERROR, "upstream broke", status=502)),
        )
        self.make_runtime(without_model_retry(scripted_config(self.state_dir)))
        run, _ = self.start()
        run_due(self.clock)
        error = self.failureResultOf(run.result, ProviderError).value
        self.assertEqual(error.status, 502)
        roles = [(m["role"], m.get("stopReason")) for m in self.messages()]
        self.assertEqual(
            roles,
            [
                ("user", None),
                ("assistant", "toolUse"),
                ("toolResult", None),
                ("assistant", "error"),
            ],
        )

    def test_fallback_model_answers_after_a_tool_step(self) -> None:
        """With a fallback configured and no text sent yet, the fallback model takes
        the failed step over, and the end event names it."""
        backup = ScriptedProvider(
            [Reply.text("from backup")], clock=self.clock, provider_id="backup"
        )
        config = scripted_config(self.state_dir)
        config = evolve(
            config,
            agents=evolve(
                config.agents,
                defaults=AgentDefaults(
                    model_primary="scripted/test-model", model_fallbacks=("backup/b1",)
                ),
            ),
        )
        self.make_runtime(without_model_retry(config), providers={"backup": backup})
        self.provider.add(
            Reply(tool_calls=(call("write", "c1", path="a.txt", content="x"),)),
            Reply.failure(ProviderError(FailureKind.RATE_LIMIT, "slow down", status=429)),
        )
        run, events = self.start()
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run.result).text, "from backup")
        self.assertEqual(backup.calls[0].messages[-1].role, "tool")
        end = [e for e in events if isinstance(e, LifecycleEvent)][-1]
        self.assertEqual((end.provider, end.model), ("backup", "b1"))
        self.assertEqual(self.messages()[-1]["model"], "b1")

    def test_no_fallback_once_text_reached_the_client(self) -> None:
        """A failure after streamed text is reported, not answered by the fallback."""
        backup = ScriptedProvider([Reply.text("never")], clock=self.clock, provider_id="backup")
        config = scripted_config(self.state_dir)
        config = evolve(
            config,
            agents=evolve(
                config.agents,
                defaults=AgentDefaults(
                    model_primary="scripted/test-model", model_fallbacks=("backup/b1",)
                ),
            ),
        )
        self.make_runtime(config, providers={"backup": backup})
        self.provider.add(
            Reply.failure(ProviderError(FailureKind.SERVER_ERROR, "boom", status=500), "partial")
        )
        run, _ = self.start()
        run_due(self.clock)
        self.failureResultOf(run.result, ProviderError)
        self.assertEqual(backup.calls, [])
        self.assertEqual(self.messages()[-1]["content"], [{"type": "text", "text": "partial"}])


class BackpressureTests(LoopCase):
    def test_pause_holds_the_next_model_call(self) -> None:
        """Paused while a tool runs, the run makes no further model call until resumed."""
        self.provider.add(
            Reply(tool_calls=(call("write", "c1", path="a.txt", content="x"),)),
            Reply.text("done"),
        )
        self.start()
        run_due(self.clock)
        # The tool step ran; pausing now holds the second call.
        self.assertEqual(len(self.provider.calls), 2)
        self.provider.add(Reply(tool_calls=(call("read", "c2", path="a.txt"),)), Reply.text("z"))
        run2, _ = self.start(run_id="run-2")
        run2.pauseProducing()
        run_due(self.clock)
        self.assertEqual(len(self.provider.calls), 2)
        run2.resumeProducing()
        run_due(self.clock)
        self.assertEqual(self.successResultOf(run2.result).text, "z")
        self.assertEqual(len(self.provider.calls), 4)


class TranscriptSessionTests(LoopCase):
    def test_session_tools_see_this_session(self) -> None:
        """session_status runs against the real store and reports the session."""
        self.provider.add(Reply(tool_calls=(call("session_status", "c1"),)), Reply.text("ok"))
        run, _ = self.start()
        run_due(self.clock)
        self.successResultOf(run.result)
        status = self.provider.calls[1].messages[-1].content
        self.assertIn(MAIN, json.dumps(json.loads(status)) if status.startswith("{") else status)

    def test_session_status_tells_the_time_in_the_users_zone(self) -> None:
        """The prompt gives the date only and points at session_status for the
        time; session_status tells it in agents.defaults.userTimezone, as
        OpenClaw's status card does."""
        config = self.runtime.config
        self.make_runtime(
            evolve(
                config,
                agents=evolve(
                    config.agents,
                    defaults=evolve(config.agents.defaults, user_timezone="Asia/Tokyo"),
                ),
            )
        )
        self.provider.add(Reply(tool_calls=(call("session_status", "c1"),)), Reply.text("ok"))
        run, _ = self.start()
        run_due(self.clock)
        self.successResultOf(run.result)
        prompt = self.provider.calls[0].system_prompt
        self.assertIn("Current date: 2023-11-15 (Wednesday)", prompt)
        self.assertIn("For the exact current time, use `session_status`.", prompt)
        self.assertNotIn("7:13", prompt)
        status = self.provider.calls[1].messages[-1].content
        self.assertEqual(
            status.splitlines()[0], "Time: Wednesday, November 15th, 2023 - 7:13 AM (Asia/Tokyo)"
        )


class ReconfigureTests(LoopCase):
    def test_new_runs_use_the_new_config(self) -> None:
        """reconfigure: the next run offers only what the new tool policy allows and
        follows the new agent prompt; a run already going keeps its own."""
        self.provider.add(Reply(chunks=("one",), delay=5), "two")
        running, _ = self.start(run_id="r1")
        run_due(self.clock)
        config = evolve(
            self.runtime.config,
            tools=ToolsConfig(policy=ToolPolicyConfig(deny=("group:runtime",))),
            agents=evolve(
                self.runtime.config.agents,
                list=(AgentConfig(id="main", system_prompt="You are Reloaded."),),
            ),
        )
        self.runtime.reconfigure(config)
        self.clock.advance(5)
        self.assertEqual(self.successResultOf(running.result).text, "one")
        later, _ = self.start(run_id="r2")
        run_due(self.clock)
        self.successResultOf(later.result)
        first, second = self.provider.calls
        self.assertIn("exec", [t.name for t in first.tools])
        self.assertNotIn("exec", [t.name for t in second.tools])
        self.assertIn("You are Reloaded.", second.system_prompt or "")

    def test_logs_agents_only_when_they_changed(self) -> None:
        """A reload that changes no agent or model says nothing about agents."""
        with capturedLogs() as events:
            self.runtime.reconfigure(evolve(self.runtime.config, tools=ToolsConfig()))
            self.runtime.reconfigure(
                evolve(
                    self.runtime.config,
                    agents=evolve(self.runtime.config.agents, list=(AgentConfig(id="ops"),)),
                )
            )
        said = [formatEvent(e) for e in events if "agents reconfigured" in formatEvent(e)]
        self.assertEqual(said, ["agents reconfigured: ops"])
