"""Compacting one session: summarise its older history, record the entry.

Used by the loop (automatically when the next call would not fit, and once
more when the upstream reports a context overflow) and by the runtime for
the WebSocket ``sessions.compact`` method. The summary is written by the
session's model (or ``agents.defaults.compaction.model``), in chunks sized to
that model's ``contextWindow`` when one is configured (and split further when
the upstream still refuses one); the transcript gets OpenClaw's
``compaction`` entry and is never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.agents.compaction import (
    CompactionResult,
    Compactor,
    context_window_of,
    stream_to_text,
    summary_chunk_tokens,
)
from openclaw.agents.fallback import is_fallback_worthy
from openclaw.agents.history import History
from openclaw.agents.model_health import ModelHealth
from openclaw.agents.providers.base import ModelProvider
from openclaw.agents.registry import ModelRef, ModelResolutionError, parse_model_ref
from openclaw.agents.types import ProviderError
from openclaw.config.model import CompactionConfig, Config
from openclaw.sessions.interface import TranscriptStore

log = Logger()

ProviderLookup = Mapping[str, ModelProvider] | Callable[[str], ModelProvider]


def lookup_provider(providers: ProviderLookup, ref: ModelRef) -> ModelProvider:
    """The provider for ``ref``; an unknown one is a MODEL_NOT_FOUND failure, so a
    fallback chain moves on to its next model."""
    try:
        if callable(providers):
            return providers(ref.provider)
        return providers[ref.provider]
    except KeyError:
        raise ModelResolutionError(
            f"unknown model provider {ref.provider!r} (model {ref}); add it to models.providers",
            code="unknown_provider",
        ) from None


class SessionCompactor:
    """Compacts sessions of one runtime."""

    def __init__(
        self,
        config: Config,
        *,
        clock: IReactorTime,
        store: TranscriptStore,
        providers: ProviderLookup,
        health: ModelHealth | None = None,
    ) -> None:
        """:param health: where a failed summary call's cooldown is recorded,
        as a failed turn call's is (the turn then starts on another model)."""
        self._config = config
        self._clock = clock
        self._store = store
        self._providers = providers
        self._health = health

    def compact(
        self,
        storage_agent: str,
        session_id: str,
        history: History,
        *,
        model: str,
        fallbacks: Sequence[str] = (),
        keep_recent_tokens: int | None = None,
        focus: str | None = None,
        run_id: str | None = None,
    ) -> Deferred[CompactionResult | None]:
        """Summarise ``history`` with ``model`` (``provider/model``) and append
        the compaction entry.

        A summary call failing in a way another model might not (rate limit,
        outage, auth...) is tried again with each of ``fallbacks`` in turn,
        as OpenClaw does with the session's fallback chain; a configured
        ``compaction.model`` is exact and used alone. Fires with None when
        there was nothing older to summarise; fails with ProviderError /
        CompactionError, or TimeoutError after ``compaction.timeoutSeconds``
        (all attempts together; the transcript is then unchanged).
        Cancelling it cancels the summary's model call.
        """
        config = self._config.agents.defaults.compaction
        models = (config.model,) if config.model else (model, *fallbacks)
        current: list[Deferred[CompactionResult | None]] = []
        compacting: Deferred[CompactionResult | None] = Deferred(lambda _: current[-1].cancel())

        def attempt(index: int) -> None:
            trying = self._summarise(
                models[index], history, config, focus, run_id, keep_recent_tokens
            )
            current[:] = [trying]

            def failed(failure: Failure) -> None:
                if compacting.called:
                    return
                error = failure.value
                if isinstance(error, ProviderError) and self._health is not None:
                    self._health.failed(models[index], error.kind, error.retry_after_seconds)
                if index + 1 < len(models) and error is not None and is_fallback_worthy(error):
                    log.warn(
                        "{what}: the compaction summary with {model} failed ({error}); "
                        "trying {next}",
                        what=f"run {run_id}" if run_id else f"session {session_id}",
                        run_id=run_id,
                        model=models[index],
                        error=str(error),
                        next=models[index + 1],
                    )
                    attempt(index + 1)
                    return
                compacting.errback(failure)

            def done(result: CompactionResult | None) -> None:
                if not compacting.called:
                    compacting.callback(result)

            trying.addCallbacks(done, failed)

        attempt(0)

        def record(result: CompactionResult | None) -> CompactionResult | None:
            if result is None:
                return None
            log.info(
                "compacted session {session_id}: {before} -> {after} tokens",
                session_id=session_id,
                before=result.tokens_before,
                after=result.tokens_after,
            )
            self._store.append_entry(storage_agent, session_id, result.entry).addErrback(
                lambda f: log.failure("writing a compaction entry failed", f)
            )
            return result

        if config.timeout_seconds > 0:
            # compaction.timeoutSeconds: a stuck summary call must not hold the turn.
            compacting.addTimeout(config.timeout_seconds, self._clock)
        return compacting.addCallback(record)

    def _summarise(
        self,
        model: str,
        history: History,
        config: CompactionConfig,
        focus: str | None,
        run_id: str | None,
        keep_recent_tokens: int | None,
    ) -> Deferred[CompactionResult | None]:
        """One summary attempt with ``model`` (nothing written yet)."""
        try:
            ref = parse_model_ref(model, self._config.models.providers)
            provider = lookup_provider(self._providers, ref)
        except Exception as e:
            return fail(Failure(e))  # type: ignore[no-untyped-call]  # typing note: untyped in Twisted
        compactor = Compactor(lambda call: stream_to_text(provider, call), self._clock)
        window = context_window_of(self._config.models.providers, ref.provider, ref.model)
        return compactor.compact(
            history.entries,
            model=ref.model,
            config=config,
            parent_id=None,
            previous_summary=history.summary,
            focus=focus,
            run_id=run_id,
            keep_recent_tokens=keep_recent_tokens,
            chunk_tokens=summary_chunk_tokens(window),
        )
