"""The agent workspace: where it is, what it starts with, and what the prompt sees.

OpenClaw's rules, from ``concepts/agent-workspace.md`` and the bootstrap docs:

- location: an agent's own ``workspace``; else, for a sole agent (or the
  default agent when no shared root is set), ``agents.defaults.workspace``,
  then ``$OPENCLAW_WORKSPACE_DIR``, then ``<state-dir>/workspace``; other
  agents of a roster get ``<agents.defaults.workspace>/<agentId>`` when that
  root is set, else ``<state-dir>/workspace-<agentId>``;
- bootstrap files, in this order: ``AGENTS.md``, ``SOUL.md``, ``IDENTITY.md``,
  ``USER.md`` (its own 4,000-character cap), ``BOOTSTRAP.md`` (while the
  first-run ritual is pending) and ``MEMORY.md`` (main session only);
- blank files are skipped, a missing required file leaves a one-line marker,
  large files are cut to ``bootstrapMaxChars`` and all of them together to
  ``bootstrapTotalMaxChars``; once less than 64 characters of that total are
  left, the remaining files are left out. A cut keeps 75% head and 25% tail
  around a marker; ``AGENTS.md`` keeps 45% head, 15% tail and, in between, a
  policy digest (its headings, list items and rule lines: must, never,
  security...), so rules in the middle of a long file are not lost
  (OpenClaw's ``trimBootstrapContent`` / ``trimAgentsBootstrapContent``).
- a brand-new workspace seeded with starter files becomes a git repository
  (``git init``) when git is installed, so it can be backed up.

Reading happens on a thread (:class:`WorkspaceLoader`): the files are capped,
but a workspace may sit on a slow or network disk.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Final

from attrs import frozen
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from openclaw.agents.skills import Skill, discover_skills
from openclaw.core.private_dirs import make_private_dirs
from openclaw.sessions.fileio import BlockingIO

BOOTSTRAP_FILES: Final = (
    "AGENTS.md",
    "SOUL.md",
    "IDENTITY.md",
    "USER.md",
    "BOOTSTRAP.md",
    "MEMORY.md",
)
#: Files whose absence is marked in the prompt (the others are optional).
REQUIRED_FILES: Final = frozenset({"AGENTS.md", "SOUL.md", "IDENTITY.md"})
#: Files ``ensure_workspace`` writes (BOOTSTRAP.md only into a brand-new workspace).
STARTER_FILES: Final = ("AGENTS.md", "SOUL.md", "IDENTITY.md", "USER.md")
DEFAULT_MAX_CHARS: Final = 20_000
DEFAULT_TOTAL_MAX_CHARS: Final = 60_000
USER_MD_MAX_CHARS: Final = 4_000
#: Bytes read from one bootstrap file at most (OpenClaw's 2 MiB read cap).
MAX_READ_BYTES: Final = 2 * 1024 * 1024
#: With less than this left of ``bootstrapTotalMaxChars``, the remaining files
#: are left out (OpenClaw's ``MIN_BOOTSTRAP_FILE_BUDGET_CHARS``).
MIN_FILE_BUDGET_CHARS: Final = 64
_HEAD_SHARE: Final = 0.75
_TAIL_SHARE: Final = 0.25
#: Below this much room for the file's own text, the cut uses the short marker.
_MIN_TRIMMED_CONTENT_CHARS: Final = 16
_AGENTS: Final = "AGENTS.md"
_AGENTS_HEAD_SHARE: Final = 0.45
_AGENTS_TAIL_SHARE: Final = 0.15
_AGENTS_DIGEST_SHARE: Final = 0.35
_DIGEST_MAX_LINE_CHARS: Final = 240
_CJK_RULE_WORDS: Final = "🔴|禁止|嚴禁|不得|絕不|絕對不|切勿"
#: A line the digest may carry (besides headings and list items).
_DIGEST_CANDIDATE: Final = re.compile(
    r"\b(?:AGENTS\.md|scoped|required|must|never|do not|before subtree|read scoped|owner"
    r"|security|secret|credential|test|validation|command|commit|push|github|pr)\b"
    rf"|(?:{_CJK_RULE_WORDS}|必須|務必|一律|紅線)",
    re.IGNORECASE | re.ASCII,
)
#: A line the digest takes first.
_DIGEST_FIRST: Final = re.compile(
    r"\b(?:AGENTS\.md|scoped|required|must|never|do not|before subtree|read scoped"
    r"|security|secret|credential)\b"
    rf"|(?:{_CJK_RULE_WORDS})",
    re.IGNORECASE | re.ASCII,
)
_HEADING_OR_ITEM: Final = re.compile(r"^(?:#{1,6}|\s*[-*+]|\s*[0-9]+[.)])\s+\S")
_FENCE: Final = re.compile(r"^\s*(?:`{3,}|~{3,})")
#: Seconds ``git init`` may take (OpenClaw's limit too) before it is given up.
GIT_INIT_TIMEOUT_SECONDS: Final = 10.0
#: Variables that would point ``git init`` at another repository than the
#: workspace's (a gateway started from a git hook inherits ``GIT_DIR``).
_GIT_LOCATION_VARS: Final = frozenset(
    {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR"}
)


def resolve_workspace(
    agent_id: str,
    *,
    agent_workspace: str | None,
    defaults_workspace: str | None,
    is_default: bool,
    agent_count: int,
    state_dir: Path,
    env: Mapping[str, str],
) -> Path:
    """The agent's workspace directory (absolute, ``~`` expanded; may not exist yet)."""
    if agent_workspace:
        return _absolute(agent_workspace, env)
    shared = defaults_workspace or None
    if agent_count <= 1 or (is_default and shared is None):
        if shared:
            return _absolute(shared, env)
        from_env = env.get("OPENCLAW_WORKSPACE_DIR", "").strip()
        if from_env:
            return _absolute(from_env, env)
        return (state_dir / "workspace").absolute()
    if shared:
        return _absolute(shared, env) / agent_id
    return (state_dir / f"workspace-{agent_id}").absolute()


