"""The WebSocket upgrade and the ``connect`` handshake, through the real protocol."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config.model import RateLimitConfig
from openclaw.gateway.ws.handshake import (
    DEFAULT_OPERATOR_SCOPES,
    b64url_decode,
    b64url_encode,
    device_id_for,
    has_scope,
)
from tests.ws_fakes import TOKEN, WsClient, WsHarness, connect_params, make_config, signed_device


def close_frame(client: WsClient) -> tuple[int | None, str]:
    """The (code, reason) of the close frame the server sent."""
    closes = [f for f in client.frames() if f.opcode == 8]
    assert len(closes) == 1, closes
    return closes[0].close_code, closes[0].close_reason


class HarnessTestCase(SynchronousTestCase):
    """Builds a harness and checks no timer outlives the test."""

    config: Any = None

    def setUp(self) -> None:
        self.h = WsHarness(self.config)
        self.addCleanup(self.h.cleanup)

    def handshake(self, params: dict[str, Any], peer: str = "127.0.0.1") -> tuple[WsClient, Any]:
        """Open a connection, send ``connect`` with ``params``; return the answer."""
        client = self.h.open(peer=peer)
        client.challenge()
        client.send({"type": "req", "id": "1:c", "method": "connect", "params": params})
        frames = client.frames()
        texts = [f.json for f in frames if f.opcode == 1]
        client._received = [f for f in frames if f.opcode != 1]
        self.assertEqual(len(texts), 1, texts)
        return client, texts[0]

    def assertRefused(
        self, client: WsClient, answer: Any, code: str, message: str, close_code: int = 1008
    ) -> dict[str, Any]:
        """An error res for the connect id, then a close with the message as reason."""
        self.assertEqual((answer["type"], answer["id"], answer["ok"]), ("res", "1:c", False))
        self.assertEqual(answer["error"]["code"], code)
        self.assertEqual(answer["error"]["message"], message)
        self.assertEqual(close_frame(client), (close_code, message[:123]))
        error: dict[str, Any] = answer["error"]
        return error


class UpgradeTests(HarnessTestCase):
    def test_upgrade_declines_compression_and_sends_challenge(self) -> None:
        """A bare 101 (no permessage-deflate, no Server header), then connect.challenge."""
        client = self.h.open()
        head = client.http_response.decode().lower()
        self.assertTrue(head.startswith("http/1.1 101"))
        self.assertNotIn("sec-websocket-extensions", head)
        self.assertNotIn("server:", head)
        (challenge,) = client.messages()
        self.assertEqual(challenge["type"], "event")
        self.assertEqual(challenge["event"], "connect.challenge")
        self.assertNotIn("seq", challenge)
        self.assertIsInstance(challenge["payload"]["nonce"], str)
        self.assertTrue(challenge["payload"]["nonce"])
        self.assertEqual(challenge["payload"]["ts"], int(self.h.clock.seconds() * 1000))

    def test_each_connection_gets_its_own_nonce(self) -> None:
        """Nonces are never reused across connections."""
        self.assertNotEqual(self.h.open().challenge()["nonce"], self.h.open().challenge()["nonce"])

    def test_foreign_browser_origin_is_refused_at_upgrade(self) -> None:
        """An Origin that is not allowed gets 403 and no WebSocket."""
        client = self.h.open(extra_headers=b"Origin: https://evil.example\r\n")
        self.assertTrue(client.http_response.startswith(b"HTTP/1.1 403"))
        self.assertEqual(client.frames(), [])
        self.assertTrue(client.lost)

    def test_same_origin_and_loopback_origins_are_accepted(self) -> None:
        """The gateway's own origin and loopback-to-loopback origins pass."""
        for origin in (b"http://127.0.0.1:18789", b"http://localhost:5173", b"http://[::1]:9"):
            client = self.h.open(extra_headers=b"Origin: " + origin + b"\r\n")
            self.assertTrue(client.http_response.startswith(b"HTTP/1.1 101"), origin)

    def test_loopback_origin_from_a_remote_peer_is_refused(self) -> None:
        """A page claiming localhost from another machine is not same-host."""
        client = self.h.open(peer="203.0.113.7", extra_headers=b"Origin: http://localhost:3000\r\n")
        self.assertTrue(client.http_response.startswith(b"HTTP/1.1 403"))

    def test_unparseable_and_null_origins_are_refused(self) -> None:
        """`null` and garbage origins are not browsers we trust (403, or Autobahn's 400)."""
        for origin in (b"null", b"http://[::1", b"file:///etc"):
            client = self.h.open(extra_headers=b"Origin: " + origin + b"\r\n")
            self.assertRegex(client.http_response, rb"^HTTP/1.1 40[03] ", origin)
            self.assertTrue(client.lost)

    def test_stopping_gateway_refuses_upgrades(self) -> None:
        """After shutdown began, new upgrades get 503."""
        self.h.factory.shutdown()
        client = self.h.open()
        self.assertTrue(client.http_response.startswith(b"HTTP/1.1 503"))


