"""Frame parsing and encoding of the WebSocket protocol, and the log ring buffer."""

from __future__ import annotations

import json

from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from openclaw.gateway.ws.frames import (
    MAX_REQUEST_ID_LENGTH,
    FrameError,
    RequestError,
    encode,
    encode_event_with_payload_json,
    event_frame,
    parse_request,
    response_error,
    response_ok,
)
from openclaw.gateway.ws.logbuffer import MAX_LINE_CHARS, LogBuffer, format_log_line


class ParseRequestTests(SynchronousTestCase):
    def test_request_with_params(self) -> None:
        """A well-formed req yields its id, method and params."""
        frame = parse_request(b'{"type":"req","id":"1:x","method":"health","params":{"a":1}}')
        self.assertEqual((frame.id, frame.method, dict(frame.params)), ("1:x", "health", {"a": 1}))

    def test_absent_or_null_params_are_empty(self) -> None:
        """`openclaw health` sends no params key; null is treated the same."""
        for raw in (
            b'{"type":"req","id":"2:x","method":"health"}',
            b'{"type":"req","id":"2:x","method":"health","params":null}',
        ):
            self.assertEqual(dict(parse_request(raw).params), {})

    def test_malformed_json_has_no_request_id(self) -> None:
        """Invalid JSON cannot be answered with a res: no id is known."""
        with self.assertRaises(FrameError) as caught:
            parse_request(b"{not json")
        self.assertIsNone(caught.exception.request_id)
        self.assertIn("malformed frame", caught.exception.message)

    def test_invalid_utf8_is_malformed(self) -> None:
        """Bytes that are not UTF-8 are a malformed frame, not a crash."""
        with self.assertRaises(FrameError):
            parse_request(b"\xff\xfe")

    def test_non_object_is_malformed(self) -> None:
        """A JSON array is not a frame."""
        with self.assertRaises(FrameError) as caught:
            parse_request(b"[1,2]")
        self.assertIsNone(caught.exception.request_id)

    def test_overlong_id_says_so(self) -> None:
        """An id over the limit is refused as too long, not as missing."""
        with self.assertRaises(FrameError) as caught:
            parse_request(b'{"type":"req","id":"%s","method":"health"}' % (b"x" * 257))
        self.assertIn("longer than 256 characters", caught.exception.message)
        self.assertIsNone(caught.exception.request_id)

    def test_wrong_type_keeps_the_id(self) -> None:
        """A frame with an id but the wrong type can still be answered by id."""
        with self.assertRaises(FrameError) as caught:
            parse_request(b'{"type":"event","id":"7:x","method":"health"}')
        self.assertEqual(caught.exception.request_id, "7:x")

    def test_missing_method_keeps_the_id(self) -> None:
        """A req without a method is answered by id."""
        with self.assertRaises(FrameError) as caught:
            parse_request(b'{"type":"req","id":"7:x"}')
        self.assertEqual(caught.exception.request_id, "7:x")
        self.assertIn("method", caught.exception.message)

    def test_non_object_params_keep_the_id(self) -> None:
        """Params that are not an object are an invalid-params error for that id."""
        with self.assertRaises(FrameError) as caught:
            parse_request(b'{"type":"req","id":"7:x","method":"agent","params":[1]}')
        self.assertEqual(caught.exception.request_id, "7:x")
        self.assertEqual(caught.exception.message, "invalid agent params: params must be an object")

    def test_oversized_or_empty_ids_are_refused(self) -> None:
        """Ids are echoed in every answer, so absurd ones are not accepted."""
        for bad in ("", "x" * (MAX_REQUEST_ID_LENGTH + 1)):
            raw = json.dumps({"type": "req", "id": bad, "method": "health"}).encode()
            with self.assertRaises(FrameError) as caught:
                parse_request(raw)
            self.assertIsNone(caught.exception.request_id)


