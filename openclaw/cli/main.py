"""The ``openclaw`` console script.

- ``openclaw gateway run [--config P] [--port N] [--bind B] [--listen E ...] [--workers N]``: the
  gateway in the foreground (``twistd -n openclaw`` for people who don't know twistd);
- ``openclaw config validate [PATH]``: print the config's problems, or ``ok``;
- ``openclaw gateway call METHOD [--params JSON] [--url U] [--token T] [--json] [--expect-final]``:
  one request over the gateway's WebSocket protocol;
- ``openclaw agent -m TEXT [--agent ID] [--session-key K] [--json] [--timeout S] [--local]``:
  one agent turn, in-process through the same runtime as the gateway with ``--local``,
  else through a running gateway;
- ``openclaw setup [--config P]``: create the state directory and every agent's workspace
  with its starter files.
- ``openclaw sessions export --to DIR`` / ``openclaw sessions import --from DIR``: OpenClaw's
  on-disk session layout from / into the Redis store.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from openclaw import __version__

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from openclaw.config.model import Config


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openclaw", description="OpenClaw gateway for Twisted")
    parser.add_argument("--version", action="version", version=f"openclaw-twisted {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    gateway = commands.add_parser("gateway", help="run or call the gateway")
    gateway_commands = gateway.add_subparsers(dest="gateway_command", required=True)
    run = gateway_commands.add_parser("run", help="run the gateway in the foreground")
    run.add_argument("--config", "-c", help="JSON5 config file")
    run.add_argument("--port", "-p", type=int, help="TCP port")
    run.add_argument("--bind", "-b", help="loopback, lan or a host/IP")
    run.add_argument(
        "--listen", action="append", default=[], help="Twisted endpoint string (repeatable)"
    )
    run.add_argument("--workers", "-w", help="worker processes sharing the port: N or auto")
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="log lines: text, or one flat JSON object per line",
    )
    run.add_argument(
        "--metrics-listen",
        action="append",
        default=[],
        help="also serve GET /metrics (no auth) here, e.g. tcp:9464:interface=127.0.0.1",
    )

    reload = gateway_commands.add_parser(
        "reload", help="make a running gateway re-read its config (like SIGHUP)"
    )
    _add_target_options(reload)

    call = gateway_commands.add_parser("call", help="call one gateway WebSocket method")
    call.add_argument("method", help="method name, e.g. health, agents.list, agent")
    call.add_argument("--params", help="JSON params object", default=None)
    call.add_argument("--url", help="ws://host:port (default: $OPENCLAW_GATEWAY_URL or config)")
    call.add_argument("--token", help="gateway token (default: $OPENCLAW_GATEWAY_TOKEN or config)")
    call.add_argument("--password", help="gateway password")
    call.add_argument("--json", action="store_true", help="print the raw payload JSON")
    call.add_argument(
        "--expect-final", action="store_true", help="wait past an 'accepted' ack (agent)"
    )
    call.add_argument("--timeout", type=float, default=10_000, help="overall timeout in ms")
    call.add_argument("--config", "-c", help="JSON5 config file (for URL and token)")

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    validate = config_commands.add_parser("validate", help="check a config file")
    validate.add_argument("path", nargs="?", help="config file (default: the usual search)")
    # Every other command names its file with --config; accept it here too.
    validate.add_argument("--config", "-c", dest="config_option", help="config file (same as PATH)")

    status = commands.add_parser("status", help="what a running gateway reports")
    _add_target_options(status)
    status.add_argument("--json", action="store_true", help="print the payloads as JSON")

    doctor = commands.add_parser("doctor", help="check config, directories, providers, port")
    doctor.add_argument("--config", "-c", help="JSON5 config file")
    doctor.add_argument(
        "--listen", action="append", default=[], help="an ssl: endpoint whose files to check"
    )
    doctor.add_argument("--offline", action="store_true", help="skip the provider checks")

    agent = commands.add_parser("agent", help="run one agent turn")

    agent.add_argument("-m", "--message", required=True, help="the user message")
    agent.add_argument("--agent", dest="agent_id", help="agent id (default: the default agent)")
    agent.add_argument("--session-key", help="session key (default: the agent's main session)")
    agent.add_argument("--json", action="store_true", help="print the final result as JSON")
    agent.add_argument("--timeout", type=float, help="run timeout in seconds")
    agent.add_argument("--local", action="store_true", help="run in-process (no gateway)")
    agent.add_argument("--config", "-c", help="JSON5 config file")
    agent.add_argument("--url", help="gateway ws:// URL (without --local)")
    agent.add_argument("--token", help="gateway token (without --local)")

    setup = commands.add_parser("setup", help="create the state directory and agent workspaces")
    setup.add_argument("--config", "-c", help="JSON5 config file")

    from openclaw.cli.sessions_cmd import add_parser as add_sessions_parser

    add_sessions_parser(commands)  # sessions export|import (the Redis store)
    return parser


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    """Where a running gateway is and how to authenticate (as for ``gateway call``)."""
    parser.add_argument("--url", help="ws://host:port (default: $OPENCLAW_GATEWAY_URL or config)")
    parser.add_argument("--token", help="gateway token (default: $OPENCLAW_GATEWAY_TOKEN)")
    parser.add_argument("--password", help="gateway password")
    parser.add_argument("--config", "-c", help="JSON5 config file (for URL and token)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait")


def _gateway_run(args: argparse.Namespace) -> int:
    """Run the ``openclaw`` plugin in the foreground under ``twist``."""
    from openclaw.cli.gateway_run import run_gateway

    argv: list[str] = []
    for endpoint in args.metrics_listen:
        argv += ["--metrics-listen", endpoint]
    if args.config:
        argv += ["--config", args.config]
    if args.port is not None:
        argv += ["--port", str(args.port)]
    if args.bind:
        argv += ["--bind", args.bind]
    for endpoint in args.listen:
        argv += ["--listen", endpoint]
    if args.workers is not None:
        argv += ["--workers", args.workers]
    return run_gateway(argv, args.log_format)


def _gateway_reload(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``openclaw gateway reload``: the ``gateway.reload`` method (admin scope)."""
    from openclaw.cli.reload_command import run_reload

    return run_reload(args, out, err)


