"""Shared pieces of the integration suites that drive the real ``twistd openclaw``.

The fake model upstream runs in the test process on the global reactor; the
gateway is a separate process whose provider ``baseUrl`` points at it. Trial
insists that every test leaves the reactor without sockets, so the upstream's
listening socket is created once outside the reactor (:class:`UpstreamPort`)
and *adopted* by each test: the port number stays the same for the whole
class, one gateway process serves every test of the class, and each test
still stops listening and closes its connections before it ends.

Blocking clients (the ``openai`` SDK, ``httpx2``) run in threads
(``deferToThread``) so the reactor keeps serving the fake while they wait.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, cast

import httpx2 as httpx
from attrs import frozen
from openai import OpenAI
from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorSocket,
    IReactorTCP,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.http import HTTPChannel
from twisted.web.server import Site

from openclaw.testing import FakeOpenAIUpstream, FakeUpstream
from tests.gateway_process import TOKEN, GatewayProcess, write_config

#: The API key the gateway's providers send to the fake upstream.
UPSTREAM_KEY = "sk-upstream-secret-key-0123456789"
#: Every client request gives up after this long: nothing may hang a test.
CLIENT_TIMEOUT = 15.0
#: The gateway's auth header for raw clients.
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def openai_provider(port: int, **extra: Any) -> dict[str, Any]:
    """A ``models.providers`` entry for the fake upstream on ``port``."""
    return {
        "api": "openai-completions",
        "baseUrl": f"http://127.0.0.1:{port}/v1",
        "apiKey": UPSTREAM_KEY,
        "models": [{"id": "gpt-fake"}],
        **extra,
    }


def one_fake_agent(port: int, **sections: Any) -> dict[str, Any]:
    """Config sections for one default agent, ``main``, on the fake upstream on
    ``port``; ``sections`` adds top-level sections (``tools``...)."""
    return {
        "models": {"providers": {"fake": openai_provider(port)}},
        "agents": {"list": [{"id": "main", "default": True, "model": "fake/gpt-fake"}]},
        **sections,
    }


def refused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class _TrackedChannel(HTTPChannel):
    """An HTTP server connection that registers with its site and reports
    when it is gone."""

    def __init__(self) -> None:
        super().__init__()
        self.gone: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        super().connectionMade()
        site = self.factory
        assert isinstance(site, _TrackingSite)
        site.channels.add(self)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]  # typing note: the base method is untyped
        super().connectionLost(reason)
        site = self.factory
        assert isinstance(site, _TrackingSite)
        site.channels.discard(self)
        if not self.gone.called:
            self.gone.callback(None)


class _TrackingSite(Site):
    """A Site that remembers its live connections so a test can close them."""

    # Twisted types this as its HTTP/1.1-or-2 wrapper; the fake needs HTTP/1.1 only.
    protocol = _TrackedChannel  # type: ignore[assignment]  # typing note: see above

    def __init__(self, resource: FakeUpstream, reactor: IReactorTime) -> None:
        # timeout=None: no idle-timeout DelayedCall per connection (trial
        # counts pending calls as a dirty reactor after every test).
        super().__init__(resource, reactor=reactor, timeout=None)
        self.channels: set[_TrackedChannel] = set()


class ServedUpstream:
    """One test's fake upstream, listening on the shared port."""

    def __init__(self, fake: FakeUpstream, site: _TrackingSite, port: IListeningPort) -> None:
        self.fake = fake
        self._site = site
        self._port = port

    async def wait_idle(self, seconds: float = 5.0) -> None:
        """Wait until no streamed answer is in flight any more: every client
        request has finished, so the gateway must have finished or closed each
        upstream response. Fails after ``seconds`` (a response left open)."""
        idle = self.fake.wait_for(lambda fake: fake.active_streams == 0)
        idle.addTimeout(seconds, self._site.reactor)
        try:
            await idle
        except defer.TimeoutError:
            raise AssertionError(
                f"{self.fake.active_streams} upstream response(s) still open "
                f"{seconds}s after every client request finished"
            ) from None

    async def drop_connections(self) -> None:
        """Abort every connection (as an upstream closing idle keep-alives does)
        and wait until each is really gone."""
        self.fake.close_all()
        channels = list(self._site.channels)
        for channel in channels:
            cast(ITCPTransport, channel.transport).abortConnection()
        await DeferredList([channel.gone for channel in channels])

    async def close(self) -> None:
        """Stop listening and close every connection (test cleanup)."""
        stopped = self._port.stopListening()
        if stopped is not None:
            await stopped
        await self.drop_connections()


