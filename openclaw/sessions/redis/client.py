"""A small typed Redis client over ``txredisapi``.

``txredisapi`` (maintained, Twisted-native, pipelines commands on a
connection and reconnects with backoff) does the protocol; this module adds
what the gateway needs on top:

* the endpoint is built from the injected reactor (TCP, TLS or unix socket);
* while no connection is up, commands fail at once with
  :class:`RedisUnavailableError` instead of queueing until Redis returns, so
  a request can be answered 503 now rather than hang;
* Lua scripts run by ``EVALSHA``, loaded on the first ``NOSCRIPT``;
* a reply by which Redis refuses work (``OOM``, ``READONLY``, ``NOPERM``,
  ``LOADING``, ``BUSY``, ``MISCONF``...) fails with :class:`RedisRefusedError`
  and a key of the wrong type with :class:`RedisKeyTypeError`: both are
  "shared state unavailable" (503), logged once, not a 500 per request;
* every command is counted (:attr:`TxRedisClient.commands`): the benchmark
  reports round trips per turn from it;
* a refused connection handshake (``AUTH``/``SELECT`` answered with an error
  or no reply: a changed password, ``maxclients``, a Redis stuck in a script)
  drops that connection and the backoff goes on: ``txredisapi``'s own
  handshake stops reconnecting for good in that case (:func:`_handshaking`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from attrs import frozen
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure

from openclaw.core.unavailable import SharedStateUnavailableError
from openclaw.sessions.redis.url import RedisUrl

log = Logger()

#: Seconds a command may wait for its reply before the connection is dropped.
DEFAULT_REPLY_TIMEOUT = 10.0


class RedisUnavailableError(SharedStateUnavailableError):
    """Redis cannot be reached now (the gateway answers 503 and retries later)."""


class RedisHandshakeError(RedisUnavailableError):
    """Redis refused a new connection's ``AUTH`` or ``SELECT`` (or did not
    answer them): what a one-shot check reports (``openclaw doctor``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Redis refused the connection: {reason}")
        #: Redis' reply (``WRONGPASS ...``), or why there was none.
        self.reason = reason

    @property
    def credentials(self) -> bool:
        """True when it was the username or password that Redis refused."""
        code = self.reason.split(" ", 1)[0]
        return code in ("WRONGPASS", "NOAUTH") or "password" in self.reason.lower()


class RedisCommandError(RuntimeError):
    """Redis answered a command with an error."""


class RedisRefusedError(RedisUnavailableError):
    """Redis is up but refuses the command for now: full (``OOM`` under
    ``noeviction``), a replica (``READONLY``), an ACL that does not allow it
    (``NOPERM``), loading its data, busy in a script, unable to persist
    (``MISCONF``). The gateway answers 503 like an unreachable Redis."""

    def __init__(self, code: str, reply: str) -> None:
        super().__init__(f"Redis refused the command: {reply}")
        #: The reply's error code (``OOM``, ``READONLY``, ...; ``NOPERM`` also
        #: for a script's command the ACL refuses, which Redis answers ``ERR``).
        self.code = code
        #: Redis' reply, as it came.
        self.reply = reply


class RedisKeyTypeError(SharedStateUnavailableError):
    """A key under the prefix holds another type than the gateway writes
    there (``WRONGTYPE``: something else wrote it). Not an outage but not the
    client's fault either: the requests that touch it are answered 503 and the
    key is logged once, for an operator to delete or rename it."""

    def __init__(self, keys: Sequence[str], reply: str) -> None:
        named = ", ".join(keys) or "?"
        super().__init__(f"a Redis key holds the wrong type ({named}): {reply}")
        #: The keys the command named (one of them is the culprit).
        self.keys = tuple(keys)


#: Error codes by which Redis refuses work it may take later (or after an
#: operator's fix) rather than saying the command is wrong.
REFUSAL_CODES: Final = frozenset(
    {
        "OOM",
        "READONLY",
        "NOPERM",
        "NOAUTH",
        "WRONGPASS",
        "LOADING",
        "BUSY",
        "MISCONF",
        "MASTERDOWN",
        "NOREPLICAS",
        "TRYAGAIN",
        "CLUSTERDOWN",
    }
)

#: The error reply by which the gateway's scripts name a key of another type
#: (``WRONGTYPE key <name> holds a string, not a list``): the name is exact
#: where Redis' own reply names none.
_SCRIPT_WRONG_TYPE: Final = re.compile(r"WRONGTYPE key (.+) holds a \w+, not a \w+\Z", re.DOTALL)

#: Seconds between two warnings about the same refusal while it lasts.
REFUSAL_LOG_INTERVAL = 60.0


@frozen
class LuaScript:
    """A Lua script and its SHA1 (what ``EVALSHA`` names it by)."""

    name: str
    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode("utf-8")).hexdigest()  # Redis names scripts by it


