# -*- test-case-name: tests.test_embeddings -*-
"""An agent's embedding provider: the one behind ``POST /v1/embeddings``.

Which provider answers follows OpenClaw's ``memory.search`` settings
(:class:`~openclaw.config.model.MemorySearchConfig`):

* ``demo`` (also what an agent on the demo model provider gets when
  ``memory.search.provider`` is unset): deterministic unit vectors computed
  here from a hash of each input, offline, so ``make run`` works as shipped;
* ``openai`` (OpenClaw's default): ``models.providers.openai`` when
  configured, else ``https://api.openai.com/v1`` with ``OPENAI_API_KEY``;
* ``openai-compatible``: ``memory.search.remote.baseUrl``;
* any ``models.providers.<id>`` whose ``api`` is ``openai-completions``.

The HTTP ones get one ``POST {baseUrl}/embeddings`` through the providers'
own upstream client (:class:`~openclaw.agents.providers.pool.UpstreamPool`),
with ``model``, ``input`` (strings or token arrays), ``dimensions`` and
``encoding_format`` passed through; failures are classified exactly as the
model providers classify theirs (:class:`~openclaw.agents.types.ProviderError`).
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import Factory, frozen
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime

from openclaw.agents.providers.errors import (
    classify_http_error,
    config_secrets,
    connection_error,
    malformed_stream,
    timeout_error,
)
from openclaw.agents.providers.openai_completions import DEFAULT_BASE_URL
from openclaw.agents.providers.pool import UpstreamPool
from openclaw.agents.providers.wire import Target, make_target
from openclaw.agents.registry import DEMO_PROVIDER_ID, AgentRegistry, ModelResolutionError
from openclaw.agents.types import (
    EmbeddingRequest,
    EmbeddingRequestError,
    EmbeddingResult,
    EmbeddingsUnavailableError,
    UnknownModelError,
)
from openclaw.config.model import Config, MemorySearchConfig, ProviderConfig
from openclaw.core.fastjson import dumps, loads

#: ``memory.search.provider`` values that are not ``models.providers`` ids.
OPENAI = "openai"
OPENAI_COMPATIBLE = "openai-compatible"
#: Models used when ``memory.search.model`` is unset.
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"
DEMO_MODEL = "demo-embedding"
#: The demo's vector size when the request and the config name none.
DEMO_DIMENSIONS = 256
#: The largest demo vector (OpenAI's largest model's size).
DEMO_MAX_DIMENSIONS = 3072
#: Numbers one demo request may ask for (inputs x dimensions): 2048 inputs of the
#: default size. The demo runs on the reactor thread, so this bounds its pause.
DEMO_MAX_NUMBERS = 2048 * DEMO_DIMENSIONS
#: An upstream answer larger than this is refused (4096 vectors of 3072 floats as JSON fit).
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
#: Seconds without an answer before an embeddings call fails.
DEFAULT_TIMEOUT_SECONDS = 120.0


@frozen
class EmbeddingTarget:
    """Where one request's embeddings come from."""

    provider: str
    model: str
    #: None for the demo (computed here).
    url: str | None = None
    headers: Mapping[str, str] = Factory(dict)
    api_key: str | None = None
    dimensions: int | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS


def demo_vector(text: str, dimensions: int) -> tuple[float, ...]:
    """A deterministic unit vector for ``text`` (SHA-256 in counter mode)."""
    raw = bytearray()
    counter = 0
    seed = text.encode("utf-8", "replace")
    while len(raw) < dimensions * 4:
        raw += hashlib.sha256(counter.to_bytes(4, "big") + seed).digest()
        counter += 1
    values = [
        (int.from_bytes(raw[i * 4 : i * 4 + 4], "big") / 0xFFFFFFFF) * 2.0 - 1.0
        for i in range(dimensions)
    ]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return tuple(round(v / norm, 8) for v in values)


