"""Agents from configuration: ids, the default agent, workspaces and models.

OpenClaw's rules: ids in ``agents.list`` are normalised and de-duplicated;
the default agent is the first entry with ``default: true``, else the first
entry, else ``main``; no list means a single agent ``main``. Its workspace
follows :func:`~openclaw.agents.workspace.resolve_workspace`; its model is
``provider/model``: the agent's ``model``, else
``agents.defaults.model.primary`` (fallbacks: :mod:`openclaw.agents.fallback`).
The system prompt is built per run (:mod:`openclaw.agents.turn`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import field, frozen
from twisted.logger import Logger

from openclaw.agents.providers.base import ModelProvider
from openclaw.agents.types import FailureKind, ProviderError, UnknownAgentError
from openclaw.agents.workspace import resolve_workspace
from openclaw.config.model import AgentConfig, Config, ProviderConfig
from openclaw.sessions.keys import DEFAULT_AGENT_ID, normalize_agent_id

log = Logger()

#: The provider id that always exists, offline.
DEMO_PROVIDER_ID = "demo"


@frozen
class AgentSpec:
    """One configured agent, with defaults applied."""

    id: str
    name: str | None
    #: ``provider/model`` or None when neither the agent nor the defaults name one.
    model: str | None
    system_prompt: str | None
    #: Where the bootstrap files are looked up (``~`` expanded; may not exist).
    workspace: Path
    is_default: bool
    timeout_seconds: float
    #: The ``agents.list`` entry (a synthetic one for the implicit ``main``).
    entry: AgentConfig = field(factory=lambda: AgentConfig(id=DEFAULT_AGENT_ID), eq=False)

    def describe(self) -> dict[str, Any]:
        """The ``agents.list`` entry shape (``id``, ``name``, ``model``, ``workspace``)."""
        out: dict[str, Any] = {"id": self.id, "workspace": str(self.workspace)}
        if self.name is not None:
            out["name"] = self.name
        if self.model is not None:
            out["model"] = {"primary": self.model}
        if self.is_default:
            out["default"] = True
        return out


@frozen
class ModelRef:
    """A resolved ``provider/model`` reference."""

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


class ModelResolutionError(ProviderError):
    """The agent's model cannot be mapped to a provider (a configuration problem)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(FailureKind.MODEL_NOT_FOUND, message, code=code)


def parse_model_ref(ref: str, providers: Mapping[str, ProviderConfig]) -> ModelRef:
    """Split ``provider/model`` (the model may contain further slashes).

    A bare model id is looked up in the configured providers' ``models``
    lists, or taken by the only configured provider.
    """
    text = ref.strip()
    if "/" in text:
        provider, _, model = text.partition("/")
        if provider and model:
            return ModelRef(provider=provider, model=model)
    elif text:
        owners = [pid for pid, cfg in providers.items() if any(m.id == text for m in cfg.models)]
        if len(owners) == 1:
            return ModelRef(provider=owners[0], model=text)
        if len(providers) == 1:
            return ModelRef(provider=next(iter(providers)), model=text)
    raise ModelResolutionError(
        f"model {ref!r} is not a provider/model reference", code="invalid_model_ref"
    )


