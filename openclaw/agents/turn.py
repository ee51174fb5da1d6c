"""What a turn knows before its first model call: its models and system prompt.

:class:`PromptMaker` loads the agent's workspace (created on first use, with
the starter files unless ``agents.defaults.skipBootstrap``), its bootstrap
files (``MEMORY.md`` in the main session only, OpenClaw's truncation limits)
and skills, and renders OpenClaw's prompt structure around the tools the run
offers. A client's system/developer text is the prompt's extra section; it
never replaces the agent's own prompt. :func:`plan_turn` puts a turn's
models (the fallback chain) and prompt together.
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from openclaw.agents.fallback import FallbackChain, candidate_models
from openclaw.agents.model_health import ModelHealth
from openclaw.agents.registry import (
    AgentRegistry,
    AgentSpec,
    ModelRef,
    ModelResolutionError,
    parse_model_ref,
)
from openclaw.agents.session_compaction import ProviderLookup, SessionCompactor
from openclaw.agents.system_prompt import (
    PromptTool,
    RuntimeInfo,
    SystemPrompt,
    host_facts,
    system_prompt_parts,
    tool_summaries,
)
from openclaw.agents.toolbox import AgentTools, Toolbox
from openclaw.agents.types import TOOL_POLICY_EMPTY, AgentRequest, ProviderError
from openclaw.agents.workspace import WorkspaceContext, WorkspaceLoader, is_main_session
from openclaw.config.model import Config
from openclaw.core.memo import IdentityMemo
from openclaw.sessions.fileio import BlockingIO
from openclaw.sessions.interface import TranscriptStore
from openclaw.sessions.lanes import SessionLanes

log = Logger()


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
        #: Tool lines per agent's tool set (a Toolbox keeps one per agent).
        self._summaries: IdentityMemo[AgentTools, tuple[PromptTool, ...]] = IdentityMemo(
            _MAX_TOOL_SETS
        )

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
    ) -> SystemPrompt:
        """The system prompt for one run (its shared head apart)."""
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
        return system_prompt_parts(
            runtime=runtime,
            now=self._clock.seconds(),
            tools=self._tool_lines(tools),
            workspace=str(context.workspace),
            bootstrap_files=context.files,
            skills=context.skills,
            agent_instructions=spec.system_prompt,
            extra_system_prompt=request.extra_system_prompt,
            timezone=self._config.agents.defaults.user_timezone,
        )

    def _tool_lines(self, tools: AgentTools) -> tuple[PromptTool, ...]:
        """The prompt's tool lines, computed once per tool set."""
        return self._summaries.get(tools, _tool_summaries_of)


#: Tool sets whose prompt lines are kept (one per agent; a reload makes new ones).
_MAX_TOOL_SETS = 256


def _tool_summaries_of(tools: AgentTools) -> tuple[PromptTool, ...]:
    return tool_summaries(tools.tools.values())


@frozen
class RunServices:
    """What every run of a runtime shares (swapped whole by a reload)."""

    clock: IReactorTime
    config: Config
    registry: AgentRegistry
    store: TranscriptStore
    providers: ProviderLookup
    lanes: SessionLanes
    toolbox: Toolbox
    prompts: PromptMaker
    compactor: SessionCompactor
    history_limit: int
    max_steps: int
    #: Cooldowns of failed models; kept across reloads (one per runtime).
    health: ModelHealth


@frozen
class TurnPlan:
    """A turn's models and prompt."""

    chain: FallbackChain
    #: The first model, when it parses (else the loop reports it, or falls back).
    primary: ModelRef | None
    system_prompt: SystemPrompt


def plan_turn(
    services: RunServices,
    spec: AgentSpec,
    request: AgentRequest,
    tools: AgentTools,
    context: WorkspaceContext,
) -> TurnPlan:
    """The fallback chain and the system prompt of one turn.

    Raises ModelResolutionError (a ProviderError) when no model is configured,
    or when an explicit tool allow-list matches no tool at all (OpenClaw stops
    rather than run the agent without tools by mistake).
    """
    if tools.empty_allowlist is not None:
        raise ModelResolutionError(
            f"{tools.empty_allowlist} matches no tool this gateway has; "
            "fix the allow-list (the agent would run without tools)",
            code=TOOL_POLICY_EMPTY,
        )
    defaults = services.config.agents.defaults
    candidates = candidate_models(defaults, spec.entry, request.model_override)
    if not candidates:
        services.registry.model_ref(spec.id)  # raises model_not_configured
    chain = FallbackChain(candidates, services.health)
    for ref, cooldown in chain.deferred:
        log.debug(
            "run {run_id}: model {model} is cooling down ({reason}, {seconds:.0f} s left); "
            "it is tried after the others",
            run_id=request.run_id,
            model=ref,
            reason=cooldown.reason,
            seconds=max(cooldown.until - services.clock.seconds(), 0.0),
        )
    primary: ModelRef | None
    try:
        primary = parse_model_ref(chain.current, services.config.models.providers)
    except ProviderError:
        primary = None
    prompt = services.prompts.render(spec, request, context, tools, primary, defaults.model_primary)
    return TurnPlan(chain, primary, prompt)
