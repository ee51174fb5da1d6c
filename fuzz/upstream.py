"""The fuzzer's model upstream: :class:`FakeOpenAIUpstream` with one failure per model.

``python -m fuzz.upstream --port 0`` prints ``listening on 127.0.0.1:<port>``.
The reply is chosen by the request's ``model`` (see :data:`PROFILES`): the
gateway's agents point at ``fake/<profile>``, so a fuzzed chat request that
reaches agent ``e500`` meets an upstream 500, agent ``reset`` a connection
reset, and so on. Those are the "mapped upstream failures" the fuzzer expects
as 4xx/5xx with OpenAI error bodies.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web import http
from twisted.web.server import Request, Site

from openclaw.testing import FakeOpenAIUpstream, FakeReply, FakeToolCall

#: Model name -> reply. Delays are real seconds (the fake runs on the reactor).
PROFILES: Mapping[str, FakeReply] = {
    "ok": FakeReply(text="Hello from the fuzz upstream, in a few words."),
    "tools": FakeReply(text="", tool_calls=(FakeToolCall("get_weather", '{"city":"x"}'),)),
    "e500": FakeReply.failing(500, "upstream exploded"),
    "e502": FakeReply.failing(502, "bad gateway"),
    "e503": FakeReply.failing(503, "overloaded", type="overloaded_error"),
    "e429": FakeReply.rate_limited("1"),
    "e401": FakeReply.failing(401, "bad key sk-fuzz-0123456789abcdef", code="invalid_api_key"),
    "e403": FakeReply.failing(403, "no access"),
    "e400": FakeReply.failing(400, "context too long", code="context_length_exceeded"),
    "reset": FakeReply(mode="reset_before_headers"),
    "midreset": FakeReply(mode="reset_mid_stream", fail_after_chunks=2),
    "malformed": FakeReply(mode="malformed", fail_after_chunks=1),
    "errorframe": FakeReply(mode="error_frame", fail_after_chunks=1),
    "stall": FakeReply(mode="stall", fail_after_chunks=1),
    "slow": FakeReply(text="one two three four five six seven eight", chunk_delay=0.05),
    "endless": FakeReply(mode="endless", chunk_delay=0.01),
    "garbage": FakeReply(error_body=b"<html>not json</html>", status=500),
}
#: A profile whose error quotes the request's own headers back (see ``render_POST``),
#: as some upstreams do: configured header values must still never leak.
ECHO_PROFILE = "echo"
#: The configured provider header the echo profile quotes.
ECHOED_HEADER = b"x-upstream-pass"


class FuzzUpstream(FakeOpenAIUpstream):
    """Answers by profile and keeps no per-request records (the fuzzer sends many)."""

    def render_POST(self, request: Request) -> bytes | int:
        """Pick the profile named by the body's ``model``, answer as the fake does."""
        content = request.content
        assert content is not None
        raw = content.read()
        content.seek(0)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        model = body.get("model") if isinstance(body, dict) else None
        if model == ECHO_PROFILE:
            echoed = (request.getHeader(ECHOED_HEADER) or b"").decode("latin-1")
            self.reply = FakeReply.failing(400, f"rejected header X-Upstream-Pass: {echoed}")
        else:
            self.reply = PROFILES.get(model if isinstance(model, str) else "", PROFILES["ok"])
        result = super().render_POST(request)
        self.requests.clear()
        return result


class QuietSite(Site):
    """No access log: the fuzzer sends thousands of requests."""

    def log(self, request: http.Request) -> None:
        """Log nothing."""


def build_site(clock: IReactorTime) -> Site:
    """The upstream's site."""
    return QuietSite(FuzzUpstream(clock, api_key="fuzz-upstream-key"))


def main(argv: list[str] | None = None) -> None:
    """Serve on loopback until killed."""
    parser = argparse.ArgumentParser(description="the fuzzer's fake model upstream")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    from twisted.internet import reactor as installed

    reactor: Any = installed
    port = reactor.listenTCP(args.port, build_site(reactor), interface="127.0.0.1", backlog=1024)
    sys.stdout.write(f"listening on 127.0.0.1:{port.getHost().port}\n")
    sys.stdout.flush()
    reactor.run()


if __name__ == "__main__":
    main()
