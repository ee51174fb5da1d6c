"""Validation of the honoured keys, unknown/OpenClaw-only keys, and start-up checks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import attrs
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config import (
    AgentConfig,
    Config,
    ConfigError,
    GatewayConfig,
    LoadedConfig,
    ModelEntry,
    WebSocketConfig,
    is_loopback_bind,
    parse_config_text,
    split_model_ref,
    startup_problems,
)
from openclaw.config.model import AgentToolsConfig, SessionResetConfig, ToolPolicyConfig

NOT_HERE = "OpenClaw setting not implemented by openclaw-twisted; ignored"


def parse(text: str, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Parse ``text`` as the file ``test.json5`` with an injected environment."""
    return parse_config_text(
        text, source="test.json5", env=env or {"HOME": "/home/u"}, state_dir=Path("/s")
    )


def problems_of(case: SynchronousTestCase, text: str) -> tuple[str, ...]:
    """The problem lines ``text`` is rejected with."""
    error: ConfigError = case.assertRaises(ConfigError, parse, text, None)
    return error.problems


#: A user's OpenClaw config as found in the wild: most of it is OpenClaw-only.
REAL_OPENCLAW_JSON = """
{
  "$schema": "https://openclaw.ai/config.schema.json",
  meta: { lastTouchedVersion: "2026.9.6", lastTouchedAt: "2026-09-20T10:00:00Z" },
  wizard: { lastRunAt: "2026-09-01T09:00:00Z", lastRunVersion: "2026.8.1", lastRunMode: "local" },
  update: { channel: "stable", checkOnStart: false },
  telemetry: { enabled: false },
  logging: { level: "info", consoleStyle: "pretty" },
  browser: { enabled: true, defaultProfile: "chrome" },
  messages: { ackReactionScope: "group-mentions", queue: { mode: "collect" } },
  commands: { native: "auto", text: true, restart: true },
  cron: { enabled: true },
  hooks: { enabled: true, token: "${HOOKS_TOKEN}", path: "/hooks",
           internal: { enabled: true, entries: { "session-memory": { enabled: true } } } },
  tools: { profile: "coding", web: { search: { enabled: true, apiKey: "${BRAVE_API_KEY}" } } },
  skills: { install: { nodeManager: "npm" }, entries: { "nano-banana-pro": { enabled: false } } },
  plugins: { entries: { telegram: { enabled: true }, whatsapp: { enabled: true } } },
  channels: {
    whatsapp: { dmPolicy: "allowlist", allowFrom: ["+15555550123"], groupPolicy: "allowlist" },
    telegram: { enabled: true, botToken: "${TELEGRAM_BOT_TOKEN}", dmPolicy: "pairing" },
  },
  auth: { profiles: { "anthropic:default": { provider: "anthropic", mode: "token" } } },
  env: { shellEnv: { enabled: true } },
  gateway: {
    mode: "local",
    port: 18789,
    bind: "loopback",
    auth: { mode: "token", token: "0123456789abcdef0123456789abcdef", allowTailscale: false },
    tailscale: { mode: "off", resetOnExit: false },
    controlUi: { enabled: true, allowInsecureAuth: false,
                 allowedOrigins: ["https://Ops.Example.com"] },
    http: { endpoints: { chatCompletions: { enabled: true }, responses: { enabled: false } } },
    nodes: { denyCommands: ["camera.snap"] },
  },
  models: {
    mode: "merge",
    providers: {
      ollama: {
        baseUrl: "http://127.0.0.1:11434/v1",
        api: "openai-completions",
        models: [
          { id: "llama3.2", name: "Llama 3.2", reasoning: false, input: ["text"],
            cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
            contextWindow: 131072, maxTokens: 8192 },
          { id: "qwen3", name: "Qwen 3", reasoning: true, input: ["text"],
            cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 } },
        ],
      },
    },
  },
  agents: {
    defaults: {
      model: { primary: "ollama/llama3.2", fallbacks: ["anthropic/claude-opus-4-6"] },
      models: { "ollama/llama3.2": { alias: "llama" } },
      workspace: "~/.openclaw/workspace",
      compaction: { mode: "safeguard" },
      maxConcurrent: 4,
      subagents: { maxConcurrent: 8 },
      heartbeat: { every: "0m" },
      timeoutSeconds: 900,
    },
    list: [
      { id: "main", default: true, identity: { name: "Claw", emoji: "🦞" } },
      { id: "work", name: "Work", workspace: "~/.openclaw/workspace-work",
        model: "ollama/qwen3", identity: { name: "Worker" }, tools: { profile: "minimal" } },
    ],
  },
  bindings: [{ agentId: "work", match: { channel: "telegram" } }],
  session: { dmScope: "per-channel-peer", reset: { mode: "daily", atHour: 4 } },
}
"""


