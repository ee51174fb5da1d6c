"""``apply_patch``: multi-file edits in OpenClaw's patch format, workspace-confined.

Every path is confined and every hunk applied in memory first; only when the
whole patch applies are files written (atomically, one by one), so a bad hunk
leaves the workspace untouched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred

from openclaw.agents.tools._common import req_str
from openclaw.agents.tools._patch import PatchError, apply_update, parse
from openclaw.agents.tools._paths import confine, display
from openclaw.agents.tools.base import JSONSchema, ToolContext, ToolResult
from openclaw.agents.tools.files import FileTool, atomic_write, decode_for_edit, encode_edited


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

            summary: list[str] = []
            for op in ops:
                # Deleting a hard-linked name removes that name only.
                path = confine(workspace, op.path, allow_hardlink=op.kind == "delete")
                shown = display(workspace, path)
                if op.kind == "add":
                    if current(path) is not None:
                        raise PatchError(f"Add File {shown}: the file already exists")
                    writes[path] = op.content.encode("utf-8")
                    summary.append(f"A {shown}")
                elif op.kind == "delete":
                    if current(path) is None:
                        raise PatchError(f"Delete File {shown}: no such file")
                    writes[path] = None
                    summary.append(f"D {shown}")
                else:
                    before = current(path)
                    if before is None:
                        raise PatchError(f"Update File {shown}: no such file")
                    after = apply_update(before, op.hunks, shown)
                    if op.move_to is not None:
                        dest = confine(workspace, op.move_to)
                        if dest != path and current(dest) is not None:
                            raise PatchError(f"Move to {op.move_to}: the file already exists")
                        writes[path] = None
                        writes[dest] = encode_edited(after, shown)
                        summary.append(f"M {shown} -> {display(workspace, dest)}")
                    else:
                        writes[path] = encode_edited(after, shown)
                        summary.append(f"M {shown}")
            for path, data in writes.items():
                if data is None:
                    if os.path.lexists(path):
                        os.unlink(path)
                else:
                    if len(data) > self._limits.write_max_bytes:
                        raise PatchError(f"{display(workspace, path)} would exceed the size cap")
                    atomic_write(path, data)
            return ToolResult(
                content="Success. Updated the following files:\n" + "\n".join(summary),
                details={"files": summary},
            )

        return self._blocking(work)
