"""Exact-path POST routes ahead of Klein (``openclaw.gateway.http.direct``),
through a real twisted.web Site and HTTP channel on a string transport."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from openclaw.gateway.http.direct import DirectRoutes
from openclaw.gateway.http.errors import ChatRequestError


class Fallback(Resource):
    """Stands in for Klein: says which method and path reached it."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        return b"fallback " + request.method + b" " + request.path


def serve(resource: Resource, raw: bytes) -> tuple[StringTransport, object]:
    """Send ``raw`` to a fresh channel of a Site over ``resource``."""
    site = Site(resource, reactor=Clock())  # the channel's idle timer: not the global reactor
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(raw)
    return transport, channel


def post(path: bytes) -> bytes:
    return b"POST " + path + b" HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n"


class DirectRoutesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pending: list[Deferred[bytes]] = []
        self.seen: list[Request] = []
        self.cancelled: list[Deferred[bytes]] = []
        self.fallbacks_made = 0

    def routes(self, answer: object) -> DirectRoutes:
        """One route that raises ``answer``, returns it, or (``"later"``) a Deferred."""

        def route(request: Request) -> bytes | Deferred[bytes]:
            self.seen.append(request)
            if isinstance(answer, BaseException):
                raise answer
            if answer == "later":
                d: Deferred[bytes] = Deferred(self.cancelled.append)
                self.pending.append(d)
                return d
            assert isinstance(answer, bytes | str)
            return answer  # type: ignore[return-value]  # a str answer, as Klein accepts

        def make_fallback() -> Resource:
            self.fallbacks_made += 1
            return Fallback()

        def probe(request: Request) -> bytes:
            self.seen.append(request)
            return b"live"

        return DirectRoutes(
            {b"v1/chat/completions": route}, make_fallback, gets={b"healthz": probe}
        )

    def test_exact_post_reaches_the_route(self) -> None:
        """The route's bytes are the body; the path moves to ``prepath`` as Klein does."""
        transport, _ = serve(self.routes(b"answer"), post(b"/v1/chat/completions?x=1"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK"))
        self.assertTrue(transport.value().endswith(b"answer\r\n0\r\n\r\n"))
        self.assertEqual(self.seen[0].prepath, [b"v1", b"chat", b"completions"])
        self.assertEqual(self.seen[0].postpath, [])

    def test_other_methods_and_spellings_go_to_the_fallback(self) -> None:
        """GET, a trailing slash and a longer path are Klein's (405 / 404 there);
        POST to a probe too. The fallback is made once, on first use."""
        routes = self.routes(b"answer")
        for raw in (
            b"GET /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r\n",
            post(b"/v1/chat/completions/"),
            post(b"/v1/chat/completions/x"),
            post(b"/healthz"),
            b"GET /healthz/ HTTP/1.1\r\nHost: gw\r\n\r\n",
        ):
            transport, _ = serve(routes, raw)
            self.assertIn(b"fallback ", transport.value())
        self.assertEqual(self.seen, [])
        self.assertEqual(self.fallbacks_made, 1)

    def test_probes_are_answered_without_the_fallback(self) -> None:
        """GET and HEAD of a probe's exact path reach it directly; the fallback
        (Klein, imported on first use) is never made for them."""
        routes = self.routes(b"answer")
        transport, _ = serve(routes, b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK"))
        self.assertIn(b"live", transport.value())
        head, _ = serve(routes, b"HEAD /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertTrue(head.value().startswith(b"HTTP/1.1 200 OK"))
        self.assertNotIn(b"live", head.value())
        self.assertEqual(len(self.seen), 2)
        self.assertEqual(self.fallbacks_made, 0)

    def test_refusal_is_written_as_openai_error(self) -> None:
        """A ChatRequestError raised by the route is the app's JSON refusal."""
        error = ChatRequestError("bad model", status=404, code="model_not_found")
        transport, _ = serve(self.routes(error), post(b"/v1/chat/completions"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 404 Not Found"))
        self.assertIn(b'"code":"model_not_found"', transport.value())

    def test_refusal_from_a_later_answer(self) -> None:
        """A Deferred failing with ChatRequestError gets the same refusal."""
        transport, _ = serve(self.routes("later"), post(b"/v1/chat/completions"))
        self.assertEqual(transport.value(), b"")
        self.pending[0].errback(ChatRequestError("no", status=400))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 Bad Request"))
        self.assertIn(b'"message":"no"', transport.value())

    def test_unexpected_error_is_a_500(self) -> None:
        """Anything else goes to Twisted's ``processingFailed`` (500, logged)."""
        transport, _ = serve(self.routes(RuntimeError("boom")), post(b"/v1/chat/completions"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 500 Internal Server Error"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_text_answer_is_utf8(self) -> None:
        """A route's ``str`` answer is written as UTF-8, as Klein writes it."""
        transport, _ = serve(self.routes("héllo"), post(b"/v1/chat/completions"))
        self.assertIn("héllo".encode(), transport.value())

    def test_later_answer_is_written(self) -> None:
        """A Deferred answer is written and the response ended when it fires."""
        transport, _ = serve(self.routes("later"), post(b"/v1/chat/completions"))
        self.pending[0].callback(b"done")
        self.assertIn(b"done", transport.value())
        self.assertTrue(transport.value().endswith(b"0\r\n\r\n"))

    def test_client_leaving_cancels_the_answer(self) -> None:
        """A lost connection cancels the route's Deferred; nothing is written
        or logged after that."""
        transport, channel = serve(self.routes("later"), post(b"/v1/chat/completions"))
        channel.connectionLost(Failure(ConnectionError("gone")))  # type: ignore[attr-defined]
        self.assertEqual(self.cancelled, self.pending)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])
