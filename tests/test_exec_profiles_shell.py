"""Safe-bin profiles, ``$`` expansions and ``sh -c`` scripts in exec allowlist mode
(real subprocesses, through the exec tool).

What a user saw: ``ls | head -n 5`` and ``ls | tr a-z A-Z`` were refused
(safe bins took flags only) where OpenClaw's per-bin profiles accept them;
``ls $HOME`` ran with ``ls`` allowlisted, where OpenClaw refuses a ``$``
expansion; and with ``sh`` allowlisted ``sh -c '<anything>'`` ran, where
OpenClaw judges each segment of the script. Every new acceptance has hostile
cases here that must be refused without running: a workspace file
``secret`` must not be printed and no ``pwned`` marker may appear.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.tools.exec import ExecTool
from openclaw.agents.tools.exec_safe_bins import safe_bin_arguments
from openclaw.agents.tools.exec_split import split_command
from openclaw.agents.tools.policy import DEFAULT_SAFE_BINS
from tests.exec_support import DENIED, ExecToolCase

BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
SECRET = "TOPSECRET"
ALL_SAFE_BINS = (*DEFAULT_SAFE_BINS, "sort", "grep")


class _ExecCase(ExecToolCase):
    safe_bins = ALL_SAFE_BINS

    def setUp(self) -> None:
        super().setUp()
        self.env = BASE_ENV
        os.makedirs(os.path.join(self.ws, "d"))
        for name in ("secret", "in", "list"):
            with open(os.path.join(self.ws, name), "w") as f:
                f.write(f"{SECRET}\n")
        with open(os.path.join(self.ws, "script.sh"), "w") as f:
            f.write(f'touch "{self.pwned}"\n')

    async def assert_runs(self, tool: ExecTool, command: str, expected: str) -> None:
        res = await self.call(tool, command)
        self.assertFalse(res.is_error, f"{command}: {res.content}")
        self.assertEqual(res.content.strip(), expected, command)

    async def assert_all_refused(self, tool: ExecTool, commands: list[str]) -> None:
        for command in commands:
            res = await self.call(tool, command)
            self.assertTrue(res.is_error, f"{command}: {res.content}")
            self.assertIn(DENIED, res.content, command)
        self.assertFalse(os.path.exists(self.pwned))
        for name in ("out", "file", "sh"):
            self.assertFalse(os.path.exists(os.path.join(self.ws, name)), name)


class SafeBinProfileTests(_ExecCase):
    async def test_profile_value_flags_and_tr_sets_run(self) -> None:
        """The safe bins take the value flags and positionals of their
        OpenClaw profile: ``head -n 2``, ``cut -d , -f 2``, ``tr a-z A-Z`` ..."""
        tool = self.make("printf")
        feed = "printf 'b,2\\na,1\\na,1\\n'"
        for tail, expected in [
            ("head -n 2", "b,2\na,1"),
            ("head -n2", "b,2\na,1"),
            ("head -qn2", "b,2\na,1"),
            ("head --lines=2", "b,2\na,1"),
            ("head --lines 2", "b,2\na,1"),
            ("head -n -2", "b,2"),
            ("head -c 3 -", "b,2"),
            ("tail -n 1", "a,1"),
            ("wc -l", "3"),
            ("cut -d , -f 2", "2\n1\n1"),
            ("cut -d, -f2", "2\n1\n1"),
            ("tr a-z A-Z", "B,2\nA,1\nA,1"),
            ("tr -d ,", "b2\na1\na1"),
            ("uniq -c", "1 b,2\n      2 a,1"),
            ("uniq --group=append", "b,2\n\na,1\na,1"),
            ("sort -t , -k 2", "a,1\na,1\nb,2"),
            ("grep -e b", "b,2"),
        ]:
            await self.assert_runs(tool, f"{feed} | {tail}", expected)

    async def test_values_and_operands_outside_the_profile_are_refused(self) -> None:
        """File operands, denied flags (in any abbreviation or cluster), unknown
        flags, and values the shell would expand or that name a path."""
        tool = self.make("printf")
        feed = "printf a | "
        commands = [
            # Values the shell would expand, or that name a path.
            "head -n '*'",
            "head -n *",
            "head -n \\*",
            "head -n [s]*",
            "head -n $(id)",
            "head -n `id`",
            "head -n $X",
            'head -n "$X"',
            "head -n ${X}",
            "head -n '$X'",
            "head -n ~",
            "head -n ~/x",
            "head -n ./secret",
            "head -n /etc/passwd",
            "head -n ''",
            "head --lines=",
            "head -n{1,2}",
            "tr a-z '[:upper:]*'",
            "tr a-z '[:upper:]'",
            "tr 'a\\n' b",
            "cut -d '' -f1",
            # File operands: stdin-only bins take none; tr takes its sets only.
            "head --lines=5 /etc/passwd",
            "head -n 5 secret",
            "head secret",
            "head -- secret",
            "head -n5 secret",
            "head -n 5 -- secret",
            "head -n 5 ''",
            "tail -n 1 secret",
            "cut -f1 secret",
            "wc secret",
            "wc -l d/../secret",
            "tr a b secret",
            "tr",
            "uniq in out",
            "uniq in",
            "uniq - out",
            "uniq -f 1 in",
            "uniq -cd in",
            # GNU uniq takes --group's method only after '=': 'in' is a file.
            "uniq --group in",
            "sort -k1 secret",
            "grep b",
            "grep -e b secret",
            # Denied flags, abbreviated or clustered.
            "sort -o file",
            "sort -ofile",
            "sort -k1 -o out",
            "sort --output=file",
            "sort --out file",
            "sort --compress-program=sh",
            "sort --compress=sh",
            "sort --files0=list",
            "sort -T d",
            "tail -f",
            "tail -F",
            "tail -fn5",
            "tail --fo",
            "tail --retry",
            "wc --files0-from=list",
            "wc --files0=list",
            "grep -r -e x",
            "grep -f secret",
            "grep --file=secret",
            "grep -e x --exclude-from=list",
            # Flags the profile does not know fail closed.
            "head -5",
            "head --quiet=x",
            "sort -r",
            "wc --version",
            "uniq -D",
            # Never safe bins.
            "awk 1",
            "sed p",
            "jq .",
        ]
        await self.assert_all_refused(tool, [feed + c for c in commands])
        # A stdin-only bin's own output never holds the file.
        res = await self.call(tool, "printf a | head -n 1 secret")
        self.assertNotIn(SECRET, res.content)

    async def test_a_safe_bin_without_a_profile_is_refused(self) -> None:
        """OpenClaw: a safe bin needs a profile; ``cat`` listed in safeBins
        still gets nothing (not even flags)."""
        tool = self.make("printf", safe_bins=("cat",))
        await self.assert_all_refused(tool, ["printf a | cat", "printf a | cat -n", "cat secret"])


class DollarExpansionTests(_ExecCase):
    async def test_dollar_expansions_in_arguments_are_refused(self) -> None:
        """As in OpenClaw, a ``$`` expansion anywhere in an allowlisted
        program's arguments makes the command a miss; quoted or escaped it is
        literal text and runs."""
        tool = self.make("printf", "ls", "touch")
        await self.assert_all_refused(
            tool,
            [
                "printf '%s\\n' $HOME",
                "printf '%s\\n' \"$HOME\"",
                "printf '%s\\n' ${HOME}",
                "printf '%s' a$HOME",
                "printf %s $1",
                "printf %s $$",
                "printf x$",
                "printf $'x'",
                "ls $HOME",
                f"touch {self.ws}/pwned$X",
                "printf ok | head -c $N",
            ],
        )
        await self.assert_runs(tool, "printf '%s' '$HOME'", "$HOME")
        await self.assert_runs(tool, "printf '%s' \\$HOME", "$HOME")
        await self.assert_runs(tool, 'printf "%s" "\\$HOME"', "$HOME")


class ShellScriptTests(_ExecCase):
    async def test_sh_c_runs_when_every_script_segment_is_allowed(self) -> None:
        """``sh -c SCRIPT`` (and ``bash -c``, ``dash -c``) is judged by its
        script's segments, as in OpenClaw; the shell needs no entry."""
        tool = self.make("printf")
        await self.assert_runs(tool, "sh -c 'printf ok'", "ok")
        await self.assert_runs(tool, "bash -c 'printf ok'", "ok")
        await self.assert_runs(tool, "dash -c 'printf ok'", "ok")
        await self.assert_runs(tool, "sh -c 'printf ab | head -c 1'", "a")
        await self.assert_runs(tool, "sh -c 'printf a && printf b'", "ab")
        await self.assert_runs(tool, "sh -c 'sh -c \"printf deep\"'", "deep")

    async def test_an_allowlisted_shell_no_longer_runs_anything(self) -> None:
        """With ``sh``/``bash`` allowlisted, a script with one disallowed
        segment, a login or interactive shell, a shell behind a wrapper, a
        script file, stdin or a path-named shell are all refused."""
        tool = self.make("printf", "sh", "bash", "dash", "busybox", "timeout")
        mark = f"touch {self.pwned}"
        await self.assert_all_refused(
            tool,
            [
                f"sh -c '{mark}'",
                f"bash -c '{mark}'",
                f"sh -c 'printf a; {mark}'",
                f'sh -c "printf a; {mark}"',
                f"sh -c 'printf a | {mark}'",
                f"sh -c 'printf $({mark})'",
                f"sh -c 'printf `{mark}`'",
                f"sh -c 'printf a > {self.pwned}'",
                f"sh -c 'printf \"$({mark})\"'",
                "sh -c 'printf \"$HOME\"'",
                'sh -c "printf \\"\\$HOME\\""',
                f'sh -c "printf $HOME; {mark}"',
                "sh -lc 'printf ok'",
                "bash -lc 'printf ok'",
                "sh -ic 'printf ok'",
                "sh -l -c 'printf ok'",
                "sh -e -c 'printf ok'",
                f"sh -c -x '{mark}'",
                f"sh -c +x '{mark}'",
                f"sh -c -- '{mark}'",
                "sh -c printf*",
                "sh -c ~",
                f"sh -c 'printf a\n{mark}'",
                f"sh -c 'sh -c \"sh -c {mark}\"'",
                "sh -c 'sh -c \"sh -c printf\"'",
                f"/bin/sh -c '{mark}'",
                "/bin/sh -c 'printf ok'",
                "timeout 5 sh -c 'printf ok'",
                f"timeout 5 sh -c '{mark}'",
                "exec sh -c 'printf ok'",
                "command sh -c 'printf ok'",
                "X=1 sh -c 'printf ok'",
                f"sh -c 'X=1 {mark}'",
                "sh script.sh",
                "bash script.sh",
                "sh < script.sh",
                "printf 'touch pwned' | sh",
                "sh",
                f"busybox sh -c '{mark}'",
                "busybox sh",
                f"zsh -c '{mark}'",
            ],
        )


