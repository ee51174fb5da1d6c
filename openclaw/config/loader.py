"""Find, parse and validate ``openclaw.json``.

The file is JSON5 in OpenClaw's shape, so a user's existing OpenClaw config
loads here: keys this project does not implement are ignored with one warning
each, while wrong values in the keys it does honour are collected and reported
together (one line per problem) in a :class:`ConfigError`. Nothing here logs:
the caller decides where warnings go.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import attrs
from attrs import frozen

from openclaw.config.agent_loop import (
    build_agent_tools,
    build_compaction,
    build_model_retry,
    build_tools,
    read_model_fallbacks,
    read_timezone,
)
from openclaw.config.errors import ConfigError
from openclaw.config.gateway_keys import _AUTH_MODES, SAMPLE_TOKEN, _build_gateway
from openclaw.config.memory import build_memory_search
from openclaw.config.model import (
    DEFAULT_MAX_DISK_BYTES,
    AgentConfig,
    AgentDefaults,
    AgentsConfig,
    Config,
    FsyncPolicy,
    GatewayConfig,
    MaintenanceMode,
    ResetMode,
    SessionConfig,
    SessionMaintenanceConfig,
    SessionResetConfig,
    ToolsConfig,
    default_high_water,
)
from openclaw.config.models_keys import _PROVIDER_APIS, _build_models
from openclaw.config.reader import _NOT_HERE, _describe, _env_value, _Reader, _section
from openclaw.core.agent_ids import normalize_agent_id
from openclaw.core.textguard import guard_value

CONFIG_FILENAME: Final = "openclaw.json"
#: Nesting a config file may have (far beyond any real one; bounds the walk).
CONFIG_MAX_DEPTH: Final = 256
#: The provider that needs no configuration (offline, deterministic stand-in).
BUILTIN_PROVIDERS: Final = frozenset({"demo"})

_FSYNC: Final[Mapping[str, FsyncPolicy]] = {"turn": "turn", "never": "never"}
_JSON5_ERROR: Final = re.compile(r"^<string>:(\d+) (.*?)(?: at column (\d+))?$", re.DOTALL)


@frozen
class LoadedConfig:
    """A validated configuration plus the warnings its loading produced."""

    config: Config
    warnings: tuple[str, ...] = ()
    #: The file's text as read (None: no file, the defaults). Kept so that a worker
    #: restarted by ``--workers`` can be handed the text its group runs.
    text: str | None = attrs.field(default=None, repr=False)


# --------------------------------------------------------------------------
# Paths


def _expand_home(value: str, env: Mapping[str, str]) -> Path:
    """``~`` expansion that honours an injected ``HOME`` (tests never touch os.environ)."""
    if value == "~" or value.startswith(("~/", "~" + os.sep)):
        home = env.get("HOME", "").strip()
        base = Path(home) if home else Path.home()
        return base / value[2:] if len(value) > 1 else base
    return Path(value).expanduser()


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
    if not config_path.exists():
        if required:
            raise ConfigError([f"{config_path}: config file not found"])
        return load_config_text(None, None, env=environ)
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
    return load_config_text(text, config_path, env=environ)


def load_config_text(
    text: str | None, path: Path | None, *, env: Mapping[str, str]
) -> LoadedConfig:
    """Validate ``text`` as if read from the file at ``path`` (None, None: no file,
    the defaults), with ``${VAR}`` and the state directory from ``env``."""
    state_dir = resolve_state_dir(env)
    if text is None:
        return config_from_mapping({}, env=env, state_dir=state_dir)
    source = str(path) if path is not None else "<config>"
    loaded = parse_config_text(text, source=source, env=env, state_dir=state_dir)
    return attrs.evolve(loaded, config=attrs.evolve(loaded.config, source_path=path), text=text)


def parse_config_text(
    text: str, *, source: str, env: Mapping[str, str], state_dir: Path
) -> LoadedConfig:
    """Parse JSON5 text and validate it; ``source`` names it in messages."""
    text = text.removeprefix("\ufeff")
    if not text.strip():
        data: Any = {}
    else:
        try:
            # The text ingress rule: lone surrogates (a "\ud800" escape) become U+FFFD.
            data = guard_value(_parse_json5(text), max_depth=CONFIG_MAX_DEPTH)
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


def _parse_json5(text: str) -> Any:
    """The JSON5 document in ``text``.

    Plain JSON (a JSON5 document without comments or JSON5 syntax) is read by
    the standard library's parser, which gives the same values; the JSON5
    parser (0.4 MB once imported, issue 16) loads only for real JSON5, so a
    gateway configured in plain JSON never holds it.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        import json5

        return json5.loads(text)


