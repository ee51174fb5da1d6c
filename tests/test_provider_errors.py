"""Failure classification: status + upstream body -> FailureKind."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.error import ConnectionRefusedError, DNSLookupError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseFailed

from openclaw.agents.providers.errors import (
    MAX_MESSAGE_CHARS,
    classify_http_error,
    classify_payload,
    config_secrets,
    connection_error,
    parse_retry_after,
    redact,
)
from openclaw.agents.types import FailureKind

NOW = 1_700_000_000.0


def openai(message: str, type: str | None = None, code: str | None = None) -> bytes:
    """An OpenAI-shaped error body."""
    return json.dumps({"error": {"message": message, "type": type, "code": code}}).encode()


def anthropic(type: str, message: str) -> bytes:
    """An Anthropic-shaped error body."""
    return json.dumps({"type": "error", "error": {"type": type, "message": message}}).encode()


def classify(status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    """Classify with a fixed clock."""
    return classify_http_error(status, body, headers or {}, now=NOW)


class ClassifyHTTPTests(SynchronousTestCase):
    """classify_http_error maps each documented case to its FailureKind."""

    def test_status_table(self) -> None:
        """Each status (with a neutral message) maps to its kind."""
        cases = {
            401: FailureKind.AUTH,
            403: FailureKind.PERMISSION,
            402: FailureKind.BILLING,
            404: FailureKind.MODEL_NOT_FOUND,
            400: FailureKind.FORMAT,
            422: FailureKind.FORMAT,
            408: FailureKind.TIMEOUT,
            504: FailureKind.TIMEOUT,
            429: FailureKind.RATE_LIMIT,
            529: FailureKind.OVERLOADED,
            500: FailureKind.SERVER_ERROR,
            502: FailureKind.SERVER_ERROR,
            503: FailureKind.SERVER_ERROR,
        }
        for status, kind in cases.items():
            err = classify(status, openai("something went wrong"))
            self.assertEqual((err.kind, err.status), (kind, status), status)

    def test_openai_codes(self) -> None:
        """OpenAI codes refine the status: quota is billing, model_not_found,
        context_length_exceeded."""
        err = classify(
            429,
            openai("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
        )
        self.assertEqual((err.kind, err.code), (FailureKind.BILLING, "insufficient_quota"))
        err = classify(
            400, openai("The model does not exist", "invalid_request_error", "model_not_found")
        )
        self.assertEqual((err.kind, err.code), (FailureKind.MODEL_NOT_FOUND, "model_not_found"))
        err = classify(400, openai("too long", "invalid_request_error", "context_length_exceeded"))
        self.assertEqual(err.kind, FailureKind.CONTEXT_OVERFLOW)

    def test_context_wording(self) -> None:
        """Context-length wording on a 400 is a context overflow, not a format error."""
        for message in (
            "This model's maximum context length is 8192 tokens",
            "prompt is too long: 250000 tokens > 200000 maximum",
        ):
            self.assertEqual(classify(400, openai(message)).kind, FailureKind.CONTEXT_OVERFLOW)
        self.assertEqual(
            classify(400, anthropic("invalid_request_error", "prompt is too long")).kind,
            FailureKind.CONTEXT_OVERFLOW,
        )

    def test_anthropic_shapes(self) -> None:
        """Anthropic's error type becomes the code; overloaded_error is OVERLOADED."""
        err = classify(529, anthropic("overloaded_error", "Overloaded"))
        self.assertEqual(
            (err.kind, err.code, err.message),
            (FailureKind.OVERLOADED, "overloaded_error", "Overloaded"),
        )
        err = classify(401, anthropic("authentication_error", "invalid x-api-key"))
        self.assertEqual((err.kind, err.code), (FailureKind.AUTH, "authentication_error"))
        err = classify(
            400,
            anthropic("invalid_request_error", "Your credit balance is too low to access the API"),
        )
        self.assertEqual(err.kind, FailureKind.BILLING)

    def test_ollama_string_error_and_plain_text(self) -> None:
        """``{"error": "..."}`` (Ollama) and non-JSON bodies keep their text."""
        err = classify(404, b'{"error":"model \\"llama9\\" not found, try pulling it first"}')
        self.assertEqual(err.kind, FailureKind.MODEL_NOT_FOUND)
        self.assertIn("llama9", err.message)
        err = classify(502, b"<html>Bad Gateway</html>")
        self.assertEqual(
            (err.kind, err.message), (FailureKind.SERVER_ERROR, "<html>Bad Gateway</html>")
        )
        self.assertEqual(classify(500, b"").message, "upstream returned HTTP 500")

    def test_message_is_bounded_and_redacted(self) -> None:
        """The message is cut to ~500 characters and never contains the API key."""
        body = openai("Incorrect API key provided: sk-secret-123456. " + "x" * 2000)
        err = classify_http_error(401, body, {}, now=NOW, secrets=["sk-secret-123456"])
        self.assertNotIn("sk-secret-123456", err.message)
        self.assertIn("***", err.message)
        self.assertLessEqual(len(err.message), MAX_MESSAGE_CHARS)

    def test_retry_after_on_429(self) -> None:
        """A 429 carries retry-after seconds; other kinds do not."""
        err = classify(429, openai("slow down"), {"retry-after": "7"})
        self.assertEqual((err.kind, err.retry_after_seconds), (FailureKind.RATE_LIMIT, 7.0))
        err = classify(500, openai("boom"), {"retry-after": "7"})
        self.assertIsNone(err.retry_after_seconds)


