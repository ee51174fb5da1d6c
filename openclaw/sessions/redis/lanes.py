"""Session lanes across processes and machines.

:class:`RedisLanes` keeps the in-process lanes (:class:`SessionLanes`: FIFO
within this process, no Redis traffic for waiters here) and adds a Redis
lock per session key on top, so one run at a time holds a session across
every gateway sharing the Redis:

* the lock has a TTL and is renewed (a ``LoopingCall`` on the injected
  clock) while the run lives: a killed holder's lane is free again within
  the TTL;
* processes wait in FIFO order of their tickets (a waiter that died is
  dropped from the head of the queue once its heartbeat expires);
* each grant carries a fencing token (:class:`LeaseBook`) that the store
  sends with every transcript write; Redis refuses a write whose token no
  longer holds the lane (:mod:`.scripts`);
* a holder whose renewal finds the lock gone or taken (it stalled past the
  TTL: a paused process, a long GC, Redis answering late) has lost the lane:
  the lease stays in the book marked lost, with its token, so every later
  write is still fenced (refused), renewal stops, and whoever watches the
  key (the run holding it) is told at once, to stop its turn.

Stateless chat-completion keys (``agent:<id>:openai:<uuid>``) are never
addressed twice, so they use the in-process lane only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.core.unavailable import TurnNotSavedError
from openclaw.sessions.entry import is_stateless_session_key
from openclaw.sessions.lanes import Release, SessionLanes
from openclaw.sessions.redis.client import RedisCommands, RedisUnavailableError
from openclaw.sessions.redis.keys import KeySchema
from openclaw.sessions.redis.mirror import SessionRead
from openclaw.sessions.redis.scripts import ACQUIRE, ACQUIRE_READ, RELEASE, RENEW

log = Logger()

#: Seconds a lane lock lives without renewal (a killed holder's lane frees after it).
DEFAULT_LOCK_TTL = 15.0
#: Seconds between two attempts of a process waiting for a lane another one holds.
DEFAULT_POLL_INTERVAL = 0.02


class LaneLostError(TurnNotSavedError):
    """This process lost a session's lane while a turn held it (the lock
    expired: the process stalled past its TTL). Another process may be running
    the session's next turn, so this turn stops and nothing more of it is
    written; the client is told its turn was not saved (and may send it again)."""

    def __init__(self, session_key: str) -> None:
        super().__init__(
            f"the turn was not saved: this gateway lost the lane of session {session_key} "
            "(its lock expired while it stalled); send the message again"
        )


class LeaseBook:
    """The fencing tokens of the lanes this process holds, by session key.

    A lease found lost keeps its token until it is released: the store keeps
    sending it, and Redis refuses it (only stateless keys, which take no
    Redis lock, ever write unfenced).
    """

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}
        self._lost: dict[str, LaneLostError] = {}
        self._watchers: dict[str, list[Callable[[LaneLostError], None]]] = {}

    def token(self, session_key: str) -> str | None:
        """The token to fence writes of ``session_key`` with (None: not held here)."""
        return self._tokens.get(session_key)

    def lost_error(self, session_key: str) -> LaneLostError | None:
        """Why writes of ``session_key`` are refused here (None: not lost)."""
        return self._lost.get(session_key)

    def held(self, session_key: str, token: str) -> None:
        self._tokens[session_key] = token
        self._lost.pop(session_key, None)

    def lost(self, session_key: str, token: str) -> bool:
        """The lock no longer holds ``token``: mark the lease lost (its token is
        kept, so writes stay fenced) and tell the key's watchers. False when
        ``token`` is not the current lease or its loss is already known."""
        if self._tokens.get(session_key) != token or session_key in self._lost:
            return False
        error = self._lost[session_key] = LaneLostError(session_key)
        for watcher in list(self._watchers.get(session_key, ())):
            try:
                watcher(error)
            except Exception:
                log.failure("telling a holder of {key} that its lane is lost", key=session_key)
        return True

    def dropped(self, session_key: str, token: str) -> None:
        if self._tokens.get(session_key) == token:
            del self._tokens[session_key]
            self._lost.pop(session_key, None)

    def watch(
        self, session_key: str, callback: Callable[[LaneLostError], None]
    ) -> Callable[[], None]:
        """Call ``callback`` when the lease of ``session_key`` is found lost (at
        once if it already is); the returned callable stops watching."""
        watchers = self._watchers.setdefault(session_key, [])
        watchers.append(callback)

        def unwatch() -> None:
            current = self._watchers.get(session_key)
            if current is not None and callback in current:
                current.remove(callback)
                if not current:
                    del self._watchers[session_key]

        error = self._lost.get(session_key)
        if error is not None:
            callback(error)
        return unwatch

    def __len__(self) -> int:
        return len(self._tokens)


class RedisLanes(SessionLanes):
    """:class:`SessionLanes` whose keys are also locked in Redis (see module doc)."""

    def __init__(
        self,
        client: RedisCommands,
        clock: IReactorTime,
        *,
        owner: str,
        schema: KeySchema | None = None,
        leases: LeaseBook | None = None,
        ttl_seconds: float = DEFAULT_LOCK_TTL,
        poll_seconds: float = DEFAULT_POLL_INTERVAL,
        on_granted: Callable[[str], Deferred[None]] | None = None,
        read_plan: Callable[[str], SessionRead | None] | None = None,
        hold: Callable[[Deferred[Any]], object] | None = None,
    ) -> None:
        """
        :param owner: this process' id, recorded in lock values (for operators).
        :param on_granted: called with the key once the lane is held, before
            the holder gets it (the store reads the session's newest state).
        :param read_plan: the store's read of a session, run inside the acquire
            script when the lane is granted (saves a round trip); ``on_granted``
            is then not called.
        :param hold: the store's: a release still in flight is waited for when
            it closes the connection (at shutdown, the runs aborted at the end
            of the grace release their lanes just before it closes).
        """
        super().__init__()
        self._client = client
        self._clock = clock
        self._owner = owner
        self._schema = schema if schema is not None else KeySchema()
        self.leases = leases if leases is not None else LeaseBook()
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._renew_every = ttl_seconds / 3
        self._poll = poll_seconds
        self._on_granted = on_granted
        self._read_plan = read_plan
        self._hold = hold
        #: Locks given up while Redis was away: key -> (token, ticket, expiry).
        #: Released once it answers again, so the session does not wait out
        #: the lock's TTL after every outage.
        self._unreleased: dict[str, tuple[str, str, float]] = {}
        self._release_retry: IDelayedCall | None = None

    def check_available(self) -> None:
        """Refuse new runs at once while Redis is unreachable (503 / UNAVAILABLE)."""
        if self._client.lost:
            raise RedisUnavailableError("the session store (Redis) is unreachable")

    def try_acquire(self, key: str) -> Release | None:
        """Only stateless keys can be granted without asking Redis."""
        if is_stateless_session_key(key):
            return super().try_acquire(key)
        return None

    def acquire(self, key: str) -> Deferred[Release]:
        """Fire once this process' lane and then the Redis lock for ``key`` are
        held (fails with RedisUnavailableError when Redis cannot be asked)."""
        local = super().acquire(key)
        if is_stateless_session_key(key):
            return local
        waiter = _DistributedWait(self, key, local)
        return waiter.result

    # -- used by _DistributedWait ------------------------------------------------

    def _try_lock(self, key: str, ticket: str) -> tuple[Deferred[Any], SessionRead | None]:
        schema = self._schema
        keys = [
            schema.lock(key),
            schema.queue(key),
            schema.fence_counter(),
            schema.ticket_counter(),
        ]
        args: list[str | int | float] = [ticket, self._owner, self._ttl_ms]
        plan = self._read_plan(key) if self._read_plan is not None else None
        if plan is None:
            return self._client.run_script(ACQUIRE, keys, args), None
        return self._client.run_script(ACQUIRE_READ, keys + plan.keys, [*args, *plan.args]), plan

    def _unlock(self, key: str, token: str, ticket: str) -> None:
        if not self._client.connected:
            # Released when Redis is back (at worst it expires within its TTL);
            # the release checks the token, so a late one frees nobody else's.
            expiry = self._clock.seconds() + self._ttl_ms / 1000
            self._unreleased[key] = (token, ticket, expiry)
            self._retry_releases_later()
            return
        self._release(key, token, ticket)

    def _release(self, key: str, token: str, ticket: str) -> None:
        schema = self._schema
        d = self._client.run_script(RELEASE, [schema.lock(key), schema.queue(key)], [token, ticket])
        if self._hold is not None:
            self._hold(d)
        d.addErrback(self._not_released, key)

    def _not_released(self, failure: Failure, key: str) -> None:
        """A release that failed: the lock expires by its TTL all the same. A
        lost connection is logged by the client itself, and the release may
        well have run (only its reply was lost), so it is only noted here, at
        info level; anything else (a refusal, a script error) is a warning."""
        ttl = self._ttl_ms / 1000
        if isinstance(failure.value, RedisUnavailableError):
            log.info(
                "release of the lane of {key} not confirmed ({why}); if it did not "
                "reach Redis, the lock expires within {ttl}s",
                key=key,
                why=str(failure.value),
                ttl=ttl,
            )
            return
        log.warn(
            "could not release lane of {key}: {why}; its lock expires within {ttl}s",
            key=key,
            why=str(failure.value),
            ttl=ttl,
        )

    def _retry_releases_later(self) -> None:
        if self._release_retry is None or not self._release_retry.active():
            self._release_retry = self._clock.callLater(max(self._poll, 0.25), self._retry_releases)

    def _retry_releases(self) -> None:
        self._release_retry = None
        now = self._clock.seconds()
        pending = {k: v for k, v in self._unreleased.items() if v[2] > now}
        if not self._client.connected:
            self._unreleased = pending
            if pending:
                self._retry_releases_later()
            return
        self._unreleased = {}
        for key, (token, ticket, _) in pending.items():
            self._release(key, token, ticket)

    def _renewer(self, key: str, token: str) -> LoopingCall:
        lock = self._schema.lock(key)

        def renew() -> Deferred[None] | None:
            if not self._client.connected:
                return None

            def checked(still_held: Any) -> None:
                if str(still_held) == "1":
                    return
                # Once lost, never held again: stop renewing (and logging).
                if call.running:
                    call.stop()
                if self.leases.lost(key, token):
                    log.warn(
                        "lost the lane of session {key} (its lock expired): its turn is stopped",
                        key=key,
                    )

            d = self._client.run_script(RENEW, [lock], [token, self._ttl_ms])
            d.addCallback(checked)
            d.addErrback(lambda f: log.warn("could not renew a lane: {why}", why=str(f.value)))
            return d

        call = LoopingCall(renew)
        call.clock = self._clock
        call.start(self._renew_every, now=False).addErrback(
            lambda f: log.failure("lane renewal stopped", f)
        )
        return call


class _DistributedWait:
    """One acquisition: the local lane, then the Redis lock (retried while held
    elsewhere), then the store's read of the session."""

    def __init__(self, lanes: RedisLanes, key: str, local: Deferred[Release]) -> None:
        self._lanes = lanes
        self._key = key
        self._local_wait: Deferred[Release] | None = local
        self._local: Release | None = None
        self._ticket = ""
        self._retry: IDelayedCall | None = None
        self._busy: Deferred[Any] | None = None
        self._done = False
        self.result: Deferred[Release] = Deferred(self._cancel)
        local.addCallbacks(self._got_local, self._fail)

    def _got_local(self, release: Release) -> None:
        self._local_wait = None
        self._local = release
        self._attempt()

    def _attempt(self) -> None:
        self._retry = None
        if self._done:
            return
        busy, plan = self._lanes._try_lock(self._key, self._ticket)
        self._busy = busy
        busy.addCallbacks(self._answered, self._fail, callbackArgs=(plan,))

    def _answered(self, reply: Any, plan: SessionRead | None) -> None:
        self._busy = None
        granted, value = int(reply[0]), str(reply[1])
        if self._done:
            if granted:  # cancelled while the grant was on its way
                self._lanes._unlock(self._key, value, "")
            return
        if not granted:
            self._ticket = value
            self._retry = self._lanes._clock.callLater(self._lanes._poll, self._attempt)
            return
        token = value
        lanes = self._lanes
        lanes.leases.held(self._key, token)
        renewer = lanes._renewer(self._key, token)
        local = self._local
        self._local = None
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            if renewer.running:
                renewer.stop()
            lanes.leases.dropped(self._key, token)
            lanes._unlock(self._key, token, "")
            if local is not None:
                local()

        if plan is not None:  # the session was read by the acquire script
            try:
                plan.apply(reply[2:])
            except Exception as e:
                log.failure("reading session {key} on its lane grant", key=self._key)
                release()
                self._fail(Failure(e))  # type: ignore[no-untyped-call]  # unannotated in Twisted
                return
            ready: Deferred[None] = succeed(None)
        elif lanes._on_granted is not None:
            ready = lanes._on_granted(self._key)
        else:
            ready = succeed(None)

        def hand_over(_: object) -> None:
            if self._done:
                release()
                return
            self._done = True
            self.result.callback(release)

        def unreadable(failure: Failure) -> None:
            release()
            self._fail(failure)

        ready.addCallbacks(hand_over, unreadable)

    def _fail(self, failure: Failure) -> None:
        self._busy = None
        if self._done:
            return
        self._done = True
        self._give_back()
        if isinstance(failure.value, CancelledError) and self.result.called:
            return
        self.result.errback(failure)

    def _give_back(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._ticket:
            self._lanes._unlock(self._key, "", self._ticket)
            self._ticket = ""
        local, self._local = self._local, None
        if local is not None:
            local()
        if self._local_wait is not None:
            wait, self._local_wait = self._local_wait, None
            wait.cancel()

    def _cancel(self, _: Deferred[Release]) -> None:
        """The caller gave up waiting: leave the queues (a grant in flight is
        released as soon as it arrives)."""
        if self._done:
            return
        self._done = True
        self._give_back()
