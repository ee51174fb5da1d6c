"""The incremental SSE parser on its own: splits, line endings, limits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.providers.sse import SSEError, SSEEvent, SSEParser

STREAM = (
    ": keep-alive comment\r\n"
    "event: delta\r\n"
    "id: 7\r\n"
    'data: {"text": "h\u00e9llo \u2603 \U0001f600"}\r\n'
    "\r\n"
    "data: line one\n"
    "data: line two\n"
    "retry: 1000\n"
    "\n"
    "data:no-space\r"
    "\r"
    "data: [DONE]\n\n"
).encode()

EXPECTED = [
    SSEEvent(data='{"text": "h\u00e9llo \u2603 \U0001f600"}', event="delta", id="7"),
    SSEEvent(data="line one\nline two", event="message", id="7"),
    SSEEvent(data="no-space", event="message", id="7"),
    SSEEvent(data="[DONE]", event="message", id="7"),
]


def parse_in_pieces(data: bytes, cuts: list[int]) -> list[SSEEvent]:
    """Feed ``data`` split at ``cuts`` and close the parser."""
    parser = SSEParser()
    events: list[SSEEvent] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        events.extend(parser.feed(data[start:cut]))
        start = cut
    events.extend(parser.close())
    return events


class SSEParserTests(SynchronousTestCase):
    """SSEParser follows the event-stream rules whatever the chunking."""

    def test_whole_stream(self) -> None:
        """Comments, CRLF, CR, LF, multi-line data, id and event fields all parse."""
        self.assertEqual(parse_in_pieces(STREAM, []), EXPECTED)

    def test_every_single_split_point(self) -> None:
        """Splitting the stream into two pieces at any byte gives the same events,
        including inside a CRLF pair and inside multi-byte UTF-8 characters."""
        for cut in range(len(STREAM) + 1):
            self.assertEqual(parse_in_pieces(STREAM, [cut]), EXPECTED, f"cut at {cut}")

    def test_lf_only_stream_every_split(self) -> None:
        """The LF-only fast path gives the same events at every split point."""
        lf_only = STREAM.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        for cut in range(len(lf_only) + 1):
            self.assertEqual(parse_in_pieces(lf_only, [cut]), EXPECTED, f"cut at {cut}")

    def test_byte_by_byte(self) -> None:
        """Feeding one byte at a time gives the same events."""
        self.assertEqual(parse_in_pieces(STREAM, list(range(len(STREAM)))), EXPECTED)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
    def test_random_splits(self, cuts: list[int]) -> None:
        """Any set of split points gives the same events (property)."""
        self.assertEqual(parse_in_pieces(STREAM, cuts), EXPECTED)

    def test_crlf_split_does_not_make_an_empty_line(self) -> None:
        """A CR ending one read and its LF starting the next are one line end,
        so they do not dispatch an event early."""
        parser = SSEParser()
        self.assertEqual(parser.feed(b"data: a\r"), [])
        self.assertEqual(parser.feed(b"\ndata: b\r"), [])
        self.assertEqual(parser.feed(b"\n\r\n"), [SSEEvent(data="a\nb")])

    def test_event_without_data_is_dropped(self) -> None:
        """An event with only an ``event:`` field dispatches nothing, and its type
        does not leak into the next event."""
        parser = SSEParser()
        self.assertEqual(parser.feed(b"event: ping\n\ndata: x\n\n"), [SSEEvent(data="x")])

    def test_field_without_colon_and_unknown_fields(self) -> None:
        """``data`` alone is an empty data line; unknown fields are ignored."""
        parser = SSEParser()
        self.assertEqual(parser.feed(b"data\nfoo: bar\ndata: y\n\n"), [SSEEvent(data="\ny")])

    def test_leading_bom_is_ignored(self) -> None:
        """A UTF-8 byte order mark before the first line is not part of the field name."""
        parser = SSEParser()
        self.assertEqual(parser.feed(b"\xef\xbb\xbfdata: z\n\n"), [SSEEvent(data="z")])

    def test_close_flushes_an_unterminated_event(self) -> None:
        """At the end of the body, a last event without its blank line is kept."""
        parser = SSEParser()
        self.assertEqual(parser.feed(b"data: [DONE]"), [])
        self.assertEqual(parser.close(), [SSEEvent(data="[DONE]")])
        self.assertEqual(parser.close(), [])

    def test_invalid_utf8_is_replaced(self) -> None:
        """Bytes that are not UTF-8 become U+FFFD instead of failing the stream."""
        parser = SSEParser()
        self.assertEqual(parser.feed(b"data: a\xffb\n\n"), [SSEEvent(data="a\ufffdb")])

    def test_line_too_long(self) -> None:
        """A line longer than the limit raises SSEError even before it ends."""
        parser = SSEParser(max_line_bytes=100)
        parser.feed(b"data: " + b"x" * 90)
        with self.assertRaises(SSEError):
            parser.feed(b"x" * 20)

    def test_complete_line_too_long(self) -> None:
        """A complete line longer than the limit in one read raises SSEError."""
        parser = SSEParser(max_line_bytes=100)
        with self.assertRaises(SSEError):
            parser.feed(b"data: " + b"x" * 200 + b"\n\n")

    def test_default_limit_is_one_mebibyte(self) -> None:
        """The default accepts a line just under 1 MiB and refuses one over it."""
        parser = SSEParser()
        big = b"x" * (1024 * 1024 - 10)
        self.assertEqual(parser.feed(b"data: " + big + b"\n\n"), [SSEEvent(data=big.decode())])
        with self.assertRaises(SSEError):
            parser.feed(b"data: " + b"x" * (1024 * 1024 + 1))

    def test_event_too_large(self) -> None:
        """Many data lines in one event are bounded too."""
        parser = SSEParser(max_line_bytes=100, max_event_bytes=250)
        with self.assertRaises(SSEError):
            parser.feed(b"data: " + b"y" * 90 + b"\n" + (b"data: " + b"y" * 90 + b"\n") * 2)


class FastJSONTests(SynchronousTestCase):
    """The providers' JSON helpers accept exactly what the standard library does."""

    def test_loads_where_orjson_differs_from_json(self) -> None:
        """NaN still parses (the fallback); an integer beyond 64 bits becomes a
        float (orjson's rule; no upstream field we read is that large); non-JSON
        raises ValueError."""
        import json
        import math

        from openclaw.core.fastjson import loads

        self.assertTrue(math.isnan(loads(b"[NaN]")[0]))
        self.assertEqual(loads("[123456789012345678901234567890]"), [1.2345678901234568e29])
        self.assertEqual(loads(b'{"t": "h\xc3\xa9"}'), json.loads('{"t": "h\u00e9"}'))
        self.assertRaises(ValueError, loads, "data: nope")
        self.assertRaises(ValueError, loads, b"\xff")

    def test_dumps_is_compact_utf8_json(self) -> None:
        """dumps gives compact, non-escaped UTF-8 and falls back for big integers."""
        from openclaw.core.fastjson import dumps

        self.assertEqual(dumps({"a": [1, "é"], "b": None}), '{"a":[1,"é"],"b":null}'.encode())
        self.assertEqual(dumps({"n": 2**70}), b'{"n":1180591620717411303424}')
        self.assertEqual(dumps({1: "int key"}), b'{"1":"int key"}')

    def test_dumps_writes_nan_as_null(self) -> None:
        """NaN and infinities (which loads accepts from an upstream) are written
        as null: the standard library's NaN is not JSON, and a transcript or an
        answer holding it could not be read back by OpenClaw or a client."""
        import json

        from openclaw.core.fastjson import dumps

        written = dumps({"a": float("nan"), "b": [float("inf"), -float("inf")]})
        self.assertEqual(written, b'{"a":null,"b":[null,null]}')
        self.assertEqual(json.loads(written), {"a": None, "b": [None, None]})

    def test_data_lines_split_anywhere(self) -> None:
        """A data-only stream fed one byte at a time gives the same events as one feed."""
        stream = b'data: {"a": 1}\n\ndata: x\ndata: y\n\nevent: e\ndata: z\n\n'
        whole = SSEParser().feed(stream)
        parser = SSEParser()
        pieces = [event for i in range(len(stream)) for event in parser.feed(stream[i : i + 1])]
        self.assertEqual(pieces, whole)
        self.assertEqual(
            whole,
            [SSEEvent(data='{"a": 1}'), SSEEvent(data="x\ny"), SSEEvent(data="z", event="e")],
        )
