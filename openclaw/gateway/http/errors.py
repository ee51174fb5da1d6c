"""HTTP error responses in OpenAI's shape.

Every JSON error the gateway writes is ``{"error": {"message", "type", "param",
"code"}}`` so OpenAI SDKs raise the right exception with the right fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from twisted.web.server import Request

from openclaw.core.fastjson import dumps_escaped
from openclaw.core.ids import random_hex

JSON_CONTENT_TYPE = b"application/json; charset=utf-8"

#: Headers every response carries, including those written before dispatch.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # Answers carry conversations: no shared or browser cache keeps them. The
    # Control UI's assets set their own caching over this.
    (b"cache-control", b"no-store"),
)
#: Reason phrases for the statuses the gateway answers (Twisted lacks 429, 431).
REASON_PHRASES: Final = {
    400: b"Bad Request",
    401: b"Unauthorized",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    414: b"URI Too Long",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
_SANE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:@/+=-]{1,128}$")


def choose_request_id(supplied: bytes | None) -> bytes:
    """Echo a well-formed client ``x-request-id``; otherwise make a fresh one."""
    if supplied is not None and _SANE_REQUEST_ID.match(supplied):
        return supplied
    return b"req_" + random_hex(16).encode("ascii")


def openai_error(
    message: str,
    error_type: str,
    *,
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The OpenAI error object (``param`` and ``code`` always present, maybe null)."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


class ChatRequestError(Exception):
    """A request the endpoint refuses: status plus the OpenAI error fields."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` object."""
        return openai_error(self.message, self.error_type, param=self.param, code=self.code)


def json_bytes(body: object) -> bytes:
    """Compact UTF-8 JSON, the one encoding used for every HTTP body we write
    (text with a lone surrogate is escaped, as OpenClaw's ``JSON.stringify``
    writes it, rather than failing the answer)."""
    return dumps_escaped(body)


def write_json(request: Request, status: int, body: object) -> bytes:
    """Set status, content type and length for a JSON body and return the bytes.

    The route dispatcher (or Klein) writes the returned bytes; callers return
    this value from a route.
    """
    data = json_bytes(body)
    request.setResponseCode(status)
    request.setHeader(b"content-type", JSON_CONTENT_TYPE)
    request.setHeader(b"content-length", str(len(data)).encode("ascii"))
    return data


def write_refusal(request: Request, error: ChatRequestError) -> bytes:
    """Write the response for a request an endpoint refused and return its body."""
    return write_json(request, error.status, error.body())


def write_openai_error(
    request: Request,
    status: int,
    message: str,
    error_type: str,
    *,
    param: str | None = None,
    code: str | None = None,
) -> bytes:
    """Write an OpenAI-shaped error response and return its body."""
    return write_json(request, status, openai_error(message, error_type, param=param, code=code))


def not_found(request: Request) -> bytes:
    """404 for an unknown path (or a disabled endpoint)."""
    return write_openai_error(request, 404, "Not Found", "invalid_request_error", code="not_found")


def disabled_not_found(request: Request) -> bytes:
    """OpenClaw's answer for a switched-off endpoint: plain-text ``Not Found``."""
    request.setResponseCode(404)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"content-length", b"9")
    return b"Not Found"


def method_not_allowed(request: Request, allow: bytes) -> bytes:
    """405 with ``Allow``, decided before authentication (as OpenClaw does)."""
    request.setHeader(b"allow", allow)
    return write_openai_error(
        request, 405, "Method Not Allowed", "invalid_request_error", code="method_not_allowed"
    )


def raw_error_response(
    status: int,
    message: str,
    *,
    request_id: bytes | None = None,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> bytes:
    """A complete HTTP/1.1 error response (head and OpenAI-shaped body) that
    closes the connection.

    For answers written straight to the transport, before (or instead of) a
    request being dispatched: refused bodies, oversized headers, timeouts,
    the connection cap.
    """
    body = json_bytes(openai_error(message, error_type, code=code))
    head = [b"HTTP/1.1 %d %s" % (status, REASON_PHRASES.get(status, b"Error"))]
    head += [name + b": " + value for name, value in SECURITY_HEADERS]
    head += [name + b": " + value for name, value in extra_headers]
    head += [
        b"x-request-id: " + (request_id or choose_request_id(None)),
        b"content-type: " + JSON_CONTENT_TYPE,
        b"content-length: %d" % len(body),
        b"connection: close",
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body
