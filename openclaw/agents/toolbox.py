"""Each agent's built-in tools, selected by policy, ready for a run.

The runtime keeps one :class:`Toolbox`. For an agent it builds the tools once
(from ``tools.exec`` / ``tools.web.fetch``, the agent's ``tools.exec`` when
it has one), applies the tool policy (profile, allow, deny of both scopes)
and keeps the result: a run only looks it up. When the policy keeps ``exec``
but not ``process``, ``exec`` is built to run every command in the
foreground. Only the allowed tools' schemas are ever offered to the model; a
client tool whose name clashes with one of them (or with a name OpenClaw
reserves) is refused before the run starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from attrs import evolve, frozen

from openclaw.agents.tools.base import Tool
from openclaw.agents.tools.catalog import (
    BUILTIN_TOOLS,
    ToolServices,
    build_tools,
    settings_from_config,
)
from openclaw.agents.tools.loop_detection import LoopDetector
from openclaw.agents.tools.policy import client_tool_conflicts, select_tools
from openclaw.agents.types import ClientTool, ClientToolConflictError
from openclaw.config.model import AgentConfig, Config, LoopDetectionConfig


@frozen
class AgentTools:
    """The built-in tools one agent's runs may call, in the order offered."""

    tools: Mapping[str, Tool]
    #: The same tools as the model sees them (``function`` schemas).
    schemas: tuple[ClientTool, ...]
    loop_detection: LoopDetectionConfig
    #: Set when an explicit allow-list matched no tool at all: OpenClaw refuses
    #: to run such an agent rather than run it without tools by mistake.
    empty_allowlist: str | None = None

    def new_loop_detector(self) -> LoopDetector:
        """Per-run loop state (``tools.loopDetection``)."""
        return LoopDetector(self.loop_detection)


class Toolbox:
    """Builds and caches :class:`AgentTools` per agent id."""

    def __init__(self, config: Config, services: ToolServices | None) -> None:
        """
        :param services: what the tools need at run time (reactor, process
            registry, sessions view, approver, secrets); None gives agents no
            built-in tools (a chat-only runtime, as embedders' tests use).
        """
        self._config = config
        self._services = services
        self._built: dict[str, AgentTools] = {}

    @property
    def services(self) -> ToolServices | None:
        return self._services

    def for_agent(self, agent_id: str, entry: AgentConfig | None) -> AgentTools:
        """The agent's allowed tools (built on first use)."""
        cached = self._built.get(agent_id)
        if cached is not None:
            return cached
        config = self._config
        agent_tools = entry.tools if entry is not None else None
        loop = agent_tools.loop_detection if agent_tools else config.tools.loop_detection
        if self._services is None:
            built = AgentTools({}, (), loop)
        else:
            exec_config = agent_tools.exec if agent_tools else config.tools.exec
            settings = settings_from_config(
                exec_config,
                config.tools.web_fetch,
                user_timezone=config.agents.defaults.user_timezone,
            )
            available = build_tools(settings, self._services)
            selection = select_tools(
                [name for name in BUILTIN_TOOLS if name in available],
                config.tools.policy,
                agent_tools.policy if agent_tools else None,
            )
            if "exec" in selection.allowed and "process" not in selection.allowed:
                # Without process nobody could read a backgrounded command's
                # output: exec then waits for it (OpenClaw ignores yieldMs and
                # background when process is disallowed).
                settings = evolve(settings, background_enabled=False)
                available = build_tools(settings, self._services)
            tools = {name: available[name] for name in selection.allowed}
            schemas = tuple(
                ClientTool(name=tool.name, description=tool.description, parameters=tool.parameters)
                for tool in tools.values()
            )
            built = AgentTools(tools, schemas, loop, selection.empty_allowlist)
        self._built[agent_id] = built
        return built


def check_client_tools(client: Sequence[ClientTool], builtin: AgentTools) -> None:
    """Refuse client tools named like a built-in tool the run offers, a name
    OpenClaw reserves, or each other (ClientToolConflictError)."""
    if not client:
        return
    conflicts = client_tool_conflicts([t.name for t in client], builtin.tools)
    if conflicts:
        raise ClientToolConflictError(conflicts)