class AllowedOriginTests(HarnessTestCase):
    config = make_config(allowed_origins=["https://ui.example.com/"])

    def test_configured_origin_is_accepted(self) -> None:
        """controlUi.allowedOrigins admits that origin (case and slash insensitive)."""
        client = self.h.open(
            peer="203.0.113.7", extra_headers=b"Origin: HTTPS://UI.example.com\r\n"
        )
        self.assertTrue(client.http_response.startswith(b"HTTP/1.1 101"))


class ConnectTests(HarnessTestCase):
    def test_hello_ok(self) -> None:
        """hello-ok carries protocol, server, features, snapshot, auth and policy."""
        client, answer = self.handshake(connect_params(scopes=["operator.read"]))
        self.assertEqual((answer["id"], answer["ok"]), ("1:c", True))
        hello = answer["payload"]
        self.assertEqual(hello["type"], "hello-ok")
        self.assertEqual(hello["protocol"], 4)
        self.assertEqual(hello["server"]["version"], "0.1.0")
        self.assertEqual(hello["server"]["connId"], client.protocol.conn_id)
        self.assertIn("agent", hello["features"]["methods"])
        self.assertIn("logs.tail", hello["features"]["methods"])
        self.assertIn("tick", hello["features"]["events"])
        # `openclaw models list` requires it before it calls models.list.
        self.assertEqual(hello["features"]["capabilities"], ["published-model-catalog"])
        self.assertEqual(
            hello["auth"], {"method": "token", "role": "operator", "scopes": ["operator.read"]}
        )
        self.assertEqual(
            hello["policy"],
            {"maxPayload": 26214400, "maxBufferedBytes": 52428800, "tickIntervalMs": 30000},
        )
        self.assertEqual(hello["snapshot"]["uptimeMs"], 5000)
        self.assertEqual(hello["snapshot"]["sessionDefaults"]["mainSessionKey"], "agent:main:main")

    def test_no_scopes_requested_grants_the_operator_set(self) -> None:
        """A shared-secret client that asks for nothing gets full operator access."""
        _, answer = self.handshake(connect_params(scopes=None))
        self.assertEqual(tuple(answer["payload"]["auth"]["scopes"]), DEFAULT_OPERATOR_SCOPES)

    def test_unknown_fields_are_ignored(self) -> None:
        """Connect validation is lenient: newer clients may send more."""
        params = connect_params(bogusField=1, locale="de")
        params["client"]["futureThing"] = {"x": 1}
        _, answer = self.handshake(params)
        self.assertTrue(answer["ok"])

    def test_probe_protocol_range_is_accepted(self) -> None:
        """`gateway status` offers 3..4 with client version "dev"."""
        params = connect_params(min_protocol=3, mode="probe", scopes=["operator.read"])
        params["client"]["version"] = "dev"
        _, answer = self.handshake(params)
        self.assertTrue(answer["ok"])

    def test_protocol_mismatch_closes_1002(self) -> None:
        """A range without 4 gets PROTOCOL_MISMATCH details, then close 1002."""
        client, answer = self.handshake(connect_params(min_protocol=5, max_protocol=5))
        error = self.assertRefused(client, answer, "INVALID_REQUEST", "protocol mismatch", 1002)
        self.assertEqual(
            error["details"],
            {
                "code": "PROTOCOL_MISMATCH",
                "clientMinProtocol": 5,
                "clientMaxProtocol": 5,
                "expectedProtocol": 4,
                "minimumProbeProtocol": 3,
            },
        )

    def test_wrong_token(self) -> None:
        """The real gateway's mismatch error, then close 1008 with the message."""
        client, answer = self.handshake(connect_params(token="nope"))
        error = self.assertRefused(
            client,
            answer,
            "INVALID_REQUEST",
            "unauthorized: gateway token mismatch "
            "(use this gateway's gateway.auth.token or pair the device)",
        )
        self.assertEqual(error["details"]["code"], "AUTH_TOKEN_MISMATCH")
        self.assertNotIn(TOKEN, str(answer))

    def test_the_token_counts_in_the_password_field(self) -> None:
        """OpenClaw takes the shared secret in either field, the mode's own first:
        the token offered as auth.password connects; a wrong token field is not
        rescued by a right password."""
        _, answer = self.handshake(connect_params(token=None, password=TOKEN))
        self.assertTrue(answer["ok"])
        client, answer = self.handshake(connect_params(token="nope", password=TOKEN))
        self.assertRefused(
            client,
            answer,
            "INVALID_REQUEST",
            "unauthorized: gateway token mismatch "
            "(use this gateway's gateway.auth.token or pair the device)",
        )

    def test_no_credentials_and_no_device(self) -> None:
        """No auth and no device: NOT_PAIRED device identity required."""
        client, answer = self.handshake(connect_params(token=None))
        error = self.assertRefused(client, answer, "NOT_PAIRED", "device identity required")
        self.assertEqual(error["details"], {"code": "DEVICE_IDENTITY_REQUIRED"})

    def test_invalid_connect_params(self) -> None:
        """Fields we use are validated: missing protocol bounds, a bad client."""
        cases: list[tuple[dict[str, Any], str]] = [
            ({"client": {"id": "cli"}}, "invalid connect params: minProtocol must be an integer"),
            (
                {"minProtocol": 4, "maxProtocol": 4, "client": "cli"},
                "invalid connect params: client must be an object",
            ),
            (
                {"minProtocol": 4, "maxProtocol": 4, "client": {"mode": "cli"}},
                "invalid connect params: client.id must be a non-empty string",
            ),
            (
                {**connect_params(), "scopes": "operator.read"},
                "invalid connect params: scopes must be an array of strings",
            ),
            ({**connect_params(), "auth": "x"}, "invalid connect params: auth must be an object"),
            (
                {**connect_params(), "device": {"id": "x"}},
                "invalid connect params: device.publicKey must be a non-empty string",
            ),
            ({**connect_params(), "role": "node"}, "unsupported role: node"),
        ]
        for params, message in cases:
            client, answer = self.handshake(params)
            self.assertRefused(client, answer, "INVALID_REQUEST", message)

    def test_first_request_must_be_connect(self) -> None:
        """Any other method first is refused and the socket closed 1008."""
        client = self.h.open()
        client.challenge()
        client.request("health")
        (answer,) = client.messages()
        self.assertEqual(
            answer["error"]["message"], "invalid handshake: first request must be connect"
        )
        client.close()  # the close frame was swallowed by messages(); reply anyway
        self.assertTrue(client.lost)

    def test_malformed_first_frame(self) -> None:
        """Garbage before connect: an error event, then close 1008."""
        client = self.h.open()
        client.challenge()
        client.send_text("{oops")
        frames = client.frames()
        event = frames[0].json
        self.assertEqual(event["event"], "error")
        self.assertEqual(event["payload"]["code"], "INVALID_REQUEST")
        self.assertTrue(
            event["payload"]["message"].startswith("invalid handshake: malformed frame")
        )
        self.assertEqual(frames[1].close_code, 1008)

    def test_binary_first_frame(self) -> None:
        """A binary frame before connect is refused."""
        client = self.h.open()
        client.challenge()
        client.send_raw(2, b"\x00\x01")
        frames = client.frames()
        self.assertEqual(
            frames[0].json["payload"]["message"],
            "invalid handshake: binary frames are not supported",
        )
        self.assertEqual(frames[1].close_code, 1008)

    def test_frames_after_refusal_are_ignored(self) -> None:
        """Once the handshake failed nothing else is answered."""
        client, _ = self.handshake(connect_params(token="bad"))
        close_frame(client)
        client.request("health")
        self.assertEqual(client.frames(), [])

    def test_handshake_timeout(self) -> None:
        """No connect within 15 s: close 1008; nothing happens before that."""
        client = self.h.open()
        client.challenge()
        self.h.clock.advance(14.9)
        self.assertEqual(client.frames(), [])
        self.h.clock.advance(0.2)
        self.assertEqual(close_frame(client), (1008, "handshake timeout"))

    def test_connect_cancels_the_handshake_timer(self) -> None:
        """An authenticated connection is not closed by the handshake timer."""
        client, _ = self.h.connect()
        self.h.clock.advance(20)
        self.assertFalse([f for f in client.frames() if f.opcode == 8])

    def test_preauth_frames_are_capped_at_64k(self) -> None:
        """Before auth a 65 KiB message closes the socket with 1009."""
        client = self.h.open()
        client.challenge()
        client.send_text("x" * (65 * 1024))
        self.assertEqual(close_frame(client)[0], 1009)

    def test_authenticated_frames_may_be_large(self) -> None:
        """After hello-ok a 1 MiB request is fine."""
        client, _ = self.h.connect()
        client.request("health", {"padding": "x" * (1024 * 1024)})
        (answer,) = client.messages()
        self.assertTrue(answer["ok"])

    def test_second_connect_is_an_error(self) -> None:
        """connect after hello-ok is refused, the connection stays up."""
        client, _ = self.h.connect()
        client.request("connect", connect_params())
        (answer,) = client.messages()
        self.assertEqual(answer["error"]["message"], "already connected")
        client.request("health")
        self.assertTrue(client.messages()[0]["ok"])


