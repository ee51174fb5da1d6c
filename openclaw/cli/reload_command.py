"""``openclaw gateway reload``: ask a running gateway to re-read its config.

The ``gateway.reload`` method (scope ``operator.admin``) does what SIGHUP
does; this prints what changed, what needs a restart, or why the file was
refused (the gateway then keeps running with its old config).
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from twisted.internet.interfaces import IReactorTime

from openclaw.cli.ws_client import (
    GatewayCallError,
    Target,
    call_gateway,
    run_main,
    target_from_args,
)


def run_reload(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Call ``gateway.reload``; exit 1 when it was refused or unreachable."""
    target = target_from_args(args, err, "openclaw gateway reload")
    if target is None:
        err.write(
            "  nothing was asked of the gateway (its address and secret are read from the"
            " config); with --url and --token it reads and judges the file itself\n"
        )
        return 1

    async def main(reactor: IReactorTime) -> int:
        return await request_reload(reactor, target, args.timeout, out, err)

    return run_main(main)


async def request_reload(
    reactor: IReactorTime, target: Target, timeout: float, out: TextIO, err: TextIO
) -> int:
    """Call ``gateway.reload`` at ``target`` and print what it did; the exit status."""
    try:
        frame = await call_gateway(
            reactor, target, "gateway.reload", {}, timeout_seconds=timeout,
            scopes=["operator.admin"],
        )  # fmt: skip
    except GatewayCallError as e:
        err.write(f"openclaw gateway reload: {e}\n")
        if "unauthorized" in str(e).lower():
            # The usual cause: the file already holds a rotated secret, which
            # the gateway does not know until this reload.
            err.write(
                "  the gateway still checks the token or password it runs with: after changing"
                " it in the file, pass the old one (--token/--password) or send SIGHUP\n"
            )
        return 1
    if not frame.get("ok"):
        error: Any = frame.get("error") or {}
        err.write(f"openclaw gateway reload: {error.get('message') or 'refused'}\n")
        return 1
    payload: Any = frame.get("payload") or {}
    changed = ", ".join(payload.get("changed") or []) or "nothing changed"
    out.write(f"reloaded {payload.get('path')}: {changed}\n")
    for setting in payload.get("restartNeeded") or []:
        out.write(f"  {setting} changed: applies after a restart\n")
    for warning in payload.get("warnings") or []:
        err.write(f"warning: {warning}\n")
    return 0


__all__ = ["request_reload", "run_reload"]
