"""Reloading the config of a running gateway: what changes for new requests,
what running streams keep, and what an invalid file does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config import load_config
from openclaw.config.live import LiveConfig
from openclaw.service import GatewayService
from openclaw.testing import Reply, ScriptedProvider
from openclaw.testing.gateway import GatewayHarness
from tests.test_access_log import Collector
from tests.ws_fakes import WsConnector

OLD_TOKEN = "old-token-aaaaaaaaaaaaaaaaaaaaaaaa"
NEW_TOKEN = "new-token-bbbbbbbbbbbbbbbbbbbbbbbb"
CHAT = {"model": "openclaw", "messages": [{"role": "user", "content": "hi"}]}


def write_config(path: Path, *, token: str = OLD_TOKEN, chat: bool = True, **extra: Any) -> None:
    document: dict[str, Any] = {
        "gateway": {
            "auth": {"mode": "token", "token": token},
            "http": {"endpoints": {"chatCompletions": {"enabled": chat}}},
        },
        "models": {
            "providers": {
                "scripted": {"api": "openai-completions", "baseUrl": "http://127.0.0.1:9/v1"}
            }
        },
        "agents": {"defaults": {"model": {"primary": "scripted/test-model"}}},
        "session": {"fsync": "never"},
    }
    for key, value in extra.items():
        document[key] = value
    path.write_text(json.dumps(document))


class Fixture:
    """A gateway started from a config file, with a slow scripted model."""

    def __init__(self, case: SynchronousTestCase) -> None:
        base = Path(case.mktemp())
        base.mkdir()
        self.path = base / "openclaw.json"
        write_config(self.path)
        env = {"OPENCLAW_STATE_DIR": str(base / "state"), "HOME": str(base)}
        config = load_config(str(self.path), env=env).config
        self.live = LiveConfig(config, path=str(self.path), env=env)
        self.harness = GatewayHarness.create(base, config, live=self.live)
        self.provider: ScriptedProvider = self.harness.provider
        self.service = GatewayService(
            config=config,
            gateway=self.harness.gateway,
            reactor=self.harness.clock,
            endpoints=[],
        )

    def chat(self, token: str, *, stream: bool = False) -> Any:
        body = {**CHAT, "stream": stream}
        return self.harness.request(b"POST", b"/v1/chat/completions", body=body, token=token)


class capture_logs:
    """The formatted log lines from now on (a live view)."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self._collector = Collector().attach(case)

    def __iter__(self) -> Iterator[str]:
        return iter(self._collector.lines())


class TokenRotationTests(SynchronousTestCase):
    def test_rotated_token_applies_to_new_requests_while_a_stream_runs_on(self) -> None:
        """The issue's acceptance: a stream started with the old token keeps
        running to [DONE]; after the reload the old token is refused (401) and
        the new one accepted for the next request."""
        f = Fixture(self)
        f.provider.add(Reply.text("one ", "two ", "three", delay=1.0))
        stream = f.chat(OLD_TOKEN, stream=True)
        f.harness.run_due()
        f.harness.advance(1.0)
        self.assertIn(b"one", stream.raw())
        self.assertNotIn(b"[DONE]", stream.raw())

        write_config(f.path, token=NEW_TOKEN)
        result = f.service.reload()
        self.assertTrue(result.ok, result.problems)
        self.assertIn("gateway.auth", result.changed)

        self.assertEqual(f.chat(OLD_TOKEN).response()[0], 401)
        fresh = f.chat(NEW_TOKEN)
        f.harness.advance(5.0)
        self.assertEqual(fresh.response()[0], 200)
        f.harness.advance(5.0)
        body = stream.response()[2]
        self.assertIn(b"three", body)
        self.assertTrue(body.rstrip().endswith(b"data: [DONE]"))
        self.assertEqual(f.service.config.gateway.auth.token, NEW_TOKEN)

    def test_rotation_closes_websocket_clients_holding_the_old_token(self) -> None:
        """OpenClaw closes shared-auth clients (4001 "gateway auth changed") when
        a reload replaces the secret, so a leaked token stops working on open
        sockets too; a reload that leaves the secret alone keeps them."""
        f = Fixture(self)
        connector = WsConnector(f.harness.gateway.websocket.factory(), f.harness.clock)
        self.addCleanup(connector.cleanup)
        old, _ = connector.connect(token=OLD_TOKEN)
        write_config(f.path, token=OLD_TOKEN, chat=False)
        self.assertTrue(f.service.reload().ok)
        old.request("health")
        self.assertTrue(old.messages()[0]["ok"], "a reload that keeps the secret")

        # The client that asks for the rotating reload gets its answer, then the close.
        write_config(f.path, token=NEW_TOKEN)
        lines = capture_logs(self)
        old.request("gateway.reload")
        f.harness.run_due()
        frames = old.frames()
        self.assertEqual([frame.opcode for frame in frames], [1, 8])
        self.assertTrue(frames[0].json["ok"], frames[0].json)
        self.assertEqual(
            (frames[1].close_code, frames[1].close_reason), (4001, "gateway auth changed")
        )
        self.assertTrue(any("closed 1 WebSocket connection" in line for line in lines))
        fresh, hello = connector.connect(token=NEW_TOKEN)
        self.assertTrue(hello["ok"])
        fresh.request("health")
        self.assertTrue(fresh.messages()[0]["ok"])

    def test_logs_tail_masks_a_rotated_in_token_without_a_scrubber_in_front(self) -> None:
        """The logs.tail ring learns each reloaded config's secrets itself: a
        worker's or an embedder's gateway has no process-wide scrubber that a
        reload teaches (the rotated-out token stays masked too)."""
        f = Fixture(self)
        ring = f.harness.gateway.log_buffer
        assert ring is not None
        write_config(f.path, token=NEW_TOKEN)
        self.assertTrue(f.service.reload().ok)
        logger = Logger(namespace="openclaw.access", observer=ring)
        logger.info("GET {path}", path=f"/new/{NEW_TOKEN}")
        logger.info("GET {path}", path=f"/old/{OLD_TOKEN}")
        lines = ring.tail().lines
        self.assertTrue(lines[-2].endswith("GET /new/[redacted]"), lines)
        self.assertTrue(lines[-1].endswith("GET /old/[redacted]"), lines)


