"""Workspace location, starter files, bootstrap budgeting and skills
(openclaw.agents.workspace, openclaw.agents.skills)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents import workspace as workspace_module
from openclaw.agents.skills import discover_skills, parse_front_matter
from openclaw.agents.system_prompt import RuntimeInfo, build_system_prompt
from openclaw.agents.workspace import (
    MAX_READ_BYTES,
    USER_MD_MAX_CHARS,
    WorkspaceContext,
    WorkspaceLoader,
    ensure_workspace,
    is_main_session,
    load_bootstrap_files,
    missing_marker,
    resolve_workspace,
    template_text,
    truncate_text,
)
from openclaw.sessions.fileio import InlineIO

STATE = Path("/state")


def where(agent_id: str, **kwargs: object) -> Path:
    options: dict[str, object] = {
        "agent_workspace": None,
        "defaults_workspace": None,
        "is_default": True,
        "agent_count": 1,
        "state_dir": STATE,
        "env": {"HOME": "/home/u"},
    }
    options.update(kwargs)
    return resolve_workspace(agent_id, **options)  # type: ignore[arg-type]


class ResolveTests(SynchronousTestCase):
    def test_sole_agent_defaults(self) -> None:
        """A sole agent: <state>/workspace, then OPENCLAW_WORKSPACE_DIR, then the shared root."""
        self.assertEqual(where("main"), Path("/state/workspace"))
        env = {"OPENCLAW_WORKSPACE_DIR": "/ws", "HOME": "/home/u"}
        self.assertEqual(where("main", env=env), Path("/ws"))
        self.assertEqual(where("main", env=env, defaults_workspace="~/w"), Path("/home/u/w"))

    def test_own_workspace_wins(self) -> None:
        """An agent's own workspace is used as given (~ expanded)."""
        self.assertEqual(where("x", agent_workspace="~/mine", agent_count=3), Path("/home/u/mine"))

    def test_roster_without_shared_root(self) -> None:
        """In a roster the default agent keeps <state>/workspace, others get workspace-<id>."""
        self.assertEqual(where("main", agent_count=2), Path("/state/workspace"))
        self.assertEqual(
            where("ops", agent_count=2, is_default=False), Path("/state/workspace-ops")
        )

    def test_roster_with_shared_root(self) -> None:
        """With agents.defaults.workspace set, unpinned roster agents get <root>/<id>."""
        self.assertEqual(
            where("main", agent_count=2, defaults_workspace="/root"), Path("/root/main")
        )
        self.assertEqual(
            where("ops", agent_count=2, is_default=False, defaults_workspace="/root"),
            Path("/root/ops"),
        )


