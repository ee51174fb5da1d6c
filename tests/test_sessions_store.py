"""The on-disk session store: OpenClaw's layout, atomic index, append-only transcripts."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.history import FAILED_TURN_MARKER, MISSING_RESULT_TEXT, load_history
from openclaw.agents.registry import AgentRegistry
from openclaw.agents.turn_record import StepRecorder
from openclaw.agents.types import ImageInput, StopReason, ToolCall, Usage
from openclaw.config.model import Config, FsyncPolicy
from openclaw.sessions import index as index_module
from openclaw.sessions.entry import agent_id_for_session, is_valid_session_id
from openclaw.sessions.fileio import atomic_write
from openclaw.sessions.store import DEFAULT_INDEX_FLUSH_DELAY, SessionStore
from openclaw.sessions.transcript import usage_from_disk

KEY = "agent:main:main"


class StoreTestCase(SynchronousTestCase):
    """A store in a fresh state dir, on a Clock at a realistic epoch time."""

    fsync: FsyncPolicy = "never"

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.state_dir = Path(self.mktemp())
        self.store = self.new_store()

    def new_store(self, **kwargs: Any) -> SessionStore:
        """A store over the same state dir, as after a process restart."""
        return SessionStore(self.state_dir, clock=self.clock, fsync=self.fsync, **kwargs)

    def turn(
        self,
        run_id: str,
        text: str,
        reply: str,
        *,
        key: str = KEY,
        stop: StopReason = "stop",
        error: str | None = None,
        store: SessionStore | None = None,
    ) -> str:
        """Record one user turn and its outcome; returns the session id."""
        store = store or self.store
        entry = store.ensure_session("main", key)
        ts = int(self.clock.seconds() * 1000)
        store.append_user("main", entry.session_id, run_id=run_id, text=text, timestamp=ts)
        store.finish_turn(
            "main",
            key,
            entry.session_id,
            run_id=run_id,
            text=reply,
            timestamp=ts + 5,
            usage=Usage(input=3, output=2, total=5),
            stop_reason=stop,
            error=error,
            provider="p",
            model="m",
            api="openai-completions",
        )
        return entry.session_id

    def lines(self, session_id: str) -> list[dict[str, Any]]:
        """The transcript's parsed lines."""
        path = self.store.transcript_path("main", session_id)
        return [json.loads(line) for line in path.read_text().splitlines()]


