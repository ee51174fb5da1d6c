"""R1: the floor of the Twisted stack, a minimal twisted.web resource.

It answers ``POST`` with the same chat completion JSON the fake upstream
sends, precomputed, without parsing the request: what is left is
twisted.web's own cost per request (HTTP parsing, the resource lookup, the
response). A request with ``"stream": true`` gets the same SSE frames the
fake would send, one ``request.write`` per frame. ``--profile`` (as for the
upstream) picks the frame count and size by model name.

``python -m bench.r1_server --port 0`` prints ``listening on 127.0.0.1:<port>``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

_MODEL = re.compile(rb'"model"\s*:\s*"([^"]*)"')
_STREAM = re.compile(rb'"stream"\s*:\s*true')


def _text(chunks: int, size: int) -> list[str]:
    unit = "abcdefghijklmnopqrstuvwxyz0123456789"
    piece = (unit * (size // len(unit) + 1))[:size]
    return [piece] * chunks


@attrs.frozen
class Canned:
    """One precomputed answer: the JSON body and the SSE frames."""

    body: bytes
    frames: tuple[bytes, ...]

    @classmethod
    def build(cls, model: str, chunks: int, size: int) -> Canned:
        """The answer of ``chunks`` pieces of ``size`` bytes, as the fake shapes it."""
        pieces = _text(chunks, size)
        usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
        body = {
            "id": "chatcmpl-r1",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(pieces)},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }

        def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
            chunk = {
                "id": "chatcmpl-r1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + _dumps(chunk) + b"\n\n"

        frames = [frame({"role": "assistant", "content": ""})]
        frames += [frame({"content": p}) for p in pieces]
        frames.append(frame({}, "stop"))
        frames.append(b"data: [DONE]\n\n")
        return cls(body=_dumps(body), frames=tuple(frames))


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


class R1Resource(Resource):
    """Answers every POST with a canned completion (or its SSE stream)."""

    isLeaf = True

    def __init__(self, default: Canned, profiles: Mapping[str, Canned]) -> None:
        super().__init__()
        self._default = default
        self._profiles = dict(profiles)

    def render_POST(self, request: Request) -> bytes | int:
        """The canned answer for the request's model."""
        assert request.content is not None
        raw = request.content.read()
        canned = self._default
        if self._profiles:
            found = _MODEL.search(raw)
            if found is not None:
                canned = self._profiles.get(found.group(1).decode("utf-8", "replace"), canned)
        if _STREAM.search(raw) is None:
            request.setHeader(b"content-type", b"application/json")
            return canned.body
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-cache")
        for frame in canned.frames:
            request.write(frame)
        request.finish()
        return NOT_DONE_YET


class QuietSite(Site):
    """A Site without the per-request access log (a reference, not the subject)."""

    def log(self, request: http.Request) -> None:
        """Log nothing."""


def parse_profile(text: str) -> tuple[str, Canned]:
    """``NAME=CHUNKS:BYTES[:...]`` (delays, if given, are ignored)."""
    name, _, spec = text.partition("=")
    parts = spec.split(":")
    if not name or len(parts) < 2:
        raise ValueError(f"bad profile {text!r}: want NAME=CHUNKS:BYTES")
    return name, Canned.build(name, int(parts[0]), int(parts[1]))


def main(argv: list[str] | None = None) -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser(description="R1: a minimal twisted.web reference")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--bytes-per-chunk", type=int, default=20)
    parser.add_argument("--profile", action="append", default=[], type=parse_profile)
    args = parser.parse_args(argv)

    from twisted.internet import reactor as installed

    reactor: Any = installed
    default = Canned.build("fake-model", args.chunks, args.bytes_per_chunk)
    site = QuietSite(R1Resource(default, dict(args.profile)))
    port = reactor.listenTCP(args.port, site, interface="127.0.0.1", backlog=2048)
    sys.stdout.write(f"listening on 127.0.0.1:{port.getHost().port}\n")
    sys.stdout.flush()
    reactor.run()


if __name__ == "__main__":
    main()
