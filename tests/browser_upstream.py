"""A scripted OpenAI-compatible upstream for the Control UI's browser tests.

Run as ``python -m tests.browser_upstream``: it serves the project's fake
upstream on a free loopback port, prints ``upstream listening on <port>``,
and answers each request by a keyword in its last user message (see
:data:`SCRIPTS`), so one gateway can show every case a browser test needs.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.server import Request, Site

from openclaw.testing import FakeOpenAIUpstream, FakeReply, FakeToolCall

#: The text every XSS case sends back: each line would run script if rendered raw.
XSS_REPLY = (
    "XSS probe start\n\n"
    "<script>window.__xss = 'script'</script>\n\n"
    '<img src="x" onerror="window.__xss = \'img\'">\n\n'
    "[click me](javascript:window.__xss='link')\n\n"
    "<a href=\"javascript:window.__xss='raw-link'\">raw link</a>\n\n"
    "<div onmouseover=\"window.__xss='div'\">raw html <b>bold</b></div>\n\n"
    "<iframe src=\"javascript:window.__xss='iframe'\"></iframe>\n\n"
    '<svg><script>window.__xss="svg"</script></svg>\n\n'
    '<table background="http://127.0.0.1:9/bg.png"><tr>'
    '<td background="http://127.0.0.1:9/td.png">table cell</td></tr></table>\n\n'
    '<a ping="http://127.0.0.1:9/ping">pinging link</a>\n\n'
    "XSS probe end"
)
CODE_REPLY = (
    "Here is **Python**:\n\n```python\ndef greet(name):\n    return f'hi {name}'\n```\n\nDone."
)
SLOW_WORDS = 400
#: An answer taller than the window (the scrolling tests).
ESSAY_REPLY = "\n\n".join(f"Paragraph {n}: " + "words to read " * 30 for n in range(12))

#: keyword in the last user message -> the reply.
SCRIPTS: dict[str, FakeReply] = {
    "xss": FakeReply(text=XSS_REPLY, chunks=3),
    "code": FakeReply(text=CODE_REPLY, chunks=4),
    # Two words a chunk, ten chunks a second: a line of the conversation fills
    # in about a second (the scrolling test waits for it to grow twice), and
    # the answer runs for 20 s, far longer than any test lets it.
    "slow": FakeReply(text="tick " * SLOW_WORDS, chunks=SLOW_WORDS // 2, chunk_delay=0.1),
    "essay": FakeReply(text=ESSAY_REPLY, chunks=3),
    "fail": FakeReply.failing(400, "the fake model refused this request"),
    # A built-in tool that runs until it is killed (the CLI's Ctrl-C test).
    "sleeper": FakeReply(
        tool_calls=(FakeToolCall(name="exec", arguments='{"command": "sleep 3071"}'),),
    ),
    "tool": FakeReply(
        text="Let me look that up.",
        tool_calls=(
            FakeToolCall(name="web_search", arguments='{"query": "<b>weather</b> in Paris"}'),
        ),
    ),
    # Another turn's call: the fake names its calls call_fake_<n> in every turn.
    "lookup": FakeReply(
        text="Let me look again.",
        tool_calls=(FakeToolCall(name="web_search", arguments='{"query": "weather in Rome"}'),),
    ),
}


def _last_user_text(body: Any) -> str:
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _after_tool(body: Any) -> bool:
    messages = body.get("messages") if isinstance(body, dict) else None
    last = messages[-1] if messages else None
    return isinstance(last, dict) and last.get("role") == "tool"


class ScriptedUpstream(FakeOpenAIUpstream):
    """Chooses each reply from the request's last user message."""

    def render_POST(self, request: Request) -> bytes | int:
        """Queue the scripted reply, then answer as the fake does."""
        assert request.content is not None
        raw = request.content.read()
        request.content.seek(0)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        said = _last_user_text(body)
        reply = next((r for key, r in SCRIPTS.items() if key in said.lower()), None)
        if _after_tool(body):
            # The agent ran the tool and asks again: answer, do not call it again.
            reply = FakeReply(text="The tool has answered.", chunks=1)
        self.enqueue(reply or FakeReply(text=f"You said: **{said}**", chunks=2))
        return super().render_POST(request)


def main() -> None:
    """Serve until killed; the port goes to stdout."""
    from twisted.internet import reactor

    fake = ScriptedUpstream(reactor)
    port = reactor.listenTCP(0, Site(fake), interface="127.0.0.1")  # type: ignore[arg-type]  # typing note: Site is a ServerFactory at runtime
    print(f"upstream listening on {port.getHost().port}", flush=True)  # type: ignore[attr-defined]  # typing note: an IPv4Address
    reactor.run()


if __name__ == "__main__":
    main()
