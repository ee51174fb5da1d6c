"""The Lua scripts: each runs atomically in Redis, so a check and the write
it guards cannot be separated by another client's command.

Lane lock (:data:`ACQUIRE`, :data:`RENEW`, :data:`RELEASE`): the lock value is
``<fence>:<owner>``, where ``<fence>`` comes from one ever-increasing counter,
so every grant has a token no earlier grant had. Waiters queue FIFO by
ticket; a waiter whose heartbeat expired (its process died) is dropped from
the head of the queue, so a dead waiter cannot block the lane.

Transcript writes (:data:`APPEND`) carry the writer's token: the script
appends only while the lock still holds exactly that token. A holder that
stalled past its TTL (or was killed and its lane taken over) writes nothing:
it cannot interleave with, or corrupt, the next holder's turn.
"""

from __future__ import annotations

from openclaw.sessions.redis.client import LuaScript

#: KEYS: lock, queue, fence counter, ticket counter.
#: ARGV: ticket ('' for a new one), owner, ttl ms.
#: Returns {1, token} when granted, else {0, ticket}.
ACQUIRE = LuaScript(
    "acquire",
    """
local ticket = ARGV[1]
local ttl = tonumber(ARGV[3])
if ticket == '' then
  ticket = tostring(redis.call('INCR', KEYS[4]))
end
if redis.call('ZSCORE', KEYS[2], ticket) == false then
  redis.call('ZADD', KEYS[2], tonumber(ticket), ticket)
end
redis.call('SET', KEYS[2] .. ':w:' .. ticket, '1', 'PX', ttl)
redis.call('PEXPIRE', KEYS[2], ttl * 4)
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, ticket}
end
while true do
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if head == ticket then break end
  if redis.call('EXISTS', KEYS[2] .. ':w:' .. head) == 1 then
    return {0, ticket}
  end
  redis.call('ZREM', KEYS[2], head)
end
redis.call('ZREM', KEYS[2], ticket)
redis.call('DEL', KEYS[2] .. ':w:' .. ticket)
local token = tostring(redis.call('INCR', KEYS[3])) .. ':' .. ARGV[2]
redis.call('SET', KEYS[1], token, 'PX', ttl)
return {1, token}
""",
)

#: KEYS: lock. ARGV: token, ttl ms. Returns 1 while the token holds, else 0.
RENEW = LuaScript(
    "renew",
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
""",
)

#: KEYS: lock, queue. ARGV: token, ticket ('' when none).
#: Deletes the lock if the token still holds it; forgets the ticket.
RELEASE = LuaScript(
    "release",
    """
if ARGV[2] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('DEL', KEYS[2] .. ':w:' .. ARGV[2])
end
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
""",
)

#: KEYS: lock ('' name allowed when unfenced), transcript list, index hash, agents set,
#: the agent's stateless sessions (sorted set).
#: ARGV: token ('' = no fence), session key, sessionId, index entry JSON
#: ('' = leave the index), mode ('create' | 'update'), header line, agent,
#: stateless cap (0: not a stateless session), now ms, the agent's transcript
#: key prefix, lines...
#: Creating a stateless session past the cap (plus a tenth) drops the oldest
#: ones (entry and transcript), as the file store's maintenance does.
#: Appends ``lines`` (and the header first when the list is new) and sets the
#: index entry, or nothing at all: error ``FENCED`` when the token no longer
#: holds the lane, ``STALE`` when the session was reset or deleted meanwhile.
APPEND = LuaScript(
    "append",
    """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the session lane was lost to another holder')
end
local current = redis.call('HGET', KEYS[3], ARGV[2])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and decoded['sessionId'] ~= ARGV[3] then
    return redis.error_reply('STALE the session was reset')
  end
elseif ARGV[5] ~= 'create' then
  return redis.error_reply('STALE the session was deleted')
end
if redis.call('EXISTS', KEYS[2]) == 0 and ARGV[6] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[6])
end
if #ARGV > 10 then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 11))
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
  redis.call('SADD', KEYS[4], ARGV[7])
