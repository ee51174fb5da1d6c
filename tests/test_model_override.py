"""``x-openclaw-model`` resolution: which per-request models an agent may use."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.model_override import resolve_override
from openclaw.agents.registry import AgentRegistry, ModelRef
from openclaw.agents.types import UnknownModelError
from openclaw.config.loader import config_from_mapping
from openclaw.config.model import Config

DOCUMENT = {
    "models": {
        "providers": {
            "local": {
                "baseUrl": "http://127.0.0.1:11434/v1",
                "api": "openai-completions",
                "models": [{"id": "llama3"}, {"id": "qwen"}],
            },
            "open": {"baseUrl": "http://127.0.0.1:9/v1", "api": "openai-completions"},
        }
    },
    "agents": {
        "list": [
            {"id": "main", "default": True, "model": "local/llama3"},
            {"id": "bare", "model": "nowhere"},
        ]
    },
}


class ResolveOverrideTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.config: Config = config_from_mapping(
            DOCUMENT, env={}, state_dir=Path(self.mktemp())
        ).config
        self.registry = AgentRegistry(self.config)

    def resolve(self, override: str, agent: str = "main") -> ModelRef:
        """The override resolved for ``agent``."""
        return resolve_override(self.config, self.registry, agent, override)

    def refused(self, override: str, agent: str = "main") -> str:
        """The message of the refusal of ``override`` for ``agent``."""
        return str(self.assertRaises(UnknownModelError, self.resolve, override, agent))

    def test_listed_model_of_a_provider(self) -> None:
        """``provider/model`` naming a listed model resolves (provider case folded,
        spaces trimmed)."""
        self.assertEqual(self.resolve(" Local/qwen "), ModelRef("local", "qwen"))

    def test_bare_model_takes_the_agents_provider(self) -> None:
        """A bare id is a model of the agent's own provider."""
        self.assertEqual(self.resolve("qwen"), ModelRef("local", "qwen"))

    def test_unlisted_model_refused(self) -> None:
        """A provider that lists its models accepts no other, in OpenClaw's words."""
        self.assertEqual(
            self.refused("local/mistral"), "Model 'local/mistral' is not allowed for agent 'main'."
        )

    def test_provider_without_a_list_accepts_any_model(self) -> None:
        """A provider that lists no models takes any id."""
        self.assertEqual(self.resolve("open/anything-7b"), ModelRef("open", "anything-7b"))

    def test_unknown_provider_refused_but_demo_is_built_in(self) -> None:
        """An unconfigured provider is refused; the built-in demo provider is not."""
        self.assertIn("'elsewhere/x'", self.refused("elsewhere/x"))
        self.assertEqual(self.resolve("demo/echo"), ModelRef("demo", "echo"))

    def test_empty_halves_refused(self) -> None:
        """``provider/`` and ``/model`` name nothing."""
        self.refused("local/")
        self.refused("/llama3")

    def test_bare_model_for_an_agent_without_a_usable_model(self) -> None:
        """A bare id cannot be placed when the agent's own model does not resolve."""
        self.assertEqual(
            self.refused("llama3", agent="bare"), "Model 'llama3' is not allowed for agent 'bare'."
        )