class RealOpenClawConfigTests(SynchronousTestCase):
    """A real ``openclaw.json`` loads: honoured keys used, the rest warned about once."""

    def setUp(self) -> None:
        """Load the fixture with no environment beyond ``HOME``."""
        self.loaded = parse(REAL_OPENCLAW_JSON)
        self.config = self.loaded.config

    def test_honoured_values(self) -> None:
        """The keys this project implements are read from the file."""
        c = self.config
        self.assertEqual(c.gateway.auth.token, "0123456789abcdef0123456789abcdef")
        self.assertEqual(c.gateway.auth.mode, "token")
        self.assertTrue(c.gateway.http.chat_completions.enabled)
        self.assertEqual(c.gateway.control_ui.allowed_origins, ("https://ops.example.com",))
        ollama = c.models.providers["ollama"]
        self.assertEqual(
            ollama.models,
            (
                ModelEntry("llama3.2", "Llama 3.2", context_window=131072, max_tokens=8192),
                ModelEntry("qwen3", "Qwen 3"),
            ),
        )
        self.assertEqual(c.agents.defaults.model_primary, "ollama/llama3.2")
        self.assertEqual(c.agents.defaults.timeout_seconds, 900)
        self.assertEqual(c.agents.defaults.workspace, "/home/u/.openclaw/workspace")
        self.assertEqual(
            c.agents.list,
            (
                AgentConfig(id="main", default=True),
                AgentConfig(
                    id="work",
                    name="Work",
                    model="ollama/qwen3",
                    workspace="/home/u/.openclaw/workspace-work",
                    tools=AgentToolsConfig(policy=ToolPolicyConfig(profile="minimal")),
                ),
            ),
        )
        self.assertEqual(c.agents.defaults.model_fallbacks, ("anthropic/claude-opus-4-6",))
        self.assertEqual(c.agents.defaults.compaction.mode, "safeguard")
        self.assertEqual(c.agents.defaults.max_concurrent, 4)
        self.assertEqual(c.tools.policy.profile, "coding")
        self.assertEqual(startup_problems(c), [])

    def test_openclaw_only_keys_warn_once_each(self) -> None:
        """Each ignored key gives exactly one warning, even when repeated in a list."""
        w = self.loaded.warnings
        self.assertEqual(len(w), len(set(w)))
        for key in (
            "meta", "wizard", "update", "telemetry", "logging", "browser", "messages",
            "commands", "cron", "hooks", "tools.web.search", "skills", "plugins", "channels",
            "auth",
            "bindings", "env.shellEnv", "gateway.mode", "gateway.tailscale", "gateway.nodes",
            "gateway.auth.allowTailscale",
            "gateway.controlUi.allowInsecureAuth", "models.mode",
            "models.providers.ollama.models[*].reasoning",
            "models.providers.ollama.models[*].input", "models.providers.ollama.models[*].cost",
            "agents.defaults.models", "agents.defaults.subagents",
            "agents.defaults.heartbeat", "agents.list[*].identity",
            "session.dmScope",
        ):  # fmt: skip
            self.assertIn(f"{key}: {NOT_HERE}", w)
        self.assertFalse([line for line in w if "endpoints.responses" in line])
        self.assertFalse(self.loaded.config.gateway.http.responses.enabled)
        self.assertFalse([line for line in w if line.startswith("$schema")])
        # session.reset is honoured (automatic resets), so it warns no more.
        self.assertFalse([line for line in w if line.startswith("session.reset")])
        self.assertEqual(self.loaded.config.session.reset, SessionResetConfig("daily", 4))
        self.assertEqual(len(w), 31)


