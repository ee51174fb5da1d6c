"""``x-openclaw-model``: one request's backend model instead of the agent's own.

OpenClaw accepts ``provider/model`` or a bare model id (taken as a model of
the agent's own provider) and refuses a model outside what the gateway
offers. Here a model is offered when its provider is configured (or is the
built-in ``demo``) and, if that provider lists its ``models``, the id is
one of them.
"""

from __future__ import annotations

from openclaw.agents.registry import (
    DEMO_PROVIDER_ID,
    AgentRegistry,
    ModelRef,
    ModelResolutionError,
)
from openclaw.agents.types import UnknownModelError
from openclaw.config.model import Config


def resolve_override(
    config: Config, registry: AgentRegistry, agent_id: str, override: str
) -> ModelRef:
    """The model ``override`` names for ``agent_id``; UnknownModelError otherwise."""
    spec = registry.get(agent_id)
    text = override.strip()
    provider, slash, model = text.partition("/")
    if not slash:
        model = text
        try:
            provider = registry.model_ref(spec.id).provider
        except ModelResolutionError:
            raise UnknownModelError(text, spec.id) from None
    provider, model = provider.strip().lower(), model.strip()
    if not provider or not model:
        raise UnknownModelError(text, spec.id)
    configured = config.models.providers.get(provider)
    if configured is None:
        if provider != DEMO_PROVIDER_ID:
            raise UnknownModelError(f"{provider}/{model}", spec.id)
    elif configured.models and not any(entry.id == model for entry in configured.models):
        raise UnknownModelError(f"{provider}/{model}", spec.id)
    return ModelRef(provider=provider, model=model)
