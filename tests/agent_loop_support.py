"""A runtime with real built-in tools on a Clock, for the agent loop's tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from attrs import evolve
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.runtime import Runtime
from openclaw.agents.tools._proc import ProcessRegistry
from openclaw.agents.tools.catalog import CatalogReactor, ToolServices
from openclaw.agents.types import AgentEvent, AgentRequest, ToolEvent
from openclaw.config.model import Config
from openclaw.sessions.store import SessionStore
from openclaw.testing import ScriptedProvider, ScriptedToolCall, collect_events, scripted_config

MAIN = "agent:main:main"


def call(name: str, id: str, **arguments: Any) -> ScriptedToolCall:
    """A scripted tool call with JSON arguments."""
    return ScriptedToolCall(name=name, arguments=json.dumps(arguments), id=id)


class LoopCase(SynchronousTestCase):
    """A runtime whose agents have the real file, memory and session tools."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.state_dir = Path(self.mktemp())
        self.provider = ScriptedProvider(clock=self.clock)
        self.runtime = self.make_runtime(scripted_config(self.state_dir))

    def make_runtime(self, config: Config, **kwargs: Any) -> Runtime:
        config = evolve(config, state_dir=self.state_dir)
        store = SessionStore(self.state_dir, clock=self.clock, fsync="never", index_flush_delay=0.0)
        services = ToolServices(
            # A Clock cannot spawn processes: these tests never call exec.
            reactor=cast(CatalogReactor, self.clock),
            registry=ProcessRegistry(self.clock),
            sessions=store,
        )
        self.runtime = Runtime(
            config,
            clock=self.clock,
            providers={"scripted": self.provider, **kwargs.pop("providers", {})},
            store=store,
            tool_services=services,
            **kwargs,
        )
        return self.runtime

    @property
    def workspace(self) -> Path:
        return self.state_dir / "workspace"

    def start(self, message: str = "hi", **kwargs: Any) -> tuple[Any, list[AgentEvent]]:
        kwargs.setdefault("run_id", "run-1")
        run = self.runtime.start(
            AgentRequest(agent_id="main", session_key=MAIN, message=message, **kwargs)
        )
        return run, collect_events(run)

    def entries(self) -> list[dict[str, Any]]:
        """Every line of the main session's transcript."""
        entry = self.runtime.store.get_session("main", MAIN)
        assert entry is not None
        path = self.state_dir / "agents" / "main" / "sessions" / f"{entry.session_id}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def messages(self) -> list[dict[str, Any]]:
        return [e["message"] for e in self.entries() if e["type"] == "message"]


def without_memory_flush(config: Config) -> Config:
    """``config`` with ``compaction.memoryFlush.enabled: false``."""
    compaction = config.agents.defaults.compaction
    compaction = evolve(compaction, memory_flush=evolve(compaction.memory_flush, enabled=False))
    defaults = evolve(config.agents.defaults, compaction=compaction)
    return evolve(config, agents=evolve(config.agents, defaults=defaults))


def tool_events(events: list[AgentEvent]) -> list[tuple[str, str, bool]]:
    """``(phase, name, is_error)`` of the tool events."""
    return [(e.phase, e.name, e.is_error) for e in events if isinstance(e, ToolEvent)]
