"""``openclaw sessions export|import``: OpenClaw's on-disk session layout to
and from the Redis store (``session.store: "redis"``, ``gateway.redis``).

- ``openclaw sessions export --to DIR [--agent ID ...]`` writes
  ``DIR/agents/<id>/sessions/{sessions.json,<sessionId>.jsonl}``;
- ``openclaw sessions import --from DIR [--replace]`` loads such a layout
  (an OpenClaw state directory, or a file-store gateway's) into Redis.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO


def add_parser(commands: Any) -> None:
    """Register ``sessions export`` and ``sessions import`` on the CLI."""
    sessions = commands.add_parser("sessions", help="move sessions to and from the Redis store")
    sub = sessions.add_subparsers(dest="sessions_command", required=True)
    export = sub.add_parser("export", help="write OpenClaw's on-disk layout from Redis")
    export.add_argument("--to", required=True, dest="directory", help="target state directory")
    export.add_argument("--agent", action="append", default=[], help="only this agent (repeatable)")
    export.add_argument("--config", "-c", help="JSON5 config file (for gateway.redis)")
    load = sub.add_parser("import", help="load OpenClaw's on-disk layout into Redis")
    load.add_argument("--from", required=True, dest="directory", help="source state directory")
    load.add_argument("--replace", action="store_true", help="overwrite sessions Redis has")
    load.add_argument("--config", "-c", help="JSON5 config file (for gateway.redis)")


def run_sessions(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Connect to the configured Redis, export or import, print one line."""
    from twisted.internet import task

    from openclaw.config import ConfigError, load_config
    from openclaw.sessions.redis.backend import RedisConfigError, probe, redis_url
    from openclaw.sessions.redis.client import RedisUnavailableError, open_client
    from openclaw.sessions.redis.export import describe, export_layout, import_layout
    from openclaw.sessions.redis.keys import KeySchema

    try:
        config = load_config(args.config).config
    except ConfigError as e:
        for problem in e.problems:
            err.write(f"openclaw: {problem}\n")
        return 1
    if config.session.store != "redis":
        err.write(
            "openclaw: sessions export/import move sessions between a Redis store and "
            'files; this config uses the file store (set session.store: "redis" and '
            "gateway.redis.url)\n"
        )
        return 1
    directory = Path(args.directory)
    if args.sessions_command == "import" and not (directory / "agents").is_dir():
        err.write(f"openclaw: {directory}: no agents/ directory to import (an export's layout)\n")
        return 1
    try:
        url = redis_url(config)
        probe(url)
    except (RedisConfigError, RedisUnavailableError) as e:
        err.write(f"openclaw: {e}\n")
        return 1
    schema = KeySchema(config.gateway.redis.key_prefix)

    def work(reactor: Any) -> Any:
        client = open_client(reactor, url)
        if args.sessions_command == "export":
            d = export_layout(client, schema, directory, args.agent)
            verb = "exported"
        else:
            d = import_layout(client, schema, directory, replace=args.replace)
            verb = "imported"

        def done(moved: Any) -> None:
            out.write(describe(moved, verb, directory) + "\n")
            if args.sessions_command == "export" and args.agent is not None and not moved.sessions:
                # A mistyped --agent: say so (an agent removed from the config
                # but with sessions in Redis still exports).
                err.write(f"openclaw: no sessions of agent {', '.join(args.agent)} in Redis\n")
                raise SystemExit(1)

        def failed(failure: Any) -> None:
            err.write(f"openclaw: sessions {args.sessions_command} failed: {failure.value}\n")
            raise SystemExit(1)  # react() exits with it

        def closed(result: Any) -> Any:
            return client.close().addCallback(lambda _: result)

        return d.addCallbacks(done, failed).addBoth(closed)

    task.react(work)  # runs the reactor, then exits the process
