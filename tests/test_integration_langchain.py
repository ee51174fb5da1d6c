"""LangChain's ``ChatOpenAI`` against the real ``twistd openclaw`` process
(the OpenAI-compatible endpoint's acceptance: it works for LangChain users)."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from openclaw.testing import FakeReply
from tests import integration_support as support
from tests.gateway_process import TOKEN
from tests.integration_support import CLIENT_TIMEOUT


class LangChainTests(support.GatewayTestCase):
    """``invoke`` and ``stream`` through ChatOpenAI, with history and a system message."""

    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        """One agent on the fake upstream."""
        return support.one_fake_agent(port)

    def chat(self, **kwargs: Any) -> ChatOpenAI:
        """A ChatOpenAI client on the gateway, without retries."""
        return ChatOpenAI(
            model="openclaw",
            base_url=f"{self.gateway.base_url}/v1",
            api_key=SecretStr(TOKEN),
            max_retries=0,
            timeout=CLIENT_TIMEOUT,
            **kwargs,
        )

    async def test_invoke(self) -> None:
        """``invoke`` returns the upstream's text; the system message and the
        earlier turns reach the agent's prompt."""
        self.fake.reply = FakeReply(text="Paris, of course.")
        messages = [
            SystemMessage("Answer briefly."),
            HumanMessage("Capital of Italy?"),
            AIMessage("Rome."),
            HumanMessage("And of France?"),
        ]
        answer = await support.in_thread(lambda: self.chat().invoke(messages))
        self.assertEqual(answer.content, "Paris, of course.")
        [sent] = self.fake.requests
        system = sent.body["messages"][0]
        self.assertEqual(system["role"], "system")
        self.assertIn("Answer briefly.", system["content"])
        prompt = sent.body["messages"][-1]["content"]
        self.assertIn("Assistant: Rome.", prompt)
        self.assertIn("User: And of France?", prompt)

    async def test_stream(self) -> None:
        """``stream`` yields the upstream's chunks in order; they join to its text."""
        self.fake.reply = FakeReply(text="one two three four", chunks=4)

        def collect() -> list[str]:
            return [str(chunk.content) for chunk in self.chat().stream("count")]

        pieces = await support.in_thread(collect)
        self.assertEqual("".join(pieces), "one two three four")
        self.assertGreaterEqual(len([p for p in pieces if p]), 2)