def _json5_problem(source: str, message: str) -> str:
    """One line: the parser may quote the offending character, a line break too."""
    message = message.strip().replace("\r", "\\r").replace("\n", "\\n")
    match = _JSON5_ERROR.match(message)
    if match is None:
        return f"{source}: invalid JSON5: {message}"
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
    flush_model = config.agents.defaults.compaction.memory_flush.model
    if flush_model is not None:
        refs.append(("agents.defaults.compaction.memoryFlush.model", flush_model))
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
# The schema: what is honoured, what is OpenClaw's only


_TOP = _section(
    ["gateway", "models", "agents", "session", "env", "tools", "memory"],
    [
        "meta", "wizard", "diagnostics", "logging", "update", "browser", "ui", "auth",
        "nodeHost", "bindings", "broadcast", "audio", "media", "messages",
        "commands", "approvals", "cron", "hooks", "web", "channels", "discovery",
        "canvasHost", "talk", "skills", "plugins", "telemetry", "secrets", "acp",
        "mcp", "cli", "identity", "routing", "agent",
    ],
)  # fmt: skip
_ENV = _section(["vars"], ["shellEnv"])
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
        "compaction", "maxConcurrent", "userTimezone", "skipBootstrap", "modelRetry",
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
    [
        "fsync", "indexFlushMs", "maintenance", "store", "reset", "resetByType",
        "resetByChannel", "idleMinutes",
    ],
    [
        "scope", "dmScope", "mainKey", "resetTriggers", "typingIntervalSeconds",
        "typingMode", "identityLinks", "sendPolicy", "agentToAgent", "parentForkMaxTokens",
    ],
)  # fmt: skip
_RESET = _section(["mode", "atHour", "idleMinutes"])
_RESET_MODES: Final[Mapping[str, ResetMode]] = {"none": "none", "daily": "daily", "idle": "idle"}
_RESET_TYPES = ("direct", "group", "thread")
_MAINTENANCE = _section(
    ["mode", "maxEntries", "resetArchiveRetention", "maxDiskBytes", "highWaterBytes"],
    ["pruneAfter", "rotateBytes"],
)
_MAINTENANCE_MODES: Final[Mapping[str, MaintenanceMode]] = {"warn": "warn", "enforce": "enforce"}


# --------------------------------------------------------------------------
# Builders, one per section


def _build_config(r: _Reader, data: dict[str, Any], state_dir: Path) -> Config:
    root = r.section(data, "", _TOP)
    _read_file_env(r, root.get("env"))
    tools = build_tools(r, root.get("tools"))
    return Config(
        gateway=_build_gateway(r, root.get("gateway")),
        models=_build_models(r, root.get("models")),
        agents=_build_agents(r, root.get("agents"), tools),
        session=_build_session(r, root.get("session")),
        tools=tools,
        memory_search=build_memory_search(r, root.get("memory")),
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
    a = r.section(value, "agents", _AGENTS)
    defaults_path = "agents.defaults"
    dd = AgentDefaults()
    defaults = r.section(a.get("defaults"), defaults_path, _DEFAULTS)
    default_model = _read_model_ref(r, defaults.get("model"), f"{defaults_path}.model")
    default_fallbacks = read_model_fallbacks(r, defaults.get("model"), f"{defaults_path}.model")
    # 0 means no run timeout, as in OpenClaw.
    timeout = r.number(
        defaults, "timeoutSeconds", defaults_path, dd.timeout_seconds, allow_zero=True
    )
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
            model_retry=build_model_retry(r, defaults.get("modelRetry")),
            max_concurrent=r.optional_integer(defaults, "maxConcurrent", defaults_path),
            user_timezone=read_timezone(r, defaults, defaults_path),
            skip_bootstrap=r.boolean(defaults, "skipBootstrap", defaults_path, False),
        ),
        list=tuple(agents),
    )


def _workspace(r: _Reader, value: str | None) -> str | None:
    return None if value is None else str(_expand_home(value, r.process_env))


