"""The acceptance of issue 14 as a new user meets it: `make run`'s config
(conf/openclaw.json5, metrics on) in a real twistd; one chat completion moves
the request and token counters a Prometheus scrape sees."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.gateway_process import GatewayProcess

REPO = Path(__file__).resolve().parent.parent
DEV_TOKEN = "dev-token-change-me"


def scrape(base_url: str) -> dict[str, float]:
    request = urllib.request.Request(
        f"{base_url}/metrics", headers={"Authorization": f"Bearer {DEV_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.match(r"^(\S+?)(\{.*\})? (\S+)$", line)
        if match and not line.startswith("#"):
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def total(samples: dict[str, float], name: str, *fragments: str) -> float:
    return sum(
        value
        for key, value in samples.items()
        if key.split("{")[0] == name and all(f in key for f in fragments)
    )


class MakeRunMetricsTests(SynchronousTestCase):
    def test_one_completion_moves_request_and_token_counters(self) -> None:
        """Scrape, one chat completion on the demo model, scrape again: the
        completion's request counter and the token counters went up."""
        state = Path(self.mktemp()).resolve()
        state.mkdir()
        gateway = GatewayProcess(REPO / "conf" / "openclaw.json5", state)
        self.addCleanup(gateway.ensure_stopped)
        before = scrape(gateway.base_url)
        body = json.dumps({"model": "openclaw", "messages": [{"role": "user", "content": "hi"}]})
        request = urllib.request.Request(
            f"{gateway.base_url}/v1/chat/completions",
            data=body.encode(),
            headers={"Authorization": f"Bearer {DEV_TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            self.assertEqual(answer.status, 200)
        after = scrape(gateway.base_url)
        chat = ('route="/v1/chat/completions"', 'status="200"')
        self.assertEqual(total(before, "openclaw_http_requests_total", *chat), 0)
        self.assertEqual(total(after, "openclaw_http_requests_total", *chat), 1)
        for direction in ("input", "output"):
            moved = total(after, "openclaw_model_tokens_total", f'direction="{direction}"')
            self.assertGreater(moved, total(before, "openclaw_model_tokens_total"), direction)
        self.assertEqual(total(after, "openclaw_runs_total", 'outcome="ok"'), 1)
