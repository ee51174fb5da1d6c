"""The lines a gateway logs when it starts: what it read and what it serves.

An operator reading the first screen of a log should learn which config file
was used, the agents and their models, and which endpoints answer; a switched
off chat endpoint says how to switch it on (a new user's first 404 otherwise).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from twisted.logger import Logger

from openclaw.agents.types import AgentInfo
from openclaw.config.model import Config
from openclaw.sessions.redis.url import RedisUrlError, parse_redis_url

log = Logger()


def enabled_endpoints(config: Config) -> list[str]:
    """The HTTP endpoints that answer with this config (probes always do)."""
    http = config.gateway.http
    names = ["/healthz", "/readyz"]
    if http.chat_completions.enabled:
        names.append("/v1/chat/completions")
    if http.responses.enabled:
        names.append("/v1/responses")
    if http.chat_completions.enabled or http.responses.enabled:  # served with either
        names += ["/v1/models", "/v1/embeddings"]
    if http.metrics.enabled:
        names.append("/metrics" + (" (no auth)" if http.metrics.auth == "none" else ""))
    if config.gateway.control_ui.enabled:
        names.append(f"Control UI at {config.gateway.control_ui.base_path or '/'}")
    names.append("WebSocket")
    return names


def session_store_text(config: Config, env: Mapping[str, str]) -> str:
    """Where sessions live: the directory, or Redis (password masked)."""
    if config.session.store != "redis":
        return f"files under {config.state_dir / 'agents'}"
    try:
        url = parse_redis_url(config.gateway.redis.url or "", env).redacted()
    except RedisUrlError:
        url = "(invalid gateway.redis.url)"
    return f"redis {url}, key prefix {config.gateway.redis.key_prefix!r}"


def log_startup(
    config: Config, agents: Sequence[AgentInfo], env: Mapping[str, str] | None = None
) -> None:
    """Log the config file, agents and endpoints (addresses are logged once bound)."""
    source = str(config.source_path) if config.source_path else "none found (defaults)"
    log.info("config file: {config_file}", config_file=source)
    log.info("state directory: {state_dir}", state_dir=str(config.state_dir))
    log.info(
        "sessions: {session_store}",
        session_store=session_store_text(config, os.environ if env is None else env),
    )
    for agent in agents:
        log.info(
            "agent {agent_id}{default}: model {model}",
            agent_id=agent.id,
            default=" (default)" if agent.is_default else "",
            model=agent.model or "(none configured)",
        )
    log.info("endpoints: {endpoints}", endpoints=", ".join(enabled_endpoints(config)))
    if not config.gateway.http.chat_completions.enabled:
        log.info(
            "/v1/chat/completions is disabled: set "
            "gateway.http.endpoints.chatCompletions.enabled: true to serve it"
        )


__all__ = ["enabled_endpoints", "log_startup", "session_store_text"]
