"""``read``, ``write`` and ``edit``: workspace-confined file tools.

File I/O runs through an injected :class:`BlockingRunner` (a thread pool in the
gateway) so a slow disk never stalls the reactor. Writes are atomic: a temp
file in the same directory, fsync'd, then renamed over the target.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred

from openclaw.agents.tools._common import (
    BlockingRunner,
    guarded,
    opt_int,
    opt_str,
    req_str,
)
from openclaw.agents.tools._fuzzy import Normalised, normalise
from openclaw.agents.tools._paths import confine, display, refuse_git_dir
from openclaw.agents.tools.base import JSONSchema, ToolArgumentError, ToolContext, ToolResult
from openclaw.agents.tools.limits import DEFAULT_FILE_LIMITS, FileLimits
from openclaw.core.redaction import redact_env_file

#: ``.env``, ``.env.local``, ``prod.env``: files whose secrets ``read`` masks
#: (OpenClaw's env-file path pattern).
_ENV_FILE = re.compile(r"(?:^|[/\\])(?:\.env(?:\.[^/\\]+)?|[^/\\]+\.env)$", re.IGNORECASE)


def is_env_file(*paths: str) -> bool:
    """Whether any of ``paths`` (as asked for, as resolved) names an env file."""
    return any(_ENV_FILE.search(path) for path in paths)


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` via temp file + rename (parents created)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    fd, tmp = tempfile.mkstemp(prefix=".openclaw-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _decode(data: bytes, shown: str) -> str:
    if b"\x00" in data[:8192]:
        raise ToolArgumentError(f"{shown} looks like a binary file; read refuses binary content")
    return data.decode("utf-8", errors="replace")


def decode_for_edit(data: bytes) -> str:
    """A file's text for a tool that writes it back: bytes that are not UTF-8
    (a Latin-1 file) come back unchanged through :func:`encode_edited`
    instead of being replaced by U+FFFD."""
    return data.decode("utf-8", errors="surrogateescape")


def encode_edited(text: str, shown: str) -> bytes:
    """The bytes of an edited text (see :func:`decode_for_edit`)."""
    try:
        return text.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:
        raise ToolArgumentError(f"the new text for {shown} has a lone surrogate") from None


_BREAK = re.compile(r"\r\n|\r|\n")


def to_lf(text: str) -> str:
    """``text`` with CRLF and lone CR line breaks turned into LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _line_ending_at(text: str, index: int) -> str:
    """The ending of the line holding ``text[index]`` (of the line before it
    when that line has none; LF for a file without line breaks)."""
    found = _BREAK.search(text, index)
    if found:
        return found.group()
    last = max(text.rfind("\n", 0, index), text.rfind("\r", 0, index))
    if last < 0:
        return "\n"
    return "\r\n" if text[last] == "\n" and text[last - 1 : last] == "\r" else text[last]


def replace_in_lf(text: str, spans: Sequence[tuple[int, int, str]]) -> str:
    """``text`` with each ``(start, end, new)`` replaced, where ``start``/``end``
    index :func:`to_lf` of ``text`` and ``new`` is LF text.

    The model sees (and matches) LF text; the file keeps the line endings it
    had everywhere else, and the line breaks of ``new`` take the ending of the
    line the replacement starts on, so a CRLF file stays CRLF.
    """
    # A CRLF is one character in the LF text: an LF index moves right by the
    # number of CRLFs before it.
    shifts = [m.start() - k for k, m in enumerate(re.finditer("\r\n", text))]

    def original(index: int) -> int:
        return index + bisect_left(shifts, index)

    out: list[str] = []
    done = 0
    for start, end, new in sorted(spans):
        begin = original(start)
        out.append(text[done:begin])
        ending = _line_ending_at(text, begin)
        out.append(new if ending == "\n" else new.replace("\n", ending))
        done = original(end)
    out.append(text[done:])
    return "".join(out)


