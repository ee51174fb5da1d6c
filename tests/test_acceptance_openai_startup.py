"""Acceptance of issue 13: the start-up report names every OpenAI-compatible
endpoint the gateway serves.

``/v1/models`` and ``/v1/embeddings`` answer whenever chat completions or
responses is enabled (as OpenClaw serves them), but the report listed
``/v1/models`` only with chat completions and never ``/v1/embeddings``, so an
operator reading the log of a responses-only gateway was told they were off.
"""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config.model import ChatCompletionsConfig, Config, ResponsesConfig
from openclaw.gateway.startup_report import enabled_endpoints
from openclaw.testing import TEST_TOKEN, GatewayHarness, http_test_config


def with_endpoints(config: Config, *, chat: bool, responses: bool) -> Config:
    """``config`` with the two OpenAI endpoints switched as given."""
    http = attrs.evolve(
        config.gateway.http,
        chat_completions=ChatCompletionsConfig(enabled=chat),
        responses=ResponsesConfig(enabled=responses),
    )
    return attrs.evolve(config, gateway=attrs.evolve(config.gateway, http=http))


class ReportTests(SynchronousTestCase):
    """What the report lists, checked against what really answers."""

    def test_responses_only(self) -> None:
        """With responses alone, models and embeddings are listed and do answer."""
        state = self.mktemp()
        config = with_endpoints(http_test_config(state), chat=False, responses=True)
        names = enabled_endpoints(config)
        for path in ("/v1/responses", "/v1/models", "/v1/embeddings"):
            self.assertIn(path, names)
        self.assertNotIn("/v1/chat/completions", names)
        h = GatewayHarness.create(state, config)
        exchange = h.request(b"GET", b"/v1/models", token=TEST_TOKEN)
        h.run_due()
        self.assertEqual(exchange.response()[0], 200)

    def test_chat_only_lists_embeddings(self) -> None:
        """With chat completions alone, /v1/embeddings is listed too."""
        config = with_endpoints(http_test_config(self.mktemp()), chat=True, responses=False)
        names = enabled_endpoints(config)
        for path in ("/v1/chat/completions", "/v1/models", "/v1/embeddings"):
            self.assertIn(path, names)
        self.assertNotIn("/v1/responses", names)

    def test_both_off(self) -> None:
        """With both off, none of the OpenAI paths is listed."""
        config = with_endpoints(http_test_config(self.mktemp()), chat=False, responses=False)
        self.assertFalse([name for name in enabled_endpoints(config) if name.startswith("/v1/")])
