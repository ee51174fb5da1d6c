"""``openclaw doctor``: check what a gateway needs before (or while) it runs.

One line per check, ``ok``, ``warn`` or ``FAIL``, each problem with the fix;
the exit status is 1 when anything failed. Checks: the config (and the path it
was read from), the state and workspace directories and their permissions,
each provider (reachable, credentials accepted, models listed), the port, the
token's strength and the TLS files of ``ssl:`` listeners given with
``--listen``. Provider checks talk to the configured ``baseUrl`` only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import socket
import stat
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO
from urllib.parse import urlsplit, urlunsplit

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent
from twisted.web.http_headers import Headers

from openclaw.config.model import Config, ProviderConfig
from openclaw.core.fd_limit import GetLimit, descriptors_needed

if TYPE_CHECKING:
    from openclaw.agents.registry import AgentSpec

Status = Literal["ok", "warn", "FAIL"]

#: Tokens shorter than this are refused; below ``GOOD_TOKEN_CHARS`` warned.
MIN_TOKEN_CHARS = 16
GOOD_TOKEN_CHARS = 32
_KNOWN_WEAK = frozenset({"dev-token-change-me", "changeme", "password", "secret", "token"})
PROVIDER_TIMEOUT_SECONDS = 5.0
#: How long the Redis check waits to connect and for each answer.
REDIS_TIMEOUT_SECONDS = 3.0


@frozen
class Check:
    """One line of the report."""

    status: Status
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        """``ok   name: detail`` (with ``-> fix: ...`` when something is wrong)."""
        text = f"{self.status:<4} {self.name}: {self.detail}"
        return f"{text} -> fix: {self.fix}" if self.fix and self.status != "ok" else text


# -- offline checks --------------------------------------------------------------


def check_directory(name: str, path: Path, *, create_hint: bool = False) -> Check:
    """Exists (or can be created), is writable, and no one else may write to it."""
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            return Check(
                "FAIL", name, f"{path} cannot be created: {parent} is not a directory",
                f"move {parent} away or choose another path",
            )  # fmt: skip
        if parent is not None and not _can_create_in(parent):
            return Check(
                "FAIL", name, f"{path} cannot be created: {parent} does not allow it",
                f"choose another path, or fix the permissions of {parent}",
            )  # fmt: skip
        if create_hint:
            return Check("ok", name, f"{path} (created on first use)")
        return Check("FAIL", name, f"{path} does not exist", f"mkdir -p -m 0700 {path}")
    if not path.is_dir():
        return Check("FAIL", name, f"{path} is not a directory", f"move it away: {path}")
    if not os.access(path, os.W_OK | os.X_OK):
        return Check("FAIL", name, f"{path} is not writable by this user", f"chown $(id -u) {path}")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o002:
        return Check(
            "FAIL", name, f"{path} is writable by everyone ({mode:04o})", f"chmod 0700 {path}"
        )
    if mode & 0o077:
        return Check(
            "warn", name, f"{path} is open to other users ({mode:04o})", f"chmod 0700 {path}"
        )
    return Check("ok", name, f"{path} ({mode:04o})")


def check_fd_limit(max_connections: int, get: GetLimit = resource.getrlimit) -> Check:
    """The open-file limit the gateway will reach (it raises its soft limit up
    to the hard one at start) against what ``maxConnections`` needs."""
    needed = descriptors_needed(max_connections)
    soft, hard = get(resource.RLIMIT_NOFILE)
    reachable = soft if hard == resource.RLIM_INFINITY else max(soft, hard)
    if soft == resource.RLIM_INFINITY or reachable >= needed:
        return Check("ok", "open files", f"limit {min(needed, reachable)} >= {needed} needed")
    return Check(
        "warn", "open files",
        f"hard limit {hard} < {needed} needed by gateway.maxConnections {max_connections}",
        "raise it (ulimit -Hn, systemd LimitNOFILE=) or lower gateway.maxConnections",
    )  # fmt: skip


def _can_create_in(parent: Path) -> bool:
    """Whether a directory can really be made in ``parent`` (tried, then
    removed): permission bits say yes for root on /proc, which refuses."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".openclaw-doctor-", dir=parent))
    except OSError:
        return False
    return True


