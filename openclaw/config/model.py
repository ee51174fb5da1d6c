"""Frozen, typed configuration objects.

These are the values every other module receives; nothing here reads files or
the environment (see :mod:`openclaw.config.loader`). Field names are the
snake_case forms of OpenClaw's camelCase JSON keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from attrs import Factory, field, frozen

AuthMode = Literal["none", "token", "password"]
ProviderApi = Literal["openai-completions", "anthropic-messages", "demo"]
FsyncPolicy = Literal["turn", "never"]
MaintenanceMode = Literal["warn", "enforce"]
ResetMode = Literal["none", "daily", "idle"]

DEFAULT_PORT = 18789
MAX_BODY_BYTES = 20 * 1024 * 1024


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Give a mapping field value semantics (read-only, hashable enough for attrs)."""
    return MappingProxyType(dict(value or {}))


@frozen
class RateLimitConfig:
    """Failed-authentication limiter (``gateway.auth.rateLimit``)."""

    max_attempts: int = 10
    window_ms: int = 60_000
    lockout_ms: int = 300_000
    exempt_loopback: bool = True


@frozen
class AuthConfig:
    """``gateway.auth``; secrets are already resolved (config first, then env)."""

    mode: AuthMode = "token"
    token: str | None = None
    password: str | None = None
    #: On by default (loopback exempt); ``rateLimit: false`` turns it off.
    rate_limit: RateLimitConfig | None = Factory(RateLimitConfig)


@frozen
class ImagesConfig:
    """``gateway.http.endpoints.chatCompletions.images``."""

    allow_url: bool = False
    url_allowlist: tuple[str, ...] = ()
    allowed_mimes: tuple[str, ...] = ("image/jpeg", "image/png", "image/gif", "image/webp")
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 3
    timeout_ms: int = 10_000


@frozen
class ChatCompletionsConfig:
    """``gateway.http.endpoints.chatCompletions``."""

    enabled: bool = False
    sse_keep_alive_seconds: float = 15.0
    images: ImagesConfig = Factory(ImagesConfig)


#: Image types ``/v1/responses`` takes by default (HEIC/HEIF are not converted here).
RESPONSES_IMAGE_MIMES = ("image/jpeg", "image/png", "image/gif", "image/webp")
#: File types ``input_file`` takes by default (text only: PDFs are not parsed here).
RESPONSES_FILE_MIMES = ("text/plain", "text/markdown", "text/html", "text/csv", "application/json")


@frozen
class ResponsesFilesConfig:
    """``gateway.http.endpoints.responses.files``: ``input_file`` limits."""

    allowed_mimes: tuple[str, ...] = RESPONSES_FILE_MIMES
    max_bytes: int = 5 * 1024 * 1024
    max_chars: int = 60_000


@frozen
class ResponsesConfig:
    """``gateway.http.endpoints.responses`` (``POST /v1/responses``)."""

    enabled: bool = False
    sse_keep_alive_seconds: float = 15.0
    #: URL-sourced ``input_image`` parts per request, at most.
    max_url_parts: int = 8
    files: ResponsesFilesConfig = Factory(ResponsesFilesConfig)
    images: ImagesConfig = Factory(
        lambda: ImagesConfig(allow_url=True, allowed_mimes=RESPONSES_IMAGE_MIMES)
    )


@frozen
class MetricsConfig:
    """``gateway.http.endpoints.metrics``: ``GET /metrics`` (Prometheus text)."""

    enabled: bool = False
    #: ``gateway``: the gateway's token/password; ``none``: open (a scrape network).
    auth: Literal["gateway", "none"] = "gateway"


@frozen
class CorsConfig:
    """``gateway.http.cors``: off unless origins are listed."""

    allowed_origins: tuple[str, ...] = ()
    max_age_seconds: int = 600


