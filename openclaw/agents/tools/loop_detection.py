"""Stop a model that calls the same tools over and over (``tools.loopDetection``).

One :class:`LoopDetector` lives for one run. The loop asks :meth:`check_batch`
before running a batch of tool calls and reports each result with
:meth:`record_result`. Following OpenClaw:

- the rolling detectors are off unless ``enabled: true``; they warn first (a
  note the loop appends to the tool result), then go critical;
- the first critical verdict of a run blocks that whole batch (the model gets
  one more answer with its tools), the second ends the run;
- the post-compaction guard, armed after a compaction retry, aborts the run
  when the same (tool, arguments, result) repeats; it is on unless
  ``enabled`` is explicitly ``false``.

Call identity is the tool name plus its arguments as canonical JSON; outcome
identity is a hash of the result text and error flag.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from attrs import frozen

from openclaw.config.model import LoopDetectionConfig

LoopAction = Literal["ok", "warn", "block", "abort"]
#: Tools whose repeated identical calls are polling (waiting for a change).
POLLING_TOOLS: Final = frozenset({"process", "session_status", "sessions_list", "sessions_history"})
#: The post-compaction guard: how many calls it watches, and how many identical
#: (tool, arguments, result) triples inside that window abort the run.
GUARD_WINDOW: Final = 6
GUARD_REPEATS: Final = 3

_Signature = tuple[str, str]


@frozen
class LoopVerdict:
    """The detector's answer; ``message`` is written for the model (and the log)."""

    action: LoopAction
    message: str = ""
    detector: str | None = None
    tool: str | None = None
    count: int = 0


OK: Final = LoopVerdict("ok")
_RANK: Final[Mapping[LoopAction, int]] = {"ok": 0, "warn": 1, "block": 2, "abort": 3}


def call_signature(name: str, arguments: Mapping[str, Any] | str | None) -> _Signature:
    """A stable identity for one call: the same arguments in another key order match."""
    if isinstance(arguments, str):
        try:
            parsed: Any = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            parsed = arguments
    else:
        parsed = dict(arguments or {})
    text = json.dumps(parsed, sort_keys=True, separators=(",", ":"), default=str)
    return name, hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _outcome(content: str, is_error: bool) -> str:
    digest = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{int(is_error)}:{digest}"


