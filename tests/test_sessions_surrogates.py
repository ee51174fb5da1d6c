"""Session writers never fail on a ``str`` that has no UTF-8 form.

A lone UTF-16 surrogate (``"\\ud800"``) can arrive in a session key, a user
id or message text (JSON's ``\\ud800`` escape decodes to one). ``str.encode``
refuses it; before this was handled, the index flush raised in the background
and ``sessions.json`` was never written again, for any session. Transcript
lines are read back with such an escape as U+FFFD.
"""

from __future__ import annotations

import json
from pathlib import Path

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.history import load_history
from openclaw.core.types import Usage
from openclaw.sessions import index as index_module
from openclaw.sessions.store import SessionStore
from openclaw.sessions.transcript import encode_json, loads_line

BAD_KEY = "agent:main:openai-user:bad\ud800"
GOOD_KEY = "agent:main:openai-user:good"


class SurrogateTests(SynchronousTestCase):
    """A store on a Clock over a fresh state dir."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.state_dir = Path(self.mktemp())
        self.store = SessionStore(self.state_dir, clock=self.clock, fsync="never")

    def index_on_disk(self, agent: str) -> dict[str, object]:
        """The agent's sessions.json, decoded strictly as UTF-8 JSON."""
        raw = self.store.session_path(agent).read_bytes()
        data = json.loads(raw.decode("utf-8"))
        assert isinstance(data, dict)
        return data

    def test_a_surrogate_key_does_not_stop_the_index_flush(self) -> None:
        """A session whose key holds a lone surrogate, then a normal one: the
        background flush writes valid UTF-8 JSON holding both, and the odd key
        reads back as the same ``str``."""
        bad = self.store.ensure_session("main", BAD_KEY)
        good = self.store.ensure_session("main", GOOD_KEY)
        self.clock.advance(1)
        on_disk = self.index_on_disk("main")
        self.assertEqual(
            on_disk[GOOD_KEY],
            {
                "sessionId": good.session_id,
                "updatedAt": good.updated_at,
                "sessionStartedAt": good.updated_at,
            },
        )
        self.assertIn(BAD_KEY, on_disk)
        reopened = SessionStore(self.state_dir, clock=self.clock, fsync="never")
        entry = reopened.get_session("main", BAD_KEY)
        assert entry is not None
        self.assertEqual(entry.session_id, bad.session_id)

    def test_both_agents_indexes_flush(self) -> None:
        """A surrogate key in one agent's index does not keep another agent's
        index (flushed in the same interval) from being written."""
        self.store.ensure_session("alpha", "agent:alpha:x\udfff")
        good = self.store.ensure_session("beta", "agent:beta:main")
        self.clock.advance(1)
        self.assertIn("agent:alpha:x\udfff", self.index_on_disk("alpha"))
        self.assertEqual(
            self.index_on_disk("beta")["agent:beta:main"],
            {
                "sessionId": good.session_id,
                "updatedAt": good.updated_at,
                "sessionStartedAt": good.updated_at,
            },
        )

    def test_surrogates_in_message_text_are_written_as_valid_utf8(self) -> None:
        """User and assistant text with lone surrogates (and a surrogate in the
        key the header records) are appended as valid UTF-8 lines (the
        surrogates as escapes) and read back with U+FFFD in their place, so
        the history can be sent to a model; later turns of the session still
        land."""
        entry = self.store.ensure_session("main", BAD_KEY)
        self.store.append_user(
            "main", entry.session_id, run_id="r1", text="hi \udc80 ü", timestamp=1
        )
        done = self.store.finish_turn(
            "main",
            BAD_KEY,
            entry.session_id,
            run_id="r1",
            text="back \ud83d",
            timestamp=2,
            usage=Usage(input=1, output=1, total=2),
            stop_reason="stop",
        )
        self.successResultOf(done)
        path = self.store.transcript_path("main", entry.session_id)
        lines = path.read_bytes().decode("utf-8").splitlines()
        self.assertEqual(json.loads(lines[0])["sessionKey"], BAD_KEY)
        history = load_history(self.store, "main", entry.session_id)
        self.assertEqual(
            [(m.role, m.content) for m in history],
            [("user", "hi \ufffd ü"), ("assistant", "back \ufffd")],
        )

    def test_a_flush_that_fails_for_any_reason_is_logged_and_retried(self) -> None:
        """An error while encoding the index (not only an OS error) is logged as
        a failure naming the agent, and the next interval writes the index."""
        real = encode_json
        fail = [True]

        def broken(value: object) -> bytes:
            if fail[0]:
                raise ValueError("encoder broke")
            return real(value)

        self.patch(index_module, "encode_json", broken)
        self.store.ensure_session("main", GOOD_KEY)
        with capturedLogs() as events:
            self.clock.advance(1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        failures = [e for e in events if "log_failure" in e]
        self.assertEqual([e.get("agent_id") for e in failures], ["main"])
        self.assertFalse(self.store.session_path("main").exists())
        fail[0] = False
        self.clock.advance(1)
        self.assertIn(GOOD_KEY, self.index_on_disk("main"))


class EncodeJsonTests(SynchronousTestCase):
    def test_ordinary_text_stays_unescaped_and_surrogates_fall_back(self) -> None:
        """Text that has a UTF-8 form is written as it is (compact, no escapes);
        a value holding a lone surrogate becomes ASCII JSON that decodes to the
        same value."""
        self.assertEqual(encode_json({"k": "ü"}), '{"k":"ü"}'.encode())
        value = {"k": "a\ud800ü"}
        encoded = encode_json(value)
        self.assertEqual(encoded, b'{"k":"a\\ud800\\u00fc"}')
        self.assertEqual(json.loads(encoded.decode("utf-8")), value)


class LoadsLineTests(SynchronousTestCase):
    def test_lone_escapes_become_u_fffd_and_pairs_stay(self) -> None:
        """Bytes or text, escaped or raw (CESU-8 bytes): each lone surrogate is
        read as U+FFFD, a valid escaped pair as its one character, and a line
        without either is parsed as it is."""
        for line in (
            b'{"t":"a\\ud83d b\\uDC00 \\ud83d\\ude00 \\\\ud83d"}',
            '{"t":"a\\ud83d b\\uDC00 \\ud83d\\ude00 \\\\ud83d"}',
        ):
            self.assertEqual(loads_line(line), {"t": "a\ufffd b\ufffd \U0001f600 \\ud83d"})
        self.assertEqual(loads_line(b'{"t":"a\xed\xa0\xbd \xed\x95\x9c"}'), {"t": "a\ufffd \ud55c"})
        self.assertEqual(loads_line('{"t":"ü\ud800"}'), {"t": "ü\ufffd"})
        self.assertEqual(loads_line(b'{"t":"plain \xc3\xbc"}'), {"t": "plain ü"})
