"""Agents from configuration: ids, default agent, system prompts, model references."""

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

    def test_tilde_is_expanded(self) -> None:
        """A ~ in a workspace path is the user's home."""
        self.patch(os, "environ", {**os.environ, "HOME": "/home/tester"})
        registry = AgentRegistry(config(AgentConfig(id="a", workspace="~/ws")))
        self.assertEqual(registry.get("a").workspace, Path("/home/tester/ws"))


class SystemPromptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.workspace = Path(self.mktemp())
        self.workspace.mkdir()

    def registry(
        self, prompt: str | None = "You are Main.", max_bytes: int = 64 * 1024
    ) -> AgentRegistry:
        return AgentRegistry(
            config(AgentConfig(id="main", system_prompt=prompt, workspace=str(self.workspace))),
            bootstrap_max_bytes=max_bytes,
        )

    def test_prompt_then_bootstrap_files_then_extra(self) -> None:
        """The agent's prompt, then AGENTS.md, SOUL.md, IDENTITY.md, USER.md (those
        present, in that order, under their names), then the request's extra prompt."""
        (self.workspace / "USER.md").write_text("The user is Ada.\n")
        (self.workspace / "AGENTS.md").write_text("Be brief.")
        (self.workspace / "NOTES.md").write_text("not a bootstrap file")
        prompt = self.registry().system_prompt("main", "Answer in French.")
        assert prompt is not None
        self.assertEqual(
            prompt,
            "You are Main.\n\n# Project Context\n\nThe following workspace files are loaded:"
            "\n\n## AGENTS.md\n\nBe brief.\n\n## USER.md\n\nThe user is Ada."
            "\n\nAnswer in French.",
        )

    def test_nothing_configured_means_no_prompt(self) -> None:
        """No prompt, no files (missing workspace is fine), no extra: None."""
        registry = AgentRegistry(config(AgentConfig(id="main", workspace="/does/not/exist")))
        self.assertIsNone(registry.system_prompt("main"))
        self.assertEqual(registry.system_prompt("main", " extra "), "extra")

    def test_files_are_capped(self) -> None:
        """A bootstrap file larger than the cap contributes only its start."""
        (self.workspace / "SOUL.md").write_text("a" * 100)
        with capturedLogs() as events:
            prompt = self.registry(prompt=None, max_bytes=10).system_prompt("main")
        assert prompt is not None
        self.assertIn("## SOUL.md\n\n" + "a" * 10 + "\n\n[... truncated ...]", prompt)
        self.assertNotIn("a" * 11, prompt)
        self.assertTrue(any(e["log_level"] == LogLevel.warn for e in events))

    def test_files_are_cached_by_mtime(self) -> None:
        """A file is re-read only when its mtime or size changes."""
        soul = self.workspace / "SOUL.md"
        soul.write_text("old")
        os.utime(soul, ns=(1_000_000_000, 1_000_000_000))
        registry = self.registry(prompt=None)
        self.assertIn("old", registry.system_prompt("main") or "")
        soul.write_text("new")
        os.utime(soul, ns=(1_000_000_000, 1_000_000_000))
        self.assertIn("old", registry.system_prompt("main") or "")
        os.utime(soul, ns=(2_000_000_000, 2_000_000_000))
        self.assertIn("new", registry.system_prompt("main") or "")
        soul.unlink()
        self.assertIsNone(registry.system_prompt("main"))


class ClockedPromptTests(SynchronousTestCase):
    """With a clock, the bootstrap files are looked at once per recheck interval."""

    def setUp(self) -> None:
        self.workspace = Path(self.mktemp())
        self.workspace.mkdir()
        self.clock = Clock()
        self.clock.advance(1000)
        self.registry = AgentRegistry(
            config(AgentConfig(id="main", system_prompt="Base.", workspace=str(self.workspace))),
            clock=self.clock,
            recheck_seconds=1.0,
        )

    def test_files_are_not_looked_at_within_the_interval(self) -> None:
        """An edit shows up only once the interval has passed; the extra prompt
        still applies to every call."""
        soul = self.workspace / "SOUL.md"
        soul.write_text("old")
        self.assertEqual(
            self.registry.system_prompt("main", "Extra."),
            "Base.\n\n# Project Context\n\nThe following workspace files are loaded:"
            "\n\n## SOUL.md\n\nold\n\nExtra.",
        )
        soul.write_text("brand new")
        prompt = self.registry.system_prompt("main", "Other.")
        assert prompt is not None
        self.assertIn("## SOUL.md\n\nold", prompt)
        self.assertTrue(prompt.endswith("Other."))
        self.clock.advance(1.0)
        self.assertIn("## SOUL.md\n\nbrand new", self.registry.system_prompt("main") or "")

    def test_removed_file_disappears_after_the_interval(self) -> None:
        """A deleted bootstrap file leaves the prompt at the next recheck."""
        (self.workspace / "USER.md").write_text("Ada")
        self.assertIn("Ada", self.registry.system_prompt("main") or "")
        (self.workspace / "USER.md").unlink()
        self.clock.advance(0.5)
        self.assertIn("Ada", self.registry.system_prompt("main") or "")
        self.clock.advance(0.5)
        self.assertEqual(self.registry.system_prompt("main"), "Base.")

    def test_clock_going_back_rechecks(self) -> None:
        """A clock that moved backwards does not pin a stale prompt."""
        self.assertEqual(self.registry.system_prompt("main"), "Base.")
        (self.workspace / "AGENTS.md").write_text("Be brief.")
        self.clock.rightNow -= 10
        self.assertIn("Be brief.", self.registry.system_prompt("main") or "")


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
