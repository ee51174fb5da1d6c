"""``POST /v1/embeddings`` through the gateway's HTTP app: agent targets,
inputs, pass-through options, the OpenAI answer and every refusal."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import treq
from openai.types import CreateEmbeddingResponse
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import (
    EmbeddingRequest,
    EmbeddingResult,
    EmbeddingsUnavailableError,
    FailureKind,
    ProviderError,
    UnknownModelError,
)
from openclaw.config.model import AuthConfig
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.http.app import GatewayHttpApp
from openclaw.gateway.http.embeddings import EmbeddingsEndpoint
from openclaw.gateway.lifecycle import Readiness
from tests.chat_fakes import FakeRuntime

TOKEN = "unit-token"


class EmbeddingRuntime(FakeRuntime):
    """A fake runtime whose ``embed`` records the request and answers as told."""

    def __init__(self) -> None:
        super().__init__()
        self.embed_requests: list[EmbeddingRequest] = []
        self.embed_error: Exception | None = None
        self.embed_failure: Exception | None = None

    def embed(self, request: EmbeddingRequest) -> Deferred[EmbeddingResult]:
        """Vectors ``[index, len(input)]`` (or the configured error)."""
        self.embed_requests.append(request)
        if self.embed_error is not None:
            raise self.embed_error
        if self.embed_failure is not None:
            return fail(self.embed_failure)
        vectors: tuple[tuple[float, ...] | str, ...] = tuple(
            "AACAPw==" if request.encoding_format == "base64" else (float(i), float(len(item)))
            for i, item in enumerate(request.inputs)
        )
        return succeed(EmbeddingResult("fake-embed", vectors, prompt_tokens=4, total_tokens=4))


class Harness:
    """The endpoint in the real HTTP app."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.clock = Clock()
        self.runtime = EmbeddingRuntime()
        auth = GatewayAuth(AuthConfig(mode="token", token=TOKEN, rate_limit=None), self.clock)
        readiness = Readiness()
        readiness.mark_ready(self.clock)
        endpoint = EmbeddingsEndpoint(runtime=self.runtime, auth=auth, clock=self.clock)
        app = GatewayHttpApp(
            readiness=readiness, clock=self.clock, embeddings=endpoint if enabled else None
        )
        self.stub = StubTreq(app.resource())