class LoopDetector:
    """Per-run tool-loop state."""

    def __init__(self, config: LoopDetectionConfig) -> None:
        self._config = config
        self._rolling = config.enabled is True
        self._guard_enabled = config.enabled is not False
        size = max(config.history_size, 1)
        #: (signature, outcome or None while running), oldest first.
        self._history: deque[tuple[_Signature, str | None]] = deque(maxlen=size)
        self._criticals = 0
        self._warned: set[tuple[str, _Signature]] = set()
        self._guard_left = 0
        self._guard_seen: Counter[tuple[_Signature, str]] = Counter()

    @property
    def critical_count(self) -> int:
        """Critical verdicts so far in this run."""
        return self._criticals

    def check_batch(
        self, calls: Sequence[tuple[str, Mapping[str, Any] | str | None]]
    ) -> LoopVerdict:
        """Judge a batch before it runs; a ``block``/``abort`` verdict covers the
        whole batch (none of its calls may run). The calls enter the history."""
        if not self._rolling or not calls:
            return OK
        worst = OK
        for name, arguments in calls:
            signature = call_signature(name, arguments)
            verdict = self._judge(signature)
            self._history.append((signature, None))
            if _RANK[verdict.action] > _RANK[worst.action]:
                worst = verdict
        if worst.action == "block":
            self._criticals += 1
            if self._criticals > 1:
                worst = LoopVerdict(
                    "abort",
                    worst.message + " The run is stopped: the loop persisted after a warning.",
                    worst.detector,
                    worst.tool,
                    worst.count,
                )
        return worst

    def record_result(
        self, name: str, arguments: Mapping[str, Any] | str | None, content: str, is_error: bool
    ) -> LoopVerdict:
        """Note a finished call's outcome; the post-compaction guard may abort here."""
        signature = call_signature(name, arguments)
        outcome = _outcome(content, is_error)
        for index in range(len(self._history) - 1, -1, -1):
            if self._history[index] == (signature, None):
                self._history[index] = (signature, outcome)
                break
        else:
            if self._rolling:
                self._history.append((signature, outcome))
        if self._guard_left > 0:
            self._guard_left -= 1
            self._guard_seen[(signature, outcome)] += 1
            count = self._guard_seen[(signature, outcome)]
            if count >= GUARD_REPEATS:
                self._guard_left = 0
                return LoopVerdict(
                    "abort",
                    f"compaction_loop_persisted: {name} was called {count} times with the "
                    "same arguments and result after compaction.",
                    "compaction_loop_persisted",
                    name,
                    count,
                )
        return OK

    def arm_post_compaction(self, window: int = GUARD_WINDOW) -> None:
        """Watch the next ``window`` calls after a compaction retry."""
        if self._guard_enabled:
            self._guard_left = window
            self._guard_seen.clear()

    # -- detectors

    def _judge(self, signature: _Signature) -> LoopVerdict:
        cfg = self._config
        candidates: list[tuple[str, int, str]] = []
        if cfg.generic_repeat:
            count = 1 + sum(1 for sig, _ in self._history if sig == signature)
            candidates.append(
                (
                    "generic_repeat",
                    count,
                    f"{signature[0]} has been called {count} times with identical arguments.",
                )
            )
        if cfg.known_poll_no_progress and signature[0] in POLLING_TOOLS:
            streak = self._unchanged_streak(signature)
            candidates.append(
                (
                    "known_poll_no_progress",
                    streak,
                    f"{signature[0]} has returned the same result {streak} times in a row.",
                )
            )
        if cfg.ping_pong:
            alternating = self._ping_pong(signature)
            candidates.append(
                (
                    "ping_pong",
                    alternating,
                    f"the last {alternating} calls alternate between the same two calls.",
                )
            )
        no_progress = self._repeats_without_progress(signature)
        if no_progress >= cfg.global_circuit_breaker_threshold:
            return LoopVerdict(
                "block",
                f"{signature[0]} repeated {no_progress} times without any change in its "
                "result. Stop and answer, or try a different approach.",
                "global_circuit_breaker",
                signature[0],
                no_progress,
            )
        for detector, count, what in candidates:
            if count >= cfg.critical_threshold:
                return LoopVerdict(
                    "block",
                    f"Loop detected: {what} These calls were not run; answer the user or "
                    "use a different tool or arguments.",
                    detector,
                    signature[0],
                    count,
                )
        for detector, count, what in candidates:
            if count >= cfg.warning_threshold and (detector, signature) not in self._warned:
                self._warned.add((detector, signature))
                return LoopVerdict(
                    "warn",
                    f"[loop warning] {what} If it is not making progress, change approach.",
                    detector,
                    signature[0],
                    count,
                )
        return OK

    def _unchanged_streak(self, signature: _Signature) -> int:
        """Consecutive trailing calls of ``signature`` that all had one outcome, plus this one."""
        streak = 0
        outcome: str | None = None
        for sig, result in reversed(self._history):
            if sig != signature or result is None or (outcome is not None and result != outcome):
                break
            outcome = result
            streak += 1
        return streak + 1

    def _ping_pong(self, signature: _Signature) -> int:
        """Length of the trailing A,B,A,B... run this call would extend (0 if none)."""
        sequence = [sig for sig, _ in self._history] + [signature]
        if len(sequence) < 4 or sequence[-1] == sequence[-2]:
            return 0
        first, second = sequence[-1], sequence[-2]
        length = 0
        for index, sig in enumerate(reversed(sequence)):
            if sig != (first if index % 2 == 0 else second):
                break
            length += 1
        return length if length >= 4 else 0

    def _repeats_without_progress(self, signature: _Signature) -> int:
        """How often ``signature`` already produced its most common outcome."""
        outcomes = Counter(
            result for sig, result in self._history if sig == signature and result is not None
        )
        return max(outcomes.values(), default=0)
