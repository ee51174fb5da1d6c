"""The fourth adversarial review of the exec allowlist (process lifecycle,
workdir, approvals, time of check / time of use, encodings): each refusal
case failed on f3b586a (the command was accepted and then ran a program the
policy never saw, or a process it started outlived every kill the gateway
has: ``timeoutSeconds``, ``process kill``, shutdown).

Each case drives the real exec tool (``/bin/sh -c``, bash through
``bash -c``) in allowlist mode. Files the model needs in the workspace are
written with the real ``write`` tool.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time

from twisted.internet import task

from openclaw.agents.tools.process import ProcessTool
from tests.exec_support import DENIED, ExecToolCase


def _pids_running(needle: str) -> list[int]:
    """Pids of live processes whose command line starts with ``needle``
    (the program itself, not the shell or wrapper that names it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cmdline.startswith(needle) and state != "Z":
            found.append(int(entry))
    return found


class ExecReview4Findings(ExecToolCase):
    def reap_later(self, needle: str) -> None:
        """Kill (by pid) whatever this test started that is still running."""

        def reap() -> None:
            for pid in _pids_running(needle):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

        self.addCleanup(reap)

    # -- 1. high: bash's NAME+=value is an assignment the policy reads as a program ----

    async def test_bash_append_assignment_hides_the_real_command(self) -> None:
        """bash (not dash) reads ``NAME+=value`` as an assignment, like
        ``NAME=value``; policy.py's ``_ASSIGNMENT`` (``^[A-Za-z_][A-Za-z0-9_]*=``,
        policy.py:266, used at :508 and :526) does not match it, so the policy
        judges ``X+=d/../../../usr/bin/ls`` as a program word: resolved
        relative to the working directory it is ``/usr/bin/ls`` (a directory
        ``X+=d``, made with the write tool, is all it needs), which a path
        pattern allows, and the rest of the segment are ``ls``'s arguments.
        bash assigns ``X`` and runs the first argument: any command. Any
        path-pattern entry will do (``/usr/bin/git``, ``/usr/local/bin/*``)."""
        ls = os.path.realpath("/usr/bin/ls")
        self.write("X+=d/keep")
        climb = "../" * (self.ws.count("/") + 1)
        program = f"X+=d/{climb}{ls.lstrip('/')}"
        tool = self.make(ls)
        res = await self.call(tool, f"bash -c '{program} touch pwned'")
        self.assertFalse(
            os.path.exists(os.path.join(self.ws, "pwned")),
            f"bash ran 'touch pwned' as '{program}'s argument: {res.content}",
        )
        self.assertIn(DENIED, res.content)
        # ls itself, and a leading NAME=value, behave as before.
        self.assertNotIn(DENIED, (await self.call(tool, f"{ls} -d .")).content)
        self.assertIn(DENIED, (await self.call(tool, f"bash -c 'X=1 {ls}'")).content)

    async def test_bash_append_assignment_runs_a_shell_reading_stdin(self) -> None:
        """The same hole gives the model a shell that reads its commands from
        stdin: the policy sees ``ls`` with the argument ``sh``, bash runs
        ``sh``, and ``process write`` feeds it any script."""
        ls = os.path.realpath("/usr/bin/ls")
        self.write("Y+=d/keep")
        climb = "../" * (self.ws.count("/") + 1)
        tool = self.make(ls)
        res = await self.call(tool, f"bash -c 'Y+=d/{climb}{ls.lstrip('/')} sh'", background=True)
        if DENIED in res.content:
            return  # fixed
        session_id = res.details["sessionId"]
        process = ProcessTool(self.reactor, self.registry)
        await process.run(
            {"action": "write", "sessionId": session_id, "data": "touch fed\n", "eof": True},
            self.ctx,
        )
        await process.run({"action": "poll", "sessionId": session_id, "timeout": 5000}, self.ctx)
        for _ in range(50):
            if os.path.exists(os.path.join(self.ws, "fed")):
                break
            await task.deferLater(self.reactor, 0.05, lambda: None)
        self.assertFalse(
            os.path.exists(os.path.join(self.ws, "fed")),
            "an allowlisted 'ls' segment became a shell reading stdin",
        )

    # -- 2. medium: timeout(1) leaves the command's process group ----------------------

    async def until_gone(self, needle: str, seconds: float) -> list[int]:
        """Poll (bounded) until no process runs ``needle``; what still runs."""
        deadline = time.monotonic() + seconds
        while _pids_running(needle) and time.monotonic() < deadline:
            await task.deferLater(self.reactor, 0.05, lambda: None)
        return _pids_running(needle)

    async def test_timeout_without_foreground_is_refused(self) -> None:
        """GNU ``timeout`` calls ``setpgid(0, 0)`` unless ``--foreground``: it
        and its child left the shell's process group, the only thing
        ``timeoutSeconds``, ``process kill`` and shutdown signal, so an
        allowlisted long-running program ran for as long as the model's
        DURATION (``true &&`` keeps dash from exec'ing ``timeout`` in place).
        Now ``timeout`` is unwrapped only with ``--foreground``."""
        marker = f"4{secrets.randbelow(10**6)}.{secrets.randbelow(1000)}"
        self.reap_later(f"sleep {marker}")
        tool = self.make("sleep")
        for command in (
            f"true && timeout 1000 sleep {marker}",
            f"timeout -s KILL 1000 sleep {marker}",
            f"nice timeout 1000 sleep {marker}",
        ):
            res = await self.call(tool, command, timeoutSeconds=0.5)
            self.assertIn(DENIED, res.content, command)
        self.assertEqual(_pids_running(f"sleep {marker}"), [])

    async def test_timeout_foreground_stays_in_the_group_timeoutseconds_kills(self) -> None:
        marker = f"5{secrets.randbelow(10**6)}.{secrets.randbelow(1000)}"
        self.reap_later(f"sleep {marker}")
        tool = self.make("sleep")
        command = f"true && timeout --foreground 1000 sleep {marker}"
        res = await self.call(tool, command, timeoutSeconds=0.5)
        self.assertNotIn(DENIED, res.content)
        self.assertTrue(res.details["timedOut"], res.content)
        self.assertEqual(await self.until_gone(f"sleep {marker}", 5), [])

    async def test_timeout_foreground_stays_in_the_group_process_kill_kills(self) -> None:
        marker = f"6{secrets.randbelow(10**6)}.{secrets.randbelow(1000)}"
        self.reap_later(f"sleep {marker}")
        tool = self.make("sleep")
        command = f"true && timeout --foreground 1000 sleep {marker}"
        res = await self.call(tool, command, background=True)
        self.assertNotIn(DENIED, res.content)
        deadline = time.monotonic() + 5
        while not _pids_running(f"sleep {marker}") and time.monotonic() < deadline:
            await task.deferLater(self.reactor, 0.05, lambda: None)
        self.assertNotEqual(_pids_running(f"sleep {marker}"), [])
        process = ProcessTool(self.reactor, self.registry)
        killed = await process.run(
            {"action": "kill", "sessionId": res.details["sessionId"]}, self.ctx
        )
        self.assertIn("Killed session", killed.content)
        self.assertEqual(await self.until_gone(f"sleep {marker}", 5), [])