class RetryAfterTests(SynchronousTestCase):
    """parse_retry_after understands the three header forms."""

    def test_seconds(self) -> None:
        """Plain (possibly fractional) seconds."""
        self.assertEqual(parse_retry_after({"retry-after": "2.5"}, NOW), 2.5)

    def test_http_date(self) -> None:
        """An HTTP-date is converted relative to ``now``; a past date is zero."""
        self.assertEqual(
            parse_retry_after({"retry-after": "Tue, 14 Nov 2023 22:13:40 GMT"}, NOW), 20.0
        )
        self.assertEqual(
            parse_retry_after({"retry-after": "Tue, 14 Nov 2023 22:00:00 GMT"}, NOW), 0.0
        )

    def test_milliseconds_win(self) -> None:
        """``retry-after-ms`` is more precise and preferred."""
        headers = {"retry-after-ms": "1500", "retry-after": "9"}
        self.assertEqual(parse_retry_after(headers, NOW), 1.5)

    def test_garbage(self) -> None:
        """Unparseable or negative values give None."""
        for value in ("soon", "-3", ""):
            self.assertIsNone(parse_retry_after({"retry-after": value}, NOW), value)
        self.assertIsNone(parse_retry_after({}, NOW))


class OtherClassifierTests(SynchronousTestCase):
    """Mid-stream frames, connection failures and redaction."""

    def test_mid_stream_frames(self) -> None:
        """Without a status, the error type or code decides."""
        cases = [
            ({"error": {"message": "m", "type": "server_error"}}, FailureKind.SERVER_ERROR),
            (
                {"type": "error", "error": {"type": "overloaded_error", "message": "m"}},
                FailureKind.OVERLOADED,
            ),
            (
                {"type": "error", "error": {"type": "rate_limit_error", "message": "m"}},
                FailureKind.RATE_LIMIT,
            ),
            ({"error": {"message": "m", "code": 400}}, FailureKind.FORMAT),
            ({"error": {"message": "context_length_exceeded"}}, FailureKind.CONTEXT_OVERFLOW),
            ({"error": {"message": "m", "type": "mystery"}}, FailureKind.SERVER_ERROR),
        ]
        for payload, kind in cases:
            err = classify_payload(payload)
            self.assertEqual((err.kind, err.status), (kind, None), payload)

    def test_connection_errors(self) -> None:
        """Refused, DNS and lost-during-response failures are CONNECTION."""
        for exc in (
            ConnectionRefusedError(),
            DNSLookupError("nowhere.invalid"),
            ResponseFailed([Failure(ConnectionRefusedError())]),
        ):
            err = connection_error(exc)
            self.assertEqual(err.kind, FailureKind.CONNECTION)
            self.assertIsNone(err.status)
        self.assertIn("resolve", connection_error(DNSLookupError("x")).message)

    def test_config_secrets(self) -> None:
        """The API key and every configured header value are secrets, whatever
        the header is called (longest first, so one containing another is
        masked whole)."""
        secrets = config_secrets(
            "sk-1", {"api-key": "az-1", "X-Auth-Token": "tok", "X-Upstream-Pass": "openclaw"}
        )
        self.assertEqual(secrets, ("openclaw", "sk-1", "az-1", "tok"))
        self.assertEqual(config_secrets(None, {}), ())

    def test_redact_ignores_short_or_missing_secrets(self) -> None:
        """Empty and very short secrets are not replaced (they would mangle text)."""
        self.assertEqual(redact("abc key", [None, "", "k"]), "abc key")
        self.assertEqual(redact("the key sk-1234", ["sk-1234"]), "the key ***")
