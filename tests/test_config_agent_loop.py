"""The agent loop's configuration keys: tools.*, per-agent tools, compaction,
model fallbacks, bootstrap limits (openclaw.config.agent_loop via the loader)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from openclaw.config import ConfigError, LoadedConfig, config_from_mapping, startup_problems
from openclaw.config.model import (
    ApplyPatchConfig,
    CompactionConfig,
    ExecConfig,
    LoopDetectionConfig,
    MemoryFlushConfig,
    SsrfPolicyConfig,
    ToolPolicyConfig,
    WebFetchConfig,
)

NOT_HERE = "OpenClaw setting not implemented by openclaw-twisted; ignored"


def load(data: dict[str, Any]) -> LoadedConfig:
    return config_from_mapping(data, env={"HOME": "/home/u"}, state_dir=Path("/state"))


def problems(data: dict[str, Any]) -> list[str]:
    """The load's problems, sorted (their order follows the builders, not the file)."""
    try:
        load(data)
    except ConfigError as e:
        return sorted(e.problems)
    raise AssertionError("expected a ConfigError")


class DefaultsTests(SynchronousTestCase):
    def test_empty_config_defaults(self) -> None:
        """Without keys every setting has OpenClaw's default."""
        c = load({}).config
        self.assertEqual(c.tools.policy, ToolPolicyConfig())
        self.assertEqual(c.tools.exec, ExecConfig())
        self.assertEqual(c.tools.web_fetch, WebFetchConfig())
        self.assertEqual(c.tools.loop_detection, LoopDetectionConfig())
        d = c.agents.defaults
        self.assertEqual((d.bootstrap_max_chars, d.bootstrap_total_max_chars), (20_000, 60_000))
        self.assertEqual(d.compaction, CompactionConfig())
        self.assertEqual(d.model_fallbacks, ())
        self.assertIsNone(d.max_concurrent)
        self.assertIsNone(d.user_timezone)