@frozen
class HttpConfig:
    """``gateway.http``."""

    chat_completions: ChatCompletionsConfig = Factory(ChatCompletionsConfig)
    responses: ResponsesConfig = Factory(ResponsesConfig)
    cors: CorsConfig = Factory(CorsConfig)
    metrics: MetricsConfig = Factory(MetricsConfig)
    max_body_bytes: int = MAX_BODY_BYTES

    body_timeout_seconds: float = 30.0
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    #: From connecting (or a new request's first byte) to the end of its headers.
    headers_timeout_seconds: float = 10.0
    keep_alive_timeout_seconds: float = 60.0
    #: Open connections (HTTP and WebSocket) from one client address; 0: no cap.
    max_connections_per_address: int = 256
    #: The last slots of ``gateway.maxConnections`` go only to addresses holding
    #: fewer than ``light_address_connections`` connections; 0: no reserve.
    reserved_connections: int = 64
    light_address_connections: int = 8
    #: A kept-alive connection that never carried an authenticated request is
    #: closed after this long idle (authenticated ones: ``keep_alive_timeout_seconds``).
    unauthenticated_idle_timeout_seconds: float = 5.0


@frozen
class ControlUiConfig:
    """``gateway.controlUi``: the browser chat served by the gateway and the
    browser origins allowed to open the WebSocket."""

    enabled: bool = True
    #: Where the UI is served: ``""`` for ``/``, else ``/<segments>`` (no trailing slash).
    base_path: str = ""
    allowed_origins: tuple[str, ...] = ()


@frozen
class WebSocketConfig:
    """``gateway.ws``: protocol timings and limits (this project's own keys)."""

    handshake_timeout_ms: int = 15_000
    tick_interval_ms: int = 30_000
    ping_interval_seconds: float = 25.0
    ping_timeout_seconds: float = 25.0
    max_payload: int = 25 * 1024 * 1024
    max_preauth_payload: int = 64 * 1024
    max_buffered_bytes: int = 50 * 1024 * 1024
    max_preauth_sockets_per_address: int = 16


@frozen
class RedisConfig:
    """``gateway.redis``: the Redis that ``session.store: "redis"`` shares."""

    #: ``redis://``, ``rediss://``, ``unix:///path?db=N`` (``${VAR}`` expanded).
    url: str | None = field(default=None, repr=False)  # may carry a password
    #: Prefix of every key, so several gateways can share one database.
    key_prefix: str = "openclaw:"
    #: Seconds a session lane's lock outlives a holder that stopped renewing it.
    lock_ttl_seconds: float = 15.0


@frozen
class GatewayConfig:
    """``gateway``: where and how the gateway listens."""

    port: int = DEFAULT_PORT
    bind: str = "loopback"
    custom_bind_host: str | None = None
    auth: AuthConfig = Factory(AuthConfig)
    http: HttpConfig = Factory(HttpConfig)
    ws: WebSocketConfig = Factory(WebSocketConfig)
    control_ui: ControlUiConfig = Factory(ControlUiConfig)
    trusted_proxies: tuple[str, ...] = ()
    shutdown_grace_seconds: float = 10.0
    max_connections: int = 1024
    #: Nesting depth of any JSON value taken from a client (HTTP bodies, WebSocket frames).
    max_json_depth: int = 64
    #: Runs waiting for a slot beyond ``agents.defaults.maxConcurrent``; more are refused.
    max_queued_runs: int = 1000
    #: Worker processes sharing the port (``--workers``): a count or ``"auto"`` (cores).
    workers: int | Literal["auto"] = 1
    #: After SIGTERM, seconds ``/readyz`` answers 503 (new work refused) while
    #: the listener stays open, before the shutdown grace starts.
    drain_seconds: float = 0.0
    redis: RedisConfig = Factory(RedisConfig)


@frozen
class ModelEntry:
    """One entry of a provider's ``models`` list."""

    id: str
    name: str | None = None
    context_window: int | None = None
    max_tokens: int | None = None
    #: ``compat.maxTokensField``: the request field for the output cap (None:
    #: ``max_completion_tokens`` for OpenAI's own API, else ``max_tokens``).
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None


@frozen
class ProviderConfig:
    """``models.providers.<id>``: one upstream model API."""

    id: str
    api: ProviderApi
    base_url: str | None = None
    api_key: str | None = None
    headers: Mapping[str, str] = field(default=None, converter=_frozen_mapping)
    timeout_seconds: float = 600.0
    models: tuple[ModelEntry, ...] = ()
    #: Only for ``api: "demo"``: pause between streamed tokens.
    delay_ms: float = 0.0


