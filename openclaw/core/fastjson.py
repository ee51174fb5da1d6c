# -*- test-case-name: tests.test_provider_sse,tests.test_sessions_surrogates -*-
"""JSON on the hot paths (upstream chunks, transcripts, answers): orjson, with
the standard library as fallback.

Parsing a stream chunk with ``orjson`` takes about a fifth of ``json.loads``
(1.1-1.7 us against 6.8 us for a 170-byte chat completion chunk, measured
with ``timeit`` on the development machine); a model call parses one per
chunk. Where orjson refuses what the standard library accepts (``NaN``,
``Infinity``), the standard library decides. One difference remains: orjson
reads an integer beyond 64 bits as a float; no field a provider reads
(indices, token counts) is ever that large.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """Parse one JSON document; raises ValueError when it is not JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as ``json.dumps(..., ensure_ascii=False,
    separators=(",", ":"))`` encodes it, with orjson's differences: ``NaN``
    and infinities become ``null`` (the standard library writes ``NaN``, which
    no JSON reader, OpenClaw's ``JSON.parse`` included, accepts), a float may
    be spelled differently (``0.00001`` for ``1e-05``), and enums, dataclasses,
    dates and UUIDs are encoded rather than refused. Integers beyond 64 bits,
    non-string keys and text with a lone surrogate go to the standard library
    (which raises ``UnicodeEncodeError`` for the last; callers that must write
    anything use :func:`dumps_escaped`)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return _ENCODER.encode(value).encode("utf-8")


def dumps_escaped(value: Any) -> bytes:
    """:func:`dumps`, valid UTF-8 whatever the ``str`` values hold: a value
    with a lone surrogate is written with ``\\uXXXX`` escapes throughout (as
    JavaScript's ``JSON.stringify`` writes a lone surrogate), which every JSON
    reader turns back into the same ``str``. Costs nothing more unless
    :func:`dumps` refuses."""
    try:
        return dumps(value)
    except UnicodeEncodeError:
        return _ASCII_ENCODER.encode(value).encode("ascii")
