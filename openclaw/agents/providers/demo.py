# -*- test-case-name: tests.test_provider_demo -*-
"""``api: "demo"``: a built-in, offline, deterministic stand-in for a model.

It lets ``make run`` and tests work with no model and no network. It is not
a model and says so: the reply is ``Demo reply (the offline demo model, not an LLM): you
said "<your last message>".``, streamed word by word through the injected
clock with ``delayMs`` between words (0 still yields to the reactor between
words, and pause/resume/stop are honoured exactly as for a real upstream).

Two simple, documented conveniences exercise the rest of the gateway:

* if the request offers client tools and the last user message says
  ``call <tool name>``, the demo asks for that tool (arguments ``{}``,
  stop reason ``tool_calls``);
* if the last message is a tool result, the reply quotes that result.

``max_tokens`` caps the number of words (stop reason ``length``). Usage is a
rough word count: input words of the whole prompt, output words streamed.
"""

from __future__ import annotations

import re

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from openclaw.agents.providers.base import ModelCall, StreamOutcome, StreamSink
from openclaw.agents.types import StopReason, ToolCall, Usage
from openclaw.config.model import ProviderConfig

PREFIX = "Demo reply (the offline demo model, not an LLM):"
#: The quoted message is cut to this many characters.
QUOTE_CHARS = 200

_PIECES = re.compile(r"\s*\S+\s*")


@frozen
class DemoScript:
    """What the demo will stream for one call."""

    pieces: tuple[str, ...]
    tool_call: ToolCall | None
    stop_reason: StopReason
    input_tokens: int


def _quote(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > QUOTE_CHARS:
        text = text[: QUOTE_CHARS - 1] + "…"
    return text


def _words(text: str | None) -> int:
    return len(text.split()) if text else 0


def demo_script(call: ModelCall) -> DemoScript:
    """The deterministic reply for ``call`` (pure: same call, same script)."""
    input_tokens = _words(call.system_prompt) + sum(_words(m.content) for m in call.messages)
    last = call.messages[-1] if call.messages else None
    tool_call: ToolCall | None = None
    if last is not None and last.role == "tool":
        text = f'{PREFIX} the tool returned "{_quote(last.content)}".'
    else:
        said = next((m.content for m in reversed(call.messages) if m.role == "user"), "")
        for tool in call.tools:
            if re.search(rf"\bcall\s+{re.escape(tool.name)}\b", said, re.IGNORECASE):
                tool_call = ToolCall(
                    id=f"call_demo_{len(call.messages)}", name=tool.name, arguments="{}"
                )
                break
        if tool_call is not None:
            text = f"{PREFIX} calling the tool {tool_call.name}."
        else:
            text = f'{PREFIX} you said "{_quote(said)}".'
    pieces = tuple(_PIECES.findall(text))
    stop_reason: StopReason = "tool_calls" if tool_call is not None else "stop"
    params = call.stream_params
    if params is not None and params.max_tokens is not None and params.max_tokens < len(pieces):
        pieces = pieces[: max(params.max_tokens, 0)]
        tool_call = None
        stop_reason = "length"
    return DemoScript(pieces, tool_call, stop_reason, input_tokens)


@implementer(IPushProducer)
class DemoStream:
    """One demo reply being streamed through the clock."""

    def __init__(
        self, clock: IReactorTime, script: DemoScript, sink: StreamSink, delay_seconds: float
    ) -> None:
        self._clock = clock
        self._script = script
        self._sink = sink
        self._delay = delay_seconds
        self._next = 0
        self._call: IDelayedCall | None = None
        self._paused = False
        self._finished = False
        self._done: Deferred[StreamOutcome] = Deferred(lambda _d: self.stopProducing())

    @property
    def done(self) -> Deferred[StreamOutcome]:
        """Fires with the outcome, or fails with CancelledError after a stop."""
        return self._done

    def start(self) -> None:
        """Schedule the first word."""
        self._schedule()

    def pauseProducing(self) -> None:
        """Emit nothing until resumed."""
        if self._finished:
            return
        self._paused = True
        self._unschedule()

    def resumeProducing(self) -> None:
        """Continue with the next word."""
        if self._finished or not self._paused:
            return
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:
        """Abort; ``done`` fails with CancelledError (idempotent)."""
        if self._finished:
            return
        self._finished = True
        self._unschedule()
        self._done.errback(CancelledError("demo stream stopped"))

    def _schedule(self) -> None:
        if self._call is None:
            self._call = self._clock.callLater(self._delay, self._step)

    def _unschedule(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _step(self) -> None:
        self._call = None
        if self._finished or self._paused:
            return
        pieces = self._script.pieces
        if self._next < len(pieces):
            piece = pieces[self._next]
            self._next += 1
            self._sink.on_text(piece)
            if not self._finished and not self._paused:
                self._schedule()
            return
        script = self._script
        tool = script.tool_call
        if tool is not None:
            self._sink.on_tool_call(0, tool.id, tool.name, tool.arguments)
        output = len(pieces) + (1 if tool is not None else 0)
        usage = Usage(input=script.input_tokens, output=output, total=script.input_tokens + output)
        self._sink.on_usage(usage)
        self._complete(StreamOutcome(stop_reason=script.stop_reason, usage=usage))

    def _complete(self, outcome: StreamOutcome) -> None:
        if self._finished:  # the sink stopped us from inside a callback
            return
        self._finished = True
        self._done.callback(outcome)


class DemoProvider:
    """The offline stand-in provider (``api: "demo"``)."""

    def __init__(self, config: ProviderConfig, *, clock: IReactorTime) -> None:
        self._config = config
        self._clock = clock

    @property
    def provider_id(self) -> str:
        """The ``models.providers`` key."""
        return self._config.id

    def stream(self, call: ModelCall, sink: StreamSink) -> DemoStream:
        """Start streaming the demo reply; returns at once."""
        stream = DemoStream(
            self._clock, demo_script(call), sink, max(self._config.delay_ms, 0.0) / 1000.0
        )
        stream.start()
        return stream
