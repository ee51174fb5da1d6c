"""The real ``twistd -n openclaw --workers 2``: one port served by two worker
processes, a killed worker restarted, SIGTERM draining in-flight streams and
exiting 0, and the refusal of several workers on the file store.

Which worker accepted a connection is read from ``/proc`` (the socket inode of
the server side of our connection, found among each worker's descriptors), so
the product needs no test-only header.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from twisted.trial.unittest import SynchronousTestCase

from openclaw.workers import UNSAFE_FILE_STORE_ENV
from tests.gateway_process import TOKEN, VENV_BIN, GatewayProcess, write_config

T = TypeVar("T")

RELOADED_TOKEN = "reloaded-token-0123456789abcdef0123"
UNRELOADED_TOKEN = "unreloaded-token-0123456789abcdef01"


def poll(check: Callable[[], T | None], timeout: float = 30.0, what: str = "condition") -> T:
    """Call ``check`` until it returns a value other than None (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def children(pid: int) -> list[int]:
    """The pids of a process's children (its workers)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except FileNotFoundError:
        return []


def server_inode(server_port: int, client_port: int) -> int | None:
    """The inode of the accepted socket of our connection (server side), from /proc/net/tcp."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if local_port == server_port and remote_port == client_port and fields[9] != "0":
            return int(fields[9])
    return None


def owner_of(inode: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the socket with this inode."""
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


def get(port: int, path: str) -> tuple[int, bytes]:
    """One request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def chat(port: int, text: str) -> tuple[int, dict[str, object]]:
    """A non-streaming chat completion."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = {"model": "openclaw/main", "messages": [{"role": "user", "content": text}]}
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _ready_on(conn: http.client.HTTPConnection) -> bool | None:
    """True when ``/readyz`` on this keep-alive connection answers 200 ``ready``."""
    conn.request("GET", "/readyz")
    response = conn.getresponse()
    status = json.loads(response.read())["status"]
    return True if response.status == 200 and status == "ready" else None


class WorkersProcessTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.tmp = Path(self.mktemp())
        self.state = self.tmp / "state"
        self.state.mkdir(parents=True)
        # Slow enough tokens that a stream is still running when SIGTERM comes.
        self.config = write_config(
            self.tmp, {"models": {"providers": {"demo": {"api": "demo", "delayMs": 40}}}}
        )
        # The supervisor's tests run on the file store: lift the refusal (sessions are
        # not what is tested here).
        os.environ[UNSAFE_FILE_STORE_ENV] = "1"
        self.addCleanup(os.environ.pop, UNSAFE_FILE_STORE_ENV, None)

    def _start(self, workers: int = 2) -> GatewayProcess:
        gateway = GatewayProcess(self.config, self.state, extra_args=("--workers", str(workers)))
        self.addCleanup(gateway.ensure_stopped)
        gateway.wait_for_output(rf"listening on 127\.0\.0\.1:\d+ with {workers} workers")
        # "group ready" is on its way to every worker: poll until one says so.
        poll(lambda: True if get(gateway.port, "/readyz")[0] == 200 else None, what="ready")
        return gateway

    def _workers(self, gateway: GatewayProcess, count: int = 2) -> list[int]:
        def found() -> list[int] | None:
            pids = children(gateway.process.pid)
            return pids if len(pids) == count else None

        return poll(found, what=f"{count} workers")

    def _owner(self, server_port: int, client_port: int, pids: list[int]) -> int:
        """The worker that accepted our connection from ``client_port``."""
        inode = poll(lambda: server_inode(server_port, client_port), what="socket")
        return poll(lambda: owner_of(inode, pids), what="owner")

    def test_both_workers_answer_on_one_port(self) -> None:
        """Connections to the one port are accepted by both worker processes, and
        ``/readyz`` is 200 on either once the group is up; each tuned its collector."""
        gateway = self._start()
        pids = self._workers(gateway)
        seen: set[int] = set()
        held: list[http.client.HTTPConnection] = []
        try:
            for _ in range(300):
                conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
                held.append(conn)  # keep it open: its server socket stays in /proc
                # "group ready" may still be on its way to this worker: ask again on
                # the same connection (the same worker) until it says so.
                poll(functools.partial(_ready_on, conn), what="this worker ready")
                assert conn.sock is not None
                seen.add(self._owner(gateway.port, conn.sock.getsockname()[1], pids))
                if seen == set(pids):
                    break
        finally:
            for conn in held:
                conn.close()
        self.assertEqual(seen, set(pids))
        # Each worker tuned its own cycle collector (openclaw.core.gc_tuning).
        for index in (1, 2):
            gateway.wait_for_output(rf"\[worker-{index} [^\]]*\] cycle collector tuned")
        status, reply = chat(gateway.port, "hello workers")
        self.assertEqual(status, 200, reply)
        self.assertEqual(gateway.stop(), 0)

    def test_killed_worker_restarted(self) -> None:
        """A worker killed with SIGKILL is logged and replaced by a new process; the
        group keeps answering and reports ready."""
        gateway = self._start()
        pids = self._workers(gateway)
        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        gateway.wait_for_output(rf"worker \d \(pid {victim}\) died \(signal 9\)")

        def replaced() -> list[int] | None:
            now = children(gateway.process.pid)
            return now if len(now) == 2 and victim not in now else None

        [new] = set(poll(replaced, what="a replacement worker")) - set(pids)
        gateway.wait_for_output(rf"worker \d started \(pid {new}\)")
        gateway.wait_for_output(rf"worker \d ready \(pid {new}\)")
        poll(lambda: True if get(gateway.port, "/readyz")[0] == 200 else None, what="ready")
        status, reply = chat(gateway.port, "still there?")
        self.assertEqual(status, 200, reply)
        self.assertEqual(gateway.stop(), 0)

    def _status_on(self, gateway: GatewayProcess, pid: int, token: str) -> int:
        """``GET /v1/models`` with ``token`` on a connection worker ``pid`` accepted."""
        for _ in range(500):
            conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
            try:
                conn.connect()
                assert conn.sock is not None
                client_port = conn.sock.getsockname()[1]
                if self._owner(gateway.port, client_port, [*children(gateway.process.pid)]) != pid:
                    continue
                conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {token}"})
                response = conn.getresponse()
                response.read()
                return response.status
            finally:
                conn.close()
        raise AssertionError(f"no connection reached worker {pid}")

    def _replace(self, gateway: GatewayProcess, victim: int) -> int:
        """SIGKILL one worker; the pid of the worker started in its place, once ready."""
        before = children(gateway.process.pid)
        os.kill(victim, signal.SIGKILL)

        def replaced() -> list[int] | None:
            now = children(gateway.process.pid)
            return now if len(now) == 2 and victim not in now else None

        [new] = set(poll(replaced, what="a replacement worker")) - set(before)
        gateway.wait_for_output(rf"worker \d ready \(pid {new}\)")
        return new

    def _count(self, gateway: GatewayProcess, text: str, count: int) -> None:
        deadline = time.monotonic() + 30
        while gateway.text.count(text) < count:
            # typing note: the helper's line reader, to count lines (not just find one).
            self.assertIsNotNone(gateway._read_line(deadline), gateway.text)

    def test_restarted_worker_runs_the_groups_config_not_the_file(self) -> None:
        """A worker restarted after a crash runs what its siblings run: the last
        reload they accepted, not a valid edit no reload has taken (that would split
        the tokens between workers), nor a refused one (that would crash-loop)."""
        gateway = self._start()
        first, second = self._workers(gateway)
        document = json.loads(self.config.read_text())
        document["gateway"]["auth"]["token"] = RELOADED_TOKEN
        self.config.write_text(json.dumps(document))
        gateway.process.send_signal(signal.SIGHUP)
        self._count(gateway, "config reloaded from", 2)
        gateway.wait_for_output("accepted a reloaded config")
        # A valid edit on disk that no reload took.
        document["gateway"]["auth"]["token"] = UNRELOADED_TOKEN
        self.config.write_text(json.dumps(document))
        new = self._replace(gateway, first)
        gateway.wait_for_output(r"\[worker-\d [^\]]*\] worker \d: running the group's reloaded")
        self.assertEqual(self._status_on(gateway, new, RELOADED_TOKEN), 200)
        self.assertEqual(self._status_on(gateway, new, UNRELOADED_TOKEN), 401)
        self.assertEqual(self._status_on(gateway, new, TOKEN), 401)
        # A refused edit: both workers keep their config, and so does a restarted one.
        self.config.write_text("{ broken")
        gateway.process.send_signal(signal.SIGHUP)
        self._count(gateway, "config reload refused", 2)
        newer = self._replace(gateway, second)
        self.assertEqual(self._status_on(gateway, newer, RELOADED_TOKEN), 200)
        self.assertNotIn("cannot start", gateway.text)
        self.assertIsNone(re.search(r"worker \d: .*invalid JSON5", gateway.text))
        self.assertEqual(gateway.stop(), 0)

    def test_sigterm_drains_and_exits_0(self) -> None:
        """SIGTERM to the parent lets an in-flight stream finish with ``[DONE]``, stops
        both workers and exits 0."""
        gateway = self._start()
        pids = self._workers(gateway)
        body = json.dumps(
            {
                "model": "openclaw/main",
                "stream": True,
                "messages": [{"role": "user", "content": "a b c d e f g h i j k l m n o p"}],
            }
        ).encode()
        sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
        self.addCleanup(sock.close)
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"data: " not in received:
            chunk = sock.recv(65536)
            self.assertTrue(chunk, received)
            received += chunk
        gateway.process.send_signal(signal.SIGTERM)
        while chunk := sock.recv(65536):
            received += chunk
        self.assertIn(b"data: [DONE]", received)
        self.assertEqual(gateway.stop(), 0)
        self.assertIn("all workers stopped", gateway.text)
        for pid in pids:
            self.assertRaises(ProcessLookupError, os.kill, pid, 0)

    def test_workers_stop_when_parent_killed(self) -> None:
        """If the supervisor is SIGKILLed its workers notice the closed control pipe
        and exit instead of serving on as orphans."""
        gateway = self._start()
        pids = self._workers(gateway)
        gateway.kill()

        def gone() -> bool | None:
            for pid in pids:
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text()
                except FileNotFoundError:
                    continue
                if stat.rsplit(")", 1)[1].split()[0] != "Z":  # a zombie has exited
                    return None
            return True

        poll(gone, what="the orphaned workers to exit")

    def test_unix_listener(self) -> None:
        """Workers share a UNIX socket too; on stop no worker trips over the socket
        file (the parent removes it once) and the group exits 0."""
        short = Path(tempfile.mkdtemp(prefix="oc-"))  # socket paths are short
        self.addCleanup(shutil.rmtree, short, True)
        path = short / "gw.sock"
        log = self.tmp / "unix.log"
        env = {**os.environ, "OPENCLAW_STATE_DIR": str(self.state), "HOME": str(self.state)}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(VENV_BIN / "twistd"),
                    "--nodaemon",
                    "--pidfile=",
                    "openclaw",
                    "--config",
                    str(self.config),
                    "--workers",
                    "2",
                    "--listen",
                    f"unix:{path}",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def kill_if_running() -> None:
            if process.poll() is None:
                process.kill()
                process.wait()

        self.addCleanup(kill_if_running)

        def ready() -> bool | None:
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(10)
                    sock.connect(str(path))
                    sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    answer = b""
                    while chunk := sock.recv(65536):
                        answer += chunk
            except OSError:
                return None
            return True if answer.startswith(b"HTTP/1.1 200") else None

        poll(ready, timeout=60, what="ready on the UNIX socket")
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(timeout=60), 0)
        text = log.read_text()
        self.assertIn(f"listening on {path} with 2 workers", text)
        self.assertNotIn("Traceback", text)
        self.assertNotIn("Unhandled", text)
        self.assertFalse(path.exists())

    def test_port_in_use(self) -> None:
        """A port that cannot be bound stops the supervisor at once: exit 1, one line,
        no worker started."""
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "OPENCLAW_STATE_DIR": str(self.state), "HOME": str(self.state)}
        result = subprocess.run(
            [
                str(VENV_BIN / "twistd"),
                "--nodaemon",
                "--pidfile=",
                "openclaw",
                "--config",
                str(self.config),
                "--workers",
                "2",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.assertEqual(result.returncode, 1)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn(f"cannot listen on 127.0.0.1:{port}", lines[0])
        self.assertNotIn("worker 1 started", result.stdout)

    def test_file_store_refused(self) -> None:
        """Without a shared session store, ``--workers 2`` exits 1 with one line that
        names session.store "redis"."""
        os.environ.pop(UNSAFE_FILE_STORE_ENV, None)
        env = {**os.environ, "OPENCLAW_STATE_DIR": str(self.state), "HOME": str(self.state)}
        result = subprocess.run(
            [
                str(VENV_BIN / "twistd"),
                "--nodaemon",
                "--pidfile=",
                "openclaw",
                "--config",
                str(self.config),
                "--workers",
                "2",
                "--listen",
                "tcp:0:interface=127.0.0.1",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.assertEqual(result.returncode, 1)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn('session.store: "redis"', lines[0])
