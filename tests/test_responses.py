"""``POST /v1/responses`` through the gateway's HTTP app: the response object,
tool calls, ``previous_response_id``, URL images, disconnects and errors (the
harness and SSE helpers here serve the streaming tests too)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import treq
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IResponse

from openclaw.agents.types import (
    ClientToolConflictError,
    FailureKind,
    ImageInput,
    ProviderError,
    ToolCall,
    UnknownModelError,
    Usage,
)
from openclaw.config.model import AuthConfig, ImagesConfig, ResponsesConfig
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.http.app import GatewayHttpApp
from openclaw.gateway.http.image_fetch import ImageFetcher, ImageFetchError
from openclaw.gateway.http.responses import ResponsesEndpoint
from openclaw.gateway.lifecycle import Readiness
from tests.chat_fakes import FakeRuntime, RawConnection
from tests.test_responses_request import PNG_B64

PATH = "/v1/responses"
TOKEN = "unit-token"
_EVENT = TypeAdapter(ResponseStreamEvent)


class Harness:
    """The endpoint in the real HTTP app over a fake runtime and a Clock."""

    def __init__(
        self,
        *,
        keep_alive: float = 15.0,
        max_buffered_bytes: int = 1024 * 1024,
        enabled: bool = True,
        image_fetcher: ImageFetcher | None = None,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.runtime = FakeRuntime()
        self.auth = GatewayAuth(AuthConfig(mode="token", token=TOKEN, rate_limit=None), self.clock)
        self.endpoint = ResponsesEndpoint(
            settings=ResponsesConfig(enabled=True, sse_keep_alive_seconds=keep_alive),
            runtime=self.runtime,
            auth=self.auth,
            clock=self.clock,
            max_buffered_bytes=max_buffered_bytes,
            image_fetcher=image_fetcher,
        )
        readiness = Readiness()
        readiness.mark_ready(self.clock)
        app = GatewayHttpApp(
            readiness=readiness,
            clock=self.clock,
            responses=self.endpoint if enabled else None,
        )
        self.resource = app.resource()
        self.stub = StubTreq(self.resource)

    def post(self, body: object, headers: Mapping[str, str] | None = None) -> Deferred[IResponse]:
        """POST ``body`` (JSON unless bytes) with the token."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"authorization": [f"Bearer {TOKEN}"], "content-type": ["application/json"]}
        sent.update({k: [v] for k, v in (headers or {}).items()})
        # typing note: StubTreq copies treq's functions onto itself at runtime.
        d: Deferred[IResponse] = self.stub.request(  # type: ignore[attr-defined]
            "POST", "http://127.0.0.1" + PATH, data=data, headers=sent
        )
        self.stub.flush()
        return d

    def raw(self, body: object, headers: Mapping[str, str] | None = None) -> RawConnection:
        """A raw connection with one request sent (for streams)."""
        conn = RawConnection(self.resource)
        conn.send(body, path=PATH, headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})})
        return conn


def sse_events(data: bytes) -> list[Any]:
    """The events of a Responses SSE body: ``(type, payload)``, ``"[DONE]"`` or ``":"``."""
    out: list[Any] = []
    for block in data.decode("utf-8").split("\n\n"):
        if not block:
            continue
        if block.startswith(":"):
            out.append(":")
            continue
        lines = block.split("\n")
        if lines == ["data: [DONE]"]:
            out.append("[DONE]")
            continue
        kind = lines[0].removeprefix("event: ")
        payload = json.loads(lines[1].removeprefix("data: "))
        assert payload["type"] == kind, (kind, payload)
        out.append((kind, payload))
    return out


def sdk_final(events: Sequence[Any], tools: Sequence[Any] = ()) -> Any:
    """Feed the events to the SDK's ``responses.stream()`` accumulator; the final response."""
    state: Any = ResponseStreamState(input_tools=list(tools) or omit, text_format=omit)
    final = None
    for item in events:
        if isinstance(item, tuple):
            for event in state.handle_event(_EVENT.validate_python(item[1])):
                if event.type in ("response.completed", "response.incomplete", "response.failed"):
                    final = event.response
    return final