class ProblemCollectionTests(SynchronousTestCase):
    """Every mistake is reported, one line each, in document order."""

    def test_three_mistakes_three_lines(self) -> None:
        """Three bad values give exactly three self-contained lines."""
        self.assertEqual(
            problems_of(
                self,
                '{gateway: {port: "abc", http: {maxBodyBytes: -5}}, session: {fsync: "always"}}',
            ),
            (
                'gateway.port: expected an integer 1..65535, got "abc"',
                "gateway.http.maxBodyBytes: expected an integer >= 1, got -5",
                'session.fsync: expected one of turn, never, got "always"',
            ),
        )

    def test_wrong_section_types(self) -> None:
        """Sections that are not objects, and lists that are not arrays."""
        self.assertEqual(
            problems_of(self, '{gateway: 5, models: [], agents: {list: {id: "a"}}, session: "x"}'),
            (
                "gateway: expected an object, got 5",
                "models: expected an object, got an array",
                "agents.list: expected an array, got an object",
                'session: expected an object, got "x"',
            ),
        )

    def test_scalar_types(self) -> None:
        """Booleans, integers, numbers, strings and string lists are checked."""
        text = """{gateway: {
            port: true,
            trustedProxies: ["10.0.0.1", 7, "not-an-ip"],
            shutdownGraceSeconds: -1,
            http: {bodyTimeoutSeconds: 0, endpoints: {chatCompletions: {
                enabled: "yes", sseKeepAliveSeconds: "15",
                images: {maxRedirects: 1.5, timeoutMs: Infinity, allowedMimes: "image/png"}}}},
            ws: {maxPayload: NaN, pingIntervalSeconds: 0},
          },
          agents: {list: [{id: "a", name: 5, default: 1}]},
        }"""
        self.assertEqual(
            problems_of(self, text),
            (
                "gateway.trustedProxies[1]: expected a string, got 7",
                'gateway.trustedProxies[2]: expected an IP address or CIDR range, got "not-an-ip"',
                "gateway.port: expected an integer 1..65535, got true",
                'gateway.http.endpoints.chatCompletions.enabled: expected true or false, got "yes"',
                "gateway.http.endpoints.chatCompletions.sseKeepAliveSeconds: expected a number >= "
                '0, got "15"',
                "gateway.http.endpoints.chatCompletions.images.allowedMimes: expected an array, "
                'got "image/png"',
                "gateway.http.endpoints.chatCompletions.images.maxRedirects: expected an integer "
                ">= 0, got 1.5",
                "gateway.http.endpoints.chatCompletions.images.timeoutMs: expected an integer "
                ">= 1, got inf",
                "gateway.http.bodyTimeoutSeconds: expected a number > 0, got 0",
                "gateway.ws.pingIntervalSeconds: expected a number > 0, got 0",
                "gateway.ws.maxPayload: expected an integer >= 1, got nan",
                "gateway.shutdownGraceSeconds: expected a number >= 0, got -1",
                "agents.list[0].default: expected true or false, got 1",
                "agents.list[0].name: expected a string, got 5",
            ),
        )

    def test_port_range(self) -> None:
        """Ports outside 1..65535 are refused; an integral float is accepted."""
        self.assertEqual(
            problems_of(self, "{gateway: {port: 70000}}"),
            ("gateway.port: expected an integer 1..65535, got 70000",),
        )
        self.assertEqual(
            problems_of(self, "{gateway: {port: 0}}"),
            ("gateway.port: expected an integer 1..65535, got 0",),
        )
        port = parse("{gateway: {port: 8080.0}}").config.gateway.port
        self.assertEqual((port, type(port)), (8080, int))

    def test_long_values_are_shortened(self) -> None:
        """A huge bad value does not flood the error line."""
        (line,) = problems_of(self, '{session: {fsync: "%s"}}' % ("x" * 500))
        self.assertLess(len(line), 160)
        self.assertTrue(line.endswith('..."'))

    def test_include_is_an_error(self) -> None:
        """``$include`` would silently drop settings, so it is refused."""
        self.assertEqual(
            problems_of(self, '{gateway: {"$include": "./gw.json5"}}'),
            ("gateway.$include: $include is not supported; inline the included file",),
        )


