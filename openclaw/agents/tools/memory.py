"""``memory_search`` and ``memory_get`` over the workspace's ``MEMORY.md`` and ``memory/*.md``.

Search is lexical (OpenClaw's default is embeddings; this gateway has none):
files are cut into overlapping windows of ``WINDOW`` lines; each window scores
the idf-weighted share of distinct query terms it contains (terms are Unicode
words of two or more characters, lower-cased), plus a bonus when the whole
query appears as a phrase, scaled to 0..1. Windows below ``minScore`` are
dropped; the best ``maxResults`` come back with path, line range and snippet.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from twisted.internet.defer import Deferred

from openclaw.agents.tools._common import BlockingRunner, guarded, opt_int, req_str
from openclaw.agents.tools._paths import confine, display
from openclaw.agents.tools.base import JSONSchema, ToolArgumentError, ToolContext, ToolResult

WINDOW = 8
STEP = 4
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_FILES = 2000
SNIPPET_CHARS = 700
DEFAULT_MAX_RESULTS = 6
DEFAULT_MIN_SCORE = 0.2
_WORD = re.compile(r"\w{2,}", re.UNICODE)
_ROOT_FILES = ("MEMORY.md", "memory.md")


def _terms(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def memory_files(workspace: str) -> Iterator[str]:
    """Real paths of MEMORY.md and memory/**/*.md that stay inside the workspace."""
    root = os.path.realpath(workspace)
    seen: set[str] = set()
    candidates: list[str] = [os.path.join(root, name) for name in _ROOT_FILES]
    memdir = os.path.join(root, "memory")
    if os.path.isdir(memdir):
        for dirpath, dirnames, filenames in os.walk(memdir):
            dirnames.sort()
            candidates.extend(
                os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".md")
            )
    for path in candidates[: MAX_FILES + len(_ROOT_FILES)]:
        real = os.path.realpath(path)
        if real in seen or not real.startswith(root + os.sep) or not os.path.isfile(real):
            continue
        seen.add(real)
        yield real


def _read_lines(path: str) -> list[str]:
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES)
    return data.decode("utf-8", errors="replace").splitlines()


def search(workspace: str, query: str, max_results: int, min_score: float) -> list[dict[str, Any]]:
    """The scored hits for ``query`` (see the module docstring)."""
    wanted = list(dict.fromkeys(_terms(query)))
    if not wanted:
        return []
    windows: list[tuple[str, int, int, list[str], set[str]]] = []
    for path in memory_files(workspace):
        lines = _read_lines(path)
        for start in range(0, max(len(lines), 1), STEP):
            chunk = lines[start : start + WINDOW]
            if not chunk:
                break
            windows.append(
                (path, start + 1, start + len(chunk), chunk, set(_terms("\n".join(chunk))))
            )
            if start + WINDOW >= len(lines):
                break
    if not windows:
        return []
    df = {t: sum(1 for w in windows if t in w[4]) for t in wanted}
    idf = {t: math.log(1 + len(windows) / (1 + df[t])) + 0.1 for t in wanted}
    total = sum(idf.values())
    phrase = " ".join(wanted)
    hits: list[dict[str, Any]] = []
    for path, first, last, chunk, terms in windows:
        covered = sum(idf[t] for t in wanted if t in terms)
        if not covered:
            continue
        text = "\n".join(chunk)
        bonus = 1.0 if len(wanted) > 1 and phrase in " ".join(_terms(text)) else 0.0
        score = round(
            (covered / total + 0.25 * bonus) / 1.25 if len(wanted) > 1 else covered / total, 4
        )
        if score >= min_score:
            hits.append(
                {
                    "path": display(workspace, path),
                    "startLine": first,
                    "endLine": last,
                    "score": score,
                    "snippet": text[:SNIPPET_CHARS],
                    "source": "memory",
                }
            )
    hits.sort(key=lambda h: (-h["score"], h["path"], h["startLine"]))
    # windows overlap: keep the best window per overlapping region
    chosen: list[dict[str, Any]] = []
    for hit in hits:
        if any(
            c["path"] == hit["path"]
            and c["startLine"] <= hit["endLine"]
            and hit["startLine"] <= c["endLine"]
            for c in chosen
        ):
            continue
        chosen.append(hit)
        if len(chosen) >= max_results:
            break
    return chosen


class MemorySearchTool:
    """``memory_search``: lexical search over the agent's memory files."""

    name = "memory_search"
    description = (
        "Search MEMORY.md and memory/*.md for notes relevant to a query; returns "
        "snippets with file paths and line ranges (read more with memory_get)."
    )
    parameters: JSONSchema = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to look for"},
            "maxResults": {"type": "number", "description": "Maximum hits (default 6)"},
            "minScore": {"type": "number", "description": "Minimum score 0..1 (default 0.2)"},
        },
        "required": ["query"],
    }

    def __init__(self, run_blocking: BlockingRunner) -> None:
        self._blocking = run_blocking

    def run(self, arguments: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        """Validate, then search on the blocking runner."""
        return guarded(self.name, self._run, arguments, context)

    def _run(self, args: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        query = req_str(args, "query", max_chars=2000)
        if not query.strip():
            raise ToolArgumentError("query must not be empty")
        max_results = opt_int(args, "maxResults", minimum=1, maximum=50) or DEFAULT_MAX_RESULTS
        min_score = args.get("minScore", DEFAULT_MIN_SCORE)
        if isinstance(min_score, bool) or not isinstance(min_score, int | float):
            raise ToolArgumentError("minScore must be a number")
        if not 0 <= min_score <= 1:
            raise ToolArgumentError("minScore must be between 0 and 1")
        workspace = context.workspace.path

        def work() -> ToolResult:
            results = search(workspace, query, max_results, float(min_score))
            payload = {"results": results, "provider": "lexical", "mode": "keyword"}
            return ToolResult(content=json.dumps(payload, ensure_ascii=False), details=payload)

        return self._blocking(work)


class MemoryGetTool:
    """``memory_get``: read a memory file, or a line range of it."""

    name = "memory_get"
    description = "Read MEMORY.md or a file under memory/ (optionally from a line, for N lines)."
    parameters: JSONSchema = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "MEMORY.md or memory/<file>.md"},
            "from": {"type": "number", "description": "First line (1-indexed)"},
            "lines": {"type": "number", "description": "Number of lines"},
        },
        "required": ["path"],
    }

    def __init__(self, run_blocking: BlockingRunner, max_chars: int = 50_000) -> None:
        self._blocking = run_blocking
        self._max_chars = max_chars

    def run(self, arguments: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        """Validate, then read on the blocking runner."""
        return guarded(self.name, self._run, arguments, context)

    def _run(self, args: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        raw = req_str(args, "path", max_chars=4096)
        first = opt_int(args, "from", minimum=1) or 1
        count = opt_int(args, "lines", minimum=1)
        workspace = context.workspace.path

        def work() -> ToolResult:
            path = confine(workspace, raw)
            shown = display(workspace, path)
            if shown not in _ROOT_FILES and not (
                shown.startswith("memory" + os.sep) and shown.endswith(".md")
            ):
                raise ToolArgumentError(
                    f"memory_get read error: {raw} is not a memory file (MEMORY.md or memory/*.md)"
                )
            if not os.path.isfile(path):
                raise ToolArgumentError(f"memory_get read error: {shown} not found")
            lines = _read_lines(path)
            selected = lines[first - 1 : (first - 1 + count) if count else None]
            text = "\n".join(selected)[: self._max_chars]
            payload = {"path": shown, "from": first, "lines": len(selected), "text": text}
            return ToolResult(content=json.dumps(payload, ensure_ascii=False), details=payload)

        return self._blocking(work)
