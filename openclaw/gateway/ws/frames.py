"""OpenClaw WebSocket frames: parsing client requests, encoding responses and events.

Every frame is a JSON text message. Clients send ``req`` frames; the gateway
answers each with ``res`` frames carrying the same ``id`` and pushes ``event``
frames. An error ``res`` always carries a non-empty ``code`` and ``message``:
OpenClaw's CLI silently drops an error frame without a message and then hangs
until its own timeout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from attrs import frozen

from openclaw.core import textguard
from openclaw.core.textguard import MAX_JSON_DEPTH, JsonDepthError

# Error codes of OpenClaw's protocol (``error-codes.ts``).
INVALID_REQUEST: Final = "INVALID_REQUEST"
UNAVAILABLE: Final = "UNAVAILABLE"
AGENT_TIMEOUT: Final = "AGENT_TIMEOUT"
NOT_PAIRED: Final = "NOT_PAIRED"
NOT_LINKED: Final = "NOT_LINKED"
FORBIDDEN: Final = "FORBIDDEN"

#: The protocol version this gateway speaks.
PROTOCOL_VERSION: Final = 4
#: ``gateway probe`` advertises 3..4; older clients are refused.
MINIMUM_PROBE_PROTOCOL: Final = 3

#: Request ids longer than this are refused; they are echoed in every answer.
MAX_REQUEST_ID_LENGTH: Final = 256
#: Method names longer than this cannot be real methods.
MAX_METHOD_LENGTH: Final = 128


class RequestError(Exception):
    """A request failed in a way the client is told about with an error ``res``.

    ``payload`` is sent next to ``error`` (the ``agent`` method's final failure
    carries ``{runId, status, summary}`` there).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        retryable: bool | None = None,
        retry_after_ms: int | None = None,
        payload: Any = None,
    ) -> None:
        super().__init__(message)
        if not code or not message:
            raise ValueError("error frames need a non-empty code and message")
        self.code = code
        self.message = message
        self.details = dict(details) if details is not None else None
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms
        self.payload = payload

    def error_shape(self) -> dict[str, Any]:
        """The ``error`` object of a ``res`` frame."""
        shape: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            shape["details"] = self.details
        if self.retryable is not None:
            shape["retryable"] = self.retryable
        if self.retry_after_ms is not None:
            shape["retryAfterMs"] = max(0, int(self.retry_after_ms))
        return shape

    def __repr__(self) -> str:
        return f"RequestError({self.code!r}, {self.message!r})"


def invalid_params(method: str, reason: str) -> RequestError:
    """``invalid <method> params: <reason>``, as the real gateway words it."""
    return RequestError(INVALID_REQUEST, f"invalid {method} params: {reason}")


class FrameError(Exception):
    """A client frame that is not a usable request.

    ``request_id`` is set when the frame had a usable id, so the error can be
    answered with a ``res``; otherwise it is answered with an ``error`` event.
    """

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


@frozen
class RequestFrame:
    """A parsed ``req`` frame; ``params`` is ``{}`` when the client sent none."""

    id: str
    method: str
    params: Mapping[str, Any]


def parse_request(payload: bytes, max_depth: int = MAX_JSON_DEPTH) -> RequestFrame:
    """Parse one client text message into a request, or raise FrameError.

    The text ingress rule applies (:mod:`openclaw.core.textguard`): lone
    surrogates become U+FFFD and nesting past ``max_depth`` is refused with
    the path (answered with a ``res`` when the frame's ``id`` is usable).
    ``params`` may be absent or null (``openclaw health`` sends none). Params
    that are present but not an object are left to the method to refuse, so
    the client still gets a ``res`` for its id; here they become ``{}`` plus
    a marker the dispatcher checks.
    """
    try:
        data = textguard.loads(payload, max_depth=max_depth)
    except JsonDepthError as e:
        # A 1 KB "[[[[..." frame nests past Python's limit, and deep params
        # would crash whatever encodes them later: refuse it like any other
        # malformed frame instead of closing the connection with 1011.
        parsed = e.value
        raise FrameError(
            f"malformed frame: {_short(str(e))}",
            _request_id(parsed) if isinstance(parsed, dict) else None,
        ) from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, NaN
        raise FrameError(f"malformed frame: {_short(str(e))}") from None
    if not isinstance(data, dict):
        raise FrameError("malformed frame: expected a JSON object")
    request_id = _request_id(data)
    if data.get("type") != "req":
        raise FrameError('invalid frame: type must be "req"', request_id)
    if request_id is None:
        raw_id = data.get("id")
        if isinstance(raw_id, str) and len(raw_id) > MAX_REQUEST_ID_LENGTH:
            raise FrameError(f"invalid frame: id is longer than {MAX_REQUEST_ID_LENGTH} characters")
        raise FrameError("invalid frame: id must be a non-empty string")
    method = data.get("method")
    if not isinstance(method, str) or not method or len(method) > MAX_METHOD_LENGTH:
        raise FrameError("invalid frame: method must be a non-empty string", request_id)
    params = data.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise FrameError(f"invalid {method} params: params must be an object", request_id)
    return RequestFrame(id=request_id, method=method, params=params)


def _request_id(data: Mapping[str, Any]) -> str | None:
    """The frame's ``id`` when it is usable as the answer's id."""
    raw_id = data.get("id")
    if isinstance(raw_id, str) and 0 < len(raw_id) <= MAX_REQUEST_ID_LENGTH:
        return raw_id
    return None


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def dumps_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; text a client sent with lone surrogates is escaped, not fatal."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def encode(frame: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON for one frame."""
    return dumps_json(frame)


def response_ok(request_id: str, payload: Any) -> dict[str, Any]:
    """A successful ``res``."""
    return {"type": "res", "id": request_id, "ok": True, "payload": payload}


def response_error(request_id: str, error: RequestError) -> dict[str, Any]:
    """A failed ``res``; the error's payload (if any) rides along."""
    frame: dict[str, Any] = {
        "type": "res",
        "id": request_id,
        "ok": False,
        "error": error.error_shape(),
    }
    if error.payload is not None:
        frame["payload"] = error.payload
    return frame


def event_frame(event: str, payload: Any, seq: int | None = None) -> dict[str, Any]:
    """An ``event`` frame; ``seq`` is the per-connection counter when given."""
    frame: dict[str, Any] = {"type": "event", "event": event, "payload": payload}
    if seq is not None:
        frame["seq"] = seq
    return frame


def encode_event_with_payload_json(event: str, payload_json: bytes, seq: int | None) -> bytes:
    """Encode an event whose payload is already JSON.

    Broadcast events are serialised once and wrapped per connection, since
    only the frame-level ``seq`` differs between connections.
    """
    head = b'{"type":"event","event":' + json.dumps(event).encode("utf-8") + b',"payload":'
    if seq is None:
        return head + payload_json + b"}"
    return head + payload_json + b',"seq":' + str(seq).encode("ascii") + b"}"
