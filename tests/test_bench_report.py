"""The benchmark's wrk scripts, gateway config, aggregation and verdicts."""

from __future__ import annotations

import json
import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from bench import run, scenarios, wrk
from bench.procstat import Usage
from openclaw.config import load_config, startup_problems

WRK_OUTPUT = (
    "Running 1s test @ http://127.0.0.1:1/v1/chat/completions\n"
    'BENCHJSON {"requests":1000,"duration_us":2000000,"bytes":5000,"connect_errors":0,'
    '"read_errors":0,"write_errors":0,"status_errors":10,"timeouts":0,'
    '"p50_us":250,"p90_us":400,"p99_us":900,"mean_us":280.5,"max_us":5000}\n'
)


class WrkScriptTests(SynchronousTestCase):
    def test_plain_body_and_headers(self) -> None:
        """The script POSTs the body verbatim with the headers, and reports as JSON."""
        script = wrk.lua_script({"model": "m", "x": "a]===]b"}, {"Authorization": "Bearer t"})
        self.assertIn('wrk.method = "POST"', script)
        self.assertIn("wrk.headers[ [===[Authorization]===] ] = [===[Bearer t]===]", script)
        # A body containing the long-bracket closer gets a longer bracket.
        self.assertIn('wrk.body = [====[{"model":"m","x":"a]===]b"}]====]', script)
        self.assertIn("BENCHJSON", script)
        self.assertNotIn("request = function", script)

    def test_users_spread(self) -> None:
        """With users, each request formats a user number into the body; '%' is escaped."""
        script = wrk.lua_script({"model": "m", "p": "100%"}, {}, users=1000)
        self.assertIn('"user":"bench-user-%d"', script)
        self.assertIn('"p":"100%%"', script)
        self.assertIn("counter % 1000", script)

    def test_command_and_output(self) -> None:
        """wrk's command line, and its BENCHJSON line parsed with rates and errors."""
        cmd = wrk.wrk_command("wrk", "http://x/", "s.lua", connections=16, duration=4.2)
        self.assertEqual(
            cmd, ["wrk", "-t1", "-c16", "-d4s", "--timeout=10s", "-s", "s.lua", "http://x/"]
        )
        data = wrk.parse_output(WRK_OUTPUT)
        self.assertEqual(data["ok_requests"], 990)
        self.assertEqual(data["rps"], 495.0)
        self.assertEqual(data["errors"], 10)
        with self.assertRaises(ValueError):
            wrk.parse_output("no summary here")


class GatewayConfigTests(SynchronousTestCase):
    def test_config_loads_and_can_start(self) -> None:
        """The benchmark's gateway config passes the gateway's own loader and
        start-up checks: one agent per profile, the fake provider, token auth."""
        profiles = list(scenarios.Durations().profiles())
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "gateway.json5")
            run.gateway_config(12345, profiles, path)
            loaded = load_config(path, env={"HOME": tmp, "OPENCLAW_STATE_DIR": tmp})
        config = loaded.config
        self.assertEqual(startup_problems(config), [])
        self.assertTrue(config.gateway.http.chat_completions.enabled)
        self.assertEqual([a.id for a in config.agents.list], profiles)
        provider = config.models.providers["fake"]
        self.assertEqual(provider.base_url, "http://127.0.0.1:12345/v1")


def _record(
    scenario: str, variant: str, target: str, round_no: int, **metrics: float
) -> scenarios.Record:
    usage = {"gateway": Usage(cpu_s=1.0 * round_no, rss_kb=1, peak_rss_kb=1)}
    return scenarios.Record(scenario, variant, target, round_no, dict(metrics), usage)


class ReportTests(SynchronousTestCase):
    def records(self) -> list[scenarios.Record]:
        """Two rounds of S1 c=16 and c=1 for R0, R1 and GW, and a not-run S7."""
        out = []
        for n in (1, 2):
            out += [
                _record("S1", "c=16", "R1", n, cpu_ms_per_req=0.2, rps=5000, p50_ms=3.0),
                _record("S1", "c=16", "GW", n, cpu_ms_per_req=0.4 + 0.2 * n, rps=1000 * n),
                _record("S1", "c=1", "R0", n, p50_ms=0.3),
                _record("S1", "c=1", "GW", n, p50_ms=0.8),
                _record("S8", "c=16 users=1000", "GW", n, rps=1200.0),
            ]
        out.append(scenarios.Record("S7", "100 runs", "GW", 1, not_run="not run: no ws yet"))
        return out

    def test_mean_and_spread(self) -> None:
        """Each figure is the mean of the rounds with (max - min) / mean as spread."""
        rows = run.summarize(self.records())
        gw = next(
            r
            for r in rows
            if r["scenario"] == "S1" and r["variant"] == "c=16" and r["target"] == "GW"
        )
        self.assertEqual(gw["rounds"], 2)
        cpu = gw["metrics"]["cpu_ms_per_req"]
        self.assertAlmostEqual(cpu["mean"], 0.7)
        self.assertAlmostEqual(cpu["spread"], 0.2 / 0.7)
        self.assertAlmostEqual(gw["cpu_s"]["gateway"], 1.5)

    def test_verdicts(self) -> None:
        """Targets met, missed (by how much) and not run (with why)."""
        verdicts = {
            v["target"]: v
            for v in run.evaluate(run.summarize(self.records()), scenarios.Durations())
        }
        cpu = verdicts["S1 gateway CPU/request <= 3x R1 at c=16"]
        self.assertAlmostEqual(cpu["value"], 3.5)
        self.assertEqual(cpu["verdict"], "missed by 0.500x")
        latency = verdicts["S1 added p50 latency over R0 at c=1 <= 1 ms"]
        self.assertAlmostEqual(latency["value"], 0.5)
        self.assertEqual(latency["verdict"], "met")
        s8 = verdicts["S8 throughput >= 80% of plain S1 (c=16)"]
        self.assertAlmostEqual(s8["value"], 80.0)
        self.assertEqual(s8["verdict"], "met")
        self.assertEqual(
            verdicts["S7 all 100 WebSocket runs complete"]["verdict"], "not run: no ws yet"
        )
        self.assertEqual(verdicts["S2 added TTFB p50 over R0 <= 2 ms"]["verdict"], "not run")

    def test_table(self) -> None:
        """The table shows means with spread, ratios to R0/R1, CPU seconds and not-run notes."""
        text = run.table(run.summarize(self.records()))
        self.assertIn("| scenario | metric | R0 | R1 | GW | GW/R0 | GW/R1 |", text)
        self.assertIn("| S1 c=16 | req/s |  | 5,000 ±0% | 1,500 ±33% |  | 0.30 |", text)
        self.assertIn("| S7 100 runs | runs complete |  |  | not run |", text)
        self.assertIn("- S7 100 runs GW: not run: no ws yet", text)
        self.assertIn("CPU s (server/upstream/load)", text)
        json.dumps(run.summarize(self.records()))  # the summary is JSON-ready

    def test_fmt(self) -> None:
        """About three significant digits; None is a dash."""
        self.assertEqual(
            [run.fmt(v) for v in (None, 0, 0.01234, 1.234, 12.34, 123.4, 12345.6)],
            ["-", "0", "0.012", "1.23", "12.3", "123", "12,346"],
        )
