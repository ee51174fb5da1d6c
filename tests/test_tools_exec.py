"""exec + process against real subprocesses (real reactor, loopback nothing)."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.agents.tools._proc import OutputBuffer, ProcessRegistry
from openclaw.agents.tools.base import ToolContext, ToolResult
from openclaw.agents.tools.exec import ExecTool
from openclaw.agents.tools.exec_env import build_env
from openclaw.agents.tools.exec_policy import ApprovalRequest
from openclaw.agents.tools.limits import ExecLimits
from openclaw.agents.tools.policy import ExecPolicy
from openclaw.agents.tools.process import ProcessTool

FULL = ExecPolicy(security="full", ask="off")
SECRET = "gw-token-123456"
BASE_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "OPENCLAW_GATEWAY_TOKEN": SECRET,
    "OPENAI_API_KEY": "sk-provider-key",
    "INNOCENT_NAME": SECRET,
    "AWS_SECRET_ACCESS_KEY": "aws",
}


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kill_quietly(pid: int) -> None:
    """SIGKILL a process this test started, if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class ExecTests(TestCase):
    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.ws = os.path.realpath(self.mktemp())
        os.makedirs(os.path.join(self.ws, "sub"))
        self.updates: list[str] = []
        self.ctx = ToolContext(
            agent_id="main",
            session_key="agent:main:main",
            run_id="r1",
            tool_call_id="c1",
            workspace=FilePath(self.ws),
            on_update=self.updates.append,
        )
        self.registry = ProcessRegistry(reactor)
        self.tool = self.make()
        self.process = ProcessTool(reactor, self.registry)
        self.addCleanup(lambda: Deferred.fromCoroutine(self._cleanup()))

    async def _cleanup(self) -> None:
        self.tool.stop_all()
        for d in self.registry.stop_all():
            await d

    def make(self, **kw: Any) -> ExecTool:
        kw.setdefault("policy", FULL)
        kw.setdefault("base_env", BASE_ENV)
        kw.setdefault("secrets", [SECRET, "sk-provider-key"])
        return ExecTool(self.reactor, self.registry, **kw)  # type: ignore[arg-type]

    async def call(self, tool: Any, **args: Any) -> ToolResult:
        result: ToolResult = await tool.run(args, self.ctx)
        return result

    async def test_foreground_output_and_exit_code(self) -> None:
        """stdout and stderr are merged; a non-zero exit is a completed call (OpenClaw:
        not a tool error) with the code in the text and in details."""
        res = await self.call(self.tool, command="echo out; echo err >&2; exit 3")
        self.assertEqual(res.content, "out\nerr\n\n\n(Command exited with code 3)")
        self.assertFalse(res.is_error)
        self.assertEqual((res.details["status"], res.details["exitCode"]), ("completed", 3))
        self.assertIn("out\n", "".join(self.updates))
        ok = await self.call(self.tool, command="printf ok")
        self.assertEqual(
            (ok.content, ok.is_error, ok.details["status"]), ("ok", False, "completed")
        )
        quiet = await self.call(self.tool, command="exit 1")
        self.assertEqual(
            (quiet.content, quiet.is_error), ("(no output)\n\n(Command exited with code 1)", False)
        )

    async def test_command_not_found_and_not_executable_fail(self) -> None:
        """Exit 127 and 126 are the shell failing to run the command: failed, with
        OpenClaw's words after the shell's own message."""
        missing = await self.call(self.tool, command="no-such-command-xyz")
        self.assertTrue(missing.is_error)
        self.assertEqual((missing.details["status"], missing.details["exitCode"]), ("failed", 127))
        self.assertIn("no-such-command-xyz", missing.content)
        self.assertTrue(missing.content.endswith("\n\nCommand not found"), missing.content)
        with open(os.path.join(self.ws, "script"), "w") as f:
            f.write("#!/bin/sh\n")
        denied = await self.call(self.tool, command="./script")
        self.assertTrue(denied.is_error)
        self.assertTrue(
            denied.content.endswith("\n\nCommand not executable (permission denied)"),
            denied.content,
        )

    async def test_pty_warning_comes_first(self) -> None:
        """pty: true runs without a terminal and says so in front of the output."""
        res = await self.call(self.tool, command="echo hi", pty=True)
        self.assertEqual(
            res.content,
            "Warning: pty is not supported on this gateway; the command ran without a "
            "terminal.\n\nhi\n",
        )
        self.assertEqual(len(res.details["warnings"]), 1)
        bg = await self.call(self.tool, command="sleep 1000", pty=True, background=True)
        self.assertTrue(bg.content.startswith("Warning: pty is not supported"), bg.content)
        self.assertIn("\n\nCommand still running (session ", bg.content)

    async def test_own_process_group(self) -> None:
        """The shell is its own process-group leader (pid == pgid), distinct from ours."""
        res = await self.call(self.tool, command="echo $$; cut -d' ' -f5 /proc/$$/stat")
        pid, pgid = res.content.split()
        self.assertEqual(pid, pgid)
        self.assertEqual(int(pid), res.details["pid"])
        self.assertNotEqual(int(pgid), os.getpgid(0))
        wrapped = self.make(setsid_path="")  # no util-linux setsid: the Python wrapper
        res = await self.call(wrapped, command="echo $$; cut -d' ' -f5 /proc/$$/stat")
        pid, pgid = res.content.split()
        self.assertEqual(pid, pgid)

    async def test_a_new_session_escapes_the_group_but_not_the_call(self) -> None:
        """A child started with setsid leaves the group: the group kill cannot
        reach it (documented), but it no longer keeps the call "running" by
        holding the output pipe: once the shell exits and the grace period
        passes, the call completes with the shell's output."""
        tool = self.make(limits=ExecLimits(kill_grace_seconds=0.2))
        # The shell waits (polling /proc) until the child has its own session.
        command = (
            "setsid sleep 1000 & p=$!; "
            'until [ "$(cut -d" " -f6 /proc/$p/stat)" = "$p" ]; do :; done; echo $p'
        )
        res = await self.call(tool, command=command, yieldMs=60_000)
        escaped = int(res.content.split()[0])
        self.addCleanup(kill_quietly, escaped)
        self.assertEqual(res.details["status"], "completed", res.content)
        self.assertTrue(alive(escaped))  # the limitation tools.md states
        await tool.when_idle()

    async def _cancel_kills_group(self, tool: ExecTool) -> None:
        updates: list[str] = []
        seen: Deferred[None] = Deferred()

        def update(text: str) -> None:
            updates.append(text)
            if "\n" in "".join(updates) and not seen.called:
                seen.callback(None)

        ctx = ToolContext("main", "k", "r", "c", FilePath(self.ws), on_update=update)
        d = tool.run({"command": "sleep 1000 & echo $!; wait"}, ctx)
        await seen
        grandchild = int("".join(updates).split()[0])
        self.assertTrue(alive(grandchild))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        await tool.when_idle()
        self.assertFalse(alive(grandchild))

    async def test_cancel_kills_the_whole_group(self) -> None:
        """Cancelling a foreground exec kills its grandchildren too (process group gone)."""
        await self._cancel_kills_group(self.tool)

    async def test_cancel_after_approval_kills_the_whole_group(self) -> None:
        """Cancelling reaches the process even when the command ran after an approval."""
        policy = ExecPolicy(security="allowlist", ask="always")
        await self._cancel_kills_group(self.make(policy=policy, approver=lambda _r: succeed(True)))

    async def test_cancel_while_awaiting_approval_withdraws_it(self) -> None:
        """Cancelling while the operator has not answered cancels the approval request."""
        withdrawn: list[str] = []

        def approver(request: ApprovalRequest) -> Deferred[bool]:
            return Deferred(lambda _d: withdrawn.append(request.id))

        tool = self.make(policy=ExecPolicy(security="allowlist", ask="always"), approver=approver)
        d = tool.run({"command": "touch never"}, self.ctx)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(len(withdrawn), 1)
        self.assertFalse(os.path.exists(os.path.join(self.ws, "never")))

    async def test_registry_stop_all_covers_foreground(self) -> None:
        """Gateway shutdown (registry.stop_all) also stops commands still in the foreground."""
        d = self.tool.run({"command": "sleep 1000"}, self.ctx)
        ended = self.registry.stop_all()
        self.assertEqual(len(ended), 1)
        await ended[0]
        res: ToolResult = await d
        # Signalled (SIGTERM, or SIGKILL after the grace when SIGTERM landed between
        # fork and exec) or, when it landed in the spawned child before exec, an
        # exit status: either way the command did not run on.
        self.assertTrue(res.details["killed"])
        self.assertEqual(res.details["status"], "failed")
        if res.details["signal"] is None:
            self.assertNotIn(res.details["exitCode"], (0, None), res.details)
        else:
            self.assertIn(res.details["signal"], ("SIGTERM", "SIGKILL"))

    async def test_timeout_kills(self) -> None:
        """timeoutSeconds kills the group; the result says so in OpenClaw's words, with
        the background hint only when process is there to follow a command."""
        res = await self.call(self.tool, command="echo begun; sleep 1000", timeoutSeconds=0.5)
        self.assertTrue(res.is_error)
        self.assertEqual(res.details["status"], "failed")
        self.assertTrue(res.details["timedOut"])
        self.assertTrue(
            res.content.startswith(
                "begun\n\n\nCommand timed out after 0.5 seconds.\n\n"
                "The command was terminated, but external side effects may already have "
                "completed."
            ),
            res.content,
        )
        self.assertTrue(
            res.content.endswith("Do not rely on shell backgrounding with a trailing &.")
        )
        self.assertEqual(res.details["signal"], "SIGTERM")
        foreground_only = self.make(background_enabled=False)
        res = await self.call(foreground_only, command="sleep 1000", timeoutSeconds=1)
        self.assertTrue(res.content.startswith("Command timed out after 1 seconds.\n\n"))
        self.assertNotIn("background=true", res.content)

    async def test_background_write_poll(self) -> None:
        """background: true returns a sessionId; process write feeds stdin; poll reports exit."""
        res = await self.call(self.tool, command="read line; echo got:$line", background=True)
        sid = res.details["sessionId"]
        self.assertEqual(res.details["status"], "running")
        listed = await self.call(self.process, action="list")
        self.assertIn(sid, listed.content)
        await self.call(self.process, action="write", sessionId=sid, data="hello\n", eof=True)
        session = self.registry.get("main", sid)
        assert session is not None
        await session.when_ended()
        polled = await self.call(self.process, action="poll", sessionId=sid)
        self.assertIn("got:hello", polled.content)
        self.assertIn("exited with code 0", polled.content)
        log = await self.call(self.process, action="log", sessionId=sid)
        self.assertIn("got:hello", log.content)
        other = ToolContext("other", "k", "r", "c", FilePath(self.ws))
        hidden: ToolResult = await self.process.run({"action": "poll", "sessionId": sid}, other)
        self.assertTrue(hidden.is_error)

    async def test_background_exit_code_is_completed(self) -> None:
        """A backgrounded command's own non-zero exit is completed for process poll too."""
        res = await self.call(self.tool, command="echo done; exit 4", background=True)
        session = self.registry.get("main", res.details["sessionId"])
        assert session is not None
        await session.when_ended()
        polled = await self.call(self.process, action="poll", sessionId=session.id)
        self.assertEqual((polled.is_error, polled.details["status"]), (False, "completed"))
        self.assertIn("exited with code 4", polled.content)

    async def test_process_actions_on_finished_and_running_sessions(self) -> None:
        """log pages by line; write/kill on a finished session and clear on a running one
        are errors; remove kills and forgets."""
        res = await self.call(self.tool, command="seq 1 300", background=True)
        sid = res.details["sessionId"]
        session = self.registry.get("main", sid)
        assert session is not None
        await session.when_ended()
        tail = await self.call(self.process, action="log", sessionId=sid)
        self.assertTrue(tail.content.startswith("101\n"))
        self.assertIn("lines 100-300 of 300", tail.content)
        page = await self.call(self.process, action="log", sessionId=sid, offset=10, limit=3)
        self.assertEqual(
            page.content, "11\n12\n13\n\n[lines 10-13 of 300; pass offset/limit for earlier output]"
        )
        rest = await self.call(self.process, action="log", sessionId=sid, offset=298)
        self.assertTrue(rest.content.startswith("299\n300"))
        last = await self.call(self.process, action="log", sessionId=sid, limit=2)
        self.assertTrue(last.content.startswith("299\n300"))
        for action in ("write", "kill"):
            self.assertTrue((await self.call(self.process, action=action, sessionId=sid)).is_error)
        self.assertTrue((await self.call(self.process, action="bogus", sessionId=sid)).is_error)
        live = await self.call(self.tool, command="sleep 1000", background=True)
        live_id = live.details["sessionId"]
        self.assertTrue((await self.call(self.process, action="clear", sessionId=live_id)).is_error)
        live_session = self.registry.get("main", live_id)
        assert live_session is not None
        removed = await self.call(self.process, action="remove", sessionId=live_id)
        self.assertFalse(removed.is_error)
        await live_session.when_ended()
        self.assertIsNone(self.registry.get("main", live_id))
        self.assertEqual(
            (await self.call(self.process, action="list")).details["sessions"][0]["sessionId"], sid
        )

    async def test_yield_then_kill(self) -> None:
        """A command outlasting yieldMs is backgrounded; process kill ends it by signal."""
        res = await self.call(self.tool, command="echo started; sleep 1000", yieldMs=50)
        sid = res.details["sessionId"]
        self.assertEqual(res.details["status"], "running")
        polled = await self.call(self.process, action="poll", sessionId=sid, timeout=5000)
        self.assertIn("started", polled.content + res.content)
        killed = await self.call(self.process, action="kill", sessionId=sid)
        self.assertEqual(killed.details["signal"], "SIGTERM")
        self.assertTrue(killed.details["killed"])
        cleared = await self.call(self.process, action="clear", sessionId=sid)
        self.assertFalse(cleared.is_error)

    async def test_environment_never_carries_secrets(self) -> None:
        """Token, provider keys and values equal to a secret never reach the command."""
        res = await self.call(self.tool, command="env", env={"FOO": "bar", "LEAK": SECRET})
        self.assertNotIn(SECRET, res.content)
        self.assertNotIn("sk-provider-key", res.content)
        self.assertNotIn("AWS_SECRET", res.content)
        self.assertIn("FOO=bar", res.content)
        self.assertIn("OPENCLAW_SHELL=exec", res.content)
        self.assertIn("HOME=/tmp", res.content)
        bad = await self.call(self.tool, command="env", env={"PATH": "/evil"})
        self.assertTrue(bad.is_error)
        bad = await self.call(self.tool, command="env", env={"LD_PRELOAD": "/x.so"})
        self.assertTrue(bad.is_error)

    async def test_env_overrides_follow_the_host_env_policy(self) -> None:
        """OpenClaw's host env policy: overrides that make programs run other code
        or read other configuration, and credential-like names, refuse the call
        (naming the variable) and the command does not run."""
        refused = {
            "GIT_EXTERNAL_DIFF": "touch pwned",
            "GIT_CONFIG_COUNT": "1",
            "git_config_key_0": "diff.external",
            "HOME": "/tmp/evil",
            "NODE_OPTIONS": "--require /tmp/x.js",
            "PYTHONSTARTUP": "/tmp/x.py",
            "PERL5OPT": "-Mx",
            "GIT_SSH_COMMAND": "touch pwned",
            "PROMPT_COMMAND": "touch pwned",
            "PAGER": "less",
            "GIT_PAGER": "cat -v",
            "MANPAGER": "cat",
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER": "touch",
            "BASH_FUNC_ls%%": "() { id; }",
            "FOO_API_KEY": "x",
            "LC_TOKEN": "x",
            "PATH": "/evil",
            "LD_PRELOAD": "/x.so",
        }
        for name, value in refused.items():
            res = await self.call(self.tool, command="touch ran", env={name: value})
            self.assertTrue(res.is_error, name)
            if name != "BASH_FUNC_ls%%":  # not even a valid name
                self.assertIn(name, res.content)
                self.assertIn("The command did not run", res.content)
        both = await self.call(self.tool, command="touch ran", env={"HOME": "/x", "A_TOKEN": "y"})
        self.assertIn("HOME: cannot be overridden", both.content)
        self.assertIn("A_TOKEN: credential-like", both.content)
        self.assertFalse(os.path.exists(os.path.join(self.ws, "ran")))
        self.assertFalse(os.path.exists(os.path.join(self.ws, "pwned")))

    async def test_no_pager_values_pass_as_empty(self) -> None:
        """PAGER/GIT_PAGER of cat or nothing turn off paging: passed as empty."""
        res = await self.call(
            self.tool,
            command='printf "[%s][%s][%s]" "$PAGER" "$GIT_PAGER" "$FOO"',
            env={"PAGER": "cat", "GIT_PAGER": "", "FOO": "bar"},
        )
        self.assertEqual(res.content, "[][][bar]")

    async def test_env_cannot_get_round_the_allowlist(self) -> None:
        """With only git allowed, a git command still cannot be made to run another
        program through GIT_EXTERNAL_DIFF or GIT_CONFIG_* (the reviewer's repro);
        the same command without them runs."""
        allow = self.make(policy=ExecPolicy(security="allowlist", ask="off", allowlist=("git",)))
        for name in ("a", "b"):
            with open(os.path.join(self.ws, name), "w") as f:
                f.write(f"{name}\n")
        command = "git diff --no-index a b"
        pwned = os.path.join(self.ws, "pwned")
        hook = f"touch {pwned}; true"  # git runs it from the repository's top
        for env in (
            {"GIT_EXTERNAL_DIFF": hook},
            {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "diff.external",
             "GIT_CONFIG_VALUE_0": hook},
        ):  # fmt: skip
            res = await self.call(allow, command=command, env=env)
            self.assertTrue(res.is_error)
            self.assertIn("cannot be overridden", res.content)
        self.assertFalse(os.path.exists(pwned))
        ran = await self.call(allow, command=command, env={"GIT_PAGER": "cat"})
        self.assertIn("+b", ran.content)
        self.assertFalse(os.path.exists(pwned))

    async def test_approval_request_carries_the_env_overrides(self) -> None:
        """The operator is asked about the command with its env overrides, not
        the bare command."""
        asked: list[ApprovalRequest] = []

        def approver(request: ApprovalRequest) -> Deferred[bool]:
            asked.append(request)
            return succeed(True)

        tool = self.make(policy=ExecPolicy(security="allowlist", ask="on-miss"), approver=approver)
        res = await self.call(tool, command="printf $GREETING", env={"GREETING": "hi"})
        self.assertEqual(res.content, "hi")
        self.assertEqual(dict(asked[0].env), {"GREETING": "hi"})
        await self.call(tool, command="printf x")
        self.assertEqual(dict(asked[1].env), {})

    async def test_workdir_confined(self) -> None:
        """workdir resolves inside the workspace; escapes are refused before running."""
        res = await self.call(self.tool, command="pwd", workdir="sub")
        self.assertEqual(res.content.strip(), os.path.join(self.ws, "sub"))
        for wd in ("..", "/", "missing"):
            bad = await self.call(self.tool, command="touch escaped", workdir=wd)
            self.assertTrue(bad.is_error, wd)
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.ws), "escaped")))

    async def test_policy_deny_and_allowlist(self) -> None:
        """security=deny refuses everything; allowlist runs matches and refuses misses."""
        deny = self.make(policy=ExecPolicy(security="deny", ask="off"))
        res = await self.call(deny, command="touch made")
        self.assertTrue(res.is_error)
        self.assertIn("Exec denied", res.content)
        self.assertFalse(os.path.exists(os.path.join(self.ws, "made")))
        allow = self.make(policy=ExecPolicy(security="allowlist", ask="off", allowlist=("echo",)))
        self.assertEqual((await self.call(allow, command="echo hi | wc -l")).content.strip(), "1")
        miss = await self.call(allow, command="touch made")
        self.assertIn("not on the exec allowlist", miss.content)
        self.assertFalse(os.path.exists(os.path.join(self.ws, "made")))

    async def test_approvals(self) -> None:
        """Asked commands run on approval, are denied on refusal and on approval timeout."""
        asked: list[ApprovalRequest] = []
        answers = {"yes": True, "no": False}

        def approver(request: ApprovalRequest) -> Deferred[bool]:
            asked.append(request)
            word = request.command.split()[-1]
            return succeed(answers[word]) if word in answers else Deferred()

        policy = ExecPolicy(security="allowlist", ask="on-miss", approval_timeout_seconds=0.05)
        tool = self.make(policy=policy, approver=approver)
        self.assertEqual((await self.call(tool, command="echo yes")).content.strip(), "yes")
        denied = await self.call(tool, command="echo no")
        self.assertIn("denied by operator", denied.content)
        timed = await self.call(tool, command="echo never")
        self.assertIn("approval timed out", timed.content)
        self.assertIn("allowlist", asked[0].reason)
        self.assertEqual(asked[0].agent_id, "main")
        hardened = await self.call(self.tool, command="echo hi", ask="always")
        self.assertIn("Exec denied", hardened.content)  # full policy, no approver: fallback deny
        noroute = self.make(policy=policy)
        self.assertIn("no approval route", (await self.call(noroute, command="echo x")).content)
        lenient = self.make(
            policy=ExecPolicy(security="allowlist", ask="on-miss", ask_fallback="full")
        )
        self.assertEqual(
            (await self.call(lenient, command="echo fallback")).content.strip(), "fallback"
        )

    async def test_hostile_arguments(self) -> None:
        """Missing/odd arguments are tool errors, never exceptions."""
        for args in (
            {},
            {"command": ""},
            {"command": "a\x00b"},
            {"command": "\ud800"},
            {"command": "ls", "host": "node"},
            {"command": "ls", "host": "evil.com"},
            {"command": "ls", "timeoutSeconds": "x"},
            {"command": "ls", "env": []},
            {"command": "ls", "env": {"A B": "x"}},
            {"command": "ls", "yieldMs": -1},
            {"command": "x" * 200_000},
            {"command": "ls", "background": "yes"},
        ):
            res: ToolResult = await self.tool.run(args, self.ctx)
            self.assertTrue(res.is_error, repr(args)[:60])
        pty = await self.process.run({"action": "send-keys", "sessionId": "x"}, self.ctx)
        self.assertTrue(pty.is_error)
        unknown = await self.process.run({"action": "poll", "sessionId": "nope"}, self.ctx)
        self.assertIn("No session", unknown.content)


