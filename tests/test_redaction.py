"""Credential-shaped text never survives into a ProviderError."""

from __future__ import annotations

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.tools._common import inline_runner
from openclaw.agents.tools.base import ToolContext
from openclaw.agents.tools.files import ReadTool
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

    def test_vendor_tokens_and_private_keys_are_masked(self) -> None:
        """Well-known token formats and PEM private keys are masked wherever
        redaction runs (an upstream error quoting one, a .env read)."""
        for token in (
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "github_pat_11ABCDEFG0123456789_abcdefghij",
            "AKIAIOSFODNN7EXAMPLE",
            "xoxb-1234567890-abcdefghij",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc123signature",
            "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXX",
            "sk_live_abcdefghijklmnop",
            "hf_abcdefghijklmnopqrst",
        ):
            with self.subTest(token=token):
                self.assertEqual(redact_credentials(f"got {token} here"), "got [redacted] here")
        pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY-----"
        self.assertEqual(redact_credentials(f"key:\n{pem}\nend"), "key:\n[redacted]\nend")
        self.assertEqual(
            redact_credentials("ghp_short and AKIA-ish words"), "ghp_short and AKIA-ish words"
        )


class EnvFileReadTests(SynchronousTestCase):
    def test_read_masks_multiline_keys_and_token_formats_in_env_files(self) -> None:
        """read of a .env file: a quoted multi-line private key is masked whole,
        token formats under any variable name too, an unclosed quote to the end
        of its line; harmless variables stay."""
        workspace = FilePath(self.mktemp())
        workspace.makedirs()
        workspace.child("keys.env").setContent(
            b'PRIVATE_KEY="-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n'
            b'-----END RSA PRIVATE KEY-----"\nAWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n'
            b"GITHUB_PAT=ghp_abcdefghijklmnopqrstuvwxyz0123456789\n"
            b'JWT=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc123signature\nAPI_SECRET="abc def\n'
            b"PORT=8080\n"
        )
        context = ToolContext("main", "k", "r", "c", workspace)
        result = self.successResultOf(ReadTool(inline_runner).run({"path": "keys.env"}, context))
        self.assertEqual(
            result.content,
            "PRIVATE_KEY=[redacted]\nAWS_ACCESS_KEY_ID=[redacted]\nGITHUB_PAT=[redacted]\n"
            "JWT=[redacted]\nAPI_SECRET=[redacted]\nPORT=8080\n",
        )