def _absolute(value: str, env: Mapping[str, str]) -> Path:
    if value == "~" or value.startswith("~/"):
        home = env.get("HOME", "").strip() or str(Path.home())
        value = home + value[1:]
    return Path(value).expanduser().absolute()


@frozen(cache_hash=True)  # a key of the prompt head's cache, hashed per run
class BootstrapFile:
    """One bootstrap file as injected into the prompt."""

    name: str
    path: Path
    #: What the prompt gets: the (possibly truncated) text, or the missing marker.
    content: str
    missing: bool = False
    truncated: bool = False
    #: Left out whole to keep within ``bootstrapTotalMaxChars`` (``content`` is
    #: empty); the prompt's notice names it so the model can read it.
    omitted: bool = False
    #: Characters on disk (up to the read cap) and in ``content``.
    raw_chars: int = 0


@frozen
class WorkspaceContext:
    """What a run's system prompt needs from the workspace."""

    workspace: Path
    files: tuple[BootstrapFile, ...]
    skills: tuple[Skill, ...] = ()

    @property
    def truncated(self) -> bool:
        """Whether any file was cut (the prompt then says to read them directly)."""
        return any(f.truncated for f in self.files)


def missing_marker(path: Path) -> str:
    """The line injected for a required file that does not exist."""
    return f"[MISSING] Expected at: {path}"


def truncate_text(text: str, limit: int, name: str) -> str:
    """``text`` within ``limit`` characters, as OpenClaw cuts a bootstrap file.

    A longer file keeps 75% head and 25% tail of the room its marker leaves
    (the marker names the file and what was kept; a short one when there is
    little room); ``AGENTS.md`` is cut by :func:`_trim_agents` instead.
    """
    if len(text) <= limit:
        return text
    if name.lower() == _AGENTS.lower():
        return _trim_agents(text, limit)
    total = len(text)

    def full(head: int, tail: int) -> str:
        return (
            f"\n[...truncated, read {name} for full content...]\n"
            f"…(truncated {name}: kept {head}+{tail} chars of {total})…\n"
        )

    def compact(head: int, tail: int) -> str:
        return f"[…truncated {head}+{tail}/{total}]"

    def separators(head: int, tail: int, marker: str) -> int:
        return (int(head > 0) + int(tail > 0)) if "\n" in marker else 0

    template = full
    if limit - len(full(0, 0)) - separators(1, 1, full(0, 0)) < _MIN_TRIMMED_CONTENT_CHARS:
        template = compact
    head = tail = 0
    marker = template(0, 0)
    for _ in range(3):  # the marker's length depends on the numbers it shows
        room = max(0, limit - len(marker) - separators(head, tail, marker))
        next_head, next_tail = math.floor(room * _HEAD_SHARE), math.floor(room * _TAIL_SHARE)
        next_marker = template(next_head, next_tail)
        if (next_head, next_tail, len(next_marker)) == (head, tail, len(marker)):
            break
        head, tail, marker = next_head, next_tail, next_marker
    length = head + tail + len(marker) + separators(head, tail, marker)
    while length > limit and (tail > 0 or head > 0):
        overflow = length - limit
        if tail > 0:
            tail = max(0, tail - overflow)
        else:
            head = max(0, head - overflow)
        marker = template(head, tail)
        length = head + tail + len(marker) + separators(head, tail, marker)
    if head == 0 and tail == 0:
        single = template(1, 0)
        if 1 + len(single) + separators(1, 0, single) <= limit:
            head, marker = 1, single
    parts = (text[:head], marker, text[-tail:] if tail > 0 else "")
    joined = ("\n" if "\n" in marker else "").join(p for p in parts if p)
    return joined[:limit]