class UpstreamPort:
    """A loopback listening socket that outlives the tests of a class."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(128)
        self._socket.setblocking(False)
        self.port: int = self._socket.getsockname()[1]

    def serve(self, reactor: IReactorTime, fake: FakeUpstream) -> ServedUpstream:
        """Serve ``fake`` on the shared port until the returned handle is closed
        (``reactor`` is the global reactor: it must adopt sockets too)."""
        site = _TrackingSite(fake, reactor)
        listening = IReactorSocket(reactor).adoptStreamPort(
            self._socket.fileno(),
            socket.AF_INET,
            site,  # type: ignore[arg-type]  # typing note: Twisted's stub wants a ServerFactory generic over its protocol; a Site is one
        )
        return ServedUpstream(fake, site, listening)

    def close(self) -> None:
        """Release the socket (class cleanup)."""
        self._socket.close()


class SharedGateway:
    """One ``twistd openclaw`` process shared by the tests of a class."""

    def __init__(self, config: Mapping[str, Any], **gateway: Any) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="openclaw-it-"))
        path = write_config(self.directory, extra=dict(config), **gateway)
        try:
            self.process = GatewayProcess(path, self.directory / "state")
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.port = self.process.port
        self.pid = self.process.process.pid
        self.base_url = self.process.base_url

    def drain(self) -> None:
        """Read what the gateway has logged so far, so its output pipe never
        fills up (a full pipe would block the gateway). The pattern never
        matches: this reads what is there and gives up a few milliseconds
        after the pipe is empty."""
        with contextlib.suppress(TimeoutError):
            self.process.wait_for_output(r"(?!)", timeout=0.005)

    @property
    def log(self) -> str:
        """Everything the gateway logged (drained so far)."""
        self.drain()
        return self.process.text

    def stop(self) -> int:
        """SIGTERM, wait for the exit status, remove the state directory."""
        try:
            return self.process.stop(signal.SIGTERM)
        finally:
            self.process.ensure_stopped()
            shutil.rmtree(self.directory, ignore_errors=True)


# -- the gateway's descriptors and connections ---------------------------------

_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


@frozen
class Census:
    """A process's open file descriptors and its TCP sockets by state."""

    fds: int
    tcp: Mapping[str, int]
    #: ``local -> remote (state)`` for every TCP socket, for messages.
    connections: tuple[str, ...]
    #: What the other descriptors point at (files, pipes, eventfds...), for messages.
    others: tuple[str, ...] = ()


def _hex_address(text: str) -> str:
    host, port = text.split(":")
    if len(host) == 8:
        octets = bytes.fromhex(host)[::-1]
        return f"{'.'.join(str(b) for b in octets)}:{int(port, 16)}"
    return f"[{host}]:{int(port, 16)}"


def census(pid: int, exclude_peer_port: int | None = None) -> Census:
    """Count ``/proc/<pid>/fd`` and match its sockets against ``/proc/<pid>/net/tcp*``.

    ``exclude_peer_port`` leaves out the connection whose remote end is that
    local port of ours (the probe connection), both from the TCP sockets and
    from the descriptor count.
    """
    fd_dir = Path(f"/proc/{pid}/fd")
    sockets: set[str] = set()
    others: list[str] = []
    fds = 0
    for entry in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / entry)
        except FileNotFoundError:
            # Closed between the listing and now (a store write finishing on its
            # IO thread): not open, so not counted.
            continue
        fds += 1
        if target.startswith("socket:["):
            sockets.add(target[len("socket:[") : -1])
        else:
            others.append(target)
    # inode -> (local, remote, state); a table read while it changes may
    # list a socket twice, so each inode counts once.
    found: dict[str, tuple[str, str, str]] = {}
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[9] in sockets and fields[9] not in found:
                state = _TCP_STATES.get(fields[3], fields[3])
                found[fields[9]] = (_hex_address(fields[1]), _hex_address(fields[2]), state)
    states: Counter[str] = Counter()
    connections: list[str] = []
    for local, remote, state in found.values():
        if exclude_peer_port is not None and remote == f"127.0.0.1:{exclude_peer_port}":
            fds -= 1
            continue
        states[state] += 1
        connections.append(f"{local} -> {remote} ({state})")
    unmatched = sockets - set(found)
    others.extend(f"socket:[{inode}] (in no TCP table)" for inode in sorted(unmatched))
    return Census(
        fds=fds,
        tcp=dict(states),
        connections=tuple(sorted(connections)),
        others=tuple(sorted(others)),
    )