class RedisCommands(Protocol):
    """What the Redis backend needs from a connection."""

    @property
    def connected(self) -> bool:
        """True while a connection to Redis is up."""
        ...

    @property
    def lost(self) -> bool:
        """True while commands fail at once (the connection was up and is gone)."""
        ...

    def execute(self, *args: str | int | float | bytes) -> Deferred[Any]:
        """Send one command; fires with its reply (fails with RedisUnavailableError
        at once while disconnected, RedisCommandError for an error reply)."""
        ...

    def run_script(
        self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int | float]
    ) -> Deferred[Any]:
        """Run a Lua script atomically (``EVALSHA``, loading it when needed)."""
        ...

    def close(self) -> Deferred[None]:
        """Stop reconnecting and close the connection."""
        ...


def endpoint_for(reactor: Any, url: RedisUrl, timeout: float = 5.0) -> IStreamClientEndpoint:
    """The client endpoint for ``url`` on ``reactor`` (TCP, TLS, or a unix socket)."""
    if url.path is not None:
        return UNIXClientEndpoint(reactor, url.path, timeout=timeout)  # type: ignore[no-untyped-call]  # unannotated in Twisted
    assert url.host is not None
    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, url.host, url.port, timeout=timeout)
    if url.tls:
        endpoint = wrapClientTLS(optionsForClientTLS(url.host), endpoint)
    return endpoint


