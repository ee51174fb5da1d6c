"""The ``connect`` handshake: params, protocol range, shared-secret auth, device proof.

Validation is lenient about fields it does not know (newer CLIs may send
more), strict about the ones it uses. The device block, when present, must
prove possession of an Ed25519 key over OpenClaw's v3 payload, bound to this
connection's challenge nonce and fresh within ten minutes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

from attrs import frozen
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from openclaw.gateway.auth import AuthDecision
from openclaw.gateway.ws.frames import (
    INVALID_REQUEST,
    MINIMUM_PROBE_PROTOCOL,
    NOT_PAIRED,
    PROTOCOL_VERSION,
    RequestError,
)

SCOPE_READ: Final = "operator.read"
SCOPE_WRITE: Final = "operator.write"
SCOPE_ADMIN: Final = "operator.admin"
#: What a shared-secret client gets when it asks for nothing in particular.
DEFAULT_OPERATOR_SCOPES: Final = (
    SCOPE_ADMIN,
    "operator.approvals",
    "operator.pairing",
    SCOPE_READ,
    "operator.talk.secrets",
    SCOPE_WRITE,
)
#: A signed device proof older (or newer) than this is refused.
DEVICE_SIGNATURE_MAX_SKEW_MS: Final = 10 * 60 * 1000
_MAX_FIELD = 512
_MAX_SCOPES = 64


@frozen
class ClientInfo:
    """``params.client``: labels the client gives itself."""

    id: str
    mode: str = ""
    version: str = ""
    platform: str = ""
    device_family: str = ""
    display_name: str | None = None
    instance_id: str | None = None


@frozen
class DeviceBlock:
    """``params.device``: an Ed25519 identity and its proof for this challenge."""

    id: str
    public_key: str
    signature: str
    signed_at: int
    nonce: str


@frozen
class ConnectParams:
    """The parts of a ``connect`` request this gateway uses."""

    min_protocol: int
    max_protocol: int
    client: ClientInfo
    role: str = "operator"
    #: None when the client asked for no particular scopes.
    scopes: tuple[str, ...] | None = None
    caps: tuple[str, ...] = ()
    token: str | None = None
    password: str | None = None
    device: DeviceBlock | None = None


@frozen
class DeviceIdentity:
    """A device whose proof verified."""

    id: str
    public_key: str


def _invalid(reason: str) -> RequestError:
    return RequestError(INVALID_REQUEST, f"invalid connect params: {reason}")


def _int_field(params: Mapping[str, Any], name: str, where: str = "") -> int:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{where}{name} must be an integer")
    return value


def _opt_str(params: Mapping[str, Any], name: str, where: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _MAX_FIELD:
        raise _invalid(f"{where}{name} must be a string of at most {_MAX_FIELD} characters")
    return value


def _str_list(params: Mapping[str, Any], name: str) -> tuple[str, ...] | None:
    value = params.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > _MAX_SCOPES
        or not all(isinstance(v, str) and len(v) <= _MAX_FIELD for v in value)
    ):
        raise _invalid(f"{name} must be an array of strings")
    return tuple(value)


def parse_connect_params(params: Mapping[str, Any]) -> ConnectParams:
    """Validate the fields we use; ignore the rest. Raises RequestError."""
    min_protocol = _int_field(params, "minProtocol")
    max_protocol = _int_field(params, "maxProtocol")
    client_raw = params.get("client")
    if not isinstance(client_raw, dict):
        raise _invalid("client must be an object")
    client_id = _opt_str(client_raw, "id", "client.")
    if not client_id:
        raise _invalid("client.id must be a non-empty string")
    client = ClientInfo(
        id=client_id,
        mode=_opt_str(client_raw, "mode", "client.") or "",
        version=_opt_str(client_raw, "version", "client.") or "",
        platform=_opt_str(client_raw, "platform", "client.") or "",
        device_family=_opt_str(client_raw, "deviceFamily", "client.") or "",
        display_name=_opt_str(client_raw, "displayName", "client."),
        instance_id=_opt_str(client_raw, "instanceId", "client."),
    )
    role = _opt_str(params, "role", "") or "operator"
    if role != "operator":
        raise RequestError(
            INVALID_REQUEST,
            f"unsupported role: {role}",
            details={"code": "ROLE_UNSUPPORTED", "supportedRoles": ["operator"]},
        )
    auth_raw = params.get("auth")
    token = password = None
    if auth_raw is not None:
        if not isinstance(auth_raw, dict):
            raise _invalid("auth must be an object")
        token = _opt_str(auth_raw, "token", "auth.")
        password = _opt_str(auth_raw, "password", "auth.")
    device_raw = params.get("device")
    device = None
    if device_raw is not None:
        device = _parse_device(device_raw)
    return ConnectParams(
        min_protocol=min_protocol,
        max_protocol=max_protocol,
        client=client,
        role=role,
        scopes=_str_list(params, "scopes"),
        caps=_str_list(params, "caps") or (),
        token=token,
        password=password,
        device=device,
    )


def _parse_device(raw: Any) -> DeviceBlock:
    if not isinstance(raw, dict):
        raise _invalid("device must be an object")
    fields = {}
    for name in ("id", "publicKey", "signature", "nonce"):
        value = _opt_str(raw, name, "device.")
        if not value:
            raise _invalid(f"device.{name} must be a non-empty string")
        fields[name] = value
    signed_at = _int_field(raw, "signedAt", "device.")
    return DeviceBlock(
        id=fields["id"],
        public_key=fields["publicKey"],
        signature=fields["signature"],
        signed_at=signed_at,
        nonce=fields["nonce"],
    )


def check_protocol(params: ConnectParams) -> None:
    """The client's protocol range must include ours, else a mismatch error."""
    if params.min_protocol <= PROTOCOL_VERSION <= params.max_protocol:
        return
    raise RequestError(
        INVALID_REQUEST,
        "protocol mismatch",
        details={
            "code": "PROTOCOL_MISMATCH",
            "clientMinProtocol": params.min_protocol,
            "clientMaxProtocol": params.max_protocol,
            "expectedProtocol": PROTOCOL_VERSION,
            "minimumProbeProtocol": MINIMUM_PROBE_PROTOCOL,
        },
    )


