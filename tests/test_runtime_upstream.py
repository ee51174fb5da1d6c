"""The runtime with the real providers against the fake upstreams (in memory):
history reaches the upstream, cancel closes the upstream stream, usage maps."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.providers.anthropic_messages import AnthropicMessagesProvider
from openclaw.agents.providers.base import ModelProvider
from openclaw.agents.providers.openai_completions import OpenAICompletionsProvider
from openclaw.agents.runtime import Runtime
from openclaw.agents.types import AgentRequest, FailureKind, ProviderError, RunAbortedError
from openclaw.config.model import (
    AgentConfig,
    AgentDefaults,
    AgentsConfig,
    Config,
    ModelsConfig,
    ProviderConfig,
    SessionConfig,
)
from openclaw.testing import (
    FakeAnthropicUpstream,
    FakeOpenAIUpstream,
    FakeReply,
    FakeUsage,
    InMemoryClient,
    without_model_retry,
)

KEY = "sk-test-upstream"
SESSION = "agent:main:main"


class UpstreamCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)

    def runtime(
        self,
        provider_config: ProviderConfig,
        provider: ModelProvider,
        model: str,
        *,
        retries: bool = True,
    ) -> Runtime:
        config = Config(
            models=ModelsConfig(providers={provider_config.id: provider_config}),
            agents=AgentsConfig(
                defaults=AgentDefaults(model_primary=f"{provider_config.id}/{model}"),
                list=(AgentConfig(id="main", system_prompt="You are terse."),),
            ),
            session=SessionConfig(fsync="never"),
            state_dir=Path(self.mktemp()),
        )
        if not retries:
            config = without_model_retry(config)
        return Runtime(config, clock=self.clock, providers={provider_config.id: provider})

    def turn(self, runtime: Runtime, client: InMemoryClient, text: str, run_id: str) -> str:
        run = runtime.start(
            AgentRequest(agent_id="main", session_key=SESSION, message=text, run_id=run_id)
        )
        result = run.result
        client.pump(30)
        return self.successResultOf(result).text


class OpenAIUpstreamTests(UpstreamCase):
    def setUp(self) -> None:
        super().setUp()
        self.fake = FakeOpenAIUpstream(self.clock, api_key=KEY)
        self.client = InMemoryClient(self.fake, self.clock)
        cfg = ProviderConfig(
            id="local", api="openai-completions", base_url="http://upstream.test/v1", api_key=KEY
        )
        provider = OpenAICompletionsProvider(cfg, agent=self.client.agent, clock=self.clock)
        self.rt = self.runtime(cfg, provider, "llama3.2")

    def test_second_upstream_request_carries_the_first_turn(self) -> None:
        """Two turns on one key: the second upstream request has the system prompt,
        the first user message, the first reply and the new message."""
        self.fake.enqueue(FakeReply(text="Paris."), FakeReply(text="You asked about France."))
        self.assertEqual(self.turn(self.rt, self.client, "Capital of France?", "r1"), "Paris.")
        self.assertEqual(
            self.turn(self.rt, self.client, "What did I ask?", "r2"), "You asked about France."
        )
        first, second = (r.body for r in self.fake.requests)
        self.assertEqual(first["model"], "llama3.2")
        self.assertTrue(first["stream"])
        system, *rest = second["messages"]
        self.assertEqual(system["role"], "system")
        self.assertIn("You are terse.", system["content"])
        self.assertEqual(
            [(m["role"], m["content"]) for m in rest],
            [
                ("user", "Capital of France?"),
                ("assistant", "Paris."),
                ("user", "What did I ask?"),
            ],
        )

    def test_usage_from_upstream(self) -> None:
        """Usage reported by the upstream (cached prompt tokens too) reaches the result."""
        self.fake.enqueue(
            FakeReply(text="ok", usage=FakeUsage(input_tokens=10, output_tokens=2, cache_read=4))
        )
        run = self.rt.start(
            AgentRequest(agent_id="main", session_key=SESSION, message="hi", run_id="r")
        )
        result = run.result
        self.client.pump(30)
        usage = self.successResultOf(result).usage
        self.assertEqual((usage.output, usage.cache_read), (2, 4))
        self.assertGreater(usage.total, 0)

    def test_cancel_closes_the_upstream_stream(self) -> None:
        """Cancelling a run mid-stream closes the upstream connection."""
        self.fake.enqueue(FakeReply(mode="endless", chunk_delay=0.5))
        run = self.rt.start(
            AgentRequest(agent_id="main", session_key=SESSION, message="go", run_id="r")
        )
        result = run.result
        self.client.pump(10)
        self.client.advance(1)
        self.assertTrue(run.text)
        run.cancel()
        self.client.advance(1)
        self.failureResultOf(result, RunAbortedError)
        self.assertEqual(self.fake.client_closed, 1)
        self.assertEqual(self.fake.active_streams, 0)

    def test_upstream_failure_is_classified(self) -> None:
        """An upstream 429 fails the run with a rate-limit ProviderError (with
        retries off; see the next test)."""
        cfg = ProviderConfig(
            id="local", api="openai-completions", base_url="http://upstream.test/v1", api_key=KEY
        )
        provider = OpenAICompletionsProvider(cfg, agent=self.client.agent, clock=self.clock)
        self.rt = self.runtime(cfg, provider, "llama3.2", retries=False)
        self.fake.enqueue(FakeReply.rate_limited("7"))
        run = self.rt.start(
            AgentRequest(agent_id="main", session_key=SESSION, message="hi", run_id="r")
        )
        result = run.result
        self.client.pump(30)
        error = self.failureResultOf(result, ProviderError).value
        assert isinstance(error, ProviderError)
        self.assertEqual((error.kind, error.status), (FailureKind.RATE_LIMIT, 429))
        self.assertEqual(run.status, "error")

    def test_rate_limit_is_retried_after_its_retry_after(self) -> None:
        """By default a 429 is retried on the same model, no sooner than the
        upstream's ``retry-after`` (7 s here, over the first backoff of ~1 s),
        and the turn answers from the retry."""
        self.fake.enqueue(FakeReply.rate_limited("7"), FakeReply(text="after the wait"))
        run = self.rt.start(
            AgentRequest(agent_id="main", session_key=SESSION, message="hi", run_id="r")
        )
        self.client.pump(30)
        self.assertNoResult(run.result)
        self.assertEqual(len(self.fake.requests), 1)
        self.clock.advance(6.9)
        self.client.pump(30)
        self.assertEqual(len(self.fake.requests), 1)
        self.clock.advance(0.2)
        self.client.pump(30)
        self.assertEqual(self.successResultOf(run.result).text, "after the wait")
        self.assertEqual(len(self.fake.requests), 2)


class AnthropicUpstreamTests(UpstreamCase):
    def test_second_upstream_request_carries_the_first_turn(self) -> None:
        """The Anthropic provider also gets the stored history on the second turn,
        with the system prompt in its own field."""
        fake = FakeAnthropicUpstream(self.clock, api_key=KEY)
        client = InMemoryClient(fake, self.clock)
        cfg = ProviderConfig(
            id="anthropic",
            api="anthropic-messages",
            base_url="http://upstream.test/v1",
            api_key=KEY,
        )
        provider = AnthropicMessagesProvider(cfg, agent=client.agent, clock=self.clock)
        rt = self.runtime(cfg, provider, "claude-x")
        fake.enqueue(FakeReply(text="Hello!"), FakeReply(text="Again."))
        self.assertEqual(self.turn(rt, client, "Hi", "r1"), "Hello!")
        self.assertEqual(self.turn(rt, client, "Once more", "r2"), "Again.")
        second = fake.requests[1].body
        self.assertEqual(second["model"], "claude-x")
        self.assertIn("You are terse.", str(second["system"]))
        roles = [m["role"] for m in second["messages"]]
        self.assertEqual(roles, ["user", "assistant", "user"])
        self.assertIn("Hello!", str(second["messages"][1]["content"]))
