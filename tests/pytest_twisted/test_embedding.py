"""The embedding examples of docs/embedding.md, run for real on loopback (pytest-twisted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest_twisted
import treq
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource

from openclaw.agents.runtime import build_runtime
from openclaw.config import parse_config_text
from openclaw.config.model import Config
from openclaw.gateway import build_resource
from openclaw.gateway.http.request import GatewaySite
from openclaw.service import build_service

CONFIG = """{
  gateway: {auth: {mode: "token", token: "embed-token"},
            http: {endpoints: {chatCompletions: {enabled: true}}}},
  agents: {list: [{id: "main", model: "demo/echo"}]},
}"""
AUTH: dict[bytes | str, bytes | str] = {
    "Authorization": "Bearer embed-token",
    "Content-Type": "application/json",
}
BODY = json.dumps(
    {"model": "openclaw", "messages": [{"role": "user", "content": "hello"}]}
).encode()


def _config(tmp_path: Path) -> Config:
    return parse_config_text(CONFIG, source="test", env={}, state_dir=tmp_path).config


@pytest_twisted.ensureDeferred
async def test_build_service_in_an_application(tmp_path: Path) -> None:
    """build_service on port 0: it serves chat completions, then stops cleanly."""
    from twisted.internet import reactor

    service = build_service(_config(tmp_path), reactor, endpoints=["tcp:0:interface=127.0.0.1"])
    service.startService()
    try:
        (address,) = await service.listening()
        base = f"http://127.0.0.1:{address.port}"  # type: ignore[attr-defined]
        response = await treq.post(base + "/v1/chat/completions", BODY, headers=AUTH)
        assert response.code == 200
        body: Any = await response.json()
        assert "hello" in body["choices"][0]["message"]["content"]
        ready = await treq.get(base + "/readyz")
        assert ready.code == 200
        await ready.content()
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_resource_mounted_under_a_path(tmp_path: Path) -> None:
    """build_resource mounted at /openclaw of the embedder's own GatewaySite."""
    from twisted.internet import reactor

    config = _config(tmp_path)
    runtime = build_runtime(config, reactor)
    root = Resource()
    root.putChild(b"openclaw", build_resource(config, runtime, reactor))
    site = GatewaySite(root, http_config=config.gateway.http, clock=reactor)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
    try:
        base = f"http://127.0.0.1:{port.getHost().port}/openclaw"
        health = await treq.get(base + "/healthz")
        assert (health.code, await health.json()) == (200, {"ok": True, "status": "live"})
        response = await treq.post(base + "/v1/chat/completions", BODY, headers=AUTH)
        assert response.code == 200
        assert (await response.json())["object"] == "chat.completion"
        missing = await treq.get(base + "/nope")
        assert missing.code == 404
        await missing.content()
    finally:
        await port.stopListening()
        await runtime.shutdown()
