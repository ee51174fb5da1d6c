"""Agents from configuration: ids, default agent, workspaces, model references."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.registry import (
    AgentRegistry,
    ModelRef,
    ModelResolutionError,
    ProviderCache,
    parse_model_ref,
)
from openclaw.agents.types import FailureKind, UnknownAgentError
from openclaw.config.model import (
    AgentConfig,
    AgentDefaults,
    AgentsConfig,
    Config,
    ModelEntry,
    ModelsConfig,
    ProviderConfig,
)
from openclaw.testing import ScriptedProvider


def config(
    *agents: AgentConfig,
    defaults: AgentDefaults | None = None,
    providers: dict[str, ProviderConfig] | None = None,
    state_dir: str = "/nonexistent/state",
) -> Config:
    return Config(
        agents=AgentsConfig(defaults=defaults or AgentDefaults(), list=agents),
        models=ModelsConfig(providers=providers or {}),
        state_dir=Path(state_dir),
    )


class AgentIdTests(SynchronousTestCase):
    def test_no_list_means_one_agent_main(self) -> None:
        """Without agents.list there is exactly one agent, main, the default."""
        registry = AgentRegistry(config())
        self.assertEqual(registry.agent_ids, ("main",))
        self.assertEqual(registry.default_agent_id, "main")
        self.assertTrue(registry.get("main").is_default)

    def test_first_flagged_default_wins(self) -> None:
        """The first entry with default:true is the default (a warning if several)."""
        with capturedLogs() as events:
            registry = AgentRegistry(
                config(
                    AgentConfig(id="a"),
                    AgentConfig(id="b", default=True),
                    AgentConfig(id="c", default=True),
                )
            )
        self.assertEqual(registry.default_agent_id, "b")
        self.assertEqual([s.id for s in registry.agents if s.is_default], ["b"])
        self.assertTrue(any(e["log_level"] == LogLevel.warn for e in events))

    def test_first_entry_is_default_without_a_flag(self) -> None:
        """With no default:true the first listed agent is the default."""
        registry = AgentRegistry(config(AgentConfig(id="x"), AgentConfig(id="y")))
        self.assertEqual(registry.default_agent_id, "x")

    def test_ids_are_normalised_and_deduplicated(self) -> None:
        """Ids are normalised as OpenClaw does; a repeated id keeps its first entry."""
        with capturedLogs():
            registry = AgentRegistry(
                config(
                    AgentConfig(id="Beta Bot", name="first"),
                    AgentConfig(id="beta-bot", name="second"),
                    AgentConfig(id="Main"),
                )
            )
        self.assertEqual(registry.agent_ids, ("beta-bot", "main"))
        self.assertEqual(registry.get("BETA BOT").name, "first")
        self.assertIn("Main", registry)

    def test_unknown_agent(self) -> None:
        """An id that is not configured raises UnknownAgentError (a KeyError)."""
        registry = AgentRegistry(config(AgentConfig(id="main")))
        with self.assertRaises(UnknownAgentError):
            registry.get("ghost")
        self.assertNotIn("ghost", registry)

    def test_describe(self) -> None:
        """describe() gives agents.list's shape: defaultId and id/name/model/workspace."""
        registry = AgentRegistry(
            config(
                AgentConfig(id="main", name="Main", workspace="/w/main"),
                AgentConfig(id="beta", model="openai/gpt-4o"),
                defaults=AgentDefaults(model_primary="demo/x"),
            )
        )
        self.assertEqual(
            registry.describe(),
            {
                "defaultId": "main",
                "mainKey": "main",
                "agents": [
                    {
                        "id": "main",
                        "name": "Main",
                        "workspace": "/w/main",
                        "model": {"primary": "demo/x"},
                        "default": True,
                    },
                    {
                        "id": "beta",
                        "workspace": "/nonexistent/state/workspace-beta",
                        "model": {"primary": "openai/gpt-4o"},
                    },
                ],
            },
        )


class WorkspaceTests(SynchronousTestCase):
    def test_workspace_precedence(self) -> None:
        """Agent workspace, else defaults.workspace, else OpenClaw's implicit one
        (<state>/workspace for the default agent, <state>/workspace-<id> otherwise)."""
        registry = AgentRegistry(
            config(AgentConfig(id="a", workspace="/explicit"), AgentConfig(id="b"))
        )
        self.assertEqual(registry.get("a").workspace, Path("/explicit"))
        self.assertEqual(registry.get("b").workspace, Path("/nonexistent/state/workspace-b"))
        registry = AgentRegistry(config(defaults=AgentDefaults(workspace="/shared")))
        self.assertEqual(registry.get("main").workspace, Path("/shared"))
        self.assertEqual(
            AgentRegistry(config()).get("main").workspace, Path("/nonexistent/state/workspace")
        )

    def test_roster_under_a_shared_root(self) -> None:
        """With agents.defaults.workspace and several agents, each agent without its
        own workspace gets <root>/<agentId> (OpenClaw's roster rule)."""
        registry = AgentRegistry(
            config(
                AgentConfig(id="a"),
                AgentConfig(id="b"),
                defaults=AgentDefaults(workspace="/shared"),
            ),
            env={},
        )
        self.assertEqual(registry.get("a").workspace, Path("/shared/a"))
        self.assertEqual(registry.get("b").workspace, Path("/shared/b"))

    def test_workspace_dir_from_the_environment(self) -> None:
        """A sole agent without a configured workspace uses OPENCLAW_WORKSPACE_DIR."""
        registry = AgentRegistry(config(), env={"OPENCLAW_WORKSPACE_DIR": "/from/env"})
        self.assertEqual(registry.get("main").workspace, Path("/from/env"))

    def test_tilde_is_expanded(self) -> None:
        """A ~ in a workspace path is the user's home."""
        self.patch(os, "environ", {**os.environ, "HOME": "/home/tester"})
        registry = AgentRegistry(config(AgentConfig(id="a", workspace="~/ws")))
        self.assertEqual(registry.get("a").workspace, Path("/home/tester/ws"))


