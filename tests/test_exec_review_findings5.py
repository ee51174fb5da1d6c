"""The fifth adversarial review of the exec allowlist (words the policy reads
as a path or a wrapper that the shell reads as something else): each case
drives the real exec tool or the policy in allowlist mode and failed on
3ba7c8e.
"""

from __future__ import annotations

import os

from openclaw.agents.tools.policy import ExecPolicy
from tests.exec_support import DENIED, ExecToolCase


class ExecReview5Findings(ExecToolCase):
    # -- 1. bash's `time` reserved word: its options are the command ------------------

    async def test_bash_time_keyword_runs_the_option_word_as_the_program(self) -> None:
        """exec_wrappers.unwrap peels ``time`` as GNU time (``_time``, with
        ``-f FMT``, ``-v``, ``-a``, ``-q`` ...) and the policy judges the word
        after the options. In bash (not in POSIX mode) ``time`` at the start
        of a pipeline is a *reserved word* that only knows ``-p`` and ``--``:
        ``bash -c 'time -v ls x'`` runs the program ``-v`` with the
        arguments ``ls x``. With a path-pattern allowlist and a
        directory on PATH the model can put an executable in (here
        ``pathPrepend: [<ws>/bin]`` and an allowlisted ``cp``, which copies
        the executable bit), the policy judges ``ls`` (allowlisted as ``/usr/bin/ls``) and bash runs
        the model's ``bin/-v`` (a copy of ``touch``: any program). Without
        ``time``, path patterns hold: a ``bin/cp`` copy is judged by its real
        path and refused."""
        cp = os.path.realpath("/usr/bin/cp")
        ls = os.path.realpath("/usr/bin/ls")
        bindir = os.path.join(self.ws, "bin")
        os.makedirs(bindir)
        tool = self.make(cp, ls, path_prepend=(bindir,))
        # Allowed and harmless on its own: cp is allowlisted.
        res = await self.call(tool, f"{cp} /usr/bin/touch bin/-v")
        self.assertNotIn(DENIED, res.content)
        self.assertTrue(os.access(os.path.join(bindir, "-v"), os.X_OK))
        # The path pattern holds for a look-alike named cp:
        await self.call(tool, f"{cp} /usr/bin/touch bin/cp")
        self.assertIn(DENIED, (await self.call(tool, "cp pwned0")).content)
        self.assertFalse(os.path.exists(os.path.join(self.ws, "pwned0")))
        # ...but not behind bash's `time`:
        res = await self.call(tool, "bash -c 'time -v ls pwned'")
        self.assertFalse(
            os.path.exists(os.path.join(self.ws, "pwned")),
            f"bash ran bin/-v (touch) while the policy judged ls: {res.content}",
        )
        self.assertIn(DENIED, res.content)

    def test_bash_time_keyword_options_are_refused_by_the_policy(self) -> None:
        """The same, at the policy level: every GNU time option but ``-p`` and
        ``--`` is a command name to bash's ``time``; a quoted ``'-p'`` is too
        (bash recognises the option only unquoted). The policy cannot see
        quoting, so ``time`` takes no option at all."""
        from openclaw.agents.tools.exec_match import program_resolver

        policy = ExecPolicy(security="allowlist", ask="off", allowlist=("/usr/bin/ls",))
        resolve = program_resolver(self.ws, "/usr/bin:/bin", self.home)
        for command in (
            "bash -c 'time -v ls'",
            "bash -c 'time -f %e ls'",
            "bash -c 'time -q ls'",
            "bash -c 'time -a ls'",
            "bash -c 'time --verbose ls'",
            "bash -c 'time -p -v ls'",
            "bash -c \"time '-p' ls\"",
            "bash -c 'true && time -v ls'",
            "bash -c 'true | time -v ls'",
        ):
            self.assertEqual(policy.evaluate(command, resolve).action, "deny", command)
        # Stricter than needed, as quoting cannot be seen: time takes no options.
        for command in ("bash -c 'time -p ls'", "bash -c 'time -- ls'", "nice time -v ls"):
            self.assertEqual(policy.evaluate(command, resolve).action, "deny", command)
        for command in ("bash -c 'time ls'", "time ls", "nice time ls", "bash -c 'ls | time ls'"):
            self.assertEqual(policy.evaluate(command, resolve).action, "run", command)
        # timeout's --foreground counts only as an option, not as -s's value.
        self.assertEqual(policy.evaluate("timeout -s --foreground 5 ls", resolve).action, "deny")
