"""``openclaw gateway run``: the ``openclaw`` twistd plugin under ``twist``,
with this project's log formats.

``twist``'s own ``--log-format json`` writes Twisted's event dictionaries
(``log_format``, ``log_source``, ``log_logger``...). Here ``json`` is one
flat object per line (:func:`openclaw.core.logformat.flat_json_observer`);
``text`` is Twisted's usual text line.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.logger import textFileLogObserver

from openclaw.core.logformat import flat_json_observer


def run_gateway(plugin_argv: Sequence[str], log_format: str) -> int:
    """Parse like ``twist openclaw ...`` and run until stopped."""
    from twisted.application.twist._twist import Twist

    options = Twist.options(["twist", "openclaw", *plugin_argv])
    options["fileLogObserverFactory"] = (
        flat_json_observer if log_format == "json" else textFileLogObserver
    )
    sub_command = options.subCommand
    assert sub_command is not None
    service = Twist.service(plugin=options.plugins[sub_command], options=options.subOptions)
    Twist.startService(options["reactor"], service)
    Twist.run(options)
    return 0


__all__ = ["run_gateway"]
