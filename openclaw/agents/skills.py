"""Workspace skills: ``skills/**/SKILL.md`` found, named and listed for the prompt.

A skill is a directory holding ``SKILL.md``: YAML-style front matter
(``name``, ``description``, optionally ``disable-model-invocation``) and
instructions. The system prompt lists each skill's name, description and
location; the model ``read``s the file when it needs it. As in OpenClaw, a
``SKILL.md`` may sit up to six levels below a root (folders only group), the
search stops below a skill's own directory, the name falls back to the
directory name, and an earlier root wins a name clash. Discovery reads files:
run it off the reactor thread (the workspace loader does).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from attrs import frozen

SKILL_FILE: Final = "SKILL.md"
MAX_DEPTH: Final = 6
#: Bytes of a SKILL.md read to find its front matter.
MAX_HEAD_BYTES: Final = 64 * 1024
#: Skills listed in one prompt at most.
MAX_SKILLS: Final = 150
_KEY: Final = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)\s*:\s*(.*)$")
_TRUE: Final = frozenset({"true", "yes", "on"})


@frozen(cache_hash=True)  # a key of the prompt head's cache, hashed per run
class Skill:
    """One skill the model may load."""

    name: str
    description: str
    #: The SKILL.md file (absolute).
    location: Path
    disable_model_invocation: bool = False


def parse_front_matter(text: str) -> dict[str, str] | None:
    """The ``---``-delimited header as ``key -> text``; None when there is none.

    Single-line ``key: value`` pairs (quotes removed) and ``|``/``>`` block
    values are understood; nested mappings (``metadata``) are skipped.
    """
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    values: dict[str, str] = {}
    index = 1
    while index < len(lines):
        line = lines[index]
        if line.strip() in ("---", "..."):
            return values
        match = _KEY.match(line)
        index += 1
        if match is None:
            continue
        key, raw = match.group(1), match.group(2).strip()
        if raw in ("|", ">", "|-", ">-", "") or raw.startswith(("|", ">")):
            block: list[str] = []
            while index < len(lines) and (not lines[index].strip() or lines[index][:1] in " \t"):
                block.append(lines[index].strip())
                index += 1
            if raw == "":
                continue  # a nested mapping or an empty value
            joiner = "\n" if raw.startswith("|") else " "
            values[key] = joiner.join(block).strip()
        else:
            values[key] = _unquote(raw)
    return None  # no closing delimiter


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    if " #" in raw:
        raw = raw.split(" #", 1)[0].rstrip()
    return raw


def _skill_files(root: Path) -> Iterator[Path]:
    """SKILL.md files under ``root`` (depth-limited, not below another skill)."""
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        directory, depth = stack.pop()
        candidate = directory / SKILL_FILE
        if depth > 0 and candidate.is_file():
            yield candidate
            continue
        if depth >= MAX_DEPTH:
            continue
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name, reverse=True)
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.name == "node_modules":
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append((Path(entry.path), depth + 1))


def load_skill(path: Path) -> Skill | None:
    """Read one SKILL.md; None when it is unreadable or has no description."""
    try:
        with path.open("rb") as f:
            head = f.read(MAX_HEAD_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    meta = parse_front_matter(head)
    if meta is None:
        return None
    name = (meta.get("name") or path.parent.name).strip()
    description = " ".join(meta.get("description", "").split())
    if not name or not description:
        return None
    disabled = meta.get("disable-model-invocation", "").strip().lower() in _TRUE
    return Skill(name, description, path.absolute(), disabled)


def discover_skills(roots: Sequence[Path]) -> tuple[Skill, ...]:
    """The model-visible skills under ``roots`` (earlier roots win name clashes),
    sorted by name. Blocking: call from a thread."""
    found: dict[str, Skill] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in _skill_files(root):
            skill = load_skill(path)
            if skill is None or skill.name in found:
                continue
            found[skill.name] = skill
    visible = [s for s in found.values() if not s.disable_model_invocation]
    return tuple(sorted(visible, key=lambda s: s.name))[:MAX_SKILLS]
