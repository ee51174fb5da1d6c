"""The ``openclaw`` console script.

* :mod:`openclaw.cli.main`: argument parsing and the commands (``gateway run``,
  ``gateway call``, ``config validate``, ``agent``);
* :mod:`openclaw.cli.agent_command`: ``openclaw agent --local`` (a turn in this
  process, through the real runtime);
* :mod:`openclaw.cli.ws_client`: the WebSocket client behind ``gateway call``
  and remote ``agent``.
"""

from __future__ import annotations

from openclaw.cli.main import main

__all__ = ["main"]