class EndpointTestCase(SynchronousTestCase):
    """Helpers: a complete JSON answer."""

    def reply(
        self, h: Harness, body: object, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """Status, JSON body and headers of a complete answer."""
        response = self.successResultOf(h.post(body, headers))
        content: Deferred[bytes] = treq.content(response)
        h.stub.flush()
        data = self.successResultOf(content)
        out_headers = {
            k.decode().lower(): v[-1].decode() for k, v in response.headers.getAllRawHeaders()
        }
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = data
        return response.code, parsed, out_headers


class JsonTests(EndpointTestCase):
    """Non-streaming answers."""

    def test_text_response(self) -> None:
        """A finished run is one ``response`` the SDK parses, with usage and output_text."""
        h = Harness()
        d = h.post(
            {"model": "openclaw", "input": "hi", "metadata": {"k": "v"}, "instructions": "Be nice."}
        )
        run = h.runtime.last_run
        self.assertEqual(run.request.message, "hi")
        self.assertEqual(run.request.extra_system_prompt, "Be nice.")
        self.assertNoResult(d)
        run.finish("Hello!", usage=Usage(input=10, output=3, cache_read=4))
        h.stub.flush()
        status, body, _ = self.reply_of(h, d)
        self.assertEqual(status, 200)
        parsed = Response.model_validate(body)
        self.assertEqual(parsed.output_text, "Hello!")
        self.assertEqual(parsed.status, "completed")
        self.assertEqual(parsed.id, run.run_id)
        self.assertTrue(parsed.id.startswith("resp_"))
        self.assertEqual(parsed.metadata, {"k": "v"})
        self.assertEqual(parsed.instructions, "Be nice.")
        assert parsed.usage is not None
        self.assertEqual(
            (parsed.usage.input_tokens, parsed.usage.output_tokens, parsed.usage.total_tokens),
            (14, 3, 17),
        )
        self.assertEqual(parsed.usage.input_tokens_details.cached_tokens, 4)

    def reply_of(self, h: Harness, d: Deferred[IResponse]) -> tuple[int, Any, dict[str, str]]:
        """Status and JSON body of an answer that is now complete."""
        h.stub.flush()
        response = self.successResultOf(d)
        content: Deferred[bytes] = treq.content(response)
        h.stub.flush()
        return response.code, json.loads(self.successResultOf(content)), {}

    def test_function_call_output(self) -> None:
        """Pending client tool calls become ``function_call`` items after the commentary."""
        h = Harness()
        d = h.post({"input": "weather?", "tools": [{"type": "function", "name": "w"}]})
        run = h.runtime.last_run
        self.assertEqual([t.name for t in run.request.client_tools], ["w"])
        run.finish(
            "Let me check.", tool_calls=[ToolCall(id="call_9", name="w", arguments='{"c":1}')]
        )
        _, body, _ = self.reply_of(h, d)
        parsed = Response.model_validate(body)
        self.assertEqual([o.type for o in parsed.output], ["message", "function_call"])
        call = parsed.output[1]
        assert call.type == "function_call"
        self.assertEqual((call.call_id, call.name, call.arguments), ("call_9", "w", '{"c":1}'))

    def test_only_a_tool_call(self) -> None:
        """A reply that is only a tool call has no message item."""
        h = Harness()
        d = h.post({"input": "x", "tools": [{"type": "function", "name": "w"}]})
        h.runtime.last_run.finish("", tool_calls=[ToolCall(id="c", name="w", arguments="{}")])
        _, body, _ = self.reply_of(h, d)
        self.assertEqual([o["type"] for o in body["output"]], ["function_call"])

    def test_empty_and_truncated(self) -> None:
        """No text is OpenClaw's placeholder; a length stop is ``incomplete``."""
        h = Harness()
        d = h.post({"input": "x"})
        h.runtime.last_run.finish("")
        _, body, _ = self.reply_of(h, d)
        self.assertEqual(body["output"][0]["content"][0]["text"], "No response from OpenClaw.")
        d = h.post({"input": "x", "max_output_tokens": 2})
        h.runtime.last_run.finish("cut", stop_reason="length")
        _, body, _ = self.reply_of(h, d)
        self.assertEqual(body["status"], "incomplete")
        self.assertEqual(body["incomplete_details"], {"reason": "max_output_tokens"})
        self.assertEqual(body["max_output_tokens"], 2)

    def test_provider_failure(self) -> None:
        """A provider failure is the mapped OpenAI error, not retried by SDKs."""
        h = Harness()
        d = h.post({"input": "x"})
        h.runtime.last_run.fail(ProviderError(FailureKind.RATE_LIMIT, "slow down", status=429))
        h.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 429)
        self.assertEqual(response.headers.getRawHeaders(b"x-should-retry"), [b"false"])

    def test_required_tool_choice_unmet(self) -> None:
        """A required tool call the agent did not make is a 502."""
        h = Harness()
        d = h.post(
            {"input": "x", "tools": [{"type": "function", "name": "w"}], "tool_choice": "required"}
        )
        h.runtime.last_run.finish("prose")
        status, body, _ = self.reply_of(h, d)
        self.assertEqual(status, 502)
        self.assertIn("tool_choice=required", body["error"]["message"])

    def test_disconnect_cancels(self) -> None:
        """A client leaving a non-streaming request cancels the run."""
        h = Harness()
        conn = h.raw({"input": "x"})
        run = h.runtime.last_run
        conn.disconnect(stop_producer=False)
        self.assertEqual(run.cancel_calls, 1)
        self.assertEqual(self.flushLoggedErrors(), [])


