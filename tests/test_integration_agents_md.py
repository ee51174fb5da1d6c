"""A long ``AGENTS.md`` in the system prompt, in the real ``twistd openclaw``
process against the fake upstream.

As in OpenClaw (``trimAgentsBootstrapContent``), a file over
``bootstrapMaxChars`` keeps its head and tail and, between them, a policy
digest of its rule lines, so the rules in its middle still reach the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.threads import deferToThread

from openclaw.testing import FakeReply
from tests import integration_support as support

#: 400 lines of 80 characters, none of them a rule.
FILLER = [
    f"filler line {n:04d} lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do"
    for n in range(400)
]
NEVER_PUSH = "- NEVER push directly to the main branch"
RUN_TESTS = "- You must run the tests before any commit"


class LongAgentsFileTests(support.GatewayTestCase):
    """One gateway whose only agent uses the fake upstream (default budgets)."""

    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        return support.one_fake_agent(port)

    @property
    def workspace(self) -> Path:
        return self.gateway.directory / "state" / "workspace"

    async def test_rules_in_the_middle_reach_the_model(self) -> None:
        """A 32,000-character AGENTS.md whose two rules sit after line 200: the
        upstream's system prompt carries its first 9,000 and last 3,000
        characters, OpenClaw's marker and, in between, the policy digest with
        both rules; the file's part of the prompt stays within 20,000."""
        lines = [*FILLER[:200], NEVER_PUSH, RUN_TESTS, *FILLER[200:]]
        text = "\n".join(lines)
        self.workspace.mkdir(parents=True, exist_ok=True)
        (self.workspace / "AGENTS.md").write_text(text, encoding="utf-8")
        self.fake.enqueue(FakeReply(text="ok"))
        client = self.openai_client()
        await deferToThread(
            lambda: client.chat.completions.create(
                model="openclaw", messages=[{"role": "user", "content": "hi"}], user="rules"
            )
        )
        prompt = self.fake.requests[0].body["messages"][0]["content"]
        start = prompt.index(text[:9000])
        end = prompt.index(text[-3000:]) + 3000
        injected = prompt[start:end]
        self.assertLessEqual(len(injected), 20_000)
        head, rest = injected.split("\n[...truncated, read AGENTS.md for full content...]\n")
        self.assertEqual(head, text[:9000])
        digest, tail = rest[:-3001], rest[-3001:]
        self.assertEqual(tail, "\n" + text[-3000:])
        # Each rule comes with the prose line before it (none before the second).
        policy = f"{FILLER[199]}\n{NEVER_PUSH}\n{RUN_TESTS}"
        self.assertEqual(
            digest,
            f"[Policy digest from AGENTS.md]\n{policy}\n"
            f"…(truncated AGENTS.md: kept 9000+policy {len(policy)}+3000 chars of {len(text)})…",
        )
        self.assertIn("Some workspace files below were shortened to fit the prompt.", prompt)
