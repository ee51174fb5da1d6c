"""What every WebSocket method handler works with: the call's context, the
gateway's services, the method spec, and checked access to params.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from attrs import define, frozen
from twisted.internet.interfaces import IReactorTime

from openclaw.agents.types import AgentRuntime
from openclaw.config.live import ReloadResult
from openclaw.config.model import Config
from openclaw.gateway.ws.events import RunHub
from openclaw.gateway.ws.frames import UNAVAILABLE, RequestError, invalid_params
from openclaw.gateway.ws.idempotency import IdempotencyCache
from openclaw.gateway.ws.logbuffer import LogBuffer
from openclaw.gateway.ws.views import AgentsView, SessionsView
from openclaw.sessions.keys import (
    InvalidSessionKeyError,
    canonical_session_key,
    normalize_agent_id,
    parse_agent_from_key,
)

if TYPE_CHECKING:
    from openclaw.gateway.ws.handshake import ClientInfo

MAX_IDEMPOTENCY_KEY_LENGTH = 256
#: ``agent.wait`` waits this long by default, and never longer than the cap.
DEFAULT_WAIT_MS = 30_000
MAX_WAIT_MS = 24 * 60 * 60 * 1000
DEFAULT_HISTORY_LIMIT = 200
MAX_HISTORY_LIMIT = 1000
MAX_SESSIONS_LISTED = 1000
RECENT_SESSIONS = 5


class Connection(Protocol):
    """What a method may know and do about the connection that called it."""

    @property
    def conn_id(self) -> str: ...

    @property
    def scopes(self) -> tuple[str, ...]: ...

    @property
    def client(self) -> ClientInfo | None: ...

    def subscribe(self, session_key: str) -> None:
        """Receive the ``agent``/``chat`` events of that session from now on."""
        ...

    def subscribe_all(self) -> None:
        """Receive the events of every run."""
        ...


@define
class GatewayServices:
    """The collaborators every method may use (one instance per factory)."""

    config: Config
    runtime: AgentRuntime
    agents: AgentsView
    sessions: SessionsView | None
    hub: RunHub
    idempotency: IdempotencyCache
    clock: IReactorTime
    log_buffer: LogBuffer | None
    started_at_ms: int
    version: str
    connection_count: Callable[[], int]
    #: Re-read and apply the config file (``gateway.reload``); set by the
    #: service, None for an embedded gateway.
    reload: Callable[[], ReloadResult] | None = None

    def now_ms(self) -> int:
        """The injected clock's time in epoch milliseconds."""
        return int(self.clock.seconds() * 1000)


@frozen
class CallContext:
    """One request being served."""

    request_id: str
    method: str
    connection: Connection
    services: GatewayServices
    #: Send an early ``res`` with this payload (the ``agent`` ack); the final
    #: response is still the handler's return value.
    ack: Callable[[Any], None]


Handler = Callable[[CallContext, Mapping[str, Any]], Any]


@frozen
class MethodSpec:
    """A method: its handler and the operator scope it needs (None: any client)."""

    name: str
    handler: Handler
    scope: str | None


# -- params -----------------------------------------------------------------------


def required_str(params: Mapping[str, Any], name: str, method: str, *, max_len: int = 0) -> str:
    if name not in params or params[name] is None:
        raise invalid_params(method, f"must have required property '{name}'")
    value = params[name]
    if not isinstance(value, str):
        raise invalid_params(method, f"property '{name}' must be a string")
    if not value.strip():
        raise invalid_params(method, f"property '{name}' must not be empty")
    if max_len and len(value) > max_len:
        raise invalid_params(method, f"property '{name}' must be at most {max_len} characters")
    return value


def optional_str(params: Mapping[str, Any], name: str, method: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_params(method, f"property '{name}' must be a string")
    return value or None


def optional_number(
    params: Mapping[str, Any],
    name: str,
    method: str,
    *,
    minimum: float,
    maximum: float,
    integer: bool = False,
) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_params(method, f"property '{name}' must be a number")
    # The range first: an int compares exactly, while float() of a 400-digit
    # integer raises OverflowError.
    if not minimum <= value <= maximum:
        raise invalid_params(
            method, f"property '{name}' must be between {minimum:g} and {maximum:g}"
        )
    if integer and not float(value).is_integer():
        raise invalid_params(method, f"property '{name}' must be an integer")
    return float(value)


def optional_int(
    params: Mapping[str, Any], name: str, method: str, *, minimum: int, maximum: int
) -> int | None:
    value = optional_number(params, name, method, minimum=minimum, maximum=maximum, integer=True)
    return None if value is None else int(value)


def known_agent(services: GatewayServices, agent_id: str, method: str) -> str:
    normalised = normalize_agent_id(agent_id)
    if normalised not in services.runtime.agent_ids:
        raise invalid_params(method, f'unknown agent id "{agent_id}"')
    return normalised


def resolve_session(
    services: GatewayServices, method: str, raw_key: str, agent_hint: str | None = None
) -> tuple[str, str]:
    """``(agentId, canonical session key)``; the key's own agent wins over the hint."""
    base = normalize_agent_id(agent_hint) if agent_hint else services.agents.default_agent_id
    try:
        key = canonical_session_key(base, raw_key)
    except InvalidSessionKeyError as e:
        raise invalid_params(method, str(e)) from None
    agent = parse_agent_from_key(key) or base
    return known_agent(services, agent, method), key


def session_store(services: GatewayServices) -> SessionsView:
    if services.sessions is None:
        raise RequestError(UNAVAILABLE, "session store unavailable")
    return services.sessions