class UnitTests(SynchronousTestCase):
    def test_split_marks_expanding_words(self) -> None:
        """A ``$`` outside single quotes is dynamic; a glob counts only bare."""
        tokens = split_command("a $X \"$X\" '$X' \\$X '*' * ~ x~")
        assert tokens is not None
        self.assertEqual(
            [(t.text, t.dynamic, t.literal) for t in tokens],
            [
                ("a", False, True),
                ("$X", True, False),
                ("$X", True, False),
                ("$X", False, True),
                ("$X", False, True),
                ("*", False, True),
                ("*", False, False),
                ("~", False, False),
                ("x~", False, False),
            ],
        )

    def test_profile_parsing(self) -> None:
        """Long flags only in full (no abbreviation); a value flag in a
        cluster takes the rest of the cluster."""
        self.assertTrue(safe_bin_arguments("head", ["--lines", "5"]))
        self.assertFalse(safe_bin_arguments("head", ["--li", "5"]))
        self.assertFalse(safe_bin_arguments("sort", ["--f", "x"]))
        self.assertFalse(safe_bin_arguments("sort", ["--fie", ","]))
        self.assertTrue(safe_bin_arguments("sort", ["--field-separator", ","]))
        self.assertTrue(safe_bin_arguments("uniq", ["-cf1"]))
        self.assertFalse(safe_bin_arguments("tail", ["-fn", "1"]))
        self.assertFalse(safe_bin_arguments("head", ["-n"]))  # value missing
