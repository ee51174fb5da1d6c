"""Safe shell builtins and wrapper commands in exec allowlist/ask mode (real subprocesses).

What a user saw: with ``allowlist: ["git", "ls"]`` the commands models write
most (``cd scripts && ls``, ``test -d x && ls x``, ``ls x || true``, ``pwd``,
``[ -d x ] && ls x``) were refused, and ``timeout 30 git ...``,
``nice git ...``, ``env git ...``, ``command git ...`` too, all of which
OpenClaw runs on the gateway host without an allowlist entry. These tests run
them through the exec tool, and check that the ways round the allowlist stay
shut: a wrapper judged by the program it runs, never by itself; a wrapper
that changes what runs (``sudo``, ``env FOO=1``, ``command -v``) refused; a
``timeout`` that is really the workspace's script refused; a relative program
after ``cd`` refused.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.agents.tools._proc import ProcessRegistry
from openclaw.agents.tools.base import ToolContext, ToolResult
from openclaw.agents.tools.exec import ExecTool
from openclaw.agents.tools.exec_match import literal_word, program_resolver, resolve_program
from openclaw.agents.tools.exec_policy import ApprovalRequest
from openclaw.agents.tools.policy import ExecPolicy

BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
DENIED = "not on the exec allowlist"


def script(path: str, body: str) -> None:
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\n{body}\n")
    os.chmod(path, 0o755)


class BuiltinsAndWrappersTests(TestCase):
    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        root = os.path.realpath(self.mktemp())
        self.ws = os.path.join(root, "ws")
        self.pwned = os.path.join(self.ws, "pwned")
        touch = f'touch "{self.pwned}"; echo evil'
        os.makedirs(os.path.join(self.ws, "scripts"))
        script(os.path.join(self.ws, "scripts", "build.sh"), "echo built")
        # A relative program that means one file from the workspace and
        # another after `cd sub`.
        os.makedirs(os.path.join(self.ws, "ok"))
        script(os.path.join(self.ws, "ok", "run"), "echo ok-run")
        os.makedirs(os.path.join(self.ws, "sub", "ok"))
        script(os.path.join(self.ws, "sub", "ok", "run"), touch)
        # A "timeout" the model wrote: named like a wrapper, runs anything.
        script(os.path.join(self.ws, "timeout"), touch)
        self.evil_bin = os.path.join(root, "evil-bin")
        os.makedirs(self.evil_bin)
        script(os.path.join(self.evil_bin, "nice"), touch)
        self.ctx = ToolContext(
            agent_id="main",
            session_key="agent:main:main",
            run_id="r1",
            tool_call_id="c1",
            workspace=FilePath(self.ws),
        )
        self.registry = ProcessRegistry(reactor)
        self.tools_made: list[ExecTool] = []
        self.addCleanup(lambda: Deferred.fromCoroutine(self._cleanup()))

    async def _cleanup(self) -> None:
        for tool in self.tools_made:
            await tool.stop_all()
        for d in self.registry.stop_all():
            await d

    def make(self, policy: ExecPolicy, **kw: Any) -> ExecTool:
        tool = ExecTool(self.reactor, self.registry, policy=policy, base_env=BASE_ENV, **kw)  # type: ignore[arg-type]
        self.tools_made.append(tool)
        return tool

    async def call(self, tool: ExecTool, command: str) -> ToolResult:
        result: ToolResult = await tool.run({"command": command}, self.ctx)
        return result

    async def assert_runs(self, tool: ExecTool, command: str, expected: str) -> None:
        res = await self.call(tool, command)
        self.assertFalse(res.is_error, f"{command}: {res.content}")
        self.assertIn(expected, res.content, command)

    async def assert_refused(self, tool: ExecTool, command: str) -> None:
        res = await self.call(tool, command)
        self.assertTrue(res.is_error, f"{command}: {res.content}")
        self.assertIn(DENIED, res.content, command)

    def safe_builtin_commands(self) -> list[tuple[str, str]]:
        return [
            ("cd scripts && ls", "build.sh"),
            ("test -d scripts && ls scripts", "build.sh"),
            ("ls nonexist || true", "No such file"),
            ("pwd", self.ws),
            ("[ -d scripts ] && ls scripts", "build.sh"),
            ("[ -f scripts ] || ls scripts", "build.sh"),
            (": && false || ls -d scripts", "scripts"),
            ("cd scripts; cd ..; pwd", self.ws),
            ("cd && pwd", "/tmp"),
            ("test -d scripts; git --version", "git version"),
        ]

    def wrapper_commands(self) -> list[str]:
        return [
            "timeout --foreground 30 git --version",
            "timeout -s KILL --foreground 5 git --version",
            "timeout --foreground --kill-after=2 5 git --version",
            "nice git --version",
            "nice -n 5 git --version",
            "nice -5 git --version",
            "nice --adjustment=3 -- git --version",
            "nohup git --version",
            "stdbuf -o L git --version",
            "stdbuf --output=L git --version",
            "env git --version",
            "env -- git --version",
            "command git --version",
            "command -- git --version",
            "exec git --version",
            "/usr/bin/timeout --foreground 5 git --version",
            "timeout --foreground 5 nice -n 1 env git --version",
            "nice nice nice nice git --version",
            "cd scripts && timeout --foreground 5 git --version",
        ]

    def refused_commands(self) -> list[str]:
        ws = self.ws
        mark = f"touch {self.pwned}"
        return [
            # A wrapper is judged by what it runs, and only a verified one is unwrapped.
            f"timeout 5 sh -c '{mark}'",
            f"nice sh -c '{mark}'",
            "./timeout 5 git --version",
            f"{ws}/timeout 5 git --version",
            # Wrappers that change what runs or how: refused even when allowlisted.
            f"env FOO=1 sh -c '{mark}'",
            "env FOO=1 git --version",
            "env -i git --version",
            "env -u HOME git --version",
            "env -C /tmp git --version",
            "env - git --version",
            "env",
            "timeout 5",
            "sudo git --version",
            "setsid git --version",
            "watch git --version",
            "command -v git",
            "command -p git --version",
            "exec -a x git --version",
            "exec -- git --version",
            "time -o out git --version",
            "stdbuf -oL git --version",
            "timeout -k5 5 git --version",
            # Without --foreground timeout leaves the group the gateway kills.
            "timeout 30 git --version",
            "true && timeout 30 git --version",
            "nice nice nice nice nice git --version",
            # Builtins do not open a way round the rest of the rules.
            f"cd /tmp && /usr/local/bin/../../bin/sh -c '{mark}'",
            "cd sub && ok/run",
            "cd sub && ./ok/run",
            f"cd $HOME && {mark}",
            f"test -n $({mark})",
            f"[ -d scripts ] && {mark}",
            f"cd scripts > {ws}/out && ls",
            f"true; {mark}",
            f"eval '{mark}'",
        ]

    def policy(self, ask: str, *extra: str) -> ExecPolicy:
        allowlist = (
            "git",
            "ls",
            "/usr/local/bin/*",
            f"{self.ws}/ok/*",
            "timeout",
            "nice",
            "env",
            "sudo",
            "setsid",
            "watch",
            "command",
            "exec",
            "time",
            "stdbuf",
            "eval",
            *extra,
        )
        return ExecPolicy(security="allowlist", ask=ask, allowlist=allowlist)  # type: ignore[arg-type]

    async def test_allowlist_mode_runs_safe_builtins_without_entries(self) -> None:
        """``cd``, ``test``, ``[ ... ]``, ``true``/``false``/``:`` and ``pwd``
        need no allowlist entry; the rest of the chain still has to match."""
        tool = self.make(ExecPolicy(security="allowlist", ask="off", allowlist=("git", "ls")))
        for command, expected in self.safe_builtin_commands():
            await self.assert_runs(tool, command, expected)

    async def test_allowlist_mode_judges_wrappers_by_the_program_they_run(self) -> None:
        """``timeout``/``nice``/``nohup``/``stdbuf``/``env``/``command``/``exec``
        run an allowlisted program without an entry of their own."""
        tool = self.make(ExecPolicy(security="allowlist", ask="off", allowlist=("git", "ls")))
        for command in self.wrapper_commands():
            await self.assert_runs(tool, command, "git version")
        await self.assert_runs(tool, "ls scripts | timeout --foreground 5 wc -l", "1")

    async def test_allowlist_mode_refuses_every_way_round(self) -> None:
        """Each of these is refused without running, even with the wrapper
        itself, ``sh`` by path and the ``ok/*`` directory allowlisted."""
        tool = self.make(self.policy("off"))
        for command in self.refused_commands():
            await self.assert_refused(tool, command)
        self.assertFalse(os.path.exists(self.pwned))
        # The relative program in its own directory, and by absolute path after cd, do run.
        await self.assert_runs(tool, "ok/run", "ok-run")
        await self.assert_runs(tool, f"cd sub && {self.ws}/ok/run", "ok-run")

    async def test_words_a_wrapper_consumes_must_be_literal(self) -> None:
        """A glob (or ``$``, ``~``) among a wrapper's own words can expand to
        several words and change what it runs: ``timeout -s [15s]* [-i]* wc``
        looked like ``wc`` to the check while dash ran ``timeout -s 1 5 sh -c
        ... wc``. With an empty allowlist (only the default safe bins) every
        such command is refused and runs nothing; the same wrappers with
        literal words still run a safe bin."""
        for name in ("1", "5", "15s", "sh", "-c", "-i", "--files0-from=names"):
            open(os.path.join(self.ws, name), "w").close()
        mark = os.path.join(self.ws, "touch pwned")
        script(mark, f'touch "{self.pwned}"')
        tool = self.make(ExecPolicy(security="allowlist", ask="off", allowlist=()))
        for command in (
            "timeout -s [15s]* [-i]* wc",
            "timeout -s [1]* [5]* [s]h [-]c id wc",
            "timeout [1]* [t]ouch* wc",
            "nice -n [1]* [t]ouch* wc",
            "stdbuf -o [1]* [t]ouch* wc",
            "time -f [1]* [t]ouch* wc",
            "flock -w [1]* [t]ouch* wc",
            "flock [1]* wc",
            "timeout -k $HOME 5 wc",
            "nice -n ~ wc",
            # A safe bin's flag that expands could become a denied one.
            "wc --[f]*",
            "timeout 5 wc -[c]*",
        ):
            await self.assert_refused(tool, command)
        self.assertFalse(os.path.exists(self.pwned))
        # (``wc --version`` is outside wc's safe-bin profile, as in OpenClaw;
        # ``head -c 0`` reads nothing.)
        await self.assert_runs(tool, "timeout --foreground 5 head -c 0", "(no output)")

    async def test_env_takes_any_word_with_an_equals_sign_for_an_assignment(self) -> None:
        """GNU ``env`` sets a variable for *any* leading ``x=y`` word, whatever
        its name: ``env ./d=/../../usr/bin/ls sh -c ...`` runs ``sh``. It was
        judged as ``/usr/bin/ls`` (the path resolved through a ``d=`` that
        does not exist); now it is refused, and the path resolves to nothing."""
        tool = self.make(ExecPolicy(security="allowlist", ask="off", allowlist=("/usr/bin/ls",)))
        up = "/.." * (self.ws.count("/") + 2)
        for command in (
            f"env ./d={up}/usr/bin/ls sh -c 'touch {self.pwned}'",
            f"env -- /x={up}/usr/bin/ls sh -c 'touch {self.pwned}'",
            f"timeout 5 env /x={up}/usr/bin/ls sh -c 'touch {self.pwned}'",
            f"./d={up}/usr/bin/ls",
        ):
            await self.assert_refused(tool, command)
        self.assertFalse(os.path.exists(self.pwned))
        self.assertIsNone(
            resolve_program(
                f"./d={up}/usr/bin/ls", cwd=self.ws, search_path="/usr/bin:/bin", home=None
            )
        )
        await self.assert_runs(tool, "env /usr/bin/ls -d scripts", "scripts")

    async def test_a_quoted_or_escaped_operator_is_an_argument_not_a_separator(self) -> None:
        """``head -c300 \\; true FILE`` is one ``head`` call with file
        arguments to the shell; split at the escaped ``;`` it looked like a
        flag-only ``head`` and a harmless ``true FILE`` and printed the file.
        Every quoting of every separator is an argument now (a safe bin with a
        file argument is refused), while bare separators still split."""
        secret = os.path.join(self.ws, "secret.json")
        with open(secret, "w") as f:
            f.write('{"token": "s3cret"}')
        tool = self.make(ExecPolicy(security="allowlist", ask="off", allowlist=("git",)))
        for command in (
            f"head -c300 \\; true {secret}",
            f"wc -c ';' pwd {secret}",
            f"tail -c100 '&&' test {secret}",
            f'cut -c1-60 "|" : {secret}',
            f"head -c300 \\& true {secret}",
            f"head -c300 '||' true {secret}",
            "pwd | uniq - \\;",
        ):
            await self.assert_refused(tool, command)
        await self.assert_runs(tool, "true; git --version", "git version")
        await self.assert_runs(tool, "git --version | head -c3", "git")

    async def test_a_wrapper_must_be_named_bare_or_by_its_system_path(self) -> None:
        """``stdbuf`` preloads ``libstdbuf.so`` from the directory it was called
        by: a symlink to ``/usr/bin/stdbuf`` in the workspace is not the system's
        wrapper (the model could put a library beside it), so it is refused;
        ``stdbuf`` and ``/usr/bin/stdbuf`` still unwrap."""
        os.makedirs(os.path.join(self.ws, "w"))
        os.symlink("/usr/bin/stdbuf", os.path.join(self.ws, "w", "stdbuf"))
        tool = self.make(ExecPolicy(security="allowlist", ask="off", allowlist=("git",)))
        await self.assert_refused(tool, "w/stdbuf -o L git --version")
        await self.assert_refused(tool, f"{self.ws}/w/stdbuf -o L git --version")
        await self.assert_runs(tool, "stdbuf -o L git --version", "git version")
        await self.assert_runs(tool, "/usr/bin/stdbuf -o L git --version", "git version")

    async def test_a_wrapper_found_outside_the_system_directories_is_not_unwrapped(self) -> None:
        """A ``nice`` earlier on PATH than ``/usr/bin`` is not the wrapper
        OpenClaw's rule is about: the command is refused and nothing runs."""
        tool = self.make(
            ExecPolicy(security="allowlist", ask="off", allowlist=("git", "nice")),
            path_prepend=[self.evil_bin],
        )
        await self.assert_refused(tool, "nice git --version")
        self.assertFalse(os.path.exists(self.pwned))

    async def test_ask_mode_asks_only_for_the_misses(self) -> None:
        """In ask mode builtins and wrapped allowlisted programs run unasked;
        every way round goes to the operator (who refuses here)."""
        asked: list[str] = []

        def refuse(request: ApprovalRequest) -> Deferred[bool]:
            asked.append(request.command)
            return succeed(False)

        tool = self.make(self.policy("on-miss"), approver=refuse)
        for command, expected in self.safe_builtin_commands():
            await self.assert_runs(tool, command, expected)
        for command in self.wrapper_commands():
            await self.assert_runs(tool, command, "git version")
        self.assertEqual(asked, [])
        for command in self.refused_commands():
            res = await self.call(tool, command)
            self.assertIn("denied by operator", res.content, command)
        self.assertEqual(asked, self.refused_commands())
        self.assertFalse(os.path.exists(self.pwned))

    async def test_a_bracket_program_can_be_allowlisted(self) -> None:
        """``[`` is a real program (``/usr/bin/[``), not a glob: an entry for
        it matches, by path and by name."""
        by_path = self.make(ExecPolicy(security="allowlist", ask="off", allowlist=("/usr/bin/[",)))
        res = await self.call(by_path, "/usr/bin/[ -d scripts ] && /usr/bin/[ -d scripts ]")
        self.assertFalse(res.is_error, res.content)
        by_name = self.make(ExecPolicy(security="allowlist", ask="off", allowlist=("[", "ls")))
        await self.assert_runs(by_name, "command [ -d scripts ] && ls scripts", "build.sh")
        await self.assert_refused(by_name, "/usr/bin/[[] -d scripts ]")


class BracketWordTests(SynchronousTestCase):
    def test_a_lone_bracket_is_literal_and_a_bracket_pair_is_a_glob(self) -> None:
        """The shell expands ``[...]`` only with a closing bracket."""
        self.assertTrue(literal_word("["))
        self.assertTrue(literal_word("]"))
        self.assertFalse(literal_word("[ab]"))
        self.assertFalse(literal_word("/bin/[s]h"))
        self.assertEqual(
            resolve_program("[", cwd="/", search_path="/usr/bin", home=None),
            os.path.realpath("/usr/bin/["),
        )

    def test_after_cd_a_word_that_depends_on_the_directory_resolves_to_nothing(self) -> None:
        """Relative words and relative ``PATH`` entries cannot be resolved once
        the directory may have changed; absolute ones still can."""
        resolve = program_resolver("/", "bin:/usr/bin", "/tmp").without_cwd()
        self.assertIsNone(resolve("./x"))
        self.assertIsNone(resolve("usr/bin/git"))
        self.assertIsNone(resolve("git"))  # "bin" comes first: it depends on the directory
        self.assertIsNone(resolve("~/x"))
        self.assertEqual(resolve("/usr/bin/git"), os.path.realpath("/usr/bin/git"))
        absolute = program_resolver("/", "/usr/bin", "/tmp").without_cwd()
        self.assertEqual(absolute("git"), os.path.realpath("/usr/bin/git"))