class ToolsTests(SynchronousTestCase):
    def test_policy_keys(self) -> None:
        """profile, allow, alsoAllow and deny are read, lower-cased."""
        c = load({"tools": {"profile": "coding", "alsoAllow": ["Gateway"], "deny": ["group:web"]}})
        self.assertEqual(
            c.config.tools.policy,
            ToolPolicyConfig(profile="coding", also_allow=("gateway",), deny=("group:web",)),
        )
        self.assertEqual(c.warnings, ())
        allow = load({"tools": {"allow": []}}).config.tools.policy
        self.assertIsNone(allow.allow)  # an empty allow-list restricts nothing

    def test_policy_errors(self) -> None:
        """A bad profile, an unknown group and allow with alsoAllow fail with their paths."""
        found = problems(
            {
                "tools": {
                    "profile": "root",
                    "allow": ["read"],
                    "alsoAllow": ["x"],
                    "deny": ["group:nope"],
                }
            }
        )
        self.assertEqual(
            found,
            [
                "tools.alsoAllow: cannot be set together with allow in the same scope; merge it "
                "into allow, or use profile + alsoAllow",
                "tools.deny[0]: expected a tool name, a * pattern or one of group:agents, "
                "group:automation, group:fs, group:media, group:memory, group:messaging, "
                "group:nodes, group:openclaw, group:plugins, group:runtime, group:sessions, "
                'group:ui, group:web, got "group:nope"',
                'tools.profile: expected one of minimal, coding, messaging, full, got "root"',
            ],
        )

    def test_narrowing_layers_are_refused_not_ignored(self) -> None:
        """tools.byProvider / toolsBySender only ever take tools away in OpenClaw:
        ignoring them would hand the model more, so an entry is an error (global
        and per agent); an empty object restricts nothing and is accepted."""
        narrows = (
            "narrows the tools in OpenClaw but is not implemented by openclaw-twisted; "
            "ignoring it would give the model more tools than this config allows, so "
            "express the restriction with allow/deny (globally or in the agent's tools) "
            "and remove this key"
        )
        found = problems(
            {
                "tools": {"byProvider": {"anthropic": {"profile": "minimal"}}},
                "agents": {
                    "list": [{"id": "c", "tools": {"toolsBySender": {"*": {"deny": ["exec"]}}}}]
                },
            }
        )
        self.assertEqual(
            found,
            [
                f"agents.list[0].tools.toolsBySender: {narrows}",
                f"tools.byProvider: {narrows}",
            ],
        )
        loaded = load({"tools": {"byProvider": {}, "toolsBySender": {}}})
        self.assertEqual(loaded.warnings, ())

    def test_exec_keys(self) -> None:
        """tools.exec keys are honoured; timeoutSec is the legacy spelling."""
        c = load(
            {
                "tools": {
                    "exec": {
                        "mode": "allowlist",
                        "allowlist": ["git", "/usr/bin/*"],
                        "safeBins": ["wc"],
                        "timeoutSec": 60,
                        "backgroundMs": 500,
                        "cleanupMs": 0,
                        "notifyOnExit": False,
                        "pathPrepend": ["~/bin"],
                        "askFallback": "allowlist",
                        "approvalTimeoutSeconds": 30,
                        "applyPatch": {"enabled": False, "allowModels": ["gpt-x"]},
                        "host": "gateway",
                    }
                }
            }
        )
        e = c.config.tools.exec
        self.assertEqual(e.mode, "allowlist")
        self.assertEqual(e.allowlist, ("git", "/usr/bin/*"))
        self.assertEqual(e.safe_bins, ("wc",))
        self.assertEqual((e.timeout_seconds, e.background_ms, e.cleanup_ms), (60.0, 500, 0))
        self.assertFalse(e.notify_on_exit)
        self.assertEqual(e.path_prepend, ("~/bin",))
        self.assertEqual((e.ask_fallback, e.approval_timeout_seconds), ("allowlist", 30.0))
        self.assertEqual(e.apply_patch, ApplyPatchConfig(enabled=False, allow_models=("gpt-x",)))
        self.assertEqual(c.warnings, (f"tools.exec.host: {NOT_HERE}",))

    def test_exec_legacy_pair_and_mixing(self) -> None:
        """security/ask are read; mixing them with mode is refused; bad values named."""
        e = load({"tools": {"exec": {"security": "allowlist", "ask": "always"}}}).config.tools.exec
        self.assertEqual((e.mode, e.security, e.ask), (None, "allowlist", "always"))
        found = problems({"tools": {"exec": {"mode": "full", "ask": "off"}}})
        self.assertEqual(len(found), 1)
        self.assertTrue(found[0].startswith("tools.exec: set either mode or the legacy"))
        self.assertEqual(
            problems({"tools": {"exec": {"mode": "yolo", "timeoutSeconds": -1}}}),
            [
                'tools.exec.mode: expected one of deny, allowlist, ask, auto, full, got "yolo"',
                "tools.exec.timeoutSeconds: expected a number >= 0, got -1",
            ],
        )

    def test_web_fetch(self) -> None:
        """tools.web.fetch keys, clamps and the SSRF policy are honoured."""
        c = load(
            {
                "tools": {
                    "web": {
                        "fetch": {
                            "enabled": False,
                            "maxChars": 50_000,
                            "maxCharsCap": 30_000,
                            "maxResponseBytes": 10,
                            "timeoutSeconds": 5,
                            "maxRedirects": 0,
                            "readability": False,
                            "userAgent": "ua",
                            "ssrfPolicy": {
                                "dangerouslyAllowPrivateNetwork": True,
                                "allowedHostnames": ["Intra.Example"],
                                "allowIpv6UniqueLocalRange": True,
                            },
                        }
                    }
                }
            }
        )
        f = c.config.tools.web_fetch
        self.assertFalse(f.enabled)
        self.assertEqual(
            (f.max_chars, f.max_chars_cap, f.max_response_bytes), (30_000, 30_000, 32_000)
        )
        self.assertEqual((f.timeout_seconds, f.max_redirects, f.readability), (5.0, 0, False))
        self.assertEqual(f.user_agent, "ua")
        self.assertEqual(
            f.ssrf_policy,
            SsrfPolicyConfig(
                dangerously_allow_private_network=True,
                allowed_hostnames=("intra.example",),
                allow_ipv6_unique_local_range=True,
            ),
        )
        self.assertEqual(
            problems(
                {
                    "tools": {
                        "web": {"fetch": {"ssrfPolicy": {"dangerouslyAllowPrivateNetwork": "yes"}}}
                    }
                }
            ),
            [
                "tools.web.fetch.ssrfPolicy.dangerouslyAllowPrivateNetwork: expected true or "
                'false, got "yes"'
            ],
        )

    def test_loop_detection(self) -> None:
        """tools.loopDetection keys; critical must exceed warning."""
        c = load(
            {
                "tools": {
                    "loopDetection": {
                        "enabled": True,
                        "historySize": 40,
                        "warningThreshold": 5,
                        "criticalThreshold": 8,
                        "detectors": {"pingPong": False},
                    }
                }
            }
        )
        loop = c.config.tools.loop_detection
        self.assertEqual(
            loop,
            LoopDetectionConfig(
                enabled=True, history_size=40, warning_threshold=5, critical_threshold=8,
                ping_pong=False,
            ),
        )  # fmt: skip
        self.assertEqual(
            problems({"tools": {"loopDetection": {"warningThreshold": 9, "criticalThreshold": 9}}}),
            ["tools.loopDetection.criticalThreshold: must be greater than warningThreshold (9)"],
        )

    def test_openclaw_only_tool_keys_warn(self) -> None:
        """Tool keys this project does not honour are warned about, not refused."""
        w = load({"tools": {"web": {"search": {}}, "elevated": {}}}).warnings
        self.assertEqual(
            set(w),
            {
                f"tools.web.search: {NOT_HERE}",
                f"tools.elevated: {NOT_HERE}",
            },
        )


