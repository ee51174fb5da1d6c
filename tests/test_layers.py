"""The lower layers load without the upper ones.

``pyproject.toml``'s import contract (run by ``make lint``) forbids upward
imports; this checks the consequence users feel, in a fresh interpreter:
importing the session store loads no model provider and no HTTP client.
"""

from __future__ import annotations

import json
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_after_importing(*modules: str) -> set[str]:
    """The names in ``sys.modules`` after a fresh interpreter imports ``modules``."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return set(json.loads(out.stdout))


class LayerTests(SynchronousTestCase):
    def test_sessions_load_no_provider_and_no_http_client(self) -> None:
        """``import openclaw.sessions`` (and the whole store) imports nothing from
        the agent runtime, no provider module and not ``twisted.web.client``."""
        loaded = loaded_after_importing(
            "openclaw.sessions",
            "openclaw.sessions.store",
            "openclaw.sessions.interface",
        )
        self.assertIn("openclaw.sessions.store", loaded)  # the probe did import it
        self.assertEqual(sorted(m for m in loaded if m.startswith("openclaw.agents")), [])
        self.assertNotIn("twisted.web.client", loaded)
        self.assertEqual(sorted(m for m in loaded if m.startswith("openclaw.gateway")), [])

    def test_config_and_core_load_nothing_above_them(self) -> None:
        """The config loader and the core values import neither sessions, agents
        nor the gateway."""
        loaded = loaded_after_importing(
            "openclaw.config", "openclaw.core.types", "openclaw.core.ids"
        )
        self.assertIn("openclaw.config.loader", loaded)
        above = ("openclaw.sessions", "openclaw.agents", "openclaw.gateway")
        self.assertEqual(sorted(m for m in loaded if m.startswith(above)), [])
