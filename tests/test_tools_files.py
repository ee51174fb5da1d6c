"""read / write / edit / apply_patch against real files in a temp workspace."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.agents.tools._common import inline_runner, thread_runner
from openclaw.agents.tools.apply_patch import ApplyPatchTool
from openclaw.agents.tools.base import ToolContext, ToolResult
from openclaw.agents.tools.files import EditTool, ReadTool, WriteTool
from openclaw.agents.tools.limits import FileLimits


def make_context(workspace: str) -> ToolContext:
    return ToolContext(
        agent_id="main",
        session_key="agent:main:main",
        run_id="run-1",
        tool_call_id="call-1",
        workspace=FilePath(workspace),
    )


class FileToolsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = os.path.realpath(self.mktemp())
        self.ws = os.path.join(self.root, "ws")
        os.makedirs(self.ws)
        self.outside = os.path.join(self.root, "outside.txt")
        with open(self.outside, "w") as f:
            f.write("secret\n")
        self.ctx = make_context(self.ws)

    def call(self, tool: Any, **args: Any) -> ToolResult:
        result: ToolResult = self.successResultOf(tool.run(args, self.ctx))
        return result

    def test_write_then_read_creates_parents(self) -> None:
        """write creates parent directories; read returns the text written."""
        res = self.call(WriteTool(inline_runner), path="notes/today.md", content="a\nb\n")
        self.assertFalse(res.is_error, res.content)
        self.assertIn("4 bytes", res.content)
        with open(os.path.join(self.ws, "notes/today.md")) as f:
            self.assertEqual(f.read(), "a\nb\n")
        self.assertEqual(
            self.call(ReadTool(inline_runner), path="notes/today.md").content, "a\nb\n"
        )

    def test_write_leaves_no_temp_files(self) -> None:
        """An atomic overwrite leaves exactly the target in the directory."""
        tool = WriteTool(inline_runner)
        self.call(tool, path="f.txt", content="one")
        self.call(tool, path="f.txt", content="two")
        self.assertEqual(os.listdir(self.ws), ["f.txt"])

    def test_read_paging_and_caps(self) -> None:
        """offset/limit page by lines and a truncated read says how to continue."""
        with open(os.path.join(self.ws, "big.txt"), "w") as f:
            f.writelines(f"line {i}\n" for i in range(1, 101))
        tool = ReadTool(inline_runner, FileLimits(read_max_lines=10))
        res = self.call(tool, path="big.txt", offset=5, limit=3)
        self.assertTrue(res.content.startswith("line 5\nline 6\nline 7\n"))
        self.assertIn("Use offset=8 to continue", res.content)
        res = self.call(tool, path="big.txt", limit=50)
        self.assertIn("Showing lines 1-10 of 100", res.content)
        self.assertTrue(self.call(tool, path="big.txt", offset=500).is_error)

    def test_read_masks_env_file_secrets(self) -> None:
        """read of .env-style files masks secret values (they used to reach the
        model as they are); other files and harmless variables are shown."""
        body = (
            "PORT=8080\nGITHUB_TOKEN=ghp_abcdef123456\nexport DB_PASSWORD='hunter 2'\n"
            "DATABASE_URL=postgres://app:s3cret@db/app\n"
        )
        for name in (".env", "conf/.env.local", "prod.env", "notes.txt"):
            full = os.path.join(self.ws, name)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(body)
        read = ReadTool(inline_runner)
        for name in (".env", "conf/.env.local", "prod.env"):
            with self.subTest(name=name):
                text = self.call(read, path=name).content
                self.assertEqual(
                    text,
                    "PORT=8080\nGITHUB_TOKEN=[redacted]\nexport DB_PASSWORD=[redacted]\n"
                    "DATABASE_URL=postgres://app:***@db/app\n",
                )
        self.assertEqual(self.call(read, path="notes.txt").content, body)
        # A symlink with an innocent name still reads the env file masked.
        os.symlink(os.path.join(self.ws, ".env"), os.path.join(self.ws, "settings"))
        self.assertNotIn("ghp_", self.call(read, path="settings").content)

    def test_read_refuses_binary(self) -> None:
        """A file with NUL bytes is refused as binary."""
        with open(os.path.join(self.ws, "b.bin"), "wb") as f:
            f.write(b"\x00\x01\x02")
        self.assertIn("binary", self.call(ReadTool(inline_runner), path="b.bin").content)

    def test_escapes_are_refused(self) -> None:
        """.., absolute paths outside, ~, and symlinks leaving the workspace are refused."""
        os.symlink(self.outside, os.path.join(self.ws, "link.txt"))
        os.symlink(self.root, os.path.join(self.ws, "dirlink"))
        read, write = ReadTool(inline_runner), WriteTool(inline_runner)
        for path in ("../outside.txt", self.outside, "link.txt", "dirlink/outside.txt", "~/x"):
            with self.subTest(path=path):
                res = self.call(read, path=path)
                self.assertTrue(res.is_error)
                self.assertNotIn("secret", res.content)
        for path in ("../evil.txt", "dirlink/evil.txt", os.path.join(self.root, "evil.txt")):
            self.assertTrue(self.call(write, path=path, content="x").is_error)
        self.assertFalse(os.path.exists(os.path.join(self.root, "evil.txt")))
        with open(self.outside) as f:
            self.assertEqual(f.read(), "secret\n")

    def test_hard_links_are_refused(self) -> None:
        """A hard link to a file outside the workspace is refused by read, edit and
        apply_patch updates (read used to return the outside content); write
        replaces the name without touching the other file; files the tools
        create themselves are unaffected; apply_patch may delete the name."""
        os.link(self.outside, os.path.join(self.ws, "hardlink"))
        read, edit, write = (
            ReadTool(inline_runner),
            EditTool(inline_runner),
            WriteTool(inline_runner),
        )
        patch = ApplyPatchTool(inline_runner)
        update = "*** Begin Patch\n*** Update File: hardlink\n@@\n-secret\n+x\n*** End Patch"
        for res in (
            self.call(read, path="hardlink"),
            self.call(edit, path="hardlink", oldText="secret", newText="x"),
            self.call(patch, input=update),
        ):
            self.assertTrue(res.is_error)
            self.assertIn("hard-linked", res.content)
            self.assertNotIn("secret", res.content)
        with open(self.outside) as f:
            self.assertEqual(f.read(), "secret\n")

        res = self.call(write, path="hardlink", content="mine\n")
        self.assertFalse(res.is_error, res.content)
        with open(self.outside) as f:
            self.assertEqual(f.read(), "secret\n")
        self.assertEqual(self.call(read, path="hardlink").content, "mine\n")
        res = self.call(edit, path="hardlink", oldText="mine", newText="ours")
        self.assertFalse(res.is_error, res.content)

        os.link(self.outside, os.path.join(self.ws, "again"))
        res = self.call(patch, input="*** Begin Patch\n*** Delete File: again\n*** End Patch")
        self.assertFalse(res.is_error, res.content)
        self.assertFalse(os.path.exists(os.path.join(self.ws, "again")))
        with open(self.outside) as f:
            self.assertEqual(f.read(), "secret\n")

    def test_absolute_path_inside_workspace_and_inner_symlink_ok(self) -> None:
        """An absolute path inside the workspace and a symlink staying inside are allowed."""
        self.call(WriteTool(inline_runner), path="a.txt", content="hi")
        os.symlink(os.path.join(self.ws, "a.txt"), os.path.join(self.ws, "alias.txt"))
        read = ReadTool(inline_runner)
        self.assertEqual(self.call(read, path=os.path.join(self.ws, "a.txt")).content, "hi")
        self.assertEqual(self.call(read, path="alias.txt").content, "hi")

    def test_hostile_arguments(self) -> None:
        """Wrong types, NUL bytes, lone surrogates, huge strings, non-objects: tool errors."""
        read, write = (
            ReadTool(inline_runner),
            WriteTool(inline_runner, FileLimits(write_max_bytes=10)),
        )
        cases: list[tuple[Any, Any]] = [
            (read, {}),
            (read, {"path": 5}),
            (read, {"path": "a\x00b"}),
            (read, {"path": "\ud800"}),
            (read, {"path": "x" * 10_000}),
            (read, {"path": "a.txt", "offset": "1"}),
            (read, {"path": "a.txt", "limit": 0}),
            (read, {"path": "a.txt", "offset": 1.5}),
            (read, {"path": "a.txt", "limit": True}),
            (write, {"path": "a.txt"}),
            (write, {"path": "a.txt", "content": "x" * 11}),
            (write, {"path": "a.txt", "content": "\udc80"}),
            (write, {"path": "", "content": "x"}),
        ]
        for tool, args in cases:
            with self.subTest(args=repr(args)[:60]):
                res: ToolResult = self.successResultOf(tool.run(args, self.ctx))
                self.assertTrue(res.is_error)
        res = self.successResultOf(read.run(["not", "a", "dict"], self.ctx))  # type: ignore[arg-type]
        self.assertTrue(res.is_error)

    def test_edit_keeps_bytes_that_are_not_utf8(self) -> None:
        """A Latin-1 file edited elsewhere keeps its other bytes as they were
        (they used to become U+FFFD), and so does apply_patch."""
        path = os.path.join(self.ws, "latin.txt")
        with open(path, "wb") as f:
            f.write(b"caf\xe9 latin1\nsecond\n")
        res = self.call(EditTool(inline_runner), path="latin.txt", oldText="latin1", newText="x")
        self.assertFalse(res.is_error, res.content)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"caf\xe9 x\nsecond\n")
        patch = "*** Begin Patch\n*** Update File: latin.txt\n@@\n-second\n+2nd\n*** End Patch\n"
        res = self.call(ApplyPatchTool(inline_runner), input=patch)
        self.assertFalse(res.is_error, res.content)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"caf\xe9 x\n2nd\n")

    def test_crlf_files_read_as_lf_and_keep_their_endings(self) -> None:
        """read shows a CRLF file with LF breaks, edit matches that LF text, and
        edit and apply_patch write CRLF back (they used to fail or mix endings)."""
        path = os.path.join(self.ws, "crlf.txt")
        with open(path, "wb") as f:
            f.write(b"a\r\nb\r\nc\r\n")
        self.assertEqual(self.call(ReadTool(inline_runner), path="crlf.txt").content, "a\nb\nc\n")
        res = self.call(
            EditTool(inline_runner), path="crlf.txt", oldText="a\nb", newText="A\nB\nB2"
        )
        self.assertFalse(res.is_error, res.content)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"A\r\nB\r\nB2\r\nc\r\n")
        patch = (
            "*** Begin Patch\n*** Update File: crlf.txt\n@@\n B2\n-c\n+C\n+D\n"
            "*** Update File: mixed.txt\n@@\n-two\n+2\n+2b\n*** End Patch"
        )
        with open(os.path.join(self.ws, "mixed.txt"), "wb") as f:
            f.write(b"one\ntwo\r\nthree")
        res = self.call(ApplyPatchTool(inline_runner), input=patch)
        self.assertFalse(res.is_error, res.content)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"A\r\nB\r\nB2\r\nC\r\nD\r\n")
        # Untouched lines keep their own endings; no final newline is added.
        with open(os.path.join(self.ws, "mixed.txt"), "rb") as f:
            self.assertEqual(f.read(), b"one\n2\r\n2b\r\nthree")

    def test_edit_exact_unique_replacement(self) -> None:
        """edit replaces one exact occurrence; missing or ambiguous text is an error."""
        self.call(WriteTool(inline_runner), path="e.txt", content="alpha\nbeta\nbeta\n")
        edit = EditTool(inline_runner)
        res = self.call(edit, path="e.txt", oldText="alpha", newText="ALPHA")
        self.assertFalse(res.is_error, res.content)
        self.assertIn(
            "Could not find", self.call(edit, path="e.txt", oldText="gamma", newText="").content
        )
        self.assertIn(
            "Found 2 occurrences",
            self.call(edit, path="e.txt", oldText="beta", newText="b").content,
        )
        res = self.call(edit, path="e.txt", old_string="beta\nbeta", new_string="beta")
        self.assertFalse(res.is_error, res.content)
        with open(os.path.join(self.ws, "e.txt")) as f:
            self.assertEqual(f.read(), "ALPHA\nbeta\n")
        self.assertTrue(
            self.call(edit, path="../outside.txt", oldText="secret", newText="x").is_error
        )

    def test_edit_takes_an_edits_array(self) -> None:
        """edit takes OpenClaw's {path, edits: [{oldText, newText}]}: every edit is
        matched against the original text, must be unique, and none may overlap;
        a bad edit changes nothing. The legacy top-level pair still works."""
        path = os.path.join(self.ws, "m.txt")
        with open(path, "w") as f:
            f.write("one\ntwo\nthree\nfour\n")
        edit = EditTool(inline_runner)
        self.assertEqual(edit.parameters["required"], ["path", "edits"])
        self.assertEqual(
            edit.parameters["properties"]["edits"]["items"]["required"], ["oldText", "newText"]
        )

        def content() -> str:
            with open(path) as f:
                return f.read()

        failing: list[tuple[list[Any], str]] = [
            (
                [{"oldText": "one", "newText": "1"}, {"oldText": "nine", "newText": "9"}],
                "Could not find edits[1]",
            ),
            (
                [{"oldText": "o", "newText": "0"}, {"oldText": "two", "newText": "2"}],
                "Found 3 occurrences of edits[0]",
            ),
            (
                [
                    {"oldText": "one\ntwo", "newText": "x"},
                    {"oldText": "two\nthree", "newText": "y"},
                ],
                "edits[0] and edits[1] overlap",
            ),
            (
                [{"oldText": "one", "newText": "1"}, {"oldText": "", "newText": "y"}],
                "edits[1].oldText must not be empty",
            ),
            ([{"oldText": "one"}], "edits[0]: missing required parameter: newText"),
            (["one"], "edits[0] must be an object"),
        ]
        for edits, message in failing:
            with self.subTest(message=message):
                res = self.call(edit, path="m.txt", edits=edits)
                self.assertTrue(res.is_error)
                self.assertIn(message, res.content)
        self.assertIn("must be an array", self.call(edit, path="m.txt", edits=5).content)
        self.assertIn("missing required parameter: edits", self.call(edit, path="m.txt").content)
        self.assertEqual(content(), "one\ntwo\nthree\nfour\n")

        # Later edits are looked up in the original text, not in the result of earlier ones.
        res = self.call(
            edit,
            path="m.txt",
            edits=[{"oldText": "three", "newText": "3"}, {"oldText": "one", "newText": "three"}],
        )
        self.assertFalse(res.is_error, res.content)
        self.assertIn("2 blocks", res.content)
        self.assertEqual(res.details["line"], 1)
        self.assertEqual(content(), "three\ntwo\n3\nfour\n")
        # A JSON string holding the array, plus the legacy pair (once, if repeated).
        res = self.call(
            edit,
            path="m.txt",
            edits='[{"oldText": "two", "newText": "2"}]',
            oldText="four",
            newText="4",
        )
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(content(), "three\n2\n3\n4\n")
        res = self.call(
            edit, path="m.txt", edits=[{"oldText": "2", "newText": "II"}], oldText="2", newText="II"
        )
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(content(), "three\nII\n3\n4\n")
        res = self.call(edit, path="m.txt", edits=[{"oldText": "II", "newText": "II"}])
        self.assertFalse(res.is_error, res.content)
        self.assertIn("No changes made", res.content)

    def test_edit_falls_back_to_a_loose_match(self) -> None:
        """An oldText that is not in the file exactly is looked up with trailing
        spaces, Unicode compatibility forms and typographic quotes, dashes and
        spaces folded, as in OpenClaw (it used to be 'Could not find'); the
        file's own text at that place is replaced, and uniqueness, overlap and
        CRLF endings work as for exact matches."""
        edit = EditTool(inline_runner)

        def put(name: str, data: bytes) -> None:
            with open(os.path.join(self.ws, name), "wb") as f:
                f.write(data)

        def got(name: str) -> bytes:
            with open(os.path.join(self.ws, name), "rb") as f:
                return f.read()

        put("tw.py", b"def f():   \n    return 1\n")
        res = self.call(
            edit,
            path="tw.py",
            edits=[{"oldText": "def f():\n    return 1", "newText": "def f():\n    return 2"}],
        )
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(got("tw.py"), b"def f():\n    return 2\n")

        put("sq.py", "print(\u201chi\u201d)  # \u201cnote\u201d \u2014 x\n".encode())
        res = self.call(edit, path="sq.py", oldText='print("hi")', newText='print("bye")')
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(res.details["line"], 1)
        # Only the matched span is replaced: the rest of the line keeps its quotes.
        self.assertEqual(got("sq.py"), 'print("bye")  # \u201cnote\u201d \u2014 x\n'.encode())

        # CRLF file, non-breaking space and a dash, next to an exact edit.
        put("w.txt", "a\u00a0\u2013\u00a0b  \r\nkeep\r\nlast\r\n".encode())
        res = self.call(
            edit,
            path="w.txt",
            edits=[
                {"oldText": "a - b\nkeep", "newText": "A\nB"},
                {"oldText": "last", "newText": "LAST"},
            ],
        )
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(got("w.txt"), b"A\r\nB\r\nLAST\r\n")

        # An exact match wins over loose ones; several loose matches are ambiguous.
        put("q.txt", 'say \u201cx\u201d\nsay "x"\nsay \u2018y\u2019\nsay \u2019y\u2018\n'.encode())
        res = self.call(edit, path="q.txt", oldText='say "x"', newText="exact")
        self.assertFalse(res.is_error, res.content)
        res = self.call(edit, path="q.txt", oldText="say 'y'", newText="?")
        self.assertTrue(res.is_error)
        self.assertIn("Found 2 occurrences of the text", res.content)
        res = self.call(
            edit,
            path="q.txt",
            edits=[
                {"oldText": "say 'y'\nsay", "newText": "z"},
                {"oldText": "exact\n", "newText": ""},
            ],
        )
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(got("q.txt"), "say \u201cx\u201d\nz \u2019y\u2018\n".encode())
        # Loose matches take part in the overlap check.
        res = self.call(
            edit,
            path="q.txt",
            edits=[{"oldText": 'say "x"\nz', "newText": "1"}, {"oldText": "z '", "newText": "2"}],
        )
        self.assertIn("edits[0] and edits[1] overlap", res.content)
        # An edit whose new text is its old text changes nothing, loose or not.
        res = self.call(edit, path="q.txt", oldText='say "x"', newText='say "x"')
        self.assertIn("No changes made", res.content)
        self.assertEqual(got("q.txt"), "say \u201cx\u201d\nz \u2019y\u2018\n".encode())

        # A loose match must begin and end on characters of the file: "f" is
        # only half of the ligature U+FB01 (NFKC "fi").
        put("lig.txt", "\ufb01x\n".encode())
        res = self.call(edit, path="lig.txt", oldText="f", newText="g")
        self.assertTrue(res.is_error)
        self.assertIn("loose match for the text", res.content)
        res = self.call(edit, path="lig.txt", oldText="fix", newText="fixed")
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(got("lig.txt"), b"fixed\n")
        res = self.call(edit, path="lig.txt", oldText="nothing like it", newText="x")
        self.assertIn("Could not find the text", res.content)


PATCH = """*** Begin Patch
*** Add File: new/hello.txt
+hello
+world
*** Update File: src/app.txt
@@ def main
-    x = 1
+    x = 2
*** Update File: src/old.txt
*** Move to: src/new.txt
@@
 keep
