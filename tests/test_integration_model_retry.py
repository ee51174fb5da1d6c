"""The same-model retry in the real ``twistd openclaw`` process: an upstream
that fails for a moment is retried after a backoff (OpenClaw's recovery), and
the ``openai`` SDK (its own retries off) sees only the answer."""

from __future__ import annotations

from typing import Any

from twisted.internet.threads import deferToThread

from openclaw.testing import FakeReply
from tests import integration_support as support


class ModelRetryTests(support.GatewayTestCase):
    """The default configuration: retries on."""

    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        return support.one_fake_agent(port)

    async def test_a_503_then_an_answer_reaches_the_client_as_the_answer(self) -> None:
        self.fake.enqueue(FakeReply.failing(503, "overloaded, try later"), FakeReply(text="fine"))
        client = self.openai_client()
        completion = await deferToThread(
            lambda: client.chat.completions.create(
                model="openclaw", messages=[{"role": "user", "content": "hi"}]
            )
        )
        self.assertEqual(completion.choices[0].message.content, "fine")
        self.assertEqual(len(self.fake.requests), 2)
        self.assertEqual(self.fake.requests[0].body, self.fake.requests[1].body)

    async def test_a_streamed_429_is_retried_after_its_retry_after(self) -> None:
        self.fake.enqueue(FakeReply.rate_limited("1"), FakeReply(text="streamed after"))
        client = self.openai_client()

        def stream() -> str:
            chunks = client.chat.completions.create(
                model="openclaw", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        self.assertEqual(await deferToThread(stream), "streamed after")
        self.assertEqual(len(self.fake.requests), 2)
        self.assertIn("retrying in", self.gateway.log)
