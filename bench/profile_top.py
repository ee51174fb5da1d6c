"""Print the top entries of a cProfile stats file (``BENCH_PROFILE=...``).

``python -m bench.profile_top /tmp/gw.prof [N]``: the N functions with the most
own time, then the N with the most cumulative time.
"""

from __future__ import annotations

import pstats
import sys


def main(argv: list[str] | None = None) -> None:
    """Print the hot spots."""
    args = sys.argv[1:] if argv is None else argv
    path = args[0]
    count = int(args[1]) if len(args) > 1 else 25
    stats = pstats.Stats(path, stream=sys.stdout)
    stats.strip_dirs()
    stats.sort_stats("tottime").print_stats(count)
    stats.sort_stats("cumulative").print_stats(count)


if __name__ == "__main__":
    main()
