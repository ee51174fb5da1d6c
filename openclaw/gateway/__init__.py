"""The gateway: one port serving the OpenClaw WebSocket protocol and HTTP.

``build_resource`` / ``build_gateway`` are imported lazily so that importing a
submodule (``openclaw.gateway.auth``) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openclaw.gateway.assembly import Gateway, build_gateway, build_resource

__all__ = ["Gateway", "build_gateway", "build_resource"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from openclaw.gateway import assembly

        return getattr(assembly, name)
    raise AttributeError(name)