class AgentRegistry:
    """The configured agents and how to build their prompts and pick their models."""

    def __init__(self, config: Config, *, env: Mapping[str, str] | None = None) -> None:
        """
        :param env: the environment workspace paths are resolved in
            (``OPENCLAW_WORKSPACE_DIR``, ``HOME``); default ``os.environ``.
        """
        self._config = config
        self._model_refs: dict[str, ModelRef] = {}
        defaults = config.agents.defaults
        entries: dict[str, AgentConfig] = {}
        for entry in config.agents.list:
            agent_id = normalize_agent_id(entry.id)
            if agent_id in entries:
                log.warn(
                    "agents.list names agent {agent_id} twice; the first wins", agent_id=agent_id
                )
                continue
            entries[agent_id] = entry
        if not entries:
            entries[DEFAULT_AGENT_ID] = AgentConfig(id=DEFAULT_AGENT_ID)
        flagged = [agent_id for agent_id, entry in entries.items() if entry.default]
        if len(flagged) > 1:
            log.warn(
                "several agents are marked default ({agent_ids}); using {agent_id}",
                agent_ids=", ".join(flagged),
                agent_id=flagged[0],
            )
        self._default = flagged[0] if flagged else next(iter(entries))
        environ = os.environ if env is None else env
        self._specs = {
            agent_id: AgentSpec(
                id=agent_id,
                name=entry.name,
                model=entry.model or defaults.model_primary,
                system_prompt=entry.system_prompt,
                workspace=resolve_workspace(
                    agent_id,
                    agent_workspace=entry.workspace,
                    defaults_workspace=defaults.workspace,
                    is_default=agent_id == self._default,
                    agent_count=len(entries),
                    state_dir=Path(config.state_dir),
                    env=environ,
                ),
                is_default=agent_id == self._default,
                timeout_seconds=defaults.timeout_seconds,
                entry=entry,
            )
            for agent_id, entry in entries.items()
        }

    @property
    def default_agent_id(self) -> str:
        """The agent used when a request names none."""
        return self._default

    @property
    def agent_ids(self) -> Sequence[str]:
        """Configured ids in configuration order (normalised, de-duplicated)."""
        return tuple(self._specs)

    @property
    def agents(self) -> Sequence[AgentSpec]:
        """Every configured agent, in configuration order."""
        return tuple(self._specs.values())

    def get(self, agent_id: str) -> AgentSpec:
        """The agent named ``agent_id`` (normalised first); UnknownAgentError if none."""
        spec = self._specs.get(normalize_agent_id(agent_id))
        if spec is None:
            raise UnknownAgentError(agent_id)
        return spec

    def __contains__(self, agent_id: object) -> bool:
        return isinstance(agent_id, str) and normalize_agent_id(agent_id) in self._specs

    def describe(self) -> dict[str, Any]:
        """``{defaultId, agents: [...]}`` for the ``agents.list`` method."""
        return {
            "defaultId": self._default,
            "mainKey": "main",
            "agents": [spec.describe() for spec in self._specs.values()],
        }

    def model_ref(self, agent_id: str) -> ModelRef:
        """The agent's ``provider/model``; ModelResolutionError when unset or malformed."""
        spec = self.get(agent_id)
        ref = self._model_refs.get(spec.id)
        if ref is not None:
            return ref
        if not spec.model:
            raise ModelResolutionError(
                f"agent {spec.id!r} has no model: set agents.defaults.model.primary "
                '(for example "demo/echo")',
                code="model_not_configured",
            )
        ref = self._model_refs[spec.id] = parse_model_ref(spec.model, self._config.models.providers)
        return ref

    def provider_api(self, provider_id: str) -> str | None:
        """The ``api`` of a provider id (``demo`` exists without configuration)."""
        cfg = self._config.models.providers.get(provider_id)
        if cfg is not None:
            return cfg.api
        return "demo" if provider_id == DEMO_PROVIDER_ID else None


ProviderBuilder = Callable[[ProviderConfig], ModelProvider]


class ProviderCache:
    """Builds each configured provider once, on first use.

    ``demo`` always resolves: when ``models.providers`` has no ``demo`` entry,
    the builder is asked for a default demo provider.
    """

    def __init__(self, config: Config, build: ProviderBuilder) -> None:
        self._providers = config.models.providers
        self._build = build
        self._built: dict[str, ModelProvider] = {}

    def with_config(self, config: Config) -> ProviderCache:
        """A cache for ``config`` with the same builder (a reload): providers whose
        settings did not change are reused, with their connections."""
        fresh = ProviderCache(config, self._build)
        for provider_id, provider in self._built.items():
            if config.models.providers.get(provider_id) == self._providers.get(provider_id):
                fresh._built[provider_id] = provider
        return fresh

    def __call__(self, provider_id: str) -> ModelProvider:
        """The provider named ``provider_id``; KeyError when it is not configured."""
        provider = self._built.get(provider_id)
        if provider is not None:
            return provider
        cfg = self._providers.get(provider_id)
        if cfg is None and provider_id == DEMO_PROVIDER_ID:
            cfg = ProviderConfig(id=DEMO_PROVIDER_ID, api="demo")
        if cfg is None:
            raise KeyError(provider_id)
        provider = self._built[provider_id] = self._build(cfg)
        return provider