class LayoutTests(StoreTestCase):
    def test_index_and_transcript_live_in_openclaws_layout(self) -> None:
        """sessions.json maps the key to {sessionId, updatedAt}; the transcript is
        <sessionId>.jsonl beside it; the index is written after the flush delay."""
        session_id = self.turn("r1", "hi", "hello")
        index_path = self.state_dir / "agents" / "main" / "sessions" / "sessions.json"
        self.assertFalse(index_path.exists())
        self.clock.advance(DEFAULT_INDEX_FLUSH_DELAY)
        index = json.loads(index_path.read_text())
        self.assertEqual(index[KEY]["sessionId"], session_id)
        self.assertEqual(index[KEY]["updatedAt"], 1_700_000_000_005)
        # OpenClaw's totalTokens is the context the last call used (its prompt).
        self.assertEqual(index[KEY]["totalTokens"], 3)
        self.assertEqual(index[KEY]["inputTokens"], 3)
        self.assertEqual(index[KEY]["outputTokens"], 2)
        self.assertTrue(is_valid_session_id(session_id))
        self.assertEqual(len(session_id), 36)
        transcript = index_path.parent / f"{session_id}.jsonl"
        self.assertTrue(transcript.exists())
        self.assertEqual(self.store.session_path("main"), index_path)
        self.assertEqual(
            sorted(p.name for p in index_path.parent.iterdir()),
            sorted([f"{session_id}.jsonl", "sessions.json"]),
        )

    def test_transcript_lines_follow_the_pi_agent_format(self) -> None:
        """A session header, then message entries chained by parentId whose message has
        role, content blocks, usage, stopReason and an epoch-ms timestamp."""
        session_id = self.turn("r1", "hi", "hello")
        header, user, assistant = self.lines(session_id)
        self.assertEqual(header["type"], "session")
        self.assertEqual(header["version"], 3)
        self.assertEqual(header["id"], session_id)
        self.assertEqual(user["type"], "message")
        self.assertIsNone(user["parentId"])
        self.assertEqual(user["runId"], "r1")
        self.assertEqual(user["timestamp"], "2023-11-14T22:13:20.000Z")
        self.assertEqual(
            user["message"], {"role": "user", "content": "hi", "timestamp": 1_700_000_000_000}
        )
        self.assertEqual(assistant["parentId"], user["id"])
        message = assistant["message"]
        self.assertEqual(message["content"], [{"type": "text", "text": "hello"}])
        self.assertEqual(message["stopReason"], "stop")
        self.assertEqual(message["provider"], "p")
        self.assertEqual(message["model"], "m")
        self.assertEqual(message["api"], "openai-completions")
        self.assertEqual(message["usage"]["totalTokens"], 5)
        self.assertEqual(usage_from_disk(message["usage"]), Usage(input=3, output=2, total=5))

    def test_parent_chain_continues_after_restart(self) -> None:
        """A new process appends after the last entry, linking to its id."""
        session_id = self.turn("r1", "hi", "hello")
        self.store.flush()
        self.turn("r2", "again", "sure", store=self.new_store())
        entries = self.lines(session_id)[1:]
        self.assertEqual(len(entries), 4)
        for previous, entry in itertools.pairwise(entries):
            self.assertEqual(entry["parentId"], previous["id"])

    def test_user_images_are_content_blocks(self) -> None:
        """A user turn with images stores text and image blocks."""
        entry = self.store.ensure_session("main", KEY)
        self.store.append_user(
            "main",
            entry.session_id,
            run_id="r1",
            text="look",
            images=(ImageInput(data="aGVsbG8=", mime_type="image/png"),),
            timestamp=1,
        )
        content = self.lines(entry.session_id)[1]["message"]["content"]
        self.assertEqual(
            content,
            [
                {"type": "text", "text": "look"},
                {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
            ],
        )


class IndexTests(StoreTestCase):
    fsync = "turn"

    def test_index_write_is_atomic(self) -> None:
        """When writing the new index fails midway, the old sessions.json is intact,
        no temp file is left, and the change is written by the next flush."""
        self.store.ensure_session("main", "agent:main:one")
        self.store.flush()
        path = self.store.session_path("main")
        before = path.read_bytes()
        self.store.ensure_session("main", "agent:main:two")

        def broken_fsync(fd: int) -> None:
            raise OSError(28, "No space left on device")

        real_fsync = os.fsync
        self.patch(os, "fsync", broken_fsync)
        with capturedLogs() as events:
            self.store.flush()
        self.assertEqual(path.read_bytes(), before)
        self.assertEqual(sorted(p.name for p in path.parent.iterdir()), ["sessions.json"])
        self.assertTrue(
            any("could not write session index" in str(e.get("log_format")) for e in events)
        )
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.patch(os, "fsync", real_fsync)
        self.store.flush()
        self.assertEqual(sorted(json.loads(path.read_text())), ["agent:main:one", "agent:main:two"])

    def test_atomic_write_replaces_whole_file(self) -> None:
        """atomic_write leaves exactly the new content and no temp file."""
        target = Path(self.mktemp())
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"old")
        atomic_write(target, b"new content", sync=True)
        self.assertEqual(target.read_bytes(), b"new content")
        self.assertEqual([p.name for p in target.parent.iterdir()], [target.name])

    def test_index_writes_are_coalesced_per_flush_interval(self) -> None:
        """Every change within the flush delay (1 s by default) costs one index
        write together, timed from the first change; later changes make the next."""
        writes: list[bytes] = []
        real = atomic_write

        def counting(path: Path, data: bytes | Sequence[bytes], *, sync: bool = True) -> None:
            writes.append(data if isinstance(data, bytes) else b"".join(data))
            real(path, data, sync=sync)

        self.patch(index_module, "atomic_write", counting)
        for n in range(5):
            self.turn(f"r{n}", "hi", "hello", key=f"agent:main:k{n}")
            self.clock.advance(0.125)
        self.clock.advance(0.25)
        self.assertEqual(writes, [])
        self.clock.advance(0.125)
        self.assertEqual(len(writes), 1)
        self.assertEqual(len(json.loads(writes[0])), 5)
        self.turn("r5", "hi", "hello", key="agent:main:k5")
        self.clock.advance(0.875)
        self.assertEqual(len(writes), 1)
        self.clock.advance(0.125)
        self.assertEqual(len(writes), 2)
        self.assertEqual(len(json.loads(writes[1])), 6)
        self.clock.advance(10)
        self.assertEqual(len(writes), 2)

    def test_flush_delay_zero_writes_once_per_reactor_turn(self) -> None:
        """With index_flush_delay=0 the changes of one reactor turn are written
        together on the next."""
        store = self.new_store(index_flush_delay=0.0)
        for n in range(3):
            self.turn(f"r{n}", "hi", "hello", key=f"agent:main:k{n}", store=store)
        self.assertFalse(store.session_path("main").exists())
        self.clock.advance(0)
        self.assertEqual(len(json.loads(store.session_path("main").read_text())), 3)

    def test_corrupt_index_is_moved_aside(self) -> None:
        """An unparseable sessions.json is kept aside (not overwritten) and the
        store starts empty, logging an error."""
        path = self.store.session_path("main")
        path.parent.mkdir(parents=True)
        path.write_text("{not json")
        with capturedLogs() as events:
            self.assertEqual(self.store.list_sessions("main"), [])
        aside = [p for p in path.parent.iterdir() if p.name.startswith("sessions.json.corrupt.")]
        self.assertEqual(len(aside), 1)
        self.assertEqual(aside[0].read_text(), "{not json")
        self.assertTrue(any(e.get("log_level") == LogLevel.error for e in events))

    def test_fsync_policy_turn_syncs_each_finished_turn(self) -> None:
        """With fsync "turn" the transcript is fdatasync'ed once per finished turn."""
        synced: list[int] = []
        real = os.fdatasync

        def counting(fd: int) -> None:
            synced.append(fd)
            real(fd)

        self.patch(os, "fdatasync", counting)
        self.turn("r1", "hi", "hello")
        self.turn("r2", "hi", "hello")
        self.assertEqual(len(synced), 2)

    def test_fsync_policy_never(self) -> None:
        """With fsync "never" neither transcripts nor the index are synced."""
        store = SessionStore(self.state_dir, clock=self.clock, fsync="never")
        calls: list[str] = []
        self.patch(os, "fdatasync", lambda fd: calls.append("fdatasync"))
        self.patch(os, "fsync", lambda fd: calls.append("fsync"))
        self.turn("r1", "hi", "hello", store=store)
        store.flush()
        self.assertEqual(calls, [])
        self.assertIn(KEY, json.loads(store.session_path("main").read_text()))

    def test_list_and_count_sessions(self) -> None:
        """list_sessions gives the entries newest first; to_json() is the
        sessions.list row (key, agentId, sessionId, updatedAt and stored fields)."""
        self.turn("r1", "a", "b", key="agent:main:old")
        self.clock.advance(10)
        self.turn("r2", "a", "b", key="agent:main:new")
        listed = self.store.list_sessions("main")
        self.assertEqual([e.key for e in listed], ["agent:main:new", "agent:main:old"])
        row = listed[0].to_json()
        self.assertEqual(row["key"], "agent:main:new")
        self.assertEqual(row["agentId"], "main")
        self.assertEqual(row["sessionId"], listed[0].session_id)
        self.assertEqual(row["updatedAt"], 1_700_000_010_005)
        self.assertEqual(row["modelProvider"], "p")
        self.assertEqual(self.store.count_sessions("main"), 2)
        self.assertEqual(self.store.count_sessions("other"), 0)
        self.assertEqual(self.store.message_count("main", "agent:main:new"), 2)


