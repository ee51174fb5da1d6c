"""The third adversarial review of the exec allowlist: each case failed on
273895f (the command was accepted and, when run, executed a command the
policy never saw, fed a workspace message catalog to bash, or wrote files
outside the workspace).

Each case drives the real exec tool (``/bin/sh -c``; bash through
``bash -c``) in allowlist mode with the default policy (empty allowlist,
default safe bins) unless noted.
"""

from __future__ import annotations

import os

from openclaw.agents.tools.policy import DEFAULT_SAFE_BINS
from tests.exec_support import DENIED, ExecToolCase
from tests.test_exec_review_findings2 import _mo


class ExecReview3Findings(ExecToolCase):
    """Each case through the real exec tool, default policy unless noted."""

    # -- 1. critical (where a Big5/GBK-family locale is installed) ---------------------

    async def test_a_locale_in_another_character_set_is_refused(self) -> None:
        """bash reads its script in the locale's encoding; the policy reads
        UTF-8. In Big5, after \u4861 (UTF-8 E4 A1 A1) the backslash (0x5C) is
        the trail byte of a character, so the ``;`` it escapes is bare to
        bash: the policy saw the safe builtin ``true`` with one argument, bash
        ran ``touch pwned``. Only a UTF-8 (or C/POSIX) ``LC_ALL``,
        ``LC_CTYPE`` or ``LANG`` may be set; the call is refused whatever
        locales the host has installed."""
        tool = self.make()
        command = "bash -c 'true \u4861\\;touch pwned'"
        for value in ("zh_TW.BIG5", "zh_CN.GBK", "zh_CN.GB18030", "zh_TW", "en_US"):
            for name in ("LC_ALL", "LC_CTYPE", "LANG"):
                res = await self.call(tool, command, env={name: value})
                self.assertIn("only a UTF-8 locale", res.content, (name, value))
                self.assertFalse(os.path.exists(os.path.join(self.ws, "pwned")))
        # UTF-8 and C locales still run (the escaped ';' is an argument there).
        for value in ("C.UTF-8", "en_US.utf8", "C", "POSIX"):
            res = await self.call(tool, "true a\\;b && echo ran", env={"LC_ALL": value})
            self.assertIn("ran", res.content, value)

    async def test_the_gateways_own_non_utf8_locale_is_not_passed_on(self) -> None:
        """The same holds for the operator's environment: a Big5 ``LANG`` or
        ``LC_ALL`` of the gateway does not reach the command (it runs in C)."""
        tool = self.make(
            base_env={**self.env, "LANG": "zh_TW.BIG5", "LC_ALL": "zh_TW.BIG5", "LC_TIME": "C"}
        )
        res = await self.call(tool, "bash -c 'true'")
        self.assertNotIn(DENIED, res.content)
        from openclaw.agents.tools.exec_env import build_env

        env = build_env({**self.env, "LANG": "zh_TW.BIG5", "LC_ALL": "zh_TW.BIG5", "LC_TIME": "C"})
        self.assertNotIn("LANG", env)
        self.assertNotIn("LC_ALL", env)
        self.assertEqual(env["LC_TIME"], "C")

    # -- 2. medium: TEXTDOMAIN/TEXTDOMAINDIR load bash's messages from the workspace ----

    async def test_textdomaindir_loads_bash_catalog_from_workspace(self) -> None:
        """bash binds its message domain to ``$TEXTDOMAINDIR`` at startup
        (``set_default_locale_vars``: ``bindtextdomain(TEXTDOMAIN,
        TEXTDOMAINDIR)``). With ``TEXTDOMAIN=bash``, ``TEXTDOMAINDIR=<ws>`` and
        ``LANGUAGE=xx`` (all accepted by exec_env.py: neither name is in
        ``BLOCKED_LOCALE_PATHS``, exec_env.py:142, and ``xx`` is no path),
        bash's own messages come from ``<ws>/xx/LC_MESSAGES/bash.mo``:
        ``bash -c 'cd a b'`` prints the workspace's format for "too many
        arguments" through ``builtin_error``'s printf (``%p`` leaks stack
        words, ``%n`` writes memory). Same class as 32d9b75's LANGUAGE fix."""
        os.makedirs(os.path.join(self.ws, "xx", "LC_MESSAGES"))
        with open(os.path.join(self.ws, "xx", "LC_MESSAGES", "bash.mo"), "wb") as f:
            f.write(
                _mo(
                    {
                        "": "Content-Type: text/plain; charset=UTF-8\n",
                        "too many arguments": "HIJACKED %p %p %p",
                    }
                )
            )
        tool = self.make()
        res = await self.call(
            tool,
            "bash -c 'cd a b'",
            env={"TEXTDOMAIN": "bash", "TEXTDOMAINDIR": self.ws, "LANGUAGE": "xx"},
        )
        self.assertNotIn("HIJACKED", res.content, "bash used the workspace's format string")
        self.assertIn("TEXTDOMAIN, TEXTDOMAINDIR: cannot be overridden", res.content)

    # -- 3. medium (sort opted in): TMPDIR is sort's -T --------------------------------

    async def test_tmpdir_override_makes_sort_write_outside_the_workspace(self) -> None:
        """``sort -T`` is denied (exec_safe_bins.py:140) because sort writes
        its input to temporary files there, but ``TMPDIR`` is the same setting
        and any override of it is accepted (exec_env.py: not blocked). With a
        tiny buffer (``-S 1b``) sort spills what it reads into
        ``$TMPDIR/sortXXXXXX`` (mode 0600, names of letters and digits), and
        ``timeout -s KILL`` leaves them there: files with model-chosen
        content in any directory the gateway user can write (as root,
        ``/etc/cron.d`` runs them). Policy: default safe bins plus ``sort``
        (the documented opt-in); the input comes through the process's stdin."""
        outside = os.path.join(self.base, "outside")
        os.makedirs(outside)
        tool = self.make(safe_bins=(*DEFAULT_SAFE_BINS, "sort"))
        res = await self.call(
            tool,
            "timeout -s KILL 2 sort -S 1b",
            env={"TMPDIR": outside},
            background=True,
        )
        self.assertIn("TMPDIR: cannot be overridden", res.content)
        sessions = self.registry.for_agent("main")
        if sessions:
            session = sessions[0]
            session.write_stdin(
                b"".join(b"* * * * * root id > /tmp/x %d\n" % i for i in range(3000)), False
            )
            await session.when_ended()
        left = os.listdir(outside)
        self.assertEqual(len(left), 0, f"sort left {len(left)} spill files outside: {left[:3]}")
