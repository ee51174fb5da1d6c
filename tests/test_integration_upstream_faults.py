"""Upstream faults against the real ``twistd openclaw`` process (issue 7 item 5).

For each way a model upstream can fail, one non-streaming and one streaming
request run side by side through the gateway: the non-streaming one must get
the mapped OpenAI error (status, type, message, ``x-should-retry: false``),
the streaming one a ``200`` whose body ends with one error frame and
``data: [DONE]``. Every request has a client-side timeout and must finish.
Around each batch the gateway's open file descriptors and TCP connections are
counted once it is idle (its upstream keep-alives closed from the upstream's
side, then a probe answered): the counts must not change.

The fake upstream runs on this process's reactor; providers with other
settings (a 1 s idle timeout, a wrong key, a closed port) are separate agents
of the same gateway.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase

from openclaw.testing import FakeReply
from tests import integration_support as support
from tests.gateway_process import TOKEN, GatewayProcess, write_config
from tests.integration_support import (
    UPSTREAM_KEY,
    Census,
    HTTPResult,
    gather,
    in_thread,
    openai_provider,
    post_chat,
    refused_port,
)

HI = [{"role": "user", "content": "hi"}]
WRONG_KEY = "sk-wrong-upstream-key-9876543210"
#: (test, before, after) of every leak check, for reports.
CENSUSES: list[tuple[str, Census, Census]] = []
#: ``sseKeepAliveSeconds`` of the gateways here: a stalled stream shows pings.
KEEP_ALIVE = 0.25
#: Faults that do not involve a timeout must be answered well within this.
PROMPT_SECONDS = 5.0


def error_of(body: Any) -> dict[str, Any]:
    """The ``error`` object of an OpenAI error body, checked for its four keys."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error, dict)
    return error


class _FaultCase(support.GatewayTestCase):
    """Fault checks: both kinds of request at once, errors, leak counts."""

    secrets = (TOKEN, UPSTREAM_KEY, WRONG_KEY)

    @classmethod
    def gateway_settings(cls) -> dict[str, Any]:
        """Keep-alive comments every :data:`KEEP_ALIVE` seconds."""
        return {
            "http": {
                "endpoints": {
                    "chatCompletions": {"enabled": True, "sseKeepAliveSeconds": KEEP_ALIVE}
                }
            }
        }

    def assert_no_leaks(self, before: Census, after: Census) -> None:
        """Same number of descriptors and of TCP sockets in each state."""
        CENSUSES.append((self.id().rsplit(".", 1)[-1], before, after))
        self.assertEqual(
            (after.fds, after.tcp),
            (before.fds, before.tcp),
            f"before: {before.connections} {before.others}\n"
            f"after: {after.connections} {after.others}",
        )

    async def both(
        self, agent: str, reply: FakeReply | None, **extra: Any
    ) -> tuple[HTTPResult, HTTPResult]:
        """One non-streaming and one streaming request at the same time, each
        meeting ``reply`` upstream; both must finish (client timeouts)."""
        if reply is not None:
            self.fake.enqueue(reply, reply)
        body = {"model": f"openclaw/{agent}", "messages": HI, **extra}
        port = self.gateway.port
        plain, streamed = await gather(
            in_thread(lambda: post_chat(port, body)),
            in_thread(lambda: post_chat(port, {**body, "stream": True})),
        )
        return plain, streamed

    def assert_error(
        self,
        plain: HTTPResult,
        streamed: HTTPResult,
        *,
        status: int,
        type: str,
        message: str,
        code: str | None,
        streamed_text: str = "",
    ) -> None:
        """The non-streaming answer is the mapped error; the stream is a role
        chunk, any text sent before the fault, one error frame and ``[DONE]``."""
        self.assertEqual(plain.status, status, plain.body)
        self.assertTrue(plain.headers["content-type"].startswith("application/json"))
        self.assertEqual(plain.headers.get("x-should-retry"), "false")
        expected = {"message": message, "type": type, "param": None, "code": code}
        self.assertEqual(error_of(plain.json()), expected)

        self.assertEqual(streamed.status, 200)
        self.assertTrue(streamed.headers["content-type"].startswith("text/event-stream"))
        self.assertEqual(streamed.data_lines[-1], "[DONE]")
        self.assertEqual(streamed.data_lines.count("[DONE]"), 1)
        frames = streamed.frames
        self.assertEqual(frames[0]["choices"][0]["delta"]["role"], "assistant")
        self.assertEqual(error_of(frames[-1]), expected)
        chunks = frames[:-1]
        self.assertTrue(all("error" not in f for f in chunks))
        self.assertTrue(all(f["choices"][0]["finish_reason"] is None for f in chunks))
        text = "".join(f["choices"][0]["delta"].get("content") or "" for f in chunks)
        self.assertEqual(text, streamed_text)


