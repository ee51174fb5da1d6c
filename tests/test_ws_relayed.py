"""What other gateway instances relay to this one, in one process: relayed
events reach this instance's subscribers, relayed outcomes answer
``agent.wait``, a relayed ``chat.abort`` cancels the runs running here, and the
``agent`` method's answer for a run another instance ran."""

from __future__ import annotations

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import AgentRequest
from openclaw.gateway.ws.events import RunHub
from openclaw.gateway.ws.frames import AGENT_TIMEOUT, UNAVAILABLE, RequestError
from openclaw.gateway.ws.outbound import OutboundEvent, RunOutcome, RunStatus, event_to_wire
from openclaw.gateway.ws.relayed import RelayedRuns, event_from_wire, remote_agent_final
from tests.ws_fakes import FakeRuntime

KEY = "agent:main:main"


class Sink:
    """A connection that records what the hub delivers."""

    wants_tool_events = True

    def __init__(self) -> None:
        self.events: list[OutboundEvent] = []

    def deliver(self, event: OutboundEvent) -> None:
        """Record ``event``."""
        self.events.append(event)


def outcome(status: RunStatus, *, reply: str | None = None, error: str | None = None) -> RunOutcome:
    """A relayed outcome of run ``r1`` of the main session."""
    return RunOutcome("r1", status, "main", KEY, reply=reply, error=error)


class RelayedRunsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.runtime = FakeRuntime(self.clock)
        self.hub = RunHub(self.runtime, self.clock)
        self.hub.start()
        self.addCleanup(self.hub.stop)
        self.relayed = RelayedRuns(self.hub, self.runtime)

    def test_wire_form_round_trips(self) -> None:
        """An event sent as plain JSON values comes back equal on the other side."""
        event = OutboundEvent(
            "agent",
            {"runId": "r1", "data": {"delta": "hi"}},
            run_id="r1",
            delta_key=("r1", "assistant"),
            delta="hi",
            terminal=False,
            tool=True,
        )
        back = event_from_wire(event_to_wire(event))
        self.assertEqual(
            (back.name, back.payload, back.run_id, back.delta_key, back.delta, back.tool),
            ("agent", event.payload, "r1", ("r1", "assistant"), "hi", True),
        )
        self.assertEqual(back.payload_json, event.payload_json)

    def test_relayed_events_reach_subscribers_of_the_session(self) -> None:
        """Events relayed for a session go to this instance's subscribers of it only."""
        here, elsewhere = Sink(), Sink()
        self.hub.subscribe(here, KEY)
        self.hub.subscribe(elsewhere, "agent:main:other")
        event = OutboundEvent("chat", {"runId": "r1", "state": "delta"}, run_id="r1")
        self.relayed.remote_events(KEY, [event_to_wire(event)])
        self.assertEqual([e.payload for e in here.events], [event.payload])
        self.assertEqual(elsewhere.events, [])

    def test_malformed_relayed_events_are_ignored(self) -> None:
        """A relayed batch that does not parse delivers nothing (and raises nothing)."""
        sink = Sink()
        self.hub.subscribe(sink, KEY)
        self.relayed.remote_events(KEY, [{"n": "chat"}])
        self.assertEqual(sink.events, [])

    def test_relayed_outcome_answers_agent_wait(self) -> None:
        """A wait for a run this instance never saw fires with the relayed outcome."""
        waiting = self.hub.wait("r1", 30)
        self.assertNoResult(waiting)
        ended = outcome("ok", reply="done")
        self.relayed.remote_finished("r1", attrs.asdict(ended))
        self.assertEqual(self.successResultOf(waiting), ended)

    def test_malformed_relayed_outcome_is_ignored(self) -> None:
        """An outcome with unknown fields answers nobody."""
        waiting = self.hub.wait("r1", 30)
        self.relayed.remote_finished("r1", {"nonsense": 1})
        self.assertNoResult(waiting)
        self.clock.advance(30)
        self.assertIsNone(self.successResultOf(waiting))

    def test_relayed_abort_cancels_matching_runs_here(self) -> None:
        """A relayed abort for a session cancels its runs here (only the named
        run when a run id is given) and says which."""
        first = self.runtime.start(AgentRequest("main", KEY, "a", run_id="r1"))
        second = self.runtime.start(AgentRequest("main", KEY, "b", run_id="r2"))
        other = self.runtime.start(AgentRequest("main", "agent:main:x", "c", run_id="r3"))
        self.assertEqual(self.relayed.remote_abort(KEY, "r2"), ["r2"])
        self.assertEqual((first.cancel_calls, second.cancel_calls), (0, 1))
        self.assertEqual(self.relayed.remote_abort(KEY, None), ["r1"])
        self.assertEqual((first.cancel_calls, other.cancel_calls), (1, 0))


class RemoteAgentFinalTests(SynchronousTestCase):
    def test_ok_carries_the_reply(self) -> None:
        """A finished run answers with its reply as the one payload and its agent."""
        final = remote_agent_final("r1", outcome("ok", reply="hello"))
        self.assertEqual(final["status"], "ok")
        self.assertEqual(final["result"]["payloads"], [{"text": "hello", "mediaUrl": None}])
        self.assertEqual(final["result"]["meta"]["agentMeta"]["agentId"], "main")

    def test_ok_without_reply_has_no_payload(self) -> None:
        """A finished run with no text answers an empty payload list."""
        self.assertEqual(remote_agent_final("r1", outcome("ok"))["result"]["payloads"], [])

    def test_aborted(self) -> None:
        """An aborted run answers status aborted, no payloads."""
        final = remote_agent_final("r1", outcome("aborted"))
        self.assertEqual((final["status"], final["result"]), ("aborted", {"payloads": []}))

    def test_no_outcome_in_time_is_a_timeout_error(self) -> None:
        """No outcome: an AGENT_TIMEOUT error whose payload says timeout."""
        error = self.assertRaises(RequestError, remote_agent_final, "r1", None)
        self.assertEqual((error.code, error.payload["status"]), (AGENT_TIMEOUT, "timeout"))

    def test_failed_and_timed_out_runs_are_errors(self) -> None:
        """A failed run is UNAVAILABLE with its error; a timed-out one AGENT_TIMEOUT."""
        failed = self.assertRaises(
            RequestError, remote_agent_final, "r1", outcome("error", error="boom")
        )
        self.assertEqual((failed.code, failed.message), (UNAVAILABLE, "boom"))
        timed = self.assertRaises(RequestError, remote_agent_final, "r1", outcome("timeout"))
        self.assertEqual((timed.code, timed.message), (AGENT_TIMEOUT, "run timeout"))
