"""Runs across instances over Redis: the :class:`~openclaw.core.relay.RunRelay`
of the Redis store.

* Active runs are in a hash (run id -> session key, owner instance); an
  instance heartbeats a key while it lives. The runs of a killed one end once
  its heartbeat expires: the live instances record them as failed (an error
  outcome for ``agent.wait``, announced like any end) and drop their
  idempotency claims, so a resent key runs the turn again. A killed
  instance's run keeps its session busy (``sessions.reset``) only while the
  session's lock lives (``lockTtlSeconds``).
* A run's outcome is kept (10 minutes) when it ends and announced on the
  instances' pub/sub channel: ``agent.wait`` on any instance answers.
* ``chat.abort`` on one instance is announced on the channel; the instance
  running the turn aborts it.
* Events of a run are published only while another instance has a client
  following that session (instances announce what their clients follow, and
  ask each other again after a reconnect), so unwatched runs cost nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from openclaw.core.relay import LockoutSink, RelaySink
from openclaw.sessions.entry import is_stateless_session_key
from openclaw.sessions.redis.client import RedisCommands, Subscription
from openclaw.sessions.redis.keys import KeySchema
from openclaw.sessions.redis.scripts import (
    AUTH_FAILED,
    CLAIM_RUN,
    FINISH_RUN,
    LIST_RUNS,
    REAP_RUNS,
    RUN_OUTCOME,
    SESSION_BUSY,
    START_RUN,
)

log = Logger()

#: Seconds a finished run's outcome stays readable by ``agent.wait``.
OUTCOME_TTL = 600
#: Seconds between an instance's heartbeats (it counts as gone after three missed).
HEARTBEAT_SECONDS = 5.0
#: Finished runs whose end could not be written yet (Redis away) that are kept
#: for the next heartbeat; beyond this many the oldest are dropped.
MAX_PENDING_FINISHES = 10_000
_ALL = "*"

SubscriberFactory = Callable[[Callable[[str], None], Callable[[], None]], Subscription]


class RedisRunRelay:
    """The relay of the instances sharing one Redis (see module docstring)."""

    def __init__(
        self,
        client: RedisCommands,
        clock: IReactorTime,
        *,
        owner: str,
        channel: str,
        subscribe: SubscriberFactory,
        schema: KeySchema | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        """
        :param subscribe: ``(on_message, on_subscribed) -> Subscription``: opens
            the pub/sub connection on ``channel`` (the backend binds the URL).
        """
        self._client = client
        self._clock = clock
        self._owner = owner
        self._channel = channel
        self._subscribe = subscribe
        self._schema = schema if schema is not None else KeySchema()
        self._heartbeat_seconds = heartbeat_seconds
        self._sink: RelaySink | None = None
        self._limiter: LockoutSink | None = None
        self._failures = 0
        self._subscription: Subscription | None = None
        self._beat: LoopingCall | None = None
        #: What this instance's clients follow (session keys, ``*``: all).
        self._mine: set[str] = set()
        #: What the other instances' clients follow, by instance.
        self._theirs: dict[str, set[str]] = {}
        #: Other relays on this channel (exec approvals): message kind -> handler.
        self._handlers: dict[str, Callable[[Mapping[str, Any]], None]] = {}
        self._resubscribed: list[Callable[[], None]] = []
        #: Run id -> FINISH_RUN keys and arguments not confirmed by Redis yet: a
        #: run that ended while Redis was away would otherwise stay "active"
        #: for the other instances as long as this one lives.
        self._unfinished: dict[str, tuple[list[str], list[Any]]] = {}

    # -- lifecycle -------------------------------------------------------------------

    def attach(self, sink: RelaySink) -> None:
        if self._sink is None:
            self._sink = sink
            self._start()

    def attach_limiter(self, sink: LockoutSink) -> None:
        """Deliver lockouts decided on other instances to ``sink`` (AuthPeers)."""
        self._limiter = sink
        self._start()

    def share_channel(
        self,
        kind: str,
        handler: Callable[[Mapping[str, Any]], None],
        on_subscribed: Callable[[], None],
    ) -> None:
        """Deliver other instances' messages of ``kind`` to ``handler`` (a relay
        sharing this channel and heartbeat) and call ``on_subscribed`` after
        every (re)subscription; starts the channel."""
        self._handlers[kind] = handler
        self._resubscribed.append(on_subscribed)
        self._start()

    def _start(self) -> None:
        if self._subscription is not None:
            return
        self._subscription = self._subscribe(self._received, self._subscribed)
        beat = self._beat = LoopingCall(self._heartbeat)
        beat.clock = self._clock
        beat.start(self._heartbeat_seconds, now=True).addErrback(
            lambda f: log.failure("instance heartbeat stopped", f)
        )

    def detach(self) -> None:
        self._sink = None
        self._limiter = None
        self._handlers.clear()
        self._resubscribed.clear()
        if self._beat is not None and self._beat.running:
            self._beat.stop()
        self._beat = None
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.close().addErrback(lambda f: None)
        if self._client.connected:
            self._quiet(self._client.execute("DEL", self._schema.instance(self._owner)))

    def _heartbeat(self) -> None:
        if self._client.lost:
            return
        ttl = max(1, int(self._heartbeat_seconds * 3))
        key = self._schema.instance(self._owner)
        self._quiet(self._client.execute("SET", key, "1", "EX", ttl))
        self._write_finishes()
        self._reap()

    def _reap_args(self) -> list[str | int | float]:
        """``reap``'s context in :data:`REAP_RUNS` and :data:`RUN_OUTCOME`."""
        schema = self._schema
        return [
            schema.instance_prefix(),
            schema.run_outcome_prefix(),
            schema.run_claim_prefix(),
            OUTCOME_TTL,
            self._channel,
            self._owner,
            int(self._clock.seconds() * 1000),
        ]

    def _reap(self) -> None:
        """End the runs of instances that stopped heartbeating (killed): their
        ``agent.wait`` answers an error here too (our own announcement is not
        delivered to us)."""
        d = self._client.run_script(REAP_RUNS, [self._schema.runs()], self._reap_args())

        def ended(flat: Any) -> None:
            items = list(flat or [])
            for run_id, raw in zip(items[::2], items[1::2], strict=True):
                outcome = _parsed(raw)
                if self._sink is not None and outcome is not None:
                    self._sink.remote_finished(str(run_id), outcome)

        d.addCallback(ended)
        self._quiet(d)

    def _write_finishes(self) -> None:
        """Record the ends of runs that Redis has not confirmed yet."""
        for run_id in list(self._unfinished):
            self._write_finish(run_id)

    def _write_finish(self, run_id: str) -> None:
        pending = self._unfinished.get(run_id)
        if pending is None or self._client.lost:
            return
        keys, args = pending
        d = self._client.run_script(FINISH_RUN, keys, args)
        d.addCallback(self._finish_written, run_id)
        self._quiet(d)

    def _finish_written(self, _: object, run_id: str) -> None:
        self._unfinished.pop(run_id, None)

    def _quiet(self, d: Deferred[Any]) -> None:
        d.addErrback(lambda f: log.debug("relay command failed: {why}", why=str(f.value)))

    # -- the channel -----------------------------------------------------------------

    def _send(self, message: Mapping[str, Any]) -> None:
        if self._client.lost:
            return
        text = json.dumps({**message, "o": self._owner}, separators=(",", ":"))
        self._quiet(self._client.execute("PUBLISH", self._channel, text))

    def _subscribed(self) -> None:
        """(Re)subscribed: learn again what the others follow, tell ours."""
        self._send({"t": "hello"})
        self._announce()
        for hook in list(self._resubscribed):
            hook()

    def _announce(self) -> None:
        self._send({"t": "watching", "k": sorted(self._mine)})

    def _received(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        origin = message.get("o")
        if origin == self._owner or not isinstance(origin, str):
            return
        kind = message.get("t")
        sink = self._sink
        handler = self._handlers.get(str(kind))
        if handler is not None:
            handler(message)
        elif kind == "hello":
            self._theirs.pop(origin, None)
            self._announce()
        elif kind == "watching":
            self._theirs[origin] = {str(k) for k in message.get("k") or ()}
        elif kind == "watch":
            keys = self._theirs.setdefault(origin, set())
            key = str(message.get("k"))
            if message.get("on"):
                keys.add(key)
            else:
                keys.discard(key)
        elif kind in ("lock", "unlock"):
            self._lockout(message)
        elif sink is None:
            return
        elif kind == "ev":
            sink.remote_events(str(message.get("k")), message.get("e") or ())
        elif kind == "done":
            outcome = message.get("x")
            if isinstance(outcome, dict):
                sink.remote_finished(str(message.get("r")), outcome)
        elif kind == "abort":
            sink.remote_abort(message.get("k"), message.get("r"))

    # -- RunRelay ------------------------------------------------------------------

    def watch(self, session_key: str | None) -> None:
        key = _ALL if session_key is None else session_key
        if key not in self._mine:
            self._mine.add(key)
            self._send({"t": "watch", "k": key, "on": True})

    def unwatch(self, session_key: str | None) -> None:
        key = _ALL if session_key is None else session_key
        if key in self._mine:
            self._mine.discard(key)
            self._send({"t": "watch", "k": key, "on": False})

    def wants(self, session_key: str) -> bool:
        return any(session_key in keys or _ALL in keys for keys in self._theirs.values())

    def publish(self, session_key: str, events: Sequence[Mapping[str, Any]]) -> None:
        self._send({"t": "ev", "k": session_key, "e": list(events)})

    def run_started(self, run_id: str, session_key: str) -> None:
        if is_stateless_session_key(session_key) or self._client.lost:
            return  # one-off chat completions: nobody waits for or aborts them elsewhere
        entry = json.dumps({"k": session_key, "o": self._owner}, separators=(",", ":"))
        self._quiet(self._client.run_script(START_RUN, [self._schema.runs()], [run_id, entry]))

    def run_finished(self, run_id: str, session_key: str, outcome: Mapping[str, Any]) -> None:
        if is_stateless_session_key(session_key):
            return
        payload = json.dumps(dict(outcome), separators=(",", ":"))
        message = json.dumps(
            {"t": "done", "r": run_id, "x": dict(outcome), "o": self._owner},
            separators=(",", ":"),
        )
        # Kept until Redis confirms it (the next heartbeats retry): with Redis
        # away, the run's entry would stay in the runs hash, and the other
        # instances would refuse to reset or delete its session.
        self._unfinished[run_id] = (
            [self._schema.runs(), self._schema.run_outcome(run_id)],
            [run_id, payload, OUTCOME_TTL, self._channel, message],
        )
        while len(self._unfinished) > MAX_PENDING_FINISHES:
            del self._unfinished[next(iter(self._unfinished))]
        self._write_finish(run_id)

    def outcome(self, run_id: str) -> Deferred[Mapping[str, Any] | None]:
        """How the run ended; a run whose instance was killed ends now, failed."""
        if self._client.lost:
            return succeed(None)
        d = self._client.run_script(
            RUN_OUTCOME,
            [self._schema.run_outcome(run_id), self._schema.runs()],
            [run_id, *self._reap_args()],
        )
        return d.addCallback(_parsed).addErrback(lambda f: None)

    def _remote_runs(self) -> Deferred[list[tuple[str, str]]]:
        """``(run id, session key)`` of the other live instances' active runs."""
        d = self._client.run_script(
            LIST_RUNS, [self._schema.runs()], [self._schema.instance_prefix()]
        )

        def pairs(flat: Any) -> list[tuple[str, str]]:
            items = list(flat or [])
            return [
                (str(items[i]), str(items[i + 1]))
                for i in range(0, len(items) - 2, 3)
                if str(items[i + 2]) != self._owner
            ]

        return d.addCallback(pairs)

    def abort(self, session_key: str | None, run_id: str | None) -> Deferred[Sequence[str]]:
        if self._client.lost:
            return succeed(())

        def ask(runs: list[tuple[str, str]]) -> Sequence[str]:
            ids = [
                rid
                for rid, key in runs
                if (session_key is None or key == session_key) and (run_id is None or rid == run_id)
            ]
            if ids:
                self._send({"t": "abort", "k": session_key, "r": run_id})
            return ids

        return self._remote_runs().addCallback(ask)

    def busy_elsewhere(self, session_key: str) -> Deferred[bool]:
        """A live instance's run on the session while its lock is held (a killed
        instance's run stops counting when its lock expires)."""
        if self._client.lost:
            return succeed(False)
        schema = self._schema
        d = self._client.run_script(
            SESSION_BUSY,
            [schema.runs(), schema.lock(session_key)],
            [schema.instance_prefix(), session_key, self._owner],
        )
        return d.addCallback(lambda busy: str(busy) == "1")

    def claim(self, run_id: str) -> Deferred[bool]:
        if self._client.lost:
            return succeed(True)  # starting fails anyway (the store is unreachable)
        schema = self._schema
        d = self._client.run_script(
            CLAIM_RUN,
            [schema.run_claim(run_id), schema.run_outcome(run_id)],
            [self._owner, OUTCOME_TTL, schema.instance_prefix()],
        )
        return d.addCallback(lambda mine: str(mine) == "1")

    # -- AuthPeers -------------------------------------------------------------------

    def _lockout(self, message: Mapping[str, Any]) -> None:
        limiter, key = self._limiter, message.get("k")
        if limiter is None or not isinstance(key, str):
            return
        if message.get("t") == "lock":
            limiter.lock(key, int(message.get("ms") or 0))
        else:
            limiter.clear(key)

    def failed(self, key: str, *, window_ms: int, max_attempts: int, lockout_ms: int) -> None:
        if self._client.lost:
            return  # each instance still limits on its own
        self._failures += 1
        now = int(self._clock.seconds() * 1000)
        lock = json.dumps(
            {"t": "lock", "k": key, "ms": lockout_ms, "o": self._owner}, separators=(",", ":")
        )
        d = self._client.run_script(
            AUTH_FAILED,
            [self._schema.auth_failures(key)],
            [now, window_ms, max_attempts, f"{self._owner}:{self._failures}", self._channel, lock],
        )

        def reached(locked: Any) -> None:
            if str(locked) == "1" and self._limiter is not None:
                self._limiter.lock(key, lockout_ms)  # our own message is not delivered to us

        d.addCallback(reached)
        self._quiet(d)

    def succeeded(self, key: str) -> None:
        if self._client.lost:
            return
        self._quiet(self._client.execute("DEL", self._schema.auth_failures(key)))
        self._send({"t": "unlock", "k": key})


def _parsed(raw: Any) -> Mapping[str, Any] | None:
    """An outcome's JSON as a mapping (None: none, or not an object)."""
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
