"""The Redis key schema: every key the backend uses is named here.

``<p>`` is the prefix (default ``openclaw:``), so several gateways (or
tests) can share one Redis database:

* ``<p>idx:<agent>``: hash, session key -> the ``sessions.json`` entry (JSON);
* ``<p>tx:<agent>:<sessionId>``: list, the transcript's JSONL lines (header first);
* ``<p>arch:<agent>:<sessionId>.jsonl.<why>.<time>``: an archived transcript
  (reset/deleted), renamed from its ``tx`` key as OpenClaw renames the file;
* ``<p>lane:<h>`` / ``<p>laneq:<h>`` / ``<p>laneq:<h>:w:<ticket>``: a session
  lane's lock (``<fence>:<owner>``, with a TTL), its FIFO queue of waiting
  tickets, and each waiter's heartbeat; ``<h>`` hashes the session key so
  no key text reaches a key name;
* ``<p>fence`` / ``<p>ticket``: the counters fencing tokens and tickets come from;
* ``<p>runs`` / ``<p>run:<h>`` / ``<p>inst:<id>``: active runs, finished runs'
  outcomes, and each instance's heartbeat (:mod:`.relay`); ``<p><db>:bus`` is
  the instances' pub/sub channel;
* ``<p>approvals`` / ``<p>approvers``: pending exec approvals and each
  instance's count of operator clients (:mod:`.approvals`).
"""

from __future__ import annotations

import hashlib

from attrs import frozen

DEFAULT_PREFIX = "openclaw:"


def key_hash(session_key: str) -> str:
    """A fixed-length name for ``session_key`` (any text, even lone surrogates)."""
    data = session_key.encode("utf-8", "surrogatepass")
    return hashlib.sha1(data).hexdigest()  # a name, not a secret


@frozen
class KeySchema:
    """Key names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def index(self, agent: str) -> str:
        return f"{self.prefix}idx:{agent}"

    def transcript(self, agent: str, session_id: str) -> str:
        return f"{self.prefix}tx:{agent}:{session_id}"

    def transcript_prefix(self) -> str:
        """What a script prepends to ``<agent>:<sessionId>`` to name a transcript."""
        return f"{self.prefix}tx:"

    def archived(self, agent: str, name: str) -> str:
        return f"{self.prefix}arch:{agent}:{name}"

    def lock(self, session_key: str) -> str:
        return f"{self.prefix}lane:{key_hash(session_key)}"

    def queue(self, session_key: str) -> str:
        return f"{self.prefix}laneq:{key_hash(session_key)}"

    def fence_counter(self) -> str:
        return f"{self.prefix}fence"

    def ticket_counter(self) -> str:
        return f"{self.prefix}ticket"

    def runs(self) -> str:
        """Hash of active runs: run id -> ``{"k": session key, "o": instance}``."""
        return f"{self.prefix}runs"

    def run_outcome(self, run_id: str) -> str:
        """How a run ended (``agent.wait`` on another instance), kept a while."""
        return f"{self.prefix}run:{key_hash(run_id)}"

    def run_outcome_prefix(self) -> str:
        """What :meth:`run_outcome` names start with (scripts add the hash)."""
        return f"{self.prefix}run:"

    def run_claim_prefix(self) -> str:
        """What :meth:`run_claim` names start with (scripts add the hash)."""
        return f"{self.prefix}claim:"

    def instance(self, owner: str) -> str:
        """An instance's heartbeat (its runs count as active only while it lives)."""
        return f"{self.instance_prefix()}{owner}"

    def instance_prefix(self) -> str:
        return f"{self.prefix}inst:"

    def bus(self, db: int) -> str:
        """The pub/sub channel of the instances (channels ignore the database)."""
        return f"{self.prefix}{db}:bus"

    def stateless(self, agent: str) -> str:
        """An agent's stateless (one-off chat completion) sessions, oldest first."""
        return f"{self.prefix}stateless:{agent}"

    def run_claim(self, run_id: str) -> str:
        """Which instance started the run of an idempotency key."""
        return f"{self.prefix}claim:{key_hash(run_id)}"

    def auth_failures(self, key: str) -> str:
        """Failed authentications of one client (the limiter's key, hashed)."""
        return f"{self.prefix}authfail:{key_hash(key)}"

    def approvals(self) -> str:
        """Hash of pending exec approvals: approval id -> the request (JSON)."""
        return f"{self.prefix}approvals"

    def approvers(self) -> str:
        """Hash: instance -> its connected operator clients able to answer approvals."""
        return f"{self.prefix}approvers"

    def agents(self) -> str:
        """Set of agent ids that have an index (export walks it)."""
        return f"{self.prefix}agents"
