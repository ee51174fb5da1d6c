"""Validation of ``memory.search``: the embedding provider ``/v1/embeddings`` uses.

Kept apart from :mod:`openclaw.config.loader`, which calls
:func:`build_memory_search`. Only the keys that pick and reach the embedding
provider are honoured; the memory index's own keys (sources, chunking,
hybrid search, ...) belong to OpenClaw's memory plugin and are ignored with
a warning.
"""

from __future__ import annotations

from typing import Any, Final

from openclaw.config.model import MemorySearchConfig
from openclaw.config.reader import _Reader, _section

_MEMORY: Final = _section(
    ["search"], ["citations", "backend", "qmd", "admission", "dreaming", "active"]
)
_SEARCH: Final = _section(
    ["enabled", "provider", "model", "remote", "outputDimensionality"],
    [
        "fallback", "sources", "extraPaths", "chunking", "sync", "query", "store", "cache",
        "experimental", "local", "multimodal", "inputType", "queryInputType",
        "documentInputType", "sessionMemory",
    ],
)  # fmt: skip
_REMOTE: Final = _section(["baseUrl", "apiKey", "headers"], ["batch"])


def build_memory_search(r: _Reader, value: Any) -> MemorySearchConfig:
    """``memory.search`` (``provider: "auto"`` means ``openai``, as OpenClaw migrates it)."""
    memory = r.section(value, "memory", _MEMORY)
    path = "memory.search"
    search = r.section(memory.get("search"), path, _SEARCH)
    r.boolean(search, "enabled", path, True)  # validated; the endpoint works either way
    provider = r.string(search, "provider", path)
    if provider is not None:
        provider = provider.lower()
        if provider == "auto":
            provider = "openai"
    remote = r.section(search.get("remote"), f"{path}.remote", _REMOTE)
    headers: dict[str, str] = {}
    raw_headers = remote.get("headers")
    if raw_headers is not None:
        if isinstance(raw_headers, dict):
            for name, item in raw_headers.items():
                text = r.string_value(item, f"{path}.remote.headers.{name}")
                if text is not None:
                    headers[str(name)] = text
        else:
            r.expected(
                f"{path}.remote.headers", "an object of header names to strings", raw_headers
            )
    dims = r.optional_integer(search, "outputDimensionality", path)
    return MemorySearchConfig(
        provider=provider,
        model=r.string(search, "model", path),
        output_dimensionality=dims,
        remote_base_url=r.string(remote, "baseUrl", f"{path}.remote"),
        remote_api_key=r.string(remote, "apiKey", f"{path}.remote"),
        remote_headers=headers,
        openai_api_key=r.env("OPENAI_API_KEY"),
    )
