"""The fuzz run's findings, tally and report, and the scan of the gateway's log."""

from __future__ import annotations

import collections
from pathlib import Path

import attrs

from fuzz.cases import Case, HttpCase, WsCase
from fuzz.wire import FdCensus, describe_client_frames

#: The provider connection pool's per-host limit (openclaw.agents.providers.http).
POOL_LIMIT = 16


@attrs.define
class Finding:
    """Something that misses a target, with the request that caused it."""

    what: str
    case: Case
    detail: str

    def render(self) -> str:
        data = self.case.data if isinstance(self.case, HttpCase) else self.case.handshake
        shown = data[:600]
        more = f" ... ({len(data)} bytes)" if len(data) > 600 else ""
        text = f"- {self.what} [{self.case.kind}]: {self.detail}\n  request: {shown!r}{more}"
        if isinstance(self.case, WsCase):
            for frame in self.case.frames:
                for line in describe_client_frames(frame):
                    text += f"\n  frame: {line}"
        return text


@attrs.define
class Tally:
    """Counts of everything the fuzz run saw."""

    http_requests: int = 0
    ws_frames: int = 0
    statuses: collections.Counter[str] = attrs.Factory(collections.Counter)
    kinds: collections.Counter[str] = attrs.Factory(collections.Counter)
    ws_closes: collections.Counter[str] = attrs.Factory(collections.Counter)
    mapped_5xx: collections.Counter[str] = attrs.Factory(collections.Counter)
    stream_errors: collections.Counter[str] = attrs.Factory(collections.Counter)
    notes: collections.Counter[str] = attrs.Factory(collections.Counter)
    #: The first request behind each note.
    note_examples: dict[str, bytes] = attrs.Factory(dict)
    unmapped: list[Finding] = attrs.Factory(list)
    hangs: list[Finding] = attrs.Factory(list)
    leaks: list[Finding] = attrs.Factory(list)
    anomalies: list[Finding] = attrs.Factory(list)


def report(
    tally: Tally,
    *,
    seed: int,
    elapsed: float,
    rss: tuple[int, int],
    fds: tuple[FdCensus, FdCensus],
    alive: bool,
    health: int | None,
    log_problems: dict[str, list[str]],
    max_rss_growth_mb: float,
    fd_lines: list[str],
    examples: int = 2,
) -> tuple[str, bool]:
    """The text report and whether every target was met."""
    before, after = fds
    rss_growth_mb = (rss[1] - rss[0]) / 1024
    targets = {
        "5xx other than mapped upstream failures: 0": not tally.unmapped,
        "hung requests: 0": not tally.hangs,
        "process alive and /healthz 200": alive and health == 200,
        "open fds back to baseline (pool apart)": after.own == before.own
        and after.upstream <= POOL_LIMIT,
        f"RSS growth <= {max_rss_growth_mb:g} MiB": rss_growth_mb <= max_rss_growth_mb,
        "secrets in responses or the log: 0": not tally.leaks and not log_problems["secrets"],
        "tracebacks in the log: 0": not log_problems["tracebacks"],
    }
    out = [
        f"fuzz run: seed {seed}, {elapsed:.1f}s",
        f"sent: {tally.http_requests} HTTP requests, {tally.ws_frames} WebSocket frames "
        f"(upgrades included) = {tally.http_requests + tally.ws_frames}",
        "cases: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.kinds.items())),
        "answers by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.statuses.items())),
        "WebSocket closes by code: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(tally.ws_closes.items())),
        "mapped upstream 5xx: "
        + (", ".join(f"{k}: {v}" for k, v in sorted(tally.mapped_5xx.items())) or "none"),
        "in-stream error frames: "
        + (", ".join(f"{k}: {v}" for k, v in sorted(tally.stream_errors.items())) or "none"),
        "notes (not targets): "
        + (", ".join(f"{k}: {v}" for k, v in sorted(tally.notes.items())) or "none"),
        *(f"  first '{k}': {v!r}" for k, v in sorted(tally.note_examples.items())),
        f"RSS: {rss[0] / 1024:.1f} MiB before, {rss[1] / 1024:.1f} MiB after "
        f"({rss_growth_mb:+.1f} MiB)",
        f"open fds: {before.total} before, {after.total} after "
        f"(provider pool sockets {before.upstream} -> {after.upstream}, "
        f"client sockets {before.clients} -> {after.clients})",
        f"process: {'alive' if alive else 'EXITED'}, /healthz {health}",
        f"log: {len(log_problems['tracebacks'])} tracebacks, "
        f"{len(log_problems['secrets'])} lines with secrets",
    ]
    for title, findings in (
        ("UNMAPPED 5xx", tally.unmapped),
        ("HANGS", tally.hangs),
        ("LEAKED SECRETS", tally.leaks),
        ("anomalies (not targets)", tally.anomalies),
    ):
        if findings:
            out.append(f"{title}: {len(findings)}")
            groups: collections.Counter[tuple[str, str]] = collections.Counter(
                (f.what, f.case.kind) for f in findings
            )
            shown: collections.Counter[tuple[str, str]] = collections.Counter()
            for finding in findings:
                key = (finding.what, finding.case.kind)
                shown[key] += 1
                if shown[key] == 1:
                    out.append(f"* {key[0]} [{key[1]}]: {groups[key]} times; first examples:")
                if examples <= 0 or shown[key] <= examples:
                    out.append(finding.render())
    if log_problems["secrets"]:
        out.append("log lines with a secret (first 3):")
        out.extend("  " + line[:300] for line in log_problems["secrets"][:3])
    if log_problems["tracebacks"]:
        out.append("tracebacks in the gateway log (first of each kind):")
        out.extend(log_problems["tracebacks"][:5])
    if not targets["open fds back to baseline (pool apart)"]:
        out.append("descriptors after the run:")
        out.extend("  " + line for line in fd_lines)
    out.append("targets:")
    out.extend(f"  [{'ok' if met else 'MISSED'}] {name}" for name, met in targets.items())
    return "\n".join(out), all(targets.values())


def scan_log(path: Path, secrets: tuple[str, ...]) -> dict[str, list[str]]:
    """Tracebacks (the first of each distinct exception) and lines carrying a secret."""
    lines = path.read_text("utf-8", "replace").splitlines()
    found = [line for line in lines if any(s in line for s in secrets)]
    tracebacks: dict[str, str] = {}
    for index, line in enumerate(lines):
        if not line.strip().startswith("Traceback (most recent call last)"):
            continue
        block = []
        for follow in lines[index + 1 :]:
            if not follow.startswith(("\t", " ")) or not follow.strip():
                break
            block.append(follow)
        exception = block[-1].strip() if block else "?"
        context = lines[index - 1] if index else ""
        shown = [context, line, *block[:6], *(["..."] if len(block) > 7 else []), *block[-1:]]
        tracebacks.setdefault(exception, "\n".join("  " + x.strip()[:300] for x in shown))
    return {"secrets": found, "tracebacks": list(tracebacks.values())}
