"""Second adversarial review of the exec allowlist (after 34a1096).

Every ``test_*`` here FAILS on 34a1096: the command is accepted by the
allowlist policy and, when run, executes a command the policy never saw,
runs the operator's shell startup files, or feeds an attacker-written
message catalog (printf format strings) to a safe bin. The last test pins
a harmless command that the newest fixes made an allowlist miss.

Each case drives the real exec tool (``/bin/sh -c``; bash through
``bash -c``) in allowlist mode with the default policy (empty allowlist,
default safe bins) unless noted. Files the model needs in the workspace are
written with the real ``write`` tool where that is possible.
"""

from __future__ import annotations

import os
import struct

from openclaw.agents.tools.policy import DEFAULT_SAFE_BINS
from tests.exec_support import DENIED, ExecToolCase


def _mo(messages: dict[str, str]) -> bytes:
    """A GNU gettext message catalog (.mo) holding ``messages``."""
    pairs = sorted(messages.items())
    n = len(pairs)
    keys_at, values_at = 28, 28 + 8 * n
    offset = values_at + 8 * n
    table, blob = b"", b""
    entries = []
    for text in [k for k, _ in pairs] + [v for _, v in pairs]:
        raw = text.encode()
        entries.append((len(raw), offset + len(blob)))
        blob += raw + b"\0"
    table = b"".join(struct.pack("<2I", length, at) for length, at in entries)
    header = struct.pack("<7I", 0x950412DE, 0, n, keys_at, values_at, 0, 0)
    return header + table + blob


