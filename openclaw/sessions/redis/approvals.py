"""Exec approvals across instances over Redis: the
:class:`~openclaw.core.relay.ApprovalRelay` of the Redis store.

* A pending request is a field of one hash (approval id -> the request, with
  its owner instance); it is listed by ``exec.approval.list`` on any
  instance until it is answered, withdrawn by its owner (timeout, cancelled
  run) or its expiry passes, or its owner's heartbeat is gone (killed).
* Answering removes the field in a script that publishes the resolution in
  the same step: the first answer wins, later ones find nothing, and the
  owner (which runs the command) and every instance's operators learn it
  over the instances' pub/sub channel (shared with :mod:`.relay`).
* Each instance keeps its number of connected operator clients in another
  hash; a request nobody on a live instance could see is unanswered at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from openclaw.core.relay import ApprovalSink
from openclaw.sessions.redis.client import LuaScript, RedisCommands, RedisUnavailableError
from openclaw.sessions.redis.keys import KeySchema
from openclaw.sessions.redis.relay import RedisRunRelay

log = Logger()

#: The channel message kind approvals use (the run relay hands them over).
KIND = "apr"

#: KEYS: approvals hash, approvers hash. ARGV: id, record, channel, message,
#: owner, instance key prefix. Shares the request, announces it; returns the
#: operator clients of the other live instances.
REQUEST = LuaScript(
    "approval_request",
    """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
local flat = redis.call('HGETALL', KEYS[2])
local n = 0
for i = 1, #flat, 2 do
  if flat[i] ~= ARGV[5] then
    if redis.call('EXISTS', ARGV[6] .. flat[i]) == 1 then
      n = n + (tonumber(flat[i + 1]) or 0)
    else
      redis.call('HDEL', KEYS[2], flat[i])
    end
  end
end
return n
""",
)

#: KEYS: approvals hash. ARGV: id, channel, message. The first caller removes
#: the request and announces the resolution (1); later ones get 0.
RESOLVE = LuaScript(
    "approval_resolve",
    """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
""",
)

#: KEYS: approvals hash. ARGV: instance key prefix. The requests still waiting
#: (as JSON); drops those past their expiry or whose owner is gone.
LIST = LuaScript(
    "approval_list",
    """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local flat = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #flat, 2 do
  local ok, rec = pcall(cjson.decode, flat[i + 1])
  if ok and type(rec) == 'table' and tonumber(rec['expiresAtMs']) ~= nil
      and tonumber(rec['expiresAtMs']) > now_ms
      and redis.call('EXISTS', ARGV[1] .. tostring(rec['owner'])) == 1 then
    table.insert(out, flat[i + 1])
  else
    redis.call('HDEL', KEYS[1], flat[i])
  end
end
return out
""",
)


class RedisApprovalRelay:
    """Pending exec approvals shared by the instances on one Redis."""

    def __init__(
        self,
        client: RedisCommands,
        *,
        bus: RedisRunRelay,
        owner: str,
        channel: str,
        schema: KeySchema | None = None,
    ) -> None:
        """
        :param bus: the run relay whose channel subscription and instance
            heartbeat this relay shares.
        """
        self._client = client
        self._bus = bus
        self._owner = owner
        self._channel = channel
        self._schema = schema if schema is not None else KeySchema()
        self._sink: ApprovalSink | None = None
        self._operators = 0

    def _message(self, fields: Mapping[str, Any]) -> str:
        return json.dumps({"t": KIND, **fields, "o": self._owner}, separators=(",", ":"))

    def _quiet(self, d: Deferred[Any]) -> None:
        d.addErrback(lambda f: log.debug("approval relay: {why}", why=str(f.value)))

    # -- ApprovalRelay ---------------------------------------------------------------

    def attach_approvals(self, sink: ApprovalSink) -> None:
        self._sink = sink
        self._bus.share_channel(KIND, self._received, self._announce)

    def request(self, approval_id: str, record: Mapping[str, Any]) -> Deferred[int]:
        if self._client.lost:
            return fail(RedisUnavailableError("the session store (Redis) is unreachable"))
        stored = json.dumps({**record, "owner": self._owner}, separators=(",", ":"))
        d = self._client.run_script(
            REQUEST,
            [self._schema.approvals(), self._schema.approvers()],
            [
                approval_id,
                stored,
                self._channel,
                self._message({"k": "req", "x": dict(record)}),
                self._owner,
                self._schema.instance_prefix(),
            ],
        )
        return d.addCallback(lambda n: int(n or 0))

    def resolve(self, approval_id: str, decision: str, ts: int, source: str) -> Deferred[bool]:
        if self._client.lost:
            return fail(RedisUnavailableError("the session store (Redis) is unreachable"))
        message = self._message(
            {"k": "res", "i": approval_id, "d": decision, "ts": ts, "s": source}
        )
        d = self._client.run_script(
            RESOLVE, [self._schema.approvals()], [approval_id, self._channel, message]
        )
        return d.addCallback(lambda won: str(won) == "1")

    def pending(self) -> Deferred[Sequence[Mapping[str, Any]]]:
        if self._client.lost:
            return fail(RedisUnavailableError("the session store (Redis) is unreachable"))

        def parsed(raw: Any) -> Sequence[Mapping[str, Any]]:
            records = []
            for item in raw or ():
                try:
                    record = json.loads(item)
                except (TypeError, ValueError):
                    continue
                if isinstance(record, dict):
                    records.append(record)
            return records

        d = self._client.run_script(
            LIST, [self._schema.approvals()], [self._schema.instance_prefix()]
        )
        return d.addCallback(parsed)

    def operators(self, count: int) -> None:
        self._operators = count
        self._announce()

    def _announce(self) -> None:
        """Keep this instance's operator count in Redis (again after a reconnect:
        the server may have restarted empty)."""
        if self._client.lost:
            return
        key = self._schema.approvers()
        if self._operators > 0:
            self._quiet(self._client.execute("HSET", key, self._owner, self._operators))
        else:
            self._quiet(self._client.execute("HDEL", key, self._owner))

    # -- the channel -------------------------------------------------------------------

    def _received(self, message: Mapping[str, Any]) -> None:
        sink = self._sink
        if sink is None:
            return
        kind = message.get("k")
        if kind == "req":
            record = message.get("x")
            if isinstance(record, dict):
                sink.remote_requested(record)
        elif kind == "res":
            approval_id, ts = message.get("i"), message.get("ts")
            if isinstance(approval_id, str) and isinstance(ts, int):
                sink.remote_resolved(
                    approval_id, str(message.get("d")), ts, str(message.get("s") or "operator")
                )
