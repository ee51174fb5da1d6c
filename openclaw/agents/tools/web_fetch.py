"""``web_fetch``: HTTP(S) GET of a model-chosen URL, turned into readable text.

Every hop (the first request and each redirect, followed here, never by the
HTTP client) goes through :mod:`openclaw.netguard`: URL check, DNS resolution,
every answer classified, then a connection pinned to the checked address with
the name kept for ``Host`` and TLS. The body is capped at
``max_response_bytes``; the whole fetch is bounded by ``timeout_seconds``
(``Deferred.addTimeout``), and cancelling the call closes the connection.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, ResponseDone, ResponseFailed
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IResponse
from zope.interface import implementer

from openclaw import netguard
from openclaw.agents.tools._common import BlockingRunner, error, guarded, opt_int, opt_str, req_str
from openclaw.agents.tools.base import JSONSchema, ToolArgumentError, ToolContext, ToolResult
from openclaw.agents.tools.limits import (
    DEFAULT_USER_AGENT,
    DEFAULT_WEB_FETCH_LIMITS,
    WebFetchLimits,
    WebFetchReactor,
)
from openclaw.core.external_content import WRAPPER_CHARS, strip_template_tokens, wrap_external

Resolver = Callable[[str, int], Deferred[list[netguard.IPAddress]]]


@implementer(IAgentEndpointFactory)
class _Pinned:
    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint

    def endpointForURI(self, uri: object) -> IStreamClientEndpoint:
        return self._endpoint


class _Capped(Protocol):
    """Collects a body up to ``cap`` bytes, then stops the transfer."""

    def __init__(self, cap: int, done: Deferred[tuple[bytes, bool]]) -> None:
        self._cap = cap
        self._chunks: list[bytes] = []
        self._size = 0
        self._done = done
        self.truncated = False

    def dataReceived(self, data: bytes) -> None:
        if self.truncated:
            return
        room = self._cap - self._size
        self._chunks.append(data[:room])
        self._size += min(len(data), room)
        if len(data) > room:
            self.truncated = True
            _stop(self.transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done.called:
            return
        if self.truncated or isinstance(reason.value, ResponseDone | PotentialDataLoss):
            self._done.callback((b"".join(self._chunks), self.truncated))
        else:
            self._done.errback(reason)


def _ascii_url(url: str, target: netguard.FetchTarget) -> bytes:
    """``url`` as request bytes: IDNA host, percent-encoded path and query."""
    if url.isascii():
        return url.encode("ascii")
    parts = urlsplit(url)
    netloc = target.host if ":" not in target.host else f"[{target.host}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    safe = "/%:@!$&'()*+,;=?~-._"
    rebuilt = urlunsplit(
        (parts.scheme, netloc, quote(parts.path, safe), quote(parts.query, safe), "")
    )
    return rebuilt.encode("ascii")


#: How much of an error page becomes the error's detail (OpenClaw's limits).
ERROR_DETAIL_BYTES = 64_000
ERROR_DETAIL_CHARS = 4_000
_TEXTUAL_APPLICATION = frozenset(
    {
        "application/xml", "application/javascript", "application/ecmascript",
        "application/x-javascript", "application/yaml", "application/x-yaml",
        "application/toml", "application/csv", "application/x-ndjson", "application/sql",
        "application/graphql", "application/x-sh", "application/x-www-form-urlencoded",
    }
)  # fmt: skip


def _is_textual(media: str) -> bool:
    """Media types read as text (anything else only when it holds no NUL byte)."""
    return (
        not media
        or media.startswith("text/")
        or media.endswith("+xml")
        or media in _TEXTUAL_APPLICATION
    )


def _stop(transport: object) -> None:
    """Abort a response body transfer (the body transport is an IPushProducer)."""
    stop = getattr(transport, "stopProducing", None)
    if stop is not None:
        stop()


def _read_body(response: IResponse, cap: int) -> Deferred[tuple[bytes, bool]]:
    protocol: _Capped | None = None

    def cancel(_: Deferred[tuple[bytes, bool]]) -> None:
        if protocol is not None:
            _stop(protocol.transport)

    done: Deferred[tuple[bytes, bool]] = Deferred(cancel)
    protocol = _Capped(cap, done)
    response.deliverBody(protocol)
    return done


class WebFetchTool:
    """Fetch a URL and return its readable content."""

    name = "web_fetch"
    description = (
        "Fetch a URL (http/https) with a plain GET and extract readable content as "
        "markdown or text. Does not run JavaScript. Private and internal addresses are refused."
    )
    parameters: JSONSchema = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "description": "HTTP or HTTPS URL to fetch"},
            "extractMode": {
                "type": "string",
                "enum": ["markdown", "text"],
                "description": 'Extraction mode ("markdown" or "text")',
                "default": "markdown",
            },
            "maxChars": {"type": "number", "minimum": 100, "description": "Maximum characters"},
        },
        "required": ["url"],
    }

    def __init__(
        self,
        reactor: WebFetchReactor,
        run_blocking: BlockingRunner,
        *,
        ssrf_policy: netguard.SSRFPolicy,
        limits: WebFetchLimits = DEFAULT_WEB_FETCH_LIMITS,
        user_agent: str = DEFAULT_USER_AGENT,
        resolver: Resolver | None = None,
        trust_root: IOpenSSLTrustRoot | None = None,
        progress_after_seconds: float = 5.0,
    ) -> None:
        self._trust_root = trust_root
        self._progress_after = progress_after_seconds
        self._reactor = reactor
        self._blocking = run_blocking
        self._policy = ssrf_policy
        self._limits = limits
        self._user_agent = user_agent
        self._resolve: Resolver = resolver or (
            lambda host, port: netguard.resolve(reactor, host, port)
        )

    def run(self, arguments: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        """Validate, fetch (bounded by the timeout), extract off the reactor."""
        return guarded(self.name, self._run, arguments, context)

    def _run(self, args: Mapping[str, Any], context: ToolContext) -> Deferred[ToolResult]:
        url = req_str(args, "url", max_chars=8192)
        mode = opt_str(args, "extractMode", max_chars=16) or "markdown"
        if mode not in ("markdown", "text"):
            raise ToolArgumentError('extractMode must be "markdown" or "text"')
        max_chars = opt_int(args, "maxChars", minimum=100) or self._limits.max_chars
        max_chars = min(max_chars, self._limits.max_chars_cap)
        d = Deferred.fromCoroutine(self._fetch(url, mode, max_chars))
        # OpenClaw's one public progress line for slow fetches (never page content).
        progress = self._reactor.callLater(
            self._progress_after, context.on_update, "Fetching page content..."
        )
        timeout = self._limits.timeout_seconds
        d.addTimeout(
            timeout,
            self._reactor,
            onTimeoutCancel=lambda _r, _t: error(f"Web fetch timed out after {timeout:g}s: {url}"),
        )

        def failed(f: Failure) -> ToolResult:
            if isinstance(f.value, CancelledError):
                f.raiseException()
            if isinstance(f.value, netguard.BlockedTargetError):
                return error(str(f.value), status="blocked")
            if isinstance(f.value, ResponseFailed | ConnectionError) or type(
                f.value
            ).__module__.startswith("twisted.internet.error"):
                return error(f"Web fetch failed: {f.getErrorMessage()[:300]}")
            f.raiseException()

        d.addErrback(failed)
        cancelled = False

        def cancel(_: Deferred[ToolResult]) -> None:
            nonlocal cancelled
            cancelled = True
            d.cancel()

        outer: Deferred[ToolResult] = Deferred(cancel)

        def forward(result: ToolResult | Failure) -> None:
            if progress.active():
                progress.cancel()
            if outer.called:
                return
            if cancelled:
                outer.errback(CancelledError())
            elif isinstance(result, Failure):
                outer.errback(result)
            else:
                outer.callback(result)

        d.addBoth(forward)
        return outer

    async def _fetch(self, url: str, mode: str, max_chars: int) -> ToolResult:
        started = time.monotonic()
        current = url
        for _hop in range(self._limits.max_redirects + 1):
            target = netguard.check_url(current, self._policy)
            addresses = await self._resolve(target.host, target.port)
            address = netguard.pick_allowed(target.host, addresses, self._policy)
            endpoint = netguard.pinned_endpoint(
                self._reactor,
                target,
                address,
                timeout=self._limits.timeout_seconds,
                trust_root=self._trust_root,
            )
            # typing note: Twisted leaves usingEndpointFactory unannotated.
            agent = Agent.usingEndpointFactory(  # type: ignore[no-untyped-call]
                self._reactor, _Pinned(endpoint)
            )
            headers = Headers(
                {
                    b"User-Agent": [self._user_agent.encode("latin-1", "replace")],
                    b"Accept": [b"text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5"],
                    b"Accept-Language": [b"en-US,en;q=0.9"],
                }
            )
            request_url = _ascii_url(current, target)
            response: IResponse = await agent.request(b"GET", request_url, headers)
            location = response.headers.getRawHeaders(b"location")
            if response.code in (301, 302, 303, 307, 308) and location:
                if response.length != 0:
                    await _read_body(response, 64 * 1024)
                current = urljoin(current, location[0].decode("latin-1"))
                continue
            body, truncated = await _read_body(response, self._limits.max_response_bytes)
            return await self._result(
                url, current, response, body, truncated, mode, max_chars, started
            )
        raise netguard.BlockedTargetError(
            f"Too many redirects (limit {self._limits.max_redirects})"
        )

    async def _result(
        self,
        url: str,
        final_url: str,
        response: IResponse,
        body: bytes,
        body_truncated: bool,
        mode: str,
        max_chars: int,
        started: float,
    ) -> ToolResult:
        content_type = (response.headers.getRawHeaders(b"content-type") or [b""])[0].decode(
            "latin-1"
        )
        media = content_type.split(";")[0].strip().lower()
        charset = "utf-8"
        for param in content_type.split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip('"')
        try:
            text = body.decode(charset, errors="replace")
        except LookupError:
            text = body.decode("utf-8", errors="replace")
        title: str | None = None
        is_html = media in ("text/html", "application/xhtml+xml") or (
            not media and text.lstrip()[:15].lower().startswith(("<!doctype", "<html"))
        )
        status = response.code
        if not 200 <= status < 300:
            # OpenClaw's shape: an error naming the status, with the page's
            # text (wrapped as external content) as the detail.
            detail = text[:ERROR_DETAIL_BYTES]
            if is_html:
                from openclaw.agents.tools.html_extract import extract

                rendered, page_title = await self._blocking(lambda: extract(detail, "text"))
                detail = f"{page_title}\n{rendered}" if page_title else rendered
            detail = detail.strip()[:ERROR_DETAIL_CHARS] or response.phrase.decode("latin-1")
            return error(
                f"Web fetch failed ({status}): {wrap_external(detail)}",
                status="failed",
                httpStatus=status,
                finalUrl=final_url,
            )
        if is_html:
            extractor = "markdownify" if mode == "markdown" else "beautifulsoup"
            # bs4 and markdownify (4 MB of an idle gateway) load with the first HTML page.
            from openclaw.agents.tools.html_extract import extract

            text, title = await self._blocking(lambda: extract(text, mode))
        elif media == "application/json" or media.endswith("+json"):
            try:  # OpenClaw pretty-prints JSON bodies
                text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
                extractor = "json"
            except ValueError:
                extractor = "raw"
        elif _is_textual(media) or b"\x00" not in body[:8192]:
            extractor = "raw"
        else:
            # Deliberately stricter than OpenClaw, which hands binary bytes to
            # the model as text: a PDF or image would be noise in its context.
            return error(f"Web fetch: unsupported content type {media[:100]!r} at {final_url}")
        raw_length = len(text)
        # Wrapped as OpenClaw does, so the page is data to the model, not
        # instructions. maxChars counts the wrapper, but leaves at least half
        # of itself to the page.
        budget = max(max_chars - WRAPPER_CHARS, max_chars // 2)
        truncated = body_truncated or raw_length > budget
        text = wrap_external(text[:budget])
        title = strip_template_tokens(title[:256]) if title else None
        result = {
            "url": url,
            "finalUrl": final_url,
            "status": status,
            "contentType": content_type[:256] or None,
            "title": title or None,
            "extractMode": mode,
            "extractor": extractor,
            "externalContent": True,
            "truncated": truncated,
            "warning": (
                f"Response body incomplete after {len(body)} bytes." if body_truncated else None
            ),
            "length": len(text),
            "rawLength": raw_length,
            "fetchedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            "tookMs": int((time.monotonic() - started) * 1000),
        }
        details = {k: v for k, v in result.items() if v is not None}
        payload = json.dumps({**details, "text": text}, ensure_ascii=False)
        return ToolResult(content=payload, details=details)
