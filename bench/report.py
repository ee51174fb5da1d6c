"""The benchmark's report: per-scenario summaries, the targets' verdicts and the tables.

Split from ``bench/run.py`` (which runs the processes and rounds); ``bench.run``
re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench import scenarios as sc

#: Metrics shown in the table, per scenario: (key, label, better: "high"/"low"/None).
TABLE: dict[str, list[tuple[str, str]]] = {
    "S1": [
        ("rps", "req/s"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("cpu_ms_per_req", "server CPU ms/req"),
    ],
    # bench/workers.py: S1 at c=16 with 1 and 2 gateway workers (issue 12).
    "S1W": [
        ("rps", "req/s"),
        ("cpu_ms_per_req", "server CPU ms/req"),
        ("busiest_worker_cpu_share", "busiest worker's CPU share"),
    ],
    "S8": [
        ("rps", "req/s"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("cpu_ms_per_req", "server CPU ms/req"),
    ],
    "S2": [
        ("chunks_per_s", "chunks/s"),
        ("ttfb_p50_ms", "TTFB p50 ms"),
        ("ttft_p50_ms", "first content p50 ms"),
        ("cpu_us_per_chunk", "server CPU us/chunk"),
    ],
    "S3": [
        ("complete", "streams complete"),
        ("rss_kb_per_stream", "RSS KB/open stream"),
        ("peak_rss_mb", "peak RSS MB"),
        ("ttft_p99_ms", "first content p99 ms"),
    ],
    "S4": [
        ("rss_growth_kb", "RSS growth KB"),
        ("client_read_mb", "client read MB"),
        ("upstream_sent_mb", "upstream sent MB"),
        ("upstream_pauses", "upstream paused"),
    ],
    "S5": [
        ("upstream_closed", "upstream closed"),
        ("still_open", "upstream still open"),
        ("close_p50_ms", "close p50 ms"),
        ("close_p99_ms", "close p99 ms"),
    ],
    "S6": [("rss_mb", "RSS MB")],
    "S7": [
        ("complete", "runs complete"),
        ("events_per_s", "events/s"),
        ("run_p50_ms", "run p50 ms"),
        ("cpu_ms_per_run", "server CPU ms/run"),
    ],
}
ORDER = ["S1", "S1W", "S8", "S2", "S3", "S4", "S5", "S6", "S7"]
TARGET_ORDER = ["R0", "R1", "GW", "LL", "OC"]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def summarize(records: Sequence[sc.Record]) -> list[dict[str, Any]]:
    """Per (scenario, variant, target): mean, min, max and spread of each metric."""
    groups: dict[tuple[str, str, str], list[sc.Record]] = {}
    for r in records:
        groups.setdefault((r.scenario, r.variant, r.target), []).append(r)
    rows = []
    for (scenario, variant, target), group in groups.items():
        run = [r for r in group if r.not_run is None]
        row: dict[str, Any] = {
            "scenario": scenario,
            "variant": variant,
            "target": target,
            "rounds": len(run),
            "not_run": None if run else group[0].not_run,
            "metrics": {},
            "cpu_s": {},
        }
        keys = {k for r in run for k, v in r.metrics.items() if isinstance(v, int | float)}
        for key in sorted(keys):
            values = [
                float(r.metrics[key])
                for r in run
                if isinstance(r.metrics.get(key), int | float)
                and not isinstance(r.metrics.get(key), bool)
            ]
            if not values:
                continue
            mean = _mean(values)
            spread = (max(values) - min(values)) / abs(mean) if mean else 0.0
            row["metrics"][key] = {
                "mean": mean,
                "min": min(values),
                "max": max(values),
                "spread": spread,
            }
        procs = {p for r in run for p in r.usage}
        for p in sorted(procs):
            row["cpu_s"][p] = _mean([r.usage[p].cpu_s for r in run if p in r.usage])
        rows.append(row)
    return rows


def _find(
    rows: Sequence[dict[str, Any]], scenario: str, variant: str | None, target: str
) -> dict[str, Any] | None:
    for row in rows:
        if (
            row["scenario"] == scenario
            and row["target"] == target
            and (variant is None or row["variant"] == variant)
        ):
            return row
    return None


def _metric(row: dict[str, Any] | None, key: str) -> float | None:
    if row is None or key not in row["metrics"]:
        return None
    value: float = row["metrics"][key]["mean"]
    return value


def fmt(value: float | None) -> str:
    """A figure with about three significant digits."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def evaluate(rows: Sequence[dict[str, Any]], durations: sc.Durations) -> list[dict[str, Any]]:
    """Each target of issue 6: the measured value, the limit, met or missed and by how much."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, le: bool, unit: str, why: str) -> None:
        if value is None:
            verdict = f"not run: {why}" if why else "not run"
        elif (value <= limit) if le else (value >= limit):
            verdict = "met"
        else:
            gap = value - limit if le else limit - value
            verdict = f"missed by {fmt(gap)}{unit}"
        out.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "unit": unit,
                "verdict": verdict,
            }
        )

    def why(scenario: str, variant: str | None = None) -> str:
        row = _find(rows, scenario, variant, "GW")
        return "" if row is None or row["not_run"] is None else str(row["not_run"])[9:]

    gw16 = _find(rows, "S1", "c=16", "GW")
    r116 = _find(rows, "S1", "c=16", "R1")
    g, r = _metric(gw16, "cpu_ms_per_req"), _metric(r116, "cpu_ms_per_req")
    add(
        "S1 gateway CPU/request <= 3x R1 at c=16",
        None if g is None or not r else g / r,
        3.0,
        True,
        "x",
        why("S1", "c=16"),
    )
    g, r = (
        _metric(_find(rows, "S1", "c=1", "GW"), "p50_ms"),
        _metric(_find(rows, "S1", "c=1", "R0"), "p50_ms"),
    )
    add(
        "S1 added p50 latency over R0 at c=1 <= 1 ms",
        None if g is None or r is None else g - r,
        1.0,
        True,
        " ms",
        why("S1", "c=1"),
    )
    g, r = (
        _metric(_find(rows, "S2", None, "GW"), "ttfb_p50_ms"),
        _metric(_find(rows, "S2", None, "R0"), "ttfb_p50_ms"),
    )
    add(
        "S2 added TTFB p50 over R0 <= 2 ms",
        None if g is None or r is None else g - r,
        2.0,
        True,
        " ms",
        why("S2"),
    )
    s3 = _find(rows, "S3", f"{durations.s3_streams} streams", "GW")
    complete = _metric(s3, "complete")
    add(
        f"S3 all {durations.s3_streams} streams complete",
        complete,
        float(durations.s3_streams),
        False,
        " streams",
        why("S3", f"{durations.s3_streams} streams"),
    )
    add(
        "S3 RSS per open stream <= 30 KB",
        _metric(s3, "rss_kb_per_stream"),
        30.0,
        True,
        " KB",
        why("S3", f"{durations.s3_streams} streams"),
    )
    add(
        "S4 RSS growth under a slow reader <= 2 MB",
        _metric(_find(rows, "S4", None, "GW"), "rss_growth_kb"),
        2048.0,
        True,
        " KB",
        why("S4"),
    )
    s5 = _find(rows, "S5", None, "GW")
    add(
        "S5 every upstream connection closed",
        _metric(s5, "upstream_closed"),
        float(durations.s5_streams),
        False,
        " connections",
        why("S5"),
    )
    add(
        "S5 upstream closed p99 <= 100 ms after the client left",
        _metric(s5, "close_p99_ms"),
        100.0,
        True,
        " ms",
        why("S5"),
    )
    add(
        "S6 RSS idle after start <= 60 MB",
        _metric(_find(rows, "S6", "after start", "GW"), "rss_mb"),
        60.0,
        True,
        " MB",
        why("S6", "after start"),
    )
    add(
        "S6 RSS after S1 <= 80 MB",
        _metric(_find(rows, "S6", "after S1", "GW"), "rss_mb"),
        80.0,
        True,
        " MB",
        why("S6", "after S1"),
    )
    add(
        f"S7 all {durations.s7_runs} WebSocket runs complete",
        _metric(_find(rows, "S7", None, "GW"), "complete"),
        float(durations.s7_runs),
        False,
        " runs",
        why("S7"),
    )
    s8 = _metric(_find(rows, "S8", None, "GW"), "rps")
    plain = _metric(gw16, "rps")
    add(
        "S8 throughput >= 80% of plain S1 (c=16)",
        None if s8 is None or not plain else 100.0 * s8 / plain,
        80.0,
        False,
        "%",
        why("S8"),
    )
    return out


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table (also readable in a terminal)."""
    present = [t for t in TARGET_ORDER if any(r["target"] == t for r in rows)]
    ratio_cols = [
        (t, ref)
        for t in ("GW", "LL", "OC")
        if t in present
        for ref in ("R0", "R1")
        if ref in present
    ]
    header = ["scenario", "metric", *present, *(f"{t}/{ref}" for t, ref in ratio_cols)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    seen: list[tuple[str, str]] = []
    for scenario in ORDER:
        for r in rows:
            pair = (r["scenario"], r["variant"])
            if r["scenario"] == scenario and pair not in seen:
                seen.append(pair)
    for scenario, variant in seen:
        by_target = {t: _find(rows, scenario, variant, t) for t in present}
        name = f"{scenario} {variant}"
        for key, label in TABLE.get(scenario, []):
            cells: list[str] = [name, label]
            for t in present:
                row = by_target[t]
                if row is None:
                    cells.append("")
                elif row["not_run"]:
                    cells.append("not run")
                elif key in row["metrics"]:
                    m = row["metrics"][key]
                    spread = f" ±{m['spread'] * 50:.0f}%" if row["rounds"] > 1 else ""
                    cells.append(fmt(m["mean"]) + spread)
                else:
                    cells.append("-")
            for t, ref in ratio_cols:
                a, b = _metric(by_target[t], key), _metric(by_target[ref], key)
                cells.append("" if a is None or not b else f"{a / b:.2f}")
            lines.append("| " + " | ".join(cells) + " |")
            name = ""
        # CPU seconds of each process (mean per round), one line per scenario.
        cpu_cells: list[str] = ["", "CPU s (server/upstream/load)"]
        for t in present:
            row = by_target[t]
            if row is None or row["not_run"] or not row["cpu_s"]:
                cpu_cells.append("")
                continue
            cpu = row["cpu_s"]
            server = {
                "R0": "upstream",
                "R1": "r1",
                "GW": "gateway",
                "LL": "litellm",
                "OC": "openclaw",
            }[t]
            parts = [fmt(cpu.get(server))]
            parts.append(fmt(cpu.get("upstream")) if server != "upstream" else "-")
            parts.append(fmt(cpu.get("wrk", cpu.get("client"))))
            cpu_cells.append("/".join(parts))
        cpu_cells += [""] * len(ratio_cols)
        if TABLE.get(scenario) and scenario != "S6":
            lines.append("| " + " | ".join(cpu_cells) + " |")
    notes = sorted(
        {
            f"{r['scenario']} {r['variant']} {r['target']}: {r['not_run']}"
            for r in rows
            if r["not_run"]
        }
    )
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


def targets_table(verdicts: Sequence[dict[str, Any]]) -> str:
    """The targets of issue 6 with the measured values."""
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    for v in verdicts:
        measured = "-" if v["value"] is None else f"{fmt(v['value'])}{v['unit']}"
        lines.append(f"| {v['target']} | {measured} | {v['verdict']} |")
    return "\n".join(lines)