@frozen
class _Digest:
    text: str
    omitted: int


def _trim_agents(text: str, limit: int) -> str:
    """A long ``AGENTS.md`` cut to ``limit``: 45% head, 15% tail and up to 35%
    of a policy digest (OpenClaw's ``trimAgentsBootstrapContent``).

    The digest takes the file's headings, list items and lines that look like
    rules (:data:`_DIGEST_CANDIDATE`), each with the prose line just before
    it; lines that say must, never, security... (:data:`_DIGEST_FIRST`) are
    chosen first, then the others while they fit, kept in file order.
    """
    head = math.floor(limit * _AGENTS_HEAD_SHARE)
    tail = math.floor(limit * _AGENTS_TAIL_SHARE)
    budget = math.floor(limit * _AGENTS_DIGEST_SHARE)
    candidates: list[tuple[str, bool]] = []
    if budget > 0:
        prose: str | None = None
        for source in re.split(r"\r?\n", text):
            line = _digest_line(source)
            if not line or _FENCE.match(line):
                prose = None
            elif _HEADING_OR_ITEM.match(line) or _DIGEST_CANDIDATE.search(line):
                entry = line if prose is None else f"{prose}\n{line}"
                candidates.append((entry, _DIGEST_FIRST.search(line) is not None))
                prose = None
            else:
                prose = line
    digest = _policy_digest(candidates, budget)

    def render() -> str:
        parts = (
            text[:head],
            f"[...truncated, read {_AGENTS} for full content...]",
            f"[Policy digest from {_AGENTS}]" if digest.text else "",
            digest.text,
            f"[...{digest.omitted} more policy lines omitted...]" if digest.omitted else "",
            f"…(truncated {_AGENTS}: kept {head}+policy {len(digest.text)}+{tail} chars "
            f"of {len(text)})…",
            text[-tail:] if tail > 0 else "",
        )
        return "\n".join(p for p in parts if p)

    rendered = render()
    while len(rendered) > limit and (tail > 0 or head > 1 or budget > 0):
        overflow = len(rendered) - limit
        if tail > 0:
            tail = max(0, tail - overflow)
        elif head > 1:
            head = max(1, head - overflow)
        else:
            budget = max(0, budget - overflow)
            digest = _policy_digest(candidates, budget)
        rendered = render()
    return rendered[:limit]


def _digest_line(line: str) -> str:
    """A line for the digest: trimmed, runs of blanks made one space, at most
    :data:`_DIGEST_MAX_LINE_CHARS` characters."""
    line = " ".join(line.split())
    if len(line) <= _DIGEST_MAX_LINE_CHARS:
        return line
    return line[: _DIGEST_MAX_LINE_CHARS - 1] + "…"


def _policy_digest(candidates: Sequence[tuple[str, bool]], budget: int) -> _Digest:
    """The candidates that fit ``budget`` (one newline between them): the
    high-priority ones first, then the rest; in file order."""
    if budget <= 0:
        return _Digest("", 0)
    chosen: set[int] = set()
    used = 0
    for first_pass in (True, False):
        for index, (entry, high) in enumerate(candidates):
            if index in chosen or (first_pass and not high):
                continue
            cost = len(entry) + (1 if chosen else 0)
            if used + cost <= budget:
                chosen.add(index)
                used += cost
    text = "\n".join(entry for index, (entry, _) in enumerate(candidates) if index in chosen)
    return _Digest(text, len(candidates) - len(chosen))


