"""Redaction by value: every configured secret is masked wherever text leaves.

Shape-based masking (:mod:`openclaw.core.redaction`) catches ``sk-...`` keys
and bearer tokens; it cannot know that the value of a provider header called
``X-Upstream-Pass`` is a password. :class:`SecretValues` holds the exact
values the config declares secret (the gateway token and password, every
provider ``apiKey`` but a keyless server's placeholder, and every provider
header value, whatever the header is called, but for a few public ones such
as OpenRouter's ``X-Title``) and masks them in error bodies, error frames, ``logs.tail``, the log
file and transcripts.

Values shorter than :data:`MIN_SECRET_CHARS` are not masked: masking ``1``
or ``on`` everywhere would garble every message while protecting nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from twisted.logger import LogEvent, formatEvent

from openclaw.core.redaction import REDACTED
from openclaw.core.textguard import has_surrogates, scrub_text

#: Shorter configured values are not treated as maskable secrets.
MIN_SECRET_CHARS: Final = 4


class SecretValues:
    """A fixed set of secret strings and the fast masking of them."""

    def __init__(self, values: Iterable[str | None] = ()) -> None:
        found = {scrub_text(v) for v in values if v and len(v) >= MIN_SECRET_CHARS}
        #: Longest first, so a secret containing another is masked whole.
        self.values: tuple[str, ...] = tuple(sorted(found, key=lambda v: (-len(v), v)))
        self._pattern: re.Pattern[str] | None = (
            re.compile("|".join(re.escape(v) for v in self.values)) if self.values else None
        )

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __len__(self) -> int:
        return len(self.values)

    def merged(self, other: SecretValues) -> SecretValues:
        """These secrets and ``other``'s (a reload: rotated-out ones stay masked)."""
        if not other.values or set(other.values) <= set(self.values):
            return self
        return SecretValues(self.values + other.values)

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``[redacted]``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)

    def contains(self, text: str) -> bool:
        """True when some secret occurs in ``text``."""
        return self._pattern is not None and self._pattern.search(text) is not None

    def redact_json(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string redacted (keys too)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {self.redact(str(k)): self.redact_json(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_json(v) for v in value]
        return value

    def redact_event(self, event: LogEvent) -> LogEvent:
        """``event`` itself when it is clean, else a copy that carries no secret
        and no lone surrogate.

        A plain event keeps its format and its fields, each string field
        redacted (a non-string field whose text holds a secret becomes that
        text, redacted), so JSON lines keep ``status``, ``path``, ``run_id``...
        An event with a traceback, or one from the legacy ``twisted.python.log``
        API, is folded into one redacted text instead: those are formatted in
        ways a field-by-field pass cannot reach.
        """
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            try:
                text = f"{text}\n{failure.getTraceback()}"
            except Exception:
                text = f"{text}\n(unformattable traceback)"
        if not self.contains(text) and not has_surrogates(text):
            return event
        if failure is None and "log_legacy" not in event and "log_text" not in event:
            return self._redact_fields(event)
        kept = {k: v for k, v in event.items() if k.startswith("log_") and k != "log_failure"}
        kept.pop("log_text", None)
        # Its entries are the old format's; formatEvent would look the new one up there.
        kept.pop("log_flattened", None)
        kept["log_format"] = "{redacted_text}"
        kept["redacted_text"] = scrub_text(self.redact(text))
        return kept

    def redact_flattened(self, flattened: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of an event's ``log_flattened`` with no secret in its values.

        ``jsonFileLogObserver`` (a worker's records to its parent) stores each
        format field's text there, and ``formatEvent`` prefers that copy to the
        fields themselves: masking only the fields would leave the secret in
        the line.
        """
        return {
            key: self.redact_json(value)
            if isinstance(value, Mapping | list | tuple)
            else self._redact_value(value)
            for key, value in flattened.items()
        }

    def _redact_fields(self, event: LogEvent) -> LogEvent:
        out: dict[str, Any] = {}
        for key, value in event.items():
            if key == "log_format" and isinstance(value, str):
                out[key] = scrub_text(self.redact(value))
            elif key == "log_flattened" and isinstance(value, Mapping):
                out[key] = self.redact_flattened(value)
            elif key.startswith("log_"):
                out[key] = value
            else:
                out[key] = self._redact_value(value)
        return out

    def _redact_value(self, value: Any) -> Any:
        """One field: text masked and scrubbed, numbers kept, anything else
        kept unless its text shows a secret (then that text, masked)."""
        if isinstance(value, str):
            return scrub_text(self.redact(value))
        if isinstance(value, int | float | bool) or value is None:
            return value
        try:
            shown = str(value)
        except Exception:
            shown = "(unprintable)"
        clean = not self.contains(shown) and not has_surrogates(shown)
        return value if clean else scrub_text(self.redact(shown))


#: Provider headers that are public by design (OpenRouter's attribution, API
#: versions, organisation ids): their values are not masked. Any other header
#: may be a credential (``X-Upstream-Pass``), whatever it is called.
PUBLIC_HEADERS: Final = frozenset(
    {
        "x-title",
        "http-referer",
        "referer",
        "user-agent",
        "accept",
        "content-type",
        "anthropic-version",
        "anthropic-beta",
        "openai-organization",
        "openai-project",
        "openai-beta",
    }
)
#: ``apiKey`` values that keyless local servers ask for (Ollama, LM Studio,
#: vLLM, llama.cpp): not secrets, and masking them would mask the provider's
#: own name in every log line.
PLACEHOLDER_KEYS: Final = frozenset(
    {
        "ollama",
        "lm-studio",
        "lmstudio",
        "empty",
        "none",
        "dummy",
        "not-needed",
        "sk-no-key-required",
    }
)


def config_secret_values(
    *,
    gateway_token: str | None,
    gateway_password: str | None,
    providers: Iterable[tuple[str | None, Mapping[str, str]]],
) -> SecretValues:
    """Every configured secret: gateway token and password, each provider's
    ``apiKey`` (not a keyless server's placeholder) and the value of every
    header it sends upstream (not the public ones, :data:`PUBLIC_HEADERS`)."""
    values: list[str | None] = [gateway_token, gateway_password]
    for api_key, headers in providers:
        if api_key is not None and api_key.strip().lower() not in PLACEHOLDER_KEYS:
            values.append(api_key)
        values.extend(v for k, v in headers.items() if k.strip().lower() not in PUBLIC_HEADERS)
    return SecretValues(values)
