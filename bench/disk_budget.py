"""What one disk-budget pass costs: CPU per file measured, per archive deleted.

``python -m bench.disk_budget [--files N] [--dir PATH]`` fills a sessions
directory with ``N`` archived transcripts of 600 bytes (one every 100 ms of
archive time), then runs :func:`openclaw.sessions.disk_budget.enforce_budget`
twice in this process: once under the budget (it only measures) and once with
a budget that makes it delete half. It prints one JSON line per pass. The
directory is a new temporary one (inside ``--dir`` when given, to measure
that filesystem) and is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

from openclaw.sessions.disk_budget import DiskBudget, enforce_budget
from openclaw.sessions.transcript import archive_suffix

ARCHIVE_BYTES = 600
START_MS = 1_765_000_000_000


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fill(directory: Path, files: int) -> None:
    """``files`` archives, 100 ms of archive time apart."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = b"x" * ARCHIVE_BYTES
    for n in range(files):
        name = f"{n:08x}-0000-4000-8000-000000000000.jsonl.deleted."
        (directory / (name + archive_suffix(START_MS + n * 100))).write_bytes(payload)


def run(directory: Path, files: int) -> list[dict[str, float | int | str]]:
    """Both passes over a filled ``directory``."""
    total = files * ARCHIVE_BYTES
    passes = [
        ("measure only", DiskBudget(total + 1, total)),
        ("delete half", DiskBudget(total // 2 + 1, total // 2)),
    ]
    results: list[dict[str, float | int | str]] = []
    for label, budget in passes:
        wall, cpu = time.perf_counter(), _cpu()
        result = enforce_budget(directory, budget)
        wall, cpu = time.perf_counter() - wall, _cpu() - cpu
        results.append(
            {
                "pass": label,
                "files": files,
                "removed": result.removed,
                "wall_s": round(wall, 3),
                "cpu_s": round(cpu, 3),
                "cpu_us_per_file": round(cpu / files * 1e6, 2),
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument(
        "--dir", default=None, help="the filesystem to measure on (default: the temp dir's)"
    )
    args = parser.parse_args(argv)
    # Always a fresh directory of our own, removed afterwards (never --dir itself).
    root = Path(tempfile.mkdtemp(prefix="openclaw-budget-", dir=args.dir))
    directory = root / "agents" / "main" / "sessions"
    try:
        fill(directory, args.files)
        for line in run(directory, args.files):
            print(json.dumps(line), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
