"""Random ids (session ids, run ids, transcript entry ids) from buffered OS randomness.

``uuid.uuid4()`` costs a syscall per id; the gateway makes several per
request, so randomness is fetched 4 KiB at a time and sliced.
"""

from __future__ import annotations

import os


class _RandomBytes:
    """OS randomness fetched 4 KiB at a time: ids cost a slice, not a syscall.

    Reactor thread only. A forked child starts with a fresh buffer.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._buf = b""
        self._pos = 0
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        """Forget the buffered bytes (a fork must not repeat its parent's ids)."""
        self._buf = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        """``n`` random bytes (``n`` at most the buffer size)."""
        pos = self._pos
        if pos + n > len(self._buf):
            self._buf = os.urandom(self._size)
            pos = 0
        self._pos = pos + n
        return self._buf[pos : pos + n]


_RANDOM = _RandomBytes()


def random_uuid4() -> str:
    """``str(uuid.uuid4())`` from buffered OS randomness (reactor thread only)."""
    raw = bytearray(_RANDOM.take(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def random_hex(nbytes: int) -> str:
    """``2 * nbytes`` random hex digits (request ids; ``uuid4().hex`` costs a syscall)."""
    return _RANDOM.take(nbytes).hex()


def short_id() -> str:
    """8 hex digits (a transcript entry id, as OpenClaw writes them)."""
    return _RANDOM.take(4).hex()