def probed_census(port: int, pid: int) -> Census:
    """The gateway's census taken behind a probe (blocking; run it in a thread).

    ``GET /healthz`` on a fresh keep-alive connection: when the gateway has
    answered it, it has handled every close that reached it before the probe
    did. The census is taken while the probe connection is still open, and
    leaves it out.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = bytearray()
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"probe connection closed: {bytes(answer)!r}")
            answer += chunk
        head, _, body = bytes(answer).partition(b"\r\n\r\n")
        status = int(head.split(b"\r\n", 1)[0].split()[1])
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")[1:]
                if line.lower().startswith(b"content-length:")
            ),
            None,
        )
        if length is None:
            raise AssertionError(f"probe answer without Content-Length: {head!r}")
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("probe connection closed mid-body")
            body += chunk
        if status != 200:
            raise AssertionError(f"probe answered {status}: {body!r}")
        return census(pid, exclude_peer_port=sock.getsockname()[1])


#: How long the gateway's own disk work may take to settle before a census.
SETTLE_SECONDS = 5.0


async def settled_census(gateway: SharedGateway, upstream: ServedUpstream | None) -> Census:
    """The gateway's census once it is idle.

    First every upstream response must be over (the gateway finished or closed
    it): closing connections from the upstream side must not hide one the
    gateway forgot. Then the upstream closes its idle keep-alive connections,
    as real upstreams do, and a probe answers (a barrier for those closes).

    The session store writes transcripts and its index on its own IO threads;
    an aborted turn (the client hung up) or an index flush may still be
    writing when the probe answers. Idle means no file of the state
    directory is open, so the census is repeated, probe after probe, until
    that holds; a file still open after :data:`SETTLE_SECONDS` is a leak.
    """
    from twisted.internet import reactor

    if upstream is not None:
        await upstream.wait_idle()
        await upstream.drop_connections()
    state = str(gateway.directory)
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        result: Census = await deferToThread(probed_census, gateway.port, gateway.pid)
        # The state-directory lock is held open for the life of the process
        # by design (openclaw.sessions.statelock); anything else is work.
        busy = [
            name
            for name in result.others
            if name.startswith(state) and not name.endswith("/state.lock")
        ]
        if not busy:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"state files still open after {SETTLE_SECONDS}s: {busy}")
        await deferLater(reactor, 0, lambda: None)


# -- the shared test case ----------------------------------------------------------


class GatewayTestCase(TestCase):
    """One gateway process per class, a fresh fake upstream per test.

    Subclasses say how the gateway is configured (:meth:`gateway_config`,
    :meth:`gateway_settings`). At the end of the class the gateway gets
    SIGTERM and must exit 0, and its log must hold no secret and no traceback.
    """

    timeout = 60

    upstream_port: ClassVar[UpstreamPort]
    gateway: ClassVar[SharedGateway]
    #: Strings that must never reach the gateway's log.
    secrets: ClassVar[tuple[str, ...]] = (TOKEN, UPSTREAM_KEY)

    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        """Top-level config sections (``models``, ``agents``) for a fake
        upstream on ``port``, merged into ``write_config``'s defaults."""
        raise NotImplementedError

    @classmethod
    def gateway_settings(cls) -> dict[str, Any]:
        """Keys of the ``gateway`` section that replace ``write_config``'s."""
        return {}

    @classmethod
    def setUpClass(cls) -> None:
        cls.upstream_port = UpstreamPort()
        try:
            cls.gateway = SharedGateway(
                cls.gateway_config(cls.upstream_port.port), **cls.gateway_settings()
            )
        except BaseException:
            cls.upstream_port.close()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        log = cls.gateway.log
        status = cls.gateway.stop()
        cls.upstream_port.close()
        if status != 0:
            raise AssertionError(f"gateway exited {status}:\n{log}")
        for secret in cls.secrets:
            if secret in log:
                raise AssertionError(f"a secret reached the gateway log:\n{log}")
        if "Traceback" in log:
            raise AssertionError(f"the gateway logged a traceback:\n{log}")

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.fake = FakeOpenAIUpstream(reactor, api_key=UPSTREAM_KEY)
        self.upstream = self.upstream_port.serve(reactor, self.fake)
        self.addCleanup(self.upstream.close)
        self.addCleanup(self.gateway.drain)

    def openai_client(self, timeout: float = CLIENT_TIMEOUT) -> OpenAI:
        """An ``openai`` SDK client on this gateway (no retries), closed at cleanup."""
        client = OpenAI(
            base_url=f"{self.gateway.base_url}/v1", api_key=TOKEN, max_retries=0, timeout=timeout
        )
        self.addCleanup(client.close)
        return client

    async def raw(self, body: dict[str, Any]) -> RawClient:
        """A raw connection with one chat request sent, closed at cleanup."""
        client = await raw_chat(self.reactor, self.gateway.port, body)
        self.addCleanup(client.ensure_closed)
        return client

    async def census(self) -> Census:
        """The gateway's descriptors and connections once it is idle."""
        return await settled_census(self.gateway, self.upstream)