def encode_base64(vector: Sequence[float]) -> str:
    """OpenAI's ``encoding_format: "base64"``: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def decode_base64(data: str) -> tuple[float, ...]:
    """The inverse of :func:`encode_base64`."""
    raw = base64.b64decode(data)
    return struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4])


def _input_text(item: str | tuple[int, ...]) -> str:
    """What a demo vector is computed from; token arrays are marked so that
    ``[1, 2, 3]`` and the string ``"1,2,3"`` differ."""
    if isinstance(item, str):
        return item
    return "\x00tokens:" + ",".join(str(token) for token in item)


def _count_tokens(item: str | tuple[int, ...]) -> int:
    return len(item.split()) if isinstance(item, str) else len(item)


def _encoded(vector: tuple[float, ...] | str, encoding: str) -> tuple[float, ...] | str:
    """A vector in the encoding the client asked for, whatever the upstream sent."""
    if encoding == "base64":
        return vector if isinstance(vector, str) else encode_base64(vector)
    return decode_base64(vector) if isinstance(vector, str) else vector


def demo_embeddings(request: EmbeddingRequest, target: EmbeddingTarget) -> EmbeddingResult:
    """The demo provider's answer (pure: same request, same vectors).

    Raises :class:`EmbeddingRequestError` past the demo's size limits: it
    computes on the reactor thread, so an unbounded ``dimensions`` would stall
    the whole gateway.
    """
    dimensions = target.dimensions or DEMO_DIMENSIONS
    if dimensions > DEMO_MAX_DIMENSIONS:
        raise EmbeddingRequestError(
            f"`dimensions` must be at most {DEMO_MAX_DIMENSIONS} for the demo embedding provider.",
            "dimensions",
        )
    if dimensions * len(request.inputs) > DEMO_MAX_NUMBERS:
        raise EmbeddingRequestError(
            f"The demo embedding provider returns at most {DEMO_MAX_NUMBERS} numbers "
            "per request (inputs times `dimensions`).",
            "dimensions",
        )
    vectors = tuple(
        _encoded(demo_vector(_input_text(item), dimensions), request.encoding_format)
        for item in request.inputs
    )
    tokens = sum(_count_tokens(item) for item in request.inputs)
    return EmbeddingResult(target.model, vectors, prompt_tokens=tokens, total_tokens=tokens)


def resolve_target(
    config: Config, registry: AgentRegistry, request: EmbeddingRequest
) -> EmbeddingTarget:
    """The provider, model and endpoint for ``request`` (see the module docstring).

    Raises UnknownAgentError, UnknownModelError (an override naming an
    unknown provider) or EmbeddingsUnavailableError (nothing usable configured).
    """
    spec = registry.get(request.agent_id)
    search: MemorySearchConfig = config.memory_search
    provider = search.provider
    model = search.model
    dimensions = request.dimensions
    if request.model_override is not None:
        override = request.model_override.strip()
        provider_part, slash, model_part = override.partition("/")
        if slash:
            provider, model = provider_part.strip().lower(), model_part.strip()
            if not _known_provider(config, provider):
                raise UnknownModelError(override, spec.id)
        else:
            model = override
    if provider is None:
        provider = DEMO_PROVIDER_ID if _agent_on_demo(config, registry, spec.id) else OPENAI
    if dimensions is None and provider == (search.provider or provider):
        dimensions = search.output_dimensionality
    configured = config.models.providers.get(provider)
    if provider == DEMO_PROVIDER_ID or (configured is not None and configured.api == "demo"):
        return EmbeddingTarget(provider, model or DEMO_MODEL, dimensions=dimensions)
    remote = provider == (search.provider or provider)
    if model is None and provider != OPENAI:
        raise EmbeddingsUnavailableError(
            f"set memory.search.model to the embedding model of provider {provider!r}"
        )
    if provider == OPENAI_COMPATIBLE:
        base_url = search.remote_base_url
        if not base_url:
            raise EmbeddingsUnavailableError(
                'memory.search.provider "openai-compatible" needs memory.search.remote.baseUrl'
            )
        return _http_target(provider, model, base_url, search.remote_api_key, search, dimensions)
    if configured is not None and configured.api != "openai-completions":
        raise EmbeddingsUnavailableError(
            f"provider {provider!r} (api {configured.api}) has no OpenAI-compatible embeddings API"
        )
    if configured is None and provider != OPENAI:
        raise EmbeddingsUnavailableError(
            f"memory.search.provider {provider!r} is not openai, openai-compatible, demo "
            "or a models.providers id"
        )
    base_url = configured.base_url if configured is not None else None
    api_key = configured.api_key if configured is not None else None
    if remote and search.remote_base_url:
        base_url, api_key = search.remote_base_url, None
    if remote and search.remote_api_key:
        api_key = search.remote_api_key
    if api_key is None and provider == OPENAI and base_url is None:
        api_key = search.openai_api_key
        if api_key is None:
            raise EmbeddingsUnavailableError(
                "OpenAI embeddings need an API key: set OPENAI_API_KEY, "
                "models.providers.openai.apiKey or memory.search.remote.apiKey"
            )
    return _http_target(
        provider,
        model,
        base_url or DEFAULT_BASE_URL,
        api_key,
        search if remote else None,
        dimensions,
        configured,
    )


def _http_target(
    provider: str,
    model: str | None,
    base_url: str,
    api_key: str | None,
    search: MemorySearchConfig | None,
    dimensions: int | None,
    configured: ProviderConfig | None = None,
) -> EmbeddingTarget:
    headers: dict[str, str] = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if configured is not None:
        headers.update(configured.headers)
    if search is not None:
        headers.update(search.remote_headers)
    return EmbeddingTarget(
        provider=provider,
        model=model or DEFAULT_OPENAI_MODEL,
        url=base_url.rstrip("/") + "/embeddings",
        headers=headers,
        api_key=api_key,
        dimensions=dimensions,
        timeout_seconds=configured.timeout_seconds if configured else DEFAULT_TIMEOUT_SECONDS,
    )


def _known_provider(config: Config, provider: str) -> bool:
    return provider in (DEMO_PROVIDER_ID, OPENAI, OPENAI_COMPATIBLE) or (
        provider in config.models.providers
    )


def _agent_on_demo(config: Config, registry: AgentRegistry, agent_id: str) -> bool:
    """Whether the agent's chat model is served by the demo provider."""
    try:
        ref = registry.model_ref(agent_id)
    except ModelResolutionError:
        return False
    if ref.provider == DEMO_PROVIDER_ID and ref.provider not in config.models.providers:
        return True
    return registry.provider_api(ref.provider) == "demo"