class PasswordModeTests(HarnessTestCase):
    config = make_config(mode="password", token=None, password="pw-123")

    def test_password(self) -> None:
        """auth.password is checked in password mode; a token is not enough."""
        _, answer = self.handshake(connect_params(token=None, password="pw-123"))
        self.assertTrue(answer["ok"])
        self.assertEqual(answer["payload"]["auth"]["method"], "password")
        client, answer = self.handshake(connect_params(token="pw-123", password="nope"))
        error = self.assertRefused(
            client,
            answer,
            "INVALID_REQUEST",
            "unauthorized: gateway password mismatch "
            "(use this gateway's gateway.auth.password or pair the device)",
        )
        self.assertEqual(error["details"]["code"], "AUTH_PASSWORD_MISMATCH")
        _, answer = self.handshake(connect_params(token="pw-123", password=None))
        self.assertTrue(answer["ok"], "the password offered as auth.token")


class NoAuthModeTests(HarnessTestCase):
    config = make_config(mode="none", token=None)

    def test_no_credentials_needed(self) -> None:
        """auth.mode none admits a client without credentials."""
        _, answer = self.handshake(connect_params(token=None))
        self.assertEqual(answer["payload"]["auth"]["method"], "none")


class RateLimitTests(HarnessTestCase):
    config = make_config(rate_limit=RateLimitConfig(max_attempts=2, exempt_loopback=False))

    def test_failures_lock_the_address_out(self) -> None:
        """After maxAttempts failures even the right token is refused, with retryAfterMs."""
        peer = "203.0.113.9"
        for _ in range(2):
            _, answer = self.handshake(connect_params(token="bad"), peer=peer)
            self.assertEqual(answer["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH")
        client, answer = self.handshake(connect_params(), peer=peer)
        error = self.assertRefused(
            client,
            answer,
            "INVALID_REQUEST",
            "unauthorized: too many failed authentication attempts (retry later)",
        )
        self.assertEqual(error["details"]["code"], "AUTH_RATE_LIMITED")
        self.assertTrue(error["retryable"])
        self.assertEqual(error["retryAfterMs"], 300_000)
        self.h.clock.advance(301)
        _, answer = self.handshake(connect_params(), peer=peer)
        self.assertTrue(answer["ok"])
        _, answer = self.handshake(connect_params(), peer="203.0.113.10")
        self.assertTrue(answer["ok"])


class MissingTokenWithDeviceTests(HarnessTestCase):
    def test_device_alone_does_not_authenticate(self) -> None:
        """Without pairing a device block is no substitute for the shared token."""
        key = Ed25519PrivateKey.generate()
        client = self.h.open()
        nonce = client.challenge()["nonce"]
        params = connect_params(token=None)
        params["device"] = signed_device(key, params, nonce=nonce, signed_at=self.now())
        client.send({"type": "req", "id": "1:c", "method": "connect", "params": params})
        answer = client.frames()[0].json
        self.assertEqual(answer["error"]["details"]["code"], "AUTH_TOKEN_MISSING")

    def now(self) -> int:
        return int(self.h.clock.seconds() * 1000)


class DeviceTests(HarnessTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.key = Ed25519PrivateKey.generate()

    def now(self) -> int:
        return int(self.h.clock.seconds() * 1000)

    def device_connect(self, mutate: Any = None, **sign: Any) -> tuple[WsClient, Any]:
        """Connect with a device block signed for this connection's challenge."""
        client = self.h.open()
        challenge = client.challenge()
        params = connect_params(scopes=["operator.write"])
        options = {"nonce": challenge["nonce"], "signed_at": challenge["ts"], **sign}
        params["device"] = signed_device(self.key, params, **options)
        if mutate is not None:
            mutate(params)
        client.send({"type": "req", "id": "1:c", "method": "connect", "params": params})
        frames = client.frames()
        client._received = [f for f in frames if f.opcode != 1]
        return client, frames[0].json

    def test_good_signature(self) -> None:
        """A v3 signature over this challenge connects; hello-ok names the device."""
        _, answer = self.device_connect()
        self.assertTrue(answer["ok"], answer)
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.assertEqual(answer["payload"]["auth"]["deviceId"], device_id_for(raw))

    def test_legacy_v2_signature(self) -> None:
        """The v2 payload (v3 without platform fields) is still accepted."""

        def resign(params: dict[str, Any]) -> None:
            device = params["device"]
            text = "|".join(
                [
                    "v2",
                    device["id"],
                    "cli",
                    "cli",
                    "operator",
                    "operator.write",
                    str(device["signedAt"]),
                    TOKEN,
                    device["nonce"],
                ]
            )
            device["signature"] = b64url_encode(self.key.sign(text.encode()))

        _, answer = self.device_connect(resign)
        self.assertTrue(answer["ok"], answer)

    def test_bad_signature(self) -> None:
        """A signature that does not verify: DEVICE_AUTH_SIGNATURE_INVALID, close 1008."""
        client, answer = self.device_connect(tamper=True)
        error = self.assertRefused(client, answer, "INVALID_REQUEST", "device signature invalid")
        self.assertEqual(
            error["details"],
            {"code": "DEVICE_AUTH_SIGNATURE_INVALID", "reason": "device-signature"},
        )

    def test_signature_over_other_fields(self) -> None:
        """Changing a signed field (the scopes) after signing breaks the proof."""

        def widen(params: dict[str, Any]) -> None:
            params["scopes"] = ["operator.admin"]

        client, answer = self.device_connect(widen)
        self.assertRefused(client, answer, "INVALID_REQUEST", "device signature invalid")

    def test_stale_signature(self) -> None:
        """signedAt more than 10 minutes away: DEVICE_AUTH_SIGNATURE_EXPIRED."""
        client, answer = self.device_connect(signed_at=self.now() - 10 * 60 * 1000 - 1)
        error = self.assertRefused(client, answer, "INVALID_REQUEST", "device signature expired")
        self.assertEqual(
            error["details"],
            {"code": "DEVICE_AUTH_SIGNATURE_EXPIRED", "reason": "device-signature-stale"},
        )

    def test_recent_signature_is_fresh(self) -> None:
        """signedAt 9 minutes old is still within the window."""
        _, answer = self.device_connect(signed_at=self.now() - 9 * 60 * 1000)
        self.assertTrue(answer["ok"])

    def test_nonce_must_be_this_connections_challenge(self) -> None:
        """A proof made for another challenge is refused (no replay)."""
        client, answer = self.device_connect(nonce="another-nonce")
        error = self.assertRefused(client, answer, "INVALID_REQUEST", "device nonce mismatch")
        self.assertEqual(error["details"]["code"], "DEVICE_AUTH_NONCE_MISMATCH")

    def test_id_must_be_the_key_hash(self) -> None:
        """device.id must be sha256(publicKey) in hex."""

        def other_id(params: dict[str, Any]) -> None:
            params["device"]["id"] = "0" * 64

        client, answer = self.device_connect(other_id)
        error = self.assertRefused(client, answer, "INVALID_REQUEST", "device identity mismatch")
        self.assertEqual(error["details"]["code"], "DEVICE_AUTH_DEVICE_ID_MISMATCH")

    def test_public_key_must_be_32_bytes_of_base64url(self) -> None:
        """A key that does not decode to 32 bytes is refused before any crypto."""
        for bad in ("!!!", b64url_encode(b"short")):

            def broken(params: dict[str, Any], bad: str = bad) -> None:
                params["device"]["publicKey"] = bad

            client, answer = self.device_connect(broken)
            error = self.assertRefused(
                client, answer, "INVALID_REQUEST", "device public key invalid"
            )
            self.assertEqual(error["details"]["code"], "DEVICE_AUTH_PUBLIC_KEY_INVALID")


class HelperTests(SynchronousTestCase):
    def test_base64url_round_trip(self) -> None:
        """Keys and signatures are base64url without padding; padding is optional on input."""
        for data in (b"", b"a", b"ab", b"abc", bytes(range(256))):
            text = b64url_encode(data)
            self.assertNotIn("=", text)
            self.assertEqual(b64url_decode(text), data)
        with self.assertRaises(ValueError):
            b64url_decode("é")

    def test_scope_implication(self) -> None:
        """admin implies everything and write implies read; nothing else is implied."""
        self.assertTrue(has_scope(["operator.admin"], "operator.write"))
        self.assertTrue(has_scope(["operator.write"], "operator.read"))
        self.assertFalse(has_scope(["operator.read"], "operator.write"))
        self.assertFalse(has_scope([], "operator.read"))
        self.assertTrue(has_scope([], None))