@frozen
class MemorySearchConfig:
    """``memory.search``: the embedding provider (``/v1/embeddings``).

    ``provider`` is ``openai``, ``openai-compatible`` (with ``remote.baseUrl``),
    ``demo``, or a ``models.providers`` id; None picks ``demo`` for an agent
    on the demo provider, else ``openai`` (OpenClaw's default).
    """

    provider: str | None = None
    model: str | None = None
    output_dimensionality: int | None = None
    #: ``remote.baseUrl`` / ``remote.apiKey`` / ``remote.headers``.
    remote_base_url: str | None = None
    remote_api_key: str | None = None
    remote_headers: Mapping[str, str] = field(default=None, converter=_frozen_mapping)
    #: ``OPENAI_API_KEY``, for provider ``openai`` without a configured key.
    openai_api_key: str | None = field(default=None, repr=False)


@frozen
class ModelsConfig:
    """``models``."""

    providers: Mapping[str, ProviderConfig] = field(default=None, converter=_frozen_mapping)


ToolProfile = Literal["minimal", "coding", "messaging", "full"]
ExecMode = Literal["deny", "allowlist", "ask", "auto", "full"]
ExecSecurity = Literal["deny", "allowlist", "full"]
ExecAsk = Literal["off", "on-miss", "always"]
CompactionMode = Literal["default", "safeguard"]
IdentifierPolicy = Literal["strict", "off"]


@frozen
class ToolPolicyConfig:
    """One scope's tool selection (``tools`` or ``agents.list[].tools``).

    ``allow`` is None when the scope sets no allow-list, or an empty one
    (everything the profile selects stays); names are lower-cased and may be
    ``group:*`` or ``*`` globs.
    """

    profile: ToolProfile | None = None
    allow: tuple[str, ...] | None = None
    also_allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


@frozen
class ApplyPatchConfig:
    """``tools.exec.applyPatch``."""

    enabled: bool = True
    workspace_only: bool = True
    #: Model ids allowed to use ``apply_patch``; empty means any.
    allow_models: tuple[str, ...] = ()


@frozen
class ExecConfig:
    """``tools.exec``: the shell tool's limits and approval policy keys as written.

    ``mode`` and the legacy ``security``/``ask`` pair are kept as given; the
    effective policy is computed by :func:`openclaw.agents.tools.policy.resolve_exec_policy`.
    """

    mode: ExecMode | None = None
    security: ExecSecurity | None = None
    ask: ExecAsk | None = None
    #: What an unanswered approval falls back to (OpenClaw's ``askFallback``).
    ask_fallback: ExecSecurity = "deny"
    #: Command patterns (bare names or path globs) that run without asking.
    allowlist: tuple[str, ...] = ()
    #: Stdin-only filters allowed in allowlist mode; None means OpenClaw's defaults.
    safe_bins: tuple[str, ...] | None = None
    timeout_seconds: float = 1800.0
    background_ms: int = 10_000
    cleanup_ms: int = 1_800_000
    notify_on_exit: bool = True
    path_prepend: tuple[str, ...] = ()
    #: How long an approval request waits for an operator before it is denied.
    approval_timeout_seconds: float = 120.0
    apply_patch: ApplyPatchConfig = Factory(ApplyPatchConfig)


@frozen
class SsrfPolicyConfig:
    """``tools.web.fetch.ssrfPolicy``."""

    dangerously_allow_private_network: bool = False
    allowed_hostnames: tuple[str, ...] = ()
    blocked_hostnames: tuple[str, ...] = ()
    allow_rfc2544_benchmark_range: bool = False
    allow_ipv6_unique_local_range: bool = False


@frozen
class WebFetchConfig:
    """``tools.web.fetch``."""

    enabled: bool = True
    max_chars: int = 20_000
    max_chars_cap: int = 20_000
    max_response_bytes: int = 750_000
    timeout_seconds: float = 30.0
    max_redirects: int = 3
    readability: bool = True
    user_agent: str | None = None
    ssrf_policy: SsrfPolicyConfig = Factory(SsrfPolicyConfig)


