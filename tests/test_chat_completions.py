"""Non-streaming ``POST /v1/chat/completions``: the answer, failures, disconnects."""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import CancelledError

from openclaw.agents.types import (
    FailureKind,
    LifecycleEvent,
    ProviderError,
    RunAbortedError,
    RunTimeoutError,
    ToolCall,
    Usage,
)
from openclaw.core.unavailable import SharedStateUnavailableError, TurnNotSavedError
from tests.chat_fakes import ChatHarness, ChatTestCase, chat_body

COMPLETION_ID = re.compile(
    r"^chatcmpl_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather"}}


class CompletionTests(ChatTestCase):
    """A settled run becomes one ``chat.completion`` body."""

    def test_documentation_example(self) -> None:
        """The README's curl request, verbatim: 200 with the reply and every field."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("hello", usage=Usage(input=3, output=2))
        reply = self.call(
            h,
            {"model": "openclaw", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-openclaw-agent-id": "main"},
        )
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.headers["content-type"], "application/json; charset=utf-8")
        body = reply.json()
        self.assertRegex(body["id"], COMPLETION_ID)
        self.assertEqual(body["id"], h.runtime.requests[0].run_id)
        self.assertEqual(body["object"], "chat.completion")
        self.assertEqual(body["created"], int(h.clock.seconds()))
        self.assertEqual(body["model"], "openclaw")
        self.assertEqual(
            body["choices"],
            [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hello", "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
        )
        self.assertEqual(
            body["usage"], {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        )

    def test_content_length_set(self) -> None:
        """Non-stream answers carry ``Content-Length`` (not chunked)."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("hello")
        conn = h.raw()
        conn.send(chat_body())
        response = conn.response()
        self.assertTrue(response.complete)
        self.assertEqual(int(response.headers["content-length"]), len(response.body))
        self.assertNotIn("transfer-encoding", response.headers)

    def test_model_echoed_and_ids_unique(self) -> None:
        """The request's model string is echoed; every request gets its own id."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("x")
        first = self.call(h, chat_body(model="openclaw/beta")).json()
        second = self.call(h, chat_body(model="openclaw/beta")).json()
        self.assertEqual(first["model"], "openclaw/beta")
        self.assertNotEqual(first["id"], second["id"])

    def test_empty_reply(self) -> None:
        """No text at all: ``No response from OpenClaw.``."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("")
        body = self.call(h, chat_body()).json()
        self.assertEqual(body["choices"][0]["message"]["content"], "No response from OpenClaw.")

    def test_cached_tokens(self) -> None:
        """Cache reads count as prompt tokens and appear as ``cached_tokens``."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish(
            "x", usage=Usage(input=10, output=5, cache_read=20, cache_write=3)
        )
        usage = self.call(h, chat_body()).json()["usage"]
        self.assertEqual(
            usage,
            {
                "prompt_tokens": 30,
                "completion_tokens": 5,
                "total_tokens": 35,
                "prompt_tokens_details": {"cached_tokens": 20},
            },
        )

    def test_length_finish(self) -> None:
        """A run cut by its token cap finishes with ``length``."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("x", stop_reason="length")
        self.assertEqual(self.call(h, chat_body()).json()["choices"][0]["finish_reason"], "length")

    def test_waits_for_the_run(self) -> None:
        """The response is not written until the run settles."""
        h = ChatHarness()
        d = self.call_pending(h, chat_body())
        h.runtime.last_run.say("partial")
        h.stub.flush()
        self.assertNoResult(d)
        h.runtime.last_run.finish()
        h.stub.flush()
        self.assertEqual(self.successResultOf(d).code, 200)