class EnsureWorkspaceTests(SynchronousTestCase):
    def test_new_workspace_gets_starters_and_bootstrap(self) -> None:
        """A brand-new workspace gets the starter files and BOOTSTRAP.md."""
        path = Path(self.mktemp()) / "ws"
        written = ensure_workspace(path)
        self.assertEqual(
            sorted(p.name for p in written),
            ["AGENTS.md", "BOOTSTRAP.md", "IDENTITY.md", "SOUL.md", "USER.md"],
        )
        self.assertEqual((path / "SOUL.md").read_text(), template_text("SOUL.md"))
        self.assertIn("workspace", (path / "AGENTS.md").read_text())

    def test_never_overwrites_and_no_bootstrap_for_existing(self) -> None:
        """Existing files are kept, missing ones added, BOOTSTRAP.md not reseeded."""
        path = Path(self.mktemp())
        path.mkdir()
        (path / "AGENTS.md").write_text("mine")
        written = ensure_workspace(path)
        self.assertEqual((path / "AGENTS.md").read_text(), "mine")
        self.assertEqual(sorted(p.name for p in written), ["IDENTITY.md", "SOUL.md", "USER.md"])
        self.assertFalse((path / "BOOTSTRAP.md").exists())
        self.assertEqual(ensure_workspace(path), [])

    def test_without_templates_only_the_directory(self) -> None:
        """templates=False creates the directory alone."""
        path = Path(self.mktemp()) / "a" / "b"
        self.assertEqual(ensure_workspace(path, templates=False), [])
        self.assertTrue(path.is_dir())
        self.assertEqual(list(path.iterdir()), [])


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real git, run in ``cwd`` (never pointed elsewhere by GIT_DIR)."""
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


class GitInitTests(SynchronousTestCase):
    """A brand-new workspace becomes a git repository, as in OpenClaw."""

    def fake_git(self, script: str) -> dict[str, str]:
        """An environment whose PATH holds only a ``git`` running ``script`` (the
        directory is relative: it is the test's cwd, not the workspace's)."""
        bin_dir = Path(self.mktemp())
        bin_dir.mkdir()
        (bin_dir / "git").write_text("#!/bin/sh\n" + script)
        (bin_dir / "git").chmod(0o755)
        return {"PATH": str(bin_dir)}

    def test_a_new_workspace_is_a_git_repository_with_nothing_committed(self) -> None:
        """The loader's first load of a new workspace (what a first turn does) runs
        the real ``git init`` there: the starter files are untracked, nothing is
        committed and no .gitignore is written."""
        self.assertIsNotNone(shutil.which("git"), "these tests run the real git")
        ws = Path(self.mktemp()) / "new"
        context = self.successResultOf(WorkspaceLoader(InlineIO()).load(ws, main_session=True))
        self.assertEqual(len(context.files), 5)
        top = git(ws, "rev-parse", "--show-toplevel")
        self.assertEqual(top.returncode, 0, top.stderr)
        self.assertEqual(Path(top.stdout.strip()), ws.resolve())
        self.assertNotEqual(git(ws, "rev-parse", "--verify", "HEAD").returncode, 0)
        self.assertEqual(
            sorted(git(ws, "status", "--porcelain").stdout.splitlines()),
            [f"?? {n}" for n in ("AGENTS.md", "BOOTSTRAP.md", "IDENTITY.md", "SOUL.md", "USER.md")],
        )
        self.assertFalse((ws / ".gitignore").exists())

    def test_a_workspace_with_content_is_left_alone(self) -> None:
        """A starter file, memory or a skill means the workspace is not new: no
        repository; nor without templates (skipBootstrap) or with a .git already."""
        record = Path(self.mktemp()).absolute()
        env = {**self.fake_git(f'echo "$*" >> {record}\n'), "HOME": "/nonexistent"}
        contents = {
            "agents": lambda p: (p / "AGENTS.md").write_text("mine"),
            "memory-dir": lambda p: (p / "memory").mkdir(),
            "memory-md": lambda p: (p / "MEMORY.md").write_text("m"),
            "skill": lambda p: (
                (p / "skills" / "s").mkdir(parents=True)
                or (p / "skills" / "s" / "SKILL.md").write_text("x")
            ),
            "git": lambda p: (p / ".git").write_text("gitdir: /elsewhere\n"),
        }
        for name, make in contents.items():
            with self.subTest(name):
                path = Path(self.mktemp())
                path.mkdir()
                make(path)
                ensure_workspace(path, env=env)
                self.assertTrue((path / "SOUL.md").exists())
        ensure_workspace(Path(self.mktemp()), templates=False, env=env)
        self.assertFalse(record.exists())
        ensure_workspace(Path(self.mktemp()) / "fresh", env=env)
        self.assertEqual(record.read_text(), "init --quiet\n")  # the fake git does work

    def test_git_runs_in_the_workspace_whatever_git_dir_says(self) -> None:
        """``git init`` runs in the workspace with the gateway's environment minus the
        variables that would point it at another repository."""
        record = Path(self.mktemp()).absolute()
        env = {
            **self.fake_git(f'echo "$PWD|$*|${{GIT_DIR-unset}}|$KEEP" > {record}\n'),
            "GIT_DIR": "/elsewhere/.git",
            "KEEP": "kept",
        }
        path = Path(self.mktemp()).absolute()
        ensure_workspace(path, env=env)
        self.assertEqual(record.read_text(), f"{path.resolve()}|init --quiet|unset|kept\n")

    def test_no_git_or_a_failing_git_is_no_error(self) -> None:
        """Without git on PATH nothing is run; a git that fails or hangs (given up
        after GIT_INIT_TIMEOUT_SECONDS) leaves the seeded workspace as it is."""
        self.patch(workspace_module, "GIT_INIT_TIMEOUT_SECONDS", 0.2)
        empty = Path(self.mktemp())
        empty.mkdir()
        for name, env in {
            "absent": {"PATH": str(empty)},
            "no-path": {},
            "fails": self.fake_git("echo oops >&2; exit 1\n"),
            "hangs": self.fake_git("exec sleep 30\n"),
        }.items():
            with self.subTest(name):
                path = Path(self.mktemp())
                written = ensure_workspace(path, env=env)
                self.assertEqual(len(written), 5)
                self.assertFalse((path / ".git").exists())


class BootstrapTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ws = Path(self.mktemp())
        self.ws.mkdir()

    def write(self, name: str, text: str) -> None:
        (self.ws / name).write_text(text, encoding="utf-8")

    def test_order_markers_and_optional_files(self) -> None:
        """Files come in OpenClaw's order; missing required ones get a marker, optional
        ones (USER.md, BOOTSTRAP.md, MEMORY.md) are just left out; blank files skipped."""
        self.write("USER.md", "likes tea")
        self.write("AGENTS.md", "rules")
        self.write("IDENTITY.md", "   \n")
        files = load_bootstrap_files(self.ws, main_session=True)
        self.assertEqual([f.name for f in files], ["AGENTS.md", "SOUL.md", "USER.md"])
        soul = files[1]
        self.assertTrue(soul.missing)
        self.assertEqual(soul.content, missing_marker(self.ws / "SOUL.md"))
        self.assertEqual(files[2].content, "likes tea")

    def test_only_regular_files_inside_the_workspace_are_read(self) -> None:
        """A FIFO is not waited on (it would hold an IO thread for good), a
        symlink out of the workspace is not followed, one inside is; a
        directory named like a file counts as missing."""
        os.mkfifo(self.ws / "AGENTS.md")
        outside = Path(self.mktemp())
        outside.write_text("SECRET-OUTSIDE", encoding="utf-8")
        (self.ws / "SOUL.md").symlink_to(outside.resolve())
        self.write("notes.md", "who I am")
        (self.ws / "IDENTITY.md").symlink_to("notes.md")
        (self.ws / "USER.md").mkdir()
        files = {f.name: f for f in load_bootstrap_files(self.ws, main_session=True)}
        self.assertEqual(files["AGENTS.md"].content, "[not read: not a regular file]")
        self.assertEqual(files["SOUL.md"].content, "[not read: it links outside the workspace]")
        self.assertEqual(files["IDENTITY.md"].content, "who I am")
        self.assertNotIn("USER.md", files)
        self.assertNotIn("SECRET-OUTSIDE", "".join(f.content for f in files.values()))
        (self.ws / "MEMORY.md").write_bytes(b"\x7fELF\x00\x00binary")
        (memory,) = [
            f for f in load_bootstrap_files(self.ws, main_session=True) if f.name == "MEMORY.md"
        ]
        self.assertEqual(memory.content, "[not read: binary file]")

    def test_memory_only_in_main_session(self) -> None:
        """MEMORY.md is injected in the main session only."""
        self.write("MEMORY.md", "remember")
        self.assertIn(
            "MEMORY.md", [f.name for f in load_bootstrap_files(self.ws, main_session=True)]
        )
        self.assertNotIn(
            "MEMORY.md", [f.name for f in load_bootstrap_files(self.ws, main_session=False)]
        )

    def test_per_file_truncation_keeps_head_and_tail(self) -> None:
        """A file over bootstrapMaxChars is cut to the limit, head and tail kept."""
        body = "HEAD" + "x" * 5000 + "TAIL"
        self.write("AGENTS.md", body)
        (agents,) = [
            f
            for f in load_bootstrap_files(self.ws, main_session=True, max_chars=1000)
            if f.name == "AGENTS.md"
        ]
        self.assertTrue(agents.truncated)
        self.assertLessEqual(len(agents.content), 1000)
        self.assertTrue(agents.content.startswith("HEAD"))
        self.assertTrue(agents.content.endswith("TAIL"))
        self.assertIn("truncated", agents.content)
        self.assertEqual(agents.raw_chars, len(body))

    def test_user_md_has_its_own_cap(self) -> None:
        """USER.md is capped at 4,000 characters whatever bootstrapMaxChars says."""
        self.write("USER.md", "u" * 10_000)
        (user,) = [
            f for f in load_bootstrap_files(self.ws, main_session=True) if f.name == "USER.md"
        ]
        self.assertEqual(len(user.content), USER_MD_MAX_CHARS)
        self.assertTrue(user.truncated)

    def test_total_budget(self) -> None:
        """All files together stay within bootstrapTotalMaxChars; later files are cut or dropped."""
        for name in ("AGENTS.md", "SOUL.md", "IDENTITY.md"):
            self.write(name, name[0] * 800)
        self.write("MEMORY.md", "m" * 800)
        files = load_bootstrap_files(
            self.ws, main_session=True, max_chars=1000, total_max_chars=2000
        )
        self.assertLessEqual(sum(len(f.content) for f in files), 2000)
        self.assertEqual(
            [(f.truncated, f.omitted) for f in files][:3], [(False, False)] * 2 + [(True, False)]
        )
        (memory,) = [f for f in files if f.name == "MEMORY.md"]
        self.assertEqual((memory.omitted, memory.content), (True, ""))
        # The prompt leaves it out but says so, so the model can read it.
        prompt = build_system_prompt(runtime=RuntimeInfo(agent_id="main"), now=0,
                                     bootstrap_files=files)  # fmt: skip
        self.assertNotIn("## MEMORY.md", prompt)
        self.assertIn("Left out to fit the prompt: MEMORY.md", prompt)

    def test_huge_file_read_is_capped(self) -> None:
        """Only the first 2 MiB of a file are read."""
        self.write("AGENTS.md", "a" * (MAX_READ_BYTES + 10))
        (agents, *_rest) = load_bootstrap_files(
            self.ws, main_session=True, max_chars=10**8, total_max_chars=10**8
        )
        self.assertEqual(agents.raw_chars, MAX_READ_BYTES)

    def test_truncate_text_short_is_unchanged(self) -> None:
        """Text within the limit is returned as is."""
        self.assertEqual(truncate_text("abc", 10, "X"), "abc")

    def test_a_long_file_keeps_three_quarters_head_and_a_quarter_tail(self) -> None:
        """A file other than AGENTS.md is cut as OpenClaw cuts it: 75% head and
        25% tail of the room its marker leaves, the marker naming the file and
        what was kept."""
        text = "HEAD" + "x" * 5000 + "TAIL"
        self.assertEqual(
            truncate_text(text, 1000, "SOUL.md"),
            text[:673]
            + "\n\n[...truncated, read SOUL.md for full content...]\n"
            + "…(truncated SOUL.md: kept 673+224 chars of 5008)…\n\n"
            + text[-224:],
        )

    def test_a_long_agents_md_keeps_a_policy_digest(self) -> None:
        """AGENTS.md keeps its head, a digest of its headings, list items and
        rule lines (each with the prose line before it; lines saying never,
        must, security... chosen first, the others while they fit, in file
        order) and its tail, within the limit (OpenClaw's output, word for word)."""
        lines = ["# Team rules", "Intro text that explains things."]
        lines += [
            f"plain prose line number {n} with nothing special in it at all" for n in range(30)
        ]
        lines += [
            "## Style",
            "- use tabs for indentation",
            "Keep secrets out of logs.",
            "- never commit credentials",
            "1. Ask the owner before large refactors",
        ]
        lines += [f"more plain prose line {n} with nothing special in it at all" for n in range(30)]
        text = "\n".join(lines)
        self.assertEqual(
            truncate_text(text, 400, "AGENTS.md"),
            text[:85]
            + "\n[...truncated, read AGENTS.md for full content...]"
            + "\n[Policy digest from AGENTS.md]"
            + "\n# Team rules"
            + "\nplain prose line number 29 with nothing special in it at all\n## Style"
            + "\nKeep secrets out of logs.\n- never commit credentials"
            + "\n[...2 more policy lines omitted...]"
            + "\n…(truncated AGENTS.md: kept 85+policy 135+0 chars of 3754)…",
        )
        wider = truncate_text(text, 1000, "AGENTS.md")
        self.assertLessEqual(len(wider), 1000)
        self.assertIn("- use tabs for indentation\n", wider)
        self.assertIn("1. Ask the owner before large refactors\n", wider)
        self.assertNotIn("more policy lines omitted", wider)
        self.assertTrue(wider.endswith(text[-150:]))

    def test_loader_creates_and_reads(self) -> None:
        """WorkspaceLoader creates a missing workspace and returns its files and skills."""
        ws = Path(self.mktemp()) / "new"
        skill = ws / "skills" / "group" / "hello"
        skill.mkdir(parents=True)
        (skill / "SKILL.md").write_text("---\nname: hello\ndescription: Say hi\n---\nbody\n")
        result = self.successResultOf(WorkspaceLoader(InlineIO()).load(ws, main_session=True))
        self.assertIsInstance(result, WorkspaceContext)
        self.assertEqual(
            [f.name for f in result.files],
            ["AGENTS.md", "SOUL.md", "IDENTITY.md", "USER.md", "BOOTSTRAP.md"],
        )
        self.assertFalse(result.truncated)
        self.assertEqual([s.name for s in result.skills], ["hello"])

    def test_loader_caches_within_the_recheck_interval(self) -> None:
        """With a clock, a context is reused for the interval, then re-read; forget()
        drops it at once."""
        clock = Clock()
        loader = WorkspaceLoader(InlineIO(), clock=clock, recheck_seconds=1.0)
        ws = Path(self.mktemp())
        first = self.successResultOf(loader.load(ws, main_session=False, templates=False))
        self.assertEqual([f.name for f in first.files], ["AGENTS.md", "SOUL.md", "IDENTITY.md"])
        (ws / "AGENTS.md").write_text("rules")
        again = self.successResultOf(loader.load(ws, main_session=False))
        self.assertIs(again, first)
        clock.advance(1.0)
        fresh = self.successResultOf(loader.load(ws, main_session=False))
        self.assertEqual(fresh.files[0].content, "rules")
        self.assertFalse((ws / "SOUL.md").exists())  # created once, without templates
        (ws / "AGENTS.md").write_text("changed")
        loader.forget(ws)
        self.assertEqual(
            self.successResultOf(loader.load(ws, main_session=False)).files[0].content, "changed"
        )
        loader.forget()

    def test_main_session(self) -> None:
        """Only agent:<id>:main is the main session."""
        self.assertTrue(is_main_session("agent:main:main", "main"))
        self.assertFalse(is_main_session("agent:main:openai:abc", "main"))


class SkillTests(SynchronousTestCase):
    def test_front_matter(self) -> None:
        """Quoted values, comments and folded blocks parse; a nested block is kept as
        its text (metadata, read as JSON5 by gating); no header gives None."""
        meta = parse_front_matter(
            '---\nname: "a-b"\ndescription: >\n  line one\n  line two\nmetadata:\n'
            "  openclaw: {}\nflag: yes # note\n---\nbody"
        )
        self.assertEqual(
            meta,
            {
                "name": "a-b",
                "description": "line one line two",
                "metadata": "openclaw: {}",
                "flag": "yes",
            },
        )
        self.assertIsNone(parse_front_matter("no header"))
        self.assertIsNone(parse_front_matter("---\nname: x\n"))

    def test_discovery_rules(self) -> None:
        """Nested skills are found, names fall back to the folder, the first root wins,
        hidden and invalid skills are skipped, and nothing below a skill is searched."""
        root = Path(self.mktemp())
        second = Path(self.mktemp())

        def skill(base: Path, rel: str, text: str) -> None:
            d = base / rel
            d.mkdir(parents=True)
            (d / "SKILL.md").write_text(text)

        skill(root, "a/deep", "---\ndescription: Deep one\n---\n")
        skill(root, "dup", "---\nname: same\ndescription: first\n---\n")
        skill(root, "dup/inner", "---\nname: inner\ndescription: hidden below\n---\n")
        skill(root, "off", "---\nname: off\ndescription: x\ndisable-model-invocation: true\n---\n")
        skill(root, "bad", "no front matter")
        skill(second, "dup", "---\nname: same\ndescription: second\n---\n")
        skills = discover_skills([root, second, Path("/nonexistent")])
        self.assertEqual(
            [(s.name, s.description) for s in skills], [("deep", "Deep one"), ("same", "first")]
        )
        self.assertEqual(skills[0].location, (root / "a/deep/SKILL.md").absolute())
