"""``apply_patch``: multi-file edits in OpenClaw's patch format, workspace-confined.

Every path is confined and every hunk applied in memory first; only when the
whole patch applies are files written (atomically, one by one), so a bad hunk
leaves the workspace untouched.

Aliases follow OpenClaw's rules: an update may reach its file through symlinks
that stay inside the workspace; an added file or a move to a new path may not
go through a symlinked directory; a deleted symlink is removed itself, never
its target; a move that resolves to the file being updated updates it in place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred

from openclaw.agents.tools._common import req_str
from openclaw.agents.tools._patch import PatchError, apply_update, parse
from openclaw.agents.tools._paths import confine, confine_link, confine_new, display
from openclaw.agents.tools.base import JSONSchema, ToolArgumentError, ToolContext, ToolResult
from openclaw.agents.tools.files import FileTool, atomic_write, decode_for_edit, encode_edited


def _same_file(workspace: str, raw: str, path: str) -> bool:
    """Whether ``raw`` resolves (through aliases inside the workspace) to
    ``path``: such a move applies the update in place."""
    try:
        return confine(workspace, raw) == path
    except ToolArgumentError:
        return False


class ApplyPatchTool(FileTool):
    """Apply a ``*** Begin Patch`` ... ``*** End Patch`` document to the workspace."""

    name = "apply_patch"
    description = (
        "Apply a patch to files in the workspace. The input wraps file operations "
        "between '*** Begin Patch' and '*** End Patch': '*** Add File: path' (+ lines), "
        "'*** Delete File: path', '*** Update File: path' (optional '*** Move to: path') "
        "with '@@' hunks of ' ' context, '-' removed and '+' added lines."
    )
    parameters: JSONSchema = {
        "type": "object",
        "properties": {
            "input": {
                "type": "string",
                "description": "Full patch contents including *** Begin Patch and *** End Patch",
            }
        },
        "required": ["input"],
    }

    def _run(self, args: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        text = req_str(args, "input", "patch", max_chars=self._limits.write_max_bytes)
        ops = parse(text)
        workspace = context.workspace.path
        cap = self._limits.edit_max_bytes

        def work() -> ToolResult:
            writes: dict[str, bytes | None] = {}  # path -> new content, None = delete

            def current(path: str) -> str | None:
                if path in writes:
                    data = writes[path]
                    return None if data is None else decode_for_edit(data)
                if not os.path.lexists(path):
                    return None
                if not os.path.isfile(path):
                    raise PatchError(f"{display(workspace, path)} is not a regular file")
                if os.path.getsize(path) > cap:
                    raise PatchError(f"{display(workspace, path)} is larger than {cap} bytes")
                with open(path, "rb") as f:
                    return decode_for_edit(f.read())

            def exists(path: str) -> bool:
                """Whether ``path`` itself (a symlink too) is there."""
                if path in writes:
                    return writes[path] is not None
                return os.path.lexists(path)

            summary: list[str] = []
            for op in ops:
                if op.kind == "add":
                    path = self._writable(workspace, confine_new(workspace, op.path))
                    shown = display(workspace, path)
                    if exists(path):
                        raise PatchError(f"Add File {shown}: the file already exists")
                    writes[path] = op.content.encode("utf-8")
                    summary.append(f"A {shown}")
                elif op.kind == "delete":
                    path = self._writable(workspace, confine_link(workspace, op.path))
                    shown = display(workspace, path)
                    if not exists(path):
                        raise PatchError(f"Delete File {shown}: no such file")
                    if path not in writes and not (os.path.islink(path) or os.path.isfile(path)):
                        raise PatchError(f"Delete File {shown}: not a regular file")
                    writes[path] = None
                    summary.append(f"D {shown}")
                else:
                    path = self._writable(workspace, confine(workspace, op.path))
                    shown = display(workspace, path)
                    before = current(path)
                    if before is None:
                        raise PatchError(f"Update File {shown}: no such file")
                    after = apply_update(before, op.hunks, shown)
                    dest = path
                    if op.move_to is not None and not _same_file(workspace, op.move_to, path):
                        dest = self._writable(workspace, confine_new(workspace, op.move_to))
                        if exists(dest):
                            raise PatchError(f"Move to {op.move_to}: the file already exists")
                        writes[path] = None
                    writes[dest] = encode_edited(after, shown)
                    if dest != path:
                        summary.append(f"M {shown} -> {display(workspace, dest)}")
                    else:
                        summary.append(f"M {shown}")
            for path, data in writes.items():
                if data is not None and len(data) > self._limits.write_max_bytes:
                    raise PatchError(f"{display(workspace, path)} would exceed the size cap")
            for path, data in writes.items():
                if data is None:
                    if os.path.lexists(path):
                        os.unlink(path)
                else:
                    atomic_write(path, data)
            return ToolResult(
                content="Success. Updated the following files:\n" + "\n".join(summary),
                details={"files": summary},
            )

        return self._blocking(work)
