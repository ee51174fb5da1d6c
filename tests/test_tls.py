"""TLS through endpoint strings: the gateway's Site on ``ssl:0:...`` with a
certificate made at test time, reached over real loopback sockets by an HTTPS
client (treq), a raw TLS client that offers HTTP/2, and an Autobahn WSS client.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import treq
from attrs import evolve
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, serverFromString, wrapClientTLS
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

from openclaw.config.model import AuthConfig, Config
from openclaw.gateway.assembly import Gateway, build_gateway
from openclaw.testing import make_runtime, scripted_config

TOKEN = "tls-test-token-0123456789"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(directory: Path) -> tuple[bytes, Path, Path]:
    """A throw-away CA and a server certificate it signed for 127.0.0.1 and
    localhost; returns the CA's PEM and the server key and certificate files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("openclaw test CA"))
        .issuer_name(_name("openclaw test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key_path = directory / "server.key"
    cert_path = directory / "server.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ca_cert.public_bytes(serialization.Encoding.PEM), key_path, cert_path


class _RawTLSClient(Protocol):
    """Sends one HTTP/1.1 request and records the negotiated ALPN protocol."""

    def __init__(self) -> None:
        self.data = b""
        self.negotiated: bytes | None = None
        self.done: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        self.negotiated = getattr(self.transport, "negotiatedProtocol", None)
        self.data += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(None)


class _WssClient(WebSocketClientProtocol):
    """Records the first message, then closes."""

    first: Deferred[Any]
    closed: Deferred[None]

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not self.first.called:
            self.first.callback(json.loads(payload))
            self.sendClose(1000)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.first.called:
            self.first.errback(RuntimeError(f"closed before a message: {code} {reason}"))
        self.closed.callback(None)


class TLSTests(TestCase):
    """The gateway serving HTTPS and WSS on an ``ssl:`` endpoint (real reactor)."""

    timeout = 30

    # typing note: trial waits for a Deferred returned by setUp.
    @inlineCallbacks
    def setUp(self) -> Generator[Deferred[Any], Any, None]:  # type: ignore[override]
        from twisted.internet import reactor

        self.reactor: Any = reactor
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        ca_pem, key_path, cert_path = make_certificates(directory)
        self.trust_root = Certificate.loadPEM(ca_pem)
        base = scripted_config(directory / "state")
        config: Config = evolve(
            base,
            gateway=evolve(
                base.gateway, auth=AuthConfig(mode="token", token=TOKEN, rate_limit=None)
            ),
        )
        self.runtime = make_runtime(config, clock=reactor)
        self.gateway: Gateway = build_gateway(config, reactor, runtime=self.runtime)
        self.gateway.readiness.mark_ready(reactor)
        endpoint = serverFromString(
            reactor,
            f"ssl:0:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}",
        )
        self.port: IListeningPort = yield endpoint.listen(self.gateway.site)
        self.port_number = self.port.getHost().port
        self.addCleanup(self._stop)

    @inlineCallbacks
    def _stop(self) -> Any:
        yield self.gateway.websocket.shutdown()
        yield self.gateway.site.connections.when_empty()
        yield self.port.stopListening()
        yield self.runtime.shutdown()

    @inlineCallbacks
    def test_https_request(self) -> Any:
        """treq over HTTPS, verifying the test CA and the 127.0.0.1 SAN, gets
        the health probe with the gateway's headers."""
        pool = HTTPConnectionPool(self.reactor, persistent=False)
        agent = Agent(
            self.reactor,
            contextFactory=BrowserLikePolicyForHTTPS(trustRoot=self.trust_root),
            pool=pool,
        )
        response = yield treq.get(f"https://127.0.0.1:{self.port_number}/healthz", agent=agent)
        body = yield treq.json_content(response)
        self.assertEqual(response.code, 200)
        self.assertEqual(body, {"ok": True, "status": "live"})
        self.assertTrue(response.headers.getRawHeaders(b"x-request-id")[0].startswith(b"req_"))
        yield pool.closeCachedConnections()

    @inlineCallbacks
    def test_alpn_never_selects_http2(self) -> Any:
        """A client offering h2 and http/1.1 gets http/1.1 (Autobahn cannot
        upgrade an HTTP/2 stream), and is answered in HTTP/1.1."""
        options = optionsForClientTLS(
            "127.0.0.1", trustRoot=self.trust_root, acceptableProtocols=[b"h2", b"http/1.1"]
        )
        endpoint = wrapClientTLS(
            options, TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.port_number)
        )
        client = _RawTLSClient()
        yield endpoint.connect(Factory.forProtocol(lambda: client))
        yield client.done
        self.assertEqual(client.negotiated, b"http/1.1")
        self.assertTrue(client.data.startswith(b"HTTP/1.1 200 "), client.data[:80])

    @inlineCallbacks
    def test_wss_upgrade(self) -> Any:
        """An Autobahn client upgrades over TLS (wss://) and receives the
        gateway's connect.challenge event; the connection is counted until it
        closes (the clean-up waits for the count to reach zero)."""
        first: Deferred[Any] = Deferred()
        closed: Deferred[None] = Deferred()

        def build() -> _WssClient:
            protocol = _WssClient()
            protocol.first = first
            protocol.closed = closed
            return protocol

        url = f"wss://127.0.0.1:{self.port_number}/"
        factory = WebSocketClientFactory(url)
        # typing note: Factory.protocol may be any callable returning a protocol.
        factory.protocol = build  # type: ignore[assignment]
        options = optionsForClientTLS("127.0.0.1", trustRoot=self.trust_root)
        endpoint = wrapClientTLS(
            options, TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.port_number)
        )
        yield endpoint.connect(factory)
        frame = yield first
        self.assertEqual((frame["type"], frame["event"]), ("event", "connect.challenge"))
        self.assertEqual(len(self.gateway.site.connections), 1)
        self.assertIn("nonce", frame["payload"])
        yield closed