def check_token(config: Config) -> Check:
    """The shared secret is present and long enough to resist guessing."""
    auth = config.gateway.auth
    if auth.mode == "none":
        return Check(
            "warn",
            "auth",
            "mode none: anyone who can reach the port drives the agents",
            'set gateway.auth.mode "token" and OPENCLAW_GATEWAY_TOKEN=$(openssl rand -hex 32)',
        )
    secret = auth.token if auth.mode == "token" else auth.password
    what = auth.mode
    if not secret:
        return Check(
            "FAIL", "auth", f"mode {what} but no {what} is set", "OPENCLAW_GATEWAY_TOKEN=..."
        )
    fix = "use a random secret: openssl rand -hex 32"
    if secret.lower() in _KNOWN_WEAK or len(set(secret)) < 6:
        return Check("FAIL", "auth", f"the {what} is a well-known or trivial value", fix)
    if len(secret) < MIN_TOKEN_CHARS:
        return Check("FAIL", "auth", f"the {what} has {len(secret)} characters", fix)
    if len(secret) < GOOD_TOKEN_CHARS:
        return Check("warn", "auth", f"the {what} has only {len(secret)} characters", fix)
    return Check("ok", "auth", f"{what}, {len(secret)} characters")


def check_port(host: str, port: int) -> Check:
    """Whether the gateway could bind its port now (a running gateway holds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            return Check(
                "warn",
                "port",
                f"{host}:{port} is in use ({e.strerror})",
                "if that is this gateway, `openclaw status` shows it; else pick "
                "another gateway.port or stop what holds it",
            )
    return Check("ok", "port", f"{host}:{port} is free")


def check_tls(listen: Sequence[str]) -> list[Check]:
    """The key and certificate files of each ``ssl:`` listener."""
    checks = []
    for description in listen:
        if not description.startswith("ssl:"):
            continue
        options = _endpoint_options(description)
        key, cert = options.get("privateKey"), options.get("certKey")
        if not key or not cert:
            checks.append(
                Check("FAIL", "tls", f"{description}: needs privateKey= and certKey=", "see docs")
            )
            continue
        checks.append(_check_tls_pair(Path(key), Path(cert)))
    return checks


def _endpoint_options(description: str) -> dict[str, str]:
    parts = description.replace("\\:", "\0").split(":")
    found = {}
    for part in parts[1:]:
        name, sep, value = part.partition("=")
        if sep:
            found[name] = value.replace("\0", ":")
    return found


def _check_tls_pair(key_path: Path, cert_path: Path) -> Check:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    for path in (key_path, cert_path):
        if not path.is_file() or not os.access(path, os.R_OK):
            return Check("FAIL", "tls", f"{path} is missing or unreadable", f"check {path}")
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        return Check("FAIL", "tls", f"cannot read the PEM files: {e}", "PEM key and certificate")
    if cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return Check("FAIL", "tls", f"{key_path} does not match {cert_path}", "pair them up")
    expires = cert.not_valid_after_utc
    days = (expires - datetime.now(UTC)).days
    if days < 0:
        return Check("FAIL", "tls", f"{cert_path} expired {expires:%Y-%m-%d}", "renew it")
    if days < 14:
        return Check("warn", "tls", f"{cert_path} expires in {days} days", "renew it")
    key_mode = stat.S_IMODE(key_path.stat().st_mode)
    if key_mode & 0o077:
        return Check(
            "warn", "tls", f"{key_path} is readable by others ({key_mode:04o})",
            f"chmod 0600 {key_path}",
        )  # fmt: skip
    return Check("ok", "tls", f"{cert_path} valid until {expires:%Y-%m-%d}")


# -- providers -------------------------------------------------------------------


def _models_url(provider: ProviderConfig) -> str:
    """``<baseUrl>/models`` as the gateway reaches it: without ``user:password@``
    (never sent upstream, and never printed)."""
    parts = urlsplit((provider.base_url or "").rstrip("/"))
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    base = urlunsplit(parts._replace(netloc=netloc))
    if provider.api == "anthropic-messages" and not base.endswith("/v1"):
        base += "/v1"
    return base + "/models"


def _headers(provider: ProviderConfig) -> Headers:
    headers = Headers({b"user-agent": [b"openclaw-doctor"]})
    for name, value in provider.headers.items():
        headers.setRawHeaders(name.encode("latin-1"), [value.encode("latin-1")])
    if provider.api_key:
        if provider.api == "anthropic-messages":
            headers.setRawHeaders(b"x-api-key", [provider.api_key.encode("latin-1")])
            headers.setRawHeaders(b"anthropic-version", [b"2023-06-01"])
        else:
            headers.setRawHeaders(
                b"authorization", [b"Bearer " + provider.api_key.encode("latin-1")]
            )
    return headers


async def check_provider(
    reactor: Any, provider_id: str, provider: ProviderConfig, wanted: Sequence[str]
) -> Check:
    """Reachable, credentials accepted, the configured models listed.

    ``reactor`` needs IReactorTCP (and IReactorSSL for https) besides time.
    """
    name = f"provider {provider_id}"
    if provider.api == "demo":
        return Check("ok", name, "built-in demo model (offline)")
    url = _models_url(provider)
    agent = Agent(reactor, connectTimeout=PROVIDER_TIMEOUT_SECONDS)  # type: ignore[no-untyped-call]
    try:
        pending: Deferred[Any] = agent.request(b"GET", url.encode("ascii"), _headers(provider))
        response = await pending.addTimeout(PROVIDER_TIMEOUT_SECONDS, reactor)
        body = await _read_body(response)
    except Exception as e:
        reason = getattr(e, "reasons", None) or str(e) or type(e).__name__
        return Check(
            "FAIL", name, f"{url} is not reachable ({_short(reason)})", "check baseUrl and network"
        )
    if response.code in (401, 403):
        return Check(
            "FAIL", name, f"{url} refused the credentials ({response.code})", "check its apiKey"
        )
    if response.code != 200:
        return Check(
            "warn", name, f"{url} answered {response.code}; models not listed", "check baseUrl"
        )
    try:
        listed = {m.get("id") for m in json.loads(body).get("data") or []}
    except (ValueError, AttributeError):
        return Check("warn", name, f"{url} answered, but not with a model list", "check baseUrl")
    missing = [m for m in wanted if m not in listed]
    if missing:
        return Check(
            "warn",
            name,
            f"reachable, key accepted; {', '.join(missing)} not listed ({len(listed)} models)",
            "check the model ids in agents.*.model",
        )
    return Check("ok", name, f"reachable, key accepted, {len(listed)} models listed")


#: A model list larger than this is cut (the check only needs the ids).
MAX_BODY_BYTES = 4 * 1024 * 1024


class _Body(Protocol):
    """Collects a response body (up to :data:`MAX_BODY_BYTES`)."""

    def __init__(self, done: Deferred[bytes]) -> None:
        self._done = done
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._size < MAX_BODY_BYTES:
            self._parts.append(data)
            self._size += len(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._done.callback(b"".join(self._parts))


#: What ``doctor`` runs to see that the user may run scripts that write the
#: gateway's keys (every turn's scripts do): it sets a short-lived key under the
#: prefix and deletes it again.
_PROBE_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', 10000)
redis.call('DEL', KEYS[1])
return 1
"""
#: And that its scripts may PUBLISH on the gateway's channel (runs, events and
#: approvals cross instances there); the message is not JSON, so gateways
#: listening on the channel ignore it.
_PUBLISH_SCRIPT = "return redis.call('PUBLISH', ARGV[1], ARGV[2])"


