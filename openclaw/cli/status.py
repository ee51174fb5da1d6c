"""``openclaw status``: what a running gateway reports about itself.

Two calls over the WebSocket protocol (``status`` and ``agents.list``) with
the same target resolution as ``gateway call`` (flags, environment, config);
printed as a short summary, or as one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from twisted.internet.interfaces import IReactorTime

from openclaw.cli.ws_client import (
    GatewayCallError,
    Target,
    call_gateway,
    run_main,
    target_from_args,
)


def format_uptime(ms: int) -> str:
    """``3d 4h 5m 6s`` style, largest unit first, zero units left out."""
    seconds = max(0, ms // 1000)
    parts = []
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    parts.append(f"{seconds}s")
    return " ".join(parts)


def summary_lines(status: dict[str, Any], agents: dict[str, Any], url: str) -> list[str]:
    """The human-readable report."""
    sessions = status.get("sessions") or {}
    runs = status.get("activeRuns") or []
    lines = [
        f"gateway:     {url} (openclaw-twisted {status.get('version', '?')}, "
        f"pid {status.get('pid', '?')})",
        f"uptime:      {format_uptime(int(status.get('uptimeMs') or 0))}",
        f"connections: {status.get('connections', 0)} WebSocket client(s)",
        f"sessions:    {sessions.get('count', 0)}",
        f"active runs: {len(runs)}",
    ]
    for run in runs:
        lines.append(f"  - {run.get('runId')} (agent {run.get('agentId')})")
    listed = agents.get("agents") or []
    default = agents.get("defaultId")
    lines.append(f"agents:      {len(listed)}")
    for agent in listed:
        mark = " (default)" if agent.get("id") == default else ""
        name = f" {agent['name']!r}" if agent.get("name") else ""
        lines.append(f"  - {agent.get('id')}{name}{mark}")
    return lines


def run_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``openclaw status [--json] [--url U] [--token T]``."""
    target = target_from_args(args, err, "openclaw status")
    if target is None:
        return 1

    async def main(reactor: IReactorTime) -> int:
        return await report_status(reactor, target, args.timeout, args.json, out, err)

    return run_main(main)


async def report_status(
    reactor: IReactorTime, target: Target, timeout: float, as_json: bool, out: TextIO, err: TextIO
) -> int:
    """Ask the gateway at ``target`` and print the report; the exit status."""
    try:
        status = await _payload(reactor, target, "status", timeout)
        agents = await _payload(reactor, target, "agents.list", timeout)
    except GatewayCallError as e:
        err.write(f"openclaw status: {e}\n")
        return 1
    if as_json:
        out.write(json.dumps({"url": target.url, "status": status, "agents": agents}) + "\n")
    else:
        out.write("\n".join(summary_lines(status, agents, target.url)) + "\n")
    return 0


async def _payload(reactor: IReactorTime, target: Target, method: str, timeout: float) -> Any:
    frame = await call_gateway(reactor, target, method, {}, timeout_seconds=timeout)
    if not frame.get("ok"):
        error = frame.get("error") or {}
        raise GatewayCallError(f"{method}: {error.get('message') or 'refused'}")
    payload = frame.get("payload")
    return payload if isinstance(payload, dict) else {}


__all__ = ["format_uptime", "report_status", "run_status", "summary_lines"]
