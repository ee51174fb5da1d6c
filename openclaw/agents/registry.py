"""Agents from configuration: ids, the default agent, prompts and models.

OpenClaw's rules: ids in ``agents.list`` are normalised and de-duplicated;
the default agent is the first entry with ``default: true``, else the first
entry, else ``main``; no list means a single agent ``main``. An agent's
system prompt is its ``systemPrompt``, then the workspace bootstrap files
(``AGENTS.md``, ``SOUL.md``, ``IDENTITY.md``, ``USER.md``), then the request's
extra system prompt. Its model is ``provider/model``: the agent's ``model``,
else ``agents.defaults.model.primary``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from openclaw.agents.providers.base import ModelProvider
from openclaw.agents.types import FailureKind, ProviderError, UnknownAgentError
from openclaw.config.model import AgentConfig, Config, ProviderConfig
from openclaw.sessions.keys import DEFAULT_AGENT_ID, normalize_agent_id

log = Logger()

#: Workspace files injected into the system prompt, in this order.
BOOTSTRAP_FILES = ("AGENTS.md", "SOUL.md", "IDENTITY.md", "USER.md")
#: Bytes read from each bootstrap file at most.
BOOTSTRAP_MAX_BYTES = 64 * 1024
#: The provider id that always exists, offline.
DEMO_PROVIDER_ID = "demo"
#: With a clock, an agent's bootstrap files are looked at (``stat``) at most
#: this often; an edit shows up in the prompt within this many seconds.
BOOTSTRAP_RECHECK_SECONDS = 1.0


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


@frozen
class _CachedFile:
    mtime_ns: int
    size: int
    text: str


class AgentRegistry:
    """The configured agents and how to build their prompts and pick their models."""

    def __init__(
        self,
        config: Config,
        *,
        bootstrap_max_bytes: int = BOOTSTRAP_MAX_BYTES,
        clock: IReactorTime | None = None,
        recheck_seconds: float = BOOTSTRAP_RECHECK_SECONDS,
    ) -> None:
        """
        :param clock: when given, each agent's prompt (its bootstrap files) is
            rebuilt at most every ``recheck_seconds`` instead of on every call,
            so a turn costs no ``stat`` calls (the runtime passes its reactor).
        """
        self._config = config
        self._max_bytes = bootstrap_max_bytes
        self._files: dict[Path, _CachedFile] = {}
        self._clock = clock
        self._recheck = recheck_seconds
        #: agent id -> (when it was built, the prompt without the request's extra)
        self._prompts: dict[str, tuple[float, str | None]] = {}
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
        self._specs = {
            agent_id: AgentSpec(
                id=agent_id,
                name=entry.name,
                model=entry.model or defaults.model_primary,
                system_prompt=entry.system_prompt,
                workspace=self._workspace(
                    entry.workspace or defaults.workspace, agent_id, agent_id == self._default
                ),
                is_default=agent_id == self._default,
                timeout_seconds=defaults.timeout_seconds,
            )
            for agent_id, entry in entries.items()
        }

    def _workspace(self, configured: str | None, agent_id: str, is_default: bool) -> Path:
        """The configured workspace (``~`` expanded), else OpenClaw's implicit one:
        ``<state>/workspace`` for the default agent, ``<state>/workspace-<id>``."""
        if configured:
            return Path(os.path.expanduser(configured))
        suffix = "workspace" if is_default else f"workspace-{agent_id}"
        return Path(self._config.state_dir) / suffix

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

    def system_prompt(self, agent_id: str, extra: str | None = None) -> str | None:
        """The agent's system prompt, bootstrap files and ``extra``, or None if all empty."""
        spec = self.get(agent_id)
        clock = self._clock
        if clock is None:
            base = self._build_prompt(spec)
        else:
            now = clock.seconds()
            cached = self._prompts.get(spec.id)
            if cached is not None and 0 <= now - cached[0] < self._recheck:
                base = cached[1]
            else:
                base = self._build_prompt(spec)
                self._prompts[spec.id] = (now, base)
        extra = extra.strip() if extra else None
        if base and extra:
            return f"{base}\n\n{extra}"
        return base or extra or None

    def _build_prompt(self, spec: AgentSpec) -> str | None:
        """The agent's own prompt and its bootstrap files (re-read when changed)."""
        parts: list[str] = []
        if spec.system_prompt and spec.system_prompt.strip():
            parts.append(spec.system_prompt.strip())
        files = [(name, self._read_bootstrap(spec.workspace / name)) for name in BOOTSTRAP_FILES]
        present = [(name, text) for name, text in files if text]
        if present:
            lines = ["# Project Context", "", "The following workspace files are loaded:"]
            for name, text in present:
                lines += ["", f"## {name}", "", text]
            parts.append("\n".join(lines))
        return "\n\n".join(parts) if parts else None

    def _read_bootstrap(self, path: Path) -> str | None:
        """The file's text (capped), re-read only when its mtime or size changes."""
        try:
            st = path.stat()
        except OSError:
            self._files.pop(path, None)
            return None
        cached = self._files.get(path)
        if cached is not None and (cached.mtime_ns, cached.size) == (st.st_mtime_ns, st.st_size):
            return cached.text
        try:
            with path.open("rb") as f:
                data = f.read(self._max_bytes + 1)
        except OSError as exc:
            log.warn("cannot read {path}: {error}", path=str(path), error=str(exc))
            return None
        truncated = len(data) > self._max_bytes
        text = data[: self._max_bytes].decode("utf-8", errors="replace").strip()
        if truncated:
            log.warn(
                "{path} is larger than {limit} bytes; only its start is used",
                path=str(path),
                limit=self._max_bytes,
            )
            text += "\n\n[... truncated ...]"
        self._files[path] = _CachedFile(st.st_mtime_ns, st.st_size, text)
        return text or None


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
