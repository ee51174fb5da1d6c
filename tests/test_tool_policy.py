"""Tool selection, client tool conflicts and the exec policy (openclaw.agents.tools.policy)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.tools.policy import (
    DEFAULT_SAFE_BINS,
    TOOL_GROUPS,
    ClientToolConflictError,
    ExecPolicy,
    ExecVerdict,
    check_client_tools,
    client_tool_conflicts,
    normalize_tool_name,
    resolve_exec_policy,
    select_tools,
)
from openclaw.config.model import ExecConfig, ToolPolicyConfig

BUILTIN = (
    "read", "write", "edit", "apply_patch", "exec", "process", "web_fetch",
    "sessions_list", "sessions_history", "session_status", "memory_get", "memory_search",
)  # fmt: skip


def allowed(global_policy: ToolPolicyConfig, agent: ToolPolicyConfig | None = None) -> set[str]:
    return set(select_tools(BUILTIN, global_policy, agent).allowed)


class SelectToolsTests(SynchronousTestCase):
    def test_no_policy_allows_everything_in_order(self) -> None:
        """Without profile, allow or deny every offered tool stays, in offer order."""
        self.assertEqual(select_tools(BUILTIN, ToolPolicyConfig()).allowed, BUILTIN)

    def test_minimal_profile(self) -> None:
        """The minimal profile keeps only session_status of our tools."""
        self.assertEqual(allowed(ToolPolicyConfig(profile="minimal")), {"session_status"})

    def test_coding_profile_includes_the_builtin_groups(self) -> None:
        """coding selects group:fs, group:runtime, group:web, group:sessions, group:memory."""
        self.assertEqual(allowed(ToolPolicyConfig(profile="coding")), set(BUILTIN))

    def test_messaging_profile(self) -> None:
        """messaging keeps the session tools but no files, exec, web or memory."""
        self.assertEqual(
            allowed(ToolPolicyConfig(profile="messaging")),
            {"sessions_list", "sessions_history", "session_status"},
        )

    def test_also_allow_widens_a_profile(self) -> None:
        """alsoAllow adds tools (and groups) to a restricted profile."""
        policy = ToolPolicyConfig(profile="minimal", also_allow=("group:memory", "READ"))
        self.assertEqual(allowed(policy), {"session_status", "memory_get", "memory_search", "read"})

    def test_agent_also_allow_replaces_global_also_allow(self) -> None:
        """An agent's alsoAllow is used instead of the global one, not added to it."""
        global_policy = ToolPolicyConfig(profile="minimal", also_allow=("read",))
        self.assertEqual(
            allowed(global_policy, ToolPolicyConfig(also_allow=("memory_get",))),
            {"session_status", "memory_get"},
        )
        self.assertEqual(allowed(global_policy, ToolPolicyConfig()), {"session_status", "read"})

    def test_allow_narrows_with_groups_and_globs(self) -> None:
        """tools.allow keeps only what matches, with group:* and * wildcards."""
        policy = ToolPolicyConfig(allow=("group:fs", "sessions_*"))
        self.assertEqual(
            allowed(policy),
            {"read", "write", "edit", "apply_patch", "sessions_list", "sessions_history"},
        )

    def test_allow_write_implies_apply_patch_but_deny_does_not(self) -> None:
        """Allowing write also allows apply_patch; denying write leaves apply_patch."""
        self.assertEqual(allowed(ToolPolicyConfig(allow=("write",))), {"write", "apply_patch"})
        self.assertIn("apply_patch", allowed(ToolPolicyConfig(deny=("write",))))

    def test_deny_wins_over_allow_and_bash_means_exec(self) -> None:
        """A denied tool stays out even when allowed; bash is an alias of exec."""
        policy = ToolPolicyConfig(allow=("group:runtime", "read"), deny=("BASH",))
        self.assertEqual(allowed(policy), {"process", "read"})

    def test_agent_layer_only_narrows(self) -> None:
        """An agent's allow cannot grant back what the global deny removed."""
        result = allowed(ToolPolicyConfig(deny=("exec",)), ToolPolicyConfig(allow=("exec", "read")))
        self.assertEqual(result, {"read"})

    def test_agent_profile_replaces_global_profile(self) -> None:
        """agents.list[].tools.profile overrides tools.profile."""
        result = allowed(ToolPolicyConfig(profile="minimal"), ToolPolicyConfig(profile="coding"))
        self.assertEqual(result, set(BUILTIN))

    def test_full_profile_filters_nothing(self) -> None:
        """full selects every tool."""
        self.assertEqual(allowed(ToolPolicyConfig(profile="full")), set(BUILTIN))

    def test_empty_allowlist_is_reported(self) -> None:
        """An allow-list that matches no tool at all is reported with its key."""
        selection = select_tools(BUILTIN, ToolPolicyConfig(), ToolPolicyConfig(allow=("query_db",)))
        self.assertEqual(selection.allowed, ())
        self.assertEqual(selection.empty_allowlist, "agents.list[].tools.allow")
        ok = select_tools(BUILTIN, ToolPolicyConfig(allow=("read",)))
        self.assertIsNone(ok.empty_allowlist)

    def test_empty_allow_list_restricts_nothing(self) -> None:
        """allow: [] means no allow-list, as in OpenClaw."""
        self.assertEqual(select_tools(BUILTIN, ToolPolicyConfig(allow=())).allowed, BUILTIN)

    def test_group_openclaw_excludes_files_and_exec(self) -> None:
        """group:openclaw has the session and memory tools but not read/exec."""
        members = set(TOOL_GROUPS["group:openclaw"])
        self.assertIn("sessions_list", members)
        self.assertIn("memory_get", members)
        self.assertNotIn("read", members)
        self.assertNotIn("exec", members)

    def test_normalize(self) -> None:
        """Names fold to lower case and aliases resolve."""
        self.assertEqual(normalize_tool_name(" Bash "), "exec")
        self.assertEqual(normalize_tool_name("apply-patch"), "apply_patch")