end
local cap = tonumber(ARGV[8])
if cap > 0 and ARGV[5] == 'create' then
  redis.call('ZADD', KEYS[5], tonumber(ARGV[9]), ARGV[2])
  local count = redis.call('ZCARD', KEYS[5])
  if count > cap + math.max(1, math.floor(cap / 10)) then
    for _, old in ipairs(redis.call('ZRANGE', KEYS[5], 0, count - cap - 1)) do
      local raw = redis.call('HGET', KEYS[3], old)
      if raw then
        local ok, decoded = pcall(cjson.decode, raw)
        if ok and type(decoded) == 'table' and type(decoded['sessionId']) == 'string' then
          redis.call('DEL', ARGV[10] .. decoded['sessionId'])
        end
        redis.call('HDEL', KEYS[3], old)
      end
      redis.call('ZREM', KEYS[5], old)
    end
  end
end
return redis.call('LLEN', KEYS[2])
""",
)

#: KEYS: index hashes of every agent. ARGV: session key, transcript key prefix,
#: agent ids (same order as KEYS), max lines, then per agent the sessionId and
#: transcript length the caller already holds ('' and 0: none).
#: Returns, per agent: entry JSON (or ''), transcript lines (only those past
#: the held length when the caller holds that session's transcript, else the
#: newest ``max``), the transcript's length, and 1 if the lines are only the new ones.
# The session read as a Lua function over KEYS/ARGV from offsets, shared by
# READ_SESSION and ACQUIRE_READ (a lane grant that reads in the same trip).
# ``wrong_type`` runs first, before anything is written: a Lua error half-way
# keeps what the script wrote (ACQUIRE_READ's lock), and the transcript's key
# is built here from ARGV, so Redis' own WRONGTYPE would not name it. It
# returns an error reply naming the key of another type (the client's
# RedisKeyTypeError reads the name from it), or nil.
_READ_FUNCTION = """
local function wrong_type(kb, ab, n)
  for i = 1, n do
    local index = KEYS[kb + i]
    local found = redis.call('TYPE', index)['ok']
    if found ~= 'hash' and found ~= 'none' then
      return redis.error_reply('WRONGTYPE key ' .. index .. ' holds a ' .. found .. ', not a hash')
    end
    local entry = redis.call('HGET', index, ARGV[ab + 1])
    if entry then
      local ok, decoded = pcall(cjson.decode, entry)
      local sid = ok and type(decoded) == 'table' and decoded['sessionId']
      if type(sid) == 'string' then
        local tx = ARGV[ab + 2] .. ARGV[ab + 2 + i] .. ':' .. sid
        found = redis.call('TYPE', tx)['ok']
        if found ~= 'list' and found ~= 'none' then
          return redis.error_reply('WRONGTYPE key ' .. tx .. ' holds a ' .. found .. ', not a list')
        end
      end
    end
  end
  return nil
end

local function read_session(kb, ab, n)
  local out = {}
  local limit = tonumber(ARGV[ab + 3 + n])
  for i = 1, n do
    local index = KEYS[kb + i]
    local held_sid = ARGV[ab + 3 + n + 2 * i - 1]
    local held_len = tonumber(ARGV[ab + 3 + n + 2 * i])
    local entry = redis.call('HGET', index, ARGV[ab + 1])
    local lines, len, fresh = {}, 0, 0
    if entry then
      local ok, decoded = pcall(cjson.decode, entry)
      local sid = ok and type(decoded) == 'table' and decoded['sessionId']
      if type(sid) == 'string' then
        local tx = ARGV[ab + 2] .. ARGV[ab + 2 + i] .. ':' .. sid
        len = redis.call('LLEN', tx)
        if sid == held_sid and held_len > 0 and len >= held_len and len - held_len <= limit then
          lines = redis.call('LRANGE', tx, held_len, -1)
          fresh = 1
        else
          lines = redis.call('LRANGE', tx, -limit, -1)
        end
      end
    else
      entry = ''
    end
    table.insert(out, entry)
    table.insert(out, lines)
    table.insert(out, len)
    table.insert(out, fresh)
  end
  return out
end
"""

READ_SESSION = LuaScript(
    "read_session",
    _READ_FUNCTION
    + """
