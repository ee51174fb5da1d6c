"""The agent's embedding provider (``agents/embeddings.py``): which upstream a
request goes to, the demo's vectors, the upstream call over the providers' own
HTTP client, and how its answers and failures come back."""

from __future__ import annotations

import json
import math
from typing import Any

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from openclaw.agents.embeddings import (
    DEMO_DIMENSIONS,
    Embedder,
    decode_base64,
    demo_vector,
    encode_base64,
    parse_response,
    request_body,
    resolve_target,
)
from openclaw.agents.providers.pool import UpstreamPool
from openclaw.agents.registry import AgentRegistry
from openclaw.agents.runtime import Runtime
from openclaw.agents.types import (
    EmbeddingRequest,
    EmbeddingResult,
    EmbeddingsUnavailableError,
    FailureKind,
    ProviderError,
    UnknownAgentError,
    UnknownModelError,
)
from openclaw.config.model import (
    AgentConfig,
    AgentDefaults,
    AgentsConfig,
    Config,
    MemorySearchConfig,
    ModelsConfig,
    ProviderConfig,
)

KEY = "sk-embed-secret-0123456789"


def config(search: MemorySearchConfig | None = None, **providers: ProviderConfig) -> Config:
    """Agent ``main`` on the demo model, plus ``providers``."""
    return Config(
        models=ModelsConfig(providers=providers),
        agents=AgentsConfig(
            defaults=AgentDefaults(model_primary="demo/echo"),
            list=(AgentConfig(id="main", default=True), AgentConfig(id="cloud", model="oa/gpt")),
        ),
        memory_search=search or MemorySearchConfig(),
    )


def request(*inputs: str | tuple[int, ...], **kwargs: Any) -> EmbeddingRequest:
    """A request of agent main."""
    return EmbeddingRequest(agent_id=kwargs.pop("agent_id", "main"), inputs=inputs, **kwargs)


OA = ProviderConfig(
    id="oa", api="openai-completions", base_url="http://127.0.0.1:1/v1", api_key=KEY
)


class TargetTests(SynchronousTestCase):
    """Which provider, model and URL a request uses (OpenClaw's memory.search rules)."""

    def target(self, cfg: Config, req: EmbeddingRequest) -> Any:
        """resolve_target for ``cfg``."""
        return resolve_target(cfg, AgentRegistry(cfg), req)

    def test_demo_agent_gets_demo(self) -> None:
        """An agent on the demo model with no memory.search embeds offline."""
        t = self.target(config(), request("a"))
        self.assertEqual((t.provider, t.model, t.url), ("demo", "demo-embedding", None))

    def test_default_is_openai(self) -> None:
        """Unset provider on a real model is OpenAI: needs a key, says which."""
        cfg = config(oa=OA)
        error = self.assertRaises(
            EmbeddingsUnavailableError, self.target, cfg, request("a", agent_id="cloud")
        )
        self.assertIn("OPENAI_API_KEY", str(error))
        with_key = config(MemorySearchConfig(openai_api_key=KEY), oa=OA)
        t = self.target(with_key, request("a", agent_id="cloud"))
        self.assertEqual(t.url, "https://api.openai.com/v1/embeddings")
        self.assertEqual(t.model, "text-embedding-3-small")
        self.assertEqual(t.headers["Authorization"], f"Bearer {KEY}")

    def test_configured_provider(self) -> None:
        """A models.providers id uses its baseUrl and key; the model must be named."""
        cfg = config(
            MemorySearchConfig(provider="oa", model="emb", output_dimensionality=64), oa=OA
        )
        t = self.target(cfg, request("a"))
        self.assertEqual(
            (t.url, t.model, t.dimensions), ("http://127.0.0.1:1/v1/embeddings", "emb", 64)
        )
        no_model = config(MemorySearchConfig(provider="oa"), oa=OA)
        self.assertRaises(EmbeddingsUnavailableError, self.target, no_model, request("a"))

    def test_openai_compatible_remote(self) -> None:
        """``openai-compatible`` uses remote.baseUrl/apiKey/headers, and requires the URL."""
        cfg = config(
            MemorySearchConfig(
                provider="openai-compatible",
                model="m",
                remote_base_url="http://emb.local/v1/",
                remote_api_key="k2",
                remote_headers={"X-Team": "a"},
            )
        )
        t = self.target(cfg, request("a"))
        self.assertEqual(t.url, "http://emb.local/v1/embeddings")
        self.assertEqual((t.headers["Authorization"], t.headers["X-Team"]), ("Bearer k2", "a"))
        missing = config(MemorySearchConfig(provider="openai-compatible", model="m"))
        self.assertRaises(EmbeddingsUnavailableError, self.target, missing, request("a"))

    def test_anthropic_has_no_embeddings(self) -> None:
        """A provider without an OpenAI-compatible API is refused with a reason."""
        ant = ProviderConfig(id="ant", api="anthropic-messages")
        cfg = config(MemorySearchConfig(provider="ant", model="x"), ant=ant)
        self.assertIn(
            "no OpenAI-compatible",
            str(self.assertRaises(EmbeddingsUnavailableError, self.target, cfg, request("a"))),
        )

    def test_model_override(self) -> None:
        """``provider/model`` switches provider and model; an unknown provider is named."""
        cfg = config(oa=OA)
        t = self.target(cfg, request("a", model_override="oa/text-embedding-3-large"))
        self.assertEqual((t.provider, t.model), ("oa", "text-embedding-3-large"))
        bare = self.target(cfg, request("a", model_override="demo-2"))
        self.assertEqual((bare.provider, bare.model), ("demo", "demo-2"))
        error = self.assertRaises(
            UnknownModelError, self.target, cfg, request("a", model_override="nope/x")
        )
        self.assertEqual(str(error), "Model 'nope/x' is not allowed for agent 'main'.")

    def test_unknown_agent(self) -> None:
        """An agent that is not configured is UnknownAgentError."""
        self.assertRaises(UnknownAgentError, self.target, config(), request("a", agent_id="zz"))


