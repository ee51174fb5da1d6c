"""Shared argument checks and result helpers for the built-in tools.

Every tool reads its arguments through these helpers so hostile input (wrong
types, NUL bytes, lone surrogates, huge strings) becomes a ``ToolArgumentError``
whose message the model can read, never an exception in the gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from openclaw.agents.tools.base import ToolArgumentError, ToolContext, ToolResult

T = TypeVar("T")
_log = Logger()

#: Upper bound for any single string argument unless a tool says otherwise.
MAX_STRING = 1_000_000


def check_text(name: str, value: str, max_chars: int = MAX_STRING) -> str:
    """Refuse NUL bytes, lone surrogates and oversized strings."""
    if len(value) > max_chars:
        raise ToolArgumentError(f"{name} is too long ({len(value)} chars; limit {max_chars})")
    if "\x00" in value:
        raise ToolArgumentError(f"{name} contains a NUL byte")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ToolArgumentError(f"{name} contains invalid Unicode (lone surrogate)") from None
    return value


def opt_str(args: Mapping[str, Any], *names: str, max_chars: int = MAX_STRING) -> str | None:
    """The first present string argument among ``names`` (aliases), checked."""
    for name in names:
        if name in args and args[name] is not None:
            value = args[name]
            if not isinstance(value, str):
                raise ToolArgumentError(f"{name} must be a string")
            return check_text(name, value, max_chars)
    return None


def req_str(args: Mapping[str, Any], *names: str, max_chars: int = MAX_STRING) -> str:
    """Like :func:`opt_str` but missing is an error."""
    value = opt_str(args, *names, max_chars=max_chars)
    if value is None:
        raise ToolArgumentError(f"missing required parameter: {names[0]}")
    return value


def opt_int(
    args: Mapping[str, Any], name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """An optional integer (a whole-valued float is accepted), range-checked."""
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolArgumentError(f"{name} must be a number")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            raise ToolArgumentError(f"{name} must be a whole number")
        value = int(value)
    if minimum is not None and value < minimum:
        raise ToolArgumentError(f"{name} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ToolArgumentError(f"{name} must be at most {maximum}")
    return value


def opt_bool(args: Mapping[str, Any], name: str) -> bool | None:
    """An optional boolean; anything else is an error."""
    value = args.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ToolArgumentError(f"{name} must be a boolean")
    return value


def error(message: str, **details: Any) -> ToolResult:
    """A tool error the model reads."""
    return ToolResult(content=message, is_error=True, details={"status": "error", **details})


class BlockingRunner(Protocol):
    """Runs blocking work (file I/O) off the reactor thread."""

    def __call__(self, work: Callable[[], T]) -> Deferred[T]: ...


def thread_runner(reactor: IReactorFromThreads, pool: ThreadPool) -> BlockingRunner:
    """A runner that uses ``pool`` and reports back through ``reactor``."""

    def run(work: Callable[[], T]) -> Deferred[T]:
        return deferToThreadPool(reactor, pool, work)

    return run


def inline_runner(work: Callable[[], T]) -> Deferred[T]:
    """Runs the work synchronously (tests, or a caller already off the reactor)."""
    return maybeDeferred(work)


def guarded(
    tool_name: str,
    call: Callable[[Mapping[str, Any], ToolContext], Deferred[ToolResult]],
    arguments: Any,
    context: ToolContext,
) -> Deferred[ToolResult]:
    """Run ``call`` so that every failure except cancellation becomes a tool error."""
    if not isinstance(arguments, Mapping):
        return _done(error("arguments must be a JSON object"))
    d = maybeDeferred(call, arguments, context)

    def failed(reason: Failure) -> ToolResult:
        err = reason.value
        if isinstance(err, CancelledError):
            reason.raiseException()
        if isinstance(err, ToolArgumentError):
            return error(str(err))
        if isinstance(err, OSError):
            return error(f"{tool_name} failed: {err.strerror or err}")
        _log.failure("tool {tool} raised", reason, tool=tool_name, run_id=context.run_id)
        return error(f"{tool_name} failed with an internal error")

    return d.addErrback(failed)


def _done(result: ToolResult) -> Deferred[ToolResult]:
    d: Deferred[ToolResult] = Deferred()
    d.callback(result)
    return d
