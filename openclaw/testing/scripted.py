"""Public fakes for trial tests of code that embeds the gateway.

:class:`ScriptedProvider` is a :class:`~openclaw.agents.providers.base.ModelProvider`
whose replies you script (text chunks, tool calls, usage, failures, delays on
an injected clock, streams that hang until stopped). It records every
:class:`~openclaw.agents.providers.base.ModelCall` it receives and every
stream it returns, with their pause/resume/stop history.

:func:`make_runtime` builds a real :class:`~openclaw.agents.runtime.Runtime`
(real lanes, real on-disk session store in a temp dir) around it::

    clock = Clock()
    provider = ScriptedProvider([Reply.text("Hello", " there")], clock=clock)
    runtime = make_runtime(clock=clock, providers={"scripted": provider},
                           state_dir=self.mktemp())
    run = runtime.start(AgentRequest(agent_id="main", session_key="agent:main:main",
                                     message="hi", run_id="r1"))
    run_due(clock)              # runs the turn: each step is a call on the clock
    self.assertEqual(self.successResultOf(run.result).text, "Hello there")

:func:`run_due` runs everything a ``Clock`` has due without moving time.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path

from attrs import evolve, frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.task import Clock
from zope.interface import implementer

from openclaw.agents.providers.base import ModelCall, ModelProvider, StreamOutcome, StreamSink
from openclaw.agents.runtime import Runtime
from openclaw.agents.types import AgentEvent, AgentRun, StopReason, Usage
from openclaw.config.model import AgentDefaults, AgentsConfig, Config, SessionConfig

#: The provider id :func:`make_runtime` registers its default scripted provider under.
SCRIPTED_PROVIDER_ID = "scripted"
#: The model the default test configuration points every agent at.
SCRIPTED_MODEL = f"{SCRIPTED_PROVIDER_ID}/test-model"


@frozen
class ScriptedToolCall:
    """A tool call the scripted model makes; ``arguments`` (JSON text) is sent in
    ``pieces`` parts, as a real upstream streams it."""

    name: str
    arguments: str = "{}"
    id: str | None = None
    pieces: int = 1


@frozen
class Reply:
    """What one model call streams.

    Text ``chunks`` come first (each after ``delay`` seconds on the clock),
    then ``tool_calls``, then ``usage``; then the stream fails with ``error``
    if set, stays open until stopped if ``hang``, else ends with
    ``stop_reason`` (default ``tool_calls`` when there are tool calls, else
    ``stop``). ``usage`` defaults to a word count.
    """

    chunks: tuple[str, ...] = ()
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    usage: Usage | None = None
    stop_reason: StopReason | None = None
    error: Exception | None = None
    delay: float = 0.0
    hang: bool = False

    @classmethod
    def text(cls, *chunks: str, delay: float = 0.0, usage: Usage | None = None) -> Reply:
        """A plain text reply streamed as ``chunks``."""
        return cls(chunks=chunks, delay=delay, usage=usage)

    @classmethod
    def failure(cls, error: Exception, *chunks: str) -> Reply:
        """Stream ``chunks``, then fail with ``error`` (a ProviderError, usually)."""
        return cls(chunks=chunks, error=error)


def echo_reply(call: ModelCall) -> Reply:
    """The default for calls beyond the script: ``echo: <last user message>``."""
    said = next((m.content for m in reversed(call.messages) if m.role == "user"), "")
    return Reply.text("echo: ", said)


def _words(text: str | None) -> int:
    return len(text.split()) if text else 0


@implementer(IPushProducer)
class ScriptedStream:
    """One scripted model stream, driven by the clock, honouring flow control."""

    def __init__(
        self, call: ModelCall, reply: Reply, sink: StreamSink, clock: IReactorTime
    ) -> None:
        self.call = call
        self.reply = reply
        self._sink = sink
        self._clock = clock
        self.paused = False
        self.stopped = False
        self.finished = False
        self.pause_count = 0
        self.resume_count = 0
        #: Text chunks delivered to the sink so far.
        self.sent: list[str] = []
        self._steps: deque[tuple[float, Callable[[], None]]] = deque()
        for chunk in reply.chunks:
            self._steps.append((reply.delay, partial(self._send_text, chunk)))
        for index, tool in enumerate(reply.tool_calls):
            self._steps.extend(self._tool_steps(index, tool))
        self._steps.append((0.0, self._send_usage))
        self._pending: IDelayedCall | None = None
        self._done: Deferred[StreamOutcome] = Deferred(lambda _d: self.stopProducing())

    @property
    def done(self) -> Deferred[StreamOutcome]:
        """The same Deferred every time (ModelStream contract)."""
        return self._done

    def _tool_steps(
        self, index: int, tool: ScriptedToolCall
    ) -> list[tuple[float, Callable[[], None]]]:
        count = max(1, tool.pieces)
        size = -(-len(tool.arguments) // count) if tool.arguments else 0
        parts = [tool.arguments[i * size : (i + 1) * size] for i in range(count)] if size else [""]
        call_id = tool.id or f"call_scripted_{index}"
        steps: list[tuple[float, Callable[[], None]]] = []
        for n, part in enumerate(parts):
            first = n == 0
            steps.append(
                (
                    0.0,
                    partial(
                        self._sink.on_tool_call,
                        index,
                        call_id if first else None,
                        tool.name if first else None,
                        part,
                    ),
                )
            )
        return steps

    def _send_text(self, chunk: str) -> None:
        self.sent.append(chunk)
        self._sink.on_text(chunk)

    def _usage(self) -> Usage:
        if self.reply.usage is not None:
            return self.reply.usage
        prompt = _words(self.call.system_prompt) + sum(
            _words(m.content) for m in self.call.messages
        )
        output = sum(_words(c) for c in self.reply.chunks) + len(self.reply.tool_calls)
        return Usage(input=prompt, output=output, total=prompt + output)

    def _send_usage(self) -> None:
        self._sink.on_usage(self._usage())

    def start(self) -> None:
        """Schedule the first step (nothing is delivered before ``stream`` returns)."""
        self._schedule()

    def _schedule(self) -> None:
        if self._pending is not None or self.paused or self.finished:
            return
        delay = self._steps[0][0] if self._steps else 0.0
        self._pending = self._clock.callLater(delay, self._step)

    def _step(self) -> None:
        self._pending = None
        if self.paused or self.finished:
            return
        if self._steps:
            _, action = self._steps.popleft()
            action()
            self._schedule()
            return
        if self.reply.hang:
            return
        if self.reply.error is not None:
            self.finished = True
            self._done.errback(self.reply.error)
            return
        self.end()

    def end(self) -> None:
        """End now with the scripted outcome (also ends a ``hang`` stream)."""
        if self.finished:
            return
        self.finished = True
        self._cancel_pending()
        stop = self.reply.stop_reason or ("tool_calls" if self.reply.tool_calls else "stop")
        self._done.callback(StreamOutcome(stop_reason=stop, usage=self._usage()))

    def _cancel_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending.active():
            pending.cancel()

    def pauseProducing(self) -> None:
        """Deliver nothing until resumed."""
        self.pause_count += 1
        if self.finished:
            return
        self.paused = True
        self._cancel_pending()

    def resumeProducing(self) -> None:
        """Continue where the stream paused."""
        self.resume_count += 1
        if self.finished or not self.paused:
            return
        self.paused = False
        self._schedule()

    def stopProducing(self) -> None:
        """Abort ("close the upstream"): ``done`` fails with CancelledError."""
        if self.stopped or self.finished:
            self.stopped = True
            return
        self.stopped = True
        self.finished = True
        self._cancel_pending()
        self._done.errback(CancelledError("scripted stream stopped"))


class ScriptedProvider:
    """A :class:`ModelProvider` that replies from a script and records its calls."""

    def __init__(
        self,
        replies: Iterable[Reply | str] = (),
        *,
        clock: IReactorTime,
        provider_id: str = SCRIPTED_PROVIDER_ID,
        fallback: Callable[[ModelCall], Reply] = echo_reply,
    ) -> None:
        """
        :param replies: one per call, in order; a ``str`` is a one-chunk reply.
        :param clock: drives chunk delays (a ``Clock`` in tests).
        :param fallback: the reply for calls beyond the script.
        """
        self._clock = clock
        self._id = provider_id
        self._fallback = fallback
        self._replies: deque[Reply] = deque()
        self.calls: list[ModelCall] = []
        self.streams: list[ScriptedStream] = []
        self.add(*replies)

    @property
    def provider_id(self) -> str:
        return self._id

    def add(self, *replies: Reply | str) -> None:
        """Script further replies."""
        for reply in replies:
            self._replies.append(Reply.text(reply) if isinstance(reply, str) else reply)

    def stream(self, call: ModelCall, sink: StreamSink) -> ScriptedStream:
        """Record ``call`` and start streaming the next scripted reply."""
        self.calls.append(call)
        reply = self._replies.popleft() if self._replies else self._fallback(call)
        stream = ScriptedStream(call, reply, sink, self._clock)
        self.streams.append(stream)
        stream.start()
        return stream


def scripted_config(state_dir: Path | str, *, model: str = SCRIPTED_MODEL) -> Config:
    """A minimal configuration: one agent ``main`` on ``model``, sessions in ``state_dir``
    (``fsync: "never"``, as tests need no durability)."""
    return Config(
        agents=AgentsConfig(defaults=AgentDefaults(model_primary=model)),
        session=SessionConfig(fsync="never"),
        state_dir=Path(state_dir),
    )


def without_model_retry(config: Config) -> Config:
    """``config`` with the same-model retry budget off
    (``agents.defaults.modelRetry.maxRetries: 0``): a test of how a failure
    is reported sees it at once instead of after the retries' waits."""
    defaults = config.agents.defaults
    return evolve(
        config,
        agents=evolve(
            config.agents,
            defaults=evolve(defaults, model_retry=evolve(defaults.model_retry, max_retries=0)),
        ),
    )