class GatewayValidationTests(SynchronousTestCase):
    """``gateway.*`` values."""

    def test_all_gateway_keys(self) -> None:
        """Every honoured gateway key reaches the frozen config."""
        g = parse(
            """{gateway: {
              port: 19001, bind: "lan", shutdownGraceSeconds: 0,
              trustedProxies: ["127.0.0.1", "10.0.0.0/8", "::1"],
              controlUi: {allowedOrigins: ["*"]},
              http: {maxBodyBytes: 1024, bodyTimeoutSeconds: 2.5,
                     cors: {allowedOrigins: ["HTTP://LOCALHOST:5173", "app://x"]},
                     endpoints: {chatCompletions: {enabled: true, sseKeepAliveSeconds: 0.5,
                        images: {allowUrl: true, urlAllowlist: ["images.example.com"],
                                 allowedMimes: ["IMAGE/PNG"], maxBytes: 10, maxRedirects: 0,
                                 timeoutMs: 99}}}},
              ws: {handshakeTimeoutMs: 1, tickIntervalMs: 2, pingIntervalSeconds: 3,
                   pingTimeoutSeconds: 4, maxPayload: 5, maxPreauthPayload: 6,
                   maxBufferedBytes: 7},
            }}"""
        ).config.gateway
        self.assertEqual((g.port, g.bind, g.shutdown_grace_seconds), (19001, "lan", 0.0))
        self.assertEqual(g.trusted_proxies, ("127.0.0.1", "10.0.0.0/8", "::1"))
        self.assertEqual(g.control_ui.allowed_origins, ("*",))
        self.assertEqual(g.http.cors.allowed_origins, ("http://localhost:5173", "app://x"))
        self.assertEqual((g.http.max_body_bytes, g.http.body_timeout_seconds), (1024, 2.5))
        chat = g.http.chat_completions
        self.assertEqual((chat.enabled, chat.sse_keep_alive_seconds), (True, 0.5))
        images = chat.images
        self.assertEqual(
            (images.allow_url, images.url_allowlist, images.allowed_mimes),
            (True, ("images.example.com",), ("image/png",)),
        )
        self.assertEqual((images.max_bytes, images.max_redirects, images.timeout_ms), (10, 0, 99))
        self.assertEqual(g.ws, WebSocketConfig(1, 2, 3.0, 4.0, 5, 6, 7))

    def test_bad_origins(self) -> None:
        """An origin with a path or trailing slash would never match: refused."""
        self.assertEqual(
            problems_of(self, '{gateway: {http: {cors: {allowedOrigins: ["https://a.com/"]}}}}'),
            (
                "gateway.http.cors.allowedOrigins[0]: expected an origin like "
                '"https://example.com" (no path, no trailing slash) or "*", got "https://a.com/"',
            ),
        )

    def test_bind_values(self) -> None:
        """Keywords and literal hosts are kept; ``auto`` means loopback with a warning."""
        self.assertEqual(parse('{gateway: {bind: "127.0.0.2"}}').config.gateway.bind, "127.0.0.2")
        self.assertEqual(
            parse('{gateway: {bind: "my-host.lan"}}').config.gateway.bind, "my-host.lan"
        )
        auto = parse('{gateway: {bind: "auto"}}')
        self.assertEqual(auto.config.gateway.bind, "loopback")
        self.assertEqual(
            auto.warnings, ('gateway.bind: "auto" is treated as "loopback" by openclaw-twisted',)
        )

    def test_bad_binds(self) -> None:
        """Blank, spaced and tailnet binds are refused."""
        self.assertEqual(
            problems_of(self, '{gateway: {bind: " "}}'),
            ('gateway.bind: expected loopback, lan, custom or a host/IP address, got " "',),
        )
        self.assertEqual(
            problems_of(self, '{gateway: {bind: "two words"}}'),
            ('gateway.bind: expected loopback, lan, custom or a host/IP address, got "two words"',),
        )
        (line,) = problems_of(self, '{gateway: {bind: "tailnet"}}')
        self.assertIn("tailnet binding is not supported", line)

    def test_custom_bind(self) -> None:
        """``custom`` needs ``customBindHost``; the host is ignored (warned) otherwise."""
        g = parse('{gateway: {bind: "custom", customBindHost: "192.168.1.5"}}').config.gateway
        self.assertEqual((g.bind, g.custom_bind_host), ("custom", "192.168.1.5"))
        self.assertEqual(
            problems_of(self, '{gateway: {bind: "custom"}}'),
            ('gateway.customBindHost: required when gateway.bind is "custom"',),
        )
        self.assertEqual(
            problems_of(self, '{gateway: {bind: "custom", customBindHost: "a b"}}'),
            ('gateway.customBindHost: expected a host name or IP address, got "a b"',),
        )
        loaded = parse('{gateway: {customBindHost: "10.1.1.1"}}')
        self.assertEqual(
            loaded.warnings,
            ('gateway.customBindHost: only used when gateway.bind is "custom"; ignored',),
        )

    def test_typo_is_a_warning(self) -> None:
        """Unknown keys inside honoured sections warn (with a suggestion), never fail."""
        loaded = parse("{gateway: {prot: 1234, http: {endpoints: {chatCompletion: {}}}}}")
        self.assertEqual(loaded.config.gateway.port, GatewayConfig().port)
        self.assertEqual(
            loaded.warnings,
            (
                'gateway.prot: not recognised (did you mean "port"?); ignored',
                "gateway.http.endpoints.chatCompletion: not recognised (did you mean "
                '"chatCompletions"?); ignored',
            ),
        )

    def test_unknown_top_level_key(self) -> None:
        """A top-level key OpenClaw does not have either is 'not recognised'."""
        self.assertEqual(
            parse("{frobnicate: 1}").warnings, ("frobnicate: not recognised; ignored",)
        )

    def test_tls_warning_points_at_ssl_listeners(self) -> None:
        """gateway.tls is ignored with a warning that names what does serve TLS
        (an ssl: listener, as docs/deployment.md shows), not a claim that TLS
        is impossible."""
        (line,) = parse("{gateway: {tls: {enabled: true}}}").warnings
        self.assertIn("--listen ssl:", line)
        self.assertNotIn("not implemented", line)