async def check_redis(reactor: Any, config: Config) -> Check | None:
    """With ``session.store: "redis"``: Redis accepts the credentials (one
    handshake, no retries), the user may run scripts that write and delete
    keys under ``keyPrefix`` (``EVAL`` then ``EVALSHA``: what every turn does),
    PUBLISH from a script and SUBSCRIBE on the gateway's channel, and Redis
    keeps keys (``maxmemory-policy noeviction``)."""
    if config.session.store != "redis":
        return None
    from openclaw.sessions.redis.backend import RedisConfigError, redis_url
    from openclaw.sessions.redis.client import (
        LuaScript,
        RedisHandshakeError,
        RedisRefusedError,
        open_client,
    )
    from openclaw.sessions.redis.keys import KeySchema

    try:
        url = redis_url(config)
    except RedisConfigError as e:
        return Check("FAIL", "redis", str(e), "set gateway.redis.url")
    where = url.redacted()
    prefix = config.gateway.redis.key_prefix
    channel = KeySchema(prefix).bus(url.db)
    user = url.username or "default"
    grant = (
        f"ACL SETUSER {user} ~{prefix}* &* +@all -@dangerous (the gateway's "
        "keys, scripts and pub/sub), or use another user"
    )
    client = open_client(reactor, url, connect_timeout=REDIS_TIMEOUT_SECONDS)
    info: Any = None
    try:
        try:
            await client.wait_connected(REDIS_TIMEOUT_SECONDS, refusal_fails=True)
        except RedisHandshakeError as e:
            if e.credentials:
                return Check(
                    "FAIL",
                    "redis",
                    f"{where} refuses the credentials: {_short(e.reason)}",
                    "fix the user or password in gateway.redis.url (or the ${VAR} it names)",
                )
            return Check(
                "FAIL",
                "redis",
                f"{where} refused the connection: {_short(e.reason)}",
                "check Redis (maxclients, ACL, a long script) and gateway.redis.url",
            )
        probe = LuaScript("doctor-probe", _PROBE_SCRIPT)
        publish = LuaScript("doctor-publish", _PUBLISH_SCRIPT)
        probe_key = f"{prefix}doctor:{secrets.token_hex(8)}"
        step = f"run the gateway's scripts writing keys {prefix}*"
        try:
            for _ in ("EVAL", "EVALSHA"):  # run_script loads it, then runs it by its SHA
                await client.run_script(probe, [probe_key], ["1"]).addTimeout(
                    REDIS_TIMEOUT_SECONDS, reactor
                )
            step = f"PUBLISH to {channel} from the gateway's scripts"
            await client.run_script(publish, [], [channel, "openclaw doctor"]).addTimeout(
                REDIS_TIMEOUT_SECONDS, reactor
            )
            step = f"SUBSCRIBE to {channel}"
            try:  # the answers (INFO) first: a subscribed connection takes no other command
                info = await client.execute("INFO").addTimeout(REDIS_TIMEOUT_SECONDS, reactor)
            except RedisRefusedError as e:
                info = e
            await client.execute("SUBSCRIBE", channel).addTimeout(REDIS_TIMEOUT_SECONDS, reactor)
        except RedisRefusedError as e:
            if e.code == "NOPERM":
                return Check(
                    "FAIL",
                    "redis",
                    f"{where}: user {user} may not {step}: NOPERM ({_short(e.reply)})",
                    grant,
                )
            return Check(
                "FAIL",
                "redis",
                f"{where} refuses the gateway's commands: {_short(e)}",
                "point gateway.redis.url at a writable primary with room "
                "(READONLY: a replica; OOM: maxmemory)",
            )
    except Exception as e:
        return Check("FAIL", "redis", f"{where}: {_short(e)}", "start Redis, or fix gateway.redis")
    finally:
        await client.close()
    if isinstance(info, RedisRefusedError):
        return Check(
            "warn",
            "redis",
            f"{where} answers, but INFO is not allowed ({_short(info)}): "
            "maxmemory-policy not checked",
            "make sure Redis runs with maxmemory-policy noeviction",
        )
    fields = dict(
        line.split(":", 1) for line in str(info).splitlines() if ":" in line and line[0] != "#"
    )
    policy = fields.get("maxmemory_policy", "?").strip()
    version = fields.get("redis_version", "?").strip()
    appendonly = "yes" if fields.get("aof_enabled", "0").strip() == "1" else "no"
    summary = (
        f"{where} answers (Redis {version}, maxmemory-policy {policy}, appendonly {appendonly})"
    )
    if policy not in ("noeviction", "?"):
        return Check(
            "warn",
            "redis",
            f"{summary}: an evicting policy can drop sessions and transcripts",
            "CONFIG SET maxmemory-policy noeviction (and in redis.conf)",
        )
    return Check("ok", "redis", summary)


