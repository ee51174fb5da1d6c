"""Credential-shaped text never survives into a ProviderError."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import FailureKind, ProviderError
from openclaw.core.redaction import redact_credentials


class RedactionTests(SynchronousTestCase):
    def test_key_shapes_are_masked(self) -> None:
        """sk- keys, bearer tokens and api_key=... assignments are masked."""
        text = "bad key sk-live-123456, Bearer abc.def api_key=XYZ token: t0k"
        self.assertEqual(
            redact_credentials(text), "bad key [redacted], [redacted] [redacted] [redacted]"
        )

    def test_provider_error_message_is_redacted_at_the_source(self) -> None:
        """Every consumer of ProviderError.message (HTTP, WS, logs, transcript)
        sees the masked text."""
        error = ProviderError(FailureKind.AUTH, "Incorrect API key provided: sk-proj-abcdef")
        self.assertNotIn("sk-proj", error.message)
        self.assertNotIn("sk-proj", str(error))
        self.assertNotIn("sk-proj", repr(error))