class ExecReview2Findings(ExecToolCase):
    # -- 1. critical: globs hand bash's test/printf a -v and a subscript ---------------

    async def test_glob_operands_make_bash_test_v_run_a_command(self) -> None:
        """``_safe_test`` (exec_wrappers.py:117) looks for ``-v``/``-R`` and ``[``
        in the words as written, but a bare glob is expanded by bash first. With
        two files the model wrote, ``-v`` and ``a[$(touch pwned)]``, ``test *``
        is ``test -v 'a[$(touch pwned)]'``: bash expands the subscript and runs
        the command substitution. Default policy, no env."""
        self.write("d/-v")
        self.write("d/a[$(touch pwned)]")
        tool = self.make()
        for command in (
            "bash -c 'cd d && test *'",
            "bash -c 'cd d && [ * ]'",
            "bash -c 'cd d && test -? a*'",
        ):
            res = await self.call(tool, command)
            self.assertFalse(
                os.path.exists(os.path.join(self.ws, "d", "pwned")),
                f"{command!r} ran the file name's $(touch pwned): {res.content}",
            )

    async def test_glob_operands_make_bash_printf_v_run_a_command(self) -> None:
        """``builtin_safe`` (exec_wrappers.py:134) refuses ``printf -v`` only when
        ``argv[1]`` is written ``-v...``; ``printf *`` in a directory holding
        ``-v``, ``a[$(touch pwned)]`` and ``b`` is ``printf -v 'a[$(...)]' b``,
        whose subscript bash expands. Allowlist: printf only."""
        self.write("d/-v")
        self.write("d/a[$(touch pwned)]")
        self.write("d/b")
        tool = self.make("/usr/bin/printf")
        res = await self.call(tool, "bash -c 'cd d && printf *'")
        self.assertFalse(
            os.path.exists(os.path.join(self.ws, "d", "pwned")),
            f"printf * ran the file name's $(touch pwned): {res.content}",
        )

    # -- 2. high: SSH_CLIENT makes bash -c source the startup files ------------------

    async def test_ssh_client_override_makes_bash_source_bashrc(self) -> None:
        """Debian's bash (SSH_SOURCE_BASHRC) sources /etc/bash.bashrc and
        ~/.bashrc when SSH_CLIENT or SSH2_CLIENT is set and SHLVL < 2 (SHLVL is
        not passed through, so bash starts at 1). Neither name is blocked
        (exec_env.py), so ``bash -c true`` runs whatever the user's rc runs
        before its interactivity guard (here: a program that is on no
        allowlist), and PATH or functions it sets apply to the script."""
        marker = os.path.join(self.home, "bashrc-ran")
        with open(os.path.join(self.home, ".bashrc"), "w") as f:
            f.write(f"/usr/bin/touch {marker}\ncase $- in *i*) ;; *) return;; esac\n")
        tool = self.make()
        for env in (
            {"SSH_CLIENT": "203.0.113.7 50000 22"},
            {"SSH2_CLIENT": "203.0.113.7 50000 22"},
        ):
            res = await self.call(tool, "bash -c true", env=env)
            self.assertFalse(
                os.path.exists(marker), f"bash -c true with {env} ran ~/.bashrc: {res.content}"
            )

    async def test_every_ssh_session_variable_and_shlvl_are_refused(self) -> None:
        """Not only the two bash reads: ``SSH_CONNECTION``, ``SSH_TTY`` and
        ``SHLVL`` (which decides whether bash reads them) are refused too, and
        the command does not run."""
        tool = self.make()
        for name in ("SSH_CLIENT", "SSH2_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SHLVL", "shlvl"):
            res = await self.call(tool, "bash -c 'pwd'", env={name: "1"})
            self.assertTrue(res.is_error, name)
            self.assertIn("cannot be overridden", res.content, name)
            self.assertIn("The command did not run", res.content, name)

    # -- 3. medium: LANGUAGE loads a message catalog from the workspace --------------

    async def test_language_override_loads_catalog_from_workspace(self) -> None:
        """gettext builds ``/usr/share/locale/<LANGUAGE>/LC_MESSAGES/<domain>.mo``
        and glibc only refuses a ``/`` in LANGUAGE for setuid programs, so
        ``LANGUAGE=../../../<workspace>/xx`` makes every localized program (the
        safe bins, ls, git) take its messages, printf formats included, from a
        file in the workspace: ``tr a`` printed stack words for ``%p`` (``%n``
        writes memory). The catalog is binary, so it needs a way in other than
        ``write`` (a cloned repository, an attachment); it is written directly here."""
        os.makedirs(os.path.join(self.ws, "xx", "LC_MESSAGES"))
        with open(os.path.join(self.ws, "xx", "LC_MESSAGES", "coreutils.mo"), "wb") as f:
            f.write(
                _mo(
                    {
                        "": "Content-Type: text/plain; charset=UTF-8\n",
                        "missing operand after %s": "HIJACKED %p %p %p %p",
                    }
                )
            )
        tool = self.make()
        language = "../../../../../../../.." + self.ws + "/xx"
        res = await self.call(tool, "tr a", env={"LANGUAGE": language})
        self.assertNotIn("HIJACKED", res.content, "tr used the workspace's format string")

    async def test_locale_and_zone_paths_are_refused_plain_values_run(self) -> None:
        """``LOCPATH``, ``NLSPATH``, ``TZDIR`` and ``GCONV_PATH`` are refused
        whatever their value, and so is a ``LANG``/``LANGUAGE``/``LC_*`` value
        with a ``/`` or ``..`` and a ``TZ`` that is a path; ordinary locale and
        zone values still run."""
        tool = self.make()
        for env in (
            {"LOCPATH": "xx"},
            {"NLSPATH": "xx/%N"},
            {"TZDIR": "zones"},
            {"GCONV_PATH": "xx"},
            {"LANG": "../xx"},
            {"LC_MESSAGES": self.ws + "/xx"},
            {"LC_ALL": "..xx"},
            {"LANGUAGE": "en:../../xx"},
            {"TZ": "/tmp/zone"},
            {"TZ": ":" + self.ws + "/zone"},
            {"TZ": "Europe/../../../tmp/zone"},
        ):
            res = await self.call(tool, "pwd", env=env)
            self.assertTrue(res.is_error, env)
            self.assertIn("The command did not run", res.content, env)
        for env in (
            {"LANG": "C.UTF-8", "LANGUAGE": "en_GB:en", "LC_ALL": "C"},
            {"TZ": "Europe/Berlin"},
            {"TZ": "UTC0"},
        ):
            res = await self.call(tool, "pwd", env=env)
            self.assertFalse(res.is_error, f"{env}: {res.content}")
            self.assertEqual(res.content.strip(), self.ws)

    # -- 4. low: harmless commands the newest fixes refuse ---------------------------

    async def test_slash_inside_a_pattern_or_delimiter_is_not_a_path(self) -> None:
        """0fc1cb4 refuses a ``/`` anywhere in a safe-bin value (exec_safe_bins.py:186),
        though no profile value is a file name once options after operands are
        refused and POSIXLY_CORRECT is blocked: ``grep -e src/`` (opt-in grep) and
        ``cut --output-delimiter=' / '`` are common and were allowed before."""
        tool = self.make(safe_bins=(*DEFAULT_SAFE_BINS, "grep"))
        for command, expected in (
            ("pwd | grep -e /workspace", self.ws),
            ("pwd | cut -d e --output-delimiter=' / ' -f 1,2", None),
        ):
            res = await self.call(tool, command)
            self.assertFalse(res.is_error, f"{command!r}: {res.content}")
            if expected is not None:
                self.assertEqual(res.content.strip(), expected)

    async def test_tail_obsolete_follow_is_not_a_c_value(self) -> None:
        """With one argument GNU tail takes ``-cf`` in its obsolete form (10
        bytes, ``-f`` follow), not ``-c`` with the value ``f``: the denied
        ``-f`` is reached (exec_safe_bins.py:252 reads ``f`` as -c's value).
        Only a stdin that is no pipe is followed, so this is low."""
        tool = self.make()
        res = await self.call(tool, "tail -cf")
        self.assertIn(DENIED, res.content, res.content)

    # -- the fixes: what they also refuse, and what still runs -----------------------

    async def test_builtins_get_their_words_as_written(self) -> None:
        """A command that is (also) a shell builtin is judged by its words only
        when they reach it unexpanded: a bare glob, brace or ``~`` in any word
        is a miss, at the top level (``/bin/sh`` may be bash) as in ``bash -c``,
        behind ``command`` or a wrapper too. Quoted, the same words run."""
        self.write("d/-v")
        self.write("d/a[$(touch pwned)]")
        self.write("d/b")
        tool = self.make("/usr/bin/printf", "echo", "/usr/bin/[")
        for command in (
            "cd d && printf *",
            "cd d && echo *",
            "cd d && command printf *",
            "cd d && timeout 5 printf *",
            "bash -c 'cd d && echo a*'",
            "bash -c 'cd d && test -n {a,b}'",
            "cd ~",
            "bash -c 'echo a=~'",
        ):
            res = await self.call(tool, command)
            self.assertIn(DENIED, res.content, command)
        self.assertFalse(os.path.exists(os.path.join(self.ws, "d", "pwned")))
        for command, expected in (
            ("cd d && test -f 'a*' || printf 'no\\n'", "no"),
            ("bash -c 'cd d && [ -f b ] && printf %s \"*\"'", "*"),
            ("cd d && /usr/bin/[ -f b ] && echo '-v' '[x]'", "-v [x]"),
            ("printf -- -v", "-v"),
        ):
            res = await self.call(tool, command)
            self.assertFalse(res.is_error, f"{command!r}: {res.content}")
            self.assertEqual(res.content.strip(), expected, command)

    async def test_head_and_tail_counts_must_be_numbers(self) -> None:
        """A ``-n``/``-c`` value of ``head`` or ``tail`` is a count: a sign,
        digits and a GNU size suffix; anything else is a miss, in every
        spelling. Counts run as before."""
        tool = self.make("/usr/bin/printf")
        for command in (
            "tail -c f",
            "tail --bytes=f",
            "tail -c -",
            "head -n x",
            "head -nk",
            "tail -n f",
            "tail --lines f",
            "head -c 5f",
        ):
            res = await self.call(tool, command)
            self.assertIn(DENIED, res.content, command)
        for command, expected in (
            ("printf 'a\\nb\\nc\\n' | head -n -1 | tail -n +2", "b"),
            ("printf abcdef | head -c 1KiB | tail -c4", "cdef"),
            ("printf 'a\\nb\\n' | tail --lines=1", "b"),
        ):
            res = await self.call(tool, command)
            self.assertFalse(res.is_error, f"{command!r}: {res.content}")
            self.assertEqual(res.content.strip(), expected, command)

    async def test_a_slash_in_a_flag_value_runs_in_an_operand_it_does_not(self) -> None:
        """Every profile value flag takes a required argument, so its value is
        never a file operand: ``/`` and ``..`` are fine there. An operand (``tr``'s
        sets) still names no path, and no option may follow one."""
        tool = self.make("/usr/bin/printf", safe_bins=(*DEFAULT_SAFE_BINS, "grep", "sort"))
        for command, expected in (
            ("printf a/b | cut -d / -f 2", "b"),
            ("printf a/b | cut -d/ -f1", "a"),
            ("printf 'x/1\\ny/0\\n' | sort -t / -k 2", "y/0\nx/1"),
            ("printf 'a..b\\n' | grep -e ..b", "a..b"),
            ("printf 'a\\n' | grep --label=/etc/passwd -e a", "a"),
        ):
            res = await self.call(tool, command)
            self.assertFalse(res.is_error, f"{command!r}: {res.content}")
            self.assertEqual(res.content.strip(), expected, command)
        self.write("secret", "TOP SECRET\n")
        for command in (
            "printf a | tr / _",
            "printf a | tr .. x",
            "printf a | tr a d/../secret",
            "printf a | grep -e a secret",
            "printf a | grep -e a -- d/../secret",
            "printf a | cut -d / -f 1 - secret",
            "printf a | head -c 5 d/../secret",
        ):
            res = await self.call(tool, command)
            self.assertIn(DENIED, res.content, command)
            self.assertNotIn("TOP SECRET", res.content, command)
