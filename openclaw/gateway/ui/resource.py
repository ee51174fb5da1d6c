# -*- test-case-name: tests.test_control_ui_serving -*-
"""Serves the Control UI (``gateway.controlUi``) under its base path.

The gateway's root resource asks :meth:`ControlUi.claims` for every plain
HTTP request and hands over the ones under the base path: ``<base>/`` (the
page), ``<base>/assets/<hashed name>`` and ``<base>/favicon.svg``. The page is
revalidated on every load (``no-cache``); hashed assets are immutable for a
year. Every answer forbids framing and carries a Content-Security-Policy that
allows only this origin's scripts, styles and WebSocket: model output shown
in the page cannot load or run anything else.
"""

from __future__ import annotations

import re

from twisted.logger import Logger
from twisted.web.iweb import IRequest

from openclaw.config.model import ControlUiConfig
from openclaw.gateway.ui.assets import Asset, AssetBundle

log = Logger()

_IMMUTABLE = b"public, max-age=31536000, immutable"
_REVALIDATE = b"no-cache"
#: A ``Host`` header safe to echo into the policy: a name or IP literal and a port.
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def content_security_policy(host: bytes | None) -> bytes:
    """The page's policy; ``connect-src`` names this host's ``ws:``/``wss:`` origin
    explicitly, since older browsers do not let ``'self'`` cover WebSockets."""
    connect = "'self'"
    if host is not None:
        text = host.decode("latin-1")
        if _HOST.match(text):
            connect += f" ws://{text} wss://{text}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"font-src 'self'; connect-src {connect}; manifest-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'; object-src 'none'"
    ).encode("ascii")


class ControlUi:
    """The Control UI's HTTP side: which paths it owns and how it answers them."""

    def __init__(self, bundle: AssetBundle, base_path: str = "") -> None:
        self._bundle = bundle
        self._base = base_path.rstrip("/").encode("ascii")
        self._assets = self._base + b"/assets/"

    @property
    def bundle(self) -> AssetBundle:
        """The files being served."""
        return self._bundle

    @property
    def base_path(self) -> str:
        """The normalised base path (``""`` for the root)."""
        return self._base.decode("ascii")

    def claims(self, path: bytes) -> bool:
        """Whether the request path (no query) is one of the UI's."""
        if path in (self._base, self._base + b"/", self._base + b"/index.html"):
            return True
        return path.startswith(self._assets) or path == self._base + b"/favicon.svg"

    def render(self, request: IRequest) -> bytes:
        """Answer a claimed path: the page, an asset, a redirect or a 404/405."""
        path = request.path
        _stamp_policy(request)
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            return _plain(request, b"Method Not Allowed\n")
        if path == self._base:
            # The page uses relative URLs, so it must be addressed as a directory.
            query = request.uri[len(path) :]
            request.setResponseCode(308)
            request.setHeader(b"location", path + b"/" + query)
            return _plain(request, b"")
        if path in (self._base + b"/", self._base + b"/index.html"):
            return _send(request, self._bundle.index, _REVALIDATE)
        if path == self._base + b"/favicon.svg":
            name = self._bundle.names.get("favicon.svg")
            asset = self._bundle.assets.get(name) if name else None
            if asset is not None:
                return _send(request, asset, _REVALIDATE)
        else:
            asset = self._bundle.assets.get(path[len(self._assets) :].decode("latin-1"))
            if asset is not None:
                return _send(request, asset, _IMMUTABLE)
        request.setResponseCode(404)
        return _plain(request, b"Not Found\n")


def build_control_ui(config: ControlUiConfig) -> ControlUi | None:
    """The UI for ``gateway.controlUi`` (None when disabled); reads the files once."""
    if not config.enabled:
        return None
    bundle = AssetBundle.load()
    log.info(
        "control UI at {base_path}/ ({count} assets)",
        base_path=config.base_path,
        count=len(bundle.assets),
    )
    return ControlUi(bundle, config.base_path)


def _stamp_policy(request: IRequest) -> None:
    request.setHeader(
        b"content-security-policy", content_security_policy(request.getHeader(b"host"))
    )
    request.setHeader(b"x-frame-options", b"DENY")
    request.setHeader(b"cross-origin-opener-policy", b"same-origin")
    request.setHeader(b"cross-origin-resource-policy", b"same-origin")


def _send(request: IRequest, asset: Asset, cache_control: bytes) -> bytes:
    request.setHeader(b"cache-control", cache_control)
    request.setHeader(b"etag", asset.etag)
    if asset.gzipped is not None:
        request.setHeader(b"vary", b"accept-encoding")
    if request.getHeader(b"if-none-match") == asset.etag:
        request.setResponseCode(304)
        return b""
    request.setHeader(b"content-type", asset.content_type)
    body = asset.body
    if asset.gzipped is not None and _accepts_gzip(request.getHeader(b"accept-encoding")):
        body = asset.gzipped
        request.setHeader(b"content-encoding", b"gzip")
    request.setHeader(b"content-length", b"%d" % len(body))
    return b"" if request.method == b"HEAD" else body


def _accepts_gzip(header: bytes | None) -> bool:
    """``gzip`` is listed in Accept-Encoding and not refused with ``q=0``."""
    for item in (header or b"").lower().split(b","):
        name, _, params = item.strip().partition(b";")
        if name.strip() == b"gzip":
            return params.replace(b" ", b"") not in (b"q=0", b"q=0.0", b"q=0.00", b"q=0.000")
    return False


def _plain(request: IRequest, body: bytes) -> bytes:
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"content-length", b"%d" % len(body))
    return body