def _read_body(response: Any) -> Deferred[bytes]:
    done: Deferred[bytes] = Deferred()
    response.deliverBody(_Body(done))
    return done


def _short(reason: object) -> str:
    text = str(reason[0] if isinstance(reason, list) and reason else reason)
    return text.splitlines()[0][:160] if text else "no answer"


def wanted_models(config: Config) -> Mapping[str, list[str]]:
    """``provider id -> model ids`` the agents refer to."""
    refs = [config.agents.defaults.model_primary, *config.agents.defaults.model_fallbacks]
    for agent in config.agents.list:
        refs += [agent.model, *(agent.model_fallbacks or ())]
    wanted: dict[str, list[str]] = {}
    for ref in refs:
        if ref and "/" in ref:
            provider, model = ref.split("/", 1)
            if model not in wanted.setdefault(provider, []):
                wanted[provider].append(model)
    return wanted


# -- the command -----------------------------------------------------------------


def offline_checks(
    config_path: str | None, env: Mapping[str, str], listen: Sequence[str]
) -> tuple[list[Check], Config | None]:
    """Everything but the providers; the config when it loaded."""
    from openclaw.config import ConfigError, load_config, startup_problems
    from openclaw.config.loader import resolve_config_path

    path, _ = resolve_config_path(config_path, env)
    path = path.absolute()
    edit = f"edit {path}" if path.exists() else f"create it: openclaw setup --config {path}"
    checks: list[Check] = []
    try:
        loaded = load_config(config_path, env=env)
    except ConfigError as e:
        for problem in e.problems:
            checks.append(Check("FAIL", "config", problem, edit))
        for warning in e.warnings:
            checks.append(Check("warn", "config", warning, edit))
        return checks, None
    config = loaded.config
    problems = startup_problems(config)
    if not path.exists():
        # Not "valid": a new user must learn there is no file (and how to make one).
        checks.append(Check("warn", "config", f"no file at {path}; defaults used", edit))
    elif not problems:
        checks.append(Check("ok", "config", f"{path} is valid"))
    for warning in loaded.warnings:
        checks.append(Check("warn", "config", warning, edit))
    for problem in problems:
        checks.append(Check("FAIL", "config", problem, edit))
    checks.append(check_directory("state dir", config.state_dir, create_hint=True))
    checks += workspace_checks(config)
    checks.append(check_token(config))
    checks.append(check_fd_limit(config.gateway.max_connections))
    host = "127.0.0.1" if config.gateway.bind == "loopback" else "0.0.0.0"
    if config.gateway.custom_bind_host:
        host = config.gateway.custom_bind_host
    port = int(env.get("OPENCLAW_GATEWAY_PORT") or config.gateway.port)
    checks.append(check_port(host, port))
    checks += check_tls(listen)
    return checks, config


