"""Small context windows in the real ``twistd openclaw`` process: tool output
that would not fit, an upstream that refuses an over-long request, and a
summary request that is itself too long.

The fake upstream refuses any request body over ``max_request_bytes`` with a
400 ``context_length_exceeded``, as a local model server with a small window
does; everything the gateway sent is in ``fake.requests``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet.threads import deferToThread

from openclaw.testing import (
    FakeReply,
    FakeToolCall,
    ReceivedRequest,
    ToolConversation,
    request_tokens,
)
from tests import integration_support as support

#: The ``small`` model's contextWindow (tokens), and the bytes its fake takes.
WINDOW = 8_000
LIMIT = WINDOW * 4
#: The summariser's system prompt starts so.
SUMMARISER = "You compress an AI assistant's conversation history"
OMITTED = "characters of tool output omitted"


#: 40 common hanzi: each costs a real tokenizer about a token.
HANZI = "我们今天在这里读一个很长的中文文件然后看看模型会不会因为上下文太长而失败请继续"


#: Cyrillic counts one character each in the estimate (as in OpenClaw); the
#: fake's tokenizer counts each as a token, four times the estimate.
CYRILLIC = "Сегодня мы читаем очень длинный русский файл и смотрим что будет"


def read(call_id: str, path: str = "big.txt", **arguments: Any) -> FakeToolCall:
    return FakeToolCall("read", json.dumps({"path": path, **arguments}), id=call_id)


def tool_messages(request: ReceivedRequest) -> list[str]:
    return [m["content"] for m in request.body["messages"] if m["role"] == "tool"]


def is_summary(request: ReceivedRequest) -> bool:
    first = request.body["messages"][0]
    return first["role"] == "system" and str(first["content"]).startswith(SUMMARISER)


class ContextOverflowTests(support.GatewayTestCase):
    """``main`` uses a model with an 8K window; ``nocw`` one without a
    configured window (so only the upstream's refusal tells)."""

    @classmethod
    def gateway_config(cls, port: int) -> dict[str, Any]:
        models = [{"id": "small", "contextWindow": WINDOW}, {"id": "plain"}]
        return {
            "models": {"providers": {"fake": support.openai_provider(port, models=models)}},
            "agents": {
                # The memory flush (tests/test_memory_flush.py) is off: these
                # tests count and size the turn's own requests; a failed turn
                # fails at once (no same-model retry).
                "defaults": {
                    "compaction": {
                        "reserveTokens": 1000,
                        "keepRecentTokens": 1000,
                        "memoryFlush": {"enabled": False},
                    },
                    "modelRetry": {"maxRetries": 0},
                },
                "list": [
                    {"id": "main", "default": True, "model": "fake/small"},
                    {"id": "nocw", "model": "fake/plain"},
                ],
            },
        }

    def setUp(self) -> None:
        super().setUp()
        self.fake.max_request_bytes = LIMIT
        state = self.gateway.directory / "state"
        lines = "\n".join(f"line {i} " + "y" * 60 for i in range(3000))
        for workspace in (state / "workspace", state / "workspace-nocw"):
            workspace.mkdir(parents=True, exist_ok=True)
            (workspace / "big.txt").write_text(lines)
            (workspace / "cjk.txt").write_text("\n".join(HANZI for _ in range(600)))
            (workspace / "ru.txt").write_text("\n".join(CYRILLIC for _ in range(600)))

    async def chat(self, model: str, content: str, user: str) -> support.HTTPResult:
        body = {"model": model, "messages": [{"role": "user", "content": content}], "user": user}
        result: support.HTTPResult = await deferToThread(
            support.post_chat, self.gateway.port, body, support.AUTH
        )
        return result

    def transcript(self, agent: str, user: str) -> list[dict[str, Any]]:
        sessions = self.gateway.directory / "state" / "agents" / agent / "sessions"
        key = f"agent:{agent}:openai-user:{user}"
        for path in Path(sessions).glob("*.jsonl"):
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            if lines and lines[0].get("sessionKey") == key:
                return lines
        raise AssertionError(f"no transcript for {key}")

    def refused(self) -> list[ReceivedRequest]:
        return [r for r in self.fake.requests if len(r.raw) > LIMIT]

    async def test_first_turn_tool_output_is_cut_to_fit_a_small_window(self) -> None:
        """A first turn that reads four large pieces of a file with an 8K-window
        model: each result is capped to 30 % of the window when recorded
        (9,600 characters) and to the context guard's 4,000 when sent; when
        the fourth would not fit, the older results are cut, oldest first.
        No request is refused, the answer arrives, the transcript keeps the
        results as recorded."""
        conversation = ToolConversation(
            FakeReply(text="", tool_calls=(read("r1"),)),
            FakeReply(text="", tool_calls=(read("r2", offset=800),)),
            FakeReply(text="", tool_calls=(read("r3", offset=1600),)),
            FakeReply(text="", tool_calls=(read("r4", offset=2400),)),
            FakeReply(text="All four read."),
        )
        self.fake.responder = conversation
        result = await self.chat("openclaw", "read the big file in four parts", "cut1")
        self.assertEqual(result.status, 200, result.body)
        self.assertEqual(result.json()["choices"][0]["message"]["content"], "All four read.")
        self.assertEqual(self.refused(), [])
        self.assertEqual(len(self.fake.requests), 5)
        for request in self.fake.requests:
            self.assertTrue(all(len(t) <= WINDOW // 2 for t in tool_messages(request)))
        last = tool_messages(self.fake.requests[-1])
        self.assertIn(OMITTED, last[0])
        self.assertLess(len(last[0]), len(last[-1]))
        # The newest result keeps what the guard leaves: its head and the file's end.
        self.assertTrue(last[-1].startswith("line 2399 "))
        self.assertTrue(last[-1].endswith("line 2999 " + "y" * 60))
        self.assertGreater(len(last[-1]), WINDOW // 2 - 100)
        recorded = [
            line["message"]["content"][0]["text"]
            for line in self.transcript("main", "cut1")
            if line.get("type") == "message" and line["message"]["role"] == "toolResult"
        ]
        self.assertEqual(len(recorded), 4)
        for text in recorded:
            self.assertGreater(len(text), WINDOW // 2)
            self.assertLessEqual(len(text), 9_600)
        self.assertIn("cut 1 tool result(s) of this turn", self.gateway.log)

    async def test_cjk_tool_output_is_counted_as_the_model_counts_it(self) -> None:
        """Four reads of a Chinese file in one step, an 8K-window model whose
        upstream counts a hanzi as a token: the estimate counts each hanzi as
        about a token too (OpenClaw's CJK weighting), so the guard keeps about
        2,000 hanzi per result and the turn's results are cut before the
        request goes out. No request is refused; the answer arrives."""
        self.fake.max_request_bytes = None
        self.fake.max_request_tokens = WINDOW
        self.fake.responder = ToolConversation(
            FakeReply(
                text="",
                tool_calls=(
                    read("k1", "cjk.txt"),
                    read("k2", "cjk.txt", offset=200),
                    read("k3", "cjk.txt", offset=300),
                    read("k4", "cjk.txt", offset=400),
                ),
            ),
            FakeReply(text="done reading"),
        )
        result = await self.chat("openclaw", "read the chinese file", "cjk1")
        self.assertEqual(result.status, 200, result.body)
        self.assertEqual(result.json()["choices"][0]["message"]["content"], "done reading")
        self.assertEqual(len(self.fake.requests), 2)
        for request in self.fake.requests:
            self.assertLessEqual(request_tokens(request.body), WINDOW)
        results = tool_messages(self.fake.requests[-1])
        self.assertEqual(len(results), 4)
        self.assertIn(OMITTED, results[0])
        # The newest result keeps what the guard leaves: about a quarter of
        # the window in hanzi, not half.
        hanzi = sum(c in HANZI for c in results[-1])
        self.assertLessEqual(hanzi, WINDOW // 4)
        self.assertGreater(hanzi, WINDOW // 4 - 200)
        self.assertIn("cut 3 tool result(s) of this turn", self.gateway.log)

    async def test_a_refusal_that_says_its_size_is_cut_by_that_size(self) -> None:
        """Text the estimate undercounts (Cyrillic, to the fake's tokenizer
        four times more than estimated): the first request of the step goes
        out and is refused as 16,000-odd tokens. The gateway aims at the
        window scaled by what the upstream reported, not only at three
        quarters of its own estimate, so the single retry fits."""
        self.fake.max_request_bytes = None
        self.fake.max_request_tokens = WINDOW
        self.fake.responder = ToolConversation(
            FakeReply(
                text="",
                tool_calls=tuple(read(f"ru{n}", "ru.txt", offset=1 + 100 * n) for n in range(4)),
            ),
            FakeReply(text="прочитано"),
        )
        result = await self.chat("openclaw", "read the russian file", "ru1")
        self.assertEqual(result.status, 200, result.body)
        self.assertEqual(result.json()["choices"][0]["message"]["content"], "прочитано")
        counts = [request_tokens(r.body) for r in self.fake.requests]
        self.assertEqual(len(counts), 3)
        self.assertGreater(counts[1], WINDOW)
        self.assertLessEqual(counts[2], WINDOW)
        self.assertIn("context overflow; retrying", self.gateway.log)

    async def test_refused_first_turn_is_retried_with_its_tool_output_cut(self) -> None:
        """No window configured: the upstream refuses the third request of a
        first turn (two 16,000-character reads). The gateway cuts the turn's
        tool results to about half the refused request and retries once; the
        turn succeeds."""
        self.fake.responder = ToolConversation(
            FakeReply(text="", tool_calls=(read("n1"),)),
            FakeReply(text="", tool_calls=(read("n2", offset=800),)),
            FakeReply(text="Read both."),
        )
        result = await self.chat("openclaw/nocw", "read the big file twice", "cut2")
        self.assertEqual(result.status, 200, result.body)
        self.assertEqual(result.json()["choices"][0]["message"]["content"], "Read both.")
        (refused,) = self.refused()
        retried = self.fake.requests[-1]
        self.assertLess(len(retried.raw), LIMIT)
        self.assertEqual(len(self.fake.requests), 4)
        self.assertFalse(any(is_summary(r) for r in self.fake.requests))
        before, after = tool_messages(refused), tool_messages(retried)
        self.assertEqual([len(t) for t in before], [16_000, 16_000])
        self.assertIn(OMITTED, after[0])
        self.assertLess(sum(map(len, after)), sum(map(len, before)))
        self.assertIn("context overflow; retrying", self.gateway.log)

    async def test_after_a_failed_turn_history_tool_output_is_cut_to_fit(self) -> None:
        """A turn reads seven large pieces of a file (cut to fit while it
        runs), then the upstream fails. Its tool results are replayed with
        the next message, which would not fit the 8K window; a summary could
        not shrink it (the call and its results are the newest history). The
        history's tool results are cut in the request, oldest first, so
        "please continue" goes out and is answered; nothing is refused or
        summarised, and the transcript keeps the results as recorded."""
        self.fake.max_request_bytes = None
        self.fake.max_request_tokens = WINDOW
        self.fake.responder = ToolConversation(
            FakeReply(
                text="", tool_calls=tuple(read(f"s{n}", offset=1 + 300 * n) for n in range(7))
            ),
            FakeReply(status=500, error_message="upstream exploded"),
        )
        failed = await self.chat("openclaw", "read the seven parts of big.txt", "hist1")
        self.assertEqual(failed.status, 502, failed.body)
        self.fake.responder = lambda request: FakeReply(text="continuing")
        start = len(self.fake.requests)
        result = await self.chat("openclaw", "please continue", "hist1")
        self.assertEqual(result.status, 200, result.body)
        self.assertEqual(result.json()["choices"][0]["message"]["content"], "continuing")
        (sent,) = self.fake.requests[start:]
        self.assertLessEqual(request_tokens(sent.body), WINDOW)
        results = tool_messages(sent)
        self.assertEqual(len(results), 7)
        self.assertIn(OMITTED, results[0])
        self.assertEqual(sent.body["messages"][-1], {"role": "user", "content": "please continue"})
        self.assertIn("tool result(s) of the history by", self.gateway.log)
        lines = self.transcript("main", "hist1")
        self.assertEqual([line for line in lines if line.get("type") == "compaction"], [])
        recorded = [
            line["message"]["content"][0]["text"]
            for line in lines
            if line.get("type") == "message" and line["message"]["role"] == "toolResult"
        ]
        self.assertEqual(len(recorded), 7)
        self.assertGreater(min(map(len, recorded)), WINDOW // 2)
        self.assertLess(len(results[0]), WINDOW // 2)

    async def test_a_refusal_after_a_failed_turn_cuts_history_tool_output(self) -> None:
        """No window configured, so only the upstream's refusal tells: the
        message after a failed turn that read two 16,000-character pieces is
        refused; the gateway cuts the history's tool results (this turn has
        none) and retries once, without summarising."""
        self.fake.max_request_bytes = None
        self.fake.max_request_tokens = WINDOW
        self.fake.responder = ToolConversation(
            FakeReply(text="", tool_calls=(read("h1"), read("h2", offset=800))),
            FakeReply(status=500, error_message="upstream exploded"),
        )
        failed = await self.chat("openclaw/nocw", "read the big file twice", "hist2")
        self.assertEqual(failed.status, 502, failed.body)
        self.fake.responder = lambda request: FakeReply(text="continuing")
        start = len(self.fake.requests)
        result = await self.chat("openclaw/nocw", "please continue", "hist2")
        self.assertEqual(result.status, 200, result.body)
        refused, retried = self.fake.requests[start:]
        self.assertGreater(request_tokens(refused.body), WINDOW)
        self.assertLessEqual(request_tokens(retried.body), WINDOW)
        self.assertFalse(any(is_summary(r) for r in self.fake.requests))
        self.assertIn(OMITTED, tool_messages(retried)[0])
        self.assertIn("context overflow; retrying", self.gateway.log)

    async def test_turn_output_is_cut_rather_than_a_short_history_summarised(self) -> None:
        """When this turn's tool output is what does not fit, a short earlier
        history is not summarised (a summary could not help and would replace
        the user's words): no summary request, no compaction entry."""
        self.fake.responder = lambda request: FakeReply(text="hello")
        first = await self.chat("openclaw", "hi there", "cut3")
        self.assertEqual(first.status, 200, first.body)
        self.fake.responder = ToolConversation(
            FakeReply(text="", tool_calls=(read("c1"),)),
            FakeReply(text="", tool_calls=(read("c2", offset=800),)),
            FakeReply(text="", tool_calls=(read("c3", offset=1600),)),
            FakeReply(text="", tool_calls=(read("c4", offset=2400),)),
            FakeReply(text="Done reading."),
        )
        result = await self.chat("openclaw", "now read the big file", "cut3")
        self.assertEqual(result.status, 200, result.body)
        self.assertEqual(result.json()["choices"][0]["message"]["content"], "Done reading.")
        self.assertFalse(any(is_summary(r) for r in self.fake.requests))
        self.assertEqual(self.refused(), [])
        lines = self.transcript("main", "cut3")
        self.assertEqual([line for line in lines if line.get("type") == "compaction"], [])
        # The first turn is still sent verbatim.
        last = self.fake.requests[-1].body["messages"]
        self.assertEqual(last[1], {"role": "user", "content": "hi there"})

    async def test_a_summary_request_too_long_for_the_model_is_split(self) -> None:
        """No window configured and a long history: the upstream refuses the
        turn and then the one-piece summary request too. The summary is made
        in smaller parts (each carrying the summary so far), recorded, and the
        turn succeeds; the next turn starts from that summary."""

        def respond(request: ReceivedRequest) -> FakeReply:
            if is_summary(request):
                return FakeReply(text=f"SUMMARY PART {sum(map(is_summary, self.fake.requests))}")
            return FakeReply(text="ok")

        self.fake.responder = respond
        self.fake.max_request_bytes = None
        for n in range(6):
            answer = await self.chat("openclaw/nocw", f"note {n} " + "z" * 10_000, "split")
            self.assertEqual(answer.status, 200, answer.body)
        self.fake.max_request_bytes = 50_000
        start = len(self.fake.requests)
        result = await self.chat("openclaw/nocw", "what did I send?", "split")
        self.assertEqual(result.status, 200, result.body)
        self.assertEqual(result.json()["choices"][0]["message"]["content"], "ok")
        sent = self.fake.requests[start:]
        summaries = [r for r in sent if is_summary(r)]
        accepted = [r for r in summaries if len(r.raw) <= 50_000]
        self.assertGreater(len(summaries), len(accepted))  # the one-piece request was refused
        self.assertGreaterEqual(len(accepted), 2)
        # Each later part carries the summary so far.
        self.assertIn("SUMMARY PART", accepted[-1].body["messages"][1]["content"])
        (entry,) = [
            line for line in self.transcript("nocw", "split") if line.get("type") == "compaction"
        ]
        self.assertTrue(entry["summary"].startswith("SUMMARY PART"))
        self.assertLess(entry["tokensAfter"], entry["tokensBefore"])
        self.assertLessEqual(len(sent[-1].raw), 50_000)
        again = await self.chat("openclaw/nocw", "and now?", "split")
        self.assertEqual(again.status, 200, again.body)
        self.assertIn("SUMMARY PART", self.fake.requests[-1].body["messages"][1]["content"])
