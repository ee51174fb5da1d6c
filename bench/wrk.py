"""Request/response load with ``wrk`` (Debian package ``wrk``).

``wrk`` is driven by a generated Lua script: the POST body and headers, an
optional ``request()`` that spreads a ``user`` field over N users (S8), and a
``done()`` that prints one ``BENCHJSON {...}`` line with the counts and the
latency percentiles, so nothing has to scrape wrk's human output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from bench.procstat import die_with_parent

_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
"""


def find_wrk() -> str | None:
    """The ``wrk`` executable on PATH, if any."""
    return shutil.which("wrk")


def _lua_string(text: str) -> str:
    level = "=" * 3
    while f"]{level}]" in text:
        level += "="
    return f"[{level}[{text}]{level}]"


def lua_script(
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    users: int | None = None,
) -> str:
    """A wrk script POSTing ``body`` as JSON; with ``users``, each request
    carries ``"user": "bench-user-<n % users>"``."""
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    for name, value in headers.items():
        lines.append(f"wrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}")
    if users is None:
        lines.append(f"wrk.body = {_lua_string(json.dumps(body, separators=(',', ':')))}")
    else:
        marked = dict(body, user="@@USER@@")
        text = json.dumps(marked, separators=(",", ":")).replace("%", "%%")
        template = text.replace("@@USER@@", "bench-user-%d")
        lines += [
            f"local template = {_lua_string(template)}",
            "local counter = 0",
            "request = function()",
            "  counter = counter + 1",
            f"  return wrk.format(nil, nil, nil, string.format(template, counter % {users}))",
            "end",
        ]
    return "\n".join(lines) + "\n" + _DONE


def wrk_command(
    wrk: str,
    url: str,
    script: str,
    *,
    connections: int,
    duration: float,
    threads: int = 1,
    timeout: float = 10.0,
) -> list[str]:
    """The command line of one wrk run (at least one connection per thread)."""
    threads = max(1, min(threads, connections))
    return [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={max(1, round(timeout))}s",
        "-s",
        script,
        url,
    ]


def parse_output(stdout: str) -> dict[str, Any]:
    """The ``BENCHJSON`` line of a wrk run, plus derived rates and errors."""
    for line in stdout.splitlines():
        if line.startswith("BENCHJSON "):
            data: dict[str, Any] = json.loads(line[len("BENCHJSON ") :])
            seconds = data["duration_us"] / 1e6
            errors = sum(
                data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors")
            )
            data["errors"] = errors
            data["ok_requests"] = max(0, data["requests"] - data["status_errors"])
            data["rps"] = data["ok_requests"] / seconds if seconds > 0 else 0.0
            return data
    raise ValueError("wrk printed no BENCHJSON line:\n" + stdout[-2000:])


def start(cmd: list[str]) -> subprocess.Popen[str]:
    """Start wrk (the caller meters its pid and waits)."""
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=die_with_parent,
    )