class DemoTests(SynchronousTestCase):
    """The offline provider: deterministic unit vectors."""

    def embed(self, req: EmbeddingRequest) -> EmbeddingResult:
        """The demo answer through a runtime (what the endpoint calls)."""
        runtime = Runtime(config(), clock=Clock(), providers={})
        result: EmbeddingResult = self.successResultOf(runtime.embed(req))
        return result

    def test_deterministic_unit_vectors(self) -> None:
        """Same text, same vector; different texts differ; each has length 1."""
        a1, a2, b = self.embed(request("alpha", "alpha", "beta")).vectors
        assert isinstance(a1, tuple) and isinstance(b, tuple)
        self.assertEqual(a1, a2)
        self.assertNotEqual(a1, b)
        self.assertEqual(len(a1), DEMO_DIMENSIONS)
        self.assertAlmostEqual(math.fsum(v * v for v in a1), 1.0, places=5)
        self.assertEqual(a1, demo_vector("alpha", DEMO_DIMENSIONS))

    def test_dimensions_tokens_and_base64(self) -> None:
        """``dimensions`` sizes the vector; token arrays work; base64 is float32 LE."""
        result = self.embed(request((1, 2, 3), "x y", dimensions=8, encoding_format="base64"))
        first = result.vectors[0]
        assert isinstance(first, str)
        decoded = decode_base64(first)
        self.assertEqual(len(decoded), 8)
        for got, want in zip(decoded, demo_vector("\x00tokens:1,2,3", 8), strict=True):
            self.assertAlmostEqual(got, want, places=6)
        # A token array is not the string of its numbers.
        text = self.embed(request("1,2,3", dimensions=8)).vectors[0]
        self.assertNotEqual(text, demo_vector("\x00tokens:1,2,3", 8))
        self.assertEqual((result.prompt_tokens, result.total_tokens), (5, 5))


class WireTests(SynchronousTestCase):
    """Request and answer shapes of an OpenAI-compatible upstream."""

    def test_request_body(self) -> None:
        """Model, inputs (token arrays as lists), dimensions and base64 pass through."""
        cfg = config(MemorySearchConfig(provider="oa", model="emb"), oa=OA)
        req = request("a", (5, 6), dimensions=32, encoding_format="base64")
        target = resolve_target(cfg, AgentRegistry(cfg), req)
        self.assertEqual(
            request_body(req, target),
            {"model": "emb", "input": ["a", [5, 6]], "dimensions": 32, "encoding_format": "base64"},
        )

    def test_parse_answer(self) -> None:
        """Vectors come back in index order, re-encoded as the client asked; usage kept."""
        cfg = config(MemorySearchConfig(provider="oa", model="emb"), oa=OA)
        req = request("a", "b", encoding_format="base64")
        target = resolve_target(cfg, AgentRegistry(cfg), req)
        payload = {
            "data": [
                {"index": 1, "embedding": encode_base64([0.5, 0.25])},
                {"index": 0, "embedding": [1.0, 2.0]},
            ],
            "model": "emb-v2",
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }
        result = parse_response(payload, req, target)
        self.assertEqual(result.model, "emb-v2")
        self.assertEqual(decode_base64(str(result.vectors[0])), (1.0, 2.0))
        self.assertEqual(decode_base64(str(result.vectors[1])), (0.5, 0.25))
        self.assertEqual(result.prompt_tokens, 3)
        bad_answers: list[dict[str, Any]] = [{}, {"data": [{"index": 0}]}, {"data": []}]
        for bad in bad_answers:
            self.assertRaises(ValueError, parse_response, bad, req, target)


