"""Masking credential-shaped text before it leaves the process.

Upstream error messages are shown to API clients, WebSocket operators, logs
and transcripts; some upstreams quote the key they were given. Anything shaped
like a credential (``sk-...`` keys, bearer tokens, ``api_key=...``, a URL's
password) is masked.
"""

from __future__ import annotations

import re

_CREDENTIAL = re.compile(
    r"(?i)(\bsk-[A-Za-z0-9_*.-]{4,}|\bbearer\s+\S+|\b(?:api[_-]?key|token)\s*[=:]\s*\S+)"
)

#: The password of a URL's ``user:password@``.
_URL_PASSWORD = re.compile(r"(://[^/@\s:]*:)[^/@\s]+@")

REDACTED = "[redacted]"

#: An assignment in an env file whose name ends in a secret word
#: (``GITHUB_TOKEN=...``, ``export DB_PASSWORD="..."``): its value.
_ENV_ASSIGNMENT = re.compile(
    r"(?i)(\b[A-Z0-9_]*(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD)[ \t]*[=:][ \t]*)"
    r"(\"[^\"\n]*\"|'[^'\n]*'|[^\s\"']+)"
)


def redact_credentials(text: str) -> str:
    """``text`` with credential-like substrings replaced by ``[redacted]``, and
    any URL's password by ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", _CREDENTIAL.sub(REDACTED, text))


def redact_env_file(text: str) -> str:
    """An env file's text for the model: the values of secret-named variables
    masked as well as anything :func:`redact_credentials` masks."""
    return redact_credentials(_ENV_ASSIGNMENT.sub(rf"\1{REDACTED}", text))


def url_without_password(url: str) -> str:
    """``url`` for display: ``https://user:***@host/...``."""
    return _URL_PASSWORD.sub(r"\1***@", url)
