"""Workspace skills: ``skills/**/SKILL.md`` found, named and listed for the prompt.

A skill is a directory holding ``SKILL.md``: YAML-style front matter
(``name``, ``description``, optionally ``disable-model-invocation`` and
``metadata``) and instructions. The system prompt lists each skill's name,
description and location; the model ``read``s the file when it needs it. As in
OpenClaw, a ``SKILL.md`` may sit up to six levels below a root (folders only
group), the search stops below a skill's own directory, the name falls back to
the directory name, and an earlier root wins a name clash.

Skills are gated as in OpenClaw: ``metadata`` is a JSON5 object whose
``openclaw`` (or legacy ``clawdbot``) block may name the operating systems the
skill runs on and the binaries, environment variables and config paths it
needs; a skill whose requirements this host does not meet is left out of the
prompt, so the model is not told about tools it cannot use. Discovery reads
files and searches ``PATH``: run it off the reactor thread (the workspace
loader does).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from attrs import frozen

SKILL_FILE: Final = "SKILL.md"
MAX_DEPTH: Final = 6
#: Bytes of a SKILL.md read to find its front matter.
MAX_HEAD_BYTES: Final = 64 * 1024
#: Skills listed in one prompt at most.
MAX_SKILLS: Final = 150
_KEY: Final = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)\s*:\s*(.*)$")
_TRUE: Final = frozenset({"true", "yes", "on"})
#: Parsed ``metadata`` texts remembered: the JSON5 parser takes milliseconds per
#: block and discovery runs about once a second while an agent is busy.
GATE_CACHE_SIZE: Final = 256
#: The ``metadata`` keys read for gating, in order (``clawdbot`` is legacy).
_MANIFEST_KEYS: Final = ("openclaw", "clawdbot")


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
    values are understood; a key with an indented block below it (the
    multi-line ``metadata`` object) gets the block's lines as its text.
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
                if block:  # a nested value (``metadata``): parsed by whoever reads it
                    values[key] = "\n".join(block).strip()
                continue
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


@frozen
class Gate:
    """A skill's requirements (``metadata.openclaw``), checked against this host."""

    os: tuple[str, ...] = ()
    #: Bypasses every ``requires`` list (but not ``os``).
    always: bool = False
    bins: tuple[str, ...] = ()
    any_bins: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    config: tuple[str, ...] = ()


@frozen(eq=False)
class Host:
    """What gates are checked against: the gateway process's platform and
    environment (its ``PATH`` too), as OpenClaw checks its own host."""

    #: ``sys.platform``: ``linux``, ``darwin`` or ``win32`` name the same
    #: systems as Node's ``process.platform``, which skill files are written for.
    platform: str
    env: Mapping[str, str]

    @classmethod
    def current(cls) -> Host:
        """This process's platform and environment."""
        return cls(sys.platform, os.environ)


@functools.lru_cache(maxsize=GATE_CACHE_SIZE)
def parse_gate(metadata: str | None) -> Gate | None:
    """The gate in a ``metadata`` value; None when there is none.

    As in OpenClaw, metadata that is not a JSON5 object, or has no
    ``openclaw``/``clawdbot`` object, gates nothing: the skill stays listed.
    """
    if not metadata:
        return None
    try:
        data = _parse_json5(metadata)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    block = next((data[k] for k in _MANIFEST_KEYS if isinstance(data.get(k), (dict, list))), None)
    if not isinstance(block, dict):
        return None  # absent, or an array (an object to JavaScript, with no keys)
    requires = block.get("requires")
    if not isinstance(requires, dict):
        requires = {}
    return Gate(
        os=_names(block.get("os")),
        always=block.get("always") is True,
        bins=_names(requires.get("bins")),
        any_bins=_names(requires.get("anyBins")),
        env=_names(requires.get("env")),
        config=_names(requires.get("config")),
    )


def _parse_json5(text: str) -> Any:
    """JSON first (fast); the JSON5 parser only for JSON5 syntax (as the config loader)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        import json5

        return json5.loads(text)


def _names(value: object) -> tuple[str, ...]:
    """A list of names: an array (entries as text), or a comma-separated string."""
    if isinstance(value, str):
        items: list[object] = list(value.split(","))
    elif isinstance(value, list):
        items = value
    else:
        return ()
    texts = (
        str(v).lower() if isinstance(v, bool) else str(v)  # JavaScript's String(true)
        for v in items
        if v is not None
    )
    return tuple(t.strip() for t in texts if t.strip())


def is_eligible(gate: Gate | None, host: Host, which: dict[str, bool] | None = None) -> bool:
    """Whether a skill with ``gate`` may be listed on ``host``.

    ``os`` is a hard filter; ``always`` then admits the skill. Otherwise every
    ``requires.env`` variable must be set and non-blank in the gateway's
    environment, every ``requires.bins`` name must be an executable on its
    ``PATH`` and one ``requires.anyBins`` name at least. A ``requires.config``
    path always fails: it names an ``openclaw.json`` setting, and this gateway
    has no skills config and lacks most of the features such paths switch on
    (``browser.enabled``), so it cannot vouch for one. ``which`` memoises
    ``PATH`` lookups across one discovery.
    """
    if gate is None:
        return True
    if gate.os and host.platform not in gate.os:
        return False
    if gate.always:
        return True
    if any(not host.env.get(name, "").strip() for name in gate.env):
        return False
    if gate.config:
        return False
    seen = {} if which is None else which

    def found(name: str) -> bool:
        if name not in seen:
            seen[name] = _on_path(name, host.env.get("PATH", ""))
        return seen[name]

    if not all(found(name) for name in gate.bins):
        return False
    return not gate.any_bins or any(found(name) for name in gate.any_bins)


def _on_path(name: str, search_path: str) -> bool:
    """Whether ``name`` is an executable file in a ``PATH`` directory. A name with
    a slash is not a command name (shutil.which would try it against the
    gateway's working directory), so it is never found."""
    if not search_path or "/" in name or os.sep in name:
        return False
    return shutil.which(name, path=search_path) is not None


def load_skill(path: Path) -> Skill | None:
    """Read one SKILL.md; None when it is unreadable or has no description."""
    loaded = _load(path)
    return None if loaded is None else loaded[0]


def _load(path: Path) -> tuple[Skill, Gate | None] | None:
    """One SKILL.md's skill and gate; None when it is unreadable or has no description."""
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
    return Skill(name, description, path.absolute(), disabled), parse_gate(meta.get("metadata"))


def discover_skills(roots: Sequence[Path], host: Host | None = None) -> tuple[Skill, ...]:
    """The model-visible skills under ``roots`` that ``host`` (default: this
    process) can use, sorted by name. An earlier root wins a name clash even
    when its skill is then gated out, as in OpenClaw (names merge first, then
    skills are filtered). Blocking: call from a thread."""
    host = Host.current() if host is None else host
    found: dict[str, tuple[Skill, Gate | None]] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in _skill_files(root):
            loaded = _load(path)
            if loaded is None or loaded[0].name in found:
                continue
            found[loaded[0].name] = loaded
    which: dict[str, bool] = {}
    visible = [
        skill
        for skill, gate in found.values()
        if not skill.disable_model_invocation and is_eligible(gate, host, which)
    ]
    return tuple(sorted(visible, key=lambda s: s.name))[:MAX_SKILLS]
