"""``openclaw setup``: the state directory and each agent's workspace, ready to use.

The baseline part of OpenClaw's setup, without its wizard: create the
directory the configuration and sessions live in, a starter config file when
there is none (loopback, a fresh random token, the offline demo model), and
every configured agent's workspace with the starter files (``AGENTS.md``,
``SOUL.md``, ``IDENTITY.md``, ``USER.md``, and ``BOOTSTRAP.md`` in a brand-new
one), never overwriting a file. It prints what it created. Running it again is
safe.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TextIO

from openclaw.agents.registry import AgentRegistry
from openclaw.agents.workspace import ensure_workspace
from openclaw.config.loader import resolve_config_path
from openclaw.config.model import Config
from openclaw.core.private_dirs import make_private_dirs

#: The config ``openclaw setup`` writes when there is none: a gateway on
#: loopback that asks for a token, with the OpenAI-compatible endpoints on
#: (what a first run is for), and the offline demo model.
STARTER_CONFIG = """\
// Written by `openclaw setup`; every key is in docs/configuration.md.
{{
  gateway: {{
    bind: "loopback",
    // Clients send it as "Authorization: Bearer <token>".
    auth: {{ mode: "token", token: "{token}" }},
    // The OpenAI-compatible API (off unless enabled, as in OpenClaw).
    http: {{
      endpoints: {{
        chatCompletions: {{ enabled: true }},
        responses: {{ enabled: true }},
      }},
    }},
  }},
  agents: {{
    defaults: {{ model: {{ primary: "demo/echo" }} }},
  }},
}}
"""


def write_starter_config(path: Path) -> bool:
    """Write :data:`STARTER_CONFIG` to ``path`` (0600: it holds the token) unless a
    file is there already; True when written."""
    make_private_dirs(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(STARTER_CONFIG.format(token=secrets.token_urlsafe(32)))
    return True


def ensure_config_file(config_path: str | None, out: TextIO, err: TextIO) -> bool:
    """Write the starter config where the config is looked for, when there is
    none (saying so); False when it cannot be written."""
    path, _explicit = resolve_config_path(config_path, os.environ)
    if path.exists():
        return True
    try:
        if write_starter_config(path):
            out.write(
                f"wrote {path}: loopback, /v1/chat/completions and /v1/responses on,"
                " the demo model; the token is its gateway.auth.token\n"
            )
    except OSError as e:
        err.write(f"openclaw setup: cannot write {path}: {e.strerror or e}\n")
        return False
    return True


def run_setup(config: Config, config_path: str | None, out: TextIO) -> int:
    """Create the directories and starter files; print each thing created."""
    path, _explicit = resolve_config_path(config_path, os.environ)
    for directory in (path.parent, config.state_dir):
        if not directory.exists():
            make_private_dirs(directory)
            out.write(f"created {directory}/\n")
    templates = not config.agents.defaults.skip_bootstrap
    for agent in AgentRegistry(config).agents:
        existed = agent.workspace.exists()
        written = ensure_workspace(agent.workspace, templates=templates)
        state = "exists" if existed else "created"
        out.write(f"workspace of agent {agent.id}: {agent.workspace}/ ({state})\n")
        for file in written:
            out.write(f"  wrote {file.name}\n")
    return 0
