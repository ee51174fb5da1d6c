"""The environment a model-run command gets: an allow-list, never the gateway's secrets.

Only named variables from the gateway's environment pass (``PATH``, ``HOME``,
locale, ``LC_*``); secret-looking names are dropped even if allow-listed, and so
is any variable whose *value* is or contains one of the configured secrets
(gateway token or password, provider API keys), whatever its name. The model's ``env``
overrides get the same scrub and may not set ``PATH`` or loader variables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from openclaw.agents.tools._common import check_text
from openclaw.agents.tools.base import ToolArgumentError

#: Variables copied from the gateway's environment when present.
DEFAULT_PASSTHROUGH = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TZ",
    "TMPDIR",
)

_SECRET_NAME = re.compile(
    r"(^OPENCLAW_GATEWAY_(TOKEN|PASSWORD)$)|(_API_KEY$)|(^API_KEY$)|(TOKEN$)|(SECRET)|(PASSWORD)"
    r"|(^AWS_SESSION)|(_CREDENTIALS?$)|(^OPENCLAW_.*KEY$)",
    re.IGNORECASE,
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_BLOCKED_OVERRIDE = re.compile(r"^(PATH|LD_.*|DYLD_.*|BASH_ENV|ENV|IFS|SHELLOPTS|PS4)$")

MAX_ENV_OVERRIDES = 64
MAX_ENV_VALUE = 32_768


def is_secret_name(name: str) -> bool:
    """True for names that conventionally hold credentials."""
    return bool(_SECRET_NAME.search(name))


#: Secrets at least this long are also looked for inside values.
_MIN_CONTAINED_SECRET = 8


def build_env(
    source: Mapping[str, str],
    *,
    secrets: Iterable[str] = (),
    passthrough: Iterable[str] = DEFAULT_PASSTHROUGH,
    overrides: Mapping[str, str] | None = None,
    path_prepend: Iterable[str] = (),
) -> dict[str, str]:
    """The command's environment (see the module docstring)."""
    secret_values = {s for s in secrets if s}

    def leaks(value: str) -> bool:
        # A secret inside a longer value ("Bearer <token>") leaks as much as
        # the value alone; short secrets are matched whole (they would match
        # inside ordinary values such as PATH).
        return value in secret_values or any(
            len(secret) >= _MIN_CONTAINED_SECRET and secret in value for secret in secret_values
        )

    env: dict[str, str] = {}
    for name in passthrough:
        value = source.get(name)
        if value is None or leaks(value) or is_secret_name(name):
            continue
        env[name] = value
    for name, value in source.items():
        if name.startswith("LC_") and not is_secret_name(name) and not leaks(value):
            env[name] = value
    prepend = [p for p in path_prepend if p]
    if prepend:
        env["PATH"] = ":".join([*prepend, env.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    for name, value in (overrides or {}).items():
        if leaks(value):
            continue
        env[name] = value
    env["OPENCLAW_SHELL"] = "exec"
    return env


def parse_overrides(value: Any) -> dict[str, str]:
    """Validate the model's ``env`` argument."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ToolArgumentError("env must be an object of string values")
    if len(value) > MAX_ENV_OVERRIDES:
        raise ToolArgumentError(f"env has too many entries (limit {MAX_ENV_OVERRIDES})")
    out: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ToolArgumentError(f"env: invalid variable name {str(name)[:64]!r}")
        if _BLOCKED_OVERRIDE.match(name):
            raise ToolArgumentError(f"env: {name} cannot be overridden for host execution")
        if not isinstance(item, str):
            raise ToolArgumentError(f"env.{name} must be a string")
        out[name] = check_text(f"env.{name}", item, MAX_ENV_VALUE)
    return out