def auth_failure(decision: AuthDecision, mode: str, *, has_device: bool) -> RequestError:
    """The error a failed shared-secret check is answered with (never the secret)."""
    if decision.reason == "rate_limited":
        return RequestError(
            INVALID_REQUEST,
            "unauthorized: too many failed authentication attempts (retry later)",
            details={"code": "AUTH_RATE_LIMITED", "authReason": "rate_limited"},
            retryable=True,
            retry_after_ms=decision.retry_after_ms,
        )
    what = "password" if mode == "password" else "token"
    if decision.reason == "missing":
        if not has_device:
            return RequestError(
                NOT_PAIRED,
                "device identity required",
                details={"code": "DEVICE_IDENTITY_REQUIRED"},
            )
        return RequestError(
            INVALID_REQUEST,
            f"unauthorized: gateway {what} missing (provide this gateway's gateway.auth.{what})",
            details={
                "code": f"AUTH_{what.upper()}_MISSING",
                "authReason": f"{what}_missing",
                "canRetryWithDeviceToken": False,
                "recommendedNextStep": "update_auth_credentials",
            },
        )
    return RequestError(
        INVALID_REQUEST,
        f"unauthorized: gateway {what} mismatch "
        f"(use this gateway's gateway.auth.{what} or pair the device)",
        details={
            "code": f"AUTH_{what.upper()}_MISMATCH",
            "authReason": f"{what}_mismatch",
            "canRetryWithDeviceToken": False,
            "recommendedNextStep": "update_auth_credentials",
        },
    )


def b64url_decode(value: str) -> bytes:
    """Decode base64url with or without padding; raises ValueError."""
    padded = value + "=" * (-len(value) % 4)
    try:
        return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ValueError(str(e)) from None


