"""``gateway.redis.url``: where Redis is, parsed once.

Accepted forms: ``redis://[user:password@]host[:port][/db]``,
``rediss://...`` (TLS), ``unix:///path/to/redis.sock?db=N`` and
``redis+unix:///path?db=N&password=...``. ``${VAR}`` anywhere in the URL is
replaced from the environment, so a password can stay out of the config
file. The password never appears in :meth:`RedisUrl.redacted`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from attrs import frozen

DEFAULT_PORT = 6379
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class RedisUrlError(ValueError):
    """A ``gateway.redis.url`` that cannot be used (the message names no secret)."""


@frozen(repr=False)
class RedisUrl:
    """A parsed Redis location and its credentials."""

    host: str | None
    port: int
    path: str | None
    db: int
    username: str | None
    password: str | None
    tls: bool

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    def redacted(self) -> str:
        """The URL for logs and errors, without the password."""
        auth = ""
        if self.username or self.password:
            auth = f"{self.username or ''}:***@" if self.password else f"{self.username}@"
        if self.path is not None:
            return f"unix://{auth}{self.path}?db={self.db}"
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"

    def __repr__(self) -> str:
        return f"RedisUrl({self.redacted()!r})"


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` from ``env``; an unset variable is an error naming it."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise RedisUrlError(f"gateway.redis.url uses ${{{name}}}, which is not set")
        return env[name]

    return _ENV_REF.sub(value, text)


def _db(raw: str | None, where: str) -> int:
    if raw is None or raw == "":
        return 0
    if not raw.isdigit():
        raise RedisUrlError(f"gateway.redis.url: the database {where} must be a number")
    return int(raw)


def parse_redis_url(text: str, env: Mapping[str, str] | None = None) -> RedisUrl:
    """Parse ``text`` (after ``${VAR}`` expansion) into a :class:`RedisUrl`."""
    expanded = expand_env(text.strip(), env or {})
    try:
        parts = urlsplit(expanded)
        port_raw = parts.port
    except ValueError as exc:
        raise RedisUrlError(f"gateway.redis.url is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    query = parse_qs(parts.query)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if "password" in query:
        password = query["password"][-1]
    if scheme in ("unix", "redis+unix"):
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise RedisUrlError("gateway.redis.url: a unix socket needs an absolute path")
        db = _db(query.get("db", [None])[-1], "(?db=)")
        return RedisUrl(None, DEFAULT_PORT, path, db, username, password, tls=False)
    if scheme not in ("redis", "rediss"):
        raise RedisUrlError(
            "gateway.redis.url must start with redis://, rediss://, unix:// or redis+unix://"
        )
    host = parts.hostname
    if not host:
        raise RedisUrlError("gateway.redis.url names no host")
    db_raw = parts.path.lstrip("/") or query.get("db", [None])[-1]
    return RedisUrl(
        host,
        port_raw or DEFAULT_PORT,
        None,
        _db(db_raw, "(/N)"),
        username,
        password,
        tls=scheme == "rediss",
    )