class TornLineTests(StoreTestCase):
    def test_torn_last_line_is_skipped_with_a_warning(self) -> None:
        """After a crash mid-append, the earlier turns still load, the torn line is
        skipped with a warning, and the next append starts on a fresh line."""
        session_id = self.turn("r1", "hi", "hello")
        self.store.flush()
        path = self.store.transcript_path("main", session_id)
        with path.open("ab") as f:
            f.write(b'{"type":"message","id":"abc","message":{"role":"user","con')
        store = self.new_store()
        with capturedLogs() as events:
            history = load_history(store, "main", session_id)
        self.assertEqual(
            [(m.role, m.content) for m in history], [("user", "hi"), ("assistant", "hello")]
        )
        warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("torn last line", warnings[0]["what"])
        self.turn("r2", "more", "ok", store=store)
        raw = path.read_bytes().split(b"\n")
        self.assertEqual(raw[-1], b"")
        parsed = []
        for line in raw[:-1]:
            try:
                parsed.append(json.loads(line))
            except ValueError:
                parsed.append(None)
        self.assertEqual(parsed.count(None), 1)
        self.assertEqual(len(parsed), 6)
        history = load_history(store, "main", session_id)
        self.assertEqual([m.content for m in history], ["hi", "hello", "more", "ok"])

    def test_every_earlier_session_loads_after_a_crash(self) -> None:
        """Sessions written before a crash (index flushed) load in a new process."""
        ids = [self.turn(f"r{n}", f"q{n}", f"a{n}", key=f"agent:main:s{n}") for n in range(3)]
        self.store.flush()
        store = self.new_store()
        for n, session_id in enumerate(ids):
            entry = store.get_session("main", f"agent:main:s{n}")
            assert entry is not None
            self.assertEqual(entry.session_id, session_id)
            self.assertEqual(
                [m.content for m in load_history(store, "main", session_id)], [f"q{n}", f"a{n}"]
            )

    def test_long_transcript_is_read_from_its_tail(self) -> None:
        """History comes from the end of a transcript larger than one read chunk."""
        session_id = ""
        for n in range(300):
            session_id = self.turn(f"r{n}", f"question {n} " + "x" * 300, f"answer {n}")
        history = load_history(self.store, "main", session_id, limit=4)
        self.assertEqual(
            [m.content[:12] for m in history],
            ["question 298", "answer 298", "question 299", "answer 299"],
        )