class UnitTests(SynchronousTestCase):
    def test_per_call_ask_only_hardens(self) -> None:
        """ask=always on a call forces approval even under security=full (no approver: denied)."""
        policy = FULL.harden("always")
        self.assertEqual(policy.evaluate("ls").action, "ask")

    def test_output_buffer_keeps_head_and_tail(self) -> None:
        """Past the cap the buffer keeps the start and the end and counts the middle."""
        buf = OutputBuffer(20)
        buf.feed(b"0123456789" * 5)
        text = buf.text()
        self.assertTrue(text.startswith("0123456789"))
        self.assertTrue(text.endswith("0123456789"))
        self.assertIn("30 characters omitted", text)
        clipped = buf.clipped(10)
        self.assertEqual(clipped, "01234\n\n[... 40 characters omitted ...]\n\n56789")
        self.assertEqual(OutputBuffer(100).clipped(10), "")
        split = OutputBuffer(100)
        self.assertEqual(split.feed("é".encode()[:1]) + split.feed("é".encode()[1:]), "é")

    def test_build_env_scrubs(self) -> None:
        """Allow-listed names pass, secret names and secret values never do."""
        env = build_env(
            BASE_ENV,
            secrets=[SECRET],
            passthrough=("PATH", "INNOCENT_NAME", "OPENAI_API_KEY", "HOME"),
            path_prepend=["/opt/x"],
        )
        self.assertNotIn("INNOCENT_NAME", env)
        self.assertNotIn("OPENAI_API_KEY", env)
        self.assertTrue(env["PATH"].startswith("/opt/x:"))
        self.assertEqual(env["OPENCLAW_SHELL"], "exec")

    def test_build_env_finds_secrets_inside_values_and_lc_names(self) -> None:
        """A secret inside a longer value, or an ``LC_*`` name that looks like a
        credential, does not reach the command; ordinary locale variables do."""
        source = {
            "PATH": "/usr/bin",
            "LANG": f"Bearer {SECRET}",
            "LC_ALL": "C.UTF-8",
            "LC_LEAK": f"token={SECRET}",
            "LC_MY_SECRET": "hunter2-hunter2",
        }
        env = build_env(source, secrets=[SECRET], passthrough=("PATH", "LANG"),
                        overrides={"X": f"x{SECRET}x", "Y": "fine"})  # fmt: skip
        self.assertEqual(env["LC_ALL"], "C.UTF-8")
        self.assertEqual(env["Y"], "fine")
        for name in ("LANG", "LC_LEAK", "LC_MY_SECRET", "X"):
            self.assertNotIn(name, env)

    def test_build_env_drops_blocked_and_secret_overrides(self) -> None:
        """build_env itself never applies an override the host env policy blocks or
        a credential-like name, whoever calls it; a no-pager value becomes empty."""
        env = build_env(
            {"PATH": "/usr/bin", "HOME": "/home/u"},
            passthrough=("PATH", "HOME"),
            overrides={
                "HOME": "/tmp/evil",
                "GIT_EXTERNAL_DIFF": "x",
                "GIT_CONFIG_COUNT": "1",
                "FOO_API_KEY": "k",
                "PAGER": "cat",
                "OK": "1",
            },
        )
        self.assertEqual(env["HOME"], "/home/u")
        self.assertEqual((env["PAGER"], env["OK"]), ("", "1"))
        for name in ("GIT_EXTERNAL_DIFF", "GIT_CONFIG_COUNT", "FOO_API_KEY"):
            self.assertNotIn(name, env)
