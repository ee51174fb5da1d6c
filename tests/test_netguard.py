"""The SSRF guard: address classes, embedded IPv4 forms, URL checks, pinning."""

from __future__ import annotations

import ipaddress

from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.netguard import (
    BlockedTargetError,
    SSRFPolicy,
    check_address,
    check_url,
    classify,
    embedded_ipv4,
    pick_allowed,
    pinned_endpoint,
    resolve,
)

STRICT = SSRFPolicy()


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


class ClassifyTests(SynchronousTestCase):
    def test_private_ipv4_classes(self) -> None:
        """Loopback, RFC 1918, link-local, CGNAT, multicast, unspecified are all refused."""
        for text in (
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "198.18.0.1",
        ):
            self.assertIsNotNone(classify(ip(text)), text)

    def test_public_addresses_pass(self) -> None:
        """Ordinary public IPv4 and IPv6 addresses are classified as public."""
        for text in ("93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946"):
            self.assertIsNone(classify(ip(text)), text)

    def test_private_ipv6_classes(self) -> None:
        """::1, ::, fe80::/10, fc00::/7 and ff00::/8 are refused."""
        for text in ("::1", "::", "fe80::1", "fd00::1", "ff02::1"):
            self.assertIsNotNone(classify(ip(text)), text)

    def test_embedded_ipv4_forms_are_classified_by_the_embedded_address(self) -> None:
        """Each IPv6 form that carries IPv4 is judged by that IPv4 (issue 17 item 7)."""
        cases = {
            "::ffff:127.0.0.1": "IPv4-mapped",
            "::ffff:0:7f00:1": "IPv4-translated",
            "64:ff9b::7f00:1": "NAT64",
            "64:ff9b:1::a00:1": "local-use NAT64",
            "2002:7f00:1::": "6to4",
            "::127.0.0.1": "IPv4-compatible",
            "::10.0.0.1": "IPv4-compatible",
            "2002:c0a8:101::1": "6to4",
        }
        for text, form in cases.items():
            reason = classify(ip(text))
            self.assertIsNotNone(reason, text)
            assert reason is not None
            self.assertIn(form, reason, text)

    def test_embedded_public_ipv4_stays_public(self) -> None:
        """NAT64 or 6to4 of a public IPv4 address is public."""
        self.assertIsNone(classify(ip("64:ff9b::808:808")))
        self.assertIsNone(classify(ip("2002:808:808::1")))
        self.assertIsNone(classify(ip("::ffff:8.8.8.8")))

    def test_embedded_ipv4_extraction(self) -> None:
        """embedded_ipv4 returns the carried address; plain IPv6 carries none."""
        self.assertEqual(
            embedded_ipv4(ipaddress.IPv6Address("64:ff9b::c0a8:101")),
            (ipaddress.IPv4Address("192.168.1.1"), "NAT64"),
        )
        self.assertIsNone(embedded_ipv4(ipaddress.IPv6Address("2606:4700::1")))
        self.assertIsNone(embedded_ipv4(ipaddress.IPv6Address("::1")))

    def test_teredo_client_address(self) -> None:
        """A Teredo address whose (obfuscated) client IPv4 is loopback is refused."""
        client = ~int(ipaddress.IPv4Address("127.0.0.1")) & 0xFFFFFFFF
        teredo = ipaddress.IPv6Address((0x20010000 << 96) | client)
        self.assertIsNotNone(classify(teredo))

    def test_policy_exceptions(self) -> None:
        """The opt-ins lift exactly their own range; the broad switch lifts all."""
        bench = SSRFPolicy(allow_benchmark_range=True)
        self.assertIsNone(classify(ip("198.18.0.1"), bench))
        self.assertIsNotNone(classify(ip("10.0.0.1"), bench))
        ula = SSRFPolicy(allow_unique_local_range=True)
        self.assertIsNone(classify(ip("fd00::1"), ula))
        check_address(ip("127.0.0.1"), SSRFPolicy(allow_private_network=True))
        check_address(
            ip("10.0.0.1"), SSRFPolicy(allowed_hostnames=["Internal.Example."]), "internal.example"
        )


