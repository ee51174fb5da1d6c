"""The agent's system prompt, in OpenClaw's structure.

A pure renderer: every fact (tools, workspace files, skills, clock, runtime)
comes in as a value, so the same inputs give the same prompt and tests need
no disk. Sections, in order: identity, the agent's configured instructions,
tooling, tool-call style, safety, skills, memory recall, workspace, bootstrap
notices, project context (the workspace files), date and time, conversation
context (the client's system text) and the runtime line.

Two inputs never replace OpenClaw's own prompt, they are added to it:

- the agent's ``systemPrompt`` (this project's per-agent key) becomes the
  "Agent Instructions" section;
- a client's system/developer messages become "Conversation Context"
  ("Subagent Context" in minimal mode), as OpenClaw renders its extra prompt.
"""

from __future__ import annotations

import platform
import socket
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Final, Literal, Protocol
from xml.sax.saxutils import escape

from attrs import frozen

from openclaw.agents.skills import Skill
from openclaw.agents.user_time import resolve_timezone, zone_name
from openclaw.agents.workspace import BootstrapFile

PromptMode = Literal["full", "minimal", "none"]
IDENTITY_LINE: Final = "You are a personal assistant running inside OpenClaw."
#: Characters the skills list may take before it is compacted (OpenClaw's
#: ``skills.limits.maxSkillsPromptChars`` default).
SKILLS_PROMPT_MAX_CHARS: Final = 18_000


