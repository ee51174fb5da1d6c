"""Durable ``allow-always`` exec approvals: OpenClaw's approvals document.

When an operator answers an approval with ``allow-always``, OpenClaw saves a
generated entry in the agent's allowlist of its approvals document, bound to
the exact command and the working directory it was approved in (and here
also to the model's ``env`` overrides, names and values); later runs
of that command there do not ask again (unless the effective ``ask`` is
``always``). This module keeps that document as JSON at
``<stateDir>/exec-approvals.json``, in OpenClaw's shape::

    {"version": 1, "agents": {"main": {"allowlist": [
        {"id": "...", "pattern": "ls", "argPattern": "sha256:argv:<hex>",
         "source": "allow-always", "lastUsedAt": 1737150000000}]}}}

``argPattern`` is a SHA-256 of the working directory, the command text and
any ``env`` overrides, so
the file never holds the command itself; only generated entries
(``source: "allow-always"``) are matched here, and deleting an entry revokes
it. Other keys of the document are kept as they are when an entry is added.

The file is tiny and read or written only when a command needs approval, so
it is done inline (stat first; re-read only when the file changed), written
atomically with mode 0600.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.logger import Logger

from openclaw.core.private_dirs import make_private_dirs

log = Logger()

#: Where the document lives under the state directory.
APPROVALS_FILENAME = "exec-approvals.json"
_PREFIX = "sha256:argv:"


def fingerprint(command: str, cwd: str, env: Mapping[str, str] | None = None) -> str:
    """The ``argPattern`` binding one command to one working directory and the
    model's ``env`` overrides (names and values): the same command with other
    overrides is another command. Without overrides the digest is the one
    grants had before overrides were bound, so those grants still hold."""
    bound: list[Any] = [cwd, command]
    if env:
        bound.append(sorted(env.items()))
    digest = hashlib.sha256(json.dumps(bound).encode("utf-8")).hexdigest()
    return _PREFIX + digest


def _program(command: str) -> str:
    """The command's first word (the entry's informational ``pattern``)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return words[0] if words else command.strip()[:200]


class ExecGrants:
    """The ``allow-always`` entries of one approvals document."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._granted: dict[str, frozenset[str]] = {}
        #: Grants this process could not save: they last until it exits.
        self._unsaved: set[tuple[str, str]] = set()

    def allows(
        self, agent_id: str, command: str, cwd: str, env: Mapping[str, str] | None = None
    ) -> bool:
        """Whether ``agent_id`` has an ``allow-always`` grant for ``command`` in
        ``cwd`` with these ``env`` overrides."""
        self._refresh()
        key = fingerprint(command, cwd, env)
        return key in self._granted.get(agent_id, frozenset()) or (agent_id, key) in self._unsaved

    def remember(
        self,
        agent_id: str,
        command: str,
        cwd: str,
        now_ms: int,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Add a grant (kept when the file cannot be written: the answer still
        applies to the command waiting for it)."""
        document = self._read()
        agents = document.setdefault("agents", {})
        if not isinstance(agents, dict):
            agents = document["agents"] = {}
        agent = agents.setdefault(agent_id, {})
        if not isinstance(agent, dict):
            agent = agents[agent_id] = {}
        allowlist = agent.setdefault("allowlist", [])
        if not isinstance(allowlist, list):
            allowlist = agent["allowlist"] = []
        key = fingerprint(command, cwd, env)
        if not any(isinstance(e, dict) and e.get("argPattern") == key for e in allowlist):
            allowlist.append(
                {
                    "id": str(uuid.uuid4()).upper(),
                    "pattern": _program(command),
                    "argPattern": key,
                    "source": "allow-always",
                    "lastUsedAt": now_ms,
                }
            )
        document.setdefault("version", 1)
        try:
            self._write(document)
        except OSError as e:
            log.warn(
                "could not save the allow-always approval to {path}: {why}",
                path=str(self.path),
                why=e.strerror or str(e),
            )
            self._unsaved.add((agent_id, key))
        self._seen = None

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            self._seen, self._granted = None, {}
            return
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen == self._seen:
            return
        self._seen = seen
        self._granted = _grants(self._read())

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as e:
            log.warn("cannot read {path}: {why}", path=str(self.path), why=e.strerror or str(e))
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            log.warn("ignoring {path}: not valid JSON", path=str(self.path))
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, document: dict[str, Any]) -> None:
        make_private_dirs(self.path.parent)
        temp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(document, f, indent=2)
                f.write("\n")
            os.replace(temp, self.path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise


def _grants(document: dict[str, Any]) -> dict[str, frozenset[str]]:
    agents = document.get("agents")
    found: dict[str, frozenset[str]] = {}
    if not isinstance(agents, dict):
        return found
    for agent_id, agent in agents.items():
        allowlist = agent.get("allowlist") if isinstance(agent, dict) else None
        if not isinstance(allowlist, list):
            continue
        found[str(agent_id)] = frozenset(
            e["argPattern"]
            for e in allowlist
            if isinstance(e, dict)
            and e.get("source") == "allow-always"
            and isinstance(e.get("argPattern"), str)
            and e["argPattern"].startswith(_PREFIX)
        )
    return found