class TxRedisClient:
    """:class:`RedisCommands` over a one-connection ``txredisapi`` factory
    (one connection keeps every command of this process in order)."""

    def __init__(self, factory: Any, clock: IReactorTime, *, name: str = "Redis") -> None:
        """:param name: how logs call this Redis (its URL without password)."""
        self._factory = factory
        self._clock = clock
        self._name = name
        self._loaded: set[str] = set()
        self._ever_connected = False
        self._reported_down = False
        #: Why Redis refused the last connection handshake (None once one passed).
        self.refusal: str | None = None
        #: Refusal code -> (when it was last logged, refusals not logged since).
        self._refusals: dict[str, tuple[float, int]] = {}
        self._wrong_type_logged: set[tuple[str, ...]] = set()
        #: Waiters for the first connection, and whether a refusal fails them.
        self._first: list[tuple[Deferred[None], bool]] = []
        factory.deferred.addCallbacks(self._up, lambda f: None)
        #: Commands sent (a script run counts once): round trips.
        self.commands = 0
        # One warning when the connection goes and one when it is back, so an
        # operator sees the outage in the log, not only Twisted's retry lines.
        add, remove = factory.addConnection, factory.delConnection

        def added(conn: Any) -> None:
            add(conn)
            self._note_state()

        def removed(conn: Any) -> None:
            remove(conn)
            self._note_state()

        factory.addConnection, factory.delConnection = added, removed

    def handshake_refused(self, reason: str) -> None:
        """A connection was dropped because Redis refused its ``AUTH`` or
        ``SELECT`` or did not answer them (the backoff retries): one warning
        per reason, not per try."""
        if reason != self.refusal:
            log.warn(
                "Redis at {redis} did not complete the connection handshake "
                "(AUTH/SELECT): {reason}; retrying (backoff up to 2 s) until it does",
                redis=self._name,
                reason=reason,
            )
        self.refusal = reason
        self._reported_down = True
        for waiter in [w for w in self._first if w[1]]:
            self._first.remove(waiter)
            waiter[0].errback(RedisHandshakeError(reason))

    def _note_state(self) -> None:
        if self.connected and self._reported_down:
            self._reported_down = False
            self.refusal = None
            log.warn("Redis at {redis} is reachable again", redis=self._name)
        elif self.lost and not self._reported_down and not self._factory.stopped:
            self._reported_down = True
            log.warn(
                "lost the connection to Redis at {redis}; new runs are refused (503) "
                "until it is back (reconnecting)",
                redis=self._name,
            )

    def _up(self, _: object) -> None:
        self._ever_connected = True
        waiting, self._first = self._first, []
        for d, _ in waiting:
            d.callback(None)

    @property
    def connected(self) -> bool:
        return bool(self._factory.size) and not self._factory.stopped

    @property
    def lost(self) -> bool:
        """True when the connection is down after having been up (or closed):
        commands fail now. Before the first connection commands wait."""
        return not self.connected and (self._ever_connected or self._factory.stopped)

    def wait_connected(self, timeout: float, *, refusal_fails: bool = False) -> Deferred[None]:
        """Fires once the first connection is up; fails with
        RedisUnavailableError when none is within ``timeout`` seconds.

        :param refusal_fails: fail at the first refused handshake instead
            (RedisHandshakeError with Redis' reply): a one-shot check.
        """
        if self._ever_connected:
            return succeed(None)
        d: Deferred[None] = Deferred()
        waiter = (d, refusal_fails)
        self._first.append(waiter)

        def expire() -> None:
            if not d.called:
                self._first.remove(waiter)
                why = f" (handshake: {self.refusal})" if self.refusal else ""
                d.errback(RedisUnavailableError(f"no connection within {timeout:g}s{why}"))

        timer = self._clock.callLater(timeout, expire)

        def stop_timer(result: object) -> object:
            if timer.active():
                timer.cancel()
            return result

        return d.addBoth(stop_timer)

    def execute(self, *args: str | int | float | bytes) -> Deferred[Any]:
        if not self.connected:
            if not self._ever_connected and not self._factory.stopped:
                # Starting up: wait a little for the first connection.
                return self.wait_connected(5.0).addCallback(lambda _: self.execute(*args))
            return fail(RedisUnavailableError("Redis is not reachable"))
        self.commands += 1
        d: Deferred[Any] = self._factory.handler.execute_command(*args)
        return d.addErrback(self._translate, args)

    def _translate(self, failure: Failure, args: Sequence[object]) -> Failure:
        """Our errors for txredisapi's; a refusal or a wrong-type key is logged
        here, once (not once per request that meets it)."""
        import txredisapi

        error = failure.value
        if isinstance(error, txredisapi.ResponseError):
            reply = str(error)
            code = reply.split(" ", 1)[0]
            if code == "ERR" and _script_acl_refusal(reply):
                code = "NOPERM"
            if code in REFUSAL_CODES:
                self._log_refusal(code, reply)
                return _failure(RedisRefusedError(code, reply))
            if code == "WRONGTYPE":
                named = _SCRIPT_WRONG_TYPE.match(reply)
                keys = (named.group(1),) if named else _command_keys(args)
                if len(self._wrong_type_logged) < 1000 and keys not in self._wrong_type_logged:
                    self._wrong_type_logged.add(keys)
                    log.error(
                        "Redis at {redis}: {which} holds the wrong type; requests that use "
                        "it are refused (503) until it is deleted or renamed: {reply}",
                        redis=self._name,
                        which=f"the key {keys[0]}"
                        if len(keys) == 1
                        else f"a key (one of: {', '.join(keys)})",
                        reply=reply,
                    )
                return _failure(RedisKeyTypeError(keys, reply))
            return _failure(RedisCommandError(reply))
        if isinstance(error, txredisapi.ConnectionError | ConnectionError) and not isinstance(
            error, SharedStateUnavailableError
        ):
            return _failure(RedisUnavailableError(f"Redis connection lost ({error})"))
        return failure

    def _log_refusal(self, code: str, reply: str) -> None:
        now = self._clock.seconds()
        last, count = self._refusals.get(code, (None, 0))
        if last is not None and now - last < REFUSAL_LOG_INTERVAL:
            self._refusals[code] = (last, count + 1)
            return
        self._refusals[code] = (now, 0)
        log.warn(
            "Redis at {redis} refuses commands: {reply}; the requests that need it "
            "are answered 503{since}",
            redis=self._name,
            reply=reply,
            since=f" ({count} more refused since the last warning)" if count else "",
        )

    def run_script(
        self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int | float]
    ) -> Deferred[Any]:
        sha = script.sha
        if sha in self._loaded:
            d = self.execute("EVALSHA", sha, len(keys), *keys, *args)

            def reload(failure: Failure) -> Deferred[Any] | Failure:
                error = failure.value
                if isinstance(error, RedisCommandError) and "NOSCRIPT" in str(error):
                    self._loaded.discard(sha)
                    return self.run_script(script, keys, args)
                return failure

            return d.addErrback(reload)
        d = self.execute("EVAL", script.source, len(keys), *keys, *args)

        def loaded(reply: Any) -> Any:
            self._loaded.add(sha)
            return reply

        return d.addCallback(loaded)

    def close(self) -> Deferred[None]:
        d: Deferred[None] = self._factory.disconnect()
        return d.addCallback(lambda _: None)


