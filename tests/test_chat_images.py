"""Remote ``image_url`` images: the endpoint's use of a fetcher, and the real fetcher."""

from __future__ import annotations

import base64
from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import URI
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from openclaw.agents.types import ImageInput
from openclaw.config.model import ImagesConfig
from openclaw.gateway.http import openai_messages
from openclaw.gateway.http.image_fetch import (
    HTTPImageFetcher,
    ImageFetchError,
    PublicAddressEndpointFactory,
    is_public_address,
)
from openclaw.gateway.http.openai_messages import IMAGE_ONLY_PLACEHOLDER
from tests.chat_fakes import PNG_1X1, ChatHarness, ChatTestCase, chat_body

URL_IMAGES = ImagesConfig(allow_url=True, url_allowlist=("img.example.com",))
PNG_B64 = base64.b64encode(PNG_1X1).decode("ascii")
CAT = "https://img.example.com/cat.png"


class FakeFetcher:
    """Answers each fetch with a scripted Deferred and records the URLs."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.urls: list[str] = []
        self.cancelled = 0

    def fetch(self, url: str, config: ImagesConfig) -> Deferred[ImageInput]:
        """Fetch ``path`` through the in-memory server, pumping the connection."""
        self.urls.append(url)
        if self.answer == "pending":
            return Deferred(lambda _: setattr(self, "cancelled", self.cancelled + 1))
        answer: Deferred[ImageInput] = self.answer(url)
        return answer


def url_body(*urls: str, text: str | None = None) -> dict[str, Any]:
    """A body whose only user turn holds these image URLs (and text)."""
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    if text:
        parts.insert(0, {"type": "text", "text": text})
    body = chat_body()
    body["messages"] = [{"role": "user", "content": parts}]
    return body


class EndpointFetchTests(ChatTestCase):
    """The endpoint fetches allowed URLs before starting the run."""

    def test_fetched_images_reach_the_run(self) -> None:
        """Fetched images follow the data-URI ones; an image-only turn gets the placeholder."""
        fetcher = FakeFetcher(lambda url: succeed(ImageInput(PNG_B64, "image/png")))
        h = ChatHarness(images=URL_IMAGES, image_fetcher=fetcher)
        h.runtime.on_start = lambda run: run.finish("a cat")
        reply = self.call(h, url_body(CAT, f"data:image/png;base64,{PNG_B64}"))
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(fetcher.urls, [CAT])
        request = h.runtime.requests[0]
        self.assertEqual(request.message, IMAGE_ONLY_PLACEHOLDER)
        self.assertEqual(len(request.images), 2)

    def test_fetch_failure_is_400(self) -> None:
        """A failed fetch: the generic image 400, and no run."""
        fetcher = FakeFetcher(lambda url: fail(ImageFetchError("404")))
        h = ChatHarness(images=URL_IMAGES, image_fetcher=fetcher)
        reply = self.call(h, url_body(CAT, text="look"))
        self.assertError(reply, 400, "Invalid image_url content in `messages`.")
        self.assertEqual(h.runtime.requests, [])

    def test_no_fetcher(self) -> None:
        """``allowUrl`` without a fetcher wired in: 400, not a crash."""
        h = ChatHarness(images=URL_IMAGES)
        self.assertEqual(self.call(h, url_body(CAT)).status, 400)

    def test_disallowed_host(self) -> None:
        """A host outside the allow-list is refused before any fetch."""
        fetcher = FakeFetcher("pending")
        h = ChatHarness(images=URL_IMAGES, image_fetcher=fetcher)
        self.assertEqual(self.call(h, url_body("https://evil.example.org/x.png")).status, 400)
        self.assertEqual(fetcher.urls, [])

    def test_total_budget(self) -> None:
        """Fetched images count towards the 20 MB per request."""
        big = "A" * (8 * 1024 * 1024 * 4 // 3)
        fetcher = FakeFetcher(lambda url: succeed(ImageInput(big, "image/png")))
        h = ChatHarness(images=URL_IMAGES, image_fetcher=fetcher)
        reply = self.call(h, url_body(CAT, CAT, CAT))
        self.assertEqual(reply.status, 400)
        self.assertEqual(h.runtime.requests, [])

    def test_inline_and_fetched_images_share_one_budget(self) -> None:
        """An inline image's bytes count once and leave the rest of the request's
        budget to the fetched ones (budget scaled down to 20 kB here): 13 kB inline
        plus 8 kB fetched is refused, plus 6 kB is not."""
        self.patch(openai_messages, "MAX_TOTAL_IMAGE_BYTES", 20_000)
        inline = base64.b64encode(PNG_1X1 + b"\x00" * (13_000 - len(PNG_1X1))).decode()
        for fetched_size, status in ((8_000, 400), (6_000, 200)):
            fetched = base64.b64encode(b"\x00" * fetched_size).decode()
            fetcher = FakeFetcher(lambda url, data=fetched: succeed(ImageInput(data, "image/png")))
            h = ChatHarness(images=URL_IMAGES, image_fetcher=fetcher)
            h.runtime.on_start = lambda run: run.finish("seen")
            body = url_body(CAT)
            body["messages"][0]["content"].append(
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{inline}"}}
            )
            reply = self.call(h, body)
            self.assertEqual(reply.status, status, fetched_size)

    def test_disconnect_cancels_fetch(self) -> None:
        """A client leaving during the fetch cancels it; no run starts."""
        fetcher = FakeFetcher("pending")
        h = ChatHarness(images=URL_IMAGES, image_fetcher=fetcher)
        conn = h.raw()
        conn.send(url_body(CAT))
        conn.disconnect()
        self.assertEqual(fetcher.cancelled, 1)
        self.assertEqual(h.runtime.requests, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_stream_after_fetch(self) -> None:
        """A streaming request with a fetched image streams once the fetch is done."""
        pending: Deferred[ImageInput] = Deferred()
        fetcher = FakeFetcher(lambda url: pending)
        h = ChatHarness(images=URL_IMAGES, image_fetcher=fetcher)
        body = url_body(CAT, text="look")
        body["stream"] = True
        conn = h.raw()
        conn.send(body)
        self.assertEqual(conn.transport.value(), b"")
        pending.callback(ImageInput(PNG_B64, "image/png"))
        h.runtime.last_run.finish("cat")
        response = conn.response()
        self.assertTrue(response.complete)
        self.assertEqual(response.events()[-1], "[DONE]")


class ImageServer(Resource):
    """Serves the fetcher's test images by path."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes | int:
        """One canned answer per path."""
        path = request.path
        if path == b"/cat.png":
            request.setHeader(b"content-type", b"image/png")
            return PNG_1X1
        if path == b"/redirect":
            request.setResponseCode(302)
            request.setHeader(b"location", b"/cat.png")
            return b""
        if path == b"/loop":
            request.setResponseCode(302)
            request.setHeader(b"location", b"/loop")
            return b""
        if path == b"/elsewhere":
            request.setResponseCode(302)
            request.setHeader(b"location", b"https://evil.example.org/cat.png")
            return b""
        if path == b"/big.png":
            return PNG_1X1 + b"\x00" * 5000
        if path == b"/page.html":
            return b"<html></html>"
        if path == b"/slow.png":
            return NOT_DONE_YET
        request.setResponseCode(404)
        return b"missing"