def _config_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Name the file checked (or say none exists), every problem, every warning
    (a "did you mean" hint too when there are errors), then ``ok`` or exit 1."""
    from openclaw.config import ConfigError, load_config, startup_problems
    from openclaw.config.loader import resolve_config_path

    if args.path is not None and args.config_option is not None and args.path != args.config_option:
        err.write("openclaw config validate: give the file once (PATH or --config)\n")
        return 2
    named = args.path if args.path is not None else args.config_option
    path, _ = resolve_config_path(named, os.environ)
    try:
        loaded = load_config(named, env=os.environ)
    except ConfigError as e:
        out.write(f"checked {path}\n")
        for problem in e.problems:
            err.write(f"{problem}\n")
        for warning in e.warnings:
            err.write(f"warning: {warning}\n")
        return 1
    if path.exists():
        out.write(f"checked {path}\n")
    else:
        out.write(f"no config file at {path}; checked the defaults\n")
    for warning in loaded.warnings:
        err.write(f"warning: {warning}\n")
    problems = startup_problems(loaded.config)
    for problem in problems:
        err.write(f"{problem}\n")
    if problems:
        return 1
    count = len(loaded.warnings)
    out.write(f"ok ({count} warning{'s' if count != 1 else ''})\n" if count else "ok\n")
    return 0


def _load(path: str | None, err: TextIO) -> Config | None:
    """Load the config, printing its problems (and warnings) to ``err``."""
    from openclaw.config import ConfigError, load_config

    try:
        loaded = load_config(path, env=os.environ)
    except ConfigError as e:
        for problem in e.problems:
            err.write(f"openclaw: {problem}\n")
        return None
    return loaded.config


def _agent(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``openclaw agent``: one turn, in-process with ``--local``."""
    if not args.local:
        from openclaw.cli.ws_client import run_remote_agent

        return run_remote_agent(args, out, err)
    config = _load(args.config, err)
    if config is None:
        return 1
    config = _out_of_the_box(config, err)
    from openclaw.sessions.statelock import StateDirLockedError, StateLock

    try:
        lock = StateLock.acquire(config.state_dir, "openclaw agent --local")
    except StateDirLockedError as e:
        gateway = e.owner is not None and e.owner.role == "gateway"
        hint = "run without --local to send the turn through it" if gateway else "try again"
        err.write(f"openclaw agent --local: {e}; {hint}\n")
        return 1
    try:
        return _agent_local(config, args, out, err)
    finally:
        lock.release()