def load_bootstrap_files(
    workspace: Path,
    *,
    main_session: bool,
    max_chars: int = DEFAULT_MAX_CHARS,
    total_max_chars: int = DEFAULT_TOTAL_MAX_CHARS,
) -> tuple[BootstrapFile, ...]:
    """Read and budget the bootstrap files. Blocking: call from a thread."""
    result: list[BootstrapFile] = []
    remaining = max(1, total_max_chars)
    full = False  # the budget is spent: the remaining files are left out
    for name in BOOTSTRAP_FILES:
        if name == "MEMORY.md" and not main_session:
            continue
        path = workspace / name
        text = _read_capped(path, workspace)
        if text is None:
            if name in REQUIRED_FILES and remaining > 0 and not full:
                marker = _clamp(missing_marker(path), remaining)
                result.append(BootstrapFile(name, path, marker, missing=True))
                remaining -= len(marker)
            continue
        text = text.rstrip()
        if not text:
            continue
        full = full or remaining < MIN_FILE_BUDGET_CHARS
        if full:
            # OpenClaw stops at this file; the prompt's notice names it and
            # the ones after it, so that the model can read them.
            result.append(BootstrapFile(name, path, "", omitted=True, raw_chars=len(text)))
            continue
        cap = min(max_chars, USER_MD_MAX_CHARS) if name == "USER.md" else max_chars
        cap = max(1, min(cap, remaining))
        content = truncate_text(text, cap, name)
        result.append(
            BootstrapFile(name, path, content, truncated=content != text, raw_chars=len(text))
        )
        remaining -= len(content)
    return tuple(result)


def _clamp(text: str, budget: int) -> str:
    """``text`` within ``budget`` characters, an ellipsis marking a cut."""
    if len(text) <= budget:
        return text
    return text[:budget] if budget <= 3 else text[: budget - 1] + "…"


def _read_capped(path: Path, workspace: Path) -> str | None:
    """The file's text (first ``MAX_READ_BYTES``), None when absent.

    Only a regular file inside the workspace is read (symlinks are followed
    but must stay inside, as for the file tools). The open never blocks: a
    FIFO named ``AGENTS.md`` would otherwise hold an IO thread for good.
    """
    try:
        real = os.path.realpath(path)
        root = os.path.realpath(workspace)
        if os.path.commonpath([real, root]) != root:
            return "[not read: it links outside the workspace]"
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return f"[unreadable: {exc.strerror or exc}]"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None if os.path.isdir(real) else "[not read: not a regular file]"
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_READ_BYTES)
    except OSError as exc:
        return f"[unreadable: {exc.strerror or exc}]"
    finally:
        os.close(fd)
    if b"\x00" in data[:8192]:
        return "[not read: binary file]"  # NULs have no place in a system prompt
    return data.decode("utf-8", errors="replace")


def skill_roots(workspace: Path, extra: Sequence[Path] = ()) -> tuple[Path, ...]:
    """Where skills are looked for, highest precedence first."""
    return (workspace / "skills", workspace / ".agents" / "skills", *extra)


def load_workspace_context(
    workspace: Path,
    *,
    main_session: bool,
    max_chars: int = DEFAULT_MAX_CHARS,
    total_max_chars: int = DEFAULT_TOTAL_MAX_CHARS,
    extra_skill_roots: Sequence[Path] = (),
) -> WorkspaceContext:
    """Bootstrap files and skills of one workspace. Blocking: call from a thread."""
    files = load_bootstrap_files(
        workspace, main_session=main_session, max_chars=max_chars, total_max_chars=total_max_chars
    )
    skills = discover_skills(skill_roots(workspace, extra_skill_roots))
    return WorkspaceContext(workspace, files, skills)


