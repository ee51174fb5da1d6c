"""The built-in tools' plain limits and reactor needs, apart from the tools.

:mod:`openclaw.agents.tools.catalog` builds its settings from these at start;
the tool implementations (and what they import) load only when an agent's
tools are first built, at its first run (issue 16: an idle gateway does not
hold them).
"""

from __future__ import annotations

from attrs import frozen
from twisted.internet.interfaces import (
    IReactorPluggableNameResolver,
    IReactorProcess,
    IReactorTCP,
    IReactorTime,
)


@frozen
class ExecLimits:
    """``tools.exec`` limits (OpenClaw's defaults)."""

    timeout_seconds: float = 1800.0
    yield_ms: int = 10_000
    #: Retained output per command (head + tail), in characters.
    max_output_chars: int = 200_000
    #: Output returned to the model in one result (head + tail), in characters.
    result_max_chars: int = 30_000
    kill_grace_seconds: float = 2.0
    #: Whether ``workdir`` must stay inside the workspace.
    workdir_in_workspace: bool = True


DEFAULT_EXEC_LIMITS = ExecLimits()


class ExecReactor(IReactorProcess, IReactorTime):
    """What exec needs from the reactor (typing only)."""


@frozen
class FileLimits:
    """Caps shared by the file tools."""

    #: ``read`` returns at most this many lines per call ...
    read_max_lines: int = 2000
    #: ... and at most this many bytes of text.
    read_max_bytes: int = 50 * 1024
    #: ``write``/``edit``/``apply_patch`` refuse content larger than this.
    write_max_bytes: int = 10 * 1024 * 1024
    #: ``edit`` refuses to load files larger than this.
    edit_max_bytes: int = 10 * 1024 * 1024


DEFAULT_FILE_LIMITS = FileLimits()

#: The User-Agent web_fetch sends unless ``tools.web.fetch.userAgent`` says otherwise.
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)


@frozen
class WebFetchLimits:
    """``tools.web.fetch`` limits (OpenClaw's defaults)."""

    max_chars: int = 20_000
    max_chars_cap: int = 20_000
    max_response_bytes: int = 750_000
    timeout_seconds: float = 30.0
    max_redirects: int = 3


DEFAULT_WEB_FETCH_LIMITS = WebFetchLimits()


class WebFetchReactor(IReactorTCP, IReactorTime, IReactorPluggableNameResolver):
    """What web_fetch needs from the reactor (typing only)."""