class EmbeddingsTests(SynchronousTestCase):
    """Answers and refusals."""

    def post(
        self,
        h: Harness,
        body: object,
        headers: Mapping[str, str] | None = None,
        *,
        token: str | None = TOKEN,
    ) -> tuple[int, Any, dict[str, str]]:
        """Status, body (JSON when it is) and headers; ``model`` is ``openclaw``
        unless the body says."""
        if isinstance(body, dict):
            body = {"model": "openclaw", **body}
        sent = {"content-type": ["application/json"]}
        if token is not None:
            sent["authorization"] = [f"Bearer {token}"]
        sent.update({k: [v] for k, v in (headers or {}).items()})
        d = h.stub.request(  # type: ignore[attr-defined]  # typing note: treq functions copied at runtime
            "POST", "http://127.0.0.1/v1/embeddings", data=json.dumps(body).encode(), headers=sent
        )
        h.stub.flush()
        response = self.successResultOf(d)
        content: Deferred[bytes] = treq.content(response)
        h.stub.flush()
        data = self.successResultOf(content)
        out = {k.decode().lower(): v[-1].decode() for k, v in response.headers.getAllRawHeaders()}
        try:
            return response.code, json.loads(data), out
        except ValueError:
            return response.code, data, out

    def test_list_of_embeddings(self) -> None:
        """One embedding per input, in order, with usage; the SDK's type parses it."""
        h = Harness()
        status, body, _ = self.post(h, {"model": "openclaw", "input": ["a", "bbb"]})
        self.assertEqual(status, 200)
        parsed = CreateEmbeddingResponse.model_validate(body)
        self.assertEqual([d.embedding for d in parsed.data], [[0.0, 1.0], [1.0, 3.0]])
        self.assertEqual([d.index for d in parsed.data], [0, 1])
        self.assertEqual((parsed.usage.prompt_tokens, parsed.usage.total_tokens), (4, 4))
        self.assertEqual(parsed.model, "openclaw")
        [req] = h.runtime.embed_requests
        self.assertEqual((req.agent_id, req.inputs), ("main", ("a", "bbb")))

    def test_options_pass_through(self) -> None:
        """Agent target, dimensions, base64, token arrays and the model header reach the runtime."""
        h = Harness()
        status, body, _ = self.post(
            h,
            {
                "model": "openclaw/beta",
                "input": [[1, 2], [3]],
                "dimensions": 16,
                "encoding_format": "base64",
            },
            {"x-openclaw-model": "oa/text-embedding-3-large"},
        )
        self.assertEqual(status, 200)
        self.assertEqual(body["data"][0]["embedding"], "AACAPw==")
        [req] = h.runtime.embed_requests
        self.assertEqual(req.agent_id, "beta")
        self.assertEqual(req.inputs, ((1, 2), (3,)))
        self.assertEqual((req.dimensions, req.encoding_format), (16, "base64"))
        self.assertEqual(req.model_override, "oa/text-embedding-3-large")
        self.post(h, {"input": "one"})
        self.assertEqual(h.runtime.embed_requests[-1].inputs, ("one",))
        self.post(h, {"input": [7, 8, 9]})
        self.assertEqual(h.runtime.embed_requests[-1].inputs, ((7, 8, 9),))

    def test_whole_number_floats_are_integers(self) -> None:
        """``dimensions: 4.0`` and token ``5.0`` are the integers 4 and 5 (as
        for OpenClaw's ``number().int()``, and as chat's ``max_tokens: 1.0``):
        clients that write every number as a float are served, and the
        runtime gets ints."""
        h = Harness()
        status, body, _ = self.post(h, {"input": [[5.0, 6], [7.0]], "dimensions": 4.0})
        self.assertEqual(status, 200, body)
        [req] = h.runtime.embed_requests
        self.assertEqual((req.inputs, req.dimensions), (((5, 6), (7,)), 4))
        self.assertEqual([type(t) for t in (*req.inputs[0], *req.inputs[1])], [int, int, int])
        self.assertIs(type(req.dimensions), int)
        self.post(h, {"input": [1.0, 2.0]})
        self.assertEqual(h.runtime.embed_requests[-1].inputs, ((1, 2),))
        for refused in (
            {"input": "a", "dimensions": 4.5},
            {"input": "a", "dimensions": 0.0},
            {"input": "a", "dimensions": 2.0**53},
            {"input": "a", "dimensions": 10**400},
            {"input": [1.5]},
            {"input": [-1.0]},
            {"input": [[2.0**53]]},
        ):
            status, _, _ = self.post(h, refused)
            self.assertEqual(status, 400, refused)
        self.assertEqual(len(h.runtime.embed_requests), 2)

    def test_bad_inputs(self) -> None:
        """Empty, mixed or malformed inputs, bad dimensions or format: 400 naming the field."""
        h = Harness()
        for body, param in (
            ({"input": ""}, "input"),
            ({"input": []}, "input"),
            ({"input": ["a", ""]}, "input"),
            ({"input": ["a", 1]}, "input"),
            ({"input": [[1, "x"]]}, "input"),
            ({"input": {"a": 1}}, "input"),
            ({"input": "a", "dimensions": 0}, "dimensions"),
            ({"input": "a", "dimensions": 1.5}, "dimensions"),
            ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
            ({"input": "a", "model": "gpt-4o"}, "model"),
            ({"input": "a", "model": None}, "model"),
            ({"input": "a", "model": " "}, "model"),
            ({"input": ["a"] * 2049}, "input"),
        ):
            status, answer, _ = self.post(h, body)
            self.assertEqual((status, answer["error"]["param"]), (400, param), body)
        self.assertEqual(h.runtime.embed_requests, [])
        # OpenClaw's messages for a missing model and too many inputs.
        _, answer, _ = self.post(h, {"input": "a", "model": None})
        self.assertEqual(answer["error"]["message"], "Missing `model`.")
        _, answer, _ = self.post(h, {"input": ["a"] * 2049})
        self.assertEqual(answer["error"]["message"], "Too many inputs (max 2048).")

    def test_refusals_from_the_runtime(self) -> None:
        """Unknown agent, unknown model, no embedding provider: 400 saying which."""
        h = Harness()
        status, body, _ = self.post(h, {"input": "a", "model": "openclaw/zeta"})
        self.assertEqual((status, body["error"]["message"]), (400, "Unknown agent 'zeta'."))
        h.runtime.embed_error = UnknownModelError("nope/x", "main")
        status, body, _ = self.post(h, {"input": "a"})
        self.assertEqual(
            body["error"]["message"], "Model 'nope/x' is not allowed for agent 'main'."
        )
        h.runtime.embed_error = EmbeddingsUnavailableError("set memory.search.model")
        status, body, _ = self.post(h, {"input": "a"})
        self.assertEqual(
            (status, body["error"]["code"], body["error"]["message"]),
            (400, "embeddings_unavailable", "set memory.search.model"),
        )
        status, body, _ = self.post(h, {"input": "a"}, {"x-openclaw-model": "openai/"})
        self.assertEqual(body["error"]["message"], "Invalid `x-openclaw-model`.")

    def test_provider_failure(self) -> None:
        """An upstream rate limit keeps its status and Retry-After, in OpenAI's shape."""
        h = Harness()
        h.runtime.embed_failure = ProviderError(
            FailureKind.RATE_LIMIT, "slow down", status=429, retry_after_seconds=3
        )
        status, body, headers = self.post(h, {"input": "a"})
        self.assertEqual((status, body["error"]["type"]), (429, "rate_limit_error"))
        self.assertEqual(headers["retry-after"], "3")

    def test_auth_and_disabled(self) -> None:
        """No token: 401 before the body is looked at; switched off: plain-text 404."""
        h = Harness()
        status, body, _ = self.post(h, {"input": 5}, token=None)
        self.assertEqual((status, body["error"]["type"]), (401, "unauthorized"))
        status, body, headers = self.post(Harness(enabled=False), {"input": "a"})
        self.assertEqual((status, body), (404, b"Not Found"))
        self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")