class _Upstream(Resource):
    """``POST /v1/embeddings`` as an OpenAI-compatible server answers it."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.status = 200
        self.answer: Any = None
        self.hang = False
        #: Fires with the request when one arrives.
        self.arrived: Deferred[Request] = Deferred()
        #: Fires when a hanging request's connection is lost.
        self.lost: Deferred[None] = Deferred()

    def render_POST(self, request: Request) -> bytes | int:
        assert request.content is not None
        body = json.loads(request.content.read())
        self.bodies.append(body)
        self.headers.append(
            {
                k.decode().lower(): v[0].decode()
                for k, v in request.requestHeaders.getAllRawHeaders()
            }
        )
        if self.hang:
            request.notifyFinish().addErrback(lambda _: self.lost.callback(None))
            self.arrived.callback(request)
            return NOT_DONE_YET
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", b"application/json")
        answer = self.answer or {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": [float(i), 0.5]}
                for i in range(len(body["input"]))
            ],
            "model": body["model"],
            "usage": {"prompt_tokens": 7, "total_tokens": 7},
        }
        return json.dumps(answer).encode()


class UpstreamTests(TestCase):
    """The HTTP call against a real local server (the providers' own client)."""

    def setUp(self) -> None:
        self.upstream = _Upstream()
        site = Site(self.upstream)
        site.noisy = False
        reactor: Any = global_reactor
        self.port: IListeningPort = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.pool = UpstreamPool(reactor)
        port = self.port.getHost().port
        self.addCleanup(self.port.stopListening)
        self.addCleanup(self.pool.closeCachedConnections)
        provider = ProviderConfig(
            id="emb",
            api="openai-completions",
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key=KEY,
            timeout_seconds=5,
        )
        self.cfg = config(MemorySearchConfig(provider="emb", model="e-1"), emb=provider)
        self.embedder = Embedder(
            self.cfg, AgentRegistry(self.cfg), reactor=global_reactor, pool=self.pool
        )

    async def test_vectors_and_usage(self) -> None:
        """The upstream's vectors and usage come back; the key is sent as a bearer."""
        result = await self.embedder.embed(request("a", "b", dimensions=2))
        self.assertEqual(result.vectors, ((0.0, 0.5), (1.0, 0.5)))
        self.assertEqual((result.prompt_tokens, result.model), (7, "e-1"))
        self.assertEqual(
            self.upstream.bodies[0], {"model": "e-1", "input": ["a", "b"], "dimensions": 2}
        )
        self.assertEqual(self.upstream.headers[0]["authorization"], f"Bearer {KEY}")

    async def test_upstream_error_is_classified(self) -> None:
        """A 429 is a rate-limit ProviderError whose message never holds the key."""
        self.upstream.status = 429
        self.upstream.answer = {"error": {"message": f"slow down {KEY}", "type": "rate_limit"}}
        d: Deferred[Any] = self.embedder.embed(request("a"))
        error: ProviderError = await self.assertFailure(d, ProviderError)
        self.assertEqual((error.kind, error.status), (FailureKind.RATE_LIMIT, 429))
        self.assertNotIn(KEY, error.message)

    async def test_malformed_answer(self) -> None:
        """An answer without the right vectors is a malformed-stream ProviderError."""
        self.upstream.answer = {"data": []}
        failed: Deferred[Any] = self.embedder.embed(request("a"))
        error: ProviderError = await self.assertFailure(failed, ProviderError)
        self.assertEqual(error.kind, FailureKind.MALFORMED_STREAM)

    async def test_cancel_closes_the_call(self) -> None:
        """Cancelling the Deferred (a client left) ends the upstream exchange."""
        self.upstream.hang = True
        d = self.embedder.embed(request("a"))
        await self.upstream.arrived
        d.cancel()
        self.failureResultOf(d, CancelledError)
        await self.upstream.lost
