"""Every package under ``openclaw/`` ships in the wheel.

``pyproject.toml`` lists the packages explicitly (the editable install must
stay a plain path entry for Twisted's plugin finder); a package added to the
tree but not to the list would be missing from ``pip install .``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent


class PackageListTests(SynchronousTestCase):
    def test_every_package_is_listed(self) -> None:
        """The ``packages`` list names every directory of ``openclaw`` that has an
        ``__init__.py``; anything else it names (besides the Twisted plugin
        namespace) is an existing data-only directory (no Python in it)."""
        listed = set(
            tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
        )
        on_disk = {
            ".".join(init.parent.relative_to(ROOT).parts)
            for init in (ROOT / "openclaw").rglob("__init__.py")
        }
        self.assertEqual(sorted(on_disk - listed), [])
        for name in sorted(listed - on_disk - {"twisted.plugins"}):
            directory = ROOT.joinpath(*name.split("."))
            self.assertTrue(directory.is_dir(), f"{name} is listed but does not exist")
            self.assertEqual(list(directory.glob("*.py")), [], f"{name} has Python but no __init__")