def make_runtime(
    config: Config | None = None,
    *,
    clock: IReactorTime,
    providers: Mapping[str, ModelProvider] | Callable[[str], ModelProvider] | None = None,
    state_dir: Path | str | None = None,
) -> Runtime:
    """A real runtime for tests.

    :param config: default :func:`scripted_config` (agent ``main`` on
        ``scripted/test-model``).
    :param providers: default: a :class:`ScriptedProvider` (echo replies)
        under ``scripted``.
    :param state_dir: where sessions go; overrides ``config.state_dir``;
        default a fresh temp dir.
    """
    if config is None:
        config = scripted_config(state_dir or tempfile.mkdtemp(prefix="openclaw-test-"))
    elif state_dir is not None:
        config = evolve(config, state_dir=Path(state_dir))
    if providers is None:
        providers = {SCRIPTED_PROVIDER_ID: ScriptedProvider(clock=clock)}
    return Runtime(config, clock=clock, providers=providers)


def collect_events(run: AgentRun) -> list[AgentEvent]:
    """Subscribe to ``run`` and return the list its events are appended to."""
    events: list[AgentEvent] = []
    run.subscribe(events.append)
    return events


def run_due(clock: Clock, *, limit: int = 10_000) -> None:
    """Run every call due now on ``clock``, including those they schedule for
    now (``callLater(0, ...)``), without moving time forward."""
    for _ in range(limit):
        now = clock.seconds()
        if not any(call.getTime() <= now for call in clock.getDelayedCalls()):
            return
        clock.advance(0)
    raise RuntimeError(f"still busy after {limit} rounds")  # pragma: no cover
