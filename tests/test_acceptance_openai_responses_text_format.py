"""Acceptance of issue 13: a Responses request's ``text.format`` reaches the model.

``client.responses.parse(text_format=Model)`` (and any Responses client asking
for JSON) sends ``text: {"format": {"type": "json_schema", "name", "schema",
"strict"}}``. The gateway dropped it silently, so the model was never told to
answer in the schema and the SDK failed to parse ordinary prose. OpenClaw
refuses any format but ``text``; this gateway forwards the format to the model
as the chat endpoint forwards ``response_format`` (its nested chat shape), and
refuses a malformed one with a 400 naming ``text``.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from openclaw.testing import TEST_TOKEN, GatewayHarness, Reply, http_test_config

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


class TextFormatTests(SynchronousTestCase):
    """The real gateway on a scripted model, over raw HTTP."""

    def setUp(self) -> None:
        """A gateway with /v1/responses enabled."""
        state = self.mktemp()
        self.h = GatewayHarness.create(state, http_test_config(state, responses=True))

    def post(self, **body: Any) -> tuple[int, Any]:
        """POST a responses request; the status and the JSON answer."""
        exchange = self.h.request(
            b"POST", b"/v1/responses", body={"model": "openclaw", **body}, token=TEST_TOKEN
        )
        self.h.run_due()
        status, _headers, raw = exchange.response()
        return status, json.loads(raw)

    def forwarded(self) -> object:
        """The response_format the model was called with."""
        params = self.h.provider.calls[-1].stream_params
        return None if params is None else params.response_format

    def test_json_schema_reaches_the_model(self) -> None:
        """A json_schema format is forwarded in the chat shape the providers send,
        and echoed in the response as sent."""
        self.h.provider.add(Reply.text('{"city": "Oslo"}'))
        text = {"format": {"type": "json_schema", "name": "W", "schema": SCHEMA, "strict": True}}
        status, answer = self.post(input="where?", text=text)
        self.assertEqual(status, 200)
        self.assertEqual(answer["text"], text)
        self.assertEqual(
            self.forwarded(),
            {
                "type": "json_schema",
                "json_schema": {"name": "W", "schema": SCHEMA, "strict": True},
            },
        )

    def test_json_object_and_text(self) -> None:
        """json_object is forwarded; plain text asks nothing of the model."""
        self.h.provider.add(Reply.text("{}"), Reply.text("hi"))
        self.assertEqual(self.post(input="x", text={"format": {"type": "json_object"}})[0], 200)
        self.assertEqual(self.forwarded(), {"type": "json_object"})
        status, answer = self.post(input="x", text={"format": {"type": "text"}})
        self.assertEqual(status, 200)
        self.assertIsNone(self.forwarded())
        self.assertEqual(answer["text"], {"format": {"type": "text"}})

    def test_bad_format_refused(self) -> None:
        """An unknown format type, a schema without a name, or a non-object is a 400."""
        for text in (
            {"format": {"type": "xml"}},
            {"format": {"type": "json_schema", "schema": SCHEMA}},
            {"format": "json"},
            "json",
        ):
            status, answer = self.post(input="x", text=text)
            self.assertEqual(status, 400, text)
            self.assertEqual(answer["error"]["param"], "text")
        self.assertEqual(self.h.provider.calls, [])
