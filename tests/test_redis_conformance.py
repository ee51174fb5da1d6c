"""Two instances on one Redis behind a round-robin balancer, used through the
official ``openai`` SDK exactly as one gateway is.

Issue 12's acceptance: "two instances on one Redis pass the conformance of a
single one: any request can go to either". A small TCP balancer on loopback
sends each new connection to the next instance (no stickiness), and the SDK
opens a new connection per request, so consecutive requests of one
conversation land on different processes. The model (a scripted upstream)
answers with every user message it was sent, so each answer shows the
history the serving instance read from Redis.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections import Counter
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx2
import openai
from twisted.trial.unittest import SynchronousTestCase

from tests.gateway_process import TOKEN, GatewayProcess, write_config
from tests.redis_support import RedisServer
from tests.test_redis_gateway import start_draining
from tests.threaded_model import Frame, ScriptedModel, serve, text_of


class _HistoryModel(ScriptedModel):
    """Answers with the user messages it was sent."""

    def reply(self, request: dict[str, Any]) -> list[Frame]:
        messages = request.get("messages", [])
        users = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        text = "heard: " + " | ".join(users)
        return [({"role": "assistant", "content": text}, None), ({}, "stop")]


class RoundRobin:
    """A loopback TCP balancer: each accepted connection goes to the next backend."""

    def __init__(self, ports: list[int]) -> None:
        self._next = itertools.cycle(ports)
        self.served: Counter[int] = Counter()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                backend_port = next(self._next)
                self.served[backend_port] += 1
                backend = socket.create_connection(("127.0.0.1", backend_port))
                for source, sink in ((client, backend), (backend, client)):
                    threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()


class BalancedInstancesTests(SynchronousTestCase):
    """Instances A and B on one Redis, reached only through the balancer."""

    server: ClassVar[RedisServer]
    model: ClassVar[ThreadingHTTPServer]
    gateways: ClassVar[list[GatewayProcess]]
    balancer: ClassVar[RoundRobin]

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = RedisServer()
        cls.server.start()
        cls.model = serve(_HistoryModel)
        cls.gateways = []
        try:
            for name in ("a", "b"):
                cls.gateways.append(cls._start(cls.server.directory / name))
        except BaseException:
            cls.tearDownClass()
            raise
        cls.balancer = RoundRobin([g.port for g in cls.gateways])

    @classmethod
    def _start(cls, root: Path) -> GatewayProcess:
        root.mkdir(parents=True)
        model_url = f"http://127.0.0.1:{cls.model.server_address[1]}/v1"
        config = write_config(
            root,
            {
                "session": {"store": "redis"},
                "models": {
                    "providers": {
                        "scripted": {
                            "baseUrl": model_url,
                            "api": "openai-completions",
                            "apiKey": "none",
                            "models": [{"id": "m", "name": "scripted"}],
                        }
                    }
                },
                "agents": {"list": [{"id": "main", "default": True, "model": "scripted/m"}]},
            },
            redis={"url": cls.server.url},
            http={
                "endpoints": {
                    "chatCompletions": {"enabled": True},
                    "responses": {"enabled": True},
                }
            },
        )
        state = root / "state"
        state.mkdir()
        gateway = GatewayProcess(config, state)
        start_draining(gateway)
        return gateway

    @classmethod
    def tearDownClass(cls) -> None:
        with contextlib.suppress(AttributeError):
            cls.balancer.close()
        for gateway in cls.gateways:
            gateway.stop()
        cls.model.shutdown()
        cls.model.server_close()
        cls.server.cleanup()

    def client(self) -> openai.OpenAI:
        """The SDK through the balancer, one new connection per request."""
        # httpx2: the HTTP library this SDK version is built on.
        http_client = openai.DefaultHttpxClient(limits=httpx2.Limits(max_keepalive_connections=0))
        self.addCleanup(http_client.close)
        return openai.OpenAI(
            base_url=f"http://127.0.0.1:{self.balancer.port}/v1",
            api_key=TOKEN,
            max_retries=0,
            http_client=http_client,
        )

    def assertBothServed(self, before: Counter[int]) -> None:
        """Both instances answered some of the requests made since ``before``."""
        for gateway in self.gateways:
            self.assertGreater(self.balancer.served[gateway.port], before[gateway.port])

    def test_a_user_conversation_alternating_instances_is_one_history(self) -> None:
        """Four turns with one ``user``: whichever instance serves a turn, the model
        is sent every earlier user message of the conversation, in order."""
        client = self.client()
        before = Counter(self.balancer.served)
        for n in range(1, 5):
            reply = client.chat.completions.create(
                model="openclaw/main",
                user="alice-balanced",
                messages=[{"role": "user", "content": f"turn {n}"}],
            )
            expected = " | ".join(f"turn {i}" for i in range(1, n + 1))
            self.assertEqual(reply.choices[0].message.content, f"heard: {expected}")
            self.assertEqual(reply.choices[0].finish_reason, "stop")
        self.assertBothServed(before)

    def test_streams_from_either_instance_and_a_session_header(self) -> None:
        """Streaming turns on one ``x-openclaw-session-key`` through the balancer
        arrive whole (one role, content, finish ``stop``) and share one history."""
        client = self.client()
        before = Counter(self.balancer.served)
        for n in (1, 2, 3):
            stream = client.chat.completions.create(
                model="openclaw/main",
                stream=True,
                messages=[{"role": "user", "content": f"s{n}"}],
                extra_headers={"x-openclaw-session-key": "balanced-stream"},
            )
            chunks = list(stream)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            roles = [
                c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role
            ]
            finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
            self.assertEqual(roles, ["assistant"])
            self.assertEqual([f for f in finishes if f], ["stop"])
            self.assertEqual(text, "heard: " + " | ".join(f"s{i}" for i in range(1, n + 1)))
        self.assertBothServed(before)

    def test_responses_continue_by_previous_response_id_on_either_instance(self) -> None:
        """``/v1/responses``: each continuation names the previous response id and
        may land on the other instance; the model still gets the whole thread."""
        client = self.client()
        before = Counter(self.balancer.served)
        previous: str | None = None
        for n in (1, 2, 3):
            kwargs: dict[str, Any] = {"model": "openclaw/main", "input": f"r{n}"}
            if previous is not None:
                kwargs["previous_response_id"] = previous
            response = client.responses.create(**kwargs)
            self.assertEqual(response.status, "completed")
            expected = " | ".join(f"r{i}" for i in range(1, n + 1))
            self.assertEqual(response.output_text, f"heard: {expected}")
            previous = response.id
        self.assertBothServed(before)

    def test_models_and_errors_are_the_same_on_both(self) -> None:
        """``/v1/models`` lists the same agents and a bad key gets the same 401
        whichever instance answers."""
        client = self.client()
        listings = {tuple(sorted(m.id for m in client.models.list().data)) for _ in range(4)}
        self.assertEqual(len(listings), 1)
        self.assertIn("openclaw/main", next(iter(listings)))
        bad = openai.OpenAI(
            base_url=f"http://127.0.0.1:{self.balancer.port}/v1",
            api_key="wrong-key",
            max_retries=0,
        )
        for _ in range(2):
            with self.assertRaises(openai.AuthenticationError):
                bad.models.list()