#: What ``agent --local`` answers with when no config file names a model.
DEMO_MODEL = "demo/echo"


def _out_of_the_box(config: Config, err: TextIO) -> Config:
    """With no config file and no model anywhere, use the offline demo model
    (the README's first command must work before any setup)."""
    if config.source_path is not None or config.agents.defaults.model_primary:
        return config
    if any(agent.model for agent in config.agents.list):
        return config
    import attrs

    err.write(f"openclaw: no config file; using the offline demo model {DEMO_MODEL}\n")
    defaults = attrs.evolve(config.agents.defaults, model_primary=DEMO_MODEL)
    return attrs.evolve(config, agents=attrs.evolve(config.agents, defaults=defaults))


def _agent_local(config: Config, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """One turn in this process, the state directory's lock held."""
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IReactorCore, IReactorTime
    from twisted.internet.task import react

    from openclaw.cli.agent_command import run_agent_command

    codes: list[int] = []

    def main_(reactor: IReactorCore) -> Deferred[None]:
        interrupted: Deferred[None] = Deferred()
        command = run_agent_command(
            config, args, IReactorTime(reactor), out, err, interrupted=interrupted
        )
        finished: Deferred[None] = Deferred()

        def record(code: int) -> None:
            codes.append(code)
            finished.callback(None)

        done = command.addCallback(record)

        def stopping() -> Deferred[None] | None:
            # Ctrl-C or SIGTERM stops the reactor: abort the turn first, and
            # keep the reactor until its tools are killed and it is recorded.
            if finished.called:
                return None
            interrupted.callback(None)
            return finished

        reactor.addSystemEventTrigger("before", "shutdown", stopping)
        return done

    try:
        react(main_)
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    return codes[0] if codes else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``openclaw`` console script."""
    args = _build_parser().parse_args(argv)
    if args.command == "gateway":
        if args.gateway_command == "call":
            from openclaw.cli.ws_client import run_gateway_call

            return run_gateway_call(args, sys.stdout, sys.stderr)
        if args.gateway_command == "reload":
            return _gateway_reload(args, sys.stdout, sys.stderr)
        return _gateway_run(args)

    if args.command == "config":
        return _config_validate(args, sys.stdout, sys.stderr)
    if args.command == "agent":
        return _agent(args, sys.stdout, sys.stderr)
    if args.command == "status":
        from openclaw.cli.status import run_status

        return run_status(args, sys.stdout, sys.stderr)
    if args.command == "doctor":
        from openclaw.cli.doctor import run_doctor

        return run_doctor(args, sys.stdout, sys.stderr)

    if args.command == "sessions":
        from openclaw.cli.sessions_cmd import run_sessions

        return run_sessions(args, sys.stdout, sys.stderr)
    if args.command == "setup":
        from openclaw.cli.setup_command import ensure_config_file, run_setup

        if not ensure_config_file(args.config, sys.stdout, sys.stderr):
            return 1
        config = _load(args.config, sys.stderr)
        if config is None:
            return 1
        return run_setup(config, args.config, sys.stdout)
    raise AssertionError(args.command)  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
