"""The OpenAI POST endpoints and the probes, dispatched by exact path ahead of Klein.

Per request, Klein binds a werkzeug map adapter, adapts the request, matches
the path, and wraps the route in several Deferreds and self-referencing
closures. Those closures hold the whole request (headers, channel, body) in
a reference cycle, so it is freed only when Python's cycle collector runs.
Under load that collector then pauses the event loop for tens of
milliseconds at a time.

The endpoints that clients call in a loop are looked up here by their exact
path and answered the way Klein answers them: the same route method, the
same refusal for a :class:`ChatRequestError`, Twisted's
``processingFailed`` for anything else, and the route's Deferred cancelled
when the client leaves. The probes (GET and HEAD of their exact paths) are
answered the same way, so a gateway that only serves them and completions
never builds the Klein app (or imports Klein: issue 16's idle memory).
Everything else goes to Klein unchanged, built on first use: other methods
(405 with ``Allow``), other spellings of the path. One difference: Klein
refuses a non-UTF-8 ``Host`` header (400) even though it does not route on
it; these routes ignore it, as they ignore the host.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from openclaw.gateway.http.errors import ChatRequestError, write_refusal

__all__ = ["DirectRoutes", "Route"]

log = Logger()

#: A route method: the answer's bytes, or a Deferred of them.
Route = Callable[[Request], "bytes | Deferred[bytes]"]


class DirectRoutes(Resource):
    """POST to one of ``routes``, or GET/HEAD to one of ``gets`` (keyed by
    the path below the mount point, without its leading slash), goes straight
    to the route; anything else to the resource ``fallback`` makes (the Klein
    resource), made on first use."""

    isLeaf = True

    def __init__(
        self,
        routes: Mapping[bytes, Route],
        fallback: Callable[[], IResource],
        *,
        gets: Mapping[bytes, Route] | None = None,
    ) -> None:
        Resource.__init__(self)
        self._routes = dict(routes)
        self._gets = dict(gets or {})
        self._make_fallback = fallback
        self._fallback: IResource | None = None

    def render(self, request: Request) -> Any:
        method = request.method
        if method == b"POST":
            table = self._routes
        elif method in (b"GET", b"HEAD"):
            table = self._gets
        else:
            table = {}
        if table:
            # Klein matches the decoded path below the mount point: the same.
            route = table.get(b"/".join(request.postpath or ()))
            if route is not None:
                return _serve(route, request)
        fallback = self._fallback
        if fallback is None:
            fallback = self._fallback = self._make_fallback()
        return fallback.render(request)


def _serve(route: Route, request: Request) -> object:
    if request.prepath is not None:
        request.prepath.extend(request.postpath or ())
    request.postpath = []
    try:
        answer = route(request)
    except ChatRequestError as error:
        _finish(request, write_refusal(request, error))
        return NOT_DONE_YET
    except Exception:
        request.processingFailed(Failure())  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted
        return NOT_DONE_YET
    if isinstance(answer, Deferred):
        _Answering(request, answer)
    else:
        _finish(request, answer)
    return NOT_DONE_YET


def _finish(request: Request, body: object) -> None:
    """Write the answer (what Klein does with a route's bytes) and end it."""
    if request.finished:
        return
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, bytes):
        request.write(body)
    request.finish()


class _Answering:
    """Writes a route's later answer; a client that leaves cancels it."""

    __slots__ = ("_answer", "_gone", "_request")

    def __init__(self, request: Request, answer: Deferred[bytes]) -> None:
        self._request = request
        self._answer = answer
        self._gone = False
        request.notifyFinish().addBoth(self._ended)
        answer.addCallbacks(self._write, self._failed)

    def _ended(self, reason: object) -> None:
        """The response finished, or the connection was lost first."""
        self._gone = True
        if isinstance(reason, Failure):
            self._answer.cancel()

    def _write(self, body: object) -> None:
        if self._gone:
            return
        try:
            _finish(self._request, body)
        except Exception:
            log.failure("could not write the response")

    def _failed(self, failure: Failure) -> None:
        request = self._request
        if self._gone:
            if not isinstance(failure.value, CancelledError):
                log.failure("the request failed after its client left", failure)
            return
        error = failure.value
        if isinstance(error, ChatRequestError):
            self._write(write_refusal(request, error))
            return
        request.processingFailed(failure)
