"""Every built-in tool by name, with its OpenClaw groups, built from plain settings.

The loop asks :func:`build_tools` for one agent's tools (policy selection by
:mod:`openclaw.agents.tools.policy` happens afterwards, on the names).
Settings are plain values (:class:`ToolSettings`, or
:func:`settings_from_config` for ``tools.exec`` / ``tools.web.fetch``);
runtime dependencies (reactor, thread pool runner, process registry, session
view, approver, secrets) come in :class:`ToolServices`, shared by all agents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from attrs import Factory, field, frozen

from openclaw.agents.tools._common import BlockingRunner, inline_runner
from openclaw.agents.tools._proc import ProcessRegistry
from openclaw.agents.tools.base import Tool
from openclaw.agents.tools.exec_policy import ExecApprover
from openclaw.agents.tools.limits import (
    DEFAULT_EXEC_LIMITS,
    DEFAULT_FILE_LIMITS,
    DEFAULT_USER_AGENT,
    DEFAULT_WEB_FETCH_LIMITS,
    ExecLimits,
    ExecReactor,
    FileLimits,
    WebFetchLimits,
    WebFetchReactor,
)
from openclaw.agents.tools.policy import TOOL_GROUPS, ExecPolicy, resolve_exec_policy
from openclaw.config.model import ExecConfig, WebFetchConfig
from openclaw.netguard import SSRFPolicy

if TYPE_CHECKING:
    from openclaw.agents.tools.sessions import SessionsView

#: The built-in tools this gateway implements, in the order offered to the model.
BUILTIN_TOOLS: tuple[str, ...] = (
    "read",
    "write",
    "edit",
    "apply_patch",
    "exec",
    "process",
    "web_fetch",
    "memory_search",
    "memory_get",
    "sessions_list",
    "sessions_history",
    "session_status",
)


def tool_groups(name: str) -> tuple[str, ...]:
    """The ``group:*`` names a tool belongs to (OpenClaw's tool-policy table)."""
    return tuple(group for group, members in TOOL_GROUPS.items() if name in members)


#: OpenClaw's gateway-host default: ``tools.exec.mode`` unset means ``full``.
GATEWAY_DEFAULT_EXEC_POLICY = ExecPolicy(security="full", ask="off")


class CatalogReactor(ExecReactor, WebFetchReactor):
    """Everything the built-in tools need from the reactor (typing only)."""


@frozen
class ToolSettings:
    """Plain per-agent settings for the built-in tools."""

    exec_policy: ExecPolicy = GATEWAY_DEFAULT_EXEC_POLICY
    exec_limits: ExecLimits = DEFAULT_EXEC_LIMITS
    exec_path_prepend: tuple[str, ...] = ()
    #: Extra gateway environment variable names passed to commands (never secrets).
    exec_env_passthrough: tuple[str, ...] = ()
    file_limits: FileLimits = DEFAULT_FILE_LIMITS
    apply_patch_enabled: bool = True
    web_fetch_enabled: bool = True
    web_fetch_limits: WebFetchLimits = DEFAULT_WEB_FETCH_LIMITS
    ssrf_policy: SSRFPolicy = Factory(SSRFPolicy)
    user_agent: str = DEFAULT_USER_AGENT
    #: When False, ``process`` is not built and ``exec`` always runs in the foreground.
    background_enabled: bool = True
    #: ``agents.defaults.userTimezone``: the zone ``session_status`` tells the time in.
    user_timezone: str | None = None


def _frozen_strs(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v for v in values if v)


@frozen
class ToolServices:
    """Runtime dependencies shared by every agent's tools."""

    reactor: CatalogReactor
    registry: ProcessRegistry
    #: File I/O off the reactor thread: ``thread_runner(reactor, pool)``.
    run_blocking: BlockingRunner = inline_runner
    sessions: SessionsView | None = None
    #: SessionsView calls run here; the store is reactor-thread only, so inline.
    sessions_runner: BlockingRunner = inline_runner
    approver: ExecApprover | None = None
    #: Values never passed to a command: gateway token/password, provider API keys.
    secrets: frozenset[str] = field(factory=frozenset, converter=_frozen_strs)
    #: The environment commands inherit (allow-listed); None = os.environ.
    base_env: Mapping[str, str] | None = None


def settings_from_config(
    exec_config: ExecConfig, web_fetch: WebFetchConfig, *, user_timezone: str | None = None
) -> ToolSettings:
    """``tools.exec`` and ``tools.web.fetch`` as :class:`ToolSettings`."""
    ssrf = web_fetch.ssrf_policy
    return ToolSettings(
        user_timezone=user_timezone,
        exec_policy=resolve_exec_policy(exec_config),
        exec_limits=ExecLimits(
            timeout_seconds=exec_config.timeout_seconds, yield_ms=exec_config.background_ms
        ),
        exec_path_prepend=exec_config.path_prepend,
        apply_patch_enabled=exec_config.apply_patch.enabled,
        web_fetch_enabled=web_fetch.enabled,
        web_fetch_limits=WebFetchLimits(
            max_chars=web_fetch.max_chars,
            max_chars_cap=web_fetch.max_chars_cap,
            max_response_bytes=web_fetch.max_response_bytes,
            timeout_seconds=web_fetch.timeout_seconds,
            max_redirects=web_fetch.max_redirects,
        ),
        ssrf_policy=SSRFPolicy(
            allow_private_network=ssrf.dangerously_allow_private_network,
            allowed_hostnames=ssrf.allowed_hostnames,
        ),
        user_agent=web_fetch.user_agent or DEFAULT_USER_AGENT,
    )


def build_tools(settings: ToolSettings, services: ToolServices) -> dict[str, Tool]:
    """One agent's built-in tools by name (disabled or unwired ones left out).

    The implementations are imported here, at an agent's first run, not when
    the gateway starts: an idle gateway does not hold them (issue 16).
    """
    from openclaw.agents.tools.apply_patch import ApplyPatchTool
    from openclaw.agents.tools.exec import ExecTool
    from openclaw.agents.tools.files import EditTool, ReadTool, WriteTool
    from openclaw.agents.tools.memory import MemoryGetTool, MemorySearchTool
    from openclaw.agents.tools.process import ProcessTool
    from openclaw.agents.tools.sessions import (
        SessionsHistoryTool,
        SessionsListTool,
        SessionStatusTool,
    )
    from openclaw.agents.tools.web_fetch import WebFetchTool

    blocking = services.run_blocking
    limits = settings.file_limits
    # Unless any command runs unasked, .git is off limits to the file tools:
    # git runs what its config and hooks say (see _paths.refuse_git_dir).
    protect_git = not settings.exec_policy.runs_anything
    tools: dict[str, Tool] = {
        "read": ReadTool(blocking, limits),
        "write": WriteTool(blocking, limits, protect_git=protect_git),
        "edit": EditTool(blocking, limits, protect_git=protect_git),
    }
    if settings.apply_patch_enabled:
        tools["apply_patch"] = ApplyPatchTool(blocking, limits, protect_git=protect_git)
    passthrough = (*ExecTool.default_passthrough(), *settings.exec_env_passthrough)
    tools["exec"] = ExecTool(
        services.reactor,
        services.registry,
        policy=settings.exec_policy,
        approver=services.approver,
        limits=settings.exec_limits,
        base_env=services.base_env,
        secrets=services.secrets,
        env_passthrough=passthrough,
        path_prepend=settings.exec_path_prepend,
        background_enabled=settings.background_enabled,
    )
    if settings.background_enabled:
        tools["process"] = ProcessTool(services.reactor, services.registry)
    if settings.web_fetch_enabled:
        tools["web_fetch"] = WebFetchTool(
            services.reactor,
            blocking,
            ssrf_policy=settings.ssrf_policy,
            limits=settings.web_fetch_limits,
            user_agent=settings.user_agent,
        )
    tools["memory_search"] = MemorySearchTool(blocking)
    tools["memory_get"] = MemoryGetTool(blocking)
    if services.sessions is not None:
        view, runner = services.sessions, services.sessions_runner
        tools["sessions_list"] = SessionsListTool(view, runner)
        tools["sessions_history"] = SessionsHistoryTool(view, runner)
        tools["session_status"] = SessionStatusTool(
            view, runner, clock=services.reactor, timezone=settings.user_timezone
        )
    return {name: tools[name] for name in BUILTIN_TOOLS if name in tools}