class UpstreamFaultTests(_FaultCase):
    """Each upstream fault through one shared gateway, with leak counts."""

    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        """Agents for the normal, slow (1 s idle timeout), unreachable and
        wrongly keyed providers."""
        return {
            "models": {
                "providers": {
                    "fake": openai_provider(port),
                    "slow": openai_provider(port, timeoutSeconds=1),
                    "badkey": openai_provider(port, apiKey=WRONG_KEY),
                    "dead": openai_provider(refused_port()),
                }
            },
            "agents": {
                # Each fault as the client sees it at once (retries: test_integration_model_retry).
                "defaults": {"modelRetry": {"maxRetries": 0}},
                "list": [
                    {"id": "main", "default": True, "model": "fake/gpt-fake"},
                    {"id": "slow", "model": "slow/gpt-fake"},
                    {"id": "badkey", "model": "badkey/gpt-fake"},
                    {"id": "dead", "model": "dead/gpt-fake"},
                ],
            },
        }

    async def test_upstream_500(self) -> None:
        """An upstream 500 becomes a 502 ``api_error`` without its internals."""
        before = await self.census()
        plain, streamed = await self.both(
            "main", FakeReply.failing(500, "database on fire at 10.0.0.7")
        )
        self.assert_error(
            plain,
            streamed,
            status=502,
            type="api_error",
            message="upstream provider error",
            code="server_error",
        )
        self.assertLess(max(plain.elapsed, streamed.elapsed), PROMPT_SECONDS)
        self.assertNotIn(b"10.0.0.7", plain.body + streamed.body)
        self.assertEqual(self.fake.request_count, 2)
        self.assert_no_leaks(before, await self.census())

    async def test_upstream_429_with_retry_after(self) -> None:
        """An upstream 429 keeps its status, message and ``Retry-After``."""
        before = await self.census()
        plain, streamed = await self.both("main", FakeReply.rate_limited("3"))
        self.assert_error(
            plain,
            streamed,
            status=429,
            type="rate_limit_error",
            message="Rate limit reached",
            code="rate_limit_exceeded",
        )
        self.assertEqual(plain.headers.get("retry-after"), "3")
        self.assertLess(max(plain.elapsed, streamed.elapsed), PROMPT_SECONDS)
        self.assert_no_leaks(before, await self.census())

    async def test_upstream_429_with_retry_after_ms(self) -> None:
        """``retry-after-ms: 2500`` from the upstream becomes ``Retry-After: 3``."""
        before = await self.census()
        plain, streamed = await self.both(
            "main", FakeReply.rate_limited(None, retry_after_ms="2500")
        )
        self.assert_error(
            plain,
            streamed,
            status=429,
            type="rate_limit_error",
            message="Rate limit reached",
            code="rate_limit_exceeded",
        )
        self.assertEqual(plain.headers.get("retry-after"), "3")
        self.assert_no_leaks(before, await self.census())

    async def test_upstream_401(self) -> None:
        """The upstream refuses the gateway's key: 401 ``authentication_error``
        with a fixed message that never quotes the key."""
        before = await self.census()
        plain, streamed = await self.both("badkey", None)
        self.assert_error(
            plain,
            streamed,
            status=401,
            type="authentication_error",
            message="The model provider rejected the gateway's credentials.",
            code="invalid_api_key",
        )
        self.assertEqual(
            [r.headers.get("authorization") for r in self.fake.requests],
            [f"Bearer {WRONG_KEY}"] * 2,
        )
        self.assertNotIn(WRONG_KEY.encode(), plain.body + streamed.body)
        self.assert_no_leaks(before, await self.census())

    async def test_connection_refused(self) -> None:
        """A provider whose port is closed: 502 ``upstream provider unavailable``."""
        before = await self.census()
        plain, streamed = await self.both("dead", None)
        self.assert_error(
            plain,
            streamed,
            status=502,
            type="api_error",
            message="upstream provider unavailable",
            code=None,
        )
        self.assertLess(max(plain.elapsed, streamed.elapsed), PROMPT_SECONDS)
        self.assertEqual(self.fake.request_count, 0)
        self.assert_no_leaks(before, await self.census())

    async def test_reset_before_headers(self) -> None:
        """The upstream aborts the connection before answering: 502."""
        before = await self.census()
        plain, streamed = await self.both("main", FakeReply(mode="reset_before_headers"))
        self.assert_error(
            plain,
            streamed,
            status=502,
            type="api_error",
            message="upstream provider unavailable",
            code=None,
        )
        self.assertEqual(self.fake.request_count, 2)
        self.assert_no_leaks(before, await self.census())

    async def test_reset_mid_stream(self) -> None:
        """The upstream aborts after two chunks: the stream has delivered them
        before its error frame; the non-streaming answer is a 502."""
        before = await self.census()
        reply = FakeReply(
            text="alpha beta gamma delta",
            mode="reset_mid_stream",
            fail_after_chunks=2,
            # Frames apart in time: a RST arriving with unread data makes
            # Linux drop that data, and the test is about what was delivered.
            chunk_delay=0.02,
        )
        plain, streamed = await self.both("main", reply)
        self.assert_error(
            plain,
            streamed,
            status=502,
            type="api_error",
            message="upstream provider unavailable",
            code=None,
            streamed_text="alpha beta ",
        )
        self.assert_no_leaks(before, await self.census())

    async def test_stalled_upstream_times_out(self) -> None:
        """An upstream that sends one chunk and then nothing: the provider's
        1 s idle timeout gives 504 ``upstream provider timeout`` (the stream
        sent ``: ping`` meanwhile) and the gateway closes both upstream
        connections."""
        before = await self.census()
        plain, streamed = await self.both("slow", FakeReply(text="first rest", mode="stall"))
        # While the upstream is silent the stream carries keep-alive comments.
        self.assertIn(b"\n: ping\n", b"\n" + streamed.body)
        self.assert_error(
            plain,
            streamed,
            status=504,
            type="api_error",
            message="upstream provider timeout",
            code=None,
            streamed_text="first ",
        )
        for result in (plain, streamed):
            self.assertGreaterEqual(result.elapsed, 0.9)
            self.assertLess(result.elapsed, PROMPT_SECONDS)
        await self.fake.wait_for_client_closes(2)
        self.assertEqual(self.fake.active_streams, 0)
        self.assert_no_leaks(before, await self.census())

    async def test_slow_drip_completes(self) -> None:
        """Chunks every 0.15 s through a provider whose idle timeout is 1 s:
        the whole reply arrives although it takes longer than the timeout."""
        before = await self.census()
        text = "one two three four five six seven"
        plain, streamed = await self.both("slow", FakeReply(text=text, chunk_delay=0.15))
        self.assertEqual(plain.status, 200, plain.body)
        self.assertEqual(plain.json()["choices"][0]["message"]["content"], text)
        self.assertEqual(streamed.status, 200)
        self.assertEqual(streamed.data_lines[-1], "[DONE]")
        frames = streamed.frames
        content = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames)
        self.assertEqual(content, text)
        self.assertEqual([f["choices"][0]["finish_reason"] for f in frames][-1], "stop")
        self.assertGreater(min(plain.elapsed, streamed.elapsed), 1.0)
        self.assert_no_leaks(before, await self.census())

    async def test_malformed_sse(self) -> None:
        """A frame that is not JSON: 502 ``upstream provider error``, and the
        gateway drops that upstream connection."""
        before = await self.census()
        reply = FakeReply(text="fine then", mode="malformed", fail_after_chunks=1, chunk_delay=0.02)
        plain, streamed = await self.both("main", reply)
        self.assert_error(
            plain,
            streamed,
            status=502,
            type="api_error",
            message="upstream provider error",
            code=None,
            streamed_text="fine ",
        )
        self.assert_no_leaks(before, await self.census())

    async def test_endless_stream_client_disconnects(self) -> None:
        """An upstream that never ends, a streaming and a non-streaming client
        that hang up: both upstream connections are closed at once."""
        before = await self.census()
        self.fake.reply = FakeReply(text="tick ", mode="endless", chunk_delay=0.01)
        streaming = await self.raw({"model": "openclaw", "stream": True, "messages": HI})
        plain = await self.raw({"model": "openclaw", "messages": HI})
        await streaming.wait_for(b'"delta":{"content":"tick')
        await self.fake.wait_for_requests(2)
        # The request is recorded before the fake's stream starts: let
        # render_POST return (one reactor turn, no real time).
        await deferLater(self.reactor, 0, lambda: None)
        self.assertEqual(self.fake.active_streams, 2)
        started = time.monotonic()
        streaming.abort()
        plain.abort()
        await self.fake.wait_for_client_closes(2)
        self.assertLess(time.monotonic() - started, 1.0)
        self.assertEqual(self.fake.active_streams, 0)
        self.assertEqual(bytes(plain.received), b"")
        await gather(streaming.closed, plain.closed)
        self.assert_no_leaks(before, await self.census())