class RoutingTests(EndpointTestCase):
    """Sessions across requests, model overrides, refusals."""

    def test_previous_response_id_continues_session(self) -> None:
        """A continuation runs in the named response's session (same scope)."""
        h = Harness()
        first = h.post({"input": "x"})
        run1 = h.runtime.last_run
        run1.finish("ok")
        h.stub.flush()
        self.successResultOf(first)
        h.post({"input": "y", "previous_response_id": run1.run_id})
        self.assertEqual(h.runtime.last_run.request.session_key, run1.session_key)

    def test_previous_response_id_continues_a_fresh_session_in_another_process(self) -> None:
        """A fresh session's response id works where it was never seen (another
        worker or instance on a shared store, or after a restart), in scope only:
        with the session header or another agent it is routed as new."""
        first, other = Harness(), Harness()
        first.post({"input": "x"})
        run1 = first.runtime.last_run
        other.post({"input": "y", "previous_response_id": run1.run_id})
        self.assertEqual(other.runtime.last_run.request.session_key, run1.session_key)
        other.post({"input": "y", "previous_response_id": run1.run_id, "user": "ann"})
        self.assertEqual(other.runtime.last_run.request.session_key, run1.session_key)
        for body, headers in (
            ({}, {"x-openclaw-session-key": "mine"}),
            ({"model": "openclaw/beta"}, {}),
        ):
            other.post({"input": "y", "previous_response_id": run1.run_id, **body}, headers)
            self.assertNotEqual(other.runtime.last_run.request.session_key, run1.session_key)

    def test_previous_response_id_out_of_scope(self) -> None:
        """Another agent, another session header, or an unknown id: routed as new.
        A different (or no) ``user`` continues: OpenClaw's scope is the auth
        subject, the agent and the session header, and the remembered session
        wins over the one ``user`` names."""
        h = Harness()
        h.post({"input": "x", "user": "ann"})
        run1 = h.runtime.last_run
        for body in (
            {"input": "y", "previous_response_id": run1.run_id, "user": "bob"},
            {"input": "y", "previous_response_id": run1.run_id},
        ):
            h.post(body)
            self.assertEqual(h.runtime.last_run.request.session_key, run1.session_key)
        h.post(
            {"input": "y", "previous_response_id": run1.run_id},
            {"x-openclaw-session-key": "mine"},
        )
        self.assertNotEqual(h.runtime.last_run.request.session_key, run1.session_key)
        for body in (
            {
                "input": "y",
                "previous_response_id": run1.run_id,
                "model": "openclaw/beta",
                "user": "ann",
            },
            {"input": "y", "previous_response_id": "resp_unknown"},
        ):
            h.post(body)
            self.assertNotEqual(h.runtime.last_run.request.session_key, run1.session_key)

    def test_model_override(self) -> None:
        """``x-openclaw-model`` reaches the runtime; an unknown model is a 400 naming it."""
        h = Harness()
        h.post({"input": "x"}, {"x-openclaw-model": "demo/fast"})
        self.assertEqual(h.runtime.last_run.request.model_override, "demo/fast")
        h.runtime.start_error = UnknownModelError("nope/m", "main")
        status, body, _ = self.reply(h, {"input": "x"}, {"x-openclaw-model": "nope/m"})
        self.assertEqual(status, 400)
        self.assertEqual(
            body["error"]["message"], "Model 'nope/m' is not allowed for agent 'main'."
        )

    def test_tool_conflict(self) -> None:
        """A client tool named like a built-in one is OpenClaw's 400."""
        h = Harness()
        h.runtime.start_error = ClientToolConflictError(["exec"])
        status, body, _ = self.reply(
            h, {"input": "x", "tools": [{"type": "function", "name": "exec"}]}
        )
        self.assertEqual(
            (status, body["error"]["message"], body["error"]["param"]),
            (400, "invalid tool configuration", "tools"),
        )

    def test_auth_and_disabled(self) -> None:
        """No token: 401 in OpenAI's shape; endpoint off: plain-text 404."""
        h = Harness()
        response = self.successResultOf(
            h.stub.request("POST", "http://127.0.0.1" + PATH, data=b"{}")  # type: ignore[attr-defined]
        )
        self.assertEqual(response.code, 401)
        off = Harness(enabled=False)
        status, body, headers = self.reply(off, {"input": "x"})
        self.assertEqual((status, body), (404, b"Not Found"))
        self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")

    def test_validation_error(self) -> None:
        """A refused body is a JSON 400 and starts nothing."""
        h = Harness()
        status, body, _ = self.reply(h, {"input": 3})
        self.assertEqual((status, body["error"]["param"]), (400, "input"))
        self.assertEqual(h.runtime.runs, [])