class ClientToolTests(SynchronousTestCase):
    def test_clash_with_builtin_and_reserved_and_each_other(self) -> None:
        """Client names clashing with run tools, reserved names or each other are refused."""
        conflicts = client_tool_conflicts(
            ["Exec", "lookup", "grep", "dup", "DUP", "weather"], ["exec", "read"]
        )
        self.assertEqual(conflicts, ["Exec", "grep", "dup", "DUP"])

    def test_no_conflict(self) -> None:
        """Distinct client names pass."""
        check_client_tools(["get_weather", "lookup"], ["read", "exec"])

    def test_error_message_names_the_conflicts(self) -> None:
        """The error carries OpenClaw's prefix and the names."""
        with self.assertRaises(ClientToolConflictError) as caught:
            check_client_tools(["read"], [])
        self.assertEqual(str(caught.exception), "client tool name conflict: read")
        self.assertEqual(caught.exception.names, ("read",))


def which(name: str) -> str | None:
    return {"git": "/usr/bin/git", "rg": "/opt/bin/rg", "wc": "/usr/bin/wc"}.get(name)


def in_usr_bin(name: str) -> str:
    return f"/usr/bin/{name}"


def in_workspace(name: str) -> str:
    return f"/home/me/workspace/{name}"


class ExecPolicyTests(SynchronousTestCase):
    def test_default_is_full_without_prompts(self) -> None:
        """Unset mode and legacy keys mean security full, ask off."""
        policy = resolve_exec_policy(ExecConfig())
        self.assertEqual((policy.security, policy.ask), ("full", "off"))
        self.assertEqual(policy.evaluate("rm -rf build").action, "run")
        self.assertEqual(policy.safe_bins, DEFAULT_SAFE_BINS)

    def test_modes_map_to_security_and_ask(self) -> None:
        """Each tools.exec.mode maps to OpenClaw's security/ask pair."""
        expected = {
            "deny": ("deny", "off"),
            "allowlist": ("allowlist", "off"),
            "ask": ("allowlist", "on-miss"),
            "auto": ("allowlist", "on-miss"),
            "full": ("full", "off"),
        }
        for mode, pair in expected.items():
            policy = resolve_exec_policy(ExecConfig(mode=mode))  # type: ignore[arg-type]
            self.assertEqual((policy.security, policy.ask), pair, mode)

    def test_mode_wins_over_legacy_pair(self) -> None:
        """When both are present the canonical mode decides."""
        policy = resolve_exec_policy(ExecConfig(mode="deny", security="full", ask="off"))
        self.assertEqual(policy.security, "deny")

    def test_legacy_pair(self) -> None:
        """security/ask are honoured when mode is unset."""
        policy = resolve_exec_policy(ExecConfig(security="allowlist", ask="always"))
        self.assertEqual((policy.security, policy.ask), ("allowlist", "always"))

    def test_deny_refuses_everything(self) -> None:
        """mode deny refuses any command with a reason."""
        verdict = resolve_exec_policy(ExecConfig(mode="deny")).evaluate("ls")
        self.assertEqual(verdict.action, "deny")
        self.assertIn("disabled", verdict.reason)

    def test_allowlist_matches_bare_names_and_paths(self) -> None:
        """Bare patterns match bare program names; path globs match the resolved path."""
        policy = resolve_exec_policy(ExecConfig(mode="allowlist", allowlist=("git", "/opt/**/rg")))
        self.assertEqual(policy.evaluate("git status", which).action, "run")
        self.assertEqual(policy.evaluate("rg -n foo | wc -l", which).action, "run")
        self.assertEqual(policy.evaluate("./git status", which).action, "deny")
        self.assertEqual(policy.evaluate("python3 x.py", which).action, "deny")

    def test_allowlist_rejects_chains_redirections_and_substitution(self) -> None:
        """A chain passes only if every segment matches; redirections never do."""
        policy = resolve_exec_policy(ExecConfig(mode="allowlist", allowlist=("git", "echo")))
        self.assertEqual(policy.evaluate("git add . && git commit", in_usr_bin).action, "run")
        self.assertEqual(policy.evaluate("git log; rm -rf /", in_usr_bin).action, "deny")
        self.assertEqual(policy.evaluate("echo hi > out.txt", in_usr_bin).action, "deny")
        self.assertEqual(policy.evaluate("echo $(id)", in_usr_bin).action, "deny")
        self.assertEqual(policy.evaluate("FOO=1 git status", in_usr_bin).action, "deny")
        self.assertEqual(policy.evaluate("git 'unterminated", in_usr_bin).action, "deny")

    def test_a_line_break_or_comment_never_smuggles_a_command(self) -> None:
        """The shell runs each line on its own: a newline (or a CR, which the
        tokenizer splits on and the shell does not) makes the command a miss,
        with or without a comment hiding the rest of the line."""
        policy = resolve_exec_policy(ExecConfig(mode="allowlist", allowlist=("echo", "ls")))
        for command in (
            "ls\ncat /etc/shadow",
            "echo x # c\ntouch /tmp/marker",
            "echo x\r\nid -un",
            "echo x\rid",
            "ls 'a\nb'",
        ):
            self.assertEqual(policy.evaluate(command, in_usr_bin).action, "deny", command)
        # A comment hides the rest of the line from the shell, not from the
        # policy: never a match. ``#`` inside a word or quoted is text.
        for command in ("echo x # not a command", "echo x;#c", "echo x &&#c", "#"):
            self.assertEqual(policy.evaluate(command, in_usr_bin).action, "deny", command)
        for command in ("echo a#b", "echo '#'", "echo \\#", 'echo "#x"'):
            self.assertEqual(policy.evaluate(command, in_usr_bin).action, "run", command)
        ask = resolve_exec_policy(ExecConfig(mode="ask", allowlist=("ls",)))
        self.assertEqual(ask.evaluate("ls\nid", in_usr_bin).action, "ask")

    def test_safe_bins_refuse_flags_that_read_files(self) -> None:
        """OpenClaw's denied flags, in long, abbreviated, ``=value`` and
        clustered short forms; a safe bin outside /bin and /usr/bin is no
        safe bin; awk, sed and jq never are."""
        policy = resolve_exec_policy(
            ExecConfig(
                mode="allowlist",
                allowlist=("echo",),
                safe_bins=("wc", "tail", "sort", "grep", "sed"),
            )
        )
        for command in (
            "echo x | wc --files0-from=-",
            "echo x | wc --files0=-",
            "echo x | tail -f",
            "echo x | tail -fn5",
            "echo x | sort -rn",  # sort's profile has no flag without a value
            "echo x | tail --follow=name",
            "echo x | sort -o",
            "echo x | grep -rn x",
        ):
            self.assertEqual(policy.evaluate(command, in_usr_bin).action, "deny", command)
        for command in ("echo x | wc -l", "echo x | tail -n5", "echo x | sort -k1"):
            self.assertEqual(policy.evaluate(command, in_usr_bin).action, "run", command)
        self.assertEqual(policy.evaluate("echo x | wc -l", in_workspace).action, "deny")
        self.assertNotIn("sed", policy.safe_bins)

    def test_safe_bins_need_flags_only(self) -> None:
        """Safe bins run with their profile's flags but not with file operands."""
        policy = resolve_exec_policy(ExecConfig(mode="allowlist", allowlist=("git",)))
        self.assertEqual(policy.evaluate("git log | head -n 5", in_usr_bin).action, "run")
        self.assertEqual(policy.evaluate("git log | head -n", in_usr_bin).action, "deny")
        self.assertEqual(policy.evaluate("head /etc/passwd", in_usr_bin).action, "deny")

    def test_a_program_must_resolve_to_match(self) -> None:
        """As in OpenClaw's matchAllowlist, a bare-name entry or a safe bin
        covers only a program found on PATH: a shell builtin such as ``eval``
        never matches, whatever the allowlist says."""
        policy = resolve_exec_policy(ExecConfig(mode="allowlist", allowlist=("git", "eval")))
        self.assertEqual(policy.evaluate("eval 'rm -rf ~'", which).action, "deny")
        self.assertEqual(policy.evaluate("git log | wc -l", which).action, "run")
        self.assertEqual(policy.evaluate("git log | head -n 5").action, "deny")
        self.assertEqual(policy.evaluate("git log").action, "deny")

    def test_ask_on_miss_and_always(self) -> None:
        """ask mode asks on a miss; ask always asks even on a match."""
        ask = resolve_exec_policy(ExecConfig(mode="ask", allowlist=("git",)))
        self.assertEqual(ask.evaluate("git status", in_usr_bin).action, "run")
        self.assertEqual(ask.evaluate("make", in_usr_bin).action, "ask")
        always = resolve_exec_policy(ExecConfig(security="full", ask="always"))
        self.assertEqual(always.evaluate("ls").action, "ask")

    def test_per_call_ask_only_hardens(self) -> None:
        """harden() raises the ask level but never lowers it."""
        base = ExecPolicy(security="allowlist", ask="on-miss")
        self.assertEqual(base.harden("always").ask, "always")
        self.assertEqual(base.harden("off").ask, "on-miss")
        self.assertIs(base.harden(None), base)

    def test_unanswered_approval_uses_ask_fallback(self) -> None:
        """deny refuses, allowlist runs only matches, full runs."""
        miss = ExecVerdict("ask", "miss", allowlisted=False)
        hit = ExecVerdict("ask", "always", allowlisted=True)
        deny = ExecPolicy("allowlist", "on-miss", ask_fallback="deny")
        self.assertEqual(deny.on_unanswered(hit).action, "deny")
        partial = ExecPolicy("allowlist", "always", ask_fallback="allowlist")
        self.assertEqual(partial.on_unanswered(hit).action, "run")
        self.assertEqual(partial.on_unanswered(miss).action, "deny")
        full = ExecPolicy("allowlist", "on-miss", ask_fallback="full")
        self.assertEqual(full.on_unanswered(miss).action, "run")

    def test_jq_is_never_a_safe_bin(self) -> None:
        """jq is dropped from safeBins even when listed (OpenClaw denies it)."""
        policy = resolve_exec_policy(ExecConfig(safe_bins=("jq", "wc")))
        self.assertEqual(policy.safe_bins, ("wc",))
