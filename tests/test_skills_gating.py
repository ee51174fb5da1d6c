"""Skill gating (``metadata.openclaw``): a skill this host cannot use is not
offered to the model (openclaw.agents.skills, OpenClaw's tools/skills.md "Gating")."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.skills import Gate, Host, discover_skills, parse_gate
from openclaw.testing import run_due
from tests.agent_loop_support import LoopCase

#: An operating system this test does not run on.
OTHER_OS = "win32" if sys.platform != "win32" else "darwin"


def write_skill(root: Path, name: str, metadata: str = "") -> None:
    """``<root>/<name>/SKILL.md`` with ``metadata`` lines in its front matter."""
    directory = root / name
    directory.mkdir(parents=True)
    head = f"---\nname: {name}\ndescription: The {name} skill\n{metadata}"
    (directory / "SKILL.md").write_text(head.rstrip("\n") + "\n---\nbody\n")


class PromptTests(LoopCase):
    def test_skills_the_host_cannot_use_are_not_in_the_prompt(self) -> None:
        """The reviewer's case through a run: a macOS-only skill and one needing a
        missing binary are left out of <available_skills>; a skill whose
        requirements this host meets, and one without metadata, are listed."""
        skills = self.workspace / "skills"
        write_skill(skills, "elsewhere", f'metadata: {{ "openclaw": {{ "os": ["{OTHER_OS}"] }} }}')
        write_skill(
            skills,
            "needsbin",
            'metadata:\n  {\n    "openclaw":\n      {\n'
            '        "requires": { "bins": ["definitely-not-a-bin-xyz"] },\n      },\n  }',
        )
        write_skill(
            skills,
            "native",
            f'metadata: {{"openclaw": {{"os": ["{sys.platform}"],'
            ' "requires": {"bins": ["sh"]}}}',
        )
        write_skill(skills, "plain")
        run, _ = self.start()
        run_due(self.clock)
        self.successResultOf(run.result)
        prompt = self.provider.calls[0].system_prompt or ""
        listed = prompt[prompt.index("<available_skills>") : prompt.index("</available_skills>")]
        self.assertIn("<name>native</name>", listed)
        self.assertIn("<name>plain</name>", listed)
        self.assertNotIn("elsewhere", listed)
        self.assertNotIn("needsbin", listed)


class GateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.bin_dir = Path(self.mktemp())
        self.bin_dir.mkdir()
        tool = self.bin_dir / "mytool"
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
        (self.bin_dir / "notexec").write_text("")
        (self.bin_dir / "adir").mkdir()
        self.host = Host("linux", {"PATH": str(self.bin_dir), "TOKEN": "t", "BLANK": "  "})

    def listed(self, host: Host | None = None) -> list[str]:
        return [s.name for s in discover_skills([self.root], host or self.host)]

    def test_os_is_a_hard_filter_that_always_does_not_override(self) -> None:
        """``os`` must name the host's platform; ``always`` does not lift it."""
        write_skill(self.root, "mac", 'metadata: { "openclaw": { "os": ["darwin"] } }')
        write_skill(
            self.root, "macalways", 'metadata: {"openclaw": {"os": "darwin", "always": true}}'
        )
        write_skill(self.root, "both", 'metadata: { "openclaw": { "os": ["darwin", "linux"] } }')
        self.assertEqual(self.listed(), ["both"])
        self.assertEqual(self.listed(Host("darwin", {})), ["both", "mac", "macalways"])

    def test_bins_and_any_bins_are_looked_up_on_path(self) -> None:
        """Every ``bins`` name must be an executable file on PATH, one ``anyBins``
        name at least; non-executables, directories and paths do not count."""
        for name, requires in {
            "one": '{"bins": ["mytool"]}',
            "missing": '{"bins": ["mytool", "nope"]}',
            "notexec": '{"bins": ["notexec"]}',
            "adir": '{"bins": ["adir"]}',
            "apath": f'{{"bins": ["{self.bin_dir / "mytool"}"]}}',
            "anyone": '{"anyBins": ["nope", "mytool"]}',
            "anynone": '{"anyBins": ["nope", "nope2"]}',
            "csv": '{"bins": "mytool, nope"}',
        }.items():
            write_skill(self.root, name, f'metadata: {{"openclaw": {{"requires": {requires}}}}}')
        self.assertEqual(self.listed(), ["anyone", "one"])
        self.assertEqual(self.listed(Host("linux", {})), [])  # no PATH, no binaries

    def test_env_must_be_set_and_not_blank(self) -> None:
        """Each ``requires.env`` variable must be set (and not blank) in the gateway's
        environment."""
        write_skill(self.root, "set", 'metadata: {"openclaw": {"requires": {"env": ["TOKEN"]}}}')
        write_skill(self.root, "blank", 'metadata: {"openclaw": {"requires": {"env": ["BLANK"]}}}')
        write_skill(self.root, "unset", 'metadata: {"openclaw": {"requires": {"env": ["NOPE"]}}}')
        self.assertEqual(self.listed(), ["set"])

    def test_config_paths_are_never_satisfied_but_always_bypasses_requires(self) -> None:
        """This gateway has no skills config: a ``requires.config`` path fails;
        ``always: true`` bypasses every ``requires`` list."""
        write_skill(
            self.root,
            "cfg",
            'metadata: {"openclaw": {"requires": {"config": ["browser.enabled"]}}}',
        )
        write_skill(
            self.root,
            "always",
            'metadata: {"openclaw": {"always": true, "requires": {"bins": ["nope"],'
            ' "env": ["NOPE"], "config": ["x"]}}}',
        )
        write_skill(
            self.root,
            "truthy",
            'metadata: {"openclaw": {"always": "yes", "requires": {"bins": ["nope"]}}}',
        )
        self.assertEqual(self.listed(), ["always"])

    def test_metadata_forms(self) -> None:
        """Inline JSON, an indented JSON5 block, the legacy ``clawdbot`` key (only
        without ``openclaw``) gate; metadata that is not a JSON5 object with such
        a block gates nothing, as in OpenClaw."""
        write_skill(self.root, "inline", 'metadata: {"openclaw": {"os": ["darwin"]}}')
        write_skill(
            self.root,
            "block",
            "metadata:\n  {\n    // JSON5: comments, unquoted keys, trailing commas\n"
            "    openclaw: { os: ['darwin'], },\n  }",
        )
        write_skill(self.root, "legacy", 'metadata: {"clawdbot": {"os": ["darwin"]}}')
        write_skill(
            self.root,
            "newwins",
            'metadata: {"openclaw": {"emoji": "x"}, "clawdbot": {"os": ["darwin"]}}',
        )
        write_skill(self.root, "broken", 'metadata: {"openclaw": {"os": ["darwin"]')
        write_skill(self.root, "yamlish", "metadata:\n  openclaw:\n    os: [darwin]")
        write_skill(self.root, "notobject", 'metadata: {"openclaw": "darwin"}')
        write_skill(self.root, "nometa")
        self.assertEqual(self.listed(), ["broken", "newwins", "nometa", "notobject", "yamlish"])

    def test_a_gated_out_skill_still_wins_its_name(self) -> None:
        """Names merge before gating, as in OpenClaw: a gated-out workspace skill
        does not let a lower root's skill of the same name through."""
        second = Path(self.mktemp())
        write_skill(self.root, "dup", 'metadata: {"openclaw": {"os": ["darwin"]}}')
        write_skill(second, "dup")
        self.assertEqual(discover_skills([self.root, second], self.host), ())

    def test_parse_gate(self) -> None:
        """The gate's lists are trimmed names; ``always`` counts only as true."""
        self.assertEqual(
            parse_gate(
                '{"openclaw": {"os": [" linux ", ""], "always": true, "requires":'
                ' {"bins": ["a", 1], "anyBins": "b, c", "env": ["E"], "config": ["x.y"]}}}'
            ),
            Gate(
                os=("linux",),
                always=True,
                bins=("a", "1"),
                any_bins=("b", "c"),
                env=("E",),
                config=("x.y",),
            ),
        )
        self.assertEqual(parse_gate('{"openclaw": {}}'), Gate())
        self.assertIsNone(parse_gate(None))
        self.assertIsNone(parse_gate("[1]"))
        self.assertIsNone(parse_gate('{"openclaw": []}'))

    def test_default_host_is_this_process(self) -> None:
        """Without a host, the gateway's own platform and environment are used."""
        host = Host.current()
        self.assertEqual((host.platform, host.env), (sys.platform, os.environ))
        write_skill(self.root, "here", f'metadata: {{"openclaw": {{"os": ["{sys.platform}"]}}}}')
        write_skill(self.root, "there", f'metadata: {{"openclaw": {{"os": ["{OTHER_OS}"]}}}}')
        self.assertEqual([s.name for s in discover_skills([self.root])], ["here"])
