"""Sessions: keys (:mod:`.keys`), per-key serialisation (:mod:`.lanes`), the
storage contract (:mod:`.interface`) and its on-disk backend in OpenClaw's
layout (:mod:`.store`, built from :mod:`.index`, :mod:`.journal`,
:mod:`.transcript`, :mod:`.writes` and :mod:`.fileio`).

This package imports nothing from the agent runtime or the gateway (the
import contract in ``pyproject.toml`` keeps it so): importing it loads no
model provider and no HTTP client.

Durability rules of the on-disk store, because a gateway can be killed at any
instant:

* the index is replaced atomically (temp file, fsync, rename), never edited;
  changes are written together at most once per ``index_flush_delay``, and at
  once on reset, delete and close; a write that fails for any reason is
  logged and tried again on the next interval;
* every writer produces valid UTF-8 whatever a ``str`` holds (a lone
  surrogate in a key or a message is written as a JSON escape);
* the transcript header records the session key, so a session whose index
  entry was lost in a crash is put back when the agent's index is first loaded;
* transcripts are only appended, one whole line per ``write``; a torn last
  line is skipped on read (with a warning) and a newline is written before the
  next append so it cannot swallow the next entry;
* a finished turn is reported (``finish_turn``'s Deferred) only once its lines
  are written and, under ``fsync: "turn"``, synced;
* file names come from ids the store generates or validates, never from
  session keys, so no key or agent id can reach outside the state dir.

The reactor thread only builds the lines; a transcript's writes reach the IO
executor one after the other, so their order is kept. Reads (history) stay on
the reactor thread: they hit the page cache and a session's lane guarantees
its previous turn is on disk. Stateless chat-completion sessions
(``agent:<id>:openai:<uuid>``, never addressed again) are capped at
``max_entries``, oldest first.
"""