@frozen
class LoopDetectionConfig:
    """``tools.loopDetection``.

    ``enabled`` None (unset) leaves the rolling detectors off but keeps the
    post-compaction guard; ``False`` turns both off.
    """

    enabled: bool | None = None
    history_size: int = 30
    warning_threshold: int = 10
    critical_threshold: int = 20
    global_circuit_breaker_threshold: int = 30
    generic_repeat: bool = True
    known_poll_no_progress: bool = True
    ping_pong: bool = True


@frozen
class AgentToolsConfig:
    """``agents.list[].tools``: the agent's own policy layer, and the global
    ``exec``/``loopDetection`` settings with the agent's keys applied on top."""

    policy: ToolPolicyConfig = Factory(ToolPolicyConfig)
    exec: ExecConfig = Factory(ExecConfig)
    loop_detection: LoopDetectionConfig = Factory(LoopDetectionConfig)


@frozen
class ToolsConfig:
    """``tools``."""

    policy: ToolPolicyConfig = Factory(ToolPolicyConfig)
    exec: ExecConfig = Factory(ExecConfig)
    web_fetch: WebFetchConfig = Factory(WebFetchConfig)
    loop_detection: LoopDetectionConfig = Factory(LoopDetectionConfig)


@frozen
class AgentConfig:
    """One entry of ``agents.list`` (id already normalised)."""

    id: str
    default: bool = False
    name: str | None = None
    model: str | None = None
    system_prompt: str | None = None
    workspace: str | None = None
    #: ``model.fallbacks`` of this entry: None when not set (the agent's own
    #: primary is then strict), ``()`` when set empty (no fallback).
    model_fallbacks: tuple[str, ...] | None = None
    #: Per-agent bootstrap limits; None inherits ``agents.defaults``.
    bootstrap_max_chars: int | None = None
    bootstrap_total_max_chars: int | None = None
    #: ``agents.list[].tools``, already merged over the global ``tools``; None
    #: when the entry has no ``tools`` (the global settings apply as they are).
    tools: AgentToolsConfig | None = None


@frozen
class MemoryFlushConfig:
    """``agents.defaults.compaction.memoryFlush``: the silent housekeeping turn
    that lets the model write durable notes before compaction summarises."""

    enabled: bool = True
    #: ``provider/model`` for the flush turn only (exact: no fallback chain).
    model: str | None = None
    #: How far below the compaction threshold the flush starts (tokens).
    soft_threshold_tokens: int = 4_000
    #: Flush once the model-visible transcript reaches this size (0: never by size).
    force_flush_transcript_bytes: int = 2 * 1024 * 1024


@frozen
class CompactionConfig:
    """``agents.defaults.compaction``: when and how a long session is summarised."""

    enabled: bool = True
    mode: CompactionMode = "safeguard"
    #: Tokens kept free below the context window; capped at a quarter of the window.
    reserve_tokens: int = 20_000
    #: The recent tail kept verbatim (the cut-point budget).
    keep_recent_tokens: int = 20_000
    #: ``provider/model`` for summaries; None uses the session's model.
    model: str | None = None
    timeout_seconds: float = 180.0
    identifier_policy: IdentifierPolicy = "strict"
    memory_flush: MemoryFlushConfig = Factory(MemoryFlushConfig)


@frozen
class ModelRetryConfig:
    """``agents.defaults.modelRetry`` (this gateway's key): the same-model retry
    budget of :mod:`openclaw.agents.model_retry`, OpenClaw's embedded
    ``retry.provider`` settings."""

    #: Retries per run, overriding OpenClaw's budget (8, rate limits 9); rate
    #: limits stay at most 9; 0 turns retries off; None: the default budget.
    max_retries: int | None = None
    #: A ``retry-after`` longer than this goes to a fallback when there is one; 0: no cap.
    max_retry_delay_ms: int = 60_000


@frozen
class AgentDefaults:
    """``agents.defaults``."""

    model_primary: str | None = None
    timeout_seconds: float = 600.0
    workspace: str | None = None
    model_fallbacks: tuple[str, ...] = ()
    bootstrap_max_chars: int = 20_000
    bootstrap_total_max_chars: int = 60_000
    compaction: CompactionConfig = Factory(CompactionConfig)
    model_retry: ModelRetryConfig = Factory(ModelRetryConfig)
    #: Parsed only (runs are not yet limited globally); None means OpenClaw's default.
    max_concurrent: int | None = None
    #: IANA time zone for the system prompt's date line; None uses the host's.
    user_timezone: str | None = None
    #: ``skipBootstrap``: create workspaces without the starter files.
    skip_bootstrap: bool = False


