"""The config loader: path resolution, JSON5, ``${VAR}``, secrets and auth mode."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from openclaw.config import (
    SAMPLE_TOKEN,
    Config,
    ConfigError,
    LoadedConfig,
    RateLimitConfig,
    load_config,
    parse_config_text,
    resolve_config_path,
    resolve_state_dir,
)

STATE = Path("/state")


def parse(text: str, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Parse ``text`` as if it were the file ``test.json5``."""
    return parse_config_text(text, source="test.json5", env=env or {}, state_dir=STATE)


def problems_of(
    case: SynchronousTestCase, text: str, env: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The problem lines ``text`` is rejected with."""
    error: ConfigError = case.assertRaises(ConfigError, parse, text, env)
    return error.problems


class ResolveConfigPathTests(SynchronousTestCase):
    """``--config`` > ``$OPENCLAW_CONFIG_PATH`` > state dir > home."""

    FULL_ENV = {
        "OPENCLAW_CONFIG_PATH": "/env/openclaw.json5",
        "OPENCLAW_STATE_DIR": "/state-dir",
        "HOME": "/home/u",
    }

    def test_explicit_wins(self) -> None:
        """An explicit path beats every environment variable and must exist."""
        self.assertEqual(
            resolve_config_path("/etc/oc.json5", self.FULL_ENV), (Path("/etc/oc.json5"), True)
        )

    def test_env_path_second(self) -> None:
        """``$OPENCLAW_CONFIG_PATH`` names a file that must exist."""
        self.assertEqual(
            resolve_config_path(None, self.FULL_ENV), (Path("/env/openclaw.json5"), True)
        )

    def test_state_dir_third(self) -> None:
        """``$OPENCLAW_STATE_DIR/openclaw.json`` is a default location: it may be absent."""
        env = {"OPENCLAW_STATE_DIR": "/state-dir", "HOME": "/home/u"}
        self.assertEqual(resolve_config_path(None, env), (Path("/state-dir/openclaw.json"), False))

    def test_home_last(self) -> None:
        """With nothing set the file is ``~/.openclaw/openclaw.json``."""
        self.assertEqual(
            resolve_config_path(None, {"HOME": "/home/u"}),
            (Path("/home/u/.openclaw/openclaw.json"), False),
        )

    def test_blank_values_are_unset(self) -> None:
        """Blank ``--config`` and blank variables fall through to the next source."""
        env = {"OPENCLAW_CONFIG_PATH": "  ", "OPENCLAW_STATE_DIR": "", "HOME": "/home/u"}
        self.assertEqual(
            resolve_config_path("", env), (Path("/home/u/.openclaw/openclaw.json"), False)
        )

    def test_tilde_expands_with_injected_home(self) -> None:
        """``~`` in any of the paths uses the ``HOME`` of the given environment."""
        env = {"HOME": "/home/u", "OPENCLAW_STATE_DIR": "~/oc-state"}
        self.assertEqual(resolve_config_path("~/my.json5", env), (Path("/home/u/my.json5"), True))
        self.assertEqual(resolve_state_dir(env), Path("/home/u/oc-state"))

    def test_state_dir_default(self) -> None:
        """Without ``$OPENCLAW_STATE_DIR`` sessions live in ``~/.openclaw``."""
        self.assertEqual(resolve_state_dir({"HOME": "/home/u"}), Path("/home/u/.openclaw"))


class LoadConfigTests(SynchronousTestCase):
    """``load_config`` reading real files."""

    def setUp(self) -> None:
        """A fresh state directory per test."""
        self.state = Path(tempfile.mkdtemp(prefix="openclaw-config-test-"))
        self.addCleanup(shutil.rmtree, self.state, ignore_errors=True)
        self.env = {"OPENCLAW_STATE_DIR": str(self.state), "HOME": str(self.state)}

    def test_missing_explicit_file_is_an_error(self) -> None:
        """A file named with ``--config`` that does not exist stops the load."""
        missing = self.state / "nope.json5"
        error = self.assertRaises(ConfigError, load_config, str(missing), env=self.env)
        self.assertEqual(error.problems, (f"{missing}: config file not found",))

    def test_missing_env_named_file_is_an_error(self) -> None:
        """A file named by ``$OPENCLAW_CONFIG_PATH`` must exist too."""
        missing = self.state / "env.json5"
        env = {**self.env, "OPENCLAW_CONFIG_PATH": str(missing)}
        error = self.assertRaises(ConfigError, load_config, None, env=env)
        self.assertEqual(error.problems, (f"{missing}: config file not found",))

    def test_absent_default_file_means_defaults(self) -> None:
        """No file at the default path loads the defaults, with no warnings."""
        loaded = load_config(env=self.env)
        self.assertEqual(loaded.config, Config(state_dir=self.state))
        self.assertEqual(loaded.warnings, ())
        self.assertIsNone(loaded.config.source_path)

    def test_absent_default_file_still_reads_env_secrets(self) -> None:
        """Defaults still pick up the gateway token from the environment."""
        loaded = load_config(env={**self.env, "OPENCLAW_GATEWAY_TOKEN": "t0ken"})
        self.assertEqual(loaded.config.gateway.auth.token, "t0ken")

    def test_default_file_in_state_dir_is_read(self) -> None:
        """``$OPENCLAW_STATE_DIR/openclaw.json`` is used when present."""
        path = self.state / "openclaw.json"
        path.write_text("{gateway: {port: 19000}}", encoding="utf-8")
        loaded = load_config(env=self.env)
        self.assertEqual(loaded.config.gateway.port, 19000)
        self.assertEqual(loaded.config.source_path, path)
        self.assertEqual(loaded.config.state_dir, self.state)

    def test_explicit_file_is_read(self) -> None:
        """An explicit file is parsed and remembered as the source."""
        path = self.state / "custom.json5"
        path.write_text("// comment\n{session: {fsync: 'never'},}\n", encoding="utf-8")
        loaded = load_config(str(path), env=self.env)
        self.assertEqual(loaded.config.session.fsync, "never")
        self.assertEqual(loaded.config.source_path, path)

    def test_directory_is_an_error(self) -> None:
        """A directory where the file should be is reported, not crashed on."""
        error = self.assertRaises(ConfigError, load_config, str(self.state), env=self.env)
        self.assertEqual(len(error.problems), 1)
        self.assertIn("is a directory", error.problems[0])

    def test_non_utf8_is_an_error(self) -> None:
        """Bytes that are not UTF-8 give one clear line."""
        path = self.state / "bad.json5"
        path.write_bytes(b'{gateway: {bind: "\xff"}}')
        error = self.assertRaises(ConfigError, load_config, str(path), env=self.env)
        self.assertEqual(error.problems, (f"{path}: not UTF-8 text (byte 18)",))

    def test_syntax_error_names_file_line_and_column(self) -> None:
        """A JSON5 syntax error is one line ``<path>:<line>:<col>: invalid JSON5: ...``."""
        path = self.state / "broken.json5"
        path.write_text("{\n  gateway: {\n    port: 1 2\n  }\n}\n", encoding="utf-8")
        error = self.assertRaises(ConfigError, load_config, str(path), env=self.env)
        self.assertEqual(len(error.problems), 1)
        self.assertRegex(error.problems[0], "^" + re.escape(f"{path}:3:13: invalid JSON5: "))


class ParseTests(SynchronousTestCase):
    """JSON5 text to a LoadedConfig."""

    def test_json5_syntax(self) -> None:
        """Comments, unquoted keys, single quotes, hex and trailing commas are JSON5."""
        loaded = parse(
            """
            /* block */ {
              gateway: { port: 0x4A65, bind: 'lan', }, // 19045
              "session": { fsync: "never" },
            }
            """
        )
        self.assertEqual(loaded.config.gateway.port, 0x4A65)
        self.assertEqual(loaded.config.gateway.bind, "lan")
        self.assertEqual(loaded.config.session.fsync, "never")

    def test_run_timeout_zero_means_none(self) -> None:
        """agents.defaults.timeoutSeconds: 0 is OpenClaw's "no limit" (an
        OpenClaw config with it loads); a negative value is refused."""
        loaded = parse("{agents: {defaults: {timeoutSeconds: 0}}}")
        self.assertEqual(loaded.config.agents.defaults.timeout_seconds, 0.0)
        self.assertIn(
            "agents.defaults.timeoutSeconds: expected a number >= 0, got -5",
            problems_of(self, "{agents: {defaults: {timeoutSeconds: -5}}}"),
        )

    def test_syntax_error(self) -> None:
        """Bad JSON5 is a single problem with position and reason."""
        self.assertEqual(
            problems_of(self, "{a: 1,,}"), ('test.json5:1:8: invalid JSON5: Unexpected "}"',)
        )

    def test_unterminated(self) -> None:
        """Truncated text reports where input ended."""
        (line,) = problems_of(self, '{gateway: {bind: "lan"')
        self.assertRegex(line, r"^test\.json5:1:\d+: invalid JSON5: Unexpected end of input$")

    def test_line_break_in_a_string_is_one_line(self) -> None:
        """A string cut by a line break: the quoted character is written \\n."""
        (line,) = problems_of(self, '{gateway: {auth: {token: "abc\n}}}')
        self.assertEqual(line, 'test.json5:1:30: invalid JSON5: Unexpected "\\n"')

    def test_top_level_must_be_object(self) -> None:
        """An array (or any non-object) at the top level is rejected."""
        self.assertEqual(
            problems_of(self, "[1, 2]"),
            ("test.json5: expected a JSON5 object at the top level, got an array",),
        )

    def test_empty_text_is_defaults(self) -> None:
        """An empty file (or one with only a BOM and whitespace) means defaults."""
        self.assertEqual(parse("\ufeff  \n").config, Config(state_dir=STATE))

    def test_deep_nesting_is_a_problem_not_a_crash(self) -> None:
        """Pathologically deep nesting is reported as invalid JSON5."""
        self.assertEqual(
            problems_of(self, "{a: " + "[" * 5000 + "]" * 5000 + "}"),
            ("test.json5: invalid JSON5: nesting is too deep",),
        )

    def test_byte_order_mark_is_ignored(self) -> None:
        """Editors that write a BOM do not break the parse."""
        self.assertEqual(parse("\ufeff{gateway: {port: 1234}}").config.gateway.port, 1234)

    def test_config_error_string_is_the_lines(self) -> None:
        """``str(ConfigError)`` is every problem, one per line."""
        error = self.assertRaises(
            ConfigError, parse, "{gateway: {port: 0}, session: {fsync: 1}}", None
        )
        self.assertEqual(str(error), "\n".join(error.problems))
        self.assertEqual(len(error.problems), 2)


class EnvSubstitutionTests(SynchronousTestCase):
    """``${VAR}`` references in strings."""

    def test_whole_and_embedded_references(self) -> None:
        """References are replaced wherever they appear in a string."""
        loaded = parse(
            """{models: {providers: {ollama: {
                api: "openai-completions",
                baseUrl: "http://${OLLAMA_HOST}:11434/v1",
                apiKey: "${OLLAMA_API_KEY}",
                headers: {"X-Team": "team-${TEAM}"},
            }}}}""",
            {"OLLAMA_HOST": "127.0.0.1", "OLLAMA_API_KEY": "k-123", "TEAM": "blue"},
        )
        provider = loaded.config.models.providers["ollama"]
        self.assertEqual(provider.base_url, "http://127.0.0.1:11434/v1")
        self.assertEqual(provider.api_key, "k-123")
        self.assertEqual(dict(provider.headers), {"X-Team": "team-blue"})

    def test_missing_variable_names_it_and_the_key(self) -> None:
        """An unset variable is an error naming the variable and the key path."""
        self.assertEqual(
            problems_of(self, '{gateway: {auth: {token: "${GW_TOKEN}"}}}'),
            ("gateway.auth.token: environment variable GW_TOKEN is not set (or is empty)",),
        )

    def test_empty_variable_counts_as_missing(self) -> None:
        """A variable set to the empty string is as good as unset."""
        self.assertEqual(
            problems_of(self, '{agents: {defaults: {workspace: "${WS}"}}}', {"WS": ""}),
            ("agents.defaults.workspace: environment variable WS is not set (or is empty)",),
        )

    def test_each_missing_variable_reported(self) -> None:
        """Two missing variables in one string are two problems."""
        self.assertEqual(
            problems_of(self, '{agents: {list: [{id: "a", systemPrompt: "${A} ${B} ${A}"}]}}'),
            (
                "agents.list[0].systemPrompt: environment variable A is not set (or is empty)",
                "agents.list[0].systemPrompt: environment variable B is not set (or is empty)",
            ),
        )

    def test_double_dollar_escapes(self) -> None:
        """``$${VAR}`` stays a literal ``${VAR}`` and needs no variable."""
        loaded = parse(
            '{agents: {list: [{id: "a", systemPrompt: "cost: $${PRICE} (${X})"}]}}', {"X": "y"}
        )
        self.assertEqual(loaded.config.agents.list[0].system_prompt, "cost: ${PRICE} (y)")

    def test_lower_case_names_are_not_references(self) -> None:
        """Only upper-case names are references, as in OpenClaw."""
        loaded = parse('{agents: {list: [{id: "a", name: "${lower}"}]}}')
        self.assertEqual(loaded.config.agents.list[0].name, "${lower}")

    def test_file_env_vars_are_a_fallback(self) -> None:
        """``env.vars`` and plain ``env`` entries fill in what the process lacks."""
        text = """{
          env: {vars: {KEY_A: "from-file-a", KEY_B: "from-file-b"}, KEY_C: "from-file-c"},
          models: {providers: {p: {api: "openai-completions", baseUrl: "https://x.test/v1",
            apiKey: "${KEY_A}", headers: {b: "${KEY_B}", c: "${KEY_C}"}}}},
        }"""
        provider = parse(text, {"KEY_B": "from-process"}).config.models.providers["p"]
        self.assertEqual(provider.api_key, "from-file-a")
        self.assertEqual(dict(provider.headers), {"b": "from-process", "c": "from-file-c"})

    def test_bad_file_env_value_is_redacted(self) -> None:
        """A non-string ``env`` value is a problem whose value is not echoed."""
        self.assertEqual(
            problems_of(self, "{env: {vars: {SECRET_NUMBER: 123456}}}"),
            ("env.vars.SECRET_NUMBER: expected a string, got <redacted>",),
        )

    def test_bad_env_sections(self) -> None:
        """``env`` and ``env.vars`` must be objects; ``vars: null`` is fine."""
        self.assertEqual(
            problems_of(self, "{env: [1]}"), ("env: expected an object, got <redacted>",)
        )
        self.assertEqual(
            problems_of(self, '{env: {vars: "X=1"}}'),
            ("env.vars: expected an object, got <redacted>",),
        )
        self.assertEqual(parse("{env: {vars: null}}").warnings, ())

    def test_ignored_sections_are_not_substituted(self) -> None:
        """References inside sections this project ignores need no variable."""
        loaded = parse('{channels: {telegram: {botToken: "${TELEGRAM_BOT_TOKEN}"}}}')
        self.assertEqual(
            loaded.warnings,
            ("channels: OpenClaw setting not implemented by openclaw-twisted; ignored",),
        )

    def test_env_secret_ref(self) -> None:
        """OpenClaw's env SecretRef object resolves like ``${VAR}``."""
        text = '{gateway: {auth: {token: {source: "env", provider: "default", id: "GWT"}}}}'
        self.assertEqual(parse(text, {"GWT": " abc "}).config.gateway.auth.token, "abc")
        self.assertEqual(
            problems_of(self, text),
            ("gateway.auth.token: environment variable GWT is not set (or is empty)",),
        )

    def test_other_secret_refs_are_rejected(self) -> None:
        """File and exec SecretRefs are not supported; the error does not echo them."""
        (line,) = problems_of(
            self, '{gateway: {auth: {password: {source: "file", provider: "f", id: "/x"}}}}'
        )
        self.assertEqual(
            line,
            "gateway.auth.password: expected a string or an env SecretRef "
            '{source: "env", id: "VAR"}, got <redacted>',
        )