class AgentTimeoutTests(_FaultCase):
    """An endless upstream with nobody hanging up: the agent timeout ends it."""

    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        """A 1 s agent timeout."""
        return {
            "models": {"providers": {"fake": openai_provider(port)}},
            "agents": {
                "defaults": {"timeoutSeconds": 1},
                "list": [{"id": "main", "default": True, "model": "fake/gpt-fake"}],
            },
        }

    async def test_endless_stream_hits_the_agent_timeout(self) -> None:
        """Both clients get ``agent run timed out`` (504, or the error frame
        after the text streamed so far) and the upstream is closed."""
        before = await self.census()
        plain, streamed = await self.both(
            "main", FakeReply(text="tick ", mode="endless", chunk_delay=0.05)
        )
        self.assertEqual(plain.status, 504, plain.body)
        expected = {
            "message": "agent run timed out",
            "type": "api_error",
            "param": None,
            "code": "timeout",
        }
        self.assertEqual(error_of(plain.json()), expected)
        self.assertEqual(plain.headers.get("x-should-retry"), "false")
        self.assertEqual(streamed.status, 200)
        self.assertEqual(streamed.data_lines[-1], "[DONE]")
        frames = streamed.frames
        self.assertEqual(error_of(frames[-1]), expected)
        text = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames[:-1])
        self.assertTrue(text.startswith("tick tick "), text)
        for result in (plain, streamed):
            self.assertGreaterEqual(result.elapsed, 0.9)
            self.assertLess(result.elapsed, PROMPT_SECONDS)
        await self.fake.wait_for_client_closes(2)
        self.assert_no_leaks(before, await self.census())


class StartupSignalTests(SynchronousTestCase):
    """Found while building these suites: the moment the gateway says it is
    listening, a SIGTERM must already stop it cleanly."""

    def test_sigterm_right_after_the_listening_line_exits_0(self) -> None:
        """``GatewayProcess`` sends SIGTERM as soon as ``listening on`` is
        logged; the exit status must be 0 every time (three starts), not the
        signal's default -15."""
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        config = write_config(directory)
        statuses = []
        for _ in range(3):
            gateway = GatewayProcess(config, directory / "state")
            self.addCleanup(gateway.ensure_stopped)
            statuses.append(gateway.stop(signal.SIGTERM))
        self.assertEqual(statuses, [0, 0, 0])
