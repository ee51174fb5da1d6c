"""Which tools a run may call, and what ``exec`` may run: OpenClaw's policy rules.

Everything here is a pure function of configuration values, so the loop can
compute the allowed set once per run, before the model call (a denied tool's
schema is never sent). The layers, in OpenClaw's order:

1. the profile (``tools.profile``, replaced by ``agents.list[].tools.profile``),
   widened by ``alsoAllow`` (the agent's, else the global one);
2. ``tools.allow`` / ``tools.deny``;
3. ``agents.list[].tools.allow`` / ``deny``.

Each layer can only narrow what the previous one left, so a deny anywhere wins.
Names are case-insensitive, ``*`` is a wildcard, ``group:*`` names expand to
OpenClaw's groups and ``bash`` means ``exec``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Final, Literal

from attrs import frozen

from openclaw.agents.tools.exec_match import (
    Resolver,
    has_path_selector,
    literal_word,
    matches_name_pattern,
    matches_path_pattern,
    without_cwd,
)
from openclaw.agents.tools.exec_safe_bins import NEVER_SAFE_BINS, safe_bin_arguments
from openclaw.agents.tools.exec_split import Token, split_command
from openclaw.agents.tools.exec_wrappers import (
    SCRIPT_SHELLS,
    TRUSTED_BIN_DIRS,
    builtin_safe,
    inline_script,
    is_shell,
    safe_builtin,
    unwrap,
)
from openclaw.config.model import (
    ExecAsk,
    ExecConfig,
    ExecMode,
    ExecSecurity,
    ToolPolicyConfig,
    ToolProfile,
)

_CORE_GROUPS: Final[Mapping[str, tuple[str, ...]]] = {
    "group:runtime": ("exec", "process", "code_execution"),
    "group:fs": ("read", "write", "edit", "apply_patch"),
    "group:sessions": (
        "sessions", "sessions_list", "sessions_history", "sessions_search",
        "conversations_list", "conversations_send", "conversations_turn", "sessions_send",
        "sessions_spawn", "sessions_yield", "subagents", "session_status", "suggest_task",
        "dismiss_task",
    ),
    "group:memory": ("memory_search", "memory_get"),
    "group:web": ("web_search", "x_search", "web_fetch"),
    "group:ui": (
        "browser", "screen", "theme", "dashboard", "terminal", "portal", "canvas", "show_widget",
    ),
    "group:automation": ("heartbeat_respond", "automations", "gateway", "plugins", "openclaw"),
    "group:messaging": ("message",),
    "group:nodes": ("nodes", "computer"),
    "group:agents": (
        "agents_list", "get_goal", "create_goal", "update_goal", "progress_card", "ask_user",
        "skill_workshop",
    ),
    "group:media": (
        "view_image", "image_generate", "music_generate", "video_generate", "tts", "pdf",
    ),
}  # fmt: skip

_NOT_OPENCLAW_GROUP: Final = frozenset(
    {"read", "write", "edit", "apply_patch", "exec", "process", "canvas"}
)
#: OpenClaw's tool groups (``group:<name>``), as its tool-policy page lists them.
TOOL_GROUPS: Final[Mapping[str, tuple[str, ...]]] = {
    **_CORE_GROUPS,
    "group:openclaw": tuple(
        dict.fromkeys(
            name
            for members in _CORE_GROUPS.values()
            for name in members
            if name not in _NOT_OPENCLAW_GROUP
        )
    ),
}

#: Names OpenClaw accepts for another tool.
TOOL_ALIASES: Final[Mapping[str, str]] = {
    "bash": "exec",
    "apply-patch": "apply_patch",
    "cron": "automations",
    "update_plan": "progress_card",
}

#: What each restricted profile selects (``full`` selects everything).
PROFILES: Final[Mapping[ToolProfile, tuple[str, ...]]] = {
    "minimal": ("session_status", "gateway"),
    "coding": (
        "group:fs", "group:runtime", "group:web", "group:sessions", "group:memory", "cron",
        "gateway", "get_goal", "create_goal", "update_goal", "progress_card", "ask_user",
        "skill_workshop", "view_image", "image_generate", "music_generate", "video_generate",
        "theme",
    ),
    "messaging": (
        "group:messaging", "sessions", "sessions_list", "sessions_history", "sessions_search",
        "conversations_list", "conversations_send", "conversations_turn", "sessions_send",
        "sessions_spawn", "sessions_yield", "subagents", "session_status", "gateway", "ask_user",
        "theme",
    ),
}  # fmt: skip

#: Names a client (request ``tools``) may never use, whatever the policy allows:
#: OpenClaw reserves them for its own agent runtime.
RESERVED_TOOL_NAMES: Final = frozenset({"bash", "edit", "find", "grep", "ls", "read", "write"})
CLIENT_TOOL_CONFLICT_PREFIX: Final = "client tool name conflict:"


def normalize_tool_name(name: str) -> str:
    """Lower-cased, trimmed, aliases resolved (``Bash`` -> ``exec``)."""
    folded = name.strip().lower()
    return TOOL_ALIASES.get(folded, folded)


class _Matcher:
    """A compiled list of names, globs and groups."""

    def __init__(self, patterns: Iterable[str], *, write_implies_patch: bool = False) -> None:
        self.exact: set[str] = set()
        self.globs: list[str] = []
        for raw in patterns:
            name = raw.strip().lower()
            if not name:
                continue
            if name in TOOL_GROUPS:
                self.exact.update(TOOL_GROUPS[name])
            elif "*" in name:
                self.globs.append(name)
            else:
                self.exact.add(TOOL_ALIASES.get(name, name))
        if write_implies_patch and "write" in self.exact:
            # OpenClaw: allowing ``write`` also allows ``apply_patch`` (denying does not).
            self.exact.add("apply_patch")

    def __call__(self, tool: str) -> bool:
        name = normalize_tool_name(tool)
        return name in self.exact or any(fnmatchcase(name, glob) for glob in self.globs)


@frozen
class ToolSelection:
    """The tools a run may call, in the order they were offered."""

    allowed: tuple[str, ...]
    #: ``"tools.allow"`` or ``"agents.list[].tools.allow"`` when that explicit
    #: allow-list matched nothing at all: OpenClaw stops before the model call
    #: rather than run a text-only agent by mistake.
    empty_allowlist: str | None = None


def select_tools(
    available: Sequence[str],
    global_policy: ToolPolicyConfig,
    agent_policy: ToolPolicyConfig | None = None,
) -> ToolSelection:
    """Apply profile, allow/alsoAllow and deny of both scopes to ``available``.

    Pure, so results are cached: a run costs a lookup, not a policy evaluation.
    """
    return _select_tools(tuple(available), global_policy, agent_policy)


@lru_cache(maxsize=256)
def _select_tools(
    available: tuple[str, ...],
    global_policy: ToolPolicyConfig,
    agent_policy: ToolPolicyConfig | None,
) -> ToolSelection:
    agent = agent_policy or ToolPolicyConfig()
    profile = agent.profile or global_policy.profile
    names = list(dict.fromkeys(available))
    if profile is not None and profile != "full":
        # The agent's alsoAllow replaces the global one (OpenClaw: agent ?? global).
        also = agent.also_allow or global_policy.also_allow
        base = _Matcher([*PROFILES[profile], *also], write_implies_patch=True)
        names = [n for n in names if base(n)]
    empty: str | None = None
    for scope, policy in (("tools", global_policy), ("agents.list[].tools", agent)):
        if policy.allow:  # an empty allow-list restricts nothing (OpenClaw)
            allow = _Matcher(policy.allow, write_implies_patch=True)
            matched = [n for n in available if allow(n)]
            if not matched and empty is None:
                empty = f"{scope}.allow"
            names = [n for n in names if allow(n)]
        if policy.deny:
            deny = _Matcher(policy.deny)
            names = [n for n in names if not deny(n)]
    return ToolSelection(allowed=tuple(names), empty_allowlist=empty)


class ClientToolConflictError(ValueError):
    """A request's client tools reuse a built-in tool's name (or each other's).

    The HTTP layer answers 400 ``invalid_request_error`` "invalid tool
    configuration", as OpenClaw does; the conflicting names are in the message
    for the log.
    """

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(f"{CLIENT_TOOL_CONFLICT_PREFIX} {', '.join(names)}")
        self.names = tuple(names)


def client_tool_conflicts(client_names: Sequence[str], builtin_names: Iterable[str]) -> list[str]:
    """Client tool names that clash with the run's built-in tools, the reserved
    names, or another client tool (compared case-insensitively, aliases resolved)."""
    taken = {normalize_tool_name(n) for n in [*builtin_names, *RESERVED_TOOL_NAMES] if n.strip()}
    conflicts: dict[str, None] = {}
    seen: dict[str, str] = {}
    for raw in client_names:
        name = raw.strip()
        if not name:
            continue
        key = normalize_tool_name(name)
        if key in taken:
            conflicts[name] = None
        if key in seen:
            conflicts[seen[key]] = None
            conflicts[name] = None
        else:
            seen[key] = name
    return list(conflicts)


def check_client_tools(client_names: Sequence[str], builtin_names: Iterable[str]) -> None:
    """Raise :class:`ClientToolConflictError` when :func:`client_tool_conflicts` finds any."""
    conflicts = client_tool_conflicts(client_names, builtin_names)
    if conflicts:
        raise ClientToolConflictError(conflicts)


# -- exec ---------------------------------------------------------------------------

_MODES: Final[Mapping[ExecMode, tuple[ExecSecurity, ExecAsk]]] = {
    "deny": ("deny", "off"),
    "allowlist": ("allowlist", "off"),
    "ask": ("allowlist", "on-miss"),
    # No model reviewer here: misses go to a human, like ``ask``.
    "auto": ("allowlist", "on-miss"),
    "full": ("full", "off"),
}
#: OpenClaw's default stdin-only safe binaries.
DEFAULT_SAFE_BINS: Final = ("cut", "uniq", "head", "tail", "tr", "wc")
_ASK_RANK: Final[Mapping[ExecAsk, int]] = {"off": 0, "on-miss": 1, "always": 2}
_SEPARATORS: Final = frozenset({"|", "||", "&&", ";", "&"})
#: A leading variable assignment, bash's ``NAME+=value`` included: bash runs
#: the next word (``X+=d/../../usr/bin/ls touch x`` runs ``touch``), where a
#: path-like reading would resolve the word to an allowlisted program.
_ASSIGNMENT: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\+?=")
ExecAction = Literal["run", "ask", "deny"]


@frozen
class ExecVerdict:
    """What to do with one command, and why (the reason is for the model)."""

    action: ExecAction
    reason: str
    #: Whether every segment matched the allowlist or the safe bins.
    allowlisted: bool = False


@frozen
class ExecPolicy:
    """The effective ``exec`` policy of one agent."""

    security: ExecSecurity
    ask: ExecAsk
    ask_fallback: ExecSecurity = "deny"
    allowlist: tuple[str, ...] = ()
    safe_bins: tuple[str, ...] = DEFAULT_SAFE_BINS
    approval_timeout_seconds: float = 120.0

    @property
    def runs_anything(self) -> bool:
        """Any command runs without an allowlist match or an operator's yes
        (``tools.exec.mode: full``)."""
        return self.security == "full" and self.ask != "always"

    def harden(self, ask: ExecAsk | None) -> ExecPolicy:
        """A per-call ``ask`` can only make the policy stricter."""
        if ask is None or _ASK_RANK[ask] <= _ASK_RANK[self.ask]:
            return self
        return ExecPolicy(
            self.security,
            ask,
            self.ask_fallback,
            self.allowlist,
            self.safe_bins,
            self.approval_timeout_seconds,
        )

    def evaluate(
        self,
        command: str,
        resolve: Resolver = lambda _word: None,
        env: Mapping[str, str] | None = None,
    ) -> ExecVerdict:
        """Decide ``command``; ``resolve`` maps a program word to the real path
        of the file the shell would run (:func:`~openclaw.agents.tools.exec_match.
        resolve_program`), or None, so path patterns match what actually runs.
        ``env`` is the model's environment overrides: one whose value holds a
        ``$`` or a backquote makes the command a miss (:func:`_expanding_env`)."""
        if self.security == "deny":
            return ExecVerdict("deny", "exec is disabled by policy (tools.exec.mode: deny)")
        matched = self.security == "full" or (
            not _expanding_env(env or {})
            and _all_segments_allowed(command, self.allowlist, self.safe_bins, resolve)
        )
        if self.ask == "always":
            return ExecVerdict("ask", "every command needs approval (ask: always)", matched)
        if matched:
            return ExecVerdict("run", "allowed by policy", True)
        if self.ask == "on-miss":
            return ExecVerdict("ask", "command is not on the exec allowlist", False)
        return ExecVerdict(
            "deny", "command is not on the exec allowlist (tools.exec.mode: allowlist)"
        )

    def on_unanswered(self, verdict: ExecVerdict) -> ExecVerdict:
        """The outcome when an approval request times out or no operator can see it."""
        if self.ask_fallback == "full" or (
            self.ask_fallback == "allowlist" and verdict.allowlisted
        ):
            return ExecVerdict("run", f"approval unanswered; askFallback {self.ask_fallback}")
        if self.ask_fallback == "allowlist":
            return ExecVerdict("deny", "askFallback allowlist and the command is not on it")
        return ExecVerdict("deny", "askFallback deny (tools.exec.askFallback)")


def resolve_exec_policy(config: ExecConfig) -> ExecPolicy:
    """``tools.exec.mode`` if set, else the legacy ``security``/``ask`` pair, else
    OpenClaw's gateway-host default (``full``, no prompts)."""
    if config.mode is not None:
        security, ask = _MODES[config.mode]
    else:
        security = config.security or "full"
        ask = config.ask or "off"
    safe_bins = DEFAULT_SAFE_BINS if config.safe_bins is None else config.safe_bins
    return ExecPolicy(
        security=security,
        ask=ask,
        ask_fallback=config.ask_fallback,
        allowlist=config.allowlist,
        safe_bins=tuple(b for b in safe_bins if b not in NEVER_SAFE_BINS),
        approval_timeout_seconds=config.approval_timeout_seconds,
    )


def _expanding_env(env: Mapping[str, str]) -> bool:
    """An override value with ``$`` or a backquote: text a shell would run if
    anything evaluated it (bash arithmetic expands a variable's value, so
    ``X='a[$(id)]'`` runs ``id`` wherever ``X`` is evaluated as a number).
    The allowlist refuses every way it knows to evaluate one; such a value
    is refused as well, so a way it missed needs no cooperating variable."""
    return any("$" in value or "`" in value for value in env.values())


#: How deep ``sh -c`` scripts are looked into (OpenClaw's wrapper-payload depth).
MAX_SCRIPT_DEPTH: Final = 2


def _all_segments_allowed(
    command: str,
    allowlist: Sequence[str],
    safe_bins: Sequence[str],
    resolve: Resolver,
    depth: int = 0,
) -> bool:
    """Every pipeline/chain segment is a safe builtin, or runs (through its
    wrappers) an allowlisted program or a safe bin within its profile, or is
    ``sh -c SCRIPT`` whose every segment is allowed in turn; redirections,
    substitutions, assignments and ``$`` expansions never match.

    A line break never matches: the shell runs each line as a command of its
    own, while the tokenizer would read it as a space (``ls\\nid`` was one
    ``ls`` segment), and a carriage return splits words for the tokenizer but
    not for the shell. A comment (a bare word-initial ``#``) never matches:
    the shell drops the rest of the line, so ``env #/../usr/bin/ls`` would be
    judged as ``env ls`` and run a bare ``env``.
    After a ``cd`` the working directory is unknown, so a program found
    relative to it (``ok/run``, a relative ``PATH`` entry) no longer matches:
    OpenClaw would still resolve it from the original directory, and the
    shell would run another file.
    """
    if any(token in command for token in ("`", "$(", "<(", ">(", "\n", "\r")):
        return False
    tokens = split_command(command)
    if tokens is None:
        return False  # a quote left open
    segments: list[list[Token]] = [[]]
    for token in tokens:
        if not token.operator:
            # A quoted or escaped operator character is part of a word.
            segments[-1].append(token)
        elif token.text in _SEPARATORS:
            segments.append([])
        else:
            return False  # redirection, subshell or an odd operator
    segments = [s for s in segments if s]
    if not segments:
        return False
    for segment in segments:
        # OpenClaw: a ``$`` expansion in any word makes the command
        # unanalyzable (``ls $HOME``, ``git log "$X"``); ``'$X'`` and ``\\$X``
        # are literal text and fine.
        if any(token.dynamic for token in segment):
            return False
        words = [token.text for token in segment]
        script = inline_script(words)
        if script is not None:
            if not _script_allowed(segment, script, allowlist, safe_bins, resolve, depth):
                return False
        elif not _segment_allowed(segment, allowlist, safe_bins, resolve):
            return False
        if "cd" in (words[0], unwrap(words).argv[0]):
            resolve = without_cwd(resolve)
    return True


def _script_allowed(
    segment: Sequence[Token],
    script: str,
    allowlist: Sequence[str],
    safe_bins: Sequence[str],
    resolve: Resolver,
    depth: int,
) -> bool:
    """``sh -c SCRIPT``: the shell is the system's (written bare, found in a
    trusted directory), the script word reaches it as written (no glob or
    ``~`` for the outer shell to expand), and every segment of the script is
    allowed. The shell needs no allowlist entry, as in OpenClaw: it is a
    transport, like a wrapper. No word may follow the script
    (:func:`~openclaw.agents.tools.exec_wrappers.inline_script`): bash reaches
    ``$0``, ``$1`` ... without a ``$``."""
    if depth >= MAX_SCRIPT_DEPTH or not segment[2].literal:
        return False
    path = resolve(segment[0].text)
    if path is None or os.path.dirname(path) not in TRUSTED_BIN_DIRS:
        return False
    if os.path.basename(path) not in SCRIPT_SHELLS:
        return False  # /bin/sh is busybox or another shell: not split here
    return _all_segments_allowed(script, allowlist, safe_bins, resolve, depth + 1)


def _safe_bin_call(program: str, args: Sequence[str], path: str | None) -> bool:
    """A safe bin reads stdin only: its arguments fit its profile
    (:mod:`~openclaw.agents.tools.exec_safe_bins`), and the program itself is
    from a trusted directory (OpenClaw: it must resolve)."""
    if path is None or os.path.dirname(path) not in TRUSTED_BIN_DIRS:
        return False
    return safe_bin_arguments(program, args)


def _system_program(word: str, resolve: Resolver) -> bool:
    """``word`` runs the system's program of that name, not a look-alike, and
    is written bare or as ``/bin/<name>`` / ``/usr/bin/<name>``: a program may
    read files next to the path it was called by (``stdbuf`` preloads
    ``libstdbuf.so`` from its own directory first), so a symlink elsewhere to
    the real file is not the same program."""
    path = resolve(word)
    name = os.path.basename(word)
    return (
        path is not None
        and os.path.dirname(path) in TRUSTED_BIN_DIRS
        and os.path.basename(path) == name
        and (word == name or os.path.dirname(word) in TRUSTED_BIN_DIRS)
    )


def _segment_allowed(
    segment: Sequence[Token],
    allowlist: Sequence[str],
    safe_bins: Sequence[str],
    resolve: Resolver,
) -> bool:
    """OpenClaw's segment rules: a safe builtin needs no entry; wrappers are
    peeled and the program they run is judged (a blocked wrapper never
    matches, and each wrapper must be the system's own program). Then
    ``matchAllowlist``: a path pattern must cover the real path the program
    resolves to (so ``..``, ``.``, ``//`` and symlinks are seen through); a
    bare-name pattern covers a program run by that name, found on ``PATH``.

    A builtin, or a program that is also a shell builtin (``printf``), must get
    its words as written, not expanded (:func:`~openclaw.agents.tools.
    exec_wrappers.as_written`): the rules hold for what bash runs, whether it
    runs the top-level command (``/bin/sh`` is bash on some systems) or a
    ``bash -c`` script."""
    words = [token.text for token in segment]
    literal = [token.literal for token in segment]
    if _ASSIGNMENT.match(words[0]):
        return False
    if safe_builtin(words, literal):
        return True
    unwrapped = unwrap(words)
    if unwrapped.blocked is not None:
        return False
    # The wrappers' own words (options, a duration, a lock file) are judged
    # as single words: one the shell would expand (a glob, ``$``, ``~``) could
    # become several and change what the wrapper runs (``timeout -s [15s]*
    # [-i]* wc`` runs ``timeout -s 1 5 sh -c id wc``). The program word itself
    # is resolved below, which refuses an expanding one.
    peeled = words[: len(words) - len(unwrapped.argv)]
    if not all(literal_word(word) for word in peeled):
        return False
    if not all(_system_program(word, resolve) for word in unwrapped.programs):
        return False
    program, args = unwrapped.argv[0], unwrapped.argv[1:]
    if _ASSIGNMENT.match(program) or not builtin_safe(unwrapped.argv, literal[len(peeled) :]):
        return False
    bare = "/" not in program
    path = resolve(program)
    if is_shell(os.path.basename(program)) or (path and is_shell(os.path.basename(path))):
        # A shell runs whatever it reads (stdin, a script file, ``-c``): only
        # ``sh -c SCRIPT`` written first in the segment is judged, by its
        # script (:func:`_script_allowed`). An allowlisted shell, or one
        # behind a wrapper (``timeout 5 sh -c``), allows nothing.
        return False
    if bare and program in safe_bins and _safe_bin_call(program, args, path):
        return True
    if path is None:
        return False
    for pattern in allowlist:
        if has_path_selector(pattern):
            if matches_path_pattern(pattern, path):
                return True
        elif bare and literal_word(program) and matches_name_pattern(pattern, program):
            return True
    return False
