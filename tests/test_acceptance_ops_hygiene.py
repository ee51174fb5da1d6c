"""Acceptance (issue 17): a client hammering the WebSocket pre-auth limit
cannot make the gateway write one warning per refused upgrade (the access
line already records each one); the warning comes once per episode."""

from __future__ import annotations

from typing import Any

from attrs import define
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from openclaw.gateway.hygiene import PreAuthSocketLimit


@define
class _Conn:
    client_address: str
    phase: str = "challenged"


class PreAuthWarningTests(SynchronousTestCase):
    def test_one_warning_per_address_until_it_drops_below_the_limit(self) -> None:
        """100 refused upgrades from one address: one warning; after the
        address is under its limit again, the next episode warns once more."""
        warnings: list[LogEvent] = []

        @implementer(ILogObserver)
        def keep(event: LogEvent) -> None:
            if "too many unauthenticated sockets" in str(event.get("log_format")):
                warnings.append(event)

        globalLogPublisher.addObserver(keep)
        self.addCleanup(globalLogPublisher.removeObserver, keep)
        conns = [_Conn("9.9.9.9"), _Conn("9.9.9.9")]
        request: Any = object()
        limit = PreAuthSocketLimit(
            max_per_address=2, connections=lambda: conns, client_address=lambda _r: "9.9.9.9"
        )
        refused = [limit.exceeded(request) for _ in range(100)]
        self.assertTrue(all(refused))
        self.assertEqual(len(warnings), 1)
        conns.pop()
        self.assertFalse(limit.exceeded(request))
        conns.append(_Conn("9.9.9.9"))
        self.assertTrue(limit.exceeded(request))
        self.assertEqual(len(warnings), 2)
