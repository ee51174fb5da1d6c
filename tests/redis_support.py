"""A real ``redis-server`` for the Redis backend's tests.

Started on a unix socket in a temporary directory (or a free TCP port) with
persistence off (``--save "" --appendonly no``); readiness is polled with a
bounded deadline (``PING`` over a plain socket), never slept for. It can be
stopped and started again on the same address (the fault tests).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    """A TCP port nobody listens on now (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    """Yield to the reactor until ``check()`` is true (a bounded poll, never a
    sleep standing in for an event)."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    waited = 0.0
    while not check():
        if waited > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.005, lambda: None)
        waited += 0.005


class RedisServer:
    """One ``redis-server`` process: :meth:`start`, :meth:`stop`, :meth:`start` again."""

    def __init__(
        self, *, tcp: bool = False, password: str | None = None, persist: bool = False
    ) -> None:
        """:param persist: ``appendonly yes`` + ``appendfsync always`` (what the
        deployment doc recommends), so data survives a restart."""
        self.directory = Path(tempfile.mkdtemp(prefix="oc-redis-"))
        self.socket_path = self.directory / "redis.sock"
        self.port = free_port() if tcp else 0
        self.password = password
        self.persist = persist
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.port:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        query = f"&password={self.password}" if self.password else ""
        return f"unix://{self.socket_path}?db=0{query}"

    def start(self, timeout: float = 10.0) -> None:
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.persist else "no",
            "--appendfsync",
            "always",
            "--dir",
            str(self.directory),
            # A primary sends a replica its data at once, not after waiting 5 s
            # (the default) for more replicas to join the same transfer.
            "--repl-diskless-sync-delay",
            "0",
        ]
        if not self.port:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory
        )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.01)

    def _connect(self) -> socket.socket:
        if self.port:
            return socket.create_connection(("127.0.0.1", self.port), timeout=2)
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(str(self.socket_path))
        return s

    def command(self, *args: str) -> bytes:
        """One command over a fresh blocking connection; the raw RESP reply."""
        with self._connect() as s:
            out = b""
            if self.password:
                out += _resp("AUTH", self.password)
            out += _resp(*args)
            s.sendall(out)
            data = b""
            want = 2 if self.password else 1
            while data.count(b"\r\n") < want:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.split(b"\r\n", 1)[1] if self.password else data

    def ping(self) -> bool:
        try:
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def set_password(self, password: str | None) -> None:
        """Change ``requirepass`` of the running server (None: none), and the
        password :attr:`url` carries."""
        self.command("CONFIG", "SET", "requirepass", password or "")
        self.password = password


class SharedRedisServer:
    """Mixin for a TestCase whose tests share one :class:`RedisServer`, started
    for the class (each test flushes what it needs)."""

    server: RedisServer

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = RedisServer()
        cls.server.start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.cleanup()


def _resp(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)