class ProviderValidationTests(SynchronousTestCase):
    """``models.providers.<id>``."""

    def test_provider_fields(self) -> None:
        """All provider fields are read; ids are lower-cased."""
        providers = parse(
            """{models: {providers: {OpenAI: {
                api: "openai-completions", baseUrl: " https://api.openai.com/v1 ",
                apiKey: "sk-1", headers: {"OpenAI-Organization": "org"}, timeoutSeconds: 30,
                models: [{id: "gpt-4o", name: "GPT-4o", contextWindow: 128000, maxTokens: 4096}],
            }, demo: {api: "demo", delayMs: 0}}}}"""
        ).config.models.providers
        openai = providers["openai"]
        self.assertEqual(
            (openai.id, openai.api, openai.base_url, openai.api_key, openai.timeout_seconds),
            ("openai", "openai-completions", "https://api.openai.com/v1", "sk-1", 30.0),
        )
        self.assertEqual(dict(openai.headers), {"OpenAI-Organization": "org"})
        self.assertEqual(openai.models, (ModelEntry("gpt-4o", "GPT-4o", 128000, 4096),))
        self.assertEqual((providers["demo"].api, providers["demo"].base_url), ("demo", None))

    def test_credentials_in_base_url(self) -> None:
        """user:password@ in baseUrl warns (it is never sent), and a refused URL is
        echoed without its password."""
        loaded = parse(
            '{models: {providers: {p: {api: "openai-completions",'
            ' baseUrl: "http://u:BASEURLSECRET@h/v1"}}}}'
        )
        (warning,) = [w for w in loaded.warnings if "baseUrl" in w]
        self.assertIn("not sent upstream", warning)
        with self.assertRaises(ConfigError) as caught:
            parse(
                '{models: {providers: {p: {api: "openai-completions", baseUrl: "ftp://u:BASEURLSECRET@h/v1"}}}}'
            )
        self.assertNotIn("BASEURLSECRET", " ".join(caught.exception.problems))
        self.assertIn("ftp://u:***@h/v1", " ".join(caught.exception.problems))

    def test_model_compat_max_tokens_field(self) -> None:
        """compat.maxTokensField is read; the other compat keys OpenClaw knows are
        ignored with a warning; a wrong value is a problem naming the key."""
        loaded = parse(
            """{models: {providers: {vllm: {api: "openai-completions", baseUrl: "http://h/v1",
                models: [{id: "m", compat: {maxTokensField: "max_completion_tokens",
                                            supportsStore: false}}]}}}}"""
        )
        (entry,) = loaded.config.models.providers["vllm"].models
        self.assertEqual(entry.max_tokens_field, "max_completion_tokens")
        self.assertTrue(any("supportsStore" in w for w in loaded.warnings), loaded.warnings)
        (line,) = problems_of(
            self,
            """{models: {providers: {v: {api: "openai-completions", baseUrl: "http://h/v1",
                models: [{id: "m", compat: {maxTokensField: "max_output"}}]}}}}""",
        )
        self.assertIn("models.providers.v.models[0].compat.maxTokensField", line)

    def test_unsupported_api_lists_supported(self) -> None:
        """OpenClaw's other api names are errors listing what is supported."""
        (line,) = problems_of(
            self, '{models: {providers: {g: {api: "google-generative-ai", baseUrl: "https://g"}}}}'
        )
        self.assertEqual(
            line,
            "models.providers.g.api: expected one of openai-completions, anthropic-messages, "
            'demo, got "google-generative-ai"',
        )
        (hinted,) = problems_of(
            self, '{models: {providers: {o: {api: "openai-responses", baseUrl: "https://o"}}}}'
        )
        self.assertIn('use "openai-completions"', hinted)

    def test_base_url_required_and_http(self) -> None:
        """Non-demo providers need an http(s) baseUrl."""
        self.assertEqual(
            problems_of(
                self,
                '{models: {providers: {a: {api: "anthropic-messages"}, '
                'b: {api: "openai-completions", baseUrl: "localhost:11434"}}}}',
            ),
            (
                "models.providers.a.baseUrl: required, expected a non-empty string",
                "models.providers.b.baseUrl: expected an http:// or https:// URL, got "
                '"localhost:11434"',
            ),
        )

    def test_api_inferred(self) -> None:
        """A missing api is inferred from the id (warned unless obvious)."""
        loaded = parse(
            '{models: {providers: {anthropic: {baseUrl: "https://api.anthropic.com"}, '
            'demo: {}, vllm: {baseUrl: "http://127.0.0.1:8000/v1"}}}}'
        )
        providers = loaded.config.models.providers
        self.assertEqual(
            [providers[k].api for k in ("anthropic", "demo", "vllm")],
            ["anthropic-messages", "demo", "openai-completions"],
        )
        self.assertEqual(
            loaded.warnings, ('models.providers.vllm.api: not set; using "openai-completions"',)
        )

    def test_bad_provider_entries(self) -> None:
        """Bad ids, duplicates, non-objects and bad model entries are each reported."""
        text = """{models: {providers: {
            "a/b": {api: "demo"},
            Dup: {api: "demo"}, dup: {api: "demo"},
            x: "nope",
            y: {api: "demo", timeoutSeconds: 0, delayMs: -1, headers: [1],
                models: [{name: "no id"}, {id: "m"}, {id: "m"}, "s", {id: "n", maxTokens: 0}]},
        }}}"""
        self.assertEqual(
            problems_of(self, text),
            (
                'models.providers.a/b: expected a provider id without "/" or spaces, got "a/b"',
                'models.providers.dup: duplicate provider id "dup" (also models.providers.Dup)',
                'models.providers.x: expected an object, got "nope"',
                "models.providers.y.delayMs: expected a number >= 0, got -1",
                "models.providers.y.headers: expected an object of header names to strings, got "
                "<redacted>",
                "models.providers.y.timeoutSeconds: expected a number > 0, got 0",
                "models.providers.y.models[0].id: required, expected a non-empty string",
                'models.providers.y.models[2].id: duplicate model id "m" (also '
                "models.providers.y.models[1])",
                'models.providers.y.models[3]: expected an object with an id, got "s"',
                "models.providers.y.models[4].maxTokens: expected an integer >= 1, got 0",
            ),
        )

    def test_delay_only_for_demo(self) -> None:
        """``delayMs`` on a real provider is ignored with a warning."""
        loaded = parse(
            '{models: {providers: {o: {api: "openai-completions", baseUrl: "http://h/v1", '
            "delayMs: 5}}}}"
        )
        self.assertEqual(
            loaded.warnings,
            ('models.providers.o.delayMs: only used by providers with api "demo"; ignored',),
        )

    def test_providers_must_be_object(self) -> None:
        """``models.providers`` is keyed by id."""
        self.assertEqual(
            problems_of(self, "{models: {providers: []}}"),
            ("models.providers: expected an object keyed by provider id, got an array",),
        )