def _build_agent(r: _Reader, value: Any, path: str, tools: ToolsConfig) -> AgentConfig | None:
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
    store = _read_store(r, s)
    if "idleMinutes" in s:
        r.problem(
            "session.idleMinutes",
            "retired (OpenClaw's schema rejects it): move it to session.reset.idleMinutes",
        )
    retention = r.duration(m, "resetArchiveRetention", "session.maintenance")
    max_disk, high_water = _disk_budget(r, m)
    if store == "redis":
        for key in ("maxDiskBytes", "highWaterBytes"):
            if m.get(key) not in (None, False, ""):
                r.warn(
                    f"session.maintenance.{key}",
                    'applies to the file store only; ignored with session.store "redis"',
                )
    return SessionConfig(
        store=store,
        fsync=fsync or d.fsync,
        index_flush_ms=r.integer(s, "indexFlushMs", "session", d.index_flush_ms, minimum=0),
        reset=_reset_policy(r, s.get("reset"), "session.reset"),
        reset_by_type=_reset_by_type(r, s.get("resetByType")),
        reset_by_channel=_reset_by_channel(r, s.get("resetByChannel")),
        maintenance=SessionMaintenanceConfig(
            mode=mode or d.maintenance.mode,
            max_entries=r.integer(
                m, "maxEntries", "session.maintenance", d.maintenance.max_entries, minimum=0
            ),
            archive_retention_seconds=retention,
            max_disk_bytes=max_disk,
            high_water_bytes=high_water,
        ),
    )


def _reset_policy(r: _Reader, value: Any, path: str) -> SessionResetConfig | None:
    """One ``session.reset``-shaped object (OpenClaw's schema: ``mode`` one of
    none/daily/idle, ``atHour`` an integer 0-23, ``idleMinutes`` an integer
    >= 0, 0 meaning no idle limit as in OpenClaw; other keys are refused, as
    OpenClaw's strict schema does)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        r.expected(path, "an object", value)
        return None
    for key in value:
        if key not in _RESET.honoured:
            r.problem(f"{path}.{key}", "not a reset policy key (mode, atHour, idleMinutes)")
    mode: ResetMode | None = r.choice(value, "mode", path, _RESET_MODES)
    at_hour = r.optional_integer(value, "atHour", path, minimum=0, maximum=23)
    idle = r.optional_integer(value, "idleMinutes", path, minimum=0)
    return SessionResetConfig(mode=mode, at_hour=at_hour, idle_minutes=idle)


def _reset_by_type(r: _Reader, value: Any) -> dict[str, SessionResetConfig]:
    path = "session.resetByType"
    if value is None:
        return {}
    if not isinstance(value, dict):
        r.expected(path, "an object", value)
        return {}
    out: dict[str, SessionResetConfig] = {}
    for key, entry in value.items():
        if key == "dm":
            r.problem(
                f"{path}.dm",
                "retired (OpenClaw's schema rejects it): rename it to session.resetByType.direct",
            )
        elif key not in _RESET_TYPES:
            r.problem(f"{path}.{key}", "expected one of " + ", ".join(_RESET_TYPES))
        else:
            policy = _reset_policy(r, entry, f"{path}.{key}")
            if policy is not None:
                out[key] = policy
    return out


def _reset_by_channel(r: _Reader, value: Any) -> dict[str, SessionResetConfig]:
    """Keyed by channel id, any channel (OpenClaw's too: a key for a channel
    this gateway has none of is kept and never matches)."""
    path = "session.resetByChannel"
    if value is None:
        return {}
    if not isinstance(value, dict):
        r.expected(path, "an object", value)
        return {}
    out: dict[str, SessionResetConfig] = {}
    for key, entry in value.items():
        policy = _reset_policy(r, entry, f"{path}.{key}")
        channel = key.strip().lower()
        if policy is not None and channel:
            out[channel] = policy
    return out


def _disk_budget(r: _Reader, m: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """``maxDiskBytes`` and ``highWaterBytes`` as OpenClaw resolves them: the
    budget defaults to 10 GiB, ``false`` or 0 turns it off; the target
    defaults to 80% of it, is never above it, and 0 means the default."""
    size = r.byte_size(m, "maxDiskBytes", "session.maintenance")
    high = r.byte_size(m, "highWaterBytes", "session.maintenance", false_is_zero=False)
    max_disk = DEFAULT_MAX_DISK_BYTES if size is None else size
    if max_disk <= 0:
        return None, None
    return max_disk, min(high, max_disk) if high else default_high_water(max_disk)


def _read_store(r: _Reader, s: Mapping[str, Any]) -> Literal["file", "redis"]:
    """``session.store``: ``"redis"`` (shared state) or ``"file"``; OpenClaw's
    value (a path template for ``sessions.json``) is not read here."""
    raw = s.get("store")
    if raw is None or raw == "file":
        return "file"
    if raw == "redis":
        return "redis"
    r.warn(
        "session.store",
        'only "file" and "redis" are read by openclaw-twisted (sessions stay in the '
        "state dir's OpenClaw layout); ignored",
    )
    return "file"


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
    "load_config_text",
    "parse_config_text",
    "resolve_config_path",
    "resolve_state_dir",
    "split_model_ref",
    "startup_problems",
]
