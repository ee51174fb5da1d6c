"""The error a shared state backend raises while it cannot be reached.

Defined at the bottom layer so every ingress can map it without naming the
backend: HTTP answers ``503`` with ``Retry-After``, the WebSocket an
``UNAVAILABLE`` error with ``retryAfterMs``. The backend (Redis) reconnects
by itself; the client is told to try again shortly.
"""

from __future__ import annotations

import math

#: What a refused client is told to wait, in seconds.
RETRY_AFTER_SECONDS = 1.0


class SharedStateUnavailableError(ConnectionError):
    """The shared session state (Redis) is unreachable now; retry later."""

    retry_after_seconds: float = RETRY_AFTER_SECONDS

    @property
    def retry_after_ms(self) -> int:
        """``retryAfterMs`` for a WebSocket error."""
        return max(1, math.ceil(self.retry_after_seconds * 1000))

    @property
    def retry_after_header(self) -> int:
        """``Retry-After`` for HTTP: whole seconds, at least 1."""
        return max(1, math.ceil(self.retry_after_seconds))


class TurnNotSavedError(SharedStateUnavailableError):
    """The session store could not write a turn (a full disk, an I/O error):
    the answer must not be reported as a success, and a retry may work once
    the operator has made room. Answered like an unreachable store."""

    retry_after_seconds: float = 5.0