class AgentValidationTests(SynchronousTestCase):
    """``agents.defaults`` and ``agents.list``."""

    def test_ids_normalised(self) -> None:
        """Ids are lower-cased; invalid ones are normalised with a warning."""
        loaded = parse('{agents: {list: [{id: "Main"}, {id: "My Agent!"}]}}')
        self.assertEqual([a.id for a in loaded.config.agents.list], ["main", "my-agent"])
        self.assertEqual(
            loaded.warnings,
            ('agents.list[1].id: "My Agent!" is not a valid agent id; using "my-agent"',),
        )

    def test_duplicate_ids_after_normalisation(self) -> None:
        """Two entries that normalise to the same id are an error."""
        self.assertEqual(
            problems_of(self, '{agents: {list: [{id: "ops team"}, {id: "Ops-Team"}]}}'),
            ('agents.list[1].id: duplicate agent id "ops-team" (also agents.list[0].id)',),
        )

    def test_missing_and_bad_entries(self) -> None:
        """An entry without id, or not an object, is reported."""
        self.assertEqual(
            problems_of(self, '{agents: {list: [{name: "x"}, "main", {id: ""}]}}'),
            (
                "agents.list[0].id: required, expected a non-empty string",
                'agents.list[1]: expected an object with an id, got "main"',
                'agents.list[2].id: expected a non-empty string, got ""',
            ),
        )

    def test_agent_fields(self) -> None:
        """Model as string or object, prompt kept verbatim, workspace expanded."""
        agents = parse(
            """{agents: {
              defaults: {model: "demo/echo", timeoutSeconds: 30, workspace: "/ws"},
              list: [
                {id: "a", default: true, name: "A", model: {primary: "demo/a"},
                 systemPrompt: "  keep  spaces\\n", workspace: "~/wa"},
                {id: "b", model: "demo/b"},
              ]}}"""
        ).config.agents
        self.assertEqual(
            (agents.defaults.model_primary, agents.defaults.timeout_seconds), ("demo/echo", 30.0)
        )
        self.assertEqual(agents.defaults.workspace, "/ws")
        self.assertEqual(
            agents.list,
            (
                AgentConfig("a", True, "A", "demo/a", "  keep  spaces\n", "/home/u/wa"),
                AgentConfig("b", model="demo/b"),
            ),
        )

    def test_bad_model_types(self) -> None:
        """A model that is neither a string nor an object is refused."""
        self.assertEqual(
            problems_of(
                self, '{agents: {defaults: {model: 5}, list: [{id: "a", model: {primary: 1}}]}}'
            ),
            (
                'agents.defaults.model: expected a "provider/model" string or an object with '
                '"primary", got 5',
                "agents.list[0].model.primary: expected a string, got 1",
            ),
        )

    def test_several_defaults_warn(self) -> None:
        """More than one default agent: the first wins, with a warning."""
        loaded = parse('{agents: {list: [{id: "a", default: true}, {id: "b", default: true}]}}')
        self.assertEqual(
            loaded.warnings,
            ('agents.list: several agents are marked default (a, b); using the first, "a"',),
        )

    def test_entries_form_warns(self) -> None:
        """The keyed ``agents.entries`` form is not read, and says so."""
        (line,) = parse("{agents: {entries: {main: {}}}}").warnings
        self.assertIn("use agents.list", line)


