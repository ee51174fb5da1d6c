"""Validation of the agent loop's keys: ``tools.*``, per-agent ``tools``,
``agents.defaults.compaction`` and model fallbacks.

Kept apart from :mod:`openclaw.config.loader` (which calls these builders) so
that module stays about the gateway's own keys. The builders use the loader's
reader: wrong values are collected as problems with their key path, keys
OpenClaw has but this project does not honour are warned about and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from openclaw.config.model import (
    AgentToolsConfig,
    ApplyPatchConfig,
    CompactionConfig,
    CompactionMode,
    ExecAsk,
    ExecConfig,
    ExecMode,
    ExecSecurity,
    IdentifierPolicy,
    LoopDetectionConfig,
    MemoryFlushConfig,
    ModelRetryConfig,
    SsrfPolicyConfig,
    ToolPolicyConfig,
    ToolProfile,
    ToolsConfig,
    WebFetchConfig,
)
from openclaw.config.reader import _Reader, _section

_PROFILES: Final[Mapping[str, ToolProfile]] = {
    "minimal": "minimal",
    "coding": "coding",
    "messaging": "messaging",
    "full": "full",
}
_EXEC_MODES: Final[Mapping[str, ExecMode]] = {
    "deny": "deny",
    "allowlist": "allowlist",
    "ask": "ask",
    "auto": "auto",
    "full": "full",
}
_SECURITY: Final[Mapping[str, ExecSecurity]] = {
    "deny": "deny",
    "allowlist": "allowlist",
    "full": "full",
}
_ASK: Final[Mapping[str, ExecAsk]] = {"off": "off", "on-miss": "on-miss", "always": "always"}
_COMPACTION_MODES: Final[Mapping[str, CompactionMode]] = {
    "default": "default",
    "safeguard": "safeguard",
}
_IDENTIFIER_POLICIES: Final[Mapping[str, IdentifierPolicy]] = {"strict": "strict", "off": "off"}
#: The ``group:*`` names OpenClaw defines (kept here: config sits below the agents layer).
TOOL_GROUP_NAMES: Final = frozenset(
    {
        "group:runtime", "group:fs", "group:sessions", "group:memory", "group:web", "group:ui",
        "group:automation", "group:messaging", "group:nodes", "group:agents", "group:media",
        "group:openclaw", "group:plugins",
    }
)  # fmt: skip

_POLICY_KEYS: Final = ("profile", "allow", "alsoAllow", "deny")
#: OpenClaw policy layers that only narrow the tools (per provider or model, per
#: sender). Not implemented, so refused rather than ignored: ignoring one would
#: give the model more tools than the config's author allowed.
_NARROWING_KEYS: Final = ("byProvider", "toolsBySender")
_TOOLS = _section(
    [*_POLICY_KEYS, *_NARROWING_KEYS, "exec", "web", "loopDetection"],
    [
        "elevated", "sandbox", "codeMode", "media", "updatePlan",
        "github", "agentToAgent", "sessions", "sessions_spawn", "subagents", "toolSearch", "fs",
        "message", "links", "experimental", "audio", "browser", "canvas", "automations",
    ],
)  # fmt: skip
_AGENT_TOOLS = _section(
    [*_POLICY_KEYS, *_NARROWING_KEYS, "exec", "loopDetection"],
    ["elevated", "sandbox", "codeMode", "fs", "subagents"],
)
_EXEC = _section(
    [
        "mode", "security", "ask", "askFallback", "allowlist", "safeBins", "timeoutSeconds",
        "timeoutSec", "backgroundMs", "cleanupMs", "notifyOnExit", "pathPrepend",
        "approvalTimeoutSeconds", "applyPatch",
    ],
    [
        "host", "node", "reviewer", "strictInlineEval", "commandHighlighting", "safeBinTrustedDirs",
        "safeBinProfiles", "approvalRunningNoticeMs", "notifyOnExitEmptySuccess",
        "grantExpiryDays", "autoAllowSkills",
    ],
)  # fmt: skip
_APPLY_PATCH = _section(["enabled", "workspaceOnly", "allowModels"])
_WEB = _section(["fetch"], ["search", "x"])
_FETCH = _section(
    [
        "enabled", "maxChars", "maxCharsCap", "maxResponseBytes", "timeoutSeconds",
        "maxRedirects", "readability", "userAgent", "ssrfPolicy",
    ],
    ["provider", "cacheTtlMinutes", "useTrustedEnvProxy", "headers", "firecrawl"],
)  # fmt: skip
_SSRF = _section(
    [
        "dangerouslyAllowPrivateNetwork", "allowedHostnames", "blockedHostnames",
        "allowRfc2544BenchmarkRange", "allowIpv6UniqueLocalRange",
    ]
)  # fmt: skip
_LOOP = _section(
    [
        "enabled", "historySize", "warningThreshold", "criticalThreshold",
        "globalCircuitBreakerThreshold", "detectors",
    ]
)  # fmt: skip
_DETECTORS = _section(["genericRepeat", "knownPollNoProgress", "pingPong"])
_COMPACTION = _section(
    [
        "enabled", "mode", "reserveTokens", "keepRecentTokens", "model", "timeoutSeconds",
        "identifierPolicy", "memoryFlush",
    ],
    [
        "provider", "thinkingLevel", "recentTurnsPreserve", "qualityGuard", "midTurnPrecheck",
        "postIndexSync", "postCompactionSections", "maxActiveTranscriptBytes", "notifyUser",
        "reserveTokensFloor",
    ],
)  # fmt: skip
_MEMORY_FLUSH = _section(["enabled", "model", "softThresholdTokens", "forceFlushTranscriptBytes"])


def _is_model_ref(ref: str) -> bool:
    """``provider/model`` with both parts non-empty (the loader's rule)."""
    provider, sep, model = ref.strip().partition("/")
    return bool(sep and provider.strip() and model.strip())


def build_tools(r: _Reader, value: Any) -> ToolsConfig:
    """``tools``: the global policy, exec, web fetch and loop detection."""
    t = r.section(value, "tools", _TOOLS)
    return ToolsConfig(
        policy=read_policy(r, t, "tools"),
        exec=build_exec(r, t.get("exec"), "tools.exec", ExecConfig()),
        web_fetch=_build_web(r, t.get("web")),
        loop_detection=build_loop_detection(
            r, t.get("loopDetection"), "tools.loopDetection", LoopDetectionConfig()
        ),
    )


def build_agent_tools(
    r: _Reader, value: Any, path: str, base: ToolsConfig
) -> AgentToolsConfig | None:
    """``agents.list[].tools``: its policy layer; exec and loop detection merged
    over the global settings. None when the entry has no ``tools``."""
    if value is None:
        return None
    t = r.section(value, path, _AGENT_TOOLS)
    return AgentToolsConfig(
        policy=read_policy(r, t, path),
        exec=build_exec(r, t.get("exec"), f"{path}.exec", base.exec),
        loop_detection=build_loop_detection(
            r, t.get("loopDetection"), f"{path}.loopDetection", base.loop_detection
        ),
    )


def read_policy(r: _Reader, t: Mapping[str, Any], path: str) -> ToolPolicyConfig:
    """profile / allow / alsoAllow / deny of one scope (names lower-cased)."""
    for key in _NARROWING_KEYS:
        if t.get(key):
            r.problem(
                f"{path}.{key}",
                "narrows the tools in OpenClaw but is not implemented by openclaw-twisted; "
                "ignoring it would give the model more tools than this config allows, so "
                "express the restriction with allow/deny (globally or in the agent's tools) "
                "and remove this key",
            )
    profile: ToolProfile | None = r.choice(t, "profile", path, _PROFILES)
    if t.get("allow") is not None and t.get("alsoAllow") is not None:
        r.problem(
            f"{path}.alsoAllow",
            "cannot be set together with allow in the same scope; merge it into allow, "
            "or use profile + alsoAllow",
        )
    # As OpenClaw: an empty allow-list restricts nothing.
    allow = _tool_names(r, t, "allow", path) or None
    return ToolPolicyConfig(
        profile=profile,
        allow=allow,
        also_allow=_tool_names(r, t, "alsoAllow", path),
        deny=_tool_names(r, t, "deny", path),
    )


def _tool_names(r: _Reader, t: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    names: list[str] = []
    for index, raw in r.string_items(t, key, path):
        name = raw.lower()
        if name.startswith("group:") and name not in TOOL_GROUP_NAMES:
            r.expected(
                f"{path}.{key}[{index}]",
                "a tool name, a * pattern or one of " + ", ".join(sorted(TOOL_GROUP_NAMES)),
                raw,
            )
            continue
        names.append(name)
    return tuple(names)


def build_exec(r: _Reader, value: Any, path: str, base: ExecConfig) -> ExecConfig:
    """``tools.exec`` (or an agent's, applied over ``base`` key by key)."""
    if value is None:
        return base
    e = r.section(value, path, _EXEC)
    mode: ExecMode | None = r.choice(e, "mode", path, _EXEC_MODES)
    security: ExecSecurity | None = r.choice(e, "security", path, _SECURITY)
    ask: ExecAsk | None = r.choice(e, "ask", path, _ASK)
    fallback: ExecSecurity | None = r.choice(e, "askFallback", path, _SECURITY)
    if e.get("mode") is not None and (e.get("security") is not None or e.get("ask") is not None):
        r.problem(
            path,
            "set either mode or the legacy security/ask pair, not both "
            '(for example security "full" + ask "off" is mode "full")',
        )
    timeout_key = "timeoutSeconds" if "timeoutSeconds" in e else "timeoutSec"
    changes: dict[str, Any] = {
        "timeout_seconds": r.number(e, timeout_key, path, base.timeout_seconds, allow_zero=True),
        "background_ms": r.integer(e, "backgroundMs", path, base.background_ms, minimum=0),
        "cleanup_ms": r.integer(e, "cleanupMs", path, base.cleanup_ms, minimum=0),
        "notify_on_exit": r.boolean(e, "notifyOnExit", path, base.notify_on_exit),
        "approval_timeout_seconds": r.number(
            e, "approvalTimeoutSeconds", path, base.approval_timeout_seconds
        ),
    }
    if mode is not None:
        changes.update(mode=mode, security=None, ask=None)
    elif security is not None or ask is not None:
        changes.update(mode=None, security=security or base.security, ask=ask or base.ask)
    if fallback is not None:
        changes["ask_fallback"] = fallback
    for key, name in (("allowlist", "allowlist"), ("pathPrepend", "path_prepend")):
        if key in e:
            changes[name] = r.string_list(e, key, path)
    if "safeBins" in e:
        changes["safe_bins"] = r.string_list(e, "safeBins", path)
    if e.get("applyPatch") is not None:
        changes["apply_patch"] = _build_apply_patch(r, e["applyPatch"], f"{path}.applyPatch", base)
    return attrs.evolve(base, **changes)


def _build_apply_patch(r: _Reader, value: Any, path: str, base: ExecConfig) -> ApplyPatchConfig:
    a = r.section(value, path, _APPLY_PATCH)
    d = base.apply_patch
    return ApplyPatchConfig(
        enabled=r.boolean(a, "enabled", path, d.enabled),
        workspace_only=r.boolean(a, "workspaceOnly", path, d.workspace_only),
        allow_models=r.string_list(a, "allowModels", path)
        if "allowModels" in a
        else d.allow_models,
    )


def _build_web(r: _Reader, value: Any) -> WebFetchConfig:
    w = r.section(value, "tools.web", _WEB)
    path = "tools.web.fetch"
    d = WebFetchConfig()
    f = r.section(w.get("fetch"), path, _FETCH)
    cap = r.integer(f, "maxCharsCap", path, d.max_chars_cap)
    max_chars = min(r.integer(f, "maxChars", path, d.max_chars), cap)
    response_bytes = r.integer(f, "maxResponseBytes", path, d.max_response_bytes)
    s = r.section(f.get("ssrfPolicy"), f"{path}.ssrfPolicy", _SSRF)
    sp = f"{path}.ssrfPolicy"
    return WebFetchConfig(
        enabled=r.boolean(f, "enabled", path, d.enabled),
        max_chars=max_chars,
        max_chars_cap=cap,
        max_response_bytes=max(32_000, min(response_bytes, 10_000_000)),
        timeout_seconds=r.number(f, "timeoutSeconds", path, d.timeout_seconds),
        max_redirects=r.integer(f, "maxRedirects", path, d.max_redirects, minimum=0),
        readability=r.boolean(f, "readability", path, d.readability),
        user_agent=r.string(f, "userAgent", path),
        ssrf_policy=SsrfPolicyConfig(
            dangerously_allow_private_network=r.boolean(
                s, "dangerouslyAllowPrivateNetwork", sp, False
            ),
            allowed_hostnames=tuple(h.lower() for h in r.string_list(s, "allowedHostnames", sp)),
            blocked_hostnames=tuple(h.lower() for h in r.string_list(s, "blockedHostnames", sp)),
            allow_rfc2544_benchmark_range=r.boolean(s, "allowRfc2544BenchmarkRange", sp, False),
            allow_ipv6_unique_local_range=r.boolean(s, "allowIpv6UniqueLocalRange", sp, False),
        ),
    )


def build_loop_detection(
    r: _Reader, value: Any, path: str, base: LoopDetectionConfig
) -> LoopDetectionConfig:
    """``tools.loopDetection`` (or an agent's, over ``base``)."""
    if value is None:
        return base
    if isinstance(value, bool):  # a bare switch is accepted too
        return attrs.evolve(base, enabled=value)
    d = r.section(value, path, _LOOP)
    det = r.section(d.get("detectors"), f"{path}.detectors", _DETECTORS)
    dp = f"{path}.detectors"
    enabled = d.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        r.expected(f"{path}.enabled", "true or false", enabled)
        enabled = None
    config = LoopDetectionConfig(
        enabled=base.enabled if enabled is None else enabled,
        history_size=r.integer(d, "historySize", path, base.history_size),
        warning_threshold=r.integer(d, "warningThreshold", path, base.warning_threshold),
        critical_threshold=r.integer(d, "criticalThreshold", path, base.critical_threshold),
        global_circuit_breaker_threshold=r.integer(
            d, "globalCircuitBreakerThreshold", path, base.global_circuit_breaker_threshold
        ),
        generic_repeat=r.boolean(det, "genericRepeat", dp, base.generic_repeat),
        known_poll_no_progress=r.boolean(
            det, "knownPollNoProgress", dp, base.known_poll_no_progress
        ),
        ping_pong=r.boolean(det, "pingPong", dp, base.ping_pong),
    )
    if config.critical_threshold <= config.warning_threshold:
        r.problem(
            f"{path}.criticalThreshold",
            f"must be greater than warningThreshold ({config.warning_threshold})",
        )
    return config


def build_compaction(r: _Reader, value: Any) -> CompactionConfig:
    """``agents.defaults.compaction``."""
    path = "agents.defaults.compaction"
    d = CompactionConfig()
    c = r.section(value, path, _COMPACTION)
    mode: CompactionMode | None = r.choice(c, "mode", path, _COMPACTION_MODES)
    policy: IdentifierPolicy | None = r.choice(c, "identifierPolicy", path, _IDENTIFIER_POLICIES)
    model = r.string(c, "model", path)
    if model is not None and not _is_model_ref(model):
        r.expected(f"{path}.model", "a model reference like provider/model", model)
        model = None
    return CompactionConfig(
        memory_flush=_build_memory_flush(r, c.get("memoryFlush"), f"{path}.memoryFlush"),
        enabled=r.boolean(c, "enabled", path, d.enabled),
        mode=mode or d.mode,
        reserve_tokens=r.integer(c, "reserveTokens", path, d.reserve_tokens, minimum=0),
        keep_recent_tokens=r.integer(c, "keepRecentTokens", path, d.keep_recent_tokens, minimum=0),
        model=model,
        timeout_seconds=r.number(c, "timeoutSeconds", path, d.timeout_seconds),
        identifier_policy=policy or d.identifier_policy,
    )


_MODEL_RETRY = _section(["maxRetries", "maxRetryDelayMs"])


def build_model_retry(r: _Reader, value: Any) -> ModelRetryConfig:
    """``agents.defaults.modelRetry``: the same-model retry budget."""
    path = "agents.defaults.modelRetry"
    d = ModelRetryConfig()
    c = r.section(value, path, _MODEL_RETRY)
    return ModelRetryConfig(
        max_retries=r.optional_integer(c, "maxRetries", path, minimum=0),
        max_retry_delay_ms=r.integer(c, "maxRetryDelayMs", path, d.max_retry_delay_ms, minimum=0),
    )


def _build_memory_flush(r: _Reader, value: Any, path: str) -> MemoryFlushConfig:
    """``agents.defaults.compaction.memoryFlush``."""
    d = MemoryFlushConfig()
    f = r.section(value, path, _MEMORY_FLUSH)
    model = r.string(f, "model", path)
    if model is not None and not _is_model_ref(model):
        r.expected(f"{path}.model", "an exact model reference like provider/model", model)
        model = None
    force = r.byte_size(f, "forceFlushTranscriptBytes", path)
    return MemoryFlushConfig(
        enabled=r.boolean(f, "enabled", path, d.enabled),
        model=model,
        soft_threshold_tokens=r.integer(
            f, "softThresholdTokens", path, d.soft_threshold_tokens, minimum=0
        ),
        force_flush_transcript_bytes=d.force_flush_transcript_bytes if force is None else force,
    )


def read_model_fallbacks(r: _Reader, value: Any, path: str) -> tuple[str, ...] | None:
    """``model.fallbacks`` of a model object; None when absent (or ``model`` is a string)."""
    if not isinstance(value, dict) or value.get("fallbacks") is None:
        return None
    refs: list[str] = []
    for index, ref in r.string_items(value, "fallbacks", path):
        if not _is_model_ref(ref):
            r.expected(f"{path}.fallbacks[{index}]", "a model reference like provider/model", ref)
            continue
        refs.append(ref)
    return tuple(dict.fromkeys(refs))


def read_timezone(r: _Reader, data: Mapping[str, Any], path: str) -> str | None:
    """``userTimezone``: an IANA zone name this Python knows."""
    name = r.string(data, "userTimezone", path)
    if name is None:
        return None
    # Imported here: only a config naming a zone needs it (0.2 MB, issue 16).
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        r.expected(f"{path}.userTimezone", 'an IANA time zone like "Europe/Berlin"', name)
        return None
    return name


__all__ = [
    "TOOL_GROUP_NAMES",
    "build_agent_tools",
    "build_compaction",
    "build_exec",
    "build_loop_detection",
    "build_model_retry",
    "build_tools",
    "read_model_fallbacks",
    "read_policy",
    "read_timezone",
]
