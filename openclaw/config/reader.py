"""The config reader: walks the JSON5 document, checks each value's type and
range, collects problems and OpenClaw-only warnings (one line each).

The section builders (:mod:`.loader`, :mod:`.gateway_keys`, :mod:`.models_keys`,
:mod:`.agent_loop`) read every key through a :class:`_Reader`, so a wrong value
is reported with its dotted path and never raises half way.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs
from attrs import frozen

from openclaw.core.textguard import scrub_text

# `${VAR}` (upper-case names only, as OpenClaw); `$${VAR}` is a literal `${VAR}`.
_ENV_REF: Final = re.compile(r"\$(\$?)\{([A-Z_][A-Z0-9_]*)\}")
_INDEX: Final = re.compile(r"\[\d+\]")
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", re.ASCII)
_DURATION: Final = re.compile(f"(?:{_DURATION_PART.pattern})+", re.ASCII)
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_BYTE_SIZE: Final = re.compile(r"(\d+(?:\.\d+)?)([a-z]+)?", re.ASCII)
#: OpenClaw's size units: binary multiples, ``k``/``m``/``g``/``t`` as short forms.
_BYTE_UNITS: Final = {
    "b": 1, "kb": 1 << 10, "k": 1 << 10, "mb": 1 << 20, "m": 1 << 20,
    "gb": 1 << 30, "g": 1 << 30, "tb": 1 << 40, "t": 1 << 40,
}  # fmt: skip
#: The largest size JavaScript counts exactly (OpenClaw refuses larger ones).
_MAX_SAFE_INTEGER: Final = (1 << 53) - 1
_SECRET_SUFFIXES: Final = (
    "token",
    "password",
    "secret",
    "key",
    "authorization",
    "cookie",
    "credential",
    "credentials",
)


def _env_value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


# --------------------------------------------------------------------------
# Validation machinery


@frozen
class _Section:
    """Which keys of one JSON object are honoured, and which are OpenClaw's only."""

    honoured: frozenset[str]
    openclaw: frozenset[str] = frozenset()
    hints: Mapping[str, str] = attrs.field(factory=dict)


def _section(
    honoured: Iterable[str], openclaw: Iterable[str] = (), hints: Mapping[str, str] | None = None
) -> _Section:
    return _Section(frozenset(honoured), frozenset(openclaw), dict(hints or {}))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_secret_path(path: str) -> bool:
    """Values under such keys are never echoed back, even when malformed."""
    segments = [s for s in re.split(r"[.\[\]]+", path) if s and not s.isdigit()]
    if not segments:
        return False
    if segments[0] == "env" or "headers" in segments:
        return True
    return segments[-1].lower().endswith(_SECRET_SUFFIXES)


