"""The Redis session backend: state several gateway processes share.

``session.store: "redis"`` puts sessions, transcripts and session lanes in
Redis (``gateway.redis.url``), so any instance can serve any request:

* :mod:`.url`: the connection URL (``redis://``, ``rediss://``, unix sockets);
* :mod:`.client`: a small typed client over ``txredisapi`` that fails fast
  while Redis is unreachable (:class:`~.client.RedisUnavailableError`);
* :mod:`.keys`: the key schema (one place that names Redis keys);
* :mod:`.scripts`: the Lua scripts (lane lock, renewal, fenced appends);
* :mod:`.lanes`: :class:`~.lanes.RedisLanes`, session lanes across processes
  (FIFO, a lock with a TTL renewed while the run lives, a fencing token);
* :mod:`.store`: :class:`~.store.RedisSessionStore`, the
  :class:`~openclaw.sessions.interface.TranscriptStore` over Redis, reading
  through this process' mirror (:mod:`.mirror`, :mod:`.transcript`);
* :mod:`.relay`: runs, events and the failed-auth budget across instances;
* :mod:`.backend`: building all of it from the config, the start-up probe;
* :mod:`.export`: OpenClaw's on-disk layout to and from Redis.

Importing this package does not import ``txredisapi`` (which installs the
global reactor when imported): :func:`~.client.connect` does, when called.
"""
