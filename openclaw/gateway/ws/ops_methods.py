"""Operator methods of the WebSocket protocol: ``gateway.reload``.

``openclaw gateway reload`` calls it; it does what SIGHUP does (re-read the
config file, apply it to new work, refuse an invalid file and keep the
running config) and answers with what changed, without any value (values may
be secrets).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from openclaw.config.live import ReloadResult
from openclaw.gateway.ws.frames import INVALID_REQUEST, UNAVAILABLE, RequestError


class _Services(Protocol):
    @property
    def reload(self) -> Callable[[], ReloadResult] | None: ...


class _Context(Protocol):
    """What the method needs of its call context."""

    @property
    def services(self) -> _Services: ...


def gateway_reload(ctx: _Context, params: Mapping[str, Any]) -> dict[str, Any]:
    """Reload the config (scope ``operator.admin``)."""
    reload = ctx.services.reload
    if reload is None:
        raise RequestError(UNAVAILABLE, "this gateway cannot reload its config (embedded)")
    result = reload()
    if not result.ok:
        raise RequestError(
            INVALID_REQUEST,
            "config reload refused; the running config is kept: " + "; ".join(result.problems),
            details={"problems": list(result.problems), "path": result.path},
        )
    return {
        "ok": True,
        "path": result.path,
        "changed": list(result.changed),
        "restartNeeded": list(result.restart_needed),
        "warnings": list(result.warnings),
    }


__all__ = ["gateway_reload"]
