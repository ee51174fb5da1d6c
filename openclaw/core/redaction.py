"""Masking credential-shaped text before it leaves the process.

Upstream error messages are shown to API clients, WebSocket operators, logs
and transcripts; some upstreams quote the key they were given. Anything shaped
like a credential (``sk-...`` keys, bearer tokens, ``api_key=...``, the token
formats of well-known vendors, PEM private keys, a URL's password) is masked.
"""

from __future__ import annotations

import re

_CREDENTIAL = re.compile(
    r"(?i)(\bsk-[A-Za-z0-9_*.-]{4,}|\bbearer\s+\S+|\b(?:api[_-]?key|token)\s*[=:]\s*\S+)"
)

#: Vendor token formats, by their fixed prefixes (the ones OpenClaw's
#: redaction knows best), and PEM private-key blocks across lines.
_TOKEN_FORMATS = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z0-9 ]*PRIVATE KEY-----"
    r"|\b(?:gh[pousr]_[A-Za-z0-9]{10,}|github_pat_[A-Za-z0-9_]{10,}|glpat-[A-Za-z0-9._=-]{20,}"
    r"|xox[baprs]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}|gsk_[A-Za-z0-9_-]{10,}"
    r"|AIza[0-9A-Za-z_-]{20,}|ya29\.[0-9A-Za-z_./+=-]{10,}|pplx-[A-Za-z0-9_-]{10,}"
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{10,}|SG\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"
    r"|npm_[A-Za-z0-9]{10,}|pypi-[A-Za-z0-9_-]{10,}|do[por]_v1_[A-Za-z0-9]{10,}"
    r"|hf_[A-Za-z0-9]{10,}|xai-[A-Za-z0-9]{30,}|r8_[A-Za-z0-9]{10,}|tvly-[A-Za-z0-9]{10,}"
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}\b"
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{5,})"
    r"|https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/]{10,}"
    r"|https://discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{20,}"
)

#: The password of a URL's ``user:password@``.
_URL_PASSWORD = re.compile(r"(://[^/@\s:]*:)[^/@\s]+@")

REDACTED = "[redacted]"

#: An assignment in an env file whose name ends in a secret word
#: (``GITHUB_TOKEN=...``, ``export DB_PASSWORD="..."``): its value.
_ENV_ASSIGNMENT = re.compile(
    r"(?i)(\b[A-Z0-9_]*(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD)[ \t]*[=:][ \t]*)"
    # Quoted values may span lines (dotenv allows it: a PEM key); an unclosed
    # quote masks the rest of its line.
    r"(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[\"'][^\n]*|[^\s\"']+)"
)


def redact_credentials(text: str) -> str:
    """``text`` with credential-like substrings replaced by ``[redacted]``, and
    any URL's password by ``***``."""
    text = _TOKEN_FORMATS.sub(REDACTED, text)
    return _URL_PASSWORD.sub(r"\1***@", _CREDENTIAL.sub(REDACTED, text))


def redact_env_file(text: str) -> str:
    """An env file's text for the model: the values of secret-named variables
    masked as well as anything :func:`redact_credentials` masks."""
    return redact_credentials(_ENV_ASSIGNMENT.sub(rf"\1{REDACTED}", text))


def url_without_password(url: str) -> str:
    """``url`` for display: ``https://user:***@host/...``."""
    return _URL_PASSWORD.sub(r"\1***@", url)
