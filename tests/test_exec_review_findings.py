"""Adversarial review of the exec allowlist (safe-bin profiles, ``$`` rule, ``sh -c``).

Each test drives the real exec tool (``/bin/sh -c``, and bash or dash through
``bash -c`` / ``dash -c``) in allowlist mode with the DEFAULT policy (empty
allowlist, default safe bins) unless noted, and asserts the hostile command
has no effect. The ``test_*`` cases from the review all ran their payload on
88cd892; the cases after each group pin what still runs.
"""

from __future__ import annotations

import os
from typing import Any

from openclaw.agents.tools.exec import ExecTool
from openclaw.agents.tools.policy import DEFAULT_SAFE_BINS
from tests.exec_support import DENIED, ExecToolCase

BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
SECRET = "TOPSECRET"
OUTSIDE = "OUTSIDESECRET"


class ExecReviewFindings(ExecToolCase):
    def setUp(self) -> None:
        super().setUp()
        self.env = BASE_ENV
        os.makedirs(os.path.join(self.ws, "d"))  # any subdirectory (.git, memory/ ...)
        with open(os.path.join(self.ws, "secret"), "w") as f:
            f.write(f"{SECRET}\n")
        # A file outside the workspace (as ~/.openclaw/openclaw.json is).
        with open(os.path.join(self.base, "outside"), "w") as f:
            f.write(f"{OUTSIDE}\n")

    async def assert_no_leak(self, tool: ExecTool, command: str, **args: Any) -> None:
        res = await self.call(tool, command, **args)
        self.assertNotIn(SECRET, res.content, f"{command!r} {args}: printed the secret")
        self.assertNotIn(OUTSIDE, res.content, f"{command!r} {args}: printed the outside file")

    async def assert_denied(self, tool: ExecTool, command: str, **args: Any) -> None:
        res = await self.call(tool, command, **args)
        self.assertTrue(res.is_error, f"{command!r} {args}: {res.content}")
        self.assertIn(DENIED, res.content, f"{command!r} {args}")

    async def assert_runs(self, tool: ExecTool, command: str, expected: str, **args: Any) -> None:
        res = await self.call(tool, command, **args)
        self.assertFalse(res.is_error, f"{command!r} {args}: {res.content}")
        self.assertEqual(res.content.strip(), expected, f"{command!r} {args}")

    # -- 1. critical: arbitrary command execution, default policy, no env --------------

    async def test_bash_test_v_arithmetic_runs_commands_via_argv0(self) -> None:
        """bash's ``test -v a[NAME]`` evaluates the subscript arithmetically, and
        bash arithmetic recursively evaluates a variable's value, running any
        ``$(...)`` in it. ``$0`` of ``bash -c`` is in BASH_ARGV0; the words after
        the script are never judged, and ``'x[$''(...)]'`` has no ``$(`` in it."""
        tool = self.make()
        await self.call(tool, "bash -c 'test -v a[BASH_ARGV0]' 'x[$''(touch pwned)]'")
        self.assertFalse(os.path.exists(self.pwned), "test -v ran $(touch pwned)")

    async def test_bash_bracket_v_arithmetic_runs_commands_via_argv0(self) -> None:
        tool = self.make()
        await self.call(tool, "bash -c '[ -v a[BASH_ARGV0] ]' 'x[$''(touch pwned)]'")
        self.assertFalse(os.path.exists(self.pwned), "[ -v ] ran $(touch pwned)")

    async def test_bash_test_v_arithmetic_runs_commands_via_env_override(self) -> None:
        tool = self.make()
        await self.call(tool, "bash -c 'test -v a[X]'", env={"X": "a[$(touch pwned)]"})
        self.assertFalse(os.path.exists(self.pwned), "env X + test -v ran a command")

    async def test_variable_tests_and_words_after_the_script_are_refused(self) -> None:
        """``test``/``[`` with ``-v``/``-R`` or a subscript, in any shell, and
        any word after a ``-c`` script, are allowlist misses: nothing runs."""
        os.makedirs(os.path.join(self.ws, "a[x]"))
        tool = self.make()
        for command in (
            "bash -c 'test -v a[BASH_ARGV0]'",
            "bash -c '[ -v a[_] ]'",
            "bash -c 'test ! -v a[X]'",
            "bash -c 'test -R a[X]'",
            "bash -c 'test -v X'",
            "dash -c 'test -v a[X]'",
            "sh -c '[ -v a[X] ]'",
            "test -v a[X]",
            "test -d a[x]",
            "[ -d 'a[x]' ]",
            "[ -n x ]]",
            "sh -c true x",
            "bash -c 'test -d d' 'x[$''(touch pwned)]'",
            "bash -c 'test -d d' _ 'x[$''(touch pwned)]'",
            "dash -c true --",
        ):
            await self.assert_denied(tool, command)
        self.assertFalse(os.path.exists(self.pwned))

    async def test_allowlisted_programs_named_like_bash_builtins(self) -> None:
        """With ``printf``, ``test`` and ``[`` allowlisted (by name, or as
        ``/usr/bin/*``), bash runs its builtins for them: ``printf -v`` and
        ``test -v`` with a subscript are refused there too."""
        for allowlist in (("printf", "test", "["), ("/usr/bin/*",)):
            tool = self.make(*allowlist)
            for command in (
                "bash -c \"printf -v X 'x[\\x24(touch pwned)]'; printf -v 'a[X]' y\"",
                "bash -c \"printf -vX 'x[\\x24(touch pwned)]'; command printf -v 'a[X]' y\"",
                "bash -c 'printf -v PATH %s d; true'",
                "bash -c \"printf -v X 'x[\\x24(touch pwned)]'; test -v 'a[X]'\"",
                "bash -c \"printf -v X 'x[\\x24(touch pwned)]'; [ -v 'a[X]' ]\"",
                "bash -c \"printf -v X 'x[\\x24(touch pwned)]'; command test -v 'a[X]'\"",
            ):
                await self.assert_denied(tool, command)
            await self.assert_runs(
                tool, "bash -c \"printf '%s-' -v; test -n x && printf ok\"", "-v-ok"
            )
        self.assertFalse(os.path.exists(self.pwned))

    async def test_env_values_with_expansions_are_refused(self) -> None:
        """An ``env`` override holding ``$`` or a backquote makes the command a
        miss, so no value waits for an evaluation the allowlist missed."""
        tool = self.make()
        for value in ("a[$(touch pwned)]", "`touch pwned`", "${X}", "$"):
            await self.assert_denied(tool, "bash -c 'test -n x'", env={"X": value})
            await self.assert_denied(tool, "true", env={"X": value})
        self.assertFalse(os.path.exists(self.pwned))

    async def test_safe_builtins_still_run_in_every_shell(self) -> None:
        tool = self.make()
        for command in (
            "test -d d && pwd",
            "[ -d d ] && pwd",
            "bash -c 'test -d d && [ 1 -lt 2 ] && pwd'",
            "dash -c '[ -n x ] && pwd'",
            "sh -c 'test x = x && pwd'",
        ):
            await self.assert_runs(tool, command, self.ws, env={"X": "plain [value]"})
        # bash's test -eq/-lt take integers only: no arithmetic on a variable.
        await self.call(tool, "bash -c 'test X -eq 1 || [ X -lt 1 ]'", env={"X": "a[b]"})
        self.assertFalse(os.path.exists(self.pwned))

    # -- 2. high: POSIXLY_CORRECT env override turns profile "values" into file operands --

    async def test_posixly_correct_head_reads_workspace_file(self) -> None:
        tool = self.make()
        await self.assert_no_leak(tool, "true | head - -n secret", env={"POSIXLY_CORRECT": "1"})

    async def test_posixly_correct_head_reads_file_outside_workspace(self) -> None:
        tool = self.make()
        await self.assert_no_leak(
            tool, "true | head - -n d/../../outside", env={"POSIXLY_CORRECT": "1"}
        )

    async def test_posixly_correct_tail_reads_file(self) -> None:
        tool = self.make()
        await self.assert_no_leak(tool, "true | tail - -n secret", env={"POSIXLY_CORRECT": "1"})

    async def test_posixly_correct_cut_reads_file(self) -> None:
        tool = self.make()
        await self.assert_no_leak(tool, "true | cut -c1- - -f secret", env={"POSIXLY_CORRECT": "1"})

    async def test_posixly_correct_uniq_writes_file(self) -> None:
        """uniq's second operand is its OUTPUT file: ``uniq - -c`` creates ``-c``
        (content from the command's stdin, which the process tool can write)."""
        tool = self.make()
        await self.call(tool, "true | uniq - -c", env={"POSIXLY_CORRECT": "1"})
        self.assertFalse(os.path.exists(os.path.join(self.ws, "-c")), "uniq wrote a file")

    async def test_getopt_variables_are_refused_as_env_overrides(self) -> None:
        tool = self.make()
        for name in ("POSIXLY_CORRECT", "posixly_correct", "_POSIX2_VERSION", "GREP_OPTIONS",
                     "POSIX_ME_HARDER", "EXECIGNORE", "_12_GNU_nonoption_argv_flags_"):  # fmt: skip
            res = await self.call(tool, "true | head -n 1", env={name: "1"})
            self.assertTrue(res.is_error, name)
            self.assertIn("cannot be overridden", res.content, name)

    async def test_options_after_an_operand_and_path_values_are_refused(self) -> None:
        """Whatever the environment: no option after ``-`` or an operand, no
        operand with a ``/`` or that is ``..``, and no head/tail count that is
        a path. (A ``/`` in another flag's value is fine since the second
        review: test_exec_review_findings2.py.)"""
        tool = self.make()
        for command in (
            "true | head - -n secret",
            "true | head - -nsecret",
            "true | tail - -c secret",
            "true | cut -c1- - -f secret",
            "true | uniq - -c",
            "true | tr a b -d",
            "true | tr a -- b",
            "true | head -n d/../../outside",
            "true | head -n d/x",
            "true | head --lines=a/b",
            "true | tr a/b c",
            "true | tr .. x",
            "true | head -n ..",
            # A lone / too (OpenClaw refuses a leading one).
            "true | tr / _",
        ):
            await self.assert_denied(tool, command)
        self.assertFalse(os.path.exists(os.path.join(self.ws, "-c")))

    async def test_options_before_operands_and_stdin_still_run(self) -> None:
        tool = self.make("printf")
        for command, expected in (
            ("printf a,b | cut -d , -f 2 -", "b"),
            ("printf 'a\\nb\\n' | head -n 1 -", "a"),
            ("printf ab | tr -- a c", "cb"),
        ):
            await self.assert_runs(tool, command, expected)

    # -- 3. medium (opt-in grep): --binary is grep's own flag, not --binary-files -----

    async def test_grep_binary_abbreviation_reads_file(self) -> None:
        tool = self.make(safe_bins=(*DEFAULT_SAFE_BINS, "grep"))
        await self.assert_no_leak(tool, "grep --binary secret -e .")
        await self.assert_no_leak(tool, "grep --binary d/../../outside -e .")

    async def test_long_flags_must_be_written_in_full(self) -> None:
        tool = self.make("printf", safe_bins=(*DEFAULT_SAFE_BINS, "grep", "sort"))
        for command in (
            "printf a | grep --binary -e a",
            "printf a | grep --reg a",
            "printf a | head --li 1",
            "printf a | sort --field ,",
            "printf a | wc --line",
        ):
            await self.assert_denied(tool, command)
        for command, expected in (
            ("printf a | grep --binary-files=text --regexp a", "a"),
            ("printf a | head --lines 1", "a"),
            ("printf a | wc --lines", "0"),
        ):
            await self.assert_runs(tool, command, expected)

    # -- 4. low: an unquoted ``#`` starts a comment for the shell, not for the policy ----

    async def test_comment_hides_the_wrapped_program(self) -> None:
        """With ``/usr/bin/ls`` allowed and a directory named ``#`` in the
        workspace (the write tool can make one), the policy resolves
        ``#/../../../usr/bin/ls`` to ``/usr/bin/ls`` and sees ``env ls``, while
        dash drops ``#...`` as a comment and runs bare ``env``, which prints the
        command's environment (``env`` alone is documented as refused)."""
        os.makedirs(os.path.join(self.ws, "#"))
        tool = self.make("/usr/bin/ls")
        res = await self.call(tool, "env #" + "/.." * 20 + "/usr/bin/ls")
        self.assertNotIn("OPENCLAW_SHELL=exec", res.content, "bare env ran")

    async def test_comments_are_refused_and_hash_inside_words_runs(self) -> None:
        tool = self.make("printf")
        for command in ("printf x #y", "printf x;#y", "true && #x", "#"):
            await self.assert_denied(tool, command)
        await self.assert_runs(tool, "printf '%s ' a#b '#' \\# \"#c\"", "a#b # # #c")