class AgentTests(SynchronousTestCase):
    def test_agent_tools_merge_over_global(self) -> None:
        """An agent's exec and loop keys apply over the global ones; its policy is its own."""
        c = load(
            {
                "tools": {
                    "exec": {"mode": "ask", "timeoutSeconds": 99},
                    "loopDetection": {"enabled": True},
                },
                "agents": {
                    "list": [
                        {"id": "a", "tools": {"profile": "minimal", "exec": {"backgroundMs": 1}}},
                        {"id": "b"},
                    ]
                },
            }
        ).config
        a, b = c.agents.list
        assert a.tools is not None
        self.assertEqual(a.tools.policy, ToolPolicyConfig(profile="minimal"))
        self.assertEqual(
            (a.tools.exec.mode, a.tools.exec.timeout_seconds, a.tools.exec.background_ms),
            ("ask", 99.0, 1),
        )
        self.assertTrue(a.tools.loop_detection.enabled)
        self.assertIsNone(b.tools)

    def test_agent_exec_legacy_pair_replaces_global_mode(self) -> None:
        """An agent's legacy security/ask pair replaces an inherited mode."""
        c = load(
            {
                "tools": {"exec": {"mode": "deny"}},
                "agents": {"list": [{"id": "a", "tools": {"exec": {"security": "full"}}}]},
            }
        ).config
        tools = c.agents.list[0].tools
        assert tools is not None
        self.assertEqual((tools.exec.mode, tools.exec.security), (None, "full"))

    def test_fallbacks(self) -> None:
        """model.fallbacks of the defaults and of an agent are read; bad refs named."""
        c = load(
            {
                "agents": {
                    "defaults": {"model": {"primary": "demo/a", "fallbacks": ["demo/b", "demo/b"]}},
                    "list": [
                        {"id": "x", "model": {"fallbacks": []}},
                        {"id": "y", "model": "demo/c"},
                        {"id": "z", "model": {"primary": "demo/d", "fallbacks": ["demo/e"]}},
                    ],
                }
            }
        ).config
        self.assertEqual(c.agents.defaults.model_fallbacks, ("demo/b",))
        x, y, z = c.agents.list
        self.assertEqual((x.model, x.model_fallbacks), (None, ()))
        self.assertEqual((y.model, y.model_fallbacks), ("demo/c", None))
        self.assertEqual((z.model, z.model_fallbacks), ("demo/d", ("demo/e",)))
        self.assertEqual(
            problems({"agents": {"defaults": {"model": {"fallbacks": ["nope", 3]}}}}),
            [
                "agents.defaults.model.fallbacks[0]: expected a model reference like "
                'provider/model, got "nope"',
                "agents.defaults.model.fallbacks[1]: expected a string, got 3",
            ],
        )

    def test_bootstrap_limits_compaction_and_more(self) -> None:
        """Bootstrap limits, compaction, maxConcurrent and userTimezone are read."""
        c = load(
            {
                "gateway": {"auth": {"mode": "none"}},
                "agents": {
                    "defaults": {
                        "bootstrapMaxChars": 1000,
                        "bootstrapTotalMaxChars": 5000,
                        "maxConcurrent": 3,
                        "userTimezone": "Europe/Berlin",
                        "skipBootstrap": True,
                        "compaction": {
                            "enabled": False,
                            "mode": "default",
                            "reserveTokens": 1000,
                            "keepRecentTokens": 2000,
                            "model": "demo/small",
                            "timeoutSeconds": 60,
                            "identifierPolicy": "off",
                            "memoryFlush": {
                                "enabled": False,
                                "model": "demo/local",
                                "softThresholdTokens": 6000,
                                "forceFlushTranscriptBytes": "1.5mb",
                            },
                        },
                    },
                    "list": [{"id": "a", "bootstrapMaxChars": 10, "bootstrapTotalMaxChars": 20}],
                },
            }
        )
        d = c.config.agents.defaults
        self.assertEqual((d.bootstrap_max_chars, d.bootstrap_total_max_chars), (1000, 5000))
        self.assertEqual((d.max_concurrent, d.user_timezone), (3, "Europe/Berlin"))
        self.assertTrue(d.skip_bootstrap)
        self.assertEqual(
            d.compaction,
            CompactionConfig(
                enabled=False, mode="default", reserve_tokens=1000, keep_recent_tokens=2000,
                model="demo/small", timeout_seconds=60.0, identifier_policy="off",
                memory_flush=MemoryFlushConfig(
                    enabled=False, model="demo/local", soft_threshold_tokens=6000,
                    force_flush_transcript_bytes=1_572_864,
                ),
            ),
        )  # fmt: skip
        a = c.config.agents.list[0]
        self.assertEqual((a.bootstrap_max_chars, a.bootstrap_total_max_chars), (10, 20))
        self.assertEqual(c.warnings, ())
        self.assertEqual(startup_problems(c.config), [])

    def test_bad_agent_values(self) -> None:
        """Bad values fail with their key paths."""
        self.assertEqual(
            problems(
                {
                    "agents": {
                        "defaults": {
                            "bootstrapMaxChars": 0,
                            "userTimezone": "Mars/Base",
                            "compaction": {
                                "mode": "smart",
                                "model": "nomodel",
                                "memoryFlush": {
                                    "model": "local",
                                    "softThresholdTokens": -1,
                                    "forceFlushTranscriptBytes": "lots",
                                },
                            },
                        },
                        "list": [{"id": "a", "tools": {"profile": "all"}}],
                    }
                }
            ),
            [
                "agents.defaults.bootstrapMaxChars: expected an integer >= 1, got 0",
                "agents.defaults.compaction.memoryFlush.forceFlushTranscriptBytes: expected a "
                'size like "10gb", "500mb" or 1048576 (bytes; b, kb, mb, gb, tb), got "lots"',
                "agents.defaults.compaction.memoryFlush.model: expected an exact model "
                'reference like provider/model, got "local"',
                "agents.defaults.compaction.memoryFlush.softThresholdTokens: expected an "
                "integer >= 0, got -1",
                'agents.defaults.compaction.mode: expected one of default, safeguard, got "smart"',
                "agents.defaults.compaction.model: expected a model reference like "
                'provider/model, got "nomodel"',
                'agents.defaults.userTimezone: expected an IANA time zone like "Europe/Berlin", '
                'got "Mars/Base"',
                "agents.list[0].tools.profile: expected one of minimal, coding, messaging, full, "
                'got "all"',
            ],
        )

    def test_compaction_model_provider_is_checked_at_start(self) -> None:
        """A compaction model naming an unknown provider stops the start-up."""
        c = load(
            {
                "gateway": {"auth": {"mode": "none"}},
                "agents": {"defaults": {"compaction": {"model": "nowhere/x"}}},
            }
        ).config
        found = startup_problems(c)
        self.assertEqual(len(found), 1)
        self.assertTrue(found[0].startswith("agents.defaults.compaction.model:"))

    def test_memory_flush_model_provider_is_checked_at_start(self) -> None:
        """So is a memoryFlush.model naming an unknown provider."""
        flush = {"memoryFlush": {"model": "nowhere/x"}}
        c = load(
            {"gateway": {"auth": {"mode": "none"}}, "agents": {"defaults": {"compaction": flush}}}
        ).config
        found = startup_problems(c)
        self.assertEqual(len(found), 1)
        self.assertTrue(found[0].startswith("agents.defaults.compaction.memoryFlush.model:"))
