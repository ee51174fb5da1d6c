"""The configuration a running gateway uses *now*, and reloading it.

:class:`LiveConfig` holds the current :class:`~openclaw.config.model.Config`
and tells its subscribers when a reload replaced it. Components that must
follow a reload (auth, the HTTP endpoints, the runtime) subscribe; work
already under way keeps the values it started with, because a ``Config`` is
immutable and a new one is a new object.

:meth:`LiveConfig.reload` re-reads the file the gateway started from. A file
that does not validate (or that :func:`startup_problems` refuses, or that the
caller's own check refuses) is rejected with every problem listed and the
current config stays. Settings a reload cannot apply (``_RESTART_ONLY``) are
compared with the config the process was built with, not with the last file
read: a reverted change is then no longer pending, and a pending one is named
on every reload until a restart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from attrs import frozen
from twisted.logger import Logger

from openclaw.config.errors import ConfigError
from openclaw.config.loader import load_config, startup_problems
from openclaw.config.model import Config

log = Logger()

#: Settings a reload cannot change in a running process (they shape its sockets,
#: its state directory and its session store's connection): a name, and the
#: paths of the :class:`Config` fields it covers. A changed value is reported,
#: and applies at restart.
_RESTART_ONLY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gateway.port", ("gateway.port",)),
    ("gateway.bind", ("gateway.bind", "gateway.custom_bind_host")),
    ("gateway.workers", ("gateway.workers",)),
    ("gateway.maxConnections", ("gateway.max_connections",)),
    ("gateway.ws", ("gateway.ws",)),
    (
        "gateway.http header limits and keep-alive",
        (
            "gateway.http.max_header_bytes",
            "gateway.http.max_headers",
            "gateway.http.headers_timeout_seconds",
            "gateway.http.keep_alive_timeout_seconds",
        ),
    ),
    (
        "gateway.controlUi.allowedOrigins (WebSocket origin check)",
        ("gateway.control_ui.allowed_origins",),
    ),
    # The Redis client, key prefix and lock TTL are built once, with the store.
    ("gateway.redis", ("gateway.redis",)),
    # The store's own settings; session.reset, resetByType and resetByChannel
    # apply from the next message on (OpenClaw hot-applies session.*).
    (
        "session",
        ("session.store", "session.fsync", "session.index_flush_ms", "session.maintenance"),
    ),
    ("state dir", ("state_dir",)),
)


def _get(config: object, path: str) -> object:
    for name in path.split("."):
        config = getattr(config, name)
    return config


def _put(config: Any, path: str, value: object) -> Any:
    head, _, rest = path.partition(".")
    inner = _put(getattr(config, head), rest, value) if rest else value
    return attrs.evolve(config, **{head: inner})


def restart_pending(running: Config, new: Config) -> tuple[str, ...]:
    """The restart-only settings ``new`` changes from ``running`` (their names)."""
    return tuple(
        name
        for name, paths in _RESTART_ONLY
        if any(_get(running, path) != _get(new, path) for path in paths)
    )


def as_running(running: Config, new: Config) -> Config:
    """``new`` with every restart-only setting as in ``running``: what a
    process built from ``running`` and reloaded to ``new`` actually runs (its
    start-up report must show this, not the reloaded store or port)."""
    config = new
    for _, paths in _RESTART_ONLY:
        for path in paths:
            config = _put(config, path, _get(running, path))
    return config


@frozen
class ReloadResult:
    """What a reload did."""

    ok: bool
    #: Why it was refused (empty when ``ok``).
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    #: Areas that changed and apply now (``gateway.auth``, ``agents``...); the
    #: restart-only ones are in :attr:`restart_needed` instead.
    changed: tuple[str, ...] = ()
    #: Settings whose value in the file differs from the one the process runs:
    #: they apply only after a restart (named on every reload until then).
    restart_needed: tuple[str, ...] = ()
    path: str | None = None


class LiveConfig:
    """The current configuration, replaced as a whole on reload."""

    def __init__(
        self,
        config: Config,
        *,
        path: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """
        :param path: what ``--config`` said (None: the usual search, as at start).
        """
        self._current = config
        #: What the process was built with: the restart-only settings in effect.
        self._running = config
        #: The text the last accepted reload read (None before one, or without a file).
        self._text: str | None = None
        self._path = path if path is not None else _path_of(config)
        self._env = env
        self._subscribers: list[Callable[[Config], None]] = []

    @property
    def current(self) -> Config:
        """The configuration new work starts with."""
        return self._current

    @property
    def running(self) -> Config:
        """The config the process was built with: its restart-only settings are
        the ones in effect, whatever a reload read since."""
        return self._running

    @property
    def text(self) -> str | None:
        """The file text of :attr:`current` when a reload read it (None before the
        first accepted reload, or when no file was found)."""
        return self._text

    def subscribe(self, subscriber: Callable[[Config], None]) -> Callable[[], None]:
        """Call ``subscriber`` with each new config; returns the unsubscribe callable."""
        self._subscribers.append(subscriber)

        def stop() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return stop

    def replace(self, config: Config) -> None:
        """Make ``config`` current and tell every subscriber (a failing one is
        logged; the others still run)."""
        self._current = config
        for subscriber in list(self._subscribers):
            try:
                subscriber(config)
            except Exception:
                log.failure(
                    "applying the reloaded config failed in {subscriber}", subscriber=subscriber
                )

    def reload(self, check: Callable[[Config], list[str]] | None = None) -> ReloadResult:
        """Re-read the file; apply it when it is valid, else keep the current one.

        :param check: more reasons to refuse (the service's: auth ``none``
            beyond loopback).
        """
        env = os.environ if self._env is None else self._env
        try:
            loaded = load_config(self._path, env=env)
        except ConfigError as e:
            return self._refused(list(e.problems), e.warnings)
        new = loaded.config
        if self._path is None and new.source_path is not None:
            self._path = str(new.source_path)
        problems = list(startup_problems(_as_loopback(new)))
        if check is not None:
            problems += check(new)
        if problems:
            return self._refused(problems, loaded.warnings)
        # Against what runs, not the last file read: a reverted restart-only change
        # is no longer pending, and a pending one is named until the restart.
        restart = restart_pending(self._running, new)
        # What applies now: restart-only settings are left as they run on both
        # sides, so a changed port is named as pending, never as reloaded.
        changed = _changed(as_running(self._running, self._current), as_running(self._running, new))
        for warning in loaded.warnings:
            log.warn("config: {warning}", warning=warning)
        for name in restart:
            log.warn(
                "config reload: {setting} differs from the running value; "
                "it applies after a restart",
                setting=name,
            )
        self._text = loaded.text
        self.replace(new)
        log.info(
            "config reloaded from {path}: {changed}{pending}",
            path=self.path_text,
            changed=", ".join(changed) or "no changes",
            pending=f"; after a restart: {', '.join(restart)}" if restart else "",
            restart_needed=", ".join(restart),
        )
        return ReloadResult(
            ok=True,
            warnings=loaded.warnings,
            changed=changed,
            restart_needed=restart,
            path=self.path_text,
        )

    @property
    def path_text(self) -> str:
        """The file reloads read (or what the search would find)."""
        if self._path is not None:
            return self._path
        return str(_path_of(self._current) or "(no config file; defaults)")

    def _refused(self, problems: list[str], warnings: tuple[str, ...]) -> ReloadResult:
        log.error(
            "config reload refused, keeping the running config ({count} problems)",
            count=len(problems),
        )
        for problem in problems:
            log.error("config reload: {problem}", problem=problem)
        return ReloadResult(
            ok=False, problems=tuple(problems), warnings=warnings, path=self.path_text
        )


def _path_of(config: Config) -> str | None:
    return str(config.source_path) if config.source_path is not None else None


def _as_loopback(config: Config) -> Config:
    """``startup_problems`` without its bind check: the listeners are not
    rebound by a reload (the service checks what it actually listens on)."""
    return attrs.evolve(config, gateway=attrs.evolve(config.gateway, bind="loopback"))


#: Fields of :class:`Config` whose config-file spelling is not their name in camelCase.
_AREA_NAMES = {"memory_search": "memory.search", "state_dir": "state dir"}


def _changed(old: Config, new: Config) -> tuple[str, ...]:
    """The areas that differ, spelled as in the config file (``gateway.controlUi``,
    ``memory.search``); no values, as they may be secrets."""
    areas: list[str] = []
    for field in attrs.fields(Config):
        if field.name in ("source_path",):
            continue
        a, b = getattr(old, field.name), getattr(new, field.name)
        if a == b:
            continue
        if field.name == "gateway":
            for sub in attrs.fields(type(a)):
                if getattr(a, sub.name) != getattr(b, sub.name):
                    areas.append(f"gateway.{_camel(sub.name)}")
        else:
            areas.append(_AREA_NAMES.get(field.name) or _camel(field.name))
    return tuple(areas)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


__all__ = ["LiveConfig", "ReloadResult", "as_running", "restart_pending"]
