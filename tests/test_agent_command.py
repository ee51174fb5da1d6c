"""``openclaw agent --local``: one turn through the runtime, streamed or as JSON."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import FailureKind, ProviderError, Usage
from openclaw.cli.agent_command import AgentCommandOptions, run_agent_command
from openclaw.config.model import (
    AgentConfig,
    AgentDefaults,
    AgentsConfig,
    Config,
    SessionConfig,
)
from openclaw.testing import Reply, ScriptedProvider, ScriptedToolCall, make_runtime, run_due


class AgentCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.provider = ScriptedProvider(clock=self.clock)
        self.config = Config(
            agents=AgentsConfig(
                defaults=AgentDefaults(model_primary="scripted/m"),
                list=(AgentConfig(id="main", default=True), AgentConfig(id="beta")),
            ),
            session=SessionConfig(fsync="never"),
            state_dir=Path(self.mktemp()),
        )
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()

    def start_command(self, options: Any) -> list[int]:
        """Start the command on the clock; the list gets its exit code."""
        codes: list[int] = []
        run_agent_command(
            self.config,
            options,
            self.clock,
            self.stdout,
            self.stderr,
            providers={"scripted": self.provider},
        ).addCallback(codes.append)
        return codes

    def run_command(self, options: Any) -> int:
        """Run the command until nothing is due; its exit code."""
        codes = self.start_command(options)
        run_due(self.clock)
        (code,) = codes
        return code

    def test_streams_the_reply_to_stdout(self) -> None:
        """The reply is written piece by piece as it arrives, ending with a newline."""
        self.provider.add(Reply.text("Hello", " from", " the model", delay=1))
        codes: list[int] = []
        run_agent_command(
            self.config,
            AgentCommandOptions(message="hi"),
            self.clock,
            self.stdout,
            self.stderr,
            providers={"scripted": self.provider},
        ).addCallback(codes.append)
        run_due(self.clock)
        self.clock.advance(1)
        self.assertEqual(self.stdout.getvalue(), "Hello")
        self.clock.advance(1)
        self.clock.advance(1)
        run_due(self.clock)
        self.assertEqual(codes, [0])
        self.assertEqual(self.stdout.getvalue(), "Hello from the model\n")
        self.assertEqual(self.stderr.getvalue(), "")

    def test_tool_activity_goes_to_stderr(self) -> None:
        """A turn that calls a built-in tool: stderr shows the call and its outcome,
        stdout only the reply; the file is in the agent's workspace."""
        write = ScriptedToolCall(
            name="write", arguments='{"path": "n.md", "content": "x"}', id="c1"
        )
        self.provider.add(Reply(tool_calls=(write,)), Reply.text("Saved."))
        self.assertEqual(self.run_command(AgentCommandOptions(message="save")), 0)
        self.assertEqual(self.stdout.getvalue(), "Saved.\n")
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(lines[0], '[tool] write {"path": "n.md", "content": "x"}')
        self.assertTrue(lines[1].startswith("[tool] write ok: "), lines)
        self.assertEqual((self.config.state_dir / "workspace" / "n.md").read_text(), "x")

    def test_json_prints_the_final_result_object(self) -> None:
        """--json prints OpenClaw's final agent payload and nothing while streaming."""
        self.provider.add(Reply.text("Hi", " there", usage=Usage(input=3, output=2, total=5)))
        code = self.run_command(AgentCommandOptions(message="hi", json=True))
        self.assertEqual(code, 0)
        payload = json.loads(self.stdout.getvalue())
        self.assertEqual(payload["status"], "ok")
        self.assertEqual(payload["summary"], "completed")
        self.assertEqual(payload["result"]["payloads"], [{"text": "Hi there", "mediaUrl": None}])
        meta = payload["result"]["meta"]
        self.assertEqual(meta["agentMeta"]["agentId"], "main")
        self.assertEqual(meta["agentMeta"]["sessionKey"], "agent:main:main")
        self.assertEqual(
            meta["usage"], {"input": 3, "output": 2, "cacheRead": 0, "cacheWrite": 0, "total": 5}
        )
        self.assertEqual(meta["stopReason"], "stop")
        self.assertTrue(meta["agentMeta"]["sessionId"])
        # The model that answered, as in OpenClaw's agentMeta.
        self.assertEqual(
            (meta["agentMeta"]["provider"], meta["agentMeta"]["model"]), ("scripted", "m")
        )
        self.assertTrue(payload["runId"])

    def test_default_session_is_the_agents_main_session(self) -> None:
        """Without --session-key two invocations continue agent:<id>:main."""
        self.assertEqual(self.run_command(AgentCommandOptions(message="first")), 0)
        self.assertEqual(self.run_command(AgentCommandOptions(message="second")), 0)
        second = self.provider.calls[1]
        self.assertEqual([m.content for m in second.messages], ["first", "echo: first", "second"])
        index = self.config.state_dir / "agents" / "main" / "sessions" / "sessions.json"
        self.assertEqual(list(json.loads(index.read_text())), ["agent:main:main"])

    def test_agent_and_session_key_options(self) -> None:
        """--agent picks the agent; --session-key is scoped to it unless it names
        its own agent."""
        self.run_command(AgentCommandOptions(message="a", agent="beta", json=True))
        meta = json.loads(self.stdout.getvalue())["result"]["meta"]["agentMeta"]
        self.assertEqual((meta["agentId"], meta["sessionKey"]), ("beta", "agent:beta:main"))
        self.stdout = io.StringIO()
        self.run_command(AgentCommandOptions(message="b", session_key="Work", json=True))
        meta = json.loads(self.stdout.getvalue())["result"]["meta"]["agentMeta"]
        self.assertEqual((meta["agentId"], meta["sessionKey"]), ("main", "agent:main:work"))
        self.stdout = io.StringIO()
        self.run_command(AgentCommandOptions(message="c", session_key="agent:beta:x", json=True))
        meta = json.loads(self.stdout.getvalue())["result"]["meta"]["agentMeta"]
        self.assertEqual((meta["agentId"], meta["sessionKey"]), ("beta", "agent:beta:x"))

    def test_failure_is_one_line_on_stderr_and_exit_1(self) -> None:
        """A provider failure exits 1 with one error line naming the failure class."""
        self.provider.add(
            Reply.failure(ProviderError(FailureKind.AUTH, "bad key\nreally", status=401), "x")
        )
        self.assertEqual(self.run_command(AgentCommandOptions(message="hi")), 1)
        self.assertEqual(
            self.stderr.getvalue(), "error: model request failed (auth, HTTP 401): bad key really\n"
        )
        self.assertEqual(self.stdout.getvalue(), "x\n")

    def test_failure_with_json(self) -> None:
        """With --json a failure also prints an error payload."""
        self.provider.add(Reply.failure(ProviderError(FailureKind.FORMAT, "down")))
        self.assertEqual(self.run_command(AgentCommandOptions(message="hi", json=True)), 1)
        payload = json.loads(self.stdout.getvalue())
        self.assertEqual(payload["status"], "error")
        self.assertIn("down", payload["summary"])

    def test_unknown_agent_and_bad_key(self) -> None:
        """An unknown agent or a reserved session key exits 1 before any model call."""
        self.assertEqual(self.run_command(AgentCommandOptions(message="hi", agent="ghost")), 1)
        self.assertEqual(self.stderr.getvalue(), "error: unknown agent 'ghost'\n")
        self.stderr = io.StringIO()
        code = self.run_command(AgentCommandOptions(message="hi", session_key="cron:x"))
        self.assertEqual(code, 1)
        self.assertIn("invalid session key", self.stderr.getvalue())
        self.stderr = io.StringIO()
        self.assertEqual(self.run_command(AgentCommandOptions(message="  ")), 1)
        self.assertIn("message is required", self.stderr.getvalue())
        self.assertEqual(self.provider.calls, [])

    def test_timeout_option(self) -> None:
        """--timeout bounds the run; a timeout exits 1."""
        self.provider.add(Reply(chunks=("slow",), hang=True))
        codes = self.start_command(AgentCommandOptions(message="hi", timeout=2))
        run_due(self.clock)
        self.clock.advance(1.9)
        self.assertEqual(codes, [])
        self.clock.advance(0.1)
        run_due(self.clock)
        self.assertEqual(codes, [1])
        self.assertEqual(self.stderr.getvalue(), "error: run timed out after 2s\n")
        self.assertEqual(self.stdout.getvalue(), "slow\n")

    def test_cancel_aborts_the_run(self) -> None:
        """Cancelling the returned Deferred (Ctrl-C) aborts the run, closes upstream
        and fires with exit code 1 once the aborted turn is recorded."""
        self.provider.add(Reply(chunks=("partial",), hang=True))
        d = run_agent_command(
            self.config,
            AgentCommandOptions(message="hi"),
            self.clock,
            self.stdout,
            self.stderr,
            providers={"scripted": self.provider},
        )
        run_due(self.clock)
        d.cancel()
        self.assertEqual(self.successResultOf(d), 1)
        self.assertTrue(self.provider.streams[0].stopped)
        self.assertIn("error: run aborted", self.stderr.getvalue())

    def test_existing_runtime_is_not_shut_down(self) -> None:
        """With a runtime passed in, the command uses it and leaves it running."""
        runtime = make_runtime(self.config, clock=self.clock, providers={"scripted": self.provider})
        codes: list[int] = []
        run_agent_command(
            self.config,
            AgentCommandOptions(message="hi"),
            self.clock,
            self.stdout,
            self.stderr,
            runtime=runtime,
        ).addCallback(codes.append)
        run_due(self.clock)
        self.assertEqual(codes, [0])
        run_agent_command(
            self.config,
            AgentCommandOptions(message="again"),
            self.clock,
            self.stdout,
            self.stderr,
            runtime=runtime,
        ).addCallback(codes.append)
        run_due(self.clock)
        self.assertEqual(codes, [0, 0])


class OptionsTests(SynchronousTestCase):
    def test_from_argparse_namespace(self) -> None:
        """The CLI's argparse namespace (agent_id, session_key, json, timeout) is accepted."""
        ns = argparse.Namespace(
            message="hi", agent_id="beta", session_key="k", json=True, timeout=5, local=True
        )
        self.assertEqual(
            AgentCommandOptions.coerce(ns),
            AgentCommandOptions(
                message="hi", agent="beta", session_key="k", json=True, timeout=5.0
            ),
        )

    def test_from_mapping(self) -> None:
        """A usage.Options-style mapping with dashed names is accepted."""
        opts = AgentCommandOptions.coerce({"message": "hi", "session-key": "k", "json": None})
        self.assertEqual(opts, AgentCommandOptions(message="hi", session_key="k"))
        same = AgentCommandOptions(message="x")
        self.assertIs(AgentCommandOptions.coerce(same), same)