class ReloadTests(SynchronousTestCase):
    def test_endpoint_switch_takes_effect_for_new_requests(self) -> None:
        """Chat completions switched off by a reload answer 404; on again, 200."""
        f = Fixture(self)
        write_config(f.path, chat=False)
        self.assertTrue(f.service.reload().ok)
        self.assertEqual(f.chat(OLD_TOKEN).response()[0], 404)
        write_config(f.path, chat=True)
        self.assertTrue(f.service.reload().ok)
        exchange = f.chat(OLD_TOKEN)
        f.harness.run_due()
        self.assertEqual(exchange.response()[0], 200)

    def test_new_agent_serves_the_next_request(self) -> None:
        """An agent added to the file answers after the reload (the runtime is
        reconfigured), and the access line names it; before, it is unknown."""
        f = Fixture(self)
        headers = {"x-openclaw-agent-id": "ops"}
        before = f.harness.request(
            b"POST", b"/v1/chat/completions", body=CHAT, token=OLD_TOKEN, headers=headers
        )
        f.harness.run_due()
        self.assertNotEqual(before.response()[0], 200)
        write_config(
            f.path,
            agents={
                "defaults": {"model": {"primary": "scripted/test-model"}},
                "list": [{"id": "main", "default": True}, {"id": "ops"}],
            },
        )
        result = f.service.reload()
        self.assertTrue(result.ok, result.problems)
        self.assertIn("agents", result.changed)
        after = f.harness.request(
            b"POST", b"/v1/chat/completions", body=CHAT, token=OLD_TOKEN, headers=headers
        )
        f.harness.run_due()
        self.assertEqual(after.response()[0], 200, after.raw())
        self.assertIn("ops", [agent.id for agent in f.harness.gateway.runtime.agents])

    def test_switch_to_auth_none_keeps_foreign_pages_out(self) -> None:
        """Reloaded into auth mode none (loopback), the browser-origin guard comes
        with it: a request from a foreign page is refused, a plain client is served."""
        f = Fixture(self)
        document = json.loads(f.path.read_text())
        document["gateway"]["auth"] = {"mode": "none"}
        f.path.write_text(json.dumps(document))
        self.assertTrue(f.service.reload().ok)
        foreign = f.harness.request(
            b"POST",
            b"/v1/chat/completions",
            body=CHAT,
            headers={"Origin": "https://evil.example"},
        )
        self.assertEqual(foreign.response()[0], 401)
        plain = f.harness.request(b"POST", b"/v1/chat/completions", body=CHAT)
        f.harness.run_due()
        self.assertEqual(plain.response()[0], 200)
        services = f.harness.gateway.websocket.services
        self.assertEqual(services.config.gateway.auth.mode, "none")

    def test_invalid_config_is_refused_and_the_old_one_kept(self) -> None:
        """A file that does not validate: every problem is logged, the reload is
        refused, the running config and token still work."""
        f = Fixture(self)
        logs = capture_logs(self)
        f.path.write_text('{gateway: {port: "many", auth: {mode: "token", token: "x"}}}')
        result = f.service.reload()
        self.assertFalse(result.ok)
        self.assertTrue(any("gateway.port" in p for p in result.problems))
        self.assertTrue(any("config reload refused" in line for line in logs))
        self.assertTrue(any("gateway.port" in line for line in logs))
        exchange = f.chat(OLD_TOKEN)
        f.harness.run_due()
        self.assertEqual(exchange.response()[0], 200)
        self.assertEqual(f.live.current.gateway.auth.token, OLD_TOKEN)

    def test_config_that_cannot_start_is_refused(self) -> None:
        """A model naming an unknown provider passes parsing but not the start
        checks: refused like a syntax error."""
        f = Fixture(self)
        write_config(f.path, agents={"defaults": {"model": {"primary": "nowhere/x"}}})
        result = f.service.reload()
        self.assertFalse(result.ok)
        self.assertTrue(any("nowhere" in p for p in result.problems), result.problems)

    def test_unparseable_file_is_refused(self) -> None:
        """Broken JSON5 is refused with its position."""
        f = Fixture(self)
        f.path.write_text("{gateway: ")
        result = f.service.reload()
        self.assertFalse(result.ok)
        self.assertIn("invalid JSON5", result.problems[0])

    def test_embedding_settings_apply_to_the_next_request(self) -> None:
        """``memory.search`` changed by a reload picks the provider of the next
        ``/v1/embeddings`` call, both ways, even once an embedding was served."""
        f = Fixture(self)
        body = {"model": "openclaw", "input": ["a", "b"]}

        def embed() -> tuple[int, Any]:
            exchange = f.harness.request(b"POST", b"/v1/embeddings", body=body, token=OLD_TOKEN)
            f.harness.run_due()
            status, _, raw = exchange.response()
            return status, json.loads(raw)

        status, answer = embed()
        self.assertEqual(status, 400, answer)
        self.assertEqual(answer["error"]["code"], "embeddings_unavailable")

        write_config(f.path, memory={"search": {"provider": "demo"}})
        result = f.service.reload()
        self.assertTrue(result.ok, result.problems)
        self.assertIn("memory.search", result.changed)
        status, answer = embed()
        self.assertEqual(status, 200, answer)
        self.assertEqual(len(answer["data"]), 2)

        write_config(f.path)
        self.assertTrue(f.service.reload().ok)
        status, answer = embed()
        self.assertEqual(status, 400, answer)
        self.assertEqual(answer["error"]["code"], "embeddings_unavailable")

    def test_changed_areas_are_spelled_as_in_the_file(self) -> None:
        """The reload names what changed with the file's keys, not Python's."""
        f = Fixture(self)
        document = json.loads(f.path.read_text())
        document["gateway"]["trustedProxies"] = ["10.0.0.1"]
        document["gateway"]["shutdownGraceSeconds"] = 3
        f.path.write_text(json.dumps(document))
        result = f.service.reload()
        self.assertTrue(result.ok, result.problems)
        self.assertEqual(
            sorted(result.changed), ["gateway.shutdownGraceSeconds", "gateway.trustedProxies"]
        )

    def test_the_reloaded_line_names_only_what_applied(self) -> None:
        """A reload changing the port (restart-only), the token and the agents
        says "config reloaded" for the token and the agents only, and names the
        port as waiting for a restart; ``changed`` leaves the port out too."""
        f = Fixture(self)
        logs = capture_logs(self)
        document = json.loads(f.path.read_text())
        document["gateway"]["port"] = 19999
        document["gateway"]["auth"]["token"] = NEW_TOKEN
        document["agents"]["list"] = [{"id": "main", "default": True}, {"id": "ops"}]
        f.path.write_text(json.dumps(document))
        result = f.service.reload()
        self.assertTrue(result.ok, result.problems)
        self.assertEqual(result.changed, ("gateway.auth", "agents"))
        self.assertEqual(result.restart_needed, ("gateway.port",))
        [line] = [line for line in logs if "config reloaded from" in line]
        self.assertTrue(
            line.endswith(": gateway.auth, agents; after a restart: gateway.port"), line
        )
        # The next reload of the same file: nothing new applies, the port still waits.
        again = f.service.reload()
        self.assertEqual((again.changed, again.restart_needed), ((), ("gateway.port",)))

    def test_settings_that_need_a_restart_are_reported(self) -> None:
        """A changed port is reported as needing a restart; the rest applies."""
        f = Fixture(self)
        logs = capture_logs(self)
        document = json.loads(f.path.read_text())
        document["gateway"]["port"] = 19999
        f.path.write_text(json.dumps(document))
        result = f.service.reload()
        self.assertTrue(result.ok)
        self.assertEqual(result.restart_needed, ("gateway.port",))
        self.assertTrue(any("applies after a restart" in line for line in logs))

    def test_the_session_store_and_its_redis_need_a_restart(self) -> None:
        """gateway.redis (url, keyPrefix, lockTtlSeconds) and session.store are
        built once, with the store: a changed value is named as waiting for a
        restart, not reported as applied, and the running config keeps them."""
        f = Fixture(self)
        logs = capture_logs(self)
        document = json.loads(f.path.read_text())
        for redis in (
            {"keyPrefix": "oc6:"},
            {"lockTtlSeconds": 30},
            {"url": "redis://127.0.0.1:6399/0"},
        ):
            document["gateway"]["redis"] = redis
            f.path.write_text(json.dumps(document))
            result = f.service.reload()
            self.assertTrue(result.ok, result.problems)
            self.assertEqual(result.restart_needed, ("gateway.redis",), redis)
        self.assertTrue(any("gateway.redis" in line and "after a restart" in line for line in logs))
        document["session"]["store"] = "redis"
        f.path.write_text(json.dumps(document))
        result = f.service.reload()
        self.assertTrue(result.ok, result.problems)
        self.assertEqual(result.restart_needed, ("gateway.redis", "session"))
        self.assertEqual(f.live.running.session.store, "file")
        self.assertEqual(f.live.running.gateway.redis.key_prefix, "openclaw:")

    def test_a_reverted_restart_only_change_is_no_longer_pending(self) -> None:
        """A restart-only change is reported; putting the running value back is not
        (the file now matches what runs), and nothing is logged as pending."""
        f = Fixture(self)
        original = f.path.read_text()
        document = json.loads(original)
        document["gateway"]["http"]["maxHeaderBytes"] = 600
        f.path.write_text(json.dumps(document))
        result = f.service.reload()
        self.assertTrue(result.ok, result.problems)
        self.assertEqual(result.restart_needed, ("gateway.http header limits and keep-alive",))
        logs = capture_logs(self)
        f.path.write_text(original)
        result = f.service.reload()
        self.assertTrue(result.ok, result.problems)
        self.assertEqual(result.restart_needed, ())
        self.assertFalse(any("applies after a restart" in line for line in logs), list(logs))

    def test_a_pending_restart_only_change_is_named_on_every_reload(self) -> None:
        """Until a restart, each reload names the restart-only change still waiting,
        also when the reload itself changed something else."""
        f = Fixture(self)
        document = json.loads(f.path.read_text())
        document["gateway"]["port"] = 19999
        f.path.write_text(json.dumps(document))
        self.assertEqual(f.service.reload().restart_needed, ("gateway.port",))
        document["gateway"]["auth"]["token"] = NEW_TOKEN
        f.path.write_text(json.dumps(document))
        logs = capture_logs(self)
        result = f.service.reload()
        self.assertEqual(result.changed, ("gateway.auth",))
        self.assertEqual(result.restart_needed, ("gateway.port",))
        self.assertTrue(any("gateway.port" in line and "after a restart" in line for line in logs))
        self.assertEqual(f.live.running.gateway.port, 18789)

    def test_metrics_count_reloads(self) -> None:
        """openclaw_config_reloads_total counts applied and refused reloads
        (of a gateway serving metrics: --metrics-listen enables them too)."""
        f = Fixture(self)
        metrics = f.harness.gateway.enable_metrics()
        f.service.reload()
        f.path.write_text("{")
        f.service.reload()
        get = metrics.registry.get_sample_value
        self.assertEqual(get("openclaw_config_reloads_total", {"result": "ok"}), 1.0)
        self.assertEqual(get("openclaw_config_reloads_total", {"result": "refused"}), 1.0)

    def test_subscribers_see_each_new_config(self) -> None:
        """LiveConfig tells subscribers about a replacement; one that fails is
        logged and the others still run; unsubscribing stops the calls."""
        f = Fixture(self)
        seen: list[str | None] = []

        def broken(config: object) -> None:
            raise RuntimeError("boom")

        stop = f.live.subscribe(lambda c: seen.append(c.gateway.auth.token))
        f.live.subscribe(broken)
        write_config(f.path, token=NEW_TOKEN)
        self.assertTrue(f.live.reload().ok)
        self.assertEqual(seen, [NEW_TOKEN])
        stop()
        write_config(f.path, token=OLD_TOKEN)
        f.live.reload()
        self.assertEqual(seen, [NEW_TOKEN])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
