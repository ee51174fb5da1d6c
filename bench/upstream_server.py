"""The benchmark's upstream: :class:`FakeOpenAIUpstream` served on a loopback port.

Run ``python -m bench.upstream_server --port 0`` (it prints ``listening on
127.0.0.1:<port>`` once bound). Knobs: ``--chunks``, ``--bytes-per-chunk``,
``--chunk-delay``, ``--first-token-delay`` set the default reply; each
``--profile NAME=CHUNKS:BYTES:CHUNK_DELAY:FIRST_TOKEN_DELAY`` gives the reply
for requests whose ``model`` is ``NAME``, so one upstream (and one gateway
config, one agent per profile) serves every scenario without restarts.

``GET /stats`` answers the counters as JSON (``?reset=1`` zeroes them
afterwards): requests, streams finished, streams the client closed early
(the gateway's upstream connection going away), bytes written, backpressure
pauses, and for streams whose request carries a ``bench-id-<n>`` marker the
``time.monotonic()`` at which the client closed them (CLOCK_MONOTONIC is
system-wide on Linux, so the load client can compare it with its own).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request

from bench.r1_server import QuietSite
from openclaw.testing import FakeOpenAIUpstream, FakeReply

_MODEL = re.compile(rb'"model"\s*:\s*"([^"]*)"')
_MARKER = re.compile(rb"bench-id-(\d+)")
_STREAM = re.compile(rb'"stream"\s*:\s*true')


@attrs.frozen
class ProfileSpec:
    """A reply profile; the reply is built on first use (S4's is 20 MB of text)."""

    chunks: int
    bytes_per_chunk: int
    chunk_delay: float = 0.0
    first_token_delay: float = 0.0

    def reply(self) -> FakeReply:
        """The fake's reply for this profile."""
        return FakeReply.sized(
            self.chunks,
            self.bytes_per_chunk,
            chunk_delay=self.chunk_delay,
            first_token_delay=self.first_token_delay,
        )


def parse_profile(text: str) -> tuple[str, ProfileSpec]:
    """``NAME=CHUNKS:BYTES:CHUNK_DELAY:FIRST_TOKEN_DELAY`` as a named profile."""
    name, _, spec = text.partition("=")
    parts = spec.split(":")
    if not name or len(parts) != 4:
        raise ValueError(f"bad profile {text!r}: want NAME=CHUNKS:BYTES:DELAY:FIRST_DELAY")
    return name, ProfileSpec(int(parts[0]), int(parts[1]), float(parts[2]), float(parts[3]))


class BenchUpstream(FakeOpenAIUpstream):
    """The fake upstream with per-model replies and bounded bookkeeping.

    The fake keeps every request it received (tests inspect them); a
    benchmark sends hundreds of thousands, so this subclass counts them and
    drops the bodies.
    """

    def __init__(
        self,
        clock: IReactorTime,
        default: FakeReply,
        profiles: Mapping[str, ProfileSpec],
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock, default)
        self.default = default
        self.profiles = dict(profiles)
        self._replies: dict[str, FakeReply] = {}
        self._now = now
        self.total_requests = 0
        self.streams_started = 0
        #: marker -> monotonic time the client closed that stream early.
        self.close_times: dict[str, float] = {}

    def render_POST(self, request: Request) -> bytes | int:
        """Pick the reply by model, answer as the fake does, forget the body."""
        content = request.content
        assert content is not None
        raw = content.read()
        content.seek(0)
        found = _MODEL.search(raw)
        self.reply = self.default
        if found is not None:
            self.reply = self._reply_for(found.group(1).decode("utf-8", "replace"))
        result = super().render_POST(request)
        self.total_requests += 1
        self.requests.clear()
        if _STREAM.search(raw) is not None:
            self.streams_started += 1
            marker = _MARKER.search(raw)
            if marker is not None:
                key = marker.group(1).decode("ascii")
                request.notifyFinish().addErrback(self._closed_early, key)
        return result

    def _reply_for(self, model: str) -> FakeReply:
        reply = self._replies.get(model)
        if reply is None:
            spec = self.profiles.get(model)
            if spec is None:
                return self.default
            reply = spec.reply()
            if spec.chunks * spec.bytes_per_chunk < 1 << 20:
                self._replies[model] = reply  # big ones are rebuilt, not kept
        return reply

    def _closed_early(self, _failure: Failure, key: str) -> None:
        self.close_times[key] = self._now()

    def stats(self) -> dict[str, Any]:
        """The counters, as ``/stats`` answers them."""
        return {
            "requests": self.total_requests,
            "streams_started": self.streams_started,
            "finished": self.finished,
            "client_closed": self.client_closed,
            "active_streams": self.active_streams,
            "bytes_written": self.bytes_written,
            "pauses": self.pauses,
            "close_times": dict(self.close_times),
        }

    def reset(self) -> None:
        """Zero the counters (between scenarios)."""
        self.total_requests = 0
        self.streams_started = 0
        self.finished = 0
        self.client_closed = 0
        self.bytes_written = 0
        self.pauses = 0
        self.close_times.clear()


class StatsResource(Resource):
    """``GET /stats``: the upstream's counters as JSON."""

    isLeaf = True

    def __init__(self, upstream: BenchUpstream) -> None:
        super().__init__()
        self._upstream = upstream

    def render_GET(self, request: Request) -> bytes:
        """Answer the counters; ``?reset=1`` zeroes them after reading."""
        body = json.dumps(self._upstream.stats()).encode("utf-8")
        if request.args and request.args.get(b"reset") == [b"1"]:
            self._upstream.reset()
        request.setHeader(b"content-type", b"application/json")
        return body


class UpstreamRoot(Resource):
    """``/stats`` for the harness, everything else to the fake."""

    def __init__(self, upstream: BenchUpstream) -> None:
        super().__init__()
        self._upstream = upstream
        self.putChild(b"stats", StatsResource(upstream))

    def getChild(self, path: bytes, request: Request) -> Resource:
        """Everything but ``/stats`` goes to the fake (it reads ``request.path``)."""
        return self._upstream


def build_site(
    clock: IReactorTime, default: FakeReply, profiles: Mapping[str, ProfileSpec]
) -> tuple[QuietSite, BenchUpstream]:
    """The upstream's Site and its fake."""
    upstream = BenchUpstream(clock, default, profiles)
    return QuietSite(UpstreamRoot(upstream)), upstream


def main(argv: list[str] | None = None) -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--bytes-per-chunk", type=int, default=20)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--profile", action="append", default=[], type=parse_profile)
    args = parser.parse_args(argv)

    from twisted.internet import reactor as installed

    reactor: Any = installed

    default = FakeReply.sized(
        args.chunks,
        args.bytes_per_chunk,
        chunk_delay=args.chunk_delay,
        first_token_delay=args.first_token_delay,
    )
    site, _upstream = build_site(reactor, default, dict(args.profile))
    port = reactor.listenTCP(args.port, site, interface="127.0.0.1", backlog=2048)
    sys.stdout.write(f"listening on 127.0.0.1:{port.getHost().port}\n")
    sys.stdout.flush()
    reactor.run()


if __name__ == "__main__":
    main()
