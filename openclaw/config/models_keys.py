"""``models.*``: the upstream providers (base URL, API, key, headers,
timeouts) and the models each one lists."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from openclaw.config.model import ModelEntry, ModelsConfig, ProviderApi, ProviderConfig
from openclaw.config.reader import _Reader, _section
from openclaw.core.redaction import url_without_password

_PROVIDER_APIS: Final[Mapping[str, ProviderApi]] = {
    "openai-completions": "openai-completions",
    "anthropic-messages": "anthropic-messages",
    "demo": "demo",
}
_COMPAT_HINT: Final = ' (use "openai-completions" with an OpenAI-compatible baseUrl)'
_API_HINTS: Final = {"openai-responses": _COMPAT_HINT, "ollama": _COMPAT_HINT}

_MODELS = _section(["providers"], ["mode", "catalogRefresh", "bedrockDiscovery", "pricing"])
_PROVIDER = _section(
    ["baseUrl", "apiKey", "api", "headers", "timeoutSeconds", "models", "delayMs"],
    ["auth", "authHeader", "injectNumCtxForOpenAICompat", "compat", "request"],
)
_MODEL_ENTRY = _section(
    ["id", "name", "contextWindow", "maxTokens", "compat"],
    ["api", "reasoning", "input", "cost", "headers", "contextTokens", "params"],
)
#: A model's ``compat`` block: the one capability this gateway's requests vary by.
_MODEL_COMPAT = _section(
    ["maxTokensField"],
    [
        "supportsStore", "supportsPromptCacheKey", "supportsDeveloperRole",
        "supportsReasoningEffort", "supportsTemperature", "supportsUsageInStreaming",
        "supportsInstructions", "supportsTools", "supportsStrictMode", "requiresStringContent",
        "strictMessageKeys", "visibleReasoningDetailTypes", "supportedReasoningEfforts",
        "reasoningEffortMap", "thinkingFormat", "requiresToolResultName",
        "requiresAssistantAfterToolResult", "requiresThinkingAsText",
        "requiresReasoningContentOnAssistantMessages", "toolSchemaProfile",
        "unsupportedToolSchemaKeywords", "toolCallArgumentsEncoding",
        "requiresOpenAiAnthropicToolPayload",
    ],
)  # fmt: skip
_MAX_TOKENS_FIELDS: Final = {
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_completion_tokens",
}


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
            r.expected(
                f"{path}.baseUrl", "an http:// or https:// URL", url_without_password(base_url)
            )
        elif parts.username is not None or parts.password is not None:
            r.warn(
                f"{path}.baseUrl",
                "user:password@ in the URL is not sent upstream; put credentials in apiKey "
                "or headers (e.g. Authorization)",
            )
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
                max_tokens_field=_max_tokens_field(r, e.get("compat"), f"{item_path}.compat"),
            )
        )
    return tuple(entries)


def _max_tokens_field(
    r: _Reader, value: Any, path: str
) -> Literal["max_tokens", "max_completion_tokens"] | None:
    if value is None:
        return None
    compat = r.section(value, path, _MODEL_COMPAT)
    field: Literal["max_tokens", "max_completion_tokens"] | None = r.choice(
        compat, "maxTokensField", path, _MAX_TOKENS_FIELDS
    )
    return field
