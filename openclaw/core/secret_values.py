"""Redaction by value: every configured secret is masked wherever text leaves.

Shape-based masking (:mod:`openclaw.core.redaction`) catches ``sk-...`` keys
and bearer tokens; it cannot know that the value of a provider header called
``X-Upstream-Pass`` is a password. :class:`SecretValues` holds the exact
values the config declares secret (the gateway token and password, every
provider ``apiKey`` and every provider header value, whatever the header is
called) and masks them in error bodies, error frames, ``logs.tail``, the log
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
        """``event`` itself when it is clean, else a copy whose text is formatted,
        redacted, stripped of lone surrogates and carried as plain text.

        Fields and tracebacks are folded into the message first, so no
        observer can format a secret back out of a field, and no writer meets
        text it cannot encode.
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
        kept = {k: v for k, v in event.items() if k.startswith("log_") and k != "log_failure"}
        kept.pop("log_text", None)
        kept["log_format"] = "{redacted_text}"
        kept["redacted_text"] = scrub_text(self.redact(text))
        return kept


def config_secret_values(
    *,
    gateway_token: str | None,
    gateway_password: str | None,
    providers: Iterable[tuple[str | None, Mapping[str, str]]],
) -> SecretValues:
    """Every configured secret: gateway token and password, each provider's
    ``apiKey`` and the value of every header it sends upstream."""
    values: list[str | None] = [gateway_token, gateway_password]
    for api_key, headers in providers:
        values.append(api_key)
        values.extend(headers.values())
    return SecretValues(values)
