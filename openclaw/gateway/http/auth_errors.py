"""The 401 / 429 answers of the OpenAI-compatible endpoints (OpenClaw's bodies)."""

from __future__ import annotations

from twisted.web.server import Request

from openclaw.gateway.auth import AuthDecision
from openclaw.gateway.http.errors import write_openai_error

RATE_LIMITED_MESSAGE = "Too many failed authentication attempts. Please try again later."


def auth_failure_response(request: Request, decision: AuthDecision) -> bytes:
    """Write the refusal for a failed :class:`AuthDecision` and return its body.

    A locked-out caller gets 429 with ``Retry-After`` (whole seconds), even if
    this attempt carried the right secret; anyone else gets a plain 401 that
    does not say whether the credential was missing or wrong.
    """
    if decision.reason == "rate_limited":
        request.setHeader(b"retry-after", str(decision.retry_after_seconds).encode("ascii"))
        return write_openai_error(request, 429, RATE_LIMITED_MESSAGE, "rate_limited")
    return write_openai_error(request, 401, "Unauthorized", "unauthorized")