def _describe(path: str, value: Any) -> str:
    """A short, safe rendering of a bad value for an error line."""
    if path and _is_secret_path(path) and value is not None:
        return "<redacted>"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 80 else value[:77] + "..."
        return json.dumps(shown)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__  # pragma: no cover - json5 yields only JSON types


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Reader:
    """Reads typed values out of the parsed document, collecting problems and warnings.

    Every accessor returns a usable value (the default) even after recording a
    problem, so one pass over the document finds every mistake.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.process_env = env
        self.file_env: dict[str, str] = {}
        self.problems: list[str] = []
        self.warnings: list[str] = []

    # -- reporting

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def expected(self, path: str, what: str, value: Any) -> None:
        self.problem(path, f"expected {what}, got {_describe(path, value)}")

    def warn(self, path: str, message: str, *, per_key: bool = False) -> None:
        """Record a warning; ``per_key`` ones are given once however many entries repeat them."""
        shown = _INDEX.sub("[*]", path) if per_key else path
        self.warnings.append(f"{shown}: {message}")

    # -- environment

    def env(self, name: str) -> str | None:
        """Process environment first, then ``env.vars`` from the file (as OpenClaw)."""
        found = _env_value(self.process_env, name) or self.file_env.get(name) or None
        # Undecodable environment bytes arrive as lone surrogates: same rule as JSON.
        return scrub_text(found) if found is not None else None

    def substitute(self, path: str, value: str) -> str | None:
        """Expand ``${VAR}``; None (with one problem per missing variable) if any is unset."""
        missing: list[str] = []

        def replace(match: re.Match[str]) -> str:
            escaped, name = match.groups()
            if escaped:
                return "${" + name + "}"
            found = self.env(name)
            if found is None:
                missing.append(name)
                return ""
            return found

        result = _ENV_REF.sub(replace, value)
        for name in dict.fromkeys(missing):
            self.problem(path, f"environment variable {name} is not set (or is empty)")
        return None if missing else result

    # -- structure

    def section(self, value: Any, path: str, spec: _Section) -> dict[str, Any]:
        """The object at ``path`` (``{}`` when absent), warning about keys not honoured."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.expected(path, "an object", value)
            return {}
        for key in value:
            if key in spec.honoured:
                continue
            key_path = _join(path, key)
            if key == "$include":
                self.problem(key_path, "$include is not supported; inline the included file")
            elif key == "$schema":
                continue
            elif key in spec.hints:
                self.warn(key_path, spec.hints[key], per_key=True)
            elif key in spec.openclaw:
                self.warn(key_path, _NOT_HERE, per_key=True)
            else:
                close = difflib.get_close_matches(key, sorted(spec.honoured), n=1, cutoff=0.6)
                hint = f" (did you mean {json.dumps(close[0])}?)" if close else ""
                self.warn(key_path, f"not recognised{hint}; ignored", per_key=True)
        return value

    def items(self, data: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.expected(_join(path, key), "an array", value)
            return []
        return value

    # -- scalars

    def string(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        strip: bool = True,
    ) -> str | None:
        """A string (``${VAR}`` substituted); empty counts as unset."""
        key_path = _join(path, key)
        return self.string_value(data.get(key), key_path, required=required, strip=strip)

    def string_value(
        self, value: Any, path: str, *, required: bool = False, strip: bool = True
    ) -> str | None:
        """Like :meth:`string`, for a value already taken out of its object."""
        if value is None:
            if required:
                self.problem(path, "required, expected a non-empty string")
            return None
        if isinstance(value, dict) and _is_secret_path(path):
            return self.secret_ref(value, path)
        if not isinstance(value, str):
            self.expected(path, "a string", value)
            return None
        result = self.substitute(path, value)
        if result is None:
            return None
        if strip:
            result = result.strip()
        if not result:
            if required:
                self.expected(path, "a non-empty string", value)
            return None
        return result

    def secret_ref(self, value: Mapping[str, Any], path: str) -> str | None:
        """OpenClaw's ``{source: "env", id: "VAR"}`` SecretRef; other sources are not supported."""
        name = value.get("id")
        if value.get("source") != "env" or not isinstance(name, str) or not name.strip():
            self.expected(path, 'a string or an env SecretRef {source: "env", id: "VAR"}', value)
            return None
        found = self.env(name.strip())
        if found is None:
            self.problem(path, f"environment variable {name.strip()} is not set (or is empty)")
            return None
        return found.strip() or None

    def choice(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        options: Mapping[str, Any],
        hints: Mapping[str, str] | None = None,
    ) -> Any:
        """One of ``options`` (returns its typed value) or None when absent or wrong."""
        value = data.get(key)
        if value is None:
            return None
        text = value.strip() if isinstance(value, str) else None
        if text is None or text not in options:
            hint = (hints or {}).get(text or "", "")
            self.expected(_join(path, key), "one of " + ", ".join(options) + hint, value)
            return None
        return options[text]

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.expected(_join(path, key), "true or false", value)
            return default
        return value

    def integer(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        default: int,
        *,
        minimum: int = 1,
        maximum: int | None = None,
    ) -> int:
        value = data.get(key)
        if value is None:
            return default
        if maximum is not None:
            what = f"an integer {minimum}..{maximum}"
        else:
            what = f"an integer >= {minimum}"
        ok = _is_number(value) and float(value).is_integer()
        number = int(value) if ok else 0
        if not ok or number < minimum or (maximum is not None and number > maximum):
            self.expected(_join(path, key), what, value)
            return default
        return number

    def optional_integer(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        minimum: int = 1,
        maximum: int | None = None,
    ) -> int | None:
        if data.get(key) is None:
            return None
        sentinel = minimum - 1
        value = self.integer(data, key, path, sentinel, minimum=minimum, maximum=maximum)
        return None if value == sentinel else value

    def number(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        allow_zero: bool = False,
    ) -> float:
        value = data.get(key)
        if value is None:
            return default
        if not _is_number(value) or value < 0 or (value == 0 and not allow_zero):
            self.expected(
                _join(path, key), "a number >= 0" if allow_zero else "a number > 0", value
            )
            return default
        return float(value)

    def duration(self, data: Mapping[str, Any], key: str, path: str) -> float | None:
        """A duration in seconds, read as OpenClaw reads one: ``"30d"``,
        ``"12h"``, ``"90m"``, ``"45s"``, ``"500ms"`` (``"w"`` too), compound
        (``"1h30m"``), any case; a bare number is days. Absent, ``""`` or
        ``false``: None."""
        value = data.get(key)
        if value is None or value is False or value == "":
            return None
        seconds = _duration_seconds(value)
        if seconds is None:
            what = 'a duration like "30d", "12h" or "90m" (a bare number is days), or false'
            self.expected(_join(path, key), what, value)
        return seconds

    def byte_size(
        self, data: Mapping[str, Any], key: str, path: str, *, false_is_zero: bool = True
    ) -> int | None:
        """A size in bytes, read as OpenClaw reads one: ``"10gb"``, ``"500mb"``,
        ``"64k"``, ``"1.5g"`` (b, kb, mb, gb, tb; binary multiples; any case)
        or a number of bytes. Absent or ``""``: None; ``false``: 0 where the
        key allows it (else refused)."""
        value = data.get(key)
        if value is None or value == "":
            return None
        if value is False and false_is_zero:
            return 0
        size = _byte_size(value)
        if size is None:
            what = 'a size like "10gb", "500mb" or 1048576 (bytes; b, kb, mb, gb, tb)'
            self.expected(_join(path, key), what, value)
        return size

    def string_items(self, data: Mapping[str, Any], key: str, path: str) -> list[tuple[int, str]]:
        """The valid strings of an array, each with its index (for later messages)."""
        key_path = _join(path, key)
        result: list[tuple[int, str]] = []
        for index, item in enumerate(self.items(data, key, path)):
            text = self.string_value(item, f"{key_path}[{index}]", required=True)
            if text is not None:
                result.append((index, text))
        return result

    def string_list(self, data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        return tuple(text for _, text in self.string_items(data, key, path))


_NOT_HERE = "OpenClaw setting not implemented by openclaw-twisted; ignored"


def _byte_size(value: Any) -> int | None:
    """Bytes for a size value (0 allowed), or None when it is not one."""
    if _is_number(value):
        number, unit = float(value), "b"
        # JavaScript writes these with an exponent, which OpenClaw refuses.
        if number < 0 or 0 < number < 1e-6 or number >= 1e21:
            return None
    elif isinstance(value, str):
        match = _BYTE_SIZE.fullmatch(value.strip().lower())
        if match is None or (match.group(2) or "b") not in _BYTE_UNITS:
            return None
        number, unit = float(match.group(1)), match.group(2) or "b"
    else:
        return None
    scaled = number * _BYTE_UNITS[unit]
    if not scaled <= _MAX_SAFE_INTEGER:  # also inf (a very long digit string)
        return None
    return math.floor(scaled + 0.5)  # JavaScript's Math.round


def _duration_seconds(value: Any) -> float | None:
    """Seconds for a duration value, or None when it is not a positive, finite one."""
    if _is_number(value):
        seconds = float(value) * _DURATION_UNITS["d"]
    elif isinstance(value, str):
        text = value.strip().lower()
        if _DURATION.fullmatch(text):
            seconds = sum(
                float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text)
            )
        else:
            try:
                seconds = float(text) * _DURATION_UNITS["d"]
            except ValueError:
                return None
    else:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None