def _script_acl_refusal(reply: str) -> bool:
    """An ACL refusing a command a script runs: Redis answers ``ERR The user
    executing the script can't run this command`` (or ``can't access`` a key,
    ``can't publish to the channel``), not ``NOPERM`` as outside a script."""
    return "user executing the script can't" in reply or "can't access" in reply


def _failure(error: BaseException) -> Failure:
    return Failure(error)  # type: ignore[no-untyped-call]  # unannotated in Twisted


def _command_keys(args: Sequence[object]) -> tuple[str, ...]:
    """The keys a command names: a script's ``KEYS``, else its first argument."""
    name = str(args[0]).upper() if args else ""
    if name in ("EVAL", "EVALSHA") and len(args) > 2:
        try:
            count = int(str(args[2]))
        except ValueError:
            return ()
        return tuple(str(a) for a in args[3 : 3 + count])
    return (str(args[1]),) if len(args) > 1 else ()


def _redact(reason: str, secret: str | None) -> str:
    return reason.replace(secret, "***") if secret else reason


def _handshaking(base: type, refused: Callable[[str], None], secret: str | None) -> type:
    """``base`` (a ``txredisapi`` protocol) with a handshake that keeps the
    factory reconnecting.

    ``txredisapi``'s ``connectionMade`` calls ``factory.stopTrying()`` when
    ``AUTH`` or ``SELECT`` fails or times out, so one refused reconnect (a
    password changed for a moment, ``maxclients`` reached, Redis busy) left the
    process without Redis until it was restarted. Here the connection is
    dropped, ``refused(reason)`` is told (the password never appears in it),
    and the slot's backoff tries again; ``connectionMade`` fires True once the
    connection is usable, False when it was refused.
    """

    class Handshaking(base):  # type: ignore[misc]  # untyped base
        def __init__(
            self, *args: Any, password: str | None = None, dbid: int | None = None, **kw: Any
        ) -> None:
            # The base's own handshake then has nothing to do but mark the
            # connection ready (it never sees a password or a database).
            super().__init__(*args, password=None, dbid=None, **kw)
            self._auth_password = password
            self._dbid = dbid

        def connectionMade(self) -> Deferred[bool]:
            import txredisapi

            def checked(reply: Any) -> Any:
                if isinstance(reply, Exception):  # txredisapi may hand errors back
                    raise reply
                return reply

            d: Deferred[Any] = succeed(None)
            if self._auth_password is not None:
                d.addCallback(lambda _: self.auth(self._auth_password, self.username))
                d.addCallback(checked)
            if self._dbid is not None:
                d.addCallback(lambda _: self.select(self._dbid))
                d.addCallback(checked)

            def accepted(_: object) -> bool:
                super(Handshaking, self).connectionMade()  # marks it ready, at once
                return True

            def failed(failure: Failure) -> bool:
                self.transport.loseConnection()
                error = failure.value
                reason = (
                    str(error)
                    if isinstance(error, txredisapi.RedisError) and str(error)
                    else f"{type(error).__name__}: {error}"
                )
                refused(_redact(reason, secret))
                return False

            return d.addCallbacks(accepted, failed)

    return Handshaking