def b64url_encode(data: bytes) -> str:
    """base64url without padding, as OpenClaw writes keys and signatures."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def device_id_for(public_key: bytes) -> str:
    """A device id is the lowercase hex SHA-256 of the raw public key."""
    return hashlib.sha256(public_key).hexdigest()


def device_payload_v3(
    *,
    device_id: str,
    client_id: str,
    client_mode: str,
    role: str,
    scopes: Sequence[str],
    signed_at: int,
    token: str,
    nonce: str,
    platform: str,
    device_family: str,
) -> str:
    """The text the CLI signs (OpenClaw's v3 device-auth payload)."""
    return "|".join(
        [
            "v3",
            device_id,
            client_id,
            client_mode,
            role,
            ",".join(scopes),
            str(signed_at),
            token,
            nonce,
            platform.strip().lower(),
            device_family.strip().lower(),
        ]
    )


def _device_error(message: str, code: str, reason: str) -> RequestError:
    return RequestError(INVALID_REQUEST, message, details={"code": code, "reason": reason})


def verify_device(
    params: ConnectParams, *, challenge_nonce: str, now_ms: int
) -> DeviceIdentity | None:
    """Check the device block's proof, if there is one; raise RequestError if bad.

    The signed payload is v3; the legacy v2 payload (v3 without the platform
    fields) is accepted too, as OpenClaw's docs promise.
    """
    device = params.device
    if device is None:
        return None
    try:
        public_key = b64url_decode(device.public_key)
    except ValueError:
        public_key = b""
    if len(public_key) != 32:
        raise _device_error(
            "device public key invalid", "DEVICE_AUTH_PUBLIC_KEY_INVALID", "device-public-key"
        )
    if device_id_for(public_key) != device.id.lower():
        raise _device_error(
            "device identity mismatch", "DEVICE_AUTH_DEVICE_ID_MISMATCH", "device-id-mismatch"
        )
    if device.nonce != challenge_nonce:
        raise _device_error(
            "device nonce mismatch", "DEVICE_AUTH_NONCE_MISMATCH", "device-nonce-mismatch"
        )
    if abs(now_ms - device.signed_at) > DEVICE_SIGNATURE_MAX_SKEW_MS:
        raise _device_error(
            "device signature expired", "DEVICE_AUTH_SIGNATURE_EXPIRED", "device-signature-stale"
        )
    try:
        signature = b64url_decode(device.signature)
    except ValueError:
        signature = b""
    v3 = device_payload_v3(
        device_id=device.id,
        client_id=params.client.id,
        client_mode=params.client.mode,
        role=params.role,
        scopes=params.scopes or (),
        signed_at=device.signed_at,
        token=params.token or "",
        nonce=device.nonce,
        platform=params.client.platform,
        device_family=params.client.device_family,
    )
    v2 = "v2" + v3[2:].rsplit("|", 2)[0]
    key = Ed25519PublicKey.from_public_bytes(public_key)
    for candidate in (v3, v2):
        try:
            key.verify(signature, candidate.encode("utf-8"))
        except InvalidSignature:
            continue
        return DeviceIdentity(id=device.id.lower(), public_key=device.public_key)
    raise _device_error(
        "device signature invalid", "DEVICE_AUTH_SIGNATURE_INVALID", "device-signature"
    )


def granted_scopes(params: ConnectParams) -> tuple[str, ...]:
    """The scopes a client authenticated with the shared secret gets.

    The shared secret proves full operator access, so a client gets what it
    asked for (OpenClaw's CLI asks for the least it needs), or the full
    default set when it asked for nothing.
    """
    if params.scopes is None:
        return DEFAULT_OPERATOR_SCOPES
    seen: dict[str, None] = {}
    for scope in params.scopes:
        seen.setdefault(scope, None)
    return tuple(seen)


def has_scope(granted: Sequence[str], required: str | None) -> bool:
    """``operator.admin`` implies every scope and ``operator.write`` implies read."""
    if required is None or required in granted or SCOPE_ADMIN in granted:
        return True
    return required == SCOPE_READ and SCOPE_WRITE in granted
