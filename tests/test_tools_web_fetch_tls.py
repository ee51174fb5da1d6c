"""web_fetch over TLS: the connection is pinned to the checked address while the
certificate is verified for the URL's host name."""

from __future__ import annotations

import datetime
import ipaddress
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.defer import Deferred, succeed
from twisted.internet.ssl import Certificate, PrivateCertificate, trustRootFromCertificates
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from openclaw.agents.tools._common import inline_runner
from openclaw.agents.tools.base import ToolContext, ToolResult
from openclaw.agents.tools.web_fetch import WebFetchTool
from openclaw.netguard import IPAddress, SSRFPolicy


def self_signed(host: str) -> tuple[bytes, bytes]:
    """A throw-away self-signed certificate (PEM) for ``host`` and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class Page(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return b"secure hello " + (request.getHeader(b"host") or b"").split(b":")[0]


class TlsTests(TestCase):
    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        cert_pem, key_pem = self_signed("tls.test")
        server = PrivateCertificate.loadPEM(cert_pem + key_pem)
        site = Site(Page())
        # typing note: the global reactor's stub type does not list IReactorSSL
        port = reactor.listenSSL(  # type: ignore[attr-defined]
            0, site, server.options(), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        self.port_no: int = port.getHost().port
        self.trust = trustRootFromCertificates([Certificate.loadPEM(cert_pem)])
        self.ctx = ToolContext("main", "k", "r", "c", FilePath(self.mktemp()))

    def resolver(self, host: str, port: int) -> Deferred[list[IPAddress]]:
        return succeed([ipaddress.ip_address("127.0.0.1")] if host == "tls.test" else [])

    def tool(self, trusted: bool) -> WebFetchTool:
        return WebFetchTool(
            self.reactor,  # type: ignore[arg-type]
            inline_runner,
            ssrf_policy=SSRFPolicy(allowed_hostnames=["tls.test"]),
            resolver=self.resolver,
            trust_root=self.trust if trusted else None,
        )

    async def test_name_verified_on_pinned_address(self) -> None:
        """The fetch dials 127.0.0.1 yet verifies the certificate for tls.test and sends
        Host: tls.test."""
        res: ToolResult = await self.tool(True).run(
            {"url": f"https://tls.test:{self.port_no}/"}, self.ctx
        )
        self.assertFalse(res.is_error, res.content)
        self.assertIn("\n---\nsecure hello tls.test\n<<<END_", json.loads(res.content)["text"])

    async def test_untrusted_certificate_refused(self) -> None:
        """Against the platform's roots the self-signed certificate fails verification."""
        res: ToolResult = await self.tool(False).run(
            {"url": f"https://tls.test:{self.port_no}/"}, self.ctx
        )
        self.assertTrue(res.is_error)
        self.assertIn("Web fetch failed", res.content)