def open_client(
    reactor: IReactorTime,
    url: RedisUrl,
    *,
    connect_timeout: float = 5.0,
    reply_timeout: float = DEFAULT_REPLY_TIMEOUT,
) -> TxRedisClient:
    """A client that starts connecting to ``url`` now (once the reactor runs)
    and reconnects by itself with backoff (0.2 s up to 2 s) after a loss."""
    import txredisapi

    factory = txredisapi.RedisFactory(
        url.redacted(),
        url.db,
        1,
        isLazy=False,
        handler=txredisapi.ConnectionHandler,
        charset="utf-8",
        password=url.password,
        replyTimeout=reply_timeout,
        convertNumbers=False,
        username=url.username,
    )
    factory.maxDelay = 2.0
    factory.initialDelay = 0.2
    client = TxRedisClient(factory, reactor, name=url.redacted())
    factory.protocol = _handshaking(
        txredisapi.RedisProtocol, client.handshake_refused, url.password
    )
    factory.startConnecting(endpoint_for(reactor, url, connect_timeout))
    return client


class Subscription(Protocol):
    """A pub/sub connection (see :func:`open_subscriber`)."""

    def close(self) -> Deferred[None]:
        """Stop reconnecting and close the connection."""
        ...


class _SubscriberHandle:
    def __init__(self, factory: Any) -> None:
        self._factory = factory

    def close(self) -> Deferred[None]:
        d: Deferred[None] = self._factory.disconnect()
        return d.addCallback(lambda _: None)


def open_subscriber(
    reactor: IReactorTime,
    url: RedisUrl,
    channel: str,
    on_message: Callable[[str], None],
    on_subscribed: Callable[[], None],
    *,
    connect_timeout: float = 5.0,
) -> Subscription:
    """A connection subscribed to ``channel`` (again after every reconnect,
    then ``on_subscribed()``); each message's text goes to ``on_message``."""
    import txredisapi

    where = url.redacted()
    refusal: list[str] = []

    def refused(reason: str) -> None:
        if refusal != [reason]:
            log.warn(
                "Redis at {redis} did not complete the pub/sub connection handshake: "
                "{reason}; retrying",
                redis=where,
                reason=reason,
            )
        refusal[:] = [reason]

    base = _handshaking(txredisapi.SubscriberProtocol, refused, url.password)
    #: Why the last SUBSCRIBE was refused (logged once per reason).
    subscribe_refusal: list[str] = []

    def subscribe_failed(failure: Failure) -> None:
        why = str(failure.value)
        if subscribe_refusal == [why]:
            return
        subscribe_refusal[:] = [why]
        if "NOPERM" in why:
            log.warn(
                "Redis at {redis} refuses to SUBSCRIBE to {channel}: {why}; runs, events and "
                "approvals of other instances do not reach this one until the ACL allows it "
                "(+subscribe and the channel, e.g. &{channel})",
                redis=where,
                channel=channel,
                why=why,
            )
        else:
            log.warn("Redis subscribe to {channel} failed: {why}", channel=channel, why=why)

    class _Subscriber(base):  # type: ignore[misc,valid-type]  # untyped base
        def connectionMade(self) -> Any:
            ready = super().connectionMade()

            def subscribe(usable: bool) -> Any:
                if not usable:
                    return None
                if refusal:
                    refusal.clear()
                    log.warn("Redis at {redis} accepts the pub/sub connection again", redis=where)
                return self.subscribe([channel]).addCallback(lambda _: on_subscribed())

            ready.addCallback(subscribe)
            ready.addErrback(subscribe_failed)
            return ready

        def messageReceived(self, pattern: Any, name: Any, message: Any) -> None:
            try:
                on_message(message.decode("utf-8") if isinstance(message, bytes) else message)
            except Exception:
                log.failure("handling a Redis pub/sub message")

    factory = txredisapi.RedisFactory(
        url.redacted() + "#sub",
        None,
        1,
        isLazy=True,
        handler=txredisapi.ConnectionHandler,
        charset="utf-8",
        password=url.password,
        convertNumbers=False,
        username=url.username,
    )
    factory.protocol = _Subscriber
    factory.maxDelay = 2.0
    factory.initialDelay = 0.2
    factory.startConnecting(endpoint_for(reactor, url, connect_timeout))
    return _SubscriberHandle(factory)
