"""Packaging: ``twistd --help`` lists ``openclaw`` after ``pip install .`` and after
``pip install -e .``, the wheel ships the plugin without ``__init__.py`` files, and a
wheel built with ``python -m build`` works on its own in a fresh virtualenv.

Each case builds into a fresh virtualenv whose dependencies come from this
test run's environment (a ``.pth`` line), offline and without build isolation.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
import zipfile
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class WheelTests(SynchronousTestCase):
    """``python -m build`` makes an sdist and a wheel, and the wheel works on its
    own: installed into a fresh virtualenv outside the checkout, ``openclaw
    --version`` runs and ``twistd -n openclaw`` serves ``/healthz`` with the
    sample config shipped inside the wheel. The wheel is built once per run."""

    built: Path | None = None

    @classmethod
    def setUpClass(cls) -> None:
        base = Path(tempfile.mkdtemp(prefix="openclaw-wheel-")).resolve()
        project = _copy_project(base / "project")
        subprocess.run(
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(base / "dist")],
            cwd=project,
            check=True,
            capture_output=True,
            timeout=300,
        )
        cls.built = base

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.built is not None:
            shutil.rmtree(cls.built, ignore_errors=True)

    def _dist(self, pattern: str) -> Path:
        assert self.built is not None
        (found,) = (self.built / "dist").glob(pattern)
        return found

    def test_build_makes_an_sdist_and_a_wheel_with_the_plugin_and_samples(self) -> None:
        """Both artefacts exist; the wheel holds the plugin (no twisted/__init__.py)
        and the sample configs, identical to conf/."""
        self._dist("openclaw_twisted-*.tar.gz")
        wheel = self._dist("openclaw_twisted-*-py3-none-any.whl")
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            self.assertIn("twisted/plugins/openclaw_plugin.py", names)
            self.assertNotIn("twisted/__init__.py", names)
            for sample in ("openclaw.json5", "openclaw.example.json5"):
                shipped = archive.read(f"openclaw/examples/{sample}")
                self.assertEqual(shipped, (REPO / "conf" / sample).read_bytes(), sample)

    def test_wheel_installed_alone_runs_the_cli_and_the_gateway(self) -> None:
        """In a fresh venv outside the checkout: `openclaw --version` prints the
        version, `twistd -n openclaw` with the packaged sample config answers
        /healthz on loopback."""
        base = Path(self.mktemp()).resolve()
        base.mkdir()
        python = _venv_with_our_dependencies(base / "venv")
        wheel = self._dist("openclaw_twisted-*-py3-none-any.whl")
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
            check=True,
            cwd=base,
            capture_output=True,
            timeout=120,
        )
        version = subprocess.run(
            [str(base / "venv" / "bin" / "openclaw"), "--version"],
            cwd=base,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(version.returncode, 0, version.stderr)
        self.assertIn("openclaw-twisted", version.stdout)
        sample = subprocess.run(
            [
                str(python),
                "-c",
                "import openclaw, pathlib; print(pathlib.Path(openclaw.__file__).parent)",
            ],
            cwd=base,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        config = Path(sample) / "examples" / "openclaw.json5"
        self.assertTrue(
            str(config).startswith(str(base)), "must come from the venv, not the checkout"
        )
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        env |= {"HOME": str(base), "OPENCLAW_STATE_DIR": str(base / "state")}
        gateway = subprocess.Popen(
            [str(python), "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "openclaw", "--config", str(config), "--port", str(port)],
            cwd=base,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        self.addCleanup(_stop, gateway)
        assert gateway.stdout is not None
        deadline = time.monotonic() + 60
        for line in gateway.stdout:
            if "listening on" in line or time.monotonic() > deadline:
                break
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            self.assertEqual(json.loads(answer.read()), {"ok": True, "status": "live"})


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
