"""``/v1/responses`` and ``/v1/embeddings`` against the real ``twistd openclaw``
process, through the official ``openai`` SDK, LangChain and raw HTTP.

The default agent runs on the offline demo provider (as ``make run`` does);
agent ``up`` and ``x-openclaw-model`` reach a fake OpenAI-compatible upstream
in this process, which also serves ``/v1/embeddings``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2 as httpx
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from openai import BadRequestError, OpenAI
from openai.types.responses import FunctionToolParam
from pydantic import SecretStr
from twisted.web.server import Request

from openclaw.agents.embeddings import DEMO_DIMENSIONS, demo_vector
from openclaw.testing import FakeOpenAIUpstream, FakeReply
from tests import integration_support as support
from tests.gateway_process import TOKEN
from tests.integration_support import AUTH, CLIENT_TIMEOUT, UPSTREAM_KEY

AGENT_PROMPT = "You are Zed, the agent under test."
WEATHER: list[FunctionToolParam] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": False,
    }
]


class EmbeddingUpstream(FakeOpenAIUpstream):
    """The fake upstream, also answering ``POST .../embeddings``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.embedding_bodies: list[Any] = []

    def render_POST(self, request: Request) -> bytes | int:
        """Embeddings here; chat completions as the base class answers them."""
        if not (request.path or b"").endswith(b"/embeddings"):
            return super().render_POST(request)
        assert request.content is not None
        body = json.loads(request.content.read())
        self.embedding_bodies.append(body)
        if request.getHeader(b"authorization") != f"Bearer {UPSTREAM_KEY}".encode():
            request.setResponseCode(401)
            return b'{"error": {"message": "bad key", "type": "authentication_error"}}'
        request.setHeader(b"content-type", b"application/json")
        data = [
            {"object": "embedding", "index": i, "embedding": [0.25 * (i + 1), -0.5]}
            for i, _ in enumerate(body["input"])
        ]
        usage = {"prompt_tokens": 9, "total_tokens": 9}
        return json.dumps(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        ).encode()


