"""What a turn knows before its first model call: the agent's system prompt.

:class:`PromptMaker` loads the agent's workspace (created on first use, with
the starter files unless ``agents.defaults.skipBootstrap``), its bootstrap
files (``MEMORY.md`` in the main session only, OpenClaw's truncation limits)
and skills, and renders OpenClaw's prompt structure around the tools the run
offers. A client's system/developer text is the prompt's extra section; it
never replaces the agent's own prompt.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from openclaw.agents.registry import AgentSpec, ModelRef
from openclaw.agents.system_prompt import (
    RuntimeInfo,
    build_system_prompt,
    host_facts,
    tool_summaries,
)
from openclaw.agents.toolbox import AgentTools
from openclaw.agents.types import AgentRequest
from openclaw.agents.workspace import WorkspaceContext, WorkspaceLoader, is_main_session
from openclaw.config.model import Config
from openclaw.sessions.fileio import BlockingIO


class PromptMaker:
    """Builds each run's system prompt; one per runtime (it caches workspaces)."""

    def __init__(
        self,
        config: Config,
        *,
        clock: IReactorTime,
        io: BlockingIO,
        host: Mapping[str, str] | None = None,
    ) -> None:
        """
        :param io: where workspace reads run (the store's IO executor).
        :param host: host facts for the Runtime line (default: this process's).
        """
        self._config = config
        self._clock = clock
        self._loader = WorkspaceLoader(io, clock=clock)
        self._host = dict(host_facts() if host is None else host)

    @property
    def loader(self) -> WorkspaceLoader:
        return self._loader

    def workspace(self, spec: AgentSpec, session_key: str) -> Deferred[WorkspaceContext]:
        """The agent's workspace context (the directory exists once this fires)."""
        defaults = self._config.agents.defaults
        entry = spec.entry
        return self._loader.load(
            spec.workspace,
            main_session=is_main_session(session_key, spec.id),
            max_chars=entry.bootstrap_max_chars or defaults.bootstrap_max_chars,
            total_max_chars=entry.bootstrap_total_max_chars or defaults.bootstrap_total_max_chars,
            templates=not defaults.skip_bootstrap,
        )

    def render(
        self,
        spec: AgentSpec,
        request: AgentRequest,
        context: WorkspaceContext,
        tools: AgentTools,
        model: ModelRef | None,
        default_model: str | None,
    ) -> str:
        """The system prompt for one run."""
        host = self._host
        runtime = RuntimeInfo(
            agent_id=spec.id,
            agent_name=spec.name,
            session_key=request.session_key,
            host=host.get("host"),
            os=host.get("os"),
            arch=host.get("arch"),
            python=host.get("python"),
            model=str(model) if model else None,
            default_model=default_model,
            channel=request.channel,
        )
        return build_system_prompt(
            runtime=runtime,
            now=self._clock.seconds(),
            tools=tool_summaries(tools.tools.values()),
            workspace=str(context.workspace),
            bootstrap_files=context.files,
            skills=context.skills,
            agent_instructions=spec.system_prompt,
            extra_system_prompt=request.extra_system_prompt,
            timezone=self._config.agents.defaults.user_timezone,
        )
