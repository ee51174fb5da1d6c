"""A turn's intermediate steps in the session transcript.

The final assistant message of a turn is written by the run when it settles
(``finish_turn``). The steps before it — each assistant message that called
built-in tools, and the ``toolResult`` messages answering them — are appended
as they happen (``append_messages``), so the transcript reads like
OpenClaw's: call, results, next call. A write that fails is logged; the turn
goes on (the final write reports durability).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from openclaw.agents.registry import AgentRegistry, ModelRef
from openclaw.agents.tool_runner import ToolOutcome
from openclaw.agents.types import ToolCall, Usage
from openclaw.sessions.interface import TranscriptStore
from openclaw.sessions.transcript import STEP_MARK, assistant_message

log = Logger()


class StepRecorder:
    """Appends one run's tool steps to its session's transcript."""

    def __init__(
        self,
        *,
        store: TranscriptStore,
        registry: AgentRegistry,
        clock: IReactorTime,
        storage_agent: str,
        session_id: str,
        run_id: str,
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock
        self._agent = storage_agent
        self._session_id = session_id
        self._run_id = run_id

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    def step(
        self,
        text: str,
        usage: Usage,
        calls: Sequence[ToolCall],
        ref: ModelRef | None,
        *,
        built_in: bool = True,
    ) -> None:
        """An assistant message that called tools (``stopReason: toolUse``);
        ``built_in``: all its calls are built-in ones (it is marked, see below)."""
        message = assistant_message(
            text=text,
            timestamp=self._now(),
            usage=usage,
            stop_reason="tool_calls",
            tool_calls=calls,
            error=None,
            provider=ref.provider if ref else None,
            model=ref.model if ref else None,
            api=self._registry.provider_api(ref.provider) if ref else None,
        )
        # Marked: its calls are built-in ones, so a run that dies in this step
        # replays them as calls (with an error result when none was recorded),
        # not as client calls (its final message, written by finish_turn, is
        # unmarked).
        if built_in:
            message[STEP_MARK] = True
        self._append([message])

    def results(self, results: Sequence[ToolOutcome]) -> None:
        """The ``toolResult`` messages of a batch, in call order."""
        now = self._now()
        self._append([r.transcript_message(now) for r in results])

    def _append(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        run_id = self._run_id
        try:
            written = self._store.append_messages(
                self._agent,
                self._session_id,
                run_id=run_id,
                messages=messages,
                timestamp=self._now(),
            )
        except Exception:
            log.failure("run {run_id}: could not record a tool step", run_id=run_id)
            return
        written.addErrback(
            lambda f: log.failure("run {run_id}: writing a tool step failed", f, run_id=run_id)
        )
