"""The Control UI's HTTP side: which paths it serves, caching, the security
policy, fingerprinted assets, and the ``gateway.controlUi`` config keys."""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Any, cast

import treq
from treq.testing import StubTreq
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyRequest

from openclaw.config.errors import ConfigError
from openclaw.config.loader import config_from_mapping
from openclaw.config.model import ControlUiConfig
from openclaw.gateway.http.app import GatewayHttpApp
from openclaw.gateway.lifecycle import Readiness
from openclaw.gateway.resource import GatewayRootResource
from openclaw.gateway.ui import AssetBundle, AssetError, build_control_ui, content_security_policy


class _Marker(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        return b"websocket"


def _client(base_path: str = "", enabled: bool = True) -> Any:
    clock = MemoryReactorClock()
    app = GatewayHttpApp(readiness=Readiness(), clock=clock, chat_completions=None, models=None)
    ui = build_control_ui(ControlUiConfig(enabled=enabled, base_path=base_path))
    root = GatewayRootResource(http=app.resource(), websocket=_Marker(), control_ui=ui)
    return StubTreq(root)


class ServingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.client = _client()

    def get(self, path: str, method: str = "GET", **kw: Any) -> tuple[Any, bytes]:
        response = self.successResultOf(self.client.request(method, "http://gw:18789" + path, **kw))
        return response, self.successResultOf(treq.content(response))

    def header(self, response: Any, name: str) -> str:
        values = response.headers.getRawHeaders(name) or [""]
        return str(values[0])

    def test_page_at_root_is_revalidated_and_framing_is_refused(self) -> None:
        """``/`` answers the page with ``no-cache``, DENY framing and a strict policy."""
        response, body = self.get("/")
        self.assertEqual(response.code, 200)
        self.assertIn(b'<script type="module" src="assets/js/main.', body)
        self.assertEqual(self.header(response, "cache-control"), "no-cache")
        self.assertEqual(self.header(response, "x-frame-options"), "DENY")
        policy = self.header(response, "content-security-policy")
        self.assertIn("frame-ancestors 'none'", policy)
        self.assertIn("script-src 'self';", policy)
        self.assertIn("connect-src 'self' ws://gw:18789 wss://gw:18789;", policy)
        self.assertNotIn("unsafe", policy)
        self.assertEqual(self.header(response, "content-type"), "text/html; charset=utf-8")

    def test_page_has_no_inline_script_or_style(self) -> None:
        """The page needs no 'unsafe-inline': no inline script, style or handler."""
        _, body = self.get("/")
        text = body.decode()
        self.assertNotRegex(text, r"<script(?![^>]*\bsrc=)")
        self.assertNotIn("<style", text)
        self.assertNotRegex(text, r"\sstyle=|\son[a-z]+=")

    def test_hashed_assets_are_immutable_and_referenced_by_hash(self) -> None:
        """Every asset the page names loads with a year-long immutable cache."""
        _, body = self.get("/")
        refs = re.findall(rb'(?:href|src)="(assets/[^"]+)"', body)
        self.assertGreaterEqual(len(refs), 4)
        for ref in refs:
            self.assertRegex(ref, rb"\.[0-9a-f]{10}\.[a-z]+$")
            response, asset = self.get("/" + ref.decode())
            self.assertEqual(response.code, 200, ref)
            self.assertTrue(asset)
            self.assertEqual(
                self.header(response, "cache-control"), "public, max-age=31536000, immutable"
            )

    def test_module_imports_point_at_hashed_names(self) -> None:
        """The entry module imports its siblings by their hashed names, which exist."""
        _, page = self.get("/")
        main = re.search(rb'src="(assets/js/main\.[0-9a-f]+\.js)"', page)
        assert main is not None
        _, source = self.get("/" + main.group(1).decode())
        imports = re.findall(rb'from "\./([^"]+)"', source)
        self.assertIn(True, [name.startswith(b"gateway.") for name in imports])
        for name in imports:
            response, _ = self.get("/assets/js/" + name.decode())
            self.assertEqual(response.code, 200, name)

    def test_unknown_and_unhashed_assets_are_404(self) -> None:
        """Only fingerprinted names are served; the plain name is not."""
        for path in ("/assets/js/main.js", "/assets/nope.0123456789.js", "/assets/"):
            response, _ = self.get(path)
            self.assertEqual(response.code, 404, path)

    def test_gzip_when_the_browser_accepts_it(self) -> None:
        """Large text assets are sent gzip-compressed to clients that accept it,
        identical once decompressed, and plain to the others."""
        ui = build_control_ui(ControlUiConfig())
        assert ui is not None
        path = b"/assets/" + ui.bundle.names["js/main.js"].encode()

        def fetch(accept: bytes | None) -> tuple[DummyRequest, bytes]:
            request = DummyRequest([])
            setattr(request, "path", path)  # noqa: B010  # typing note: not declared on DummyRequest
            if accept is not None:
                request.requestHeaders.setRawHeaders(b"accept-encoding", [accept])
            # DummyRequest has what render() uses but does not declare IRequest.
            return request, ui.render(cast(IRequest, request))

        plain, plain_body = fetch(None)
        self.assertIsNone(plain.responseHeaders.getRawHeaders(b"content-encoding"))
        packed, packed_body = fetch(b"br, gzip")
        self.assertEqual(packed.responseHeaders.getRawHeaders(b"content-encoding"), [b"gzip"])
        self.assertEqual(packed.responseHeaders.getRawHeaders(b"vary"), [b"accept-encoding"])
        self.assertLess(len(packed_body), len(plain_body) // 2)
        self.assertEqual(gzip.decompress(packed_body), plain_body)
        refused, _ = fetch(b"gzip;q=0")
        self.assertIsNone(refused.responseHeaders.getRawHeaders(b"content-encoding"))

    def test_etag_revalidation(self) -> None:
        """A matching If-None-Match gets 304 with no body."""
        first, _ = self.get("/")
        etag = self.header(first, "etag")
        response, body = self.get("/", headers={"If-None-Match": etag})
        self.assertEqual((response.code, body), (304, b""))

    def test_head_and_other_methods(self) -> None:
        """HEAD has headers and no body; POST is refused with 405 and Allow."""
        response, body = self.get("/", "HEAD")
        self.assertEqual((response.code, body), (200, b""))
        self.assertNotEqual(self.header(response, "content-length"), "0")
        response, _ = self.get("/", "POST")
        self.assertEqual(response.code, 405)
        self.assertEqual(self.header(response, "allow"), "GET, HEAD")

    def test_other_paths_still_reach_the_http_app(self) -> None:
        """API paths are not the UI's: /healthz answers from the HTTP app."""
        response, body = self.get("/healthz")
        self.assertEqual(response.code, 200)
        self.assertIn(b"live", body)

    def test_websocket_upgrade_at_root_is_not_the_page(self) -> None:
        """An upgrade request for ``/`` still goes to the WebSocket side."""
        _, body = self.get("/", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        self.assertEqual(body, b"websocket")


class BasePathTests(SynchronousTestCase):
    def get(self, client: Any, path: str) -> tuple[Any, bytes]:
        request = client.request("GET", "http://gw" + path, allow_redirects=False)
        response = self.successResultOf(request)
        return response, self.successResultOf(treq.content(response))

    def test_base_path_moves_the_page(self) -> None:
        """With basePath /openclaw, the page lives there and ``/`` is not the UI."""
        client = _client("/openclaw")
        response, body = self.get(client, "/openclaw/")
        self.assertEqual(response.code, 200)
        self.assertIn(b"assets/js/main.", body)
        redirect, _ = self.get(client, "/openclaw?x=1")
        self.assertEqual(redirect.code, 308)
        self.assertEqual(redirect.headers.getRawHeaders("location"), ["/openclaw/?x=1"])
        root, _ = self.get(client, "/")
        self.assertEqual(root.code, 404)

    def test_disabled_serves_nothing(self) -> None:
        """gateway.controlUi.enabled false: ``/`` is the HTTP app's 404."""
        client = _client(enabled=False)
        response, body = self.get(client, "/")
        self.assertEqual(response.code, 404)
        self.assertNotIn(b"<html", body)


class PolicyTests(SynchronousTestCase):
    def test_hostile_host_header_is_not_echoed(self) -> None:
        """A Host that is not a plain host[:port] leaves connect-src at 'self'."""
        policy = content_security_policy(b"evil; script-src *")
        self.assertIn(b"connect-src 'self';", policy)
        self.assertNotIn(b"evil", policy)
        self.assertIn(b"ws://[::1]:80 ", content_security_policy(b"[::1]:80"))


class BundleTests(SynchronousTestCase):
    def tree(self, files: dict[str, str]) -> Path:
        root = Path(self.mktemp())
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return root

    def test_changing_a_dependency_renames_its_importers(self) -> None:
        """A module's hash covers the hashed names it imports."""
        files = {
            "index.html": '<script type="module" src="js/a.js"></script>',
            "js/a.js": 'import { b } from "./b.js";',
            "js/b.js": "export const b = 1;",
        }
        first = AssetBundle.load(self.tree(files))
        files["js/b.js"] = "export const b = 2;"
        second = AssetBundle.load(self.tree(files))
        self.assertNotEqual(first.names["js/a.js"], second.names["js/a.js"])
        body = second.assets[second.names["js/a.js"]].body
        self.assertIn(second.names["js/b.js"].split("/")[-1].encode(), body)

    def test_cycles_and_missing_imports_are_errors(self) -> None:
        """A broken tree fails at startup, not in the browser."""
        cycle = {"index.html": "", "a.js": 'import "./b.js";', "b.js": 'import "./a.js";'}
        self.assertRaises(AssetError, AssetBundle.load, self.tree(cycle))
        missing = {"index.html": "", "a.js": 'import "../../x.js";'}
        self.assertRaises(AssetError, AssetBundle.load, self.tree(missing))
        dangling = {"index.html": '<link href="gone.css">'}
        self.assertRaises(AssetError, AssetBundle.load, self.tree(dangling))


class ConfigTests(SynchronousTestCase):
    def load(self, control_ui: dict[str, Any]) -> Any:
        data = {"gateway": {"controlUi": control_ui}}
        return config_from_mapping(data, env={}, state_dir=Path("/nonexistent"))

    def test_keys_are_honoured(self) -> None:
        """enabled, basePath and allowedOrigins are read, without warnings."""
        loaded = self.load(
            {"enabled": False, "basePath": "/openclaw/", "allowedOrigins": ["https://a.example"]}
        )
        ui = loaded.config.gateway.control_ui
        self.assertEqual(
            (ui.enabled, ui.base_path, ui.allowed_origins),
            (False, "/openclaw", ("https://a.example",)),
        )
        self.assertFalse([w for w in loaded.warnings if "controlUi" in w])

    def test_defaults(self) -> None:
        """On by default, at the root; ``/`` means the root too."""
        ui = self.load({"basePath": "/"}).config.gateway.control_ui
        self.assertEqual((ui.enabled, ui.base_path), (True, ""))

    def test_bad_base_path_is_a_clear_error(self) -> None:
        """A relative path or a ``..`` segment names the key in the error."""
        for bad in ("openclaw", "/a/../b", "/a b"):
            with self.assertRaises(ConfigError) as caught:
                self.load({"basePath": bad})
            self.assertIn("gateway.controlUi.basePath", str(caught.exception))
