"""Raw wire formats for the fuzzer: HTTP/1.1 responses, WebSocket frames, /proc.

Everything here works on bytes, so the fuzzer can send what no client library
would (bad opcodes, lying lengths, unmasked frames) and still read whatever
comes back.
"""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

import attrs

#: Never keep more than this much of one response body.
MAX_BODY_KEPT = 1 << 20


class WireError(Exception):
    """The peer sent something that is not valid HTTP / WebSocket framing."""


@attrs.define
class HttpResponse:
    """One response as read off the socket."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    #: The body ended as its framing said (length reached, last chunk, or EOF).
    complete: bool = False

    def header(self, name: bytes) -> bytes | None:
        """The last value of a header (case-insensitive)."""
        wanted = name.lower()
        found = None
        for key, value in self.headers:
            if key.lower() == wanted:
                found = value
        return found


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The raw status line and headers; cancelling it consumes nothing."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise WireError(f"response head cut after {len(e.partial)} bytes") from None
        raise EOFError from None
    except asyncio.LimitOverrunError:
        raise WireError("response head too long") from None


def parse_head(raw: bytes) -> HttpResponse:
    """Status line and headers."""
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise WireError(f"bad status line {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        key, sep, value = line.partition(b":")
        if not sep:
            raise WireError(f"bad header line {line[:80]!r}")
        headers.append((key.strip(), value.strip()))
    return HttpResponse(int(parts[1]), parts[2] if len(parts) > 2 else b"", headers)


async def read_response(
    reader: asyncio.StreamReader, *, head_only: bool = False, head: bytes | None = None
) -> HttpResponse:
    """Read one response (skipping ``100 Continue``); EOFError if none started.

    ``head`` is a head already read with :func:`read_head`.
    """
    while True:
        response = parse_head(head if head is not None else await read_head(reader))
        head = None
        if response.status != 100:
            break
    if head_only or response.status in (204, 304) or 100 <= response.status < 200:
        response.complete = True
        return response
    body = bytearray()
    encoding = (response.header(b"transfer-encoding") or b"").lower()
    length = response.header(b"content-length")
    try:
        if b"chunked" in encoding:
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip() or b"x", 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                data = await reader.readexactly(size + 2)
                if data[-2:] != b"\r\n":
                    raise WireError("chunk not followed by CRLF")
                if len(body) < MAX_BODY_KEPT:
                    body += data[:-2]
            response.complete = True
        elif length is not None:
            body += await reader.readexactly(int(length))
            response.complete = True
        else:
            while chunk := await reader.read(65536):
                if len(body) < MAX_BODY_KEPT:
                    body += chunk
            response.complete = True
    except (asyncio.IncompleteReadError, ValueError, asyncio.LimitOverrunError) as e:
        if isinstance(e, asyncio.IncompleteReadError):
            body += e.partial
    response.body = bytes(body)
    return response


# --- WebSocket ----------------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def ws_frame(
    payload: bytes,
    opcode: int = OP_TEXT,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = b"\x11\x22\x33\x44",
    declared_length: int | None = None,
) -> bytes:
    """A client frame; ``mask=None`` sends it unmasked, ``declared_length`` lies."""
    first = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    length = len(payload) if declared_length is None else declared_length
    mask_bit = 0x80 if mask is not None else 0
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if mask is None:
        return head + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    """The payload of a close frame."""
    return b"" if code is None else struct.pack("!H", code) + reason


@attrs.frozen
class ServerFrame:
    """One frame from the server (servers never mask)."""

    opcode: int
    payload: bytes
    fin: bool

    @property
    def close_code(self) -> int | None:
        """The status code of a close frame."""
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code


async def read_frame(reader: asyncio.StreamReader) -> ServerFrame:
    """The next server frame; EOFError at a clean end of stream."""
    try:
        first, second = await reader.readexactly(2)
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise WireError("frame header cut") from None
        raise EOFError from None
    if second & 0x80:
        raise WireError("server frame is masked")
    length = second & 0x7F
    try:
        if length == 126:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await reader.readexactly(8))
        if length > 64 << 20:
            raise WireError(f"server frame of {length} bytes")
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise WireError("frame cut") from None
    return ServerFrame(first & 0x0F, payload, bool(first & 0x80))


# --- the gateway process through /proc ------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident set size (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _socket_ports(pid: int) -> dict[str, tuple[int, int, str]]:
    """inode -> (local port, remote port, state) for the process's TCP sockets."""
    found: dict[str, tuple[int, int, str]] = {}
    for name in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{name}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            found[inode] = (
                int(local.rsplit(":", 1)[1], 16),
                int(remote.rsplit(":", 1)[1], 16),
                state,
            )
    return found


@attrs.frozen
class FdCensus:
    """The process's open file descriptors, by kind."""

    total: int
    #: TCP connections to the given upstream port (the provider's connection pool).
    upstream: int
    #: Accepted client connections on the gateway's port (listening socket excluded).
    clients: int
    #: ``fd -> target`` of every descriptor, for the report.
    targets: dict[int, str] = attrs.field(eq=False, repr=False)

    @property
    def own(self) -> int:
        """Descriptors that must come back to their baseline (pool excluded)."""
        return self.total - self.upstream


def fd_census(pid: int, *, gateway_port: int, upstream_ports: tuple[int, ...]) -> FdCensus:
    """Count /proc/<pid>/fd, telling pool and client sockets apart."""
    targets: dict[int, str] = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue  # closed meanwhile
    ports = _socket_ports(pid)
    upstream = clients = 0
    for target in targets.values():
        if not target.startswith("socket:["):
            continue
        local, remote, state = ports.get(target[8:-1], (0, 0, ""))
        if remote in upstream_ports:
            upstream += 1
        elif local == gateway_port and state != "0A":  # 0A: LISTEN
            clients += 1
    return FdCensus(len(targets), upstream, clients, targets)


def describe_fds(census: FdCensus, pid: int) -> list[str]:
    """One line per descriptor, with the ports of TCP sockets."""
    ports = _socket_ports(pid)
    lines = []
    for fd, target in sorted(census.targets.items()):
        if target.startswith("socket:["):
            local, remote, state = ports.get(target[8:-1], (0, 0, "?"))
            target += f" local:{local} remote:{remote} state:{state}"
        lines.append(f"{fd} -> {target}")
    return lines


def describe_client_frames(data: bytes, limit: int = 100) -> list[str]:
    """Our own frames, unmasked and shortened, for a readable report."""
    out = []
    names = {0: "cont", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
    while len(data) >= 2:
        first, second = data[0], data[1]
        length, at = second & 0x7F, 2
        if length == 126:
            length, at = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            length, at = struct.unpack("!Q", data[2:10])[0], 10
        mask = data[at : at + 4] if second & 0x80 else b""
        at += len(mask)
        payload = data[at : at + length]
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        flags = ("" if first & 0x80 else " fin=0") + (
            f" rsv={(first >> 4) & 7}" if first & 0x70 else ""
        )
        flags += "" if mask else " unmasked"
        opcode = names.get(first & 0x0F, f"op{first & 0x0F}")
        shown = payload[:limit]
        more = f"...({length} bytes)" if length > limit else ""
        out.append(f"{opcode}{flags} {shown!r}{more}")
        data = data[at + length :]
    return out
