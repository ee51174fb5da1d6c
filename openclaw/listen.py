"""Where the gateway listens: port and bind precedence, as endpoint strings.

Precedence for the port: ``--port`` > ``$OPENCLAW_GATEWAY_PORT`` >
``gateway.port`` > 18789. ``--listen`` endpoint strings override port and bind
entirely.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from openclaw.config.model import DEFAULT_PORT, GatewayConfig


class ListenError(ValueError):
    """A port, bind or endpoint value that cannot be used."""


class StartupFailedError(SystemExit, Exception):
    """Start-up failed under twistd: exits with status 1, its message as the
    one line on stderr. It is an ``Exception`` too so that twistd, when it has
    forked a daemon, reports it to the waiting parent through its status pipe
    (twistd catches only ``Exception`` there; a bare SystemExit left the parent
    waiting forever)."""


def resolve_port(cli_port: int | None, env: Mapping[str, str], gateway: GatewayConfig) -> int:
    """Apply the port precedence."""
    if cli_port is not None:
        return cli_port
    raw = env.get("OPENCLAW_GATEWAY_PORT", "").strip()
    if raw:
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise ListenError(f"OPENCLAW_GATEWAY_PORT must be a port number 1..65535, got {raw!r}")
        return int(raw)
    return gateway.port or DEFAULT_PORT


def resolve_host(cli_bind: str | None, gateway: GatewayConfig) -> str:
    """``loopback`` -> 127.0.0.1, ``lan`` -> 0.0.0.0, ``custom`` -> customBindHost,
    anything else is taken as a host or IP literal."""
    bind = (cli_bind or gateway.bind or "loopback").strip()
    if bind == "loopback":
        return "127.0.0.1"
    if bind == "lan":
        return "0.0.0.0"
    if bind == "custom":
        if not gateway.custom_bind_host:
            raise ListenError("gateway.bind is custom but gateway.customBindHost is not set")
        return gateway.custom_bind_host
    if not bind:
        raise ListenError("bind address is empty")
    return bind


def tcp_endpoint(port: int, host: str) -> str:
    """A server endpoint string for ``host:port`` (IPv6 literals escaped)."""
    try:
        is_v6 = isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        is_v6 = False
    if is_v6:
        return f"tcp6:{port}:interface={host.replace(':', chr(92) + ':')}"
    return f"tcp:{port}:interface={host}"


def listen_endpoints(
    *,
    cli_listen: Sequence[str],
    cli_port: int | None,
    cli_bind: str | None,
    env: Mapping[str, str],
    gateway: GatewayConfig,
) -> list[str]:
    """The endpoint strings to listen on, in order."""
    if cli_listen:
        return list(cli_listen)
    port = resolve_port(cli_port, env, gateway)
    return [tcp_endpoint(port, resolve_host(cli_bind, gateway))]


def endpoint_is_loopback(description: str) -> bool:
    """True for UNIX sockets and TCP endpoints bound to a loopback interface.

    An endpoint without ``interface=`` listens on every address: not loopback.
    """
    kind, _, rest = description.partition(":")
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6", "ssl"):
        return False
    # Twisted keeps the last of repeated keywords: every one must be loopback
    # ("interface=127.0.0.1:interface=0.0.0.0" listens on every address).
    hosts = [
        part[len("interface=") :].replace("\\:", ":")
        for part in _split_unescaped(rest)
        if part.startswith("interface=")
    ]
    return bool(hosts) and all(_is_loopback_host(host) for host in hosts)


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_unescaped(text: str) -> list[str]:
    parts: list[str] = []
    current = []
    escaped = False
    for ch in text:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts
