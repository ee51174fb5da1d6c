"""Find, parse and validate ``openclaw.json``.

The file is JSON5 in OpenClaw's shape, so a user's existing OpenClaw config
loads here: keys this project does not implement are ignored with one warning
each, while wrong values in the keys it does honour are collected and reported
together (one line per problem) in a :class:`ConfigError`. Nothing here logs:
the caller decides where warnings go.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import attrs
import json5
from attrs import frozen

from openclaw.config.errors import ConfigError
from openclaw.config.model import (
    AgentConfig,
    AgentDefaults,
    AgentsConfig,
    AuthConfig,
    AuthMode,
    ChatCompletionsConfig,
    Config,
    ControlUiConfig,
    CorsConfig,
    FsyncPolicy,
    GatewayConfig,
    HttpConfig,
    ImagesConfig,
    MaintenanceMode,
    ModelEntry,
    ModelsConfig,
    ProviderApi,
    ProviderConfig,
    RateLimitConfig,
    SessionConfig,
    SessionMaintenanceConfig,
    ToolsConfig,
    WebSocketConfig,
)
from openclaw.core.agent_ids import normalize_agent_id

CONFIG_FILENAME: Final = "openclaw.json"
#: The placeholder token from OpenClaw's docs; a config still holding it has no token.
SAMPLE_TOKEN: Final = "change-me-to-a-long-random-token"
#: The provider that needs no configuration (offline, deterministic stand-in).
BUILTIN_PROVIDERS: Final = frozenset({"demo"})

_AUTH_MODES: Final[Mapping[str, AuthMode]] = {
    "none": "none",
    "token": "token",
    "password": "password",
}
_PROVIDER_APIS: Final[Mapping[str, ProviderApi]] = {
    "openai-completions": "openai-completions",
    "anthropic-messages": "anthropic-messages",
    "demo": "demo",
}
_FSYNC: Final[Mapping[str, FsyncPolicy]] = {"turn": "turn", "never": "never"}
_BIND_KEYWORDS: Final = frozenset({"loopback", "lan", "custom"})
_COMPAT_HINT: Final = ' (use "openai-completions" with an OpenAI-compatible baseUrl)'
_API_HINTS: Final = {"openai-responses": _COMPAT_HINT, "ollama": _COMPAT_HINT}

# `${VAR}` (upper-case names only, as OpenClaw); `$${VAR}` is a literal `${VAR}`.
_ENV_REF: Final = re.compile(r"\$(\$?)\{([A-Z_][A-Z0-9_]*)\}")
_JSON5_ERROR: Final = re.compile(r"^<string>:(\d+) (.*?)(?: at column (\d+))?$", re.DOTALL)
_INDEX: Final = re.compile(r"\[\d+\]")
_ORIGIN: Final = re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s?#]+$")
_SECRET_SUFFIXES: Final = (
    "token",
    "password",
    "secret",
    "key",
    "authorization",
    "cookie",
    "credential",
    "credentials",
)


@frozen
class LoadedConfig:
    """A validated configuration plus the warnings its loading produced."""

    config: Config
    warnings: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# Paths


def _expand_home(value: str, env: Mapping[str, str]) -> Path:
    """``~`` expansion that honours an injected ``HOME`` (tests never touch os.environ)."""
    if value == "~" or value.startswith(("~/", "~" + os.sep)):
        home = env.get("HOME", "").strip()
        base = Path(home) if home else Path.home()
        return base / value[2:] if len(value) > 1 else base
    return Path(value).expanduser()


def _env_value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def resolve_state_dir(env: Mapping[str, str]) -> Path:
    """``$OPENCLAW_STATE_DIR``, else ``~/.openclaw``: where sessions live."""
    configured = _env_value(env, "OPENCLAW_STATE_DIR")
    return _expand_home(configured if configured else "~/.openclaw", env)


def resolve_config_path(explicit: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """Pick the config file; the flag says whether it was named (and so must exist).

    ``--config`` > ``$OPENCLAW_CONFIG_PATH`` > ``$OPENCLAW_STATE_DIR/openclaw.json``
    > ``~/.openclaw/openclaw.json``. Only the last two may be absent (defaults apply).
    """
    if explicit is not None and explicit.strip():
        return _expand_home(explicit.strip(), env), True
    from_env = _env_value(env, "OPENCLAW_CONFIG_PATH")
    if from_env:
        return _expand_home(from_env, env), True
    return resolve_state_dir(env) / CONFIG_FILENAME, False


# --------------------------------------------------------------------------
# Entry points


def load_config(path: str | None = None, *, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Resolve, read and validate the configuration; raise ConfigError listing every problem."""
    environ: Mapping[str, str] = os.environ if env is None else env
    config_path, required = resolve_config_path(path, environ)
    state_dir = resolve_state_dir(environ)
    if not config_path.exists():
        if required:
            raise ConfigError([f"{config_path}: config file not found"])
        return config_from_mapping({}, env=environ, state_dir=state_dir)
    if config_path.is_dir():
        raise ConfigError([f"{config_path}: is a directory, expected a JSON5 config file"])
    try:
        raw = config_path.read_bytes()
    except OSError as e:
        raise ConfigError([f"{config_path}: cannot read: {e.strerror or e}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([f"{config_path}: not UTF-8 text (byte {e.start})"]) from None
    loaded = parse_config_text(text, source=str(config_path), env=environ, state_dir=state_dir)
    return attrs.evolve(loaded, config=attrs.evolve(loaded.config, source_path=config_path))


def parse_config_text(
    text: str, *, source: str, env: Mapping[str, str], state_dir: Path
) -> LoadedConfig:
    """Parse JSON5 text and validate it; ``source`` names it in messages."""
    text = text.removeprefix("\ufeff")
    if not text.strip():
        data: Any = {}
    else:
        try:
            data = json5.loads(text)
        except ValueError as e:
            raise ConfigError([_json5_problem(source, str(e))]) from None
        except RecursionError:
            raise ConfigError([f"{source}: invalid JSON5: nesting is too deep"]) from None
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{source}: expected a JSON5 object at the top level, got {_describe('', data)}"]
        )
    return config_from_mapping(data, env=env, state_dir=state_dir)


def config_from_mapping(
    data: Mapping[str, Any], *, env: Mapping[str, str], state_dir: Path
) -> LoadedConfig:
    """Validate an already parsed document (the JSON5 object) into a Config."""
    reader = _Reader(env)
    config = _build_config(reader, dict(data), state_dir)
    warnings = tuple(dict.fromkeys(reader.warnings))
    if reader.problems:
        raise ConfigError(reader.problems, warnings)
    return LoadedConfig(config=config, warnings=warnings)


def _json5_problem(source: str, message: str) -> str:
    match = _JSON5_ERROR.match(message.strip())
    if match is None:
        return f"{source}: invalid JSON5: {message.strip()}"
    line, reason, column = match.groups()
    position = f"{line}:{column}" if column else line
    return f"{source}:{position}: invalid JSON5: {reason}"


# --------------------------------------------------------------------------
# Start-up checks


def is_loopback_bind(gateway: GatewayConfig) -> bool:
    """Whether the configured bind keeps the listener on this machine."""
    if gateway.bind == "loopback":
        return True
    if gateway.bind == "lan":
        return False
    host = gateway.custom_bind_host if gateway.bind == "custom" else gateway.bind
    return _is_loopback_host(host or "")


def _is_loopback_host(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_model_ref(ref: str) -> tuple[str, str] | None:
    """``"provider/model"`` -> ``("provider", "model")`` (provider lower-cased), else None."""
    provider, sep, model = ref.strip().partition("/")
    if not sep or not provider.strip() or not model.strip():
        return None
    return provider.strip().lower(), model.strip()


def startup_problems(config: Config) -> list[str]:
    """What stops the gateway starting, though ``config validate`` accepts the file.

    These depend on secrets that may come from the environment at start-up, or
    on cross-references, so they are checked when serving rather than on load.
    """
    problems: list[str] = []
    auth = config.gateway.auth
    if auth.mode == "token" and not auth.token:
        problems.append(
            "gateway auth mode is token, but no token was configured "
            "(set gateway.auth.token or OPENCLAW_GATEWAY_TOKEN)."
        )
    if auth.mode == "password" and not auth.password:
        problems.append(
            "gateway auth mode is password, but no password was configured "
            "(set gateway.auth.password or OPENCLAW_GATEWAY_PASSWORD)."
        )
    if auth.mode == "none" and not is_loopback_bind(config.gateway):
        problems.append(
            f"gateway.bind {json.dumps(config.gateway.bind)} listens beyond loopback, which "
            "requires authentication: set gateway.auth.mode to token or password "
            "(or bind to loopback)."
        )
    known = set(config.models.providers) | BUILTIN_PROVIDERS
    refs: list[tuple[str, str | None]] = [
        ("agents.defaults.model.primary", config.agents.defaults.model_primary)
    ]
    refs += [(f"agents.list[{i}].model", a.model) for i, a in enumerate(config.agents.list)]
    # Fallbacks are not checked here: an unusable fallback fails at run time and
    # the turn moves on to the next candidate.
    if config.agents.defaults.compaction.model is not None:
        refs.append(("agents.defaults.compaction.model", config.agents.defaults.compaction.model))
    for path, ref in refs:
        if ref is None:
            continue
        parts = split_model_ref(ref)
        if parts is None:
            problems.append(
                f"{path}: expected a model reference like provider/model, got {json.dumps(ref)}"
            )
        elif parts[0] not in known:
            problems.append(
                f"{path}: model {json.dumps(ref)} names unknown provider {json.dumps(parts[0])} "
                f"(known: {', '.join(sorted(known))}); add it under models.providers"
            )
    return problems


# --------------------------------------------------------------------------
# Validation machinery


@frozen
class _Section:
    """Which keys of one JSON object are honoured, and which are OpenClaw's only."""

    honoured: frozenset[str]
    openclaw: frozenset[str] = frozenset()
    hints: Mapping[str, str] = attrs.field(factory=dict)


def _section(
    honoured: Iterable[str], openclaw: Iterable[str] = (), hints: Mapping[str, str] | None = None
) -> _Section:
    return _Section(frozenset(honoured), frozenset(openclaw), dict(hints or {}))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_secret_path(path: str) -> bool:
    """Values under such keys are never echoed back, even when malformed."""
    segments = [s for s in re.split(r"[.\[\]]+", path) if s and not s.isdigit()]
    if not segments:
        return False
    if segments[0] == "env" or "headers" in segments:
        return True
    return segments[-1].lower().endswith(_SECRET_SUFFIXES)


def _describe(path: str, value: Any) -> str:
    """A short, safe rendering of a bad value for an error line."""
    if path and _is_secret_path(path) and value is not None:
        return "<redacted>"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 80 else value[:77] + "..."
        return json.dumps(shown)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__  # pragma: no cover - json5 yields only JSON types


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Reader:
    """Reads typed values out of the parsed document, collecting problems and warnings.

    Every accessor returns a usable value (the default) even after recording a
    problem, so one pass over the document finds every mistake.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.process_env = env
        self.file_env: dict[str, str] = {}
        self.problems: list[str] = []
        self.warnings: list[str] = []

    # -- reporting

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def expected(self, path: str, what: str, value: Any) -> None:
        self.problem(path, f"expected {what}, got {_describe(path, value)}")

    def warn(self, path: str, message: str, *, per_key: bool = False) -> None:
        """Record a warning; ``per_key`` ones are given once however many entries repeat them."""
        shown = _INDEX.sub("[*]", path) if per_key else path
        self.warnings.append(f"{shown}: {message}")

    # -- environment

    def env(self, name: str) -> str | None:
        """Process environment first, then ``env.vars`` from the file (as OpenClaw)."""
        return _env_value(self.process_env, name) or self.file_env.get(name) or None

    def substitute(self, path: str, value: str) -> str | None:
        """Expand ``${VAR}``; None (with one problem per missing variable) if any is unset."""
        missing: list[str] = []

        def replace(match: re.Match[str]) -> str:
            escaped, name = match.groups()
            if escaped:
                return "${" + name + "}"
            found = self.env(name)
            if found is None:
                missing.append(name)
                return ""
            return found

        result = _ENV_REF.sub(replace, value)
        for name in dict.fromkeys(missing):
            self.problem(path, f"environment variable {name} is not set (or is empty)")
        return None if missing else result

    # -- structure

    def section(self, value: Any, path: str, spec: _Section) -> dict[str, Any]:
        """The object at ``path`` (``{}`` when absent), warning about keys not honoured."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.expected(path, "an object", value)
            return {}
        for key in value:
            if key in spec.honoured:
                continue
            key_path = _join(path, key)
            if key == "$include":
                self.problem(key_path, "$include is not supported; inline the included file")
            elif key == "$schema":
                continue
            elif key in spec.hints:
                self.warn(key_path, spec.hints[key], per_key=True)
            elif key in spec.openclaw:
                self.warn(key_path, _NOT_HERE, per_key=True)
            else:
                close = difflib.get_close_matches(key, sorted(spec.honoured), n=1, cutoff=0.6)
                hint = f" (did you mean {json.dumps(close[0])}?)" if close else ""
                self.warn(key_path, f"not recognised{hint}; ignored", per_key=True)
        return value

    def items(self, data: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.expected(_join(path, key), "an array", value)
            return []
        return value

    # -- scalars

    def string(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        strip: bool = True,
    ) -> str | None:
        """A string (``${VAR}`` substituted); empty counts as unset."""
        key_path = _join(path, key)
        return self.string_value(data.get(key), key_path, required=required, strip=strip)

    def string_value(
        self, value: Any, path: str, *, required: bool = False, strip: bool = True
    ) -> str | None:
        """Like :meth:`string`, for a value already taken out of its object."""
        if value is None:
            if required:
                self.problem(path, "required, expected a non-empty string")
            return None
        if isinstance(value, dict) and _is_secret_path(path):
            return self.secret_ref(value, path)
        if not isinstance(value, str):
            self.expected(path, "a string", value)
            return None
        result = self.substitute(path, value)
        if result is None:
            return None
        if strip:
            result = result.strip()
        if not result:
            if required:
                self.expected(path, "a non-empty string", value)
            return None
        return result

    def secret_ref(self, value: Mapping[str, Any], path: str) -> str | None:
        """OpenClaw's ``{source: "env", id: "VAR"}`` SecretRef; other sources are not supported."""
        name = value.get("id")
        if value.get("source") != "env" or not isinstance(name, str) or not name.strip():
            self.expected(path, 'a string or an env SecretRef {source: "env", id: "VAR"}', value)
            return None
        found = self.env(name.strip())
        if found is None:
            self.problem(path, f"environment variable {name.strip()} is not set (or is empty)")
            return None
        return found.strip() or None

    def choice(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        options: Mapping[str, Any],
        hints: Mapping[str, str] | None = None,
    ) -> Any:
        """One of ``options`` (returns its typed value) or None when absent or wrong."""
        value = data.get(key)
        if value is None:
            return None
        text = value.strip() if isinstance(value, str) else None
        if text is None or text not in options:
            hint = (hints or {}).get(text or "", "")
            self.expected(_join(path, key), "one of " + ", ".join(options) + hint, value)
            return None
        return options[text]

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.expected(_join(path, key), "true or false", value)
            return default
        return value

    def integer(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        default: int,
        *,
        minimum: int = 1,
        maximum: int | None = None,
    ) -> int:
        value = data.get(key)
        if value is None:
            return default
        if maximum is not None:
            what = f"an integer {minimum}..{maximum}"
        else:
            what = f"an integer >= {minimum}"
        ok = _is_number(value) and float(value).is_integer()
        number = int(value) if ok else 0
        if not ok or number < minimum or (maximum is not None and number > maximum):
            self.expected(_join(path, key), what, value)
            return default
        return number

    def optional_integer(
        self, data: Mapping[str, Any], key: str, path: str, *, minimum: int = 1
    ) -> int | None:
        if data.get(key) is None:
            return None
        sentinel = minimum - 1
        value = self.integer(data, key, path, sentinel, minimum=minimum)
        return None if value == sentinel else value

    def number(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        allow_zero: bool = False,
    ) -> float:
        value = data.get(key)
        if value is None:
            return default
        if not _is_number(value) or value < 0 or (value == 0 and not allow_zero):
            self.expected(
                _join(path, key), "a number >= 0" if allow_zero else "a number > 0", value
            )
            return default
        return float(value)

    def string_items(self, data: Mapping[str, Any], key: str, path: str) -> list[tuple[int, str]]:
        """The valid strings of an array, each with its index (for later messages)."""
        key_path = _join(path, key)
        result: list[tuple[int, str]] = []
        for index, item in enumerate(self.items(data, key, path)):
            text = self.string_value(item, f"{key_path}[{index}]", required=True)
            if text is not None:
                result.append((index, text))
        return result

    def string_list(self, data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        return tuple(text for _, text in self.string_items(data, key, path))


# --------------------------------------------------------------------------
# The schema: what is honoured, what is OpenClaw's only


_NOT_HERE = "OpenClaw setting not implemented by openclaw-twisted; ignored"

_TOP = _section(
    ["gateway", "models", "agents", "session", "env", "tools"],
    [
        "meta", "wizard", "diagnostics", "logging", "update", "browser", "ui", "auth",
        "nodeHost", "bindings", "broadcast", "audio", "media", "messages",
        "commands", "approvals", "cron", "hooks", "web", "channels", "discovery",
        "canvasHost", "talk", "memory", "skills", "plugins", "telemetry", "secrets", "acp",
        "mcp", "cli", "identity", "routing", "agent",
    ],
)  # fmt: skip
_ENV = _section(["vars"], ["shellEnv"])
_GATEWAY = _section(
    [
        "port", "bind", "customBindHost", "auth", "http", "ws", "controlUi", "trustedProxies",
        "shutdownGraceSeconds", "maxConnections", "workers",
    ],
    [
        "mode", "remote", "tools", "tailscale", "reload", "nodes", "allowRealIpFallback",
        "channelHealthCheckMinutes", "push", "discovery", "trustedProxy",
    ],
    {
        "tls": "TLS is not implemented by openclaw-twisted; the gateway serves plain "
        "HTTP/WebSocket (terminate TLS in a reverse proxy); ignored",
    },
)  # fmt: skip
_AUTH = _section(["mode", "token", "password", "rateLimit"], ["allowTailscale", "trustedProxy"])
_RATE_LIMIT = _section(["maxAttempts", "windowMs", "lockoutMs", "exemptLoopback"])
_HTTP = _section(
    [
        "endpoints", "cors", "maxBodyBytes", "bodyTimeoutSeconds", "maxHeaderBytes", "maxHeaders",
        "headersTimeoutSeconds", "keepAliveTimeoutSeconds",
    ],
    ["securityHeaders"],
)  # fmt: skip
_ENDPOINTS = _section(
    ["chatCompletions"],
    hints={
        "responses": "the /v1/responses endpoint is not implemented by openclaw-twisted; ignored"
    },
)
_CHAT = _section(
    ["enabled", "sseKeepAliveSeconds", "images"],
    ["maxImageParts", "maxTotalImageBytes", "files"],
    {"maxBodyBytes": "not implemented per endpoint; use gateway.http.maxBodyBytes; ignored"},
)
_IMAGES = _section(
    ["allowUrl", "urlAllowlist", "allowedMimes", "maxBytes", "maxRedirects", "timeoutMs"]
)
_CORS = _section(["allowedOrigins", "maxAgeSeconds"])
_CONTROL_UI = _section(
    ["enabled", "basePath", "allowedOrigins"],
    [
        "root", "allowInsecureAuth", "dangerouslyDisableDeviceAuth",
        "dangerouslyAllowHostHeaderOriginFallback",
    ],
)  # fmt: skip
_WS = _section(
    [
        "handshakeTimeoutMs", "tickIntervalMs", "pingIntervalSeconds", "pingTimeoutSeconds",
        "maxPayload", "maxPreauthPayload", "maxBufferedBytes", "maxPreauthSocketsPerAddress",
    ]
)  # fmt: skip
_MODELS = _section(["providers"], ["mode", "catalogRefresh", "bedrockDiscovery", "pricing"])
_PROVIDER = _section(
    ["baseUrl", "apiKey", "api", "headers", "timeoutSeconds", "models", "delayMs"],
    ["auth", "authHeader", "injectNumCtxForOpenAICompat", "compat", "request"],
)
_MODEL_ENTRY = _section(
    ["id", "name", "contextWindow", "maxTokens"],
    ["api", "reasoning", "input", "cost", "compat", "headers", "contextTokens", "params"],
)
_AGENTS = _section(
    ["defaults", "list"],
    hints={"entries": "the keyed agents.entries form is not supported; use agents.list; ignored"},
)
_AGENT_COMMON_OPENCLAW = [
    "identity", "sandbox", "tools", "subagents", "heartbeat", "skills", "memorySearch",
    "humanDelay", "groupChat", "agentDir", "params", "runtime", "thinkingDefault",
    "models", "imageModel", "verboseDefault", "elevatedDefault", "contextTokens",
    "compaction", "maxConcurrent", "userTimezone", "timeFormat", "skipBootstrap",
    "bootstrapMaxChars", "blockStreamingDefault", "blockStreamingBreak",
    "blockStreamingChunk", "typingMode", "typingIntervalSeconds", "contextPruning",
    "cliBackends", "envelopeTimezone", "repoRoot", "mediaMaxMb", "reasoningDefault",
]  # fmt: skip
_DEFAULTS = _section(
    [
        "model", "timeoutSeconds", "workspace", "bootstrapMaxChars", "bootstrapTotalMaxChars",
        "compaction", "maxConcurrent", "userTimezone", "skipBootstrap",
    ],
    _AGENT_COMMON_OPENCLAW,
)  # fmt: skip
_AGENT = _section(
    [
        "id", "default", "name", "model", "systemPrompt", "workspace", "tools",
        "bootstrapMaxChars", "bootstrapTotalMaxChars",
    ],
    _AGENT_COMMON_OPENCLAW,
)  # fmt: skip
_MODEL_REF = _section(["primary", "fallbacks"])
_SESSION = _section(
    ["fsync", "indexFlushMs", "maintenance"],
    [
        "scope", "dmScope", "mainKey", "reset", "resetByType", "resetByChannel",
        "resetTriggers", "idleMinutes", "store", "typingIntervalSeconds", "typingMode",
        "identityLinks", "sendPolicy", "agentToAgent", "parentForkMaxTokens",
    ],
)  # fmt: skip
_MAINTENANCE = _section(
    ["mode", "maxEntries"], ["pruneAfter", "rotateBytes", "resetArchiveRetention", "maxDiskBytes"]
)
_MAINTENANCE_MODES: Final[Mapping[str, MaintenanceMode]] = {"warn": "warn", "enforce": "enforce"}


# --------------------------------------------------------------------------
# Builders, one per section


def _build_config(r: _Reader, data: dict[str, Any], state_dir: Path) -> Config:
    from openclaw.config.agent_loop import build_tools

    root = r.section(data, "", _TOP)
    _read_file_env(r, root.get("env"))
    tools = build_tools(r, root.get("tools"))
    return Config(
        gateway=_build_gateway(r, root.get("gateway")),
        models=_build_models(r, root.get("models")),
        agents=_build_agents(r, root.get("agents"), tools),
        session=_build_session(r, root.get("session")),
        tools=tools,
        state_dir=state_dir,
    )


def _read_file_env(r: _Reader, value: Any) -> None:
    """``env.vars`` and string entries of ``env``: fallbacks for ``${VAR}`` (process env wins)."""
    if value is None:
        return
    if not isinstance(value, dict):
        r.expected("env", "an object", value)
        return
    for key, item in value.items():
        if key == "vars":
            if item is None:
                continue
            if not isinstance(item, dict):
                r.expected("env.vars", "an object", item)
                continue
            pairs = [(f"env.vars.{k}", k, v) for k, v in item.items()]
        elif key == "shellEnv":
            r.warn("env.shellEnv", _NOT_HERE)
            continue
        else:
            pairs = [(f"env.{key}", key, item)]
        for path, name, text in pairs:
            if isinstance(text, str):
                r.file_env[name] = text
            else:
                r.expected(path, "a string", text)


def _build_gateway(r: _Reader, value: Any) -> GatewayConfig:
    d = GatewayConfig()
    g = r.section(value, "gateway", _GATEWAY)
    bind, custom_host = _read_bind(r, g)
    proxies: list[str] = []
    for index, proxy in r.string_items(g, "trustedProxies", "gateway"):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            r.expected(f"gateway.trustedProxies[{index}]", "an IP address or CIDR range", proxy)
        else:
            proxies.append(proxy)
    control_ui = r.section(g.get("controlUi"), "gateway.controlUi", _CONTROL_UI)
    return GatewayConfig(
        port=r.integer(g, "port", "gateway", d.port, minimum=1, maximum=65535),
        bind=bind,
        custom_bind_host=custom_host,
        auth=_build_auth(r, g.get("auth")),
        http=_build_http(r, g.get("http")),
        ws=_build_ws(r, g.get("ws")),
        control_ui=ControlUiConfig(
            enabled=r.boolean(control_ui, "enabled", "gateway.controlUi", True),
            base_path=_read_base_path(r, control_ui),
            allowed_origins=_read_origins(r, control_ui, "gateway.controlUi"),
        ),
        trusted_proxies=tuple(proxies),
        shutdown_grace_seconds=r.number(
            g, "shutdownGraceSeconds", "gateway", d.shutdown_grace_seconds, allow_zero=True
        ),
        max_connections=r.integer(g, "maxConnections", "gateway", d.max_connections),
        workers=_read_workers(r, g),
    )


def _read_workers(r: _Reader, g: Mapping[str, Any]) -> int | Literal["auto"]:
    """``gateway.workers``: a whole number >= 1 or ``"auto"`` (one per core)."""
    raw = g.get("workers")
    if raw is None:
        return GatewayConfig().workers
    if raw == "auto":
        return "auto"
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1:
        return raw
    r.expected("gateway.workers", 'a whole number >= 1 or "auto"', raw)
    return GatewayConfig().workers


def _read_bind(r: _Reader, g: Mapping[str, Any]) -> tuple[str, str | None]:
    default = GatewayConfig().bind
    raw = g.get("bind")
    bind = r.string_value(raw, "gateway.bind")
    if bind is None:
        if isinstance(raw, str) and not raw.strip():
            r.expected("gateway.bind", "loopback, lan, custom or a host/IP address", raw)
        bind = default
    elif bind == "auto":
        r.warn("gateway.bind", '"auto" is treated as "loopback" by openclaw-twisted')
        bind = "loopback"
    elif bind == "tailnet":
        r.expected(
            "gateway.bind",
            "loopback, lan, custom or a host/IP address (tailnet binding is not supported)",
            raw,
        )
        bind = default
    elif bind not in _BIND_KEYWORDS and any(ch.isspace() for ch in bind):
        r.expected("gateway.bind", "loopback, lan, custom or a host/IP address", raw)
        bind = default
    before = len(r.problems)
    custom_host = r.string(g, "customBindHost", "gateway")
    if bind == "custom" and custom_host is None and len(r.problems) == before:
        r.problem("gateway.customBindHost", 'required when gateway.bind is "custom"')
    if bind != "custom" and custom_host is not None:
        r.warn("gateway.customBindHost", 'only used when gateway.bind is "custom"; ignored')
    if custom_host is not None and any(ch.isspace() for ch in custom_host):
        r.expected("gateway.customBindHost", "a host name or IP address", custom_host)
        custom_host = None
    return bind, custom_host


def _read_base_path(r: _Reader, data: Mapping[str, Any]) -> str:
    """``gateway.controlUi.basePath``: ``/a/b`` (letters, digits, ``.``, ``_``, ``-``
    per segment); ``/`` and empty mean the root; trailing slashes are dropped."""
    raw = r.string(data, "basePath", "gateway.controlUi")
    if raw is None:
        return ""
    trimmed = raw.strip().rstrip("/")
    segments = trimmed.split("/")[1:]
    if trimmed and (
        not trimmed.startswith("/")
        or not all(_BASE_PATH_SEGMENT.match(s) and s not in (".", "..") for s in segments)
    ):
        r.expected(
            "gateway.controlUi.basePath",
            'a path like "/openclaw" (segments of letters, digits, ".", "_" or "-")',
            raw,
        )
        return ""
    return trimmed


_BASE_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


def _read_origins(r: _Reader, data: Mapping[str, Any], path: str) -> tuple[str, ...]:
    """Browser origins (``scheme://host[:port]``, or ``*``), lower-cased for comparison."""
    result: list[str] = []
    for index, origin in r.string_items(data, "allowedOrigins", path):
        lowered = origin.lower()
        if lowered == "*" or _ORIGIN.match(lowered):
            result.append(lowered)
        else:
            r.expected(
                f"{path}.allowedOrigins[{index}]",
                'an origin like "https://example.com" (no path, no trailing slash) or "*"',
                origin,
            )
    return tuple(result)


def _build_auth(r: _Reader, value: Any) -> AuthConfig:
    a = r.section(value, "gateway.auth", _AUTH)
    mode: AuthMode | None = r.choice(
        a,
        "mode",
        "gateway.auth",
        _AUTH_MODES,
        {"trusted-proxy": " (trusted-proxy auth is not supported by openclaw-twisted)"},
    )
    token = _read_secret(r, a, "token", "OPENCLAW_GATEWAY_TOKEN")
    password = _read_secret(r, a, "password", "OPENCLAW_GATEWAY_PASSWORD")
    if mode is None and a.get("mode") is None:
        if token and password:
            r.problem(
                "gateway.auth.mode",
                "both a token and a password are configured; set mode to "
                '"token" or "password" explicitly',
            )
        mode = "password" if password else "token"
    return AuthConfig(
        mode=mode or AuthConfig().mode,
        token=token,
        password=password,
        rate_limit=_build_rate_limit(r, a.get("rateLimit")),
    )


def _read_secret(r: _Reader, auth: Mapping[str, Any], key: str, env_name: str) -> str | None:
    """Config first, then the environment; trimmed; the documented sample counts as unset."""
    before = len(r.problems)
    value = r.string(auth, key, "gateway.auth")
    if value == SAMPLE_TOKEN:
        r.warn(f"gateway.auth.{key}", "is the documentation's sample value; counts as unset")
        value = None
    if value is not None or len(r.problems) != before:
        return value
    value = r.env(env_name)
    if value is not None:
        value = value.strip() or None
    if value == SAMPLE_TOKEN:
        r.warn(env_name, "is the documentation's sample value; counts as unset")
        value = None
    return value


def _build_rate_limit(r: _Reader, value: Any) -> RateLimitConfig | None:
    path = "gateway.auth.rateLimit"
    if value is None:
        return AuthConfig().rate_limit
    if value is False:
        return None
    if value is True:
        return RateLimitConfig()
    d = RateLimitConfig()
    if not isinstance(value, dict):
        r.expected(path, "an object, true or false", value)
        return d
    rl = r.section(value, path, _RATE_LIMIT)
    return RateLimitConfig(
        max_attempts=r.integer(rl, "maxAttempts", path, d.max_attempts),
        window_ms=r.integer(rl, "windowMs", path, d.window_ms),
        lockout_ms=r.integer(rl, "lockoutMs", path, d.lockout_ms),
        exempt_loopback=r.boolean(rl, "exemptLoopback", path, d.exempt_loopback),
    )


def _build_http(r: _Reader, value: Any) -> HttpConfig:
    d = HttpConfig()
    h = r.section(value, "gateway.http", _HTTP)
    endpoints = r.section(h.get("endpoints"), "gateway.http.endpoints", _ENDPOINTS)
    cors = r.section(h.get("cors"), "gateway.http.cors", _CORS)
    return HttpConfig(
        chat_completions=_build_chat(r, endpoints.get("chatCompletions")),
        cors=CorsConfig(
            allowed_origins=_read_origins(r, cors, "gateway.http.cors"),
            max_age_seconds=r.integer(
                cors, "maxAgeSeconds", "gateway.http.cors", d.cors.max_age_seconds, minimum=0
            ),
        ),
        max_body_bytes=r.integer(h, "maxBodyBytes", "gateway.http", d.max_body_bytes),
        body_timeout_seconds=r.number(
            h, "bodyTimeoutSeconds", "gateway.http", d.body_timeout_seconds
        ),
        max_header_bytes=r.integer(h, "maxHeaderBytes", "gateway.http", d.max_header_bytes),
        max_headers=r.integer(h, "maxHeaders", "gateway.http", d.max_headers),
        headers_timeout_seconds=r.number(
            h, "headersTimeoutSeconds", "gateway.http", d.headers_timeout_seconds
        ),
        keep_alive_timeout_seconds=r.number(
            h, "keepAliveTimeoutSeconds", "gateway.http", d.keep_alive_timeout_seconds
        ),
    )


def _build_chat(r: _Reader, value: Any) -> ChatCompletionsConfig:
    path = "gateway.http.endpoints.chatCompletions"
    d = ChatCompletionsConfig()
    c = r.section(value, path, _CHAT)
    return ChatCompletionsConfig(
        enabled=r.boolean(c, "enabled", path, d.enabled),
        sse_keep_alive_seconds=r.number(
            c, "sseKeepAliveSeconds", path, d.sse_keep_alive_seconds, allow_zero=True
        ),
        images=_build_images(r, c.get("images")),
    )


def _build_images(r: _Reader, value: Any) -> ImagesConfig:
    path = "gateway.http.endpoints.chatCompletions.images"
    d = ImagesConfig()
    i = r.section(value, path, _IMAGES)
    mimes = r.string_list(i, "allowedMimes", path) if "allowedMimes" in i else d.allowed_mimes
    return ImagesConfig(
        allow_url=r.boolean(i, "allowUrl", path, d.allow_url),
        url_allowlist=r.string_list(i, "urlAllowlist", path),
        allowed_mimes=tuple(m.lower() for m in mimes),
        max_bytes=r.integer(i, "maxBytes", path, d.max_bytes),
        max_redirects=r.integer(i, "maxRedirects", path, d.max_redirects, minimum=0),
        timeout_ms=r.integer(i, "timeoutMs", path, d.timeout_ms),
    )


def _build_ws(r: _Reader, value: Any) -> WebSocketConfig:
    path = "gateway.ws"
    d = WebSocketConfig()
    w = r.section(value, path, _WS)
    return WebSocketConfig(
        handshake_timeout_ms=r.integer(w, "handshakeTimeoutMs", path, d.handshake_timeout_ms),
        tick_interval_ms=r.integer(w, "tickIntervalMs", path, d.tick_interval_ms),
        ping_interval_seconds=r.number(w, "pingIntervalSeconds", path, d.ping_interval_seconds),
        ping_timeout_seconds=r.number(w, "pingTimeoutSeconds", path, d.ping_timeout_seconds),
        max_payload=r.integer(w, "maxPayload", path, d.max_payload),
        max_preauth_payload=r.integer(w, "maxPreauthPayload", path, d.max_preauth_payload),
        max_buffered_bytes=r.integer(w, "maxBufferedBytes", path, d.max_buffered_bytes),
        max_preauth_sockets_per_address=r.integer(
            w, "maxPreauthSocketsPerAddress", path, d.max_preauth_sockets_per_address
        ),
    )


def _build_models(r: _Reader, value: Any) -> ModelsConfig:
    m = r.section(value, "models", _MODELS)
    raw = m.get("providers")
    providers: dict[str, ProviderConfig] = {}
    if raw is None:
        return ModelsConfig()
    if not isinstance(raw, dict):
        r.expected("models.providers", "an object keyed by provider id", raw)
        return ModelsConfig()
    first_key: dict[str, str] = {}
    for key, entry in raw.items():
        path = f"models.providers.{key}"
        pid = key.strip().lower()
        if not pid or "/" in pid or any(ch.isspace() for ch in pid):
            r.expected(path, 'a provider id without "/" or spaces', key)
            continue
        if pid in first_key:
            r.problem(path, f"duplicate provider id {json.dumps(pid)} (also {first_key[pid]})")
            continue
        first_key[pid] = path
        provider = _build_provider(r, pid, entry, path)
        if provider is not None:
            providers[pid] = provider
    return ModelsConfig(providers=providers)


def _build_provider(r: _Reader, pid: str, value: Any, path: str) -> ProviderConfig | None:
    if not isinstance(value, dict):
        r.expected(path, "an object", value)
        return None
    p = r.section(value, path, _PROVIDER)
    api: ProviderApi | None = r.choice(p, "api", path, _PROVIDER_APIS, _API_HINTS)
    if api is None and p.get("api") is not None:
        api = "demo"  # placeholder; the load fails anyway
    elif api is None:
        api = "demo" if pid == "demo" else "anthropic-messages" if pid == "anthropic" else None
        if api is None:
            api = "openai-completions"
            r.warn(f"{path}.api", 'not set; using "openai-completions"')
    base_url = r.string(p, "baseUrl", path, required=api != "demo")
    if base_url is not None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            r.expected(f"{path}.baseUrl", "an http:// or https:// URL", base_url)
    d = ProviderConfig(id=pid, api=api)
    delay = r.number(p, "delayMs", path, d.delay_ms, allow_zero=True)
    if "delayMs" in p and api != "demo":
        r.warn(f"{path}.delayMs", 'only used by providers with api "demo"; ignored')
    return ProviderConfig(
        id=pid,
        api=api,
        base_url=base_url,
        api_key=r.string(p, "apiKey", path),
        headers=_read_headers(r, p.get("headers"), f"{path}.headers"),
        timeout_seconds=r.number(p, "timeoutSeconds", path, d.timeout_seconds),
        models=_read_model_entries(r, p, path),
        delay_ms=delay,
    )


def _read_headers(r: _Reader, value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        r.expected(path, "an object of header names to strings", value)
        return {}
    headers: dict[str, str] = {}
    for name, item in value.items():
        text = r.string_value(item, f"{path}.{name}")
        if text is not None:
            headers[name] = text
    return headers


def _read_model_entries(r: _Reader, p: Mapping[str, Any], path: str) -> tuple[ModelEntry, ...]:
    entries: list[ModelEntry] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(r.items(p, "models", path)):
        item_path = f"{path}.models[{index}]"
        if not isinstance(item, dict):
            r.expected(item_path, "an object with an id", item)
            continue
        e = r.section(item, item_path, _MODEL_ENTRY)
        model_id = r.string(e, "id", item_path, required=True)
        if model_id is None:
            continue
        if model_id in seen:
            r.problem(
                f"{item_path}.id",
                f"duplicate model id {json.dumps(model_id)} (also {path}.models[{seen[model_id]}])",
            )
            continue
        seen[model_id] = index
        entries.append(
            ModelEntry(
                id=model_id,
                name=r.string(e, "name", item_path),
                context_window=r.optional_integer(e, "contextWindow", item_path),
                max_tokens=r.optional_integer(e, "maxTokens", item_path),
            )
        )
    return tuple(entries)


def _read_model_ref(r: _Reader, value: Any, path: str) -> str | None:
    """A model given as ``"provider/model"`` or as ``{primary: "provider/model"}``."""
    if isinstance(value, dict):
        ref = r.section(value, path, _MODEL_REF)
        return r.string(ref, "primary", path)
    if value is None or isinstance(value, str):
        return r.string_value(value, path)
    r.expected(path, 'a "provider/model" string or an object with "primary"', value)
    return None


def _build_agents(r: _Reader, value: Any, tools: ToolsConfig) -> AgentsConfig:
    from openclaw.config.agent_loop import build_compaction, read_model_fallbacks, read_timezone

    a = r.section(value, "agents", _AGENTS)
    defaults_path = "agents.defaults"
    dd = AgentDefaults()
    defaults = r.section(a.get("defaults"), defaults_path, _DEFAULTS)
    default_model = _read_model_ref(r, defaults.get("model"), f"{defaults_path}.model")
    default_fallbacks = read_model_fallbacks(r, defaults.get("model"), f"{defaults_path}.model")
    timeout = r.number(defaults, "timeoutSeconds", defaults_path, dd.timeout_seconds)
    workspace = _workspace(r, r.string(defaults, "workspace", defaults_path))
    agents: list[AgentConfig] = []
    first_index: dict[str, int] = {}
    defaults_seen: list[str] = []
    for index, item in enumerate(r.items(a, "list", "agents")):
        agent = _build_agent(r, item, f"agents.list[{index}]", tools)
        if agent is None:
            continue
        if agent.id in first_index:
            r.problem(
                f"agents.list[{index}].id",
                f"duplicate agent id {json.dumps(agent.id)} "
                f"(also agents.list[{first_index[agent.id]}].id)",
            )
            continue
        first_index[agent.id] = index
        if agent.default:
            defaults_seen.append(agent.id)
        agents.append(agent)
    if len(defaults_seen) > 1:
        r.warn(
            "agents.list",
            f"several agents are marked default ({', '.join(defaults_seen)}); "
            f"using the first, {json.dumps(defaults_seen[0])}",
        )
    return AgentsConfig(
        defaults=AgentDefaults(
            model_primary=default_model,
            timeout_seconds=timeout,
            workspace=workspace,
            model_fallbacks=default_fallbacks or (),
            bootstrap_max_chars=r.integer(
                defaults, "bootstrapMaxChars", defaults_path, dd.bootstrap_max_chars
            ),
            bootstrap_total_max_chars=r.integer(
                defaults, "bootstrapTotalMaxChars", defaults_path, dd.bootstrap_total_max_chars
            ),
            compaction=build_compaction(r, defaults.get("compaction")),
            max_concurrent=r.optional_integer(defaults, "maxConcurrent", defaults_path),
            user_timezone=read_timezone(r, defaults, defaults_path),
            skip_bootstrap=r.boolean(defaults, "skipBootstrap", defaults_path, False),
        ),
        list=tuple(agents),
    )


def _workspace(r: _Reader, value: str | None) -> str | None:
    return None if value is None else str(_expand_home(value, r.process_env))


def _build_agent(r: _Reader, value: Any, path: str, tools: ToolsConfig) -> AgentConfig | None:
    from openclaw.config.agent_loop import build_agent_tools, read_model_fallbacks

    if not isinstance(value, dict):
        r.expected(path, "an object with an id", value)
        return None
    e = r.section(value, path, _AGENT)
    raw_id = r.string(e, "id", path, required=True)
    if raw_id is None:
        return None
    agent_id = normalize_agent_id(raw_id)
    if agent_id != raw_id.lower():
        r.warn(
            f"{path}.id",
            f"{json.dumps(raw_id)} is not a valid agent id; using {json.dumps(agent_id)}",
        )
    return AgentConfig(
        id=agent_id,
        default=r.boolean(e, "default", path, False),
        name=r.string(e, "name", path),
        model=_read_model_ref(r, e.get("model"), f"{path}.model"),
        system_prompt=r.string(e, "systemPrompt", path, strip=False),
        workspace=_workspace(r, r.string(e, "workspace", path)),
        model_fallbacks=read_model_fallbacks(r, e.get("model"), f"{path}.model"),
        bootstrap_max_chars=r.optional_integer(e, "bootstrapMaxChars", path),
        bootstrap_total_max_chars=r.optional_integer(e, "bootstrapTotalMaxChars", path),
        tools=build_agent_tools(r, e.get("tools"), f"{path}.tools", tools),
    )


def _build_session(r: _Reader, value: Any) -> SessionConfig:
    d = SessionConfig()
    s = r.section(value, "session", _SESSION)
    fsync: FsyncPolicy | None = r.choice(s, "fsync", "session", _FSYNC)
    m = r.section(s.get("maintenance"), "session.maintenance", _MAINTENANCE)
    mode: MaintenanceMode | None = r.choice(m, "mode", "session.maintenance", _MAINTENANCE_MODES)
    return SessionConfig(
        fsync=fsync or d.fsync,
        index_flush_ms=r.integer(s, "indexFlushMs", "session", d.index_flush_ms, minimum=0),
        maintenance=SessionMaintenanceConfig(
            mode=mode or d.maintenance.mode,
            max_entries=r.integer(
                m, "maxEntries", "session.maintenance", d.maintenance.max_entries, minimum=0
            ),
        ),
    )


# Keep the names callers may want for messages and CLI help.
SUPPORTED_PROVIDER_APIS: Final = tuple(_PROVIDER_APIS)
AUTH_MODES: Final = tuple(_AUTH_MODES)

__all__ = [
    "AUTH_MODES",
    "BUILTIN_PROVIDERS",
    "CONFIG_FILENAME",
    "SAMPLE_TOKEN",
    "SUPPORTED_PROVIDER_APIS",
    "ConfigError",
    "LoadedConfig",
    "config_from_mapping",
    "is_loopback_bind",
    "load_config",
    "parse_config_text",
    "resolve_config_path",
    "resolve_state_dir",
    "split_model_ref",
    "startup_problems",
]