class FetcherTests(SynchronousTestCase):
    """HTTPImageFetcher over an in-memory HTTP agent."""

    def fetch(
        self, path: str, config: ImagesConfig = URL_IMAGES
    ) -> tuple[Deferred[ImageInput], Any]:
        """Fetch ``path`` through the in-memory server, pumping the connection."""
        agent = RequestTraversalAgent(ImageServer())
        clock = Clock()
        fetcher = HTTPImageFetcher(clock, agent=agent)
        d = fetcher.fetch(f"https://img.example.com{path}", config)
        for _ in range(6):
            agent.flush()
        return d, clock

    def test_fetch(self) -> None:
        """An image is returned base64-encoded with its sniffed type."""
        d, _ = self.fetch("/cat.png")
        self.assertEqual(self.successResultOf(d), ImageInput(PNG_B64, "image/png"))

    def test_redirect_followed(self) -> None:
        """Redirects within the allow-list are followed."""
        d, _ = self.fetch("/redirect")
        self.assertEqual(self.successResultOf(d).mime_type, "image/png")

    def test_refusals(self) -> None:
        """Redirect loops, off-list redirects, 404s, non-images and oversize bodies fail."""
        for path in ("/loop", "/elsewhere", "/missing", "/page.html"):
            d, _ = self.fetch(path)
            self.failureResultOf(d, ImageFetchError)
        d, _ = self.fetch("/big.png", ImagesConfig(allow_url=True, max_bytes=1000))
        self.failureResultOf(d, ImageFetchError)

    def test_timeout(self) -> None:
        """A server that never answers is cut at ``images.timeoutMs``."""
        d, clock = self.fetch("/slow.png", ImagesConfig(allow_url=True, timeout_ms=2000))
        self.assertNoResult(d)
        clock.advance(2)
        failure = self.failureResultOf(d, ImageFetchError)
        self.assertIn("timed out", str(failure.value))


class PublicAddressTests(SynchronousTestCase):
    """Connections only to globally routable addresses."""

    def test_is_public_address(self) -> None:
        """Loopback, private, link-local, mapped-loopback and junk are not public."""
        for host in (
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "nope",
        ):
            self.assertFalse(is_public_address(host), host)
        for host in ("93.184.216.34", "2606:4700:4700::1111"):
            self.assertTrue(is_public_address(host), host)

    def connect(
        self, url: str, addresses: list[str]
    ) -> tuple[Deferred[Any], MemoryReactorClock, list[str]]:
        """Connect through the factory with a resolver answering ``addresses``."""
        reactor = MemoryReactorClock()
        asked: list[str] = []

        def resolve(host: str, port: int) -> Deferred[list[str]]:
            asked.append(host)
            return succeed(addresses)

        factory = PublicAddressEndpointFactory(reactor, resolve=resolve)
        endpoint = factory.endpointForURI(URI.fromBytes(url.encode()))
        from twisted.internet.protocol import Factory, Protocol

        d: Deferred[Any] = endpoint.connect(Factory.forProtocol(Protocol))
        return d, reactor, asked

    def test_connects_to_checked_address(self) -> None:
        """A public resolution: the TCP connection goes to that very address."""
        d, reactor, asked = self.connect("http://img.example.com:8080/x", ["93.184.216.34"])
        self.assertEqual(asked, ["img.example.com"])
        host, port = reactor.tcpClients[0][:2]
        self.assertEqual((host, port), ("93.184.216.34", 8080))
        self.assertNoResult(d)

    def test_private_resolution_refused(self) -> None:
        """Any non-public address in the answer refuses the connection."""
        d, reactor, _ = self.connect("https://img.example.com/x", ["93.184.216.34", "10.0.0.1"])
        self.failureResultOf(d, ImageFetchError)
        self.assertEqual(reactor.tcpClients, [])

    def test_private_literal_refused(self) -> None:
        """IP literals are checked without resolving."""
        d, _, asked = self.connect("http://127.0.0.1/x", [])
        self.failureResultOf(d, ImageFetchError)
        self.assertEqual(asked, [])