class EncodeTests(SynchronousTestCase):
    def test_error_frames_always_carry_code_and_message(self) -> None:
        """RequestError refuses an empty code or message (the CLI drops such frames)."""
        with self.assertRaises(ValueError):
            RequestError("", "x")
        with self.assertRaises(ValueError):
            RequestError("X", "")

    def test_error_response_shape(self) -> None:
        """details, retryable, retryAfterMs and payload ride along when given."""
        error = RequestError(
            "UNAVAILABLE",
            "busy",
            details={"code": "Y"},
            retryable=True,
            retry_after_ms=-5,
            payload={"runId": "r"},
        )
        self.assertEqual(
            response_error("1:a", error),
            {
                "type": "res",
                "id": "1:a",
                "ok": False,
                "error": {
                    "code": "UNAVAILABLE",
                    "message": "busy",
                    "details": {"code": "Y"},
                    "retryable": True,
                    "retryAfterMs": 0,
                },
                "payload": {"runId": "r"},
            },
        )
        self.assertEqual(repr(error), "RequestError('UNAVAILABLE', 'busy')")

    def test_ok_response_and_event(self) -> None:
        """Success frames and events in the protocol's shapes, compact UTF-8 JSON."""
        self.assertEqual(
            encode(response_ok("1", {"é": 1})),
            '{"type":"res","id":"1","ok":true,"payload":{"é":1}}'.encode(),
        )
        self.assertEqual(
            event_frame("tick", {"ts": 1}), {"type": "event", "event": "tick", "payload": {"ts": 1}}
        )
        self.assertEqual(event_frame("tick", {}, 3)["seq"], 3)

    def test_lone_surrogates_are_escaped(self) -> None:
        """Client text with a lone surrogate cannot break encoding an answer."""
        data = encode(
            response_error("1", RequestError("INVALID_REQUEST", "unknown method: \ud800"))
        )
        self.assertEqual(json.loads(data)["error"]["message"], "unknown method: \ud800")
        data.decode("ascii")

    def test_prejsoned_event_matches_the_plain_encoding(self) -> None:
        """Wrapping a serialised payload gives the same JSON as encoding the frame."""
        for seq in (None, 9):
            wrapped = encode_event_with_payload_json("chat", b'{"a":[1]}', seq)
            self.assertEqual(json.loads(wrapped), event_frame("chat", {"a": [1]}, seq))


class LogBufferTests(SynchronousTestCase):
    def test_tail_returns_the_newest_lines_within_limits(self) -> None:
        """limit and maxBytes keep the newest lines and flag truncation."""
        buffer = LogBuffer(max_lines=10)
        for i in range(6):
            buffer.append(f"line {i}")
        tail = buffer.tail(limit=2)
        self.assertEqual((tail.lines, tail.cursor, tail.truncated), (("line 4", "line 5"), 6, True))
        self.assertEqual(buffer.tail(max_bytes=13).lines, ("line 5",))
        self.assertFalse(buffer.tail().truncated)

    def test_cursor_returns_only_newer_lines(self) -> None:
        """A follower passes the cursor back and gets only what is new."""
        buffer = LogBuffer()
        buffer.append("a")
        first = buffer.tail()
        buffer.append("b")
        buffer.append("c")
        second = buffer.tail(cursor=first.cursor)
        self.assertEqual((second.lines, second.reset, second.truncated), (("b", "c"), False, False))
        self.assertEqual(buffer.tail(cursor=second.cursor).lines, ())

    def test_ring_is_bounded_in_lines_and_bytes(self) -> None:
        """Old lines are dropped; a cursor into dropped lines reports truncation."""
        buffer = LogBuffer(max_lines=3, max_bytes=1000)
        for i in range(10):
            buffer.append(f"n{i}")
        self.assertEqual(len(buffer), 3)
        tail = buffer.tail(cursor=2)
        self.assertEqual((tail.lines, tail.truncated), (("n7", "n8", "n9"), True))
        small = LogBuffer(max_lines=100, max_bytes=10)
        for _ in range(5):
            small.append("abcd")
        self.assertEqual(len(small), 2)
        self.assertEqual(small.tail().size, 10)

    def test_foreign_cursor_resets(self) -> None:
        """A cursor from a previous gateway process starts over with reset set."""
        buffer = LogBuffer()
        buffer.append("x")
        tail = buffer.tail(cursor=500)
        self.assertEqual((tail.lines, tail.reset), (("x",), True))

    def test_observer_formats_events_on_one_line(self) -> None:
        """Log events become one line with time, level, namespace and failure."""
        buffer = LogBuffer()
        try:
            raise ValueError("boom")
        except ValueError:
            failure = Failure()
        buffer(
            {
                "log_format": "hello {who}\nsecond",
                "who": "world",
                "log_level": LogLevel.warn,
                "log_namespace": "openclaw.x",
                "log_time": 0.5,
                "log_failure": failure,
            }
        )
        (line,) = buffer.tail().lines
        self.assertEqual(
            line,
            "1970-01-01T00:00:00.500Z warn [openclaw.x] hello world\\nsecond: ValueError: boom",
        )

    def test_observer_never_raises(self) -> None:
        """A formatter that fails drops the event instead of breaking logging."""

        def broken(event: object) -> str:
            raise RuntimeError("no")

        buffer = LogBuffer(formatter=broken)
        buffer({"log_format": "x"})
        self.assertEqual(len(buffer), 0)

    def test_huge_lines_are_cut(self) -> None:
        """One enormous message cannot take the whole buffer."""
        line = format_log_line({"log_format": "x" * (MAX_LINE_CHARS * 2), "log_time": 0})
        self.assertEqual(len(line), MAX_LINE_CHARS)
        self.assertTrue(line.endswith("\u2026"))

    def test_limits_must_hold_a_line(self) -> None:
        """A buffer that cannot hold one line is a configuration error."""
        with self.assertRaises(ValueError):
            LogBuffer(max_lines=0)
