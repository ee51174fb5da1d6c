"""A scripted OpenAI-compatible model on a thread, for the multi-process tests.

The gateway processes of those tests reach it over loopback like any
provider; a subclass says what to answer from the request it got. Replies are
streamed (SSE), as the gateway's ``openai-completions`` provider asks.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: One streamed chunk's delta and finish reason.
Frame = tuple[dict[str, Any], str | None]


def text_of(content: Any) -> str:
    """A message's content as text (a string, or a list of text parts)."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


class ScriptedModel(BaseHTTPRequestHandler):
    """Answers every POST with the frames :meth:`reply` makes from the request."""

    def reply(self, request: dict[str, Any]) -> list[Frame]:
        """The deltas to stream for ``request`` (the parsed chat request)."""
        raise NotImplementedError

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        frames = self.reply(json.loads(self.rfile.read(length)))
        body = b"".join(
            b"data: "
            + json.dumps(
                {
                    "id": "chatcmpl-scripted",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": "scripted",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            ).encode()
            + b"\n\n"
            for delta, finish in frames
        )
        body += b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def serve(handler: type[ScriptedModel]) -> ThreadingHTTPServer:
    """Serve ``handler`` on a free loopback port from a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