class AllowListedAddressTests(SynchronousTestCase):
    def test_an_allow_listed_address_literal_passes(self) -> None:
        """allowedHostnames lists addresses too: "127.0.0.1" and "[::1]" let a
        URL with that literal through; other loopback addresses stay blocked."""
        policy = SSRFPolicy(allowed_hostnames=["127.0.0.1", "[::1]"])
        self.assertEqual(check_url("http://127.0.0.1:8080/x", policy).host, "127.0.0.1")
        self.assertEqual(check_url("http://[::1]/x", policy).host, "::1")
        self.assertRaises(BlockedTargetError, check_url, "http://127.0.0.2/", policy)
        self.assertRaises(BlockedTargetError, check_url, "http://127.0.0.1/", STRICT)


class CheckUrlTests(SynchronousTestCase):
    def test_scheme_and_shape(self) -> None:
        """Non-http(s) schemes, credentials, missing hosts and spaces are refused."""
        for url in (
            "file:///etc/passwd",
            "ftp://x.org/",
            "http://u:p@example.com/",
            "http:///path",
            "http://exa mple.com/",
            "http://example.com:99999/",
            "gopher://example.com/",
        ):
            self.assertRaises(BlockedTargetError, check_url, url, STRICT)

    def test_literal_and_local_names(self) -> None:
        """Literal private addresses and local names are refused before any DNS."""
        for url in (
            "http://127.0.0.1/",
            "http://[::1]:8080/",
            "http://[64:ff9b::7f00:1]/",
            "http://localhost/",
            "http://foo.localhost/",
            "http://printer.local/",
            "http://metadata.google.internal/",
            "http://0x7f000001/",
        ):
            with self.subTest(url=url):
                try:
                    check_url(url, STRICT)
                except BlockedTargetError:
                    continue
                # a name that is not a literal passes only to DNS, which must then refuse it
                self.assertEqual(url, "http://0x7f000001/")

    def test_default_ports(self) -> None:
        """The split target carries the scheme's default port and a lower-case host."""
        target = check_url("https://Example.COM/a?b", STRICT)
        self.assertEqual((target.scheme, target.host, target.port), ("https", "example.com", 443))
        self.assertEqual(check_url("http://example.com:8080/", STRICT).port, 8080)

    def test_allowed_when_dangerous_switch_on(self) -> None:
        """dangerouslyAllowPrivateNetwork lets loopback URLs through."""
        target = check_url("http://127.0.0.1:1234/", SSRFPolicy(allow_private_network=True))
        self.assertEqual(target.port, 1234)


class ResolveAndPinTests(SynchronousTestCase):
    def test_any_private_answer_refuses_the_name(self) -> None:
        """A name with one public and one private answer is refused as a whole."""
        with self.assertRaises(BlockedTargetError) as caught:
            pick_allowed("rebind.example", [ip("8.8.8.8"), ip("10.0.0.5")], STRICT)
        self.assertIn("rebind.example", str(caught.exception))
        self.assertEqual(pick_allowed("ok.example", [ip("8.8.8.8")], STRICT), ip("8.8.8.8"))
        self.assertRaises(BlockedTargetError, pick_allowed, "none.example", [], STRICT)

    def test_literal_resolves_to_itself(self) -> None:
        """resolve() on an address literal answers synchronously with that address."""
        reactor = MemoryReactorClock()
        self.assertEqual(self.successResultOf(resolve(reactor, "::1", 80)), [ip("::1")])

    def test_pinned_endpoint_connects_to_the_checked_address(self) -> None:
        """The endpoint dials the checked address, not the name, for both families."""
        reactor = MemoryReactorClock()
        target = check_url("http://example.com/", STRICT)
        ep4 = pinned_endpoint(reactor, target, ip("93.184.216.34"))
        self.assertIsInstance(ep4, TCP4ClientEndpoint)
        ep6 = pinned_endpoint(reactor, target, ip("2606:2800::1"))
        self.assertIsInstance(ep6, TCP6ClientEndpoint)
        ep4.connect(None)  # type: ignore[arg-type]
        self.assertEqual(reactor.tcpClients[0][:2], ("93.184.216.34", 80))


class RealResolverTests(TestCase):
    async def test_localhost_resolves_through_the_reactor_and_is_refused(self) -> None:
        """The reactor's resolver path works and its loopback answers are refused."""
        from twisted.internet import reactor

        addresses = await resolve(reactor, "localhost", 80)  # type: ignore[arg-type]
        self.assertTrue(addresses)
        self.assertTrue(set(map(str, addresses)) <= {"127.0.0.1", "::1"}, addresses)
        self.assertRaises(BlockedTargetError, pick_allowed, "localhost", addresses, STRICT)
