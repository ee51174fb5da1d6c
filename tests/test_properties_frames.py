"""Property tests of the WebSocket frame parser (issue 7 item 3).

Any bytes a client sends as a text message become a :class:`RequestFrame` or a
:class:`FrameError` with one of the documented messages, never another
exception; and whatever comes out can be answered with frames in the
documented shape (an ``error`` event or an error ``res``) that encode to JSON.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from openclaw.core.textguard import guard_value
from openclaw.gateway.ws.frames import (
    INVALID_REQUEST,
    MAX_METHOD_LENGTH,
    MAX_REQUEST_ID_LENGTH,
    FrameError,
    RequestError,
    RequestFrame,
    encode,
    event_frame,
    parse_request,
    response_error,
)

#: The documented beginnings of a FrameError's message.
FRAME_ERROR_PREFIXES = ("malformed frame: ", "invalid frame: ", "invalid ")

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
IDS = st.one_of(
    st.text(max_size=8),
    st.text(min_size=250, max_size=260),
    st.sampled_from(["", "1:abc", "\ud800", "x" * 256, "x" * 257]),
    JSON_VALUES,
)
METHODS = st.one_of(
    st.sampled_from(["connect", "health", "agent", "chat.send", "", "x" * 129]),
    st.text(max_size=10),
    JSON_VALUES,
)
FRAME_OBJECTS = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["req", "res", "event", "REQ"]) | JSON_VALUES,
        "id": IDS,
        "method": METHODS,
        "params": JSON_VALUES | st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3),
    },
)


def _mutate(data: bytes, cuts: list[int]) -> bytes:
    """Drop or flip bytes at the given positions (a cheap byte-level mutator)."""
    out = bytearray(data)
    for cut in cuts:
        if not out:
            break
        at = cut % len(out)
        if cut % 2:
            del out[at]
        else:
            out[at] ^= 0x20 + (cut % 0x5F)
    return bytes(out)


class Blob(bytes):
    """Bytes that print short in a failure report (bombs are kilobytes long)."""

    def __repr__(self) -> str:
        head = bytes(self[:48])
        return f"Blob({head!r}... {len(self)} bytes)" if len(self) > 48 else f"Blob({head!r})"


def _bomb(depth: int) -> bytes:
    """A request whose params nest ``depth`` arrays (well under 64 KiB)."""
    return Blob(
        b'{"type":"req","id":"1","method":"health","params":' + b"[" * depth + b"]" * depth + b"}"
    )


PAYLOADS = st.one_of(
    st.binary(max_size=64),
    FRAME_OBJECTS.map(lambda f: json.dumps(f).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.tuples(FRAME_OBJECTS, st.lists(st.integers(0, 10_000), max_size=4)).map(
        lambda t: _mutate(json.dumps(t[0]).encode(), t[1])
    ),
    st.sampled_from([b'{"a":' * 50, b"1" * 5000, b"NaN", b"-Infinity"]).map(Blob),
    st.integers(1, 3000).map(_bomb),
)


class FrameParserPropertyTests(SynchronousTestCase):
    """``parse_request`` on arbitrary input."""

    def parse(self, payload: bytes) -> RequestFrame | FrameError:
        """The frame, or the FrameError raised (anything else fails the test)."""
        try:
            return parse_request(payload)
        except FrameError as error:
            return error
        except Exception as error:  # the property under test
            self.fail(
                f"parse_request raised {type(error).__name__} for {payload[:80]!r}"
                f"... ({len(payload)} bytes)"
            )

    def assertAnswerable(self, outcome: RequestFrame | FrameError) -> None:
        """The gateway's answer to ``outcome`` has the documented shape and encodes."""
        if isinstance(outcome, RequestFrame):
            return
        error = RequestError(INVALID_REQUEST, outcome.message)
        if outcome.request_id is None:
            frame: dict[str, Any] = event_frame("error", error.error_shape(), 1)
        else:
            frame = response_error(outcome.request_id, error)
        decoded = json.loads(encode(frame))
        shape = decoded["payload"] if outcome.request_id is None else decoded["error"]
        self.assertEqual(shape["code"], INVALID_REQUEST)
        self.assertTrue(shape["message"])

    @settings(derandomize=True, max_examples=600, deadline=None)
    @given(PAYLOADS)
    @example(_bomb(3000))
    @example(Blob(b"[" * 1100))
    def test_any_payload(self, payload: bytes) -> None:
        """A frame or a documented FrameError; either can be answered."""
        outcome = self.parse(payload)
        if isinstance(outcome, FrameError):
            self.assertTrue(outcome.message.startswith(FRAME_ERROR_PREFIXES), outcome.message)
            if outcome.request_id is not None:
                self.assertIsInstance(outcome.request_id, str)
                self.assertTrue(0 < len(outcome.request_id) <= MAX_REQUEST_ID_LENGTH)
        else:
            self.assertIsInstance(outcome.id, str)
            self.assertTrue(0 < len(outcome.id) <= MAX_REQUEST_ID_LENGTH)
            self.assertIsInstance(outcome.method, str)
            self.assertTrue(0 < len(outcome.method) <= MAX_METHOD_LENGTH)
            self.assertIsInstance(outcome.params, dict)
        self.assertAnswerable(outcome)

    @settings(derandomize=True, max_examples=200, deadline=None)
    @given(FRAME_OBJECTS)
    def test_objects_follow_the_documented_rules(self, frame: dict[str, Any]) -> None:
        """JSON objects: accepted exactly when type, id, method and params are usable;
        a usable id is kept on the error so it gets a ``res``."""
        outcome = self.parse(json.dumps(frame).encode())
        # The text ingress rule: the gateway sees lone surrogates as U+FFFD.
        frame = guard_value(copy.deepcopy(frame))
        raw_id = frame.get("id")
        usable_id = isinstance(raw_id, str) and 0 < len(raw_id) <= MAX_REQUEST_ID_LENGTH
        method = frame.get("method")
        usable_method = isinstance(method, str) and 0 < len(method) <= MAX_METHOD_LENGTH
        params = frame.get("params")
        valid = (
            frame.get("type") == "req"
            and usable_id
            and usable_method
            and (params is None or isinstance(params, dict))
        )
        if valid:
            self.assertIsInstance(outcome, RequestFrame)
            assert isinstance(outcome, RequestFrame)
            self.assertEqual((outcome.id, outcome.method), (raw_id, method))
            self.assertEqual(outcome.params, params or {})
        else:
            self.assertIsInstance(outcome, FrameError)
            assert isinstance(outcome, FrameError)
            self.assertEqual(outcome.request_id, raw_id if usable_id else None)
        self.assertAnswerable(outcome)

    @settings(derandomize=True, max_examples=200, deadline=None)
    @given(
        code=st.text(max_size=10),
        message=st.text(max_size=20),
        retry=st.none() | st.integers(-(10**6), 10**6) | st.floats(-1e6, 1e6),
    )
    def test_error_frames_always_have_code_and_message(
        self, code: str, message: str, retry: float | None
    ) -> None:
        """An error ``res`` can only be built with a non-empty code and message."""
        try:
            error = RequestError(code, message, retry_after_ms=None if retry is None else retry)  # type: ignore[arg-type]  # floats on purpose
        except ValueError:
            self.assertFalse(code and message)
            return
        shape = json.loads(encode(response_error("1", error)))["error"]
        self.assertEqual((shape["code"], shape["message"]), (code, message))
        if retry is not None:
            self.assertGreaterEqual(shape["retryAfterMs"], 0)
