"""``openclaw setup``: the state directory and each agent's workspace, ready to use.

The baseline part of OpenClaw's setup, without its wizard: create the
directory the configuration and sessions live in, and every configured
agent's workspace with the starter files (``AGENTS.md``, ``SOUL.md``,
``IDENTITY.md``, ``USER.md``, and ``BOOTSTRAP.md`` in a brand-new one), never
overwriting a file. It prints what it created. Running it again is safe.
"""

from __future__ import annotations

import os
from typing import TextIO

from openclaw.agents.registry import AgentRegistry
from openclaw.agents.workspace import ensure_workspace
from openclaw.config.loader import resolve_config_path
from openclaw.config.model import Config
from openclaw.core.private_dirs import make_private_dirs


def run_setup(config: Config, config_path: str | None, out: TextIO) -> int:
    """Create the directories and starter files; print each thing created."""
    path, _explicit = resolve_config_path(config_path, os.environ)
    for directory in (path.parent, config.state_dir):
        if not directory.exists():
            make_private_dirs(directory)
            out.write(f"created {directory}/\n")
    if not path.exists():
        out.write(f"no config file yet: write {path} (see docs/configuration.md)\n")
    templates = not config.agents.defaults.skip_bootstrap
    for agent in AgentRegistry(config).agents:
        existed = agent.workspace.exists()
        written = ensure_workspace(agent.workspace, templates=templates)
        state = "exists" if existed else "created"
        out.write(f"workspace of agent {agent.id}: {agent.workspace}/ ({state})\n")
        for file in written:
            out.write(f"  wrote {file.name}\n")
    return 0