class HistoryTests(StoreTestCase):
    def test_new_session_history_reads_no_file(self) -> None:
        """A session created just now has no history and its (absent) transcript
        is not looked for; once a turn is written, history comes from the file."""
        entry = self.store.ensure_session("main", KEY)
        path = self.store.transcript_path("main", entry.session_id)
        path.mkdir(parents=True)  # reading it would fail
        self.assertEqual(load_history(self.store, "main", entry.session_id), [])
        path.rmdir()
        self.turn("r1", "one", "first")
        self.assertEqual(
            [(m.role, m.content) for m in load_history(self.store, "main", entry.session_id)],
            [("user", "one"), ("assistant", "first")],
        )

    def test_failed_aborted_and_unfinished_turns_keep_their_user_message(self) -> None:
        """As in OpenClaw, a failed, aborted or unfinished (crash) turn keeps its
        user message; its reply goes: replaced by the failed-turn marker when it
        had text, dropped when it had none (or only OpenClaw's placeholder)."""
        self.turn("r1", "one", "first")
        self.turn("r2", "two", "partial", stop="error", error="boom")
        self.turn("r3", "three", "cut", stop="aborted", error="run aborted")
        self.turn("r3b", "three b", "", stop="error", error="upstream exploded")
        self.turn(
            "r3c", "three c", "[assistant turn failed before producing content]", stop="error"
        )
        entry = self.store.ensure_session("main", KEY)
        self.store.append_user("main", entry.session_id, run_id="r4", text="four", timestamp=9)
        self.turn("r5", "five", "fifth")
        history = load_history(self.store, "main", entry.session_id)
        self.assertEqual(
            [(m.role, m.content) for m in history],
            [
                ("user", "one"),
                ("assistant", "first"),
                ("user", "two"),
                ("assistant", FAILED_TURN_MARKER),
                ("user", "three"),
                ("assistant", FAILED_TURN_MARKER),
                ("user", "three b\n\nthree c\n\nfour\n\nfive"),
                ("assistant", "fifth"),
            ],
        )

    def test_a_turn_that_died_in_a_tool_step_keeps_its_steps(self) -> None:
        """The process died while a built-in tool ran, or during the step after
        it: that run's user message and tool call are replayed (the tool may have
        done its work), the call that never got its result with OpenClaw's error
        result; a run that finished after its steps is replayed whole."""
        entry = self.store.ensure_session("main", KEY)
        call = ToolCall(id="c1", name="exec", arguments='{"command": "sleep 20"}')

        def steps(run_id: str, with_result: bool) -> None:
            recorder = StepRecorder(
                store=self.store,
                registry=AgentRegistry(Config()),
                clock=Clock(),
                storage_agent="main",
                session_id=entry.session_id,
                run_id=run_id,
            )
            self.store.append_user(
                "main", entry.session_id, run_id=run_id, text=run_id, timestamp=1
            )
            recorder.step("", Usage(), (call,), None)
            if with_result:
                result = {
                    "role": "toolResult",
                    "toolCallId": "c1",
                    "toolName": "exec",
                    "content": [{"type": "text", "text": "done"}],
                    "isError": False,
                }
                self.store.append_messages(
                    "main", entry.session_id, run_id=run_id, messages=[result], timestamp=2
                )

        steps("died-in-tool", with_result=False)
        steps("died-after-tool", with_result=True)
        steps("finished", with_result=True)
        self.store.finish_turn(
            "main", KEY, entry.session_id, run_id="finished", text="all done",
            timestamp=3, usage=Usage(), stop_reason="stop",
        )  # fmt: skip
        history = load_history(self.store, "main", entry.session_id)
        self.assertEqual(
            [(m.role, m.content, m.tool_call_id, m.is_error) for m in history],
            [
                ("user", "died-in-tool", None, False),
                ("assistant", "", None, False),
                ("tool", MISSING_RESULT_TEXT, "c1", True),
                ("user", "died-after-tool", None, False),
                ("assistant", "", None, False),
                ("tool", "done", "c1", False),
                ("user", "finished", None, False),
                ("assistant", "", None, False),
                ("tool", "done", "c1", False),
                ("assistant", "all done", None, False),
            ],
        )
        self.assertEqual({m.tool_calls for m in history if m.role == "assistant"} - {()}, {(call,)})

    def test_history_is_bounded_and_starts_with_a_user_message(self) -> None:
        """The limit keeps the newest messages; a cut never starts on an assistant."""
        session_id = ""
        for n in range(5):
            session_id = self.turn(f"r{n}", f"q{n}", f"a{n}")
        history = load_history(self.store, "main", session_id, limit=4)
        self.assertEqual([m.content for m in history], ["q3", "a3", "q4", "a4"])
        history = load_history(self.store, "main", session_id, limit=3)
        self.assertEqual([m.content for m in history], ["q4", "a4"])
        self.assertEqual(load_history(self.store, "main", session_id, limit=0), [])

    def test_tool_calls_replay_as_text(self) -> None:
        """An assistant turn that called client tools replays its calls as text lines."""
        entry = self.store.ensure_session("main", KEY)
        self.store.append_user("main", entry.session_id, run_id="r1", text="weather?", timestamp=1)
        self.store.finish_turn(
            "main",
            KEY,
            entry.session_id,
            run_id="r1",
            text="",
            timestamp=2,
            usage=Usage(),
            stop_reason="tool_calls",
            tool_calls=(ToolCall(id="c1", name="get_weather", arguments='{"city":"Oslo"}'),),
        )
        stored = self.lines(entry.session_id)[2]["message"]
        self.assertEqual(stored["stopReason"], "toolUse")
        self.assertEqual(
            stored["content"],
            [
                {
                    "type": "toolCall",
                    "id": "c1",
                    "name": "get_weather",
                    "arguments": {"city": "Oslo"},
                }
            ],
        )
        history = load_history(self.store, "main", entry.session_id)
        self.assertEqual(
            history[1].content, 'tool_call id=c1 name=get_weather arguments={"city": "Oslo"}'
        )

    def test_openclaw_written_transcripts_are_read(self) -> None:
        """Lines without runId (real OpenClaw) and flat message lines both load;
        consecutive same-role messages are merged, tool results skipped."""
        entry = self.store.ensure_session("main", KEY)
        path = self.store.transcript_path("main", entry.session_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            {"type": "session", "version": 3, "id": entry.session_id},
            {
                "type": "message",
                "id": "1",
                "parentId": None,
                "message": {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            },
            {
                "type": "message",
                "id": "2",
                "parentId": "1",
                "message": {
                    "role": "assistant",
                    "stopReason": "toolUse",
                    "content": [{"type": "text", "text": "checking"}],
                },
            },
            {
                "type": "message",
                "id": "3",
                "parentId": "2",
                "message": {"role": "toolResult", "toolCallId": "x", "content": []},
            },
            {
                "type": "message",
                "id": "4",
                "parentId": "3",
                "message": {
                    "role": "assistant",
                    "stopReason": "stop",
                    "content": [{"type": "text", "text": "done"}],
                },
            },
            {"type": "model_change", "id": "5", "parentId": "4", "provider": "x"},
            {"type": "message", "role": "user", "content": "flat"},
        ]
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        # Another writer's file is read by a store that did not create the
        # session itself (one that did knows its transcript is still empty).
        self.store.flush()
        history = load_history(self.new_store(), "main", entry.session_id)
        self.assertEqual(
            [(m.role, m.content) for m in history],
            [("user", "hi"), ("assistant", "checking\n\ndone"), ("user", "flat")],
        )

    def test_images_are_replayed(self) -> None:
        """Images of earlier completed user turns go back to the model."""
        entry = self.store.ensure_session("main", KEY)
        image = ImageInput(data="aGk=", mime_type="image/png")
        self.store.append_user(
            "main", entry.session_id, run_id="r1", text="see", images=(image,), timestamp=1
        )
        self.store.finish_turn(
            "main",
            KEY,
            entry.session_id,
            run_id="r1",
            text="a cat",
            timestamp=2,
            usage=Usage(),
            stop_reason="stop",
        )
        history = load_history(self.store, "main", entry.session_id)
        self.assertEqual(history[0].images, (image,))

    def test_read_messages_display_shape(self) -> None:
        """read_messages returns the newest messages oldest first, in chat.history's
        shape, failures included, image data omitted."""
        self.turn("r1", "one", "first")
        self.turn("r2", "two", "oops", stop="error", error="upstream 500")
        entry = self.store.ensure_session("main", KEY)
        self.store.append_user(
            "main",
            entry.session_id,
            run_id="r3",
            text="pic",
            images=(ImageInput(data="aGVsbG8=", mime_type="image/png"),),
            timestamp=7,
        )
        messages = self.store.read_messages("main", KEY, limit=3)
        self.assertEqual([m["role"] for m in messages], ["user", "assistant", "user"])
        self.assertEqual(
            messages[0], {"role": "user", "content": "two", "timestamp": 1_700_000_000_000}
        )
        self.assertEqual(messages[1]["stopReason"], "error")
        self.assertEqual(messages[1]["errorMessage"], "upstream 500")
        self.assertEqual(messages[1]["content"], [{"type": "text", "text": "oops"}])
        self.assertEqual(
            messages[2]["content"][1],
            {"type": "image", "mimeType": "image/png", "bytes": 6, "omitted": True},
        )
        self.assertEqual(self.store.read_messages("main", "agent:main:none", 10), [])

    def test_read_messages_keep_the_stored_stop_reason(self) -> None:
        """chat.history shows a tool step's stop reason as the transcript holds it
        (``toolUse``, as OpenClaw's chat.history passes it through), not the
        runtime's ``tool_calls``."""
        self.turn("r1", "list files", "", stop="tool_calls")
        messages = self.store.read_messages("main", KEY, limit=5)
        self.assertEqual(messages[-1]["stopReason"], "toolUse")


class ResetDeleteTests(StoreTestCase):
    def test_reset_gives_a_fresh_session_and_archives_the_old_transcript(self) -> None:
        """Reset keeps the key, issues a new sessionId, drops token counters, renames
        the old transcript .reset.<time>; the new session has no history."""
        old_id = self.turn("r1", "hi", "hello")
        fresh = self.store.reset("main", KEY)
        self.assertNotEqual(fresh.session_id, old_id)
        self.assertNotIn("totalTokens", fresh.extra)
        self.assertEqual(fresh.extra["modelProvider"], "p")
        directory = self.store.sessions_dir("main")
        names = sorted(p.name for p in directory.iterdir())
        self.assertEqual(len(names), 2)
        self.assertTrue(names[0].startswith(f"{old_id}.jsonl.reset.2023-11-14T22-13-20"))
        index = json.loads((directory / "sessions.json").read_text())
        self.assertEqual(index[KEY]["sessionId"], fresh.session_id)
        self.assertEqual(load_history(self.store, "main", fresh.session_id), [])
        self.assertEqual(self.store.read_messages("main", KEY, 10), [])

    def test_writes_to_an_archived_session_are_dropped(self) -> None:
        """A late append for a reset session never resurrects its transcript."""
        old_id = self.turn("r1", "hi", "hello")
        self.store.reset("main", KEY)
        with capturedLogs():
            self.store.append_user("main", old_id, run_id="r2", text="late", timestamp=1)
        self.assertFalse(self.store.transcript_path("main", old_id).exists())

    def test_delete_removes_the_entry_and_archives_the_transcript(self) -> None:
        """Delete drops the key from sessions.json (written at once) and renames the
        transcript .deleted.<time>; deleting again reports False."""
        old_id = self.turn("r1", "hi", "hello")
        self.assertTrue(self.store.delete("main", KEY))
        directory = self.store.sessions_dir("main")
        self.assertEqual(json.loads((directory / "sessions.json").read_text()), {})
        names = [p.name for p in directory.iterdir() if p.name != "sessions.json"]
        self.assertEqual(len(names), 1)
        self.assertTrue(names[0].startswith(f"{old_id}.jsonl.deleted."))
        self.assertFalse(self.store.delete("main", KEY))
        self.assertIsNone(self.store.get_session("main", KEY))

    def test_reset_of_an_unknown_key_creates_it(self) -> None:
        """Resetting a key with no session just creates one."""
        fresh = self.store.reset("main", "agent:main:new")
        self.assertEqual(self.store.get_session("main", "agent:main:new"), fresh)


class SafetyTests(StoreTestCase):
    def test_agent_ids_cannot_escape_the_state_dir(self) -> None:
        """Agent ids are normalised before they become a directory name."""
        for hostile in ("../../etc", "a/b", "x\x00y", "..", "/abs"):
            directory = self.store.sessions_dir(hostile)
            resolved = directory.resolve()
            self.assertTrue(str(resolved).startswith(str(self.state_dir.resolve())), hostile)
            self.assertEqual(directory.parent.parent, self.state_dir / "agents")

    def test_session_keys_never_become_file_names(self) -> None:
        """A key full of path syntax is only a JSON key; the file name is a uuid."""
        key = "agent:main:../../../../tmp/evil"
        entry = self.store.ensure_session("main", key)
        self.store.append_user("main", entry.session_id, run_id="r", text="x", timestamp=1)
        self.store.flush()
        names = sorted(p.name for p in self.store.sessions_dir("main").iterdir())
        self.assertEqual(names, sorted([f"{entry.session_id}.jsonl", "sessions.json"]))

    def test_unsafe_session_ids_in_the_index_are_replaced(self) -> None:
        """A sessions.json entry whose sessionId is a path is ignored and replaced."""
        path = self.store.session_path("main")
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({KEY: {"sessionId": "../../../evil", "updatedAt": 1}}))
        store = self.new_store()
        self.assertIsNone(store.get_session("main", KEY))
        self.assertEqual(store.list_sessions("main"), [])
        with capturedLogs():
            entry = store.ensure_session("main", KEY)
        self.assertTrue(is_valid_session_id(entry.session_id))
        with self.assertRaises(ValueError):
            store.transcript_path("main", "../../../evil")

    def test_storage_agent_follows_the_key(self) -> None:
        """A canonical key's own agent owns the session; other keys use the default."""
        self.assertEqual(agent_id_for_session("agent:beta:x", "main"), "beta")
        self.assertEqual(agent_id_for_session("custom", "Main"), "main")
