"""web_fetch against a real loopback twisted.web server; SSRF refusals with the guard on."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from openclaw.agents.tools._common import inline_runner
from openclaw.agents.tools.base import ToolContext, ToolResult
from openclaw.agents.tools.limits import WebFetchLimits
from openclaw.agents.tools.web_fetch import WebFetchTool
from openclaw.netguard import IPAddress, SSRFPolicy

PAGE = b"""<!doctype html><html><head><title>Hello page</title>
<script>steal()</script></head><body><nav>menu</nav>
<article><h1>Heading</h1><p>Some <b>bold</b> text and a <a href="/x">link</a>.</p></article>
</body></html>"""


class Server(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []
        self.hosts: list[bytes | None] = []
        self.redirect_to = b""
        self.pending: list[Request] = []

    def render_GET(self, request: Request) -> bytes | int:
        path = request.path.decode()
        self.paths.append(path)
        self.hosts.append(request.getHeader(b"host"))
        if path == "/page":
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            return PAGE
        if path == "/plain":
            request.setHeader(b"content-type", b"text/plain")
            return b"x" * 5000
        if path == "/big":
            request.setHeader(b"content-type", b"text/plain")
            return b"y" * 200_000
        if path == "/redirect":
            request.setResponseCode(302)
            request.setHeader(b"location", self.redirect_to)
            return b""
        if path == "/loop":
            request.setResponseCode(302)
            request.setHeader(b"location", b"/loop")
            return b""
        if path == "/missing":
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain")
            return b"nope"
        if path == "/gone":
            request.setResponseCode(410)
            request.setHeader(b"content-type", b"text/html")
            return (
                b"<html><head><title>Gone</title></head><body><p>This page left.</p></body></html>"
            )
        if path == "/json":
            request.setHeader(b"content-type", b"application/problem+json")
            return b'{"a":[1,2],"b":"\xc3\xa9"}'
        if path == "/yaml":
            request.setHeader(b"content-type", b"application/yaml")
            return b"a: 1\n"
        if path == "/octets":
            request.setHeader(b"content-type", b"application/octet-stream")
            return b"plain words"
        if path == "/binary":
            request.setHeader(b"content-type", b"application/octet-stream")
            return b"\x00\x01"
        if path == "/hang":
            self.pending.append(request)
            return NOT_DONE_YET
        return b""


class WebFetchTests(TestCase):
    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.server = Server()
        site = Site(self.server)
        # typing note: Site is a ServerFactory at runtime
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]
        self.addCleanup(self.port.stopListening)
        self.port_no: int = self.port.getHost().port  # type: ignore[attr-defined]
        self.base = f"http://127.0.0.1:{self.port_no}"
        self.ctx = ToolContext("main", "k", "r", "c", FilePath(self.mktemp()))
        self.dns: dict[str, list[IPAddress]] = {}

    def resolver(self, host: str, port: int) -> Deferred[list[IPAddress]]:
        literal = [ipaddress.ip_address(host)] if host[0].isdigit() or ":" in host else None
        return succeed(literal or self.dns.get(host, []))

    def tool(self, policy: SSRFPolicy, **limits: Any) -> WebFetchTool:
        return WebFetchTool(
            self.reactor,  # type: ignore[arg-type]
            inline_runner,
            ssrf_policy=policy,
            limits=WebFetchLimits(**limits),
            resolver=self.resolver,
            progress_after_seconds=0.05,
        )

    async def fetch(self, tool: WebFetchTool, **args: Any) -> ToolResult:
        result: ToolResult = await tool.run(args, self.ctx)
        return result

    async def test_markdown_and_text(self) -> None:
        """An HTML page becomes markdown (main content, no script/nav) or plain text."""
        tool = self.tool(SSRFPolicy(allow_private_network=True))
        res = await self.fetch(tool, url=f"{self.base}/page")
        self.assertFalse(res.is_error, res.content)
        pending = [repr(c) for c in self.reactor.getDelayedCalls()]
        self.assertFalse([c for c in pending if "Fetching" in c])  # progress timer cleared
        body = json.loads(res.content)
        self.assertRegex(
            body["text"],
            r'^<<<EXTERNAL_UNTRUSTED_CONTENT id="[0-9a-f]{16}">>>\nSource: External\n---\n',
        )
        self.assertIn("# Heading", body["text"])
        self.assertIn("**bold**", body["text"])
        self.assertNotIn("steal", body["text"])
        self.assertNotIn("menu", body["text"])
        self.assertEqual(
            (body["title"], body["status"], body["extractMode"]), ("Hello page", 200, "markdown")
        )
        text = json.loads(
            (await self.fetch(tool, url=f"{self.base}/page", extractMode="text")).content
        )
        self.assertIn("bold", text["text"])
        self.assertNotIn("**", text["text"])

    async def test_caps(self) -> None:
        """maxChars truncates the text; the body cap stops the download."""
        tool = self.tool(SSRFPolicy(allow_private_network=True), max_response_bytes=1000)
        res = json.loads((await self.fetch(tool, url=f"{self.base}/plain", maxChars=400)).content)
        self.assertEqual((res["length"], res["truncated"]), (len(res["text"]), True))
        self.assertEqual(res["length"], 400)  # the wrapper counts against maxChars
        small = json.loads((await self.fetch(tool, url=f"{self.base}/plain", maxChars=100)).content)
        body = small["text"].split("\n---\n", 1)[1].rsplit("\n<<<END_", 1)[0]
        self.assertEqual(len(body), 50)  # at least half of maxChars is the page
        big = json.loads((await self.fetch(tool, url=f"{self.base}/big")).content)
        self.assertEqual(big["rawLength"], 1000)
        self.assertTrue(big["truncated"])

    async def test_openclaw_result_shapes(self) -> None:
        """As OpenClaw: a non-2xx answer is an error naming the status with the
        page's text as wrapped detail; JSON is pretty-printed (extractor json);
        textual types and bytes without NULs are read raw; a body cut at
        maxResponseBytes carries a warning."""
        tool = self.tool(SSRFPolicy(allow_private_network=True), max_response_bytes=1000)
        gone = await self.fetch(tool, url=f"{self.base}/gone")
        self.assertTrue(gone.is_error)
        self.assertTrue(gone.content.startswith("Web fetch failed (410): <<<EXTERNAL_UNTRUSTED"))
        self.assertIn("Gone\nThis page left.", gone.content)
        self.assertNotIn("<p>", gone.content)
        missing = await self.fetch(tool, url=f"{self.base}/missing")
        self.assertIn("Web fetch failed (404)", missing.content)
        self.assertIn("nope", missing.content)
        data = json.loads((await self.fetch(tool, url=f"{self.base}/json")).content)
        self.assertEqual(data["extractor"], "json")
        self.assertIn('{\n  "a": [\n    1,', data["text"])
        self.assertIn('"b": "\u00e9"', data["text"])
        for path in ("/yaml", "/octets"):
            res = await self.fetch(tool, url=f"{self.base}{path}")
            self.assertFalse(res.is_error, res.content)
            self.assertEqual(json.loads(res.content)["extractor"], "raw")
        big = json.loads((await self.fetch(tool, url=f"{self.base}/big")).content)
        self.assertEqual(big["warning"], "Response body incomplete after 1000 bytes.")
        roomy = self.tool(SSRFPolicy(allow_private_network=True))
        whole = json.loads(
            (await self.fetch(roomy, url=f"{self.base}/plain", maxChars=100)).content
        )
        self.assertNotIn("warning", whole)

    async def test_redirect_followed_and_rechecked(self) -> None:
        """A redirect is followed to the final URL and reported as finalUrl."""
        tool = self.tool(SSRFPolicy(allow_private_network=True))
        self.server.redirect_to = b"/page"
        res = json.loads((await self.fetch(tool, url=f"{self.base}/redirect")).content)
        self.assertEqual(res["finalUrl"], f"{self.base}/page")
        unicode = await self.fetch(tool, url=f"{self.base}/caf\u00e9?q=\u00fc")
        self.assertFalse(unicode.is_error, unicode.content)
        self.assertEqual(self.server.paths[-1], "/caf%C3%A9")
        loop = await self.fetch(tool, url=f"{self.base}/loop")
        self.assertIn("Too many redirects", loop.content)

    async def test_errors_are_tool_errors(self) -> None:
        """404s, binary bodies, timeouts, refused connections and bad args are tool errors."""
        tool = self.tool(SSRFPolicy(allow_private_network=True), timeout_seconds=0.2)
        self.assertTrue((await self.fetch(tool, url=f"{self.base}/missing")).is_error)
        self.assertIn(
            "unsupported content type", (await self.fetch(tool, url=f"{self.base}/binary")).content
        )
        updates: list[str] = []
        slow_ctx = ToolContext("main", "k", "r", "c", FilePath(self.mktemp()), updates.append)
        hang: ToolResult = await tool.run({"url": f"{self.base}/hang"}, slow_ctx)
        self.assertIn("timed out", hang.content)
        self.assertEqual(updates, ["Fetching page content..."])
        cancelled = tool.run({"url": f"{self.base}/hang"}, self.ctx)
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        for request in self.server.pending:
            request.finish()
        closed = await self.fetch(tool, url="http://127.0.0.1:1/")
        self.assertTrue(closed.is_error)
        for args in (
            {},
            {"url": 3},
            {"url": "ftp://x/"},
            {"url": "http://a\x00b/"},
            {"url": f"{self.base}/page", "extractMode": "html"},
            {"url": f"{self.base}/page", "maxChars": 5},
            {"url": "\ud800"},
        ):
            res: ToolResult = await tool.run(args, self.ctx)
            self.assertTrue(res.is_error, repr(args))

    async def test_private_targets_refused(self) -> None:
        """With the guard on, loopback and every embedded-IPv4 form are refused unfetched."""
        tool = self.tool(SSRFPolicy())
        port = self.port_no
        urls = [
            f"{self.base}/page",
            f"http://[::1]:{port}/",
            f"http://[::ffff:127.0.0.1]:{port}/",
            f"http://[::ffff:0:7f00:1]:{port}/",
            f"http://[64:ff9b::7f00:1]:{port}/",
            f"http://[2002:7f00:1::]:{port}/",
            f"http://[::127.0.0.1]:{port}/",
            f"http://10.0.0.1:{port}/",
            "http://169.254.169.254/latest/meta-data/",
            f"http://localhost:{port}/",
        ]
        for url in urls:
            res = await self.fetch(tool, url=url)
            self.assertTrue(res.is_error, url)
            self.assertIn("Blocked", res.content, url)
        self.assertEqual(self.server.paths, [])

    async def test_dns_answers_checked_and_pinned(self) -> None:
        """A name resolving to loopback (or to public+private) is refused; an allowed
        name connects to the checked address and keeps its Host header."""
        self.dns["rebind.test"] = [
            ipaddress.ip_address("8.8.8.8"),
            ipaddress.ip_address("127.0.0.1"),
        ]
        self.dns["inside.test"] = [ipaddress.ip_address("127.0.0.1")]
        port = self.port_no
        strict = self.tool(SSRFPolicy())
        for host in ("rebind.test", "inside.test", "unresolvable.test"):
            res = await self.fetch(strict, url=f"http://{host}:{port}/page")
            self.assertTrue(res.is_error, host)
        self.assertEqual(self.server.paths, [])
        allowed = self.tool(SSRFPolicy(allowed_hostnames=["inside.test"]))
        res = await self.fetch(allowed, url=f"http://inside.test:{port}/page")
        self.assertFalse(res.is_error, res.content)
        self.assertEqual(self.server.hosts[-1], f"inside.test:{port}".encode())

    async def test_redirect_to_loopback_refused(self) -> None:
        """A redirect from an allowed host to loopback (literal, mapped, NAT64) is refused."""
        self.dns["inside.test"] = [ipaddress.ip_address("127.0.0.1")]
        port = self.port_no
        tool = self.tool(SSRFPolicy(allowed_hostnames=["inside.test"]))
        for target in (
            f"http://127.0.0.1:{port}/page",
            f"http://[64:ff9b::7f00:1]:{port}/page",
            f"http://[::ffff:127.0.0.1]:{port}/page",
            f"http://localhost:{port}/page",
        ):
            self.server.redirect_to = target.encode()
            before = len(self.server.paths)
            res = await self.fetch(tool, url=f"http://inside.test:{port}/redirect")
            self.assertTrue(res.is_error, target)
            self.assertIn("Blocked", res.content)
            self.assertEqual(self.server.paths[before:], ["/redirect"])
