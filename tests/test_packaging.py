"""Packaging: ``twistd --help`` lists ``openclaw`` after ``pip install .`` and after
``pip install -e .``, and the wheel ships the plugin without ``__init__.py`` files.

Each case builds into a fresh virtualenv whose dependencies come from this
test run's environment (a ``.pth`` line), offline and without build isolation.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

REPO = Path(__file__).resolve().parent.parent
_SHIPPED = ("pyproject.toml", "README.md", "openclaw", "twisted")


def _copy_project(target: Path) -> Path:
    """A copy of the files the build reads, so in-tree build output stays out of
    the working tree."""
    target.mkdir(parents=True)
    for name in _SHIPPED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)
    return target


def _venv_with_our_dependencies(path: Path) -> Path:
    """A venv without pip whose site-packages also sees this environment's."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


class PluginDiscoveryTests(SynchronousTestCase):
    def _install_and_list(self, editable: bool) -> tuple[str, Path]:
        base = Path(self.mktemp()).resolve()
        project = _copy_project(base / "project")
        python = _venv_with_our_dependencies(base / "venv")
        args = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
        args += ["--no-build-isolation", *(["-e"] if editable else []), str(project)]
        subprocess.run(args, check=True, cwd=base, capture_output=True)
        # Run from a directory that is not the project, so only the install counts.
        listing = subprocess.run(
            [
                str(python),
                "-c",
                "import sys; from twisted.scripts.twistd import run; run()",
                "--help",
            ],
            cwd=base,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return listing.stdout, base

    def test_regular_install_lists_the_plugin(self) -> None:
        """After ``pip install .`` twistd lists openclaw; no __init__.py is shipped
        in twisted/ or twisted/plugins/."""
        listing, base = self._install_and_list(editable=False)
        self.assertIn("openclaw", listing)
        site = next((base / "venv" / "lib").glob("python*/site-packages"))
        self.assertTrue((site / "twisted" / "plugins" / "openclaw_plugin.py").exists())
        record = next(site.glob("openclaw_twisted-*.dist-info")) / "RECORD"
        shipped = record.read_text()
        self.assertNotIn("twisted/__init__.py", shipped)
        self.assertNotIn("twisted/plugins/__init__.py", shipped)

    def test_editable_install_lists_the_plugin(self) -> None:
        """After ``pip install -e .`` twistd lists openclaw too (a plain path entry,
        not an import-hook finder that Twisted's plugin scan cannot see)."""
        listing, _ = self._install_and_list(editable=True)
        self.assertIn("openclaw", listing)