# -- raw HTTP clients ------------------------------------------------------------


@frozen
class HTTPResult:
    """What an ``httpx`` request got: status, headers, body and SSE data lines."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    @property
    def data_lines(self) -> list[str]:
        """The ``data:`` payloads of an SSE body, in order."""
        return [
            line[len("data:") :].strip()
            for line in self.body.decode("utf-8").split("\n")
            if line.startswith("data:")
        ]

    @property
    def frames(self) -> list[Any]:
        """The JSON ``data:`` payloads (``[DONE]`` excluded)."""
        return [json.loads(data) for data in self.data_lines if data != "[DONE]"]


def post_chat(
    port: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> HTTPResult:
    """POST ``/v1/chat/completions`` and read the whole answer (blocking; run it
    in a thread). Streaming answers are read as they come, to their end."""
    started = time.monotonic()
    with (
        httpx.Client(timeout=CLIENT_TIMEOUT) as client,
        client.stream(
            "POST",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json=dict(body),
            headers={**AUTH, **(headers or {})},
        ) as response,
    ):
        data = response.read()
        return HTTPResult(
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=data,
            elapsed=time.monotonic() - started,
        )


def in_thread(function: Callable[[], Any]) -> Deferred[Any]:
    """Run a blocking client call off the reactor thread."""
    return deferToThread(function)


def gather(*deferreds: Deferred[Any]) -> Deferred[list[Any]]:
    """Wait for every Deferred; the first failure wins."""
    return gatherResults(list(deferreds), consumeErrors=True)


class RawClient(Protocol):
    """A raw TCP client on the reactor: sends bytes, records what comes back,
    and can be closed at any moment (the disconnect tests)."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.closed: Deferred[None] = Deferred()
        self._waiters: list[tuple[bytes, Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        ready = [(needle, d) for needle, d in self._waiters if needle in self.received]
        self._waiters = [(n, d) for n, d in self._waiters if n not in self.received]
        for _needle, d in ready:
            d.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        waiters, self._waiters = self._waiters, []
        for needle, d in waiters:
            d.errback(ConnectionError(f"closed before {needle!r} arrived"))
        if not self.closed.called:
            self.closed.callback(None)

    def wait_for(self, needle: bytes) -> Deferred[None]:
        """Fires once ``needle`` has been received."""
        d: Deferred[None] = Deferred()
        if needle in self.received:
            d.callback(None)
        else:
            self._waiters.append((needle, d))
        return d

    def abort(self) -> None:
        """Close the connection at once."""
        cast(ITCPTransport, self.transport).abortConnection()

    def ensure_closed(self) -> Deferred[None]:
        """Cleanup: abort the connection unless it is already gone, and wait."""
        if not self.closed.called:
            self.abort()
        return self.closed


async def raw_chat(reactor: IReactorTCP, port: int, body: Mapping[str, Any]) -> RawClient:
    """Open a connection and send one chat completions request on it."""
    client = RawClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    payload = json.dumps(body).encode()
    assert client.transport is not None
    client.transport.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return client
