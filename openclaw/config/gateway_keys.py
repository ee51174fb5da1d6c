"""``gateway.*``: port and bind, auth and its rate limit, HTTP limits and
endpoints, images, CORS, the Control UI and WebSocket settings."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Final, Literal

from openclaw.config.model import (
    AuthConfig,
    AuthMode,
    ChatCompletionsConfig,
    ControlUiConfig,
    CorsConfig,
    GatewayConfig,
    HttpConfig,
    ImagesConfig,
    MetricsConfig,
    RateLimitConfig,
    RedisConfig,
    ResponsesConfig,
    ResponsesFilesConfig,
    WebSocketConfig,
)
from openclaw.config.reader import _Reader, _section

#: The placeholder token from OpenClaw's docs; a config still holding it has no token.
SAMPLE_TOKEN: Final = "change-me-to-a-long-random-token"

_AUTH_MODES: Final[Mapping[str, AuthMode]] = {
    "none": "none",
    "token": "token",
    "password": "password",
}
_BIND_KEYWORDS: Final = frozenset({"loopback", "lan", "custom"})

_ORIGIN: Final = re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s?#]+$")


_GATEWAY = _section(
    [
        "port", "bind", "customBindHost", "auth", "http", "ws", "controlUi", "trustedProxies",
        "shutdownGraceSeconds", "maxConnections", "workers",
        "maxJsonDepth", "maxQueuedRuns", "drainSeconds", "redis",
    ],

    [
        "mode", "remote", "tools", "tailscale", "reload", "nodes", "allowRealIpFallback",
        "channelHealthCheckMinutes", "push", "discovery", "trustedProxy",
    ],
    {
        "tls": "not read by openclaw-twisted: serve TLS with --listen ssl:... (see "
        "docs/deployment.md, TLS without a proxy) or from a reverse proxy; ignored",

    },
)  # fmt: skip
_AUTH = _section(["mode", "token", "password", "rateLimit"], ["allowTailscale", "trustedProxy"])
_RATE_LIMIT = _section(["maxAttempts", "windowMs", "lockoutMs", "exemptLoopback"])
_HTTP = _section(
    [
        "endpoints", "cors", "maxBodyBytes", "bodyTimeoutSeconds", "maxHeaderBytes", "maxHeaders",
        "headersTimeoutSeconds", "keepAliveTimeoutSeconds", "maxConnectionsPerAddress",
        "reservedConnections", "lightAddressConnections", "unauthenticatedIdleTimeoutSeconds",
    ],
    ["securityHeaders"],
)  # fmt: skip
_ENDPOINTS = _section(["chatCompletions", "responses", "metrics"])
_METRICS = _section(["enabled", "auth"])

_RESPONSES = _section(
    ["enabled", "sseKeepAliveSeconds", "maxUrlParts", "files", "images"],
    hints={"maxBodyBytes": "not implemented per endpoint; use gateway.http.maxBodyBytes; ignored"},
)
_FILES = _section(
    ["allowedMimes", "maxBytes", "maxChars"],
    ["maxRedirects", "timeoutMs", "urlAllowlist"],
    {
        "allowUrl": "URL-sourced input_file parts are not supported by openclaw-twisted; ignored",
        "pdf": "PDF input is not supported by openclaw-twisted; ignored",
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
        max_json_depth=r.integer(
            g, "maxJsonDepth", "gateway", d.max_json_depth, minimum=8, maximum=512
        ),
        max_queued_runs=r.integer(g, "maxQueuedRuns", "gateway", d.max_queued_runs, minimum=0),
        workers=_read_workers(r, g),
        drain_seconds=r.number(g, "drainSeconds", "gateway", d.drain_seconds, allow_zero=True),
        redis=_read_redis(r, g),
    )


_REDIS = _section(["url", "keyPrefix", "lockTtlSeconds"])
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+unix://")


def _read_redis(r: _Reader, g: Mapping[str, Any]) -> RedisConfig:
    """``gateway.redis``: where ``session.store: "redis"`` keeps the shared state."""
    d = RedisConfig()
    section = r.section(g.get("redis"), "gateway.redis", _REDIS)
    url = r.string(section, "url", "gateway.redis")
    if url is not None and not url.lower().startswith(_REDIS_SCHEMES):
        r.expected("gateway.redis.url", "a redis://, rediss:// or unix:// URL", "(not shown)")
        url = None
    return RedisConfig(
        url=url,
        key_prefix=r.string(section, "keyPrefix", "gateway.redis") or d.key_prefix,
        lock_ttl_seconds=r.number(section, "lockTtlSeconds", "gateway.redis", d.lock_ttl_seconds),
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


def _build_metrics(r: _Reader, value: Any) -> MetricsConfig:
    path = "gateway.http.endpoints.metrics"
    m = r.section(value, path, _METRICS)
    auth = r.choice(m, "auth", path, {"gateway": "gateway", "none": "none"})
    return MetricsConfig(
        enabled=r.boolean(m, "enabled", path, False),
        auth=auth if auth is not None else "gateway",
    )


def _build_http(r: _Reader, value: Any) -> HttpConfig:

    d = HttpConfig()
    h = r.section(value, "gateway.http", _HTTP)
    endpoints = r.section(h.get("endpoints"), "gateway.http.endpoints", _ENDPOINTS)
    cors = r.section(h.get("cors"), "gateway.http.cors", _CORS)
    return HttpConfig(
        chat_completions=_build_chat(r, endpoints.get("chatCompletions")),
        responses=_build_responses(r, endpoints.get("responses")),
        metrics=_build_metrics(r, endpoints.get("metrics")),
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
        max_connections_per_address=r.integer(
            h, "maxConnectionsPerAddress", "gateway.http", d.max_connections_per_address, minimum=0
        ),
        reserved_connections=r.integer(
            h, "reservedConnections", "gateway.http", d.reserved_connections, minimum=0
        ),
        light_address_connections=r.integer(
            h, "lightAddressConnections", "gateway.http", d.light_address_connections
        ),
        unauthenticated_idle_timeout_seconds=r.number(
            h,
            "unauthenticatedIdleTimeoutSeconds",
            "gateway.http",
            d.unauthenticated_idle_timeout_seconds,
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


def _build_responses(r: _Reader, value: Any) -> ResponsesConfig:
    path = "gateway.http.endpoints.responses"
    d = ResponsesConfig()
    c = r.section(value, path, _RESPONSES)
    return ResponsesConfig(
        enabled=r.boolean(c, "enabled", path, d.enabled),
        sse_keep_alive_seconds=r.number(
            c, "sseKeepAliveSeconds", path, d.sse_keep_alive_seconds, allow_zero=True
        ),
        max_url_parts=r.integer(c, "maxUrlParts", path, d.max_url_parts, minimum=0),
        files=_build_files(r, c.get("files"), f"{path}.files"),
        images=_build_images(r, c.get("images"), f"{path}.images", d.images),
    )


def _build_files(r: _Reader, value: Any, path: str) -> ResponsesFilesConfig:
    d = ResponsesFilesConfig()
    f = r.section(value, path, _FILES)
    mimes = r.string_list(f, "allowedMimes", path) if "allowedMimes" in f else d.allowed_mimes
    return ResponsesFilesConfig(
        allowed_mimes=tuple(m.lower() for m in mimes),
        max_bytes=r.integer(f, "maxBytes", path, d.max_bytes),
        max_chars=r.integer(f, "maxChars", path, d.max_chars),
    )


def _build_images(
    r: _Reader,
    value: Any,
    path: str = "gateway.http.endpoints.chatCompletions.images",
    d: ImagesConfig | None = None,
) -> ImagesConfig:
    d = d or ImagesConfig()
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