class StartupProblemTests(SynchronousTestCase):
    """``startup_problems``: what blocks serving though the file is valid."""

    def problems(self, text: str, env: Mapping[str, str] | None = None) -> list[str]:
        """Start-up problems of a parsed config."""
        return startup_problems(parse(text, env).config)

    def test_token_mode_without_token(self) -> None:
        """The exact OpenClaw message when token mode has no token."""
        self.assertEqual(
            self.problems("{}"),
            [
                "gateway auth mode is token, but no token was configured (set "
                "gateway.auth.token or OPENCLAW_GATEWAY_TOKEN)."
            ],
        )
        self.assertEqual(self.problems("{}", {"OPENCLAW_GATEWAY_TOKEN": "t"}), [])

    def test_password_mode_without_password(self) -> None:
        """Password mode needs a password."""
        self.assertEqual(
            self.problems('{gateway: {auth: {mode: "password", token: "t"}}}'),
            [
                "gateway auth mode is password, but no password was configured (set "
                "gateway.auth.password or OPENCLAW_GATEWAY_PASSWORD)."
            ],
        )

    def test_no_auth_beyond_loopback(self) -> None:
        """``none`` is only allowed when listening on loopback."""
        self.assertEqual(
            self.problems('{gateway: {bind: "lan", auth: {mode: "none"}}}'),
            [
                'gateway.bind "lan" listens beyond loopback, which requires authentication: '
                "set gateway.auth.mode to token or password (or bind to loopback)."
            ],
        )
        for bind in ('"loopback"', '"127.0.0.1"', '"::1"', '"[::1]"', '"localhost"'):
            self.assertEqual(
                self.problems(f'{{gateway: {{bind: {bind}, auth: {{mode: "none"}}}}}}'), []
            )
        self.assertEqual(
            self.problems(
                '{gateway: {bind: "custom", customBindHost: "127.0.0.5", auth: {mode: "none"}}}'
            ),
            [],
        )
        self.assertEqual(
            len(self.problems('{gateway: {bind: "0.0.0.0", auth: {mode: "none"}}}')), 1
        )

    def test_unknown_provider(self) -> None:
        """A model naming an unconfigured provider is reported with its key path."""
        found = self.problems(
            """{gateway: {auth: {mode: "none"}},
               models: {providers: {ollama: {api: "openai-completions", baseUrl: "http://h/v1"}}},
               agents: {defaults: {model: "openai/gpt-4o"},
                        list: [{id: "a", model: "Ollama/llama3.2"}, {id: "b", model: "demo/x"},
                               {id: "c", model: "nonsense"}]}}"""
        )
        self.assertEqual(
            found,
            [
                'agents.defaults.model.primary: model "openai/gpt-4o" names unknown provider '
                '"openai" (known: demo, ollama); add it under models.providers',
                "agents.list[2].model: expected a model reference like provider/model, got "
                '"nonsense"',
            ],
        )

    def test_split_model_ref(self) -> None:
        """Model refs split at the first slash; the provider part is lower-cased."""
        self.assertEqual(
            split_model_ref("OpenRouter/anthropic/claude"), ("openrouter", "anthropic/claude")
        )
        self.assertIsNone(split_model_ref("/x"))
        self.assertIsNone(split_model_ref("x/"))

    def test_is_loopback_bind(self) -> None:
        """Loopback detection for keywords and hosts."""
        self.assertTrue(is_loopback_bind(GatewayConfig()))
        self.assertFalse(is_loopback_bind(GatewayConfig(bind="lan")))
        self.assertFalse(is_loopback_bind(GatewayConfig(bind="custom")))
        self.assertFalse(is_loopback_bind(GatewayConfig(bind="example.com")))
        self.assertTrue(is_loopback_bind(GatewayConfig(bind="app.localhost")))

    def test_sample_config_is_startable(self) -> None:
        """``conf/openclaw.json5`` (used by ``make run``) loads cleanly and can start."""
        root = Path(__file__).resolve().parent.parent
        text = (root / "conf" / "openclaw.json5").read_text(encoding="utf-8")
        loaded = parse(text)
        self.assertEqual(loaded.warnings, ())
        self.assertEqual(startup_problems(loaded.config), [])
        c = loaded.config
        self.assertEqual((c.gateway.port, c.gateway.bind), (18789, "loopback"))
        self.assertEqual(
            (c.gateway.auth.mode, c.gateway.auth.token), ("token", "dev-token-change-me")
        )
        self.assertTrue(c.gateway.http.chat_completions.enabled)
        self.assertEqual(c.agents.list, (AgentConfig("main", True, "Main", "demo/echo"),))
        self.assertEqual(c.models.providers["demo"].delay_ms, 20.0)

    def test_example_config_loads(self) -> None:
        """``conf/openclaw.example.json5`` loads with its keys from the environment."""
        root = Path(__file__).resolve().parent.parent
        text = (root / "conf" / "openclaw.example.json5").read_text(encoding="utf-8")
        env = {
            "HOME": "/h",
            "OPENAI_API_KEY": "sk",
            "ANTHROPIC_API_KEY": "ak",
            "OPENCLAW_GATEWAY_TOKEN": "t",
        }
        loaded = parse(text, env)
        self.assertEqual(loaded.warnings, ())
        self.assertEqual(startup_problems(loaded.config), [])
        self.assertEqual(sorted(loaded.config.models.providers), ["anthropic", "ollama", "openai"])
        self.assertEqual([a.id for a in loaded.config.agents.list], ["main", "coder"])

    def test_defaults_equal_model_defaults(self) -> None:
        """An empty document gives exactly the model's defaults."""
        self.assertEqual(parse("{}").config, attrs.evolve(Config(), state_dir=Path("/s")))


