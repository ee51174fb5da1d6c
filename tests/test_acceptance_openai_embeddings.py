"""Acceptance of issue 13: ``POST /v1/embeddings`` on the offline demo provider
cannot be made to block the gateway.

The demo computes its vectors on the reactor thread. ``dimensions`` was only
checked to be positive, so one authenticated request with ``dimensions:
100000000`` made the gateway compute (and hold) a hundred million numbers: it
stopped answering anyone and grew past a gigabyte. The demo now refuses a
vector larger than OpenAI's largest (3072) and more numbers per request than
its default allows (2048 inputs of 256), with an OpenAI-shaped 400.
"""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.embeddings import DEMO_MAX_DIMENSIONS, DEMO_MAX_NUMBERS
from openclaw.config.model import MemorySearchConfig
from openclaw.testing import TEST_TOKEN, GatewayHarness, http_test_config


class DemoLimitTests(SynchronousTestCase):
    """The real gateway with the demo embedding provider, over raw HTTP."""

    def setUp(self) -> None:
        """A gateway whose embeddings come from the demo provider."""
        state = self.mktemp()
        config = attrs.evolve(
            http_test_config(state), memory_search=MemorySearchConfig(provider="demo")
        )
        self.h = GatewayHarness.create(state, config)

    def embed(self, body: dict[str, object]) -> tuple[int, dict[str, object]]:
        """POST ``body`` to /v1/embeddings; the status and JSON answer."""
        exchange = self.h.request(b"POST", b"/v1/embeddings", body=body, token=TEST_TOKEN)
        self.h.run_due()
        status, _headers, _raw = exchange.response()
        answer: dict[str, object] = exchange.json()
        return status, answer

    def test_huge_dimensions_refused(self) -> None:
        """``dimensions`` beyond the demo's maximum is a 400 naming the field."""
        status, answer = self.embed({"model": "openclaw", "input": "a", "dimensions": 100_000_000})
        self.assertEqual(status, 400)
        error = answer["error"]
        assert isinstance(error, dict)
        self.assertEqual((error["type"], error["param"]), ("invalid_request_error", "dimensions"))
        self.assertIn(str(DEMO_MAX_DIMENSIONS), error["message"])

    def test_total_numbers_bounded(self) -> None:
        """2048 inputs of 3072 numbers each are refused; the same inputs at the
        default size, and one input at the largest size, are answered."""
        many = ["x"] * 2048
        status, answer = self.embed({"model": "openclaw", "input": many, "dimensions": 3072})
        self.assertEqual(status, 400)
        error = answer["error"]
        assert isinstance(error, dict)
        self.assertEqual(error["param"], "dimensions")
        self.assertIn(str(DEMO_MAX_NUMBERS), error["message"])
        status, answer = self.embed({"model": "openclaw", "input": many})
        self.assertEqual(status, 200)
        status, answer = self.embed({"model": "openclaw", "input": "a", "dimensions": 3072})
        self.assertEqual(status, 200)
        data = answer["data"]
        assert isinstance(data, list)
        self.assertEqual(len(data[0]["embedding"]), 3072)