class FileTool:
    """What the workspace file tools share: the blocking runner their disk work
    runs on, the size caps, and arguments checked by :func:`guarded` (a bad
    argument or an ``OSError`` becomes an error result, not a failed run)."""

    name = ""

    def __init__(
        self,
        run_blocking: BlockingRunner,
        limits: FileLimits = DEFAULT_FILE_LIMITS,
        *,
        protect_git: bool = False,
    ) -> None:
        """
        :param protect_git: refuse changes inside any ``.git`` of the
            workspace (set when exec is not ``full``, see ``refuse_git_dir``).
        """
        self._blocking = run_blocking
        self._limits = limits
        self._protect_git = protect_git

    def _writable(self, workspace: str, path: str) -> str:
        """``path`` (resolved), refused when it is in a protected ``.git``."""
        if self._protect_git:
            refuse_git_dir(workspace, path)
        return path

    def run(self, arguments: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        """Validate, then do the work (the tool's ``_run``)."""
        return guarded(self.name, self._run, arguments, context)

    def _run(self, args: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        raise NotImplementedError


class ReadTool(FileTool):
    """``read``: a text file's lines, paged with ``offset``/``limit``.

    CRLF line breaks are shown as LF (as OpenClaw's read does): the model
    copies what it read into ``edit``, which matches LF text. An env file's
    secrets are masked, as OpenClaw's read does, so they do not reach the
    provider and the transcript.
    """

    name = "read"
    description = (
        "Read the contents of a file in the workspace. Output is capped at "
        "2000 lines or 50KB; use offset/limit to page through large files."
    )
    parameters: JSONSchema = {
        "type": "object",
        "properties": {
            "path": {
                "type": "string",
                "description": "Path to the file (relative to the workspace)",
            },
            "offset": {"type": "number", "description": "Line number to start from (1-indexed)"},
            "limit": {"type": "number", "description": "Maximum number of lines to read"},
        },
        "required": ["path"],
    }

    def _run(self, args: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        raw = req_str(args, "path", "file_path")
        offset = opt_int(args, "offset", minimum=1) or 1
        limit = opt_int(args, "limit", minimum=1)
        workspace = context.workspace.path
        limits = self._limits

        def work() -> ToolResult:
            path = confine(workspace, raw)
            shown = display(workspace, path)
            if not os.path.isfile(path):
                raise ToolArgumentError(f"File not found: {shown}")
            max_lines = min(limit or limits.read_max_lines, limits.read_max_lines)
            cap = limits.read_max_bytes
            out: list[str] = []
            size = 0
            total = 0
            truncated_by_bytes = False
            # A line longer than the cap is shown cut (never read whole: a huge
            # file without newlines must not be loaded into memory).
            long_line, long_bytes = 0, 0
            in_line = False
            with open(path, "rb") as f:
                head = f.read(8192)
                _decode(head, shown)
                f.seek(0)
                while piece := f.readline(cap + 1):
                    continuing, in_line = in_line, not piece.endswith(b"\n")
                    if continuing:
                        if long_line == total:
                            long_bytes += len(piece)
                        continue
                    total += 1
                    if total < offset or len(out) >= max_lines or truncated_by_bytes:
                        continue
                    if size + len(piece) > cap:
                        truncated_by_bytes = True
                        if not out:
                            out.append(piece[:cap].decode("utf-8", errors="replace"))
                            long_line, long_bytes = total, len(piece)
                        continue
                    size += len(piece)
                    if piece.endswith(b"\r\n"):
                        piece = piece[:-2] + b"\n"
                    out.append(piece.decode("utf-8", errors="replace"))
            if offset > max(total, 1):
                raise ToolArgumentError(
                    f"offset {offset} is beyond the end of file ({total} lines)"
                )
            text = "".join(out)
            if is_env_file(raw, path):
                text = redact_env_file(text)
            last = offset + len(out) - 1
            if long_line:
                text += (
                    f"\n\n[Line {long_line} is {long_bytes} bytes, more than the {cap} byte "
                    f"read limit: showing its first {cap} bytes. Use exec (for example "
                    f"head -c or cut -c) to see the rest.]"
                )
            if last < total:
                text += (
                    f"\n\n[Showing lines {offset}-{last} of {total}. "
                    f"Use offset={last + 1} to continue.]"
                )
            return ToolResult(
                content=text,
                details={"path": shown, "startLine": offset, "endLine": last, "totalLines": total},
            )

        return self._blocking(work)


class WriteTool(FileTool):
    """``write``: create or overwrite a file (parent directories created)."""

    name = "write"
    description = (
        "Write content to a file in the workspace. Creates the file if it does not "
        "exist, overwrites it if it does, and creates parent directories."
    )
    parameters: JSONSchema = {
        "type": "object",
        "properties": {
            "path": {
                "type": "string",
                "description": "Path to the file (relative to the workspace)",
            },
            "content": {"type": "string", "description": "Content to write"},
        },
        "required": ["path", "content"],
    }

    def _run(self, args: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        raw = req_str(args, "path", "file_path")
        content = req_str(args, "content", max_chars=self._limits.write_max_bytes)
        data = content.encode("utf-8")
        if len(data) > self._limits.write_max_bytes:
            raise ToolArgumentError(f"content is larger than {self._limits.write_max_bytes} bytes")
        workspace = context.workspace.path

        def work() -> ToolResult:
            # A hard-linked target is replaced (a new file under this name),
            # never written through, so its other names keep their content.
            path = self._writable(workspace, confine(workspace, raw, allow_hardlink=True))
            if os.path.isdir(path):
                raise ToolArgumentError(f"{display(workspace, path)} is a directory")
            atomic_write(path, data)
            # Parents created meanwhile must not have escaped.
            confine(workspace, path, allow_hardlink=True)
            shown = display(workspace, path)
            return ToolResult(
                content=f"Successfully wrote {len(data)} bytes to {shown}",
                details={"path": shown, "bytes": len(data)},
            )

        return self._blocking(work)


@frozen
class Replacement:
    """One ``{oldText, newText}`` pair of an ``edit`` call."""

    old: str
    new: str


def _edit_item(item: object, index: int, cap: int) -> Replacement:
    if not isinstance(item, Mapping):
        raise ToolArgumentError(f"edits[{index}] must be an object with oldText and newText")
    try:
        old = req_str(item, "oldText", "old_string", max_chars=cap)
        new = req_str(item, "newText", "new_string", max_chars=cap)
    except ToolArgumentError as e:
        raise ToolArgumentError(f"edits[{index}]: {e}") from None
    return Replacement(old, new)


def edit_arguments(args: Mapping[str, Any], cap: int) -> list[Replacement]:
    """The replacements an ``edit`` call asks for: ``edits[]`` (OpenClaw's
    schema; a JSON string holding the array is accepted too), plus a legacy
    top-level ``oldText``/``newText`` pair unless ``edits`` already has it."""
    raw = args.get("edits")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ToolArgumentError("edits must be an array of {oldText, newText}") from None
    if raw is not None and not isinstance(raw, list):
        raise ToolArgumentError("edits must be an array of {oldText, newText}")
    edits = [_edit_item(item, i, cap) for i, item in enumerate(raw or [])]
    old = opt_str(args, "oldText", "old_string", max_chars=cap)
    new = opt_str(args, "newText", "new_string", max_chars=cap)
    if old is not None or new is not None:
        if old is None or new is None:
            missing = "oldText" if old is None else "newText"
            raise ToolArgumentError(f"missing required parameter: {missing}")
        if Replacement(old, new) not in edits:
            edits.append(Replacement(old, new))
    if not edits:
        raise ToolArgumentError(
            "missing required parameter: edits (at least one {oldText, newText} replacement)"
        )
    for i, edit in enumerate(edits):
        if not edit.old:
            label = "oldText" if len(edits) == 1 else f"edits[{i}].oldText"
            raise ToolArgumentError(f"{label} must not be empty")
    return edits


def _locate(lf: str, want: str, loose: Normalised | None) -> tuple[int, int, int, bool]:
    """Where ``want`` is in ``lf``: ``(start, end, matches, clean)``.

    The exact text first; when it is missing, the :func:`normalise` form of
    both (``loose``), and the matched span mapped back to ``lf``. ``matches``
    counts the level that decided; ``clean`` is false when a loose match has
    no clean edge in ``lf``.
    """
    start = lf.find(want)
    if start >= 0 or loose is None:
        return start, start + len(want), lf.count(want), True
    key = normalise(want)
    found = loose.text.find(key) if key else -1
    if found < 0:
        return -1, -1, 0, True
    span = loose.source_span(found, found + len(key))
    count = loose.text.count(key)
    if span is None:
        return -1, -1, count, False
    return span[0], span[1], count, True


def apply_edits(text: str, edits: Sequence[Replacement], shown: str) -> tuple[str, int]:
    """``text`` with every edit applied, and the first changed line.

    As in OpenClaw, every ``oldText`` is looked up in the original (LF) text,
    must occur there exactly once, and no two may overlap; so the edits do not
    depend on one another's order or result. An ``oldText`` that is not there
    exactly is looked up loosely (:func:`normalise`: Unicode compatibility
    forms, trailing spaces, typographic quotes, dashes and spaces), as
    OpenClaw does, and the file's own text at that place is what is replaced.
    """
    lf = to_lf(text)
    single = len(edits) == 1
    wants = [to_lf(edit.old) for edit in edits]
    loose = Normalised(lf) if any(want not in lf for want in wants) else None
    spans: list[tuple[int, int, int]] = []
    for i, want in enumerate(wants):
        start, end, count, clean = _locate(lf, want, loose)
        what = "the text" if single else f"edits[{i}]"
        if count > 1:
            raise ToolArgumentError(
                f"Found {count} occurrences of {what} in {shown}. Each old text must occur "
                "once; add surrounding context to make it unique."
            )
        if not clean:
            raise ToolArgumentError(
                f"The loose match for {what} in {shown} begins or ends inside a character "
                "that Unicode normalisation or trailing-space trimming changed. Copy the "
                "exact text from the file, or choose a span whose edges are plain text."
            )
        if start < 0:
            raise ToolArgumentError(
                f"Could not find {what} in {shown}. The old text must match exactly, "
                "including all whitespace and newlines."
            )
        spans.append((start, end, i))
    spans.sort()
    for (_, end, a), (start, _, b) in pairwise(spans):
        if end > start:
            raise ToolArgumentError(
                f"edits[{a}] and edits[{b}] overlap in {shown}. Merge them into one edit "
                "or make them target separate regions."
            )
    # An edit whose new text is its old text changes nothing, even where it
    # matched loosely (OpenClaw sets such edits aside after checking them).
    updated = replace_in_lf(
        text,
        [(a, b, to_lf(edits[i].new)) for a, b, i in spans if wants[i] != to_lf(edits[i].new)],
    )
    return updated, lf[: spans[0][0]].count("\n") + 1


class EditTool(FileTool):
    """``edit``: exact, unique replacements in one file (``edits[]``).

    Matching is on LF text (what ``read`` shows), loosely when the exact text
    is missing (see :func:`apply_edits`); the file keeps its own line endings
    (see :func:`replace_in_lf`).
    """

    name = "edit"
    description = (
        "Edit one file by replacing exact text. Each edits[].oldText must match the "
        "original file exactly (including whitespace) and occur exactly once; edits "
        "must not overlap. Put several separate changes to a file in one call."
    )
    parameters: JSONSchema = {
        "type": "object",
        "properties": {
            "path": {
                "type": "string",
                "description": "Path to the file (relative to the workspace)",
            },
            "edits": {
                "type": "array",
                "description": (
                    "Replacements, each matched against the original file; they must not "
                    "overlap (merge nearby changes into one)."
                ),
                "items": {
                    "type": "object",
                    "properties": {
                        "oldText": {
                            "type": "string",
                            "description": "Exact text to replace; unique in the file",
                        },
                        "newText": {"type": "string", "description": "Replacement text"},
                    },
                    "required": ["oldText", "newText"],
                },
            },
        },
        "required": ["path", "edits"],
    }

    def _run(self, args: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        raw = req_str(args, "path", "file_path")
        cap = self._limits.edit_max_bytes
        edits = edit_arguments(args, cap)
        workspace = context.workspace.path

        def work() -> ToolResult:
            path = self._writable(workspace, confine(workspace, raw))
            shown = display(workspace, path)
            if not os.path.isfile(path):
                raise ToolArgumentError(f"File not found: {shown}")
            if os.path.getsize(path) > cap:
                raise ToolArgumentError(f"{shown} is larger than {cap} bytes; edit refuses it")
            with open(path, "rb") as f:
                data = f.read()
            _decode(data[:8192], shown)  # refuses binary files
            text = decode_for_edit(data)
            updated, line = apply_edits(text, edits, shown)
            if updated == text:
                return ToolResult(
                    content=f"No changes made to {shown}: the new text is the same as the old.",
                    details={"path": shown, "changed": False},
                )
            encoded = encode_edited(updated, shown)
            if len(encoded) > self._limits.write_max_bytes:
                raise ToolArgumentError(
                    f"the edited {shown} would be larger than {self._limits.write_max_bytes} bytes"
                )
            atomic_write(path, encoded)
            what = "text" if len(edits) == 1 else f"{len(edits)} blocks of text"
            return ToolResult(
                content=f"Successfully replaced {what} in {shown}.",
                details={"path": shown, "line": line, "edits": len(edits), "changed": True},
            )

        return self._blocking(work)