@frozen
class AgentsConfig:
    """``agents``."""

    defaults: AgentDefaults = Factory(AgentDefaults)
    list: tuple[AgentConfig, ...] = ()


#: OpenClaw's ``session.maintenance.maxDiskBytes`` default: 10 GiB per agent.
DEFAULT_MAX_DISK_BYTES = 10 << 30


def default_high_water(max_disk_bytes: int) -> int:
    """OpenClaw's ``highWaterBytes`` default: 80% of the budget (at least 1)."""
    return max(1, min(max_disk_bytes, max_disk_bytes * 4 // 5))


@frozen
class SessionMaintenanceConfig:
    """``session.maintenance``: how many sessions an agent's index keeps.

    Stateless ``openai:<uuid>`` sessions are always capped at ``max_entries``;
    ``mode: "enforce"`` caps the others too (``"warn"`` only logs).
    """

    mode: MaintenanceMode = "warn"
    #: 0 means no cap.
    max_entries: int = 500
    #: ``resetArchiveRetention``: archived transcripts older than this many
    #: seconds are deleted; None keeps them (the default, as in OpenClaw).
    archive_retention_seconds: float | None = None
    #: ``maxDiskBytes``: the per-agent sessions directory budget (None: no
    #: budget); past it the oldest archived transcripts are deleted until the
    #: directory is down to ``high_water_bytes``.
    max_disk_bytes: int | None = DEFAULT_MAX_DISK_BYTES
    #: ``highWaterBytes``: where a budget cleanup stops (OpenClaw's default:
    #: 80% of the budget).
    high_water_bytes: int | None = default_high_water(DEFAULT_MAX_DISK_BYTES)


@frozen
class SessionResetConfig:
    """One ``session.reset``-shaped object, as written: a field left out is None
    (a ``resetByType`` entry inherits it from ``session.reset``; see
    :func:`openclaw.sessions.reset_policy.resolve_policy`)."""

    mode: ResetMode | None = None
    #: 0-23, the local hour of the gateway host a daily reset happens at.
    at_hour: int | None = None
    #: >= 1: minutes without a user message after which the session resets.
    idle_minutes: int | None = None


@frozen
class SessionConfig:
    """``session``: transcript durability, index upkeep, automatic resets."""

    fsync: FsyncPolicy = "turn"
    #: Index changes within this window are written together (a crash loses at
    #: most this much of the index; transcripts recover it at start-up).
    index_flush_ms: int = 1000
    #: ``"file"`` (OpenClaw's layout under the state dir) or ``"redis"``
    #: (shared by every process on ``gateway.redis.url``).
    store: Literal["file", "redis"] = "file"
    maintenance: SessionMaintenanceConfig = Factory(SessionMaintenanceConfig)
    #: ``session.reset``: None = not configured (no automatic reset).
    reset: SessionResetConfig | None = None
    #: ``session.resetByType``: ``direct``, ``group``, ``thread``.
    reset_by_type: Mapping[str, SessionResetConfig] = field(default=None, converter=_frozen_mapping)
    #: ``session.resetByChannel``: by lower-cased channel id.
    reset_by_channel: Mapping[str, SessionResetConfig] = field(
        default=None, converter=_frozen_mapping
    )


@frozen
class Config:
    """The whole configuration the gateway runs with."""

    gateway: GatewayConfig = Factory(GatewayConfig)
    models: ModelsConfig = Factory(ModelsConfig)
    agents: AgentsConfig = Factory(AgentsConfig)
    session: SessionConfig = Factory(SessionConfig)
    tools: ToolsConfig = Factory(ToolsConfig)
    memory_search: MemorySearchConfig = Factory(MemorySearchConfig)
    #: Where sessions live (``$OPENCLAW_STATE_DIR``, default ``~/.openclaw``).
    state_dir: Path = Factory(lambda: Path.home() / ".openclaw")
    #: The file this was loaded from, if any.
    source_path: Path | None = None