class LimitKeysTests(SynchronousTestCase):
    def test_limit_and_session_keys_are_read(self) -> None:
        """Connection limits, CORS max age, pre-auth cap and session upkeep keys load."""
        text = """{
          gateway: {maxConnections: 10,
                    http: {maxHeaderBytes: 2048, maxHeaders: 20, headersTimeoutSeconds: 5,
                           keepAliveTimeoutSeconds: 7, cors: {allowedOrigins: ["https://a.example"],
                           maxAgeSeconds: 0}},
                    ws: {maxPreauthSocketsPerAddress: 3}},
          session: {indexFlushMs: 0,
                    maintenance: {mode: "enforce", maxEntries: 9, pruneAfter: "30d"}},
        }"""
        loaded = parse_config_text(text, source="t", env={}, state_dir=Path("/tmp/x"))
        g = loaded.config.gateway
        self.assertEqual(
            (g.max_connections, g.http.max_header_bytes, g.http.max_headers),
            (10, 2048, 20),
        )
        self.assertEqual(
            (g.http.headers_timeout_seconds, g.http.keep_alive_timeout_seconds), (5.0, 7.0)
        )
        self.assertEqual(g.http.cors.max_age_seconds, 0)
        self.assertEqual(g.ws.max_preauth_sockets_per_address, 3)
        s = loaded.config.session
        self.assertEqual(
            (s.index_flush_ms, s.maintenance.mode, s.maintenance.max_entries), (0, "enforce", 9)
        )
        self.assertTrue(any("pruneAfter" in w for w in loaded.warnings))