def workspace_checks(config: Config) -> list[Check]:
    """Each agent's workspace directory, its tool policy and its sessions' disk use."""
    from openclaw.agents.registry import AgentRegistry

    checks = []
    try:
        agents = AgentRegistry(config).agents
    except Exception as e:
        return [Check("FAIL", "workspaces", f"cannot resolve the agents: {e}", "check agents")]
    for agent in agents:
        checks.append(
            check_directory(f"workspace {agent.id}", Path(agent.workspace), create_hint=True)
        )
    return checks + tool_policy_checks(config) + session_disk_checks(config, agents)


def session_disk_checks(config: Config, agents: Sequence[AgentSpec]) -> list[Check]:
    """Each agent's sessions directory against ``maxDiskBytes`` (file store)."""
    from openclaw.sessions.disk_budget import measure

    maintenance = config.session.maintenance
    if config.session.store != "file":
        return []
    budget = maintenance.max_disk_bytes
    checks = []
    for agent in agents:
        directory = config.state_dir / "agents" / agent.id / "sessions"
        name = f"sessions {agent.id}"
        use = measure(directory)
        if use is None:
            checks.append(Check("FAIL", name, f"cannot read {directory}", f"check {directory}"))
            continue
        summary = f"{_size(use.used_bytes)}, {_size(use.archived_bytes)} of it archives"
        if budget is None:
            checks.append(Check("ok", name, f"{summary}; no disk budget (maxDiskBytes false)"))
        elif use.used_bytes - use.archived_bytes > budget:
            fix = "raise session.maintenance.maxDiskBytes, or delete sessions"
            what = f"{summary}: live sessions alone are over maxDiskBytes ({_size(budget)})"
            checks.append(Check("warn", name, what, fix))
        elif use.used_bytes > budget:
            checks.append(
                Check("ok", name, f"{summary}; over {_size(budget)}: the gateway trims archives")
            )
        else:
            checks.append(Check("ok", name, f"{summary}; budget {_size(budget)}"))
    return checks