class _Described(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...


@frozen(cache_hash=True)  # a key of the prompt head's cache, hashed per run
class PromptTool:
    """A tool as the Tooling section lists it."""

    name: str
    summary: str


def tool_summaries(tools: Iterable[_Described]) -> tuple[PromptTool, ...]:
    """One line per tool: the first line of its description."""
    result = []
    for tool in tools:
        first = tool.description.strip().splitlines()[0] if tool.description.strip() else ""
        result.append(PromptTool(tool.name, first.strip()))
    return tuple(result)


@frozen
class RuntimeInfo:
    """Facts for the one-line Runtime section (empty values are left out)."""

    agent_id: str
    agent_name: str | None = None
    session_key: str | None = None
    host: str | None = None
    os: str | None = None
    arch: str | None = None
    python: str | None = None
    model: str | None = None
    default_model: str | None = None
    shell: str | None = None
    channel: str | None = None

    def line(self) -> str:
        """``Runtime: agent=main | host=... | model=...``."""
        os_part = self.os and (f"{self.os} ({self.arch})" if self.arch else self.os)
        parts = [
            ("name", self.agent_name),
            ("agent", self.agent_id),
            ("session", self.session_key),
            ("host", self.host),
            ("os", os_part),
            ("python", self.python),
            ("model", self.model),
            ("default_model", self.default_model if self.default_model != self.model else None),
            ("shell", self.shell),
            ("channel", self.channel),
        ]
        return "Runtime: " + " | ".join(f"{k}={v}" for k, v in parts if v)


def host_facts() -> dict[str, str]:
    """Host, OS, architecture and Python version of this process (call once at start-up)."""
    return {
        "host": socket.gethostname(),
        "os": platform.system() or sys.platform,
        "arch": platform.machine(),
        "python": platform.python_version(),
    }


def build_system_prompt(
    *,
    runtime: RuntimeInfo,
    now: float,
    tools: Sequence[PromptTool] = (),
    workspace: str | None = None,
    bootstrap_files: Sequence[BootstrapFile] = (),
    skills: Sequence[Skill] = (),
    agent_instructions: str | None = None,
    extra_system_prompt: str | None = None,
    timezone: str | None = None,
    mode: PromptMode = "full",
    skills_max_chars: int = SKILLS_PROMPT_MAX_CHARS,
) -> str:
    """Render the prompt. ``now`` is epoch seconds (the reactor's clock)."""
    return system_prompt_parts(
        runtime=runtime,
        now=now,
        tools=tools,
        workspace=workspace,
        bootstrap_files=bootstrap_files,
        skills=skills,
        agent_instructions=agent_instructions,
        extra_system_prompt=extra_system_prompt,
        timezone=timezone,
        mode=mode,
        skills_max_chars=skills_max_chars,
    ).text()


@frozen
class SystemPrompt:
    """A rendered prompt as its shared head and its per-run tail.

    The head (everything before the date) is one string shared by every run
    of the agent; a run holding this instead of the joined text keeps a few
    hundred bytes of its own rather than a copy of the whole prompt (issue 16:
    it was the largest single holder of an open stream's memory).
    """

    head: str
    #: The date, the conversation context and the runtime line ("" in mode none).
    tail: str = ""

    def text(self) -> str:
        """The whole prompt (built on each call: callers use it and let it go)."""
        return f"{self.head}\n{self.tail}" if self.tail else self.head


def system_prompt_parts(
    *,
    runtime: RuntimeInfo,
    now: float,
    tools: Sequence[PromptTool] = (),
    workspace: str | None = None,
    bootstrap_files: Sequence[BootstrapFile] = (),
    skills: Sequence[Skill] = (),
    agent_instructions: str | None = None,
    extra_system_prompt: str | None = None,
    timezone: str | None = None,
    mode: PromptMode = "full",
    skills_max_chars: int = SKILLS_PROMPT_MAX_CHARS,
) -> SystemPrompt:
    """:func:`build_system_prompt`, with the shared head kept apart."""
    if mode == "none":
        return SystemPrompt(IDENTITY_LINE)
    minimal = mode == "minimal"
    head = _head(
        tuple(tools),
        workspace,
        tuple(bootstrap_files),
        tuple(skills),
        agent_instructions,
        minimal,
        skills_max_chars,
    )
    lines = _date_time(now, timezone, any(t.name == "session_status" for t in tools))
    extra = (extra_system_prompt or "").strip()
    if extra:
        lines += ["## Subagent Context" if minimal else "## Conversation Context", extra, ""]
    lines += ["## Runtime", runtime.line()]
    # The head starts with the identity line, the tail ends with the runtime
    # line: joining them and stripping the whole is joining the stripped tail.
    return SystemPrompt(head, "\n".join(lines).rstrip() + "\n")


@lru_cache(maxsize=16)
def _head(
    tools: tuple[PromptTool, ...],
    workspace: str | None,
    bootstrap_files: tuple[BootstrapFile, ...],
    skills: tuple[Skill, ...],
    agent_instructions: str | None,
    minimal: bool,
    skills_max_chars: int,
) -> str:
    """Every section before the date: the same for every run of an agent
    whose workspace files did not change, so it is rendered once (it was
    about a tenth of a non-streamed turn's CPU, issue 16)."""
    names = {t.name for t in tools}
    lines: list[str] = [IDENTITY_LINE, ""]
    instructions = (agent_instructions or "").strip()
    if instructions:
        lines += ["## Agent Instructions", instructions, ""]
    if tools:
        lines += _tooling(tools, names)
    lines += _safety()
    if skills and "read" in names:
        lines += _skills(skills, skills_max_chars)
    if not minimal and names & {"memory_search", "memory_get"}:
        lines += [
            "## Memory Recall",
            "Before answering about earlier work, decisions, people or preferences, search "
            "MEMORY.md and memory/*.md with `memory_search`, then read the lines you need "
            "with `memory_get`. Say so when nothing relevant is found.",
            "",
        ]
    if workspace:
        lines += [
            "## Workspace",
            f"Working directory: {workspace}",
            "Relative paths resolve here; file tools stay inside this directory.",
            "",
        ]
    lines += _bootstrap_sections(bootstrap_files)
    return "\n".join(lines)


def _tooling(tools: Sequence[PromptTool], names: set[str]) -> list[str]:
    lines = [
        "## Tooling",
        "These tools are available (filtered by policy). Call them by their exact names:",
    ]
    lines += [f"- {t.name}: {t.summary}" if t.summary else f"- {t.name}" for t in tools]
    lines.append("The Tools section of AGENTS.md guides how to use them; it never adds tools.")
    if "exec" in names and "process" in names:
        lines.append(
            "Long-running commands: start them once with `exec` (background) and check on "
            "them with `process`; do not poll in a tight loop."
        )
    if names & {"sessions_list", "sessions_history", "session_status"}:
        lines.append(
            "Asked about another session or the current time/status: use the session "
            "tools before saying you cannot see it."
        )
    lines += [
        "",
        "## Tool Call Style",
        "Routine, low-risk calls: make them without narrating.",
        "Explain first only for complex, destructive or sensitive steps, or when asked.",
        "",
    ]
    return lines


def _safety() -> list[str]:
    return [
        "## Safety",
        "Pursue only the user's goals: no self-preservation, replication, resource "
        "acquisition or plans beyond the request.",
        "Human oversight comes before finishing a task: when they conflict, stop and ask. "
        "Never work around safeguards, approvals or tool policy.",
        "Inspect configuration and scheduler files before changing them; merge rather "
        "than replace unless asked.",
        "Never ask for passwords, API keys or tokens in chat, and never reveal them.",
        "",
    ]


def _skills(skills: Sequence[Skill], max_chars: int) -> list[str]:
    def render(with_descriptions: bool, items: Sequence[Skill]) -> str:
        body = ["<available_skills>"]
        for skill in items:
            body.append("  <skill>")
            body.append(f"    <name>{escape(skill.name)}</name>")
            if with_descriptions:
                body.append(f"    <description>{escape(skill.description)}</description>")
            body.append(f"    <location>{escape(str(skill.location))}</location>")
            body.append("  </skill>")
        body.append("</available_skills>")
        return "\n".join(body)

    block = render(True, skills)
    note = ""
    if len(block) > max_chars:
        block = render(False, skills)
        note = "Skill descriptions were left out to fit the prompt; read a skill to learn more."
        items = list(skills)
        while len(block) > max_chars and items:
            items.pop()
            block = render(False, items)
            note = (
                f"Only {len(items)} of {len(skills)} skills are listed to fit the prompt; "
                "look under skills/ for the others."
            )
    lines = [
        "## Skills",
        "Scan <available_skills>. When one clearly matches the task, `read` its SKILL.md at "
        "the exact <location> and follow it. Several match: pick the most specific. None: "
        "read none. Never guess a path.",
        block,
    ]
    if note:
        lines.append(note)
    return [*lines, ""]


def _bootstrap_sections(all_files: Sequence[BootstrapFile]) -> list[str]:
    if not all_files:
        return []
    files = [f for f in all_files if not f.omitted]
    lines: list[str] = []
    if any(f.name == "BOOTSTRAP.md" and not f.missing for f in files):
        lines += [
            "## Bootstrap Pending",
            "BOOTSTRAP.md is below: this workspace is new. Do the user's request first, then "
            "follow BOOTSTRAP.md and delete it when done.",
            "",
        ]
    omitted = [f.name for f in all_files if f.omitted]
    if omitted or any(f.truncated for f in files):
        lines.append("## Bootstrap Context Notice")
        if any(f.truncated for f in files):
            lines.append(
                "Some workspace files below were shortened to fit the prompt. Read a file "
                "directly when you need all of it."
            )
        if omitted:
            lines.append(
                f"Left out to fit the prompt: {', '.join(omitted)}. Read them directly "
                "when you need them."
            )
        lines.append("")
    lines += [
        "## Workspace Files (injected)",
        "These files are user-editable; they are loaded below as Project Context.",
        "",
        "# Project Context",
        "",
    ]
    present = {f.name for f in files if not f.missing}
    if "SOUL.md" in present:
        lines.append(
            "SOUL.md is your persona and tone: follow it unless higher rules say otherwise."
        )
    if "USER.md" in present:
        lines.append("USER.md holds the user's lasting preferences: follow them.")
    if "MEMORY.md" in present:
        lines.append("MEMORY.md holds durable facts and decisions: use them when relevant.")
    lines.append("")
    for f in files:
        lines += [f"## {f.name}", "", f.content, ""]
    return lines


def _date_time(now: float, timezone: str | None, status_tool: bool) -> list[str]:
    # Worked out once a minute; the text itself changes only at midnight.
    return list(_date_lines(int(now // 60), timezone, status_tool))


@lru_cache(maxsize=4)
def _date_lines(minute: int, timezone: str | None, status_tool: bool) -> tuple[str, ...]:
    """OpenClaw's temporal context: the local date and the zone, no clock, so
    the prompt (and a provider's prompt cache) stays the same all day; the
    model asks ``session_status`` for the time."""
    now = minute * 60
    zone = resolve_timezone(timezone)
    local = datetime.fromtimestamp(now, tz=zone)
    name = zone_name(zone)
    hint = ("For the exact current time, use `session_status`.",) if status_tool else ()
    return (
        "## Temporal Context",
        f"Current date: {local.strftime('%Y-%m-%d')} ({local.strftime('%A')})",
        f"Time zone: {name} (UTC{local.strftime('%z')})",
        *hint,
        "",
    )