class ImageFetchTests(EndpointTestCase):
    """URL images are fetched before the run; a client leaving cancels the fetch."""

    def test_fetched_images_reach_the_run(self) -> None:
        """The fetched image is passed to the agent with the inline ones."""
        fetcher = _Fetcher()
        h = Harness(image_fetcher=fetcher)
        content = [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "https://img.example/a.png"},
        ]
        h.post({"input": [{"role": "user", "content": content}]})
        self.assertEqual(fetcher.urls, ["https://img.example/a.png"])
        self.assertEqual(h.runtime.runs, [])
        fetcher.pending[0].callback(ImageInput(data=PNG_B64, mime_type="image/png"))
        self.assertEqual(len(h.runtime.last_run.request.images), 1)

    def test_refused_fetch_is_400(self) -> None:
        """A fetch the guard refuses is the generic image 400 and starts nothing."""
        fetcher = _Fetcher()
        h = Harness(image_fetcher=fetcher)
        part = {"type": "input_image", "image_url": "https://img.example/a.png"}
        d = h.post({"input": [{"role": "user", "content": [part]}]})
        fetcher.pending[0].errback(ImageFetchError("private address"))
        h.stub.flush()
        self.assertEqual(self.successResultOf(d).code, 400)
        self.assertEqual(h.runtime.runs, [])

    def test_disconnect_cancels_the_fetch(self) -> None:
        """Leaving while the image downloads cancels it; no run starts."""
        fetcher = _Fetcher()
        h = Harness(image_fetcher=fetcher)
        part = {"type": "input_image", "image_url": "https://img.example/a.png"}
        conn = h.raw({"input": [{"role": "user", "content": [part]}]})
        conn.disconnect(stop_producer=False)
        self.assertTrue(fetcher.cancelled)
        self.assertEqual(h.runtime.runs, [])


class _Fetcher:
    """An ImageFetcher whose downloads the test completes by hand."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.pending: list[Deferred[ImageInput]] = []
        self.cancelled = False

    def fetch(self, url: str, config: ImagesConfig) -> Deferred[ImageInput]:
        self.urls.append(url)
        d: Deferred[ImageInput] = Deferred(lambda _: setattr(self, "cancelled", True))
        self.pending.append(d)
        return d
