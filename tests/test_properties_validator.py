"""Property tests of the chat completions request validator (issue 7 item 3).

``tests/test_chat_request.py`` already feeds well-typed JSON bodies to
:func:`prepare_chat`; these go further: raw bytes that are not JSON, nesting
and number bombs, and ``messages`` of nested, garbage shapes. Every refusal
must be a :class:`ChatRequestError` with status 400, a body with exactly
OpenAI's four keys, a message from the documented list and a ``param`` naming
a request field.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config.model import ImagesConfig
from openclaw.gateway.http.chat_request import (
    INVALID_IMAGE_MESSAGE,
    INVALID_MODEL_MESSAGE,
    MISSING_USER_MESSAGE,
    RESERVED_SESSION_MESSAGE,
    PreparedChat,
    prepare_chat,
)
from openclaw.gateway.http.errors import (
    ChatRequestError,
)
from openclaw.sessions.keys import is_reserved_session_key

#: The refusals docs/openai-api.md lists ("Errors"), as patterns.
DOCUMENTED_MESSAGES = [
    re.compile(p, re.S)
    for p in (
        r"^(?:[\w.]+: )?Expected \w+, received \w+$",
        r"^(?:max_tokens|max_completion_tokens) must be a positive safe integer$",
        r"^Invalid response_format: .+",
        r"^Invalid stop: .+",
        r"^`(?:temperature|top_p|frequency_penalty|presence_penalty)` must be between .+\.$",
        r"^`seed` must be an integer\.$",
        r"^`n` must be 1: this endpoint returns exactly one choice\.$",
        "^" + re.escape(INVALID_MODEL_MESSAGE) + "$",
        r"^Unknown agent '.*'\.$",
        r"^Invalid `user`: .+\.$",
        "^" + re.escape(RESERVED_SESSION_MESSAGE) + "$",
        r"^Invalid `x-openclaw-session-key`: .+\.$",
        r"^Invalid tools/tool_choice: .+",
        "^" + re.escape(INVALID_IMAGE_MESSAGE) + "$",
        "^" + re.escape(MISSING_USER_MESSAGE) + "$",
        r"^JSON nesting is too deep$",
        r"^`messages` is nested too deeply\.$",
    )
]
PARAMS = {
    None,
    "model",
    "messages",
    "stream",
    "stream_options",
    "user",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "stop",
    "response_format",
    "tools",
    "tool_choice",
}

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


def nested(depth: int, leaf: Any) -> Any:
    """``leaf`` wrapped in ``depth`` alternating arrays and objects."""
    for level in range(depth):
        leaf = [leaf] if level % 2 else {"content": leaf}
    return leaf


PART = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "input_text", "image_url", "x"]) | JSON_VALUES},
        optional={"text": JSON_VALUES, "image_url": JSON_VALUES, "input_text": JSON_VALUES},
    ),
    JSON_VALUES,
)
CONTENT = st.one_of(
    st.text(max_size=12),
    st.lists(PART, max_size=4),
    st.tuples(st.integers(1, 60), PART).map(lambda t: nested(*t)),
    JSON_VALUES,
)
MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["user", "assistant", "system", "tool", "function", " USER"])
        | JSON_VALUES,
        "content": CONTENT,
        "tool_call_id": JSON_VALUES,
        "name": JSON_VALUES,
        "tool_calls": st.lists(
            st.fixed_dictionaries(
                {"id": st.just("c1"), "function": st.just({"name": "f"})},
                optional={"arguments": st.integers(0, 900).map(lambda d: nested(d, 1))},
            )
            | JSON_VALUES,
            max_size=2,
        ),
    },
)
MESSAGES = st.one_of(
    st.lists(MESSAGE | JSON_VALUES, max_size=5),
    st.lists(MESSAGE | JSON_VALUES, max_size=4).map(
        lambda m: [*m, {"role": "user", "content": "answer me"}]
    ),
    st.tuples(st.integers(1, 60), st.lists(MESSAGE, max_size=2)).map(lambda t: nested(*t)),
    JSON_VALUES,
)
BODIES = st.fixed_dictionaries(
    {"messages": MESSAGES},
    optional={
        "model": st.sampled_from(["openclaw", "openclaw/beta", "agent:x"]) | JSON_VALUES,
        "stream": st.booleans() | JSON_VALUES,
        "tools": JSON_VALUES,
        "n": st.sampled_from([1, 1.0, 2]) | JSON_VALUES,
        "user": st.text(max_size=6) | JSON_VALUES,
    },
)


def _json_text(body: object) -> bytes:
    return json.dumps(body).encode("utf-8")


RAW_BODIES = st.one_of(
    BODIES.map(_json_text),
    st.binary(max_size=40),
    # valid JSON mutated at the byte level: truncated, or with a byte flipped
    st.tuples(BODIES.map(_json_text), st.integers(0, 10**6)).map(lambda t: t[0][: t[1] % 64]),
    st.tuples(BODIES.map(_json_text), st.integers(0, 10**6), st.integers(0, 255)).map(
        lambda t: t[0][: t[1] % max(1, len(t[0]))] + bytes([t[2]]) + t[0][t[1] % 64 + 1 :]
    ),
    st.sampled_from(
        [
            b'{"messages": NaN}',
            b'{"temperature": Infinity, "messages": []}',
            b'{"temperature": 1e400, "messages": [{"role":"user","content":"x"}]}',
            b'{"max_tokens": 1e400, "messages": [{"role":"user","content":"x"}]}',
            b'{"seed": -1e400, "messages": [{"role":"user","content":"x"}]}',
            b'{"n": 1e400, "messages": [{"role":"user","content":"x"}]}',
            b'{"max_tokens": ' + b"9" * 5000 + b"}",
            b"\xef\xbb\xbf{}",
            '{"messages":[{"role":"user","content":"hi"}]}'.encode("utf-16"),
            b'{"messages": [], "messages": [{"role":"user","content":"dup"}]}',
            b'{"messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            b'{"messages":[{"role":"user","content":'
            + b'{"a":' * 5000
            + b"1"
            + b"}" * 5000
            + b"}]}",
        ]
    ),
)
HEADERS = st.dictionaries(
    st.sampled_from(
        ["x-openclaw-agent-id", "x-openclaw-session-key", "x-openclaw-message-channel"]
    ),
    st.text(max_size=12)
    | st.sampled_from(["beta", "agent:beta:x", "agent:main: cron:x", "../../etc", "k" * 600]),
    max_size=2,
)


class ValidatorGarbagePropertyTests(SynchronousTestCase):
    """``prepare_chat`` on raw bytes and garbage ``messages``."""

    def prepare(self, raw: bytes, headers: dict[str, str]) -> PreparedChat | None:
        """The prepared chat, or None after a documented refusal."""
        try:
            return prepare_chat(
                raw,
                headers,
                agent_ids=["main", "beta"],
                default_agent_id="main",
                images=ImagesConfig(),
            )
        except ChatRequestError as error:
            self.assertDocumented(error)
            return None
        except Exception as error:  # the property under test
            self.fail(f"prepare_chat raised {type(error).__name__}: {error} for {raw[:120]!r}")

    def assertDocumented(self, error: ChatRequestError) -> None:
        """A 400 in OpenAI's shape with a documented message and a request field."""
        self.assertEqual(error.status, 400)
        body = error.body()
        self.assertEqual(list(body), ["error"])
        payload = body["error"]
        self.assertEqual(set(payload), {"message", "type", "param", "code"})
        self.assertEqual(payload["type"], "invalid_request_error")
        self.assertIn(payload["param"], PARAMS)
        self.assertIsInstance(payload["code"], str | None)
        json.dumps(body)  # serialisable as it is sent
        message = payload["message"]
        self.assertIsInstance(message, str)
        self.assertTrue(message)
        if payload["code"] == "invalid_json":
            return  # the JSON parser's own message, as documented
        self.assertTrue(
            any(p.match(message) for p in DOCUMENTED_MESSAGES), f"undocumented: {message!r}"
        )

    @settings(derandomize=True, max_examples=300, deadline=None)
    @given(raw=RAW_BODIES, headers=HEADERS)
    @example(raw=b'{"messages":' + b"[" * 3000 + b"]" * 3000 + b"}", headers={})
    @example(
        raw=b'{"messages":[{"role":"user","content":"hi"}]}',
        headers={"x-openclaw-session-key": "agent:main: cron:nightly"},
    )
    def test_any_bytes(self, raw: bytes, headers: dict[str, str]) -> None:
        """Any body bytes: a prepared chat or a documented 400."""
        prepared = self.prepare(raw, headers)
        if prepared is not None:
            self.assertIn(prepared.agent_id, ("main", "beta"))
            self.assertTrue(prepared.session_key.startswith(f"agent:{prepared.agent_id}:"))
            self.assertFalse(
                is_reserved_session_key(prepared.session_key),
                f"reserved session {prepared.session_key!r} from headers {headers!r}",
            )
            self.assertTrue(prepared.message.strip())

    @settings(derandomize=True, max_examples=200, deadline=None)
    @given(depth=st.integers(1, 990), wrap=st.sampled_from(["[", '{"a":']))
    def test_deep_messages_below_the_parser_limit(self, depth: int, wrap: str) -> None:
        """``messages`` nested almost as deep as the parser allows: still a 400
        (missing user message), not a crash."""
        close = "]" if wrap == "[" else "}"
        raw = ('{"messages":[' + wrap * depth + "1" + close * depth + "]}").encode()
        self.assertIsNone(self.prepare(raw, {}))
