"""Applying a reloaded configuration to a running gateway.

A reload (SIGHUP, ``openclaw gateway reload``) replaces the
:class:`~openclaw.config.live.LiveConfig`'s config; :class:`LiveGateway`,
subscribed to it, then

* rotates the shared secret (``gateway.auth``) and the trusted proxies: the
  next check uses the new values, the old token is refused at once, and
  WebSocket connections that authenticated with it are closed (4001);
* builds the HTTP endpoints afresh from the new config (endpoint switches,
  agents, image settings) and routes *new* requests to them; a request
  already dispatched, a stream in particular, finishes on the objects it
  started with;
* updates the body limits and CORS origins of the site;
* hands the config to the runtime when it can take one (new and changed
  agents, providers, tool policy): see :class:`Reconfigurable`.

Listening addresses, workers and the state directory apply at restart
(:class:`~openclaw.config.live.LiveConfig` says so in the log).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from twisted.logger import Logger
from twisted.web.resource import IResource

from openclaw.config.model import Config
from openclaw.gateway.auth import GatewayAuth
from openclaw.gateway.http.cors import BrowserOriginGuard, CorsPolicy
from openclaw.gateway.http.request import GatewaySite
from openclaw.gateway.resource import GatewayRootResource
from openclaw.gateway.ui import build_control_ui

log = Logger()


class ConfigReader(Protocol):
    """Something that reads ``config`` per call (the WebSocket methods' services)."""

    config: Config


@runtime_checkable
class Reconfigurable(Protocol):
    """A runtime that can switch to a new config for the runs it starts next
    (running runs keep theirs)."""

    def reconfigure(self, config: Config) -> None: ...


class LiveGateway:
    """Subscriber of the live config: swaps what new requests are served with."""

    def __init__(
        self,
        *,
        auth: GatewayAuth,
        root: GatewayRootResource,
        site: GatewaySite,
        runtime: object,
        http_resource: Callable[[Config], IResource],
        ws_services: ConfigReader | None = None,
        revoke_stale_auth: Callable[[], object] | None = None,
    ) -> None:
        """
        :param http_resource: the Klein resource of the HTTP routes for a config.
        :param ws_services: the WebSocket methods' services (``models.list``
            reads the providers from their ``config``).
        :param revoke_stale_auth: closes the WebSocket connections that
            authenticated with credentials the new config no longer accepts.
        """
        self._revoke_stale_auth = revoke_stale_auth
        self._auth = auth
        self._root = root
        self._site = site
        self._runtime = runtime
        self._http_resource = http_resource
        self._ws_services = ws_services

    def apply(self, config: Config) -> None:
        """Serve new work with ``config`` (runtime first: new endpoints may name new agents)."""
        if isinstance(self._runtime, Reconfigurable):
            self._runtime.reconfigure(config)
        else:
            log.info("the runtime takes no reloaded config: agents and providers apply at restart")
        gateway = config.gateway
        self._auth.reconfigure(gateway.auth, gateway.trusted_proxies)
        if self._revoke_stale_auth is not None:
            self._revoke_stale_auth()
        self._site.http_config = gateway.http
        self._site.cors = CorsPolicy.from_origins(
            gateway.http.cors.allowed_origins, max_age_seconds=gateway.http.cors.max_age_seconds
        )
        # Mode none: a foreign web page must not be able to drive agents.
        self._site.origin_guard = (
            BrowserOriginGuard.from_origins(
                gateway.control_ui.allowed_origins + gateway.http.cors.allowed_origins,
                self._auth.client_address,
            )
            if gateway.auth.mode == "none"
            else None
        )
        if self._ws_services is not None:
            self._ws_services.config = config
        self._root.replace_http(self._http_resource(config), build_control_ui(gateway.control_ui))


__all__ = ["LiveGateway", "Reconfigurable"]