class WorkspaceLoader:
    """Loads workspace context off the reactor thread, and briefly remembers it.

    ``io`` is where blocking reads run (the session store's
    :class:`~openclaw.sessions.fileio.BlockingIO`, or ``InlineIO`` in tests).
    With a ``clock``, a context is reused for ``recheck_seconds``: a busy agent
    costs one read of its files per interval, not one per turn, and an edit
    shows up within that interval. A workspace is created (with starter files
    unless ``templates`` is false; a brand-new one also gets ``git init``) the
    first time it is loaded, on ``io`` too: the subprocess never waits on the
    reactor thread.
    """

    def __init__(
        self,
        io: BlockingIO,
        *,
        clock: IReactorTime | None = None,
        recheck_seconds: float = 1.0,
    ) -> None:
        self._io = io
        self._clock = clock
        self._recheck = recheck_seconds
        self._created: set[Path] = set()
        self._cache: dict[tuple[Path, bool, int, int], tuple[float, WorkspaceContext]] = {}

    def load(
        self,
        workspace: Path,
        *,
        main_session: bool,
        max_chars: int = DEFAULT_MAX_CHARS,
        total_max_chars: int = DEFAULT_TOTAL_MAX_CHARS,
        templates: bool = True,
    ) -> Deferred[WorkspaceContext]:
        """The workspace's bootstrap files and skills (creating it on first use)."""
        key = (workspace, main_session, max_chars, total_max_chars)
        now = self._clock.seconds() if self._clock is not None else None
        cached = self._cache.get(key)
        if cached is not None and now is not None and 0 <= now - cached[0] < self._recheck:
            return succeed(cached[1])
        create = workspace not in self._created

        def work() -> WorkspaceContext:
            if create:
                ensure_workspace(workspace, templates=templates)
            return load_workspace_context(
                workspace,
                main_session=main_session,
                max_chars=max_chars,
                total_max_chars=total_max_chars,
            )

        def remember(context: WorkspaceContext) -> WorkspaceContext:
            self._created.add(workspace)
            if now is not None:
                self._cache[key] = (now, context)
            return context

        return self._io.run(work).addCallback(remember)

    def forget(self, workspace: Path | None = None) -> None:
        """Drop cached contexts (of one workspace, or all): the next load re-reads."""
        if workspace is None:
            self._cache.clear()
            self._created.clear()
            return
        self._created.discard(workspace)
        for key in [k for k in self._cache if k[0] == workspace]:
            del self._cache[key]


def template_text(name: str) -> str:
    """A starter file shipped with the package (``openclaw/agents/templates``)."""
    return (
        resources.files("openclaw.agents").joinpath("templates", name).read_text(encoding="utf-8")
    )


def ensure_workspace(
    path: Path, *, templates: bool = True, env: Mapping[str, str] | None = None
) -> list[Path]:
    """Create the workspace directory and, with ``templates``, the missing starter
    files; never overwrites. ``BOOTSTRAP.md`` is written only into a brand-new
    workspace (none of the starter files existed). With ``templates``, a
    workspace with no content at all also becomes a git repository, as in
    OpenClaw (:func:`init_git_repository`; ``env`` is the environment git is
    looked up in and runs with, this process's by default). Returns the files
    written. Blocking: call from a thread (``openclaw setup`` calls it directly)."""
    make_private_dirs(path)
    if not templates:
        return []
    brand_new = _has_no_content(path)
    existing = [name for name in (*STARTER_FILES, "MEMORY.md") if (path / name).exists()]
    names = list(STARTER_FILES)
    if not existing:
        names.append("BOOTSTRAP.md")
    written: list[Path] = []
    for name in names:
        target = path / name
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(template_text(name))
        written.append(target)
    if brand_new:
        init_git_repository(path, os.environ if env is None else env)
    return written


def _has_no_content(path: Path) -> bool:
    """OpenClaw's test for a brand-new workspace: no starter file, no memory
    (``memory/`` or ``MEMORY.md``) and no skill (``skills/*/SKILL.md``)."""
    names = (*STARTER_FILES, "MEMORY.md", "memory")
    if any(os.path.lexists(path / name) for name in names):
        return False
    try:
        skills = list(os.scandir(path / "skills"))
    except OSError:
        return True
    return not any(e.is_dir() and (Path(e.path) / "SKILL.md").exists() for e in skills)


def init_git_repository(path: Path, env: Mapping[str, str]) -> bool:
    """Run ``git init`` in ``path`` unless it has a ``.git`` already; whether it did.

    As in OpenClaw this is a convenience: without git on ``env``'s ``PATH``
    nothing happens, and a failure or a ``git init`` that takes more than
    :data:`GIT_INIT_TIMEOUT_SECONDS` is ignored (the workspace works without a
    repository). Nothing is added or committed. Blocking: call from a thread.
    """
    if os.path.lexists(path / ".git"):
        return False
    git = shutil.which("git", path=env.get("PATH", ""))
    if git is None:
        return False
    git = os.path.abspath(git)  # a relative PATH entry means the gateway's cwd, not ``path``
    child_env = {k: v for k, v in env.items() if k not in _GIT_LOCATION_VARS}
    try:
        done = subprocess.run(
            [git, "init", "--quiet"],
            cwd=path,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=GIT_INIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def is_main_session(session_key: str, agent_id: str, main_key: str = "main") -> bool:
    """Whether ``session_key`` is the agent's private main session (MEMORY.md is
    injected there only)."""
    return session_key.strip().lower() == f"agent:{agent_id}:{main_key}".lower()
