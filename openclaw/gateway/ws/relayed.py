"""What other gateway instances relay to this one (a shared session store).

:class:`RelayedRuns` is the :class:`~openclaw.core.relay.RelaySink` the
WebSocket factory attaches to the store's relay: events of runs other
instances run go to this instance's clients, their outcomes answer
``agent.wait`` here, and their ``chat.abort`` reaches the runs running here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.logger import Logger

from openclaw.agents.types import AgentRuntime
from openclaw.gateway.ws.events import RunHub
from openclaw.gateway.ws.frames import AGENT_TIMEOUT, UNAVAILABLE, RequestError
from openclaw.gateway.ws.outbound import OutboundEvent, RunOutcome

log = Logger()


def event_from_wire(wire: Mapping[str, Any]) -> OutboundEvent:
    """An event another instance relayed (see ``events.event_to_wire``)."""
    key = wire.get("dk")
    return OutboundEvent(
        str(wire["n"]),
        dict(wire["p"]),
        run_id=str(wire["r"]),
        delta_key=(str(key[0]), str(key[1])) if key else None,
        delta=str(wire.get("d") or ""),
        terminal=bool(wire.get("x")),
        tool=bool(wire.get("tl")),
    )


class RelayedRuns:
    """The relay's sink: hands what other instances send to the run hub."""

    def __init__(self, hub: RunHub, runtime: AgentRuntime) -> None:
        self._hub = hub
        self._runtime = runtime

    def remote_events(self, session_key: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Events of a run another instance runs, for this instance's clients."""
        try:
            built = [event_from_wire(event) for event in events]
        except (KeyError, TypeError, ValueError, IndexError):
            log.warn("ignoring malformed events relayed for session {key}", key=session_key)
            return
        self._hub.deliver_relayed(session_key, built)

    def remote_finished(self, run_id: str, outcome: Mapping[str, Any]) -> None:
        """A run of another instance ended (``agent.wait`` here answers)."""
        try:
            ended = RunOutcome(**outcome)
        except TypeError:
            return
        self._hub.finished_elsewhere(run_id, ended)

    def remote_abort(self, session_key: str | None, run_id: str | None) -> Sequence[str]:
        """Another instance's ``chat.abort``: abort the matching runs here."""
        aborted = []
        for run in self._runtime.active_runs(session_key):
            if run_id is None or run.run_id == run_id:
                self._hub.mark_rpc_abort(run.run_id)
                run.cancel()
                aborted.append(run.run_id)
        return aborted


#: How long ``agent`` waits for the final answer of a run another instance runs.
REMOTE_FINAL_WAIT_SECONDS = 600.0


def remote_agent_final(run_id: str, outcome: RunOutcome | None) -> Any:
    """The ``agent`` method's final answer for a run another instance ran (the
    caller resent its idempotency key to this instance)."""
    if outcome is None:
        summary = "the run did not finish in time"
        raise RequestError(
            AGENT_TIMEOUT,
            summary,
            payload={"runId": run_id, "status": "timeout", "summary": summary},
        )
    if outcome.status == "ok":
        payloads = [{"text": outcome.reply, "mediaUrl": None}] if outcome.reply else []
        meta = {"agentMeta": {"sessionKey": outcome.session_key, "agentId": outcome.agent_id}}
        return {
            "runId": run_id,
            "status": "ok",
            "summary": "completed",
            "result": {"payloads": payloads, "meta": meta},
        }
    if outcome.status == "aborted":
        return {
            "runId": run_id,
            "status": "aborted",
            "summary": "aborted",
            "result": {"payloads": []},
        }
    summary = outcome.error or f"run {outcome.status}"
    code = AGENT_TIMEOUT if outcome.status == "timeout" else UNAVAILABLE
    raise RequestError(
        code, summary, payload={"runId": run_id, "status": outcome.status, "summary": summary}
    )