def request_body(request: EmbeddingRequest, target: EmbeddingTarget) -> dict[str, Any]:
    """The upstream's JSON request."""
    inputs = [item if isinstance(item, str) else list(item) for item in request.inputs]
    body: dict[str, Any] = {"model": target.model, "input": inputs}
    if target.dimensions is not None:
        body["dimensions"] = target.dimensions
    if request.encoding_format == "base64":
        body["encoding_format"] = "base64"
    return body


def _count(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def parse_response(
    payload: Any, request: EmbeddingRequest, target: EmbeddingTarget
) -> EmbeddingResult:
    """The upstream's answer as a result; ValueError when it is not one."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("data"), list):
        raise ValueError("the embeddings answer has no data array")
    found: dict[int, tuple[float, ...] | str] = {}
    for position, item in enumerate(payload["data"]):
        if not isinstance(item, Mapping):
            raise ValueError("an embeddings data entry is not an object")
        index = item.get("index", position)
        vector = item.get("embedding")
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError("an embeddings data entry has no index")
        if isinstance(vector, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in vector
        ):
            found[index] = tuple(float(v) for v in vector)
        elif isinstance(vector, str):
            found[index] = vector
        else:
            raise ValueError("an embeddings data entry has no embedding")
    if sorted(found) != list(range(len(request.inputs))):
        raise ValueError(
            f"the embeddings answer has {len(found)} vectors for {len(request.inputs)} inputs"
        )
    usage = payload.get("usage")
    prompt = usage.get("prompt_tokens") if isinstance(usage, Mapping) else None
    total = usage.get("total_tokens") if isinstance(usage, Mapping) else None
    prompt_tokens = prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else 0
    total_tokens = (
        total if isinstance(total, int) and not isinstance(total, bool) else prompt_tokens
    )
    model = payload.get("model")
    return EmbeddingResult(
        model=model if isinstance(model, str) and model else target.model,
        vectors=tuple(_encoded(found[i], request.encoding_format) for i in sorted(found)),
        prompt_tokens=prompt_tokens,
        total_tokens=total_tokens,
    )


class _Call:
    """One upstream ``/embeddings`` exchange: collects the answer, with a deadline."""

    def __init__(
        self,
        clock: IReactorTime,
        request: EmbeddingRequest,
        target: EmbeddingTarget,
    ) -> None:
        self._clock = clock
        self._request = request
        self._target = target
        self._secrets = config_secrets(target.api_key, target.headers)
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._exchange: IPushProducer | None = None
        self._timer: IDelayedCall | None = None
        self.done: Deferred[EmbeddingResult] = Deferred(self._cancel)

    def start(self, pool: UpstreamPool, target: Target, body: bytes) -> None:
        self._timer = self._clock.callLater(self._target.timeout_seconds, self._timed_out)
        self._exchange = pool.request(target, body, self)

    # ResponseHandler
    def response_started(self, status: int, headers: dict[str, str]) -> None:
        self._status = status
        self._headers = headers

    def body_data(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > MAX_RESPONSE_BYTES:
            self._abort()
            self._settle(malformed_stream("the embeddings answer is too large"))
            return
        self._body.append(data)

    def body_end(self, reason: BaseException | None) -> None:
        if self.done.called:
            return
        if reason is not None:
            self._settle(connection_error(reason, self._secrets))
            return
        body = b"".join(self._body)
        if not 200 <= self._status < 300:
            error = classify_http_error(
                self._status, body, self._headers, now=self._clock.seconds(), secrets=self._secrets
            )
            self._settle(error)
            return
        try:
            result = parse_response(loads(body), self._request, self._target)
        except ValueError as exc:
            self._settle(malformed_stream(str(exc), self._secrets))
            return
        self._settle(result)

    def request_failed(self, reason: BaseException) -> None:
        self._settle(connection_error(reason, self._secrets))

    def _timed_out(self) -> None:
        self._timer = None
        self._abort()
        self._settle(timeout_error(self._target.timeout_seconds))

    def _abort(self) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.stopProducing()

    def _cancel(self, _: Deferred[EmbeddingResult]) -> None:
        self._stop_timer()
        self._abort()

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _settle(self, outcome: EmbeddingResult | Exception) -> None:
        if self.done.called:
            return
        self._stop_timer()
        self._exchange = None
        if isinstance(outcome, Exception):
            self.done.errback(outcome)
        else:
            self.done.callback(outcome)


class Embedder:
    """Answers :meth:`AgentRuntime.embed` for the runtime.

    ``pool`` is the providers' shared connection pool; without one the
    embedder makes its own on first use (``reactor`` must then provide TCP).
    """

    def __init__(
        self,
        config: Config,
        registry: AgentRegistry,
        *,
        reactor: IReactorTime,
        pool: UpstreamPool | None = None,
    ) -> None:
        self._config = config
        self._registry = registry
        self._reactor = reactor
        self._pool = pool

    def reconfigure(self, config: Config, registry: AgentRegistry) -> None:
        """Serve the calls made from now on with ``config`` (a reload); calls
        under way finish as they started, and the connection pool stays."""
        self._config = config
        self._registry = registry

    def embed(self, request: EmbeddingRequest) -> Deferred[EmbeddingResult]:
        """Embed ``request.inputs``; configuration errors are raised at once."""
        target = resolve_target(self._config, self._registry, request)
        if target.url is None:
            return succeed(demo_embeddings(request, target))
        try:
            upstream = make_target(target.url, target.headers)
        except ValueError as exc:
            raise EmbeddingsUnavailableError(f"embedding provider URL: {exc}") from None
        if self._pool is None:
            self._pool = UpstreamPool(self._reactor)
        call = _Call(self._reactor, request, target)
        call.start(self._pool, upstream, dumps(request_body(request, target)))
        return call.done