-drop
+added
*** Update File: src/tail.txt
@@
+last line
*** End of File
*** Delete File: obsolete.txt
*** End Patch"""


class ApplyPatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ws = os.path.realpath(self.mktemp())
        os.makedirs(os.path.join(self.ws, "src"))
        files = {
            "src/app.txt": "def other\n    x = 1\ndef main\n    x = 1\n",
            "src/old.txt": "keep\ndrop\n",
            "src/tail.txt": "first\n",
            "obsolete.txt": "bye\n",
        }
        for name, text in files.items():
            with open(os.path.join(self.ws, name), "w") as f:
                f.write(text)
        self.ctx = make_context(self.ws)
        self.tool = ApplyPatchTool(inline_runner)

    def read(self, name: str) -> str:
        with open(os.path.join(self.ws, name)) as f:
            return f.read()

    def test_full_patch_applies(self) -> None:
        """Add, update with context, move, EOF append and delete all apply together."""
        res: ToolResult = self.successResultOf(self.tool.run({"input": PATCH}, self.ctx))
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(self.read("new/hello.txt"), "hello\nworld\n")
        self.assertEqual(self.read("src/app.txt"), "def other\n    x = 1\ndef main\n    x = 2\n")
        self.assertEqual(self.read("src/new.txt"), "keep\nadded\n")
        self.assertFalse(os.path.exists(os.path.join(self.ws, "src/old.txt")))
        self.assertEqual(self.read("src/tail.txt"), "first\nlast line\n")
        self.assertFalse(os.path.exists(os.path.join(self.ws, "obsolete.txt")))

    def test_failed_hunk_changes_nothing(self) -> None:
        """A hunk that does not match fails the whole patch before any write."""
        bad = PATCH.replace("-drop", "-missing")
        res: ToolResult = self.successResultOf(self.tool.run({"input": bad}, self.ctx))
        self.assertTrue(res.is_error)
        self.assertIn("could not find", res.content)
        self.assertFalse(os.path.exists(os.path.join(self.ws, "new/hello.txt")))
        self.assertTrue(os.path.exists(os.path.join(self.ws, "obsolete.txt")))

    def apply(self, patch: str) -> ToolResult:
        result: ToolResult = self.successResultOf(self.tool.run({"input": patch}, self.ctx))
        return result

    def test_ambiguous_lines_are_refused(self) -> None:
        """Old lines or an @@ context line that match in several places fail the
        patch and change nothing (the first match used to be patched)."""
        with open(os.path.join(self.ws, "amb.txt"), "w") as f:
            f.write("x\nfoo\ny\nfoo\nz\n")
        res = self.apply("*** Begin Patch\n*** Update File: amb.txt\n@@\n-foo\n+FOO\n*** End Patch")
        self.assertTrue(res.is_error)
        self.assertIn("occur 2 times", res.content)
        self.assertIn("foo", res.content)
        res = self.apply("*** Begin Patch\n*** Update File: amb.txt\n@@ foo\n-y\n+Y\n*** End Patch")
        self.assertTrue(res.is_error)
        self.assertIn("context 'foo' occurs 2 times", res.content)
        self.assertEqual(self.read("amb.txt"), "x\nfoo\ny\nfoo\nz\n")
        # More surrounding lines make the place unique.
        res = self.apply(
            "*** Begin Patch\n*** Update File: amb.txt\n@@\n y\n-foo\n+FOO\n*** End Patch"
        )
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(self.read("amb.txt"), "x\nfoo\ny\nFOO\nz\n")
        # Matches that only a looser level would find do not count once an exact one exists.
        with open(os.path.join(self.ws, "ws.txt"), "w") as f:
            f.write("bar  \nbar\n")
        res = self.apply("*** Begin Patch\n*** Update File: ws.txt\n@@\n-bar\n+BAR\n*** End Patch")
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(self.read("ws.txt"), "bar  \nBAR\n")

    def test_hunks_openclaw_applies(self) -> None:
        """A byte order mark, a blank context line the file does not have at the
        end of a hunk, and typographic punctuation do not stop a hunk, as in
        OpenClaw (each used to be 'could not find the lines', file unchanged)."""

        def put(name: str, data: bytes) -> None:
            with open(os.path.join(self.ws, name), "wb") as f:
                f.write(data)

        def got(name: str) -> bytes:
            with open(os.path.join(self.ws, name), "rb") as f:
                return f.read()

        def update(name: str, body: str) -> ToolResult:
            return self.apply(f"*** Begin Patch\n*** Update File: {name}\n@@\n{body}*** End Patch")

        put("bom.txt", b"\xef\xbb\xbffirst\r\nsecond\r\n")
        res = update("bom.txt", "-first\n+FIRST\n")
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(got("bom.txt"), b"\xef\xbb\xbfFIRST\r\nsecond\r\n")

        put("blank.py", b"x = 1\ny = 2\n")
        res = update("blank.py", " y = 2\n+z = 3\n \n")
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(got("blank.py"), b"x = 1\ny = 2\nz = 3\n")
        # A blank line the file has is matched as it is.
        put("kept.py", b"y = 2\n\nw\n")
        res = update("kept.py", " y = 2\n+z\n \n")
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(got("kept.py"), b"y = 2\nz\n\nw\n")

        put("sq.py", "print(\u201chi\u201d)\u00a0\u2014 ok\n".encode())
        res = update("sq.py", '-print("hi") - ok\n+print("bye")\n')
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(got("sq.py"), b'print("bye")\n')

        # The first pass that finds the lines decides: surrounding whitespace
        # beats punctuation, and two matches on the punctuation pass are refused.
        put("amb.py", 'q \u201cx\u201d\n  q "x"  \nr \u2018y\u2019\nr \u2019y\u2018\n'.encode())
        res = update("amb.py", '-q "x"\n+Q\n')
        self.assertFalse(res.is_error, res.content)
        res = update("amb.py", "-r 'y'\n+R\n")
        self.assertTrue(res.is_error)
        self.assertIn("occur 2 times", res.content)
        self.assertEqual(
            got("amb.py"), "q \u201cx\u201d\nQ\nr \u2018y\u2019\nr \u2019y\u2018\n".encode()
        )

    def test_aliases_follow_openclaw_rules(self) -> None:
        """Add and a move to a new path refuse a symlinked parent (Add used to
        succeed through it); Delete of a symlink removes the link, never its
        target (a link leading out used to be refused); updates may follow a
        symlink inside the workspace, and a move onto an alias of the same file
        updates it in place."""
        outside = os.path.join(os.path.dirname(self.ws), "target.txt")
        with open(outside, "w") as f:
            f.write("keep me\n")
        os.symlink(outside, os.path.join(self.ws, "out-link"))
        os.symlink(os.path.join(self.ws, "src"), os.path.join(self.ws, "alias"))
        for patch in (
            "*** Begin Patch\n*** Add File: alias/new.txt\n+x\n*** End Patch",
            "*** Begin Patch\n*** Update File: src/old.txt\n*** Move to: alias/moved.txt\n"
            "@@\n keep\n*** End Patch",
        ):
            with self.subTest(patch=patch):
                res = self.apply(patch)
                self.assertTrue(res.is_error)
                self.assertIn("symlinked directory", res.content)
        self.assertEqual(
            sorted(os.listdir(os.path.join(self.ws, "src"))), ["app.txt", "old.txt", "tail.txt"]
        )
        # Adding onto an existing symlink is "already exists", not a write through it.
        res = self.apply("*** Begin Patch\n*** Add File: out-link\n+x\n*** End Patch")
        self.assertIn("already exists", res.content)

        res = self.apply(
            "*** Begin Patch\n*** Delete File: out-link\n"
            "*** Update File: alias/tail.txt\n*** Move to: src/tail.txt\n@@\n-first\n+1st\n"
            "*** End Patch"
        )
        self.assertFalse(res.is_error, res.content)
        self.assertIn("D out-link", res.content)
        self.assertFalse(os.path.lexists(os.path.join(self.ws, "out-link")))
        with open(outside) as f:
            self.assertEqual(f.read(), "keep me\n")
        self.assertEqual(self.read("src/tail.txt"), "1st\n")
        # Deleting a symlink to a file inside leaves that file too.
        os.symlink(os.path.join(self.ws, "src/app.txt"), os.path.join(self.ws, "app-link"))
        res = self.apply("*** Begin Patch\n*** Delete File: app-link\n*** End Patch")
        self.assertFalse(res.is_error, res.content)
        self.assertTrue(os.path.exists(os.path.join(self.ws, "src/app.txt")))

    def test_oversized_result_changes_nothing(self) -> None:
        """A file that would grow past the size cap fails the patch before any
        write (files earlier in the patch used to be written already)."""
        with open(os.path.join(self.ws, "big.txt"), "w") as f:
            f.write("b" * 115)
        tool = ApplyPatchTool(inline_runner, FileLimits(write_max_bytes=120))
        patch = (
            "*** Begin Patch\n*** Add File: a.txt\n+x\n*** Update File: big.txt\n@@\n"
            "+0123456789\n*** End of File\n*** End Patch"
        )
        res: ToolResult = self.successResultOf(tool.run({"input": patch}, self.ctx))
        self.assertTrue(res.is_error)
        self.assertIn("size cap", res.content)
        self.assertFalse(os.path.exists(os.path.join(self.ws, "a.txt")))

    def test_malformed_and_escaping_patches(self) -> None:
        """Missing markers, bad lines, existing Add targets and escaping paths are errors."""
        for text in (
            "nothing",
            "*** Begin Patch\n*** End Patch",
            "*** Begin Patch\n*** Add File: x\nno plus\n*** End Patch",
            "*** Begin Patch\n*** Add File: obsolete.txt\n+x\n*** End Patch",
            "*** Begin Patch\n*** Add File: ../escape.txt\n+x\n*** End Patch",
            "*** Begin Patch\n*** Delete File: /etc/passwd\n*** End Patch",
            "*** Begin Patch\n*** Update File: src/old.txt\n"
            "*** Move to: ../out.txt\n@@\n keep\n*** End Patch",
        ):
            with self.subTest(text=text[:60]):
                res: ToolResult = self.successResultOf(self.tool.run({"input": text}, self.ctx))
                self.assertTrue(res.is_error)
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.ws), "escape.txt")))


class ThreadPoolTests(TestCase):
    def test_io_runs_on_a_thread_pool(self) -> Deferred[Any]:
        """With the thread runner, write and read complete through the reactor."""
        from twisted.internet import reactor

        pool = ThreadPool(minthreads=1, maxthreads=2)
        pool.start()
        self.addCleanup(pool.stop)
        runner = thread_runner(reactor, pool)  # type: ignore[arg-type]
        ws = os.path.realpath(self.mktemp())
        os.makedirs(ws)
        ctx = make_context(ws)

        d = WriteTool(runner).run({"path": "t.txt", "content": "threaded"}, ctx)
        d.addCallback(lambda _: ReadTool(runner).run({"path": "t.txt"}, ctx))
        d.addCallback(lambda res: self.assertEqual(res.content, "threaded"))
        return d