class ModelTests(SynchronousTestCase):
    def test_agent_model_beats_default(self) -> None:
        """agents.list[].model wins over agents.defaults.model.primary."""
        registry = AgentRegistry(
            config(
                AgentConfig(id="a", model="openrouter/anthropic/claude-3.5-sonnet"),
                AgentConfig(id="b"),
                defaults=AgentDefaults(model_primary="ollama/llama3.2"),
            )
        )
        self.assertEqual(
            registry.model_ref("a"), ModelRef("openrouter", "anthropic/claude-3.5-sonnet")
        )
        self.assertEqual(str(registry.model_ref("b")), "ollama/llama3.2")

    def test_no_model_is_a_classified_error(self) -> None:
        """An agent without any model fails with a ProviderError that says what to set."""
        with self.assertRaises(ModelResolutionError) as caught:
            AgentRegistry(config()).model_ref("main")
        self.assertEqual(caught.exception.kind, FailureKind.MODEL_NOT_FOUND)
        self.assertEqual(caught.exception.code, "model_not_configured")
        self.assertIn("agents.defaults.model.primary", caught.exception.message)

    def test_bare_model_ids(self) -> None:
        """A bare id resolves through a provider's models list or the only provider."""
        providers = {
            "ollama": ProviderConfig(
                id="ollama", api="openai-completions", models=(ModelEntry(id="llama3.2"),)
            ),
            "vllm": ProviderConfig(id="vllm", api="openai-completions"),
        }
        self.assertEqual(parse_model_ref("llama3.2", providers), ModelRef("ollama", "llama3.2"))
        with self.assertRaises(ModelResolutionError):
            parse_model_ref("qwen", providers)
        self.assertEqual(
            parse_model_ref("qwen", {"vllm": providers["vllm"]}), ModelRef("vllm", "qwen")
        )
        for bad in ("", "/x", "x/"):
            with self.assertRaises(ModelResolutionError):
                parse_model_ref(bad, providers)

    def test_provider_api(self) -> None:
        """provider_api names a configured provider's api; demo exists unconfigured."""
        registry = AgentRegistry(
            config(providers={"oa": ProviderConfig(id="oa", api="openai-completions")})
        )
        self.assertEqual(registry.provider_api("oa"), "openai-completions")
        self.assertEqual(registry.provider_api("demo"), "demo")
        self.assertIsNone(registry.provider_api("nope"))


class ProviderCacheTests(SynchronousTestCase):
    def test_builds_once_and_demo_always_exists(self) -> None:
        """Providers are built on first use and reused; demo resolves without an entry;
        an unconfigured id is a KeyError."""
        built: list[ProviderConfig] = []

        def build(cfg: ProviderConfig) -> ScriptedProvider:
            built.append(cfg)
            return ScriptedProvider(clock=Clock(), provider_id=cfg.id)

        cache = ProviderCache(
            config(providers={"oa": ProviderConfig(id="oa", api="openai-completions")}), build
        )
        self.assertIs(cache("oa"), cache("oa"))
        self.assertEqual(cache("demo").provider_id, "demo")
        self.assertEqual(
            [(c.id, c.api) for c in built], [("oa", "openai-completions"), ("demo", "demo")]
        )
        with self.assertRaises(KeyError):
            cache("missing")

    def test_with_config_keeps_unchanged_providers(self) -> None:
        """A reload reuses providers whose settings did not change and rebuilds the
        changed ones; a provider no longer configured is gone."""

        def build(cfg: ProviderConfig) -> ScriptedProvider:
            return ScriptedProvider(clock=Clock(), provider_id=cfg.id)

        a = ProviderConfig(id="a", api="openai-completions", base_url="http://a")
        b = ProviderConfig(id="b", api="openai-completions", base_url="http://b")
        cache = ProviderCache(config(providers={"a": a, "b": b}), build)
        old_a, old_b = cache("a"), cache("b")
        b2 = ProviderConfig(id="b", api="openai-completions", base_url="http://b2")
        fresh = cache.with_config(config(providers={"a": a, "b": b2}))
        self.assertIs(fresh("a"), old_a)
        self.assertIsNot(fresh("b"), old_b)
        gone = cache.with_config(config(providers={"b": b}))
        with self.assertRaises(KeyError):
            gone("a")