class ToolCallTests(ChatTestCase):
    """Client tool calls in a non-streaming answer (§1.10)."""

    def test_two_pending_calls(self) -> None:
        """Commentary text, ``tool_calls`` exactly, no ``index`` keys, finish tool_calls."""
        h = ChatHarness()
        calls = (
            ToolCall("call_1", "get_weather", '{"city":"Taipei"}'),
            ToolCall("call_2", "get_time", "{}"),
        )
        h.runtime.on_start = lambda run: run.finish(
            "Let me check that.", stop_reason="tool_calls", tool_calls=calls
        )
        body = self.call(h, chat_body(tools=[WEATHER_TOOL])).json()
        choice = body["choices"][0]
        self.assertEqual(choice["finish_reason"], "tool_calls")
        self.assertEqual(choice["message"]["content"], "Let me check that.")
        self.assertEqual(
            choice["message"]["tool_calls"],
            [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Taipei"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        )
        self.assertIn("usage", body)

    def test_calls_without_text(self) -> None:
        """Tool calls with no commentary: content is ``""``, never null or the fallback."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish(
            "", tool_calls=(ToolCall("call_1", "get_weather", "{}"),)
        )
        message = self.call(h, chat_body(tools=[WEATHER_TOOL])).json()["choices"][0]["message"]
        self.assertEqual(message["content"], "")

    def test_required_not_satisfied(self) -> None:
        """``tool_choice=required`` answered with prose: 502, no retry."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("just talk")
        reply = self.call(h, chat_body(tools=[WEATHER_TOOL], tool_choice="required"))
        self.assertError(
            reply, 502, "tool_choice=required was not satisfied by the agent response", "api_error"
        )
        self.assertEqual(reply.headers["x-should-retry"], "false")

    def test_pinned_not_satisfied(self) -> None:
        """A pinned tool that was not called: 502 naming it."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish(
            "", tool_calls=(ToolCall("call_1", "other", "{}"),)
        )
        reply = self.call(
            h,
            chat_body(
                tools=[WEATHER_TOOL],
                tool_choice={"type": "function", "function": {"name": "get_weather"}},
            ),
        )
        self.assertError(
            reply,
            502,
            "tool_choice required a get_weather tool call, but the agent did not produce one",
            "api_error",
        )

    def test_satisfied_pinned(self) -> None:
        """The pinned tool was called: a normal tool_calls answer."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish(
            "", tool_calls=(ToolCall("call_1", "get_weather", "{}"),)
        )
        reply = self.call(
            h,
            chat_body(
                tools=[WEATHER_TOOL],
                tool_choice={"type": "function", "function": {"name": "get_weather"}},
            ),
        )
        self.assertEqual(reply.json()["choices"][0]["finish_reason"], "tool_calls")


class FailureTests(ChatTestCase):
    """Failed runs become OpenAI errors that SDKs must not retry."""

    def failed(self, error: BaseException) -> Any:
        """Run a request whose run fails with ``error``; the reply must forbid retries."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.fail(error)
        reply = self.call(h, chat_body())
        self.assertEqual(reply.headers.get("x-should-retry"), "false")
        return reply

    def test_provider_errors(self) -> None:
        """Classified provider failures keep status, type and code (§1.8)."""
        reply = self.failed(
            ProviderError(FailureKind.FORMAT, "too big", status=400, code="decimal_above_max_value")
        )
        error = self.assertError(reply, 400, "too big")
        self.assertEqual(error["code"], "decimal_above_max_value")
        reply = self.failed(ProviderError(FailureKind.SERVER_ERROR, "secret stack", status=500))
        self.assertError(reply, 502, "upstream provider error", "api_error")
        reply = self.failed(ProviderError(FailureKind.AUTH, "bad upstream key", status=401))
        self.assertError(
            reply,
            401,
            "The model provider rejected the gateway's credentials.",
            "authentication_error",
        )
        self.assertNotIn(b"bad upstream key", reply.body)

    def test_rate_limit_has_retry_after(self) -> None:
        """An upstream rate limit: 429 with the upstream's Retry-After."""
        reply = self.failed(
            ProviderError(FailureKind.RATE_LIMIT, "slow down", status=429, retry_after_seconds=7)
        )
        self.assertError(reply, 429, "slow down", "rate_limit_error")
        self.assertEqual(reply.headers["retry-after"], "7")

    def test_timeout(self) -> None:
        """The agent timeout: 504 ``agent run timed out``."""
        self.assertError(self.failed(RunTimeoutError()), 504, "agent run timed out", "api_error")

    def test_aborted_elsewhere(self) -> None:
        """A run aborted by someone else (shutdown, chat.abort): 503."""
        self.assertEqual(self.failed(RunAbortedError()).status, 503)

    def test_unexpected_failure(self) -> None:
        """Anything else: 500 ``internal error``, logged."""
        reply = self.failed(ValueError("boom"))
        self.assertError(reply, 500, "internal error", "api_error")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_shared_store_refusing_a_run_that_never_began_may_be_retried(self) -> None:
        """The shared store (Redis) refusing the run before its turn began (its
        session lane: nothing written, no model called): 503 with Retry-After
        and no ``x-should-retry``, so the OpenAI SDKs retry it as invited."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.fail(
            SharedStateUnavailableError("Redis refused the command: READONLY")
        )
        reply = self.call(h, chat_body())
        self.assertError(reply, 503, reply.error["message"], "api_error")
        self.assertEqual(reply.error["code"], "session_store_unavailable")
        self.assertEqual(reply.headers["retry-after"], "1")
        self.assertNotIn("x-should-retry", reply.headers)

    def test_shared_store_failing_a_turn_that_began_forbids_retries(self) -> None:
        """Once the turn began (the model may have answered), the same 503, or
        ``turn_not_saved``, carries ``x-should-retry: false``: a retry would
        run the turn again."""
        for error in (
            SharedStateUnavailableError("the turn could not be saved"),
            TurnNotSavedError("the session lane was lost"),
        ):
            h = ChatHarness()
            pending = self.call_pending(h, chat_body())
            run = h.runtime.last_run
            run.emit(LifecycleEvent(run.run_id, "start", 0))
            run.fail(error)
            h.stub.flush()
            response = self.successResultOf(pending)
            self.assertEqual(response.code, 503)
            self.assertEqual(response.headers.getRawHeaders(b"x-should-retry"), [b"false"])
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.fail(TurnNotSavedError("not saved"))
        self.assertEqual(self.call(h, chat_body()).headers.get("x-should-retry"), "false")

    def test_start_failure(self) -> None:
        """The runtime refusing to start: 500, and retrying is allowed (nothing ran)."""
        h = ChatHarness()
        h.runtime.start_error = RuntimeError("no lanes")
        reply = self.call(h, chat_body())
        self.assertError(reply, 500, "internal error", "api_error")
        self.assertNotIn("x-should-retry", reply.headers)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class DisconnectTests(ChatTestCase):
    """A client that leaves before the answer cancels the run at once."""

    def test_disconnect_cancels_run(self) -> None:
        """Connection lost mid-run: the run is cancelled once, nothing is written."""
        h = ChatHarness()
        conn = h.raw()
        conn.send(chat_body())
        run = h.runtime.last_run
        self.assertEqual(conn.transport.value(), b"")
        conn.disconnect()
        self.assertEqual(run.cancel_calls, 1)
        run.finish("too late")
        self.assertEqual(conn.transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_disconnect_notify_finish_only(self) -> None:
        """Even when only ``notifyFinish`` reports the loss, the run is cancelled."""
        h = ChatHarness()
        conn = h.raw()
        conn.send(chat_body())
        conn.disconnect(stop_producer=False)
        self.assertEqual(h.runtime.last_run.cancel_calls, 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_cancel_of_returned_deferred(self) -> None:
        """Cancelling the Deferred ``handle`` returned (what Klein does) cancels the run."""
        from twisted.web.test.requesthelper import DummyRequest

        h = ChatHarness()
        request: Any = DummyRequest([b"v1", b"chat", b"completions"])
        request.method = b"POST"
        import io
        import json

        request.content = io.BytesIO(json.dumps(chat_body()).encode())
        d = h.chat.handle(request)
        assert not isinstance(d, bytes)
        self.assertNoResult(d)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(h.runtime.last_run.cancel_calls, 1)
        d.cancel()
        self.assertEqual(h.runtime.last_run.cancel_calls, 1)

    def test_finished_run_not_cancelled(self) -> None:
        """A completed answer followed by a normal close cancels nothing."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("x")
        conn = h.raw()
        conn.send(chat_body())
        self.assertTrue(conn.response().complete)
        conn.disconnect()
        self.assertEqual(h.runtime.last_run.cancel_calls, 0)