class SecretsAndAuthModeTests(SynchronousTestCase):
    """``gateway.auth``: config first, then the environment; mode inference."""

    def test_token_from_env(self) -> None:
        """Without a configured token, ``OPENCLAW_GATEWAY_TOKEN`` (trimmed) is used."""
        auth = parse("{}", {"OPENCLAW_GATEWAY_TOKEN": "  env-token\n"}).config.gateway.auth
        self.assertEqual((auth.mode, auth.token, auth.password), ("token", "env-token", None))

    def test_config_token_wins_over_env(self) -> None:
        """The config's token has precedence over the environment's."""
        auth = parse(
            '{gateway: {auth: {token: " file-token "}}}', {"OPENCLAW_GATEWAY_TOKEN": "env"}
        ).config.gateway.auth
        self.assertEqual(auth.token, "file-token")

    def test_empty_config_token_falls_back_to_env(self) -> None:
        """A blank configured token counts as unset."""
        auth = parse(
            '{gateway: {auth: {token: "  "}}}', {"OPENCLAW_GATEWAY_TOKEN": "env"}
        ).config.gateway.auth
        self.assertEqual(auth.token, "env")

    def test_sample_token_counts_as_unset(self) -> None:
        """The documentation's sample token is not a token, in the file or in env."""
        loaded = parse(f'{{gateway: {{auth: {{token: "{SAMPLE_TOKEN}"}}}}}}')
        self.assertIsNone(loaded.config.gateway.auth.token)
        self.assertEqual(
            loaded.warnings,
            ("gateway.auth.token: is the documentation's sample value; counts as unset",),
        )
        from_env = parse("{}", {"OPENCLAW_GATEWAY_TOKEN": SAMPLE_TOKEN})
        self.assertIsNone(from_env.config.gateway.auth.token)
        self.assertEqual(len(from_env.warnings), 1)

    def test_sample_token_in_file_falls_back_to_env(self) -> None:
        """A sample token in the file lets the environment's real token through."""
        loaded = parse(
            f'{{gateway: {{auth: {{token: "{SAMPLE_TOKEN}"}}}}}}',
            {"OPENCLAW_GATEWAY_TOKEN": "real"},
        )
        self.assertEqual(loaded.config.gateway.auth.token, "real")

    def test_password_from_env_infers_password_mode(self) -> None:
        """An unset mode becomes ``password`` when a password resolves."""
        auth = parse("{}", {"OPENCLAW_GATEWAY_PASSWORD": "pw"}).config.gateway.auth
        self.assertEqual((auth.mode, auth.password), ("password", "pw"))

    def test_password_from_config_infers_password_mode(self) -> None:
        """A configured password also makes the mode ``password``."""
        auth = parse('{gateway: {auth: {password: "pw"}}}').config.gateway.auth
        self.assertEqual(auth.mode, "password")

    def test_nothing_configured_means_token_mode(self) -> None:
        """With no secret at all the mode is ``token`` (start-up then complains)."""
        auth = parse("{}").config.gateway.auth
        self.assertEqual((auth.mode, auth.token, auth.password), ("token", None, None))

    def test_token_and_password_need_explicit_mode(self) -> None:
        """Both secrets and no mode is ambiguous: one problem asking for a mode."""
        self.assertEqual(
            problems_of(
                self, "{}", {"OPENCLAW_GATEWAY_TOKEN": "t", "OPENCLAW_GATEWAY_PASSWORD": "p"}
            ),
            (
                "gateway.auth.mode: both a token and a password are configured; set mode to "
                '"token" or "password" explicitly',
            ),
        )

    def test_explicit_mode_resolves_ambiguity(self) -> None:
        """With an explicit mode both secrets may be present."""
        auth = parse(
            '{gateway: {auth: {mode: "password", token: "t", password: "p"}}}'
        ).config.gateway.auth
        self.assertEqual((auth.mode, auth.token, auth.password), ("password", "t", "p"))

    def test_mode_none(self) -> None:
        """``none`` is accepted as is."""
        self.assertEqual(
            parse('{gateway: {auth: {mode: "none"}}}').config.gateway.auth.mode, "none"
        )

    def test_bad_mode(self) -> None:
        """An unknown mode lists the supported ones; trusted-proxy says it is unsupported."""
        self.assertEqual(
            problems_of(self, '{gateway: {auth: {mode: "open"}}}'),
            ('gateway.auth.mode: expected one of none, token, password, got "open"',),
        )
        (line,) = problems_of(self, '{gateway: {auth: {mode: "trusted-proxy"}}}')
        self.assertIn("trusted-proxy auth is not supported", line)

    def test_bad_typed_secrets_are_redacted(self) -> None:
        """Wrongly typed secrets are reported without their value."""
        text = """{
          gateway: {auth: {token: 987654321, password: ["hunter2"]}},
          models: {providers: {p: {api: "openai-completions", baseUrl: "http://h/v1",
            apiKey: 55555, headers: {Authorization: 7777}}}},
        }"""
        found = problems_of(self, text)
        self.assertEqual(
            found,
            (
                "gateway.auth.token: expected a string, got <redacted>",
                "gateway.auth.password: expected a string, got <redacted>",
                "models.providers.p.apiKey: expected a string, got <redacted>",
                "models.providers.p.headers.Authorization: expected a string, got <redacted>",
            ),
        )
        for secret in ("987654321", "hunter2", "55555", "7777"):
            self.assertNotIn(secret, "\n".join(found))

    def test_rate_limit_defaults_and_switch(self) -> None:
        """``rateLimit`` absent keeps the model default; false disables; objects configure."""
        self.assertEqual(parse("{}").config.gateway.auth.rate_limit, RateLimitConfig())
        self.assertIsNone(
            parse("{gateway: {auth: {rateLimit: false}}}").config.gateway.auth.rate_limit
        )
        self.assertEqual(
            parse("{gateway: {auth: {rateLimit: true}}}").config.gateway.auth.rate_limit,
            RateLimitConfig(),
        )
        configured = parse(
            "{gateway: {auth: {rateLimit: {maxAttempts: 1, windowMs: 1000, lockoutMs: 5000,"
            " exemptLoopback: false}}}}"
        ).config.gateway.auth.rate_limit
        self.assertEqual(configured, RateLimitConfig(1, 1000, 5000, False))

    def test_bad_rate_limit(self) -> None:
        """A non-object rate limit and bad fields are problems."""
        self.assertEqual(
            problems_of(self, '{gateway: {auth: {rateLimit: "on"}}}'),
            ('gateway.auth.rateLimit: expected an object, true or false, got "on"',),
        )
        self.assertEqual(
            problems_of(self, "{gateway: {auth: {rateLimit: {maxAttempts: 0}}}}"),
            ("gateway.auth.rateLimit.maxAttempts: expected an integer >= 1, got 0",),
        )