class ResponsesIntegrationTests(support.GatewayTestCase):
    """The acceptance of issue 13, as a new user would try it."""

    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        """Agent main on the demo provider, agent up on the fake upstream."""
        return {
            "models": {
                "providers": {
                    "demo": {"api": "demo", "delayMs": 0},
                    "fake": support.openai_provider(port),
                }
            },
            "agents": {
                "list": [
                    {"id": "main", "default": True, "model": "demo/echo"},
                    {"id": "up", "model": "fake/gpt-fake", "systemPrompt": AGENT_PROMPT},
                ]
            },
        }

    @classmethod
    def gateway_settings(cls) -> dict[str, Any]:
        """Chat completions and responses enabled, token auth."""
        return {
            "auth": {"mode": "token", "token": TOKEN},
            "http": {
                "endpoints": {"chatCompletions": {"enabled": True}, "responses": {"enabled": True}}
            },
        }

    fake: EmbeddingUpstream

    def setUp(self) -> None:
        """A fake upstream that also embeds (instead of the base class's)."""
        from twisted.internet import reactor

        self.reactor = reactor
        self.fake = EmbeddingUpstream(reactor, api_key=UPSTREAM_KEY)
        self.upstream = self.upstream_port.serve(reactor, self.fake)
        self.addCleanup(self.upstream.close)
        self.addCleanup(self.gateway.drain)

    def client(self) -> OpenAI:
        """The official SDK on the gateway, without retries."""
        return OpenAI(
            base_url=f"{self.gateway.base_url}/v1",
            api_key=TOKEN,
            max_retries=0,
            timeout=CLIENT_TIMEOUT,
        )

    def post(
        self, path: str, body: object, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """One raw POST (blocking: run it in a thread)."""
        with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
            return client.post(
                f"{self.gateway.base_url}{path}",
                content=body if isinstance(body, bytes) else json.dumps(body).encode(),
                headers={
                    "content-type": "application/json",
                    **(headers if headers is not None else AUTH),
                },
            )

    def transcripts(self, agent: str = "main") -> list[str]:
        """The text of every transcript of ``agent``."""
        directory = self.gateway.directory / "state" / "agents" / agent / "sessions"
        return [p.read_text() for p in sorted(Path(directory).glob("*.jsonl"))]

    async def test_create(self) -> None:
        """``client.responses.create(model="openclaw", input="hi")`` answers with usage."""
        response = await support.in_thread(
            lambda: self.client().responses.create(model="openclaw", input="hi")
        )
        self.assertEqual(response.status, "completed")
        self.assertEqual(
            response.output_text, 'Demo reply (the offline demo model, not an LLM): you said "hi".'
        )
        self.assertTrue(response.id.startswith("resp_"))
        self.assertGreater(response.usage.total_tokens, 0)

    async def test_stream(self) -> None:
        """``.stream()`` assembles the final response; raw events are numbered in order."""

        def run() -> tuple[list[str], list[int], Any]:
            client = self.client()
            kinds: list[str] = []
            numbers: list[int] = []
            for event in client.responses.create(model="openclaw", input="tell me", stream=True):
                kinds.append(event.type)
                numbers.append(event.sequence_number)
            with client.responses.stream(model="openclaw", input="hello there") as stream:
                for _event in stream:
                    pass
                final = stream.get_final_response()
            return kinds, numbers, final

        kinds, numbers, final = await support.in_thread(run)
        self.assertEqual(kinds[:2], ["response.created", "response.in_progress"])
        self.assertEqual(kinds[-1], "response.completed")
        self.assertIn("response.output_text.delta", kinds)
        self.assertEqual(numbers, list(range(len(numbers))))
        self.assertEqual(
            final.output_text,
            'Demo reply (the offline demo model, not an LLM): you said "hello there".',
        )

    async def test_tool_call_then_output_continues_the_session(self) -> None:
        """A client tool call, then its function_call_output with previous_response_id:
        the same session continues and the agent answers with the result."""

        def run() -> tuple[Any, Any]:
            client = self.client()
            first = client.responses.create(
                model="openclaw", input="please call get_weather for Taipei", tools=WEATHER
            )
            call = next(item for item in first.output if item.type == "function_call")
            second = client.responses.create(
                model="openclaw",
                previous_response_id=first.id,
                input=[
                    {
                        "type": "function_call_output",
                        "call_id": call.call_id,
                        "output": "Sunny, 70F",
                    }
                ],
                tools=WEATHER,
            )
            return first, second

        first, second = await support.in_thread(run)
        call = next(item for item in first.output if item.type == "function_call")
        self.assertEqual(call.name, "get_weather")
        self.assertIn("Sunny, 70F", second.output_text)
        together = [t for t in self.transcripts() if "Sunny, 70F" in t]
        self.assertEqual(len(together), 1)
        self.assertIn("please call get_weather for Taipei", together[0])

    async def test_embeddings_demo(self) -> None:
        """``client.embeddings.create(model="openclaw", input=["a", "b"])``: demo vectors."""
        result = await support.in_thread(
            lambda: self.client().embeddings.create(model="openclaw", input=["a", "b"])
        )
        self.assertEqual([d.index for d in result.data], [0, 1])
        self.assertEqual(len(result.data[0].embedding), DEMO_DIMENSIONS)
        for got, want in zip(
            result.data[1].embedding, demo_vector("b", DEMO_DIMENSIONS), strict=True
        ):
            self.assertAlmostEqual(got, want, places=6)
        self.assertEqual(result.usage.prompt_tokens, 2)

    async def test_embeddings_upstream_via_model_header(self) -> None:
        """``x-openclaw-model: fake/emb-1`` sends the inputs to that provider's /embeddings."""
        result = await support.in_thread(
            lambda: self.client().embeddings.create(
                model="openclaw",
                input=["x", "y"],
                dimensions=2,
                extra_headers={"x-openclaw-model": "fake/emb-1"},
            )
        )
        self.assertEqual([d.embedding for d in result.data], [[0.25, -0.5], [0.5, -0.5]])
        self.assertEqual(result.usage.total_tokens, 9)
        [body] = self.fake.embedding_bodies
        self.assertEqual(body["model"], "emb-1")
        self.assertEqual(body["dimensions"], 2)

    async def test_model_override_reaches_the_upstream(self) -> None:
        """The demo agent runs on fake/gpt-fake for one request; an unknown model is a 400."""
        self.fake.reply = FakeReply(text="from the upstream")

        def run() -> Any:
            return self.client().responses.create(
                model="openclaw", input="hi", extra_headers={"x-openclaw-model": "fake/gpt-fake"}
            )

        response = await support.in_thread(run)
        self.assertEqual(response.output_text, "from the upstream")
        self.assertEqual(self.fake.requests[-1].body["model"], "gpt-fake")

        def unknown() -> Exception:
            try:
                self.client().responses.create(
                    model="openclaw", input="hi", extra_headers={"x-openclaw-model": "fake/nope"}
                )
            except BadRequestError as exc:
                return exc
            raise AssertionError("no error")

        error = await support.in_thread(unknown)
        self.assertIn("Model 'fake/nope' is not allowed for agent 'main'.", str(error))

    async def test_client_system_text_is_added_to_the_agent_prompt(self) -> None:
        """The agent's own system prompt is always sent; a client's system message
        (chat) or instructions (responses) are added to it, never replace it."""
        self.fake.reply = FakeReply(text="ok")

        def run() -> None:
            client = self.client()
            client.chat.completions.create(
                model="openclaw/up",
                messages=[
                    {"role": "system", "content": "Answer in French."},
                    {"role": "user", "content": "hi"},
                ],
            )
            client.responses.create(
                model="openclaw/up", instructions="Answer in German.", input="hi"
            )

        await support.in_thread(run)
        chat, responses = self.fake.requests[-2:]
        for sent, added in ((chat, "Answer in French."), (responses, "Answer in German.")):
            system = sent.body["messages"][0]
            self.assertEqual(system["role"], "system")
            self.assertIn(AGENT_PROMPT, system["content"])
            self.assertIn(added, system["content"])
            self.assertLess(system["content"].index(AGENT_PROMPT), system["content"].index(added))

    async def test_langchain(self) -> None:
        """ChatOpenAI(use_responses_api=True) invokes and streams; OpenAIEmbeddings embeds."""

        def run() -> tuple[Any, str, list[list[float]], list[float]]:
            common: dict[str, Any] = {
                "model": "openclaw",
                "base_url": f"{self.gateway.base_url}/v1",
                "api_key": SecretStr(TOKEN),
                "max_retries": 0,
            }
            chat = ChatOpenAI(**common, use_responses_api=True, timeout=CLIENT_TIMEOUT)
            answer = chat.invoke("hi there")
            streamed = "".join(
                str(c.text) if hasattr(c, "text") else str(c.content) for c in chat.stream("count")
            )
            embeddings = OpenAIEmbeddings(**common, check_embedding_ctx_length=False)
            return (
                answer,
                streamed,
                embeddings.embed_documents(["a", "b"]),
                embeddings.embed_query("a"),
            )

        answer, streamed, documents, query = await support.in_thread(run)
        self.assertIn('you said "hi there"', answer.text)
        self.assertIn('you said "count"', streamed)
        self.assertEqual(len(documents), 2)
        self.assertEqual(query, documents[0])

    async def test_raw_errors(self) -> None:
        """Refusals in OpenAI's shape: 401, 405, 400 (body, override, tools), embeddings."""

        def run() -> list[httpx.Response]:
            with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
                wrong_method = client.get(f"{self.gateway.base_url}/v1/responses", headers=AUTH)
            return [
                self.post("/v1/responses", {"input": "hi"}, headers={}),
                wrong_method,
                self.post("/v1/responses", b"{not json"),
                self.post("/v1/responses", {"input": 3}),
                self.post("/v1/responses", {"input": "x"}, {**AUTH, "x-openclaw-model": "fake/"}),
                self.post("/v1/responses", {"input": "x", "tools": [{"type": "function"}]}),
                self.post("/v1/responses", {"model": "openclaw/zeta", "input": "x"}),
                self.post("/v1/embeddings", {"input": []}),
                self.post("/v1/embeddings", {"input": "a"}, headers={}),
            ]

        answers = await support.in_thread(run)
        statuses = [a.status_code for a in answers]
        self.assertEqual(statuses, [401, 405, 400, 400, 400, 400, 400, 400, 401])
        for answer in answers:
            error = answer.json()["error"]
            self.assertTrue(error["message"])
            self.assertEqual(answer.headers["content-type"], "application/json; charset=utf-8")
        self.assertEqual(answers[4].json()["error"]["message"], "Invalid `x-openclaw-model`.")
        self.assertEqual(answers[6].json()["error"]["message"], "Unknown agent 'zeta'.")