local bad = wrong_type(0, 0, #KEYS)
if bad then return bad end
return read_session(0, 0, #KEYS)
""",
)

#: :data:`ACQUIRE`, and once granted :data:`READ_SESSION` in the same script.
#: KEYS: lock, queue, fence counter, ticket counter, the agents' index hashes.
#: ARGV: ticket, owner, ttl ms, then READ_SESSION's ARGV.
#: Returns {1, token, <READ_SESSION's reply>...} or {0, ticket}; a key of the
#: session of another type is an error naming it, with nothing written (no
#: ticket, no lock left to expire).
ACQUIRE_READ = LuaScript(
    "acquire_read",
    _READ_FUNCTION
    + """
local bad = wrong_type(4, 3, #KEYS - 4)
if bad then return bad end
"""
    + ACQUIRE.source.replace(
        "return {1, token}", "return {1, token, unpack(read_session(4, 3, #KEYS - 4))}"
    ),
)

#: KEYS: index hash, agents set.
#: ARGV: session key, the entry expected there ('' = none, '*' = whatever is
#: there), new entry JSON ('' = delete the entry), agent, the archive's time to
#: live in ms ('' = kept), the agent's transcript key prefix, its archive key
#: prefix, the archive name's tail (``.jsonl.reset.<time>``).
#: Reads the entry *Redis* holds (not the caller's copy, which another
#: instance may have changed): when it is not the expected one, changes
#: nothing and returns {0, current entry or ''} (the caller builds the new
#: entry from it and tries again); else archives the transcript that entry
#: names (renamed, as OpenClaw renames the file), replaces or removes the
#: entry and returns {1, previous entry or ''}.
REPLACE = LuaScript(
    "replace",
    """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] ~= '*' and (current or '') ~= ARGV[2] then
  return {0, current or ''}
end
if current then
  local ok, decoded = pcall(cjson.decode, current)
  local sid = ok and type(decoded) == 'table' and decoded['sessionId']
  if type(sid) == 'string' and sid ~= '' and redis.call('EXISTS', ARGV[6] .. sid) == 1 then
    local archive = ARGV[7] .. sid .. ARGV[8]
    redis.call('RENAME', ARGV[6] .. sid, archive)
    if ARGV[5] ~= '' then
      redis.call('PEXPIRE', archive, ARGV[5])
    end
  end
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[4])
end
return {1, current or ''}
""",
)

#: KEYS: runs hash, outcome key. ARGV: run id, outcome JSON, ttl s, channel, message.
#: Forgets the active run, keeps its outcome for ``agent.wait``, tells everyone.
FINISH_RUN = LuaScript(
    "finish_run",
    """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
""",
)

#: KEYS: runs hash. ARGV: instance key prefix.
#: Active runs of live instances, flat: run id, session key, owner, ...; runs
#: whose instance stopped heartbeating are left out (:data:`REAP_RUNS` ends them).
LIST_RUNS = LuaScript(
    "list_runs",
    """
local flat = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #flat, 2 do
  local ok, run = pcall(cjson.decode, flat[i + 1])
  if ok and type(run) == 'table' and redis.call('EXISTS', ARGV[1] .. tostring(run['o'])) == 1 then
    table.insert(out, flat[i])
    table.insert(out, tostring(run['k']))
    table.insert(out, tostring(run['o']))
  end
end
return out
""",
)

#: KEYS: runs hash, the session's lane lock. ARGV: instance key prefix, session
#: key, this instance. 1 while another live instance has a run on the session
#: *and* the session's lock is held: a killed instance's run stops counting
#: when its lock expires (``lockTtlSeconds``), not only when its heartbeat does.
SESSION_BUSY = LuaScript(
    "session_busy",
    """
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local ok, run = pcall(cjson.decode, flat[i + 1])
  if ok and type(run) == 'table' and tostring(run['k']) == ARGV[2]
      and tostring(run['o']) ~= ARGV[3]
      and redis.call('EXISTS', ARGV[1] .. tostring(run['o'])) == 1 then
    return 1
  end
end
return 0
""",
)

# Ending the run of an instance that stopped heartbeating (it was killed): the
# entry goes, an error outcome is kept for ``agent.wait`` (unless the run
# recorded one) and announced on the channel as the instance would have, and
# its idempotency claim is dropped (a resent key runs the turn again).
# reap(runs, run id, entry JSON, ctx): ctx is ARGV from ``at``: instance
# prefix, outcome key prefix, claim key prefix, ttl s, channel, this instance,
# now ms. The outcome (a table) when the run's owner is gone, else nil.
_REAP_FUNCTION = """
local function reap(runs, run_id, raw, at)
  local inst, outcomes, claims = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local ttl, channel, reaper, now = tonumber(ARGV[at + 3]), ARGV[at + 4], ARGV[at + 5],
    tonumber(ARGV[at + 6])
  local ok, run = pcall(cjson.decode, raw)
  if ok and type(run) == 'table' and redis.call('EXISTS', inst .. tostring(run['o'])) == 1 then
    return nil
  end
  redis.call('HDEL', runs, run_id)
  if not ok or type(run) ~= 'table' then
    return nil
  end
  local key = tostring(run['k'])
  local outcome = {
    run_id = run_id, status = 'error', session_key = key,
    agent_id = string.match(key, '^agent:([^:]+):') or '', ended_at = now,
    error = 'the gateway instance running this run stopped before it ended',
  }
  local stored = outcomes .. redis.sha1hex(run_id)
  redis.call('DEL', claims .. redis.sha1hex(run_id))
  if redis.call('SET', stored, cjson.encode(outcome), 'NX', 'EX', ttl) then
    redis.call('PUBLISH', channel, cjson.encode({t = 'done', r = run_id, x = outcome, o = reaper}))
  end
  return outcome
end
"""

#: KEYS: runs hash. ARGV: instance prefix, outcome key prefix, claim key prefix,
#: ttl s, channel, this instance, now ms. Ends the runs of instances that stopped heartbeating
#: (see ``reap``); returns them flat: run id, outcome JSON, ...
REAP_RUNS = LuaScript(
    "reap_runs",
    _REAP_FUNCTION
    + """
local flat = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #flat, 2 do
  local outcome = reap(KEYS[1], flat[i], flat[i + 1], 1)
  if outcome then
    table.insert(out, flat[i])
    table.insert(out, cjson.encode(outcome))
  end
end
return out
""",
)

#: KEYS: outcome key, runs hash. ARGV: run id, then :data:`REAP_RUNS`' ARGV.
#: The run's outcome JSON; a run whose instance stopped heartbeating is ended
#: now (see ``reap``); nil while it runs (or is unknown).
RUN_OUTCOME = LuaScript(
    "run_outcome",
    _REAP_FUNCTION
    + """
local done = redis.call('GET', KEYS[1])
if done then
  return done
end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then
  return false
end
local outcome = reap(KEYS[2], ARGV[1], raw, 2)
if outcome then
  return cjson.encode(outcome)
end
return false
""",
)

#: KEYS: the client's failures (sorted set). ARGV: now ms, window ms, max attempts,
#: member, channel, lock message. Counts a failure within the sliding window;
#: at the limit forgets them and announces the lockout (returns 1).
AUTH_FAILED = LuaScript(
    "auth_failed",
    """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[5], ARGV[6])
  return 1
end
return 0
""",
)

#: KEYS: the claim, the run's outcome. ARGV: owner, ttl s, instance key prefix.
#: 1 when the claim is (or already was) this owner's, 0 when another live
#: instance holds it or its run ended. A claim whose instance stopped
#: heartbeating (killed) before its run ended is taken over: the run starts
#: again here, rather than answering ``in_flight`` until the claim expires. A
#: new claim forgets the outcome of the key's run that was lost with its
#: instance (``reap`` dropped that run's claim).
CLAIM_RUN = LuaScript(
    "claim_run",
    """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then
  redis.call('DEL', KEYS[2])
  return 1
end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return 1
end
if holder and redis.call('EXISTS', ARGV[3] .. holder) == 0
    and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
  return 1
end
return 0
""",
)

#: KEYS: runs hash. ARGV: run id, ``{"k": session key, "o": instance}``.
#: (A script rather than a bare HSET so every command the gateway sends in a
#: turn is one ``EVALSHA``: the benchmark counts round trips that way.)
START_RUN = LuaScript(
    "start_run",
    """
return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
""",
)