def _size(count: int) -> str:
    """Bytes for a person: ``512 B``, ``3.4 MiB``, ``10.0 GiB``."""
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def tool_policy_checks(config: Config) -> list[Check]:
    """An explicit ``tools.allow`` that names no built-in tool stops every run of
    the agents it applies to (as OpenClaw does): say so before the first request."""
    from openclaw.agents.tools.catalog import BUILTIN_TOOLS
    from openclaw.agents.tools.policy import select_tools
    from openclaw.config.model import ToolPolicyConfig

    checks = []
    scopes = [("tools", None)] + [
        (f"agents.list[{a.id}].tools", a.tools.policy) for a in config.agents.list if a.tools
    ]
    for scope, agent_policy in scopes:
        # Each allow-list on its own (an allow-list matches, or not, by itself).
        policy = config.tools.policy if agent_policy is None else ToolPolicyConfig()
        if select_tools(BUILTIN_TOOLS, policy, agent_policy).empty_allowlist is not None:
            checks.append(
                Check(
                    "FAIL",
                    f"{scope}.allow",
                    f"{scope}.allow matches no tool, so every run it applies to stops",
                    "name tools or groups that exist (docs/tools.md), or remove the allow-list",
                )
            )
    return checks


def run_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``openclaw doctor [--config P] [--listen ssl:...] [--offline]``."""
    checks, config = offline_checks(args.config, os.environ, args.listen)
    for check in checks:
        out.write(check.line() + "\n")
    provider_checks: list[Check] = []
    if config is not None and not args.offline:
        from twisted.internet.task import react

        wanted = wanted_models(config)

        async def main(reactor: IReactorTime) -> None:
            redis = await check_redis(reactor, config)
            if redis is not None:
                provider_checks.append(redis)
                out.write(redis.line() + "\n")
            for provider_id, provider in config.models.providers.items():
                check = await check_provider(
                    reactor, provider_id, provider, wanted.get(provider_id, [])
                )
                provider_checks.append(check)
                out.write(check.line() + "\n")

        try:
            react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
        except SystemExit as e:
            if e.code not in (0, None):
                err.write("openclaw doctor: the provider checks did not finish\n")
                return 1
    failed = sum(1 for c in checks + provider_checks if c.status == "FAIL")
    warned = sum(1 for c in checks + provider_checks if c.status == "warn")
    out.write(f"{failed} failed, {warned} warnings\n")
    return 1 if failed else 0


__all__ = ["Check", "check_provider", "check_redis", "run_doctor", "wanted_models"]
