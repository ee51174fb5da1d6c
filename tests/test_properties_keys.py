"""Property tests of agent ids and session keys (issue 7 items 3 and 7).

Whatever text a client sends as an agent id or ``x-openclaw-session-key``, the
result is ``agent:<valid id>:<rest>`` or the documented refusal
(:class:`InvalidSessionKeyError`); the agent directory it leads to stays inside
the state dir; canonicalising twice changes nothing; and a reserved internal
namespace can never come out of it.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.sessions.entry import agent_id_for_session
from openclaw.sessions.keys import (
    MAX_AGENT_ID_LENGTH,
    InvalidSessionKeyError,
    canonical_session_key,
    is_reserved_session_key,
    is_valid_agent_id,
    normalize_agent_id,
    parse_agent_from_key,
)
from openclaw.sessions.store import SessionStore

#: What a normalised id may look like: only ``a-z 0-9 _ -``, never a leading
#: ``-``, at most 64 characters. (OpenClaw's normaliser, like this one, keeps a
#: leading ``_``: ``"_"`` normalises to ``"_"``, which ``is_valid_agent_id``
#: itself refuses; harmless for paths.)
SAFE_ID = re.compile(r"^[a-z0-9_][a-z0-9_-]{0,63}$")
_C0_OR_DEL = re.compile(r"[\x00-\x1f\x7f]")

#: Pieces that matter to the key grammar and to paths, mixed into random text.
_SPECIAL = st.sampled_from(
    [
        "agent:",
        ":",
        "::",
        "/",
        "\\",
        "..",
        "../",
        "\x00",
        "\n",
        "\t",
        " ",
        "\u00a0",
        "\u0130",  # lower() grows it: "i" + combining dot
        "subagent:",
        "cron:",
        "acp:",
        "harness",
        "cron",
        "MAIN",
        "main",
        "beta",
        "%2e%2e",
        "\u2028",
        "\x85",
        "\ud800",
    ]
)
TEXT = st.one_of(
    st.text(max_size=40),
    st.lists(_SPECIAL | st.text(max_size=6), max_size=12).map("".join),
    # near the 512-character limit, where canonicalising adds a prefix
    st.integers(500, 530).map(lambda n: "k" * n),
    st.tuples(st.sampled_from(["agent:main:", "agent:beta:", ""]), st.integers(495, 520)).map(
        lambda t: t[0] + "x" * t[1]
    ),
)
AGENTS = st.sampled_from(["main", "beta", "a" * 64]) | TEXT.map(normalize_agent_id)

# Known counter-examples, checked on every run whatever the search finds.
RESERVED_BYPASS = ("agent:main: cron:job", "agent:main:  subagent:x", "agent:x y: acp:z")
LENGTH_EDGE = ("k" * 512, "agent:main:" + "\u0130" * 300)


class AgentIdPropertyTests(SynchronousTestCase):
    """``normalize_agent_id`` on arbitrary text."""

    @settings(derandomize=True, max_examples=400, deadline=None)
    @given(TEXT)
    def test_always_a_valid_id_and_one_path_component(self, raw: str) -> None:
        """Any text becomes a valid id: one safe path component, idempotent."""
        agent_id = normalize_agent_id(raw)
        self.assertRegex(agent_id, SAFE_ID)
        if not agent_id.startswith("_"):
            self.assertTrue(is_valid_agent_id(agent_id))
        self.assertLessEqual(len(agent_id), MAX_AGENT_ID_LENGTH)
        self.assertNotIn(agent_id, (".", ".."))
        self.assertEqual(Path(agent_id).name, agent_id)
        self.assertEqual(normalize_agent_id(agent_id), agent_id)

    def test_empty_and_punctuation_mean_main(self) -> None:
        """Text with nothing usable falls back to the default agent."""
        for raw in (None, "", "   ", "../..", "/", "\x00", "::"):
            self.assertEqual(normalize_agent_id(raw), "main", repr(raw))


class SessionKeyPropertyTests(SynchronousTestCase):
    """``canonical_session_key`` on arbitrary text."""

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).resolve()
        self.store = SessionStore(self.root, clock=Clock())

    def canonical(self, agent_id: str, raw: str) -> str | None:
        """The canonical key, or None for a documented refusal (with its message)."""
        try:
            return canonical_session_key(agent_id, raw)
        except InvalidSessionKeyError as error:
            self.assertTrue(str(error))
            return None

    def test_agent_prefix_without_id_or_rest_is_refused(self) -> None:
        """``agent:rok:``, ``agent:`` and ``Agent::x`` are refused, not turned into
        a key of the default agent (``agent:main:agent:rok:``)."""
        for raw in ("agent:rok:", "agent:", "AGENT:", "agent::x", "agent:main:", " agent:rok: "):
            with self.assertRaises(InvalidSessionKeyError, msg=raw) as caught:
                canonical_session_key("main", raw)
            self.assertIn("agent:<agentId>:<key>", str(caught.exception))
        self.assertEqual(canonical_session_key("main", "agent:rok:x"), "agent:rok:x")
        self.assertEqual(canonical_session_key("main", "agentx:1"), "agent:main:agentx:1")

    @settings(derandomize=True, max_examples=500, deadline=None)
    @given(agent_id=AGENTS, raw=TEXT)
    @example(agent_id="main", raw="agent:../../etc:passwd")
    @example(agent_id="main", raw="agent:/abs/path:x")
    @example(agent_id="main", raw="a\x00b")
    def test_canonical_shape_and_paths(self, agent_id: str, raw: str) -> None:
        """``agent:<valid id>:<rest>``, no C0 control char, and the agent's
        sessions directory is inside the state dir."""
        key = self.canonical(agent_id, raw)
        if key is None:
            return
        prefix, owner, rest = key.split(":", 2)
        self.assertEqual(prefix, "agent")
        self.assertRegex(owner, SAFE_ID)
        self.assertTrue(rest)
        self.assertEqual(rest, rest.lower())
        self.assertIsNone(_C0_OR_DEL.search(key), repr(key))
        self.assertEqual(parse_agent_from_key(key), owner)
        if parse_agent_from_key(raw.strip()) is None:
            self.assertEqual(owner, agent_id)
        directory = self.store.sessions_dir(agent_id_for_session(key, agent_id)).resolve()
        self.assertEqual(directory.parent.parent, self.root / "agents")
        self.assertTrue(directory.is_relative_to(self.root))

    @settings(derandomize=True, max_examples=500, deadline=None)
    @given(agent_id=AGENTS, raw=TEXT)
    @example(agent_id="main", raw=RESERVED_BYPASS[0])
    @example(agent_id="main", raw=RESERVED_BYPASS[1])
    @example(agent_id="main", raw=RESERVED_BYPASS[2])
    def test_never_yields_a_reserved_key(self, agent_id: str, raw: str) -> None:
        """No client text canonicalises into an internal namespace
        (``agent:<id>:cron:...`` and the like are refused, whatever the spacing)."""
        key = self.canonical(agent_id, raw)
        if key is not None:
            self.assertFalse(is_reserved_session_key(key), f"{raw!r} -> {key!r}")

    @settings(derandomize=True, max_examples=500, deadline=None)
    @given(agent_id=AGENTS, raw=TEXT)
    @example(agent_id="main", raw=LENGTH_EDGE[0])
    @example(agent_id="main", raw=LENGTH_EDGE[1])
    def test_idempotent(self, agent_id: str, raw: str) -> None:
        """A canonical key sent back (as the WebSocket API returns it) is accepted
        and stays the same."""
        key = self.canonical(agent_id, raw)
        if key is None:
            return
        try:
            again = canonical_session_key(agent_id, key)
        except InvalidSessionKeyError as error:
            self.fail(f"{raw!r} -> {key!r} ({len(key)} chars) is refused when re-sent: {error}")
        self.assertEqual(again, key)
        self.assertEqual(canonical_session_key("other", key), key)

    @settings(derandomize=True, max_examples=200, deadline=None)
    @given(agent_id=AGENTS, raw=TEXT)
    def test_reserved_input_is_refused(self, agent_id: str, raw: str) -> None:
        """A key the reserved check flags is always refused."""
        if is_reserved_session_key(raw) and raw.strip():
            self.assertIsNone(self.canonical(agent_id, raw))
