"""Parse and validate a chat completions request, in OpenClaw's order and words.

:func:`prepare_chat` turns the raw body and headers into a
:class:`PreparedChat` (agent, session key, rendered prompt, tools, sampling
parameters) or raises :class:`ChatRequestError` carrying the HTTP status and
the OpenAI error object. It never raises anything else for any body, which a
property test checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import frozen

from openclaw.agents.types import AgentRequest, ClientTool, ImageInput, StreamParams
from openclaw.config.model import ImagesConfig
from openclaw.core import textguard
from openclaw.core.textguard import MAX_JSON_DEPTH, JsonDepthError
from openclaw.gateway.http.client_tools import ToolChoice, parse_tools, tool_choice_prompt
from openclaw.gateway.http.errors import ChatRequestError
from openclaw.gateway.http.openai_messages import (
    AgentPrompt,
    InvalidImageError,
    MissingUserMessageError,
    build_prompt,
)
from openclaw.sessions.keys import (
    InvalidSessionKeyError,
    canonical_session_key,
    fresh_openai_session_key,
    is_reserved_session_key,
    is_valid_agent_id,
    normalize_agent_id,
    openai_user_session_key,
    parse_agent_from_key,
)

#: The model string echoed when the request names none.
DEFAULT_MODEL = "openclaw"
DEFAULT_CHANNEL = "webchat"
MAX_SAFE_INTEGER = 2**53 - 1
MAX_STOP_SEQUENCES = 4

AGENT_HEADERS = ("x-openclaw-agent-id", "x-openclaw-agent")
SESSION_HEADER = "x-openclaw-session-key"
CHANNEL_HEADER = "x-openclaw-message-channel"

INVALID_MODEL_MESSAGE = "Invalid `model`. Use `openclaw` or `openclaw/<agentId>`."
RESERVED_SESSION_MESSAGE = (
    "`x-openclaw-session-key` cannot use reserved internal session namespaces."
)
INVALID_IMAGE_MESSAGE = "Invalid image_url content in `messages`."
MISSING_USER_MESSAGE = "Missing user message in `messages`."

#: The longest ``user`` accepted (the session key built from it has the same cap).
MAX_USER_LENGTH = 512
#: Agent ids echoed in ``Unknown agent '...'`` are cut to this many characters.
MAX_ECHOED_AGENT_CHARS = 64

_MODEL_AGENT = re.compile(r"^(?:openclaw/|openclaw:|agent:)([a-z0-9][a-z0-9_-]{0,63})$", re.I)
_CHANNEL = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@frozen
class PreparedChat:
    """A validated request, ready to become an :class:`AgentRequest`."""

    model: str
    stream: bool
    include_usage: bool
    agent_id: str
    session_key: str
    channel: str
    message: str
    extra_system_prompt: str | None
    images: tuple[ImageInput, ...]
    image_urls: tuple[str, ...]
    #: Decoded bytes left for the images fetched from ``image_urls``.
    image_budget: int
    tools: tuple[ClientTool, ...]
    tool_choice: ToolChoice
    stream_params: StreamParams | None
    #: ``x-openclaw-model``: the backend model for this request only.
    model_override: str | None = None

    def agent_request(self, run_id: str, fetched_images: Sequence[ImageInput] = ()) -> AgentRequest:
        """The runtime request for this chat (``fetched_images`` from image URLs)."""
        return AgentRequest(
            agent_id=self.agent_id,
            session_key=self.session_key,
            message=self.message,
            run_id=run_id,
            extra_system_prompt=self.extra_system_prompt,
            images=(*self.images, *fetched_images),
            client_tools=self.tools,
            stream_params=self.stream_params,
            channel=self.channel,
            model_override=self.model_override,
        )


def unknown_agent_error(agent: str, *, param: str | None = None) -> ChatRequestError:
    """``Unknown agent '<id>'.``, the echoed id cut to 64 characters (a header
    may carry kilobytes that would otherwise come back in the body and logs)."""
    if len(agent) > MAX_ECHOED_AGENT_CHARS:
        agent = agent[:MAX_ECHOED_AGENT_CHARS] + "\u2026"
    return ChatRequestError(f"Unknown agent '{agent}'.", param=param, code="agent_not_found")


# --- step 4: the body -------------------------------------------------------


def parse_json_body(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> object:
    """The body as JSON (an empty body is ``{}``) under the text ingress rule
    (lone surrogates become U+FFFD, depth bounded); 400 with the parser's
    message, or with the path where the nesting got too deep."""
    if not raw.strip():
        return {}
    try:
        return textguard.loads(raw, max_depth=max_depth)
    except JsonDepthError as exc:
        raise ChatRequestError(str(exc), code="invalid_json") from None
    except UnicodeDecodeError as exc:
        raise ChatRequestError(
            f"The request body is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}).",
            code="invalid_json",
        ) from None
    except ValueError as exc:  # JSONDecodeError, int too long
        raise ChatRequestError(str(exc), code="invalid_json") from None


# --- steps 6-10: fields -------------------------------------------------------


def json_type_name(value: object) -> str:
    """The JSON name of a parsed value's type, for "Expected X, received Y"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_string(value: object) -> bool:
    return isinstance(value, str)


def _is_array(value: object) -> bool:
    return isinstance(value, list)


def _is_boolean(value: object) -> bool:
    return isinstance(value, bool)


def _is_object(value: object) -> bool:
    return isinstance(value, Mapping)


_TYPE_CHECKS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "model": ("string", _is_string),
    "messages": ("array", _is_array),
    "stream": ("boolean", _is_boolean),
    "stream_options": ("object", _is_object),
    "user": ("string", _is_string),
    "n": ("number", _is_number),
    "temperature": ("number", _is_number),
    "top_p": ("number", _is_number),
    "frequency_penalty": ("number", _is_number),
    "presence_penalty": ("number", _is_number),
    "seed": ("number", _is_number),
}


def _check_types(body: Mapping[str, Any]) -> None:
    """The schema step: every known field has its type or is null/absent."""
    for name, (expected, check) in _TYPE_CHECKS.items():
        value = body.get(name)
        if value is not None and not check(value):
            raise ChatRequestError(
                f"{name}: Expected {expected}, received {json_type_name(value)}", param=name
            )
    options = body.get("stream_options")
    if isinstance(options, Mapping):
        include = options.get("include_usage")
        if include is not None and not isinstance(include, bool):
            raise ChatRequestError(
                "stream_options.include_usage: Expected boolean, received "
                + json_type_name(include),
                param="stream_options",
            )


def _token_cap(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    # The range first: comparing an int is exact, while float() of a
    # 400-digit integer raises OverflowError.
    if _is_number(value) and 1 <= value <= MAX_SAFE_INTEGER and float(value).is_integer():
        return int(value)
    raise ChatRequestError(f"{name} must be a positive safe integer", param=name)


def _response_format(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    value = body.get("response_format")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ChatRequestError(
            "Invalid response_format: response_format must be an object",
            param="response_format",
        )
    if value.get("type") not in ("text", "json_object", "json_schema"):
        raise ChatRequestError(
            "Invalid response_format: response_format.type must be text, json_object, "
            "or json_schema",
            param="response_format",
        )
    return dict(value)


def _stop(body: Mapping[str, Any]) -> tuple[str, ...] | None:
    value = body.get("stop")
    if value is None:
        return None
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list):
        raise ChatRequestError(
            "Invalid stop: stop must be a string or array of strings", param="stop"
        )
    if len(entries) > MAX_STOP_SEQUENCES:
        raise ChatRequestError(
            f"Invalid stop: stop supports at most {MAX_STOP_SEQUENCES} sequences", param="stop"
        )
    if not all(isinstance(entry, str) and entry for entry in entries):
        raise ChatRequestError("Invalid stop: stop entries must be non-empty strings", param="stop")
    return tuple(entries) or None


_RANGES = (
    ("temperature", 0.0, 2.0, "`temperature` must be between 0 and 2."),
    ("top_p", 0.0, 1.0, "`top_p` must be between 0 and 1."),
    ("frequency_penalty", -2.0, 2.0, "`frequency_penalty` must be between -2.0 and 2.0."),
    ("presence_penalty", -2.0, 2.0, "`presence_penalty` must be between -2.0 and 2.0."),
)


def _sampling(body: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, low, high, message in _RANGES:
        value = body.get(name)
        if value is None:
            continue
        # NaN fails both comparisons; an int is compared exactly (no float()).
        if not low <= value <= high:
            raise ChatRequestError(message, param=name)
        values[name] = float(value)
    seed = body.get("seed")
    if seed is not None:
        # A 64-bit signed integer, as OpenAI takes it.
        if not (-(2**63) <= seed < 2**63 and float(seed).is_integer()):
            raise ChatRequestError("`seed` must be an integer.", param="seed")
        values["seed"] = int(seed)
    return values


def _user(value: object) -> str | None:
    """``user`` trimmed (None when absent or blank), checked like the session-key
    header it becomes: at most 512 characters, no control characters."""
    if not isinstance(value, str):
        return None
    user = value.strip()
    if not user:
        return None
    if len(user) > MAX_USER_LENGTH:
        raise ChatRequestError(
            f"Invalid `user`: longer than {MAX_USER_LENGTH} characters.",
            param="user",
            code="invalid_user",
        )
    if _CONTROL.search(user):
        raise ChatRequestError(
            "Invalid `user`: contains control characters.", param="user", code="invalid_user"
        )
    return user


@frozen
class _Fields:
    model: str
    messages: tuple[object, ...]
    stream: bool
    include_usage: bool
    user: str | None
    stream_params: StreamParams | None


def parse_fields(body: object) -> _Fields:
    """Steps 6 to 10 of OpenClaw's checks, plus ``n`` (only 1 is supported)."""
    if not isinstance(body, Mapping):
        raise ChatRequestError(f"Expected object, received {json_type_name(body)}")
    _check_types(body)
    n = body.get("n")
    if n is not None and n != 1:
        raise ChatRequestError(
            "`n` must be 1: this endpoint returns exactly one choice.",
            param="n",
            code="unsupported_value",
        )
    max_completion_tokens = _token_cap(body, "max_completion_tokens")
    max_tokens = _token_cap(body, "max_tokens")
    response_format = _response_format(body)
    stop = _stop(body)
    sampling = _sampling(body)
    cap = max_completion_tokens if max_completion_tokens is not None else max_tokens
    stream_params = None
    if cap is not None or response_format is not None or stop is not None or sampling:
        stream_params = StreamParams(
            max_tokens=cap, response_format=response_format, stop=stop, **sampling
        )
    model = body.get("model")
    options = body.get("stream_options")
    user = _user(body.get("user"))
    return _Fields(
        model=model if isinstance(model, str) and model.strip() else DEFAULT_MODEL,
        messages=tuple(body.get("messages") or ()),
        stream=body.get("stream") is True,
        include_usage=isinstance(options, Mapping) and options.get("include_usage") is True,
        user=user,
        stream_params=stream_params,
    )


# --- step 11: agent and session --------------------------------------------------


def resolve_agent(
    model: str,
    header_agent: str | None,
    *,
    agent_ids: Sequence[str],
    default_agent_id: str,
) -> str:
    """The agent a request targets: the header beats ``model``; else the default."""
    wanted: str | None = None
    stripped = model.strip()
    lowered = stripped.lower()
    if lowered not in ("", "openclaw", "openclaw/default"):
        match = _MODEL_AGENT.match(stripped)
        if match is None:
            raise ChatRequestError(INVALID_MODEL_MESSAGE, param="model", code="invalid_model")
        wanted = match.group(1)
    known = set(agent_ids) | {default_agent_id}
    if header_agent is not None and header_agent.strip():
        raw = header_agent.strip()
        if not is_valid_agent_id(raw) or normalize_agent_id(raw) not in known:
            raise unknown_agent_error(raw)
        return normalize_agent_id(raw)
    if wanted is None:
        return default_agent_id
    agent_id = normalize_agent_id(wanted)
    if agent_id not in known:
        raise unknown_agent_error(wanted, param="model")
    return agent_id


def resolve_session_key(
    agent_id: str, header_key: str | None, user: str | None, *, known: Sequence[str]
) -> tuple[str, str]:
    """``(agent_id, session_key)``: header key (canonicalised), else ``user``, else fresh.

    A header key of the form ``agent:<id>:...`` keeps its own agent, which must
    be configured; any other key is placed under the resolved agent.
    """
    if header_key is not None and header_key.strip():
        if is_reserved_session_key(header_key):
            raise ChatRequestError(RESERVED_SESSION_MESSAGE, code="invalid_session_key")
        try:
            key = canonical_session_key(agent_id, header_key)
        except InvalidSessionKeyError as exc:
            raise ChatRequestError(
                f"Invalid `x-openclaw-session-key`: {exc}.", code="invalid_session_key"
            ) from None
        owner = parse_agent_from_key(key) or agent_id
        if owner not in known:
            raise unknown_agent_error(owner)
        return owner, key
    if user is not None:
        return agent_id, openai_user_session_key(agent_id, user)
    return agent_id, fresh_openai_session_key(agent_id)


def resolve_channel(header: str | None) -> str:
    """``x-openclaw-message-channel`` normalised (lower-case), else ``webchat``."""
    value = (header or "").strip().lower()
    return value if _CHANNEL.match(value) else DEFAULT_CHANNEL


# --- the whole pipeline --------------------------------------------------------


def prepare_chat(
    raw_body: bytes,
    headers: Mapping[str, str],
    *,
    agent_ids: Sequence[str],
    default_agent_id: str,
    images: ImagesConfig,
    max_json_depth: int = MAX_JSON_DEPTH,
) -> PreparedChat:
    """Steps 4 to 16 of OpenClaw's order of checks; ChatRequestError on refusal.

    ``headers`` maps lower-case header names to their (last) value.
    """
    body = parse_json_body(raw_body, max_json_depth)
    fields = parse_fields(body)
    assert isinstance(body, Mapping)
    header_agent = next((headers[h] for h in AGENT_HEADERS if headers.get(h, "").strip()), None)
    agent_id = resolve_agent(
        fields.model, header_agent, agent_ids=agent_ids, default_agent_id=default_agent_id
    )
    known = [*agent_ids, default_agent_id]
    agent_id, session_key = resolve_session_key(
        agent_id, headers.get(SESSION_HEADER), fields.user, known=known
    )
    tools, choice = parse_tools(body)
    try:
        prompt = build_prompt(fields.messages, images)
    except InvalidImageError:
        raise ChatRequestError(
            INVALID_IMAGE_MESSAGE, param="messages", code="invalid_image"
        ) from None
    except MissingUserMessageError:
        raise ChatRequestError(MISSING_USER_MESSAGE, param="messages") from None
    except RecursionError:
        raise ChatRequestError("`messages` is nested too deeply.", param="messages") from None
    extra = (prompt.extra_system_prompt, tool_choice_prompt(choice, tools))
    return prepared_turn(fields, (agent_id, session_key), headers, prompt, (tools, choice), extra)


def prepared_turn(
    fields: _Fields,
    route: tuple[str, str],
    headers: Mapping[str, str],
    prompt: AgentPrompt,
    tools: tuple[tuple[ClientTool, ...], ToolChoice],
    extra: Sequence[str | None],
) -> PreparedChat:
    """The validated turn, as every OpenAI-style endpoint hands it to the runtime
    (``route``: agent id and session key; ``extra``: the parts of the extra
    system prompt, blank ones skipped)."""
    agent_id, session_key = route
    return PreparedChat(
        model=fields.model,
        stream=fields.stream,
        include_usage=fields.include_usage,
        agent_id=agent_id,
        session_key=session_key,
        channel=resolve_channel(headers.get(CHANNEL_HEADER)),
        message=prompt.message,
        extra_system_prompt="\n\n".join(part for part in extra if part) or None,
        images=prompt.images,
        image_urls=prompt.image_urls,
        image_budget=prompt.image_budget,
        tools=tools[0],
        tool_choice=tools[1],
        stream_params=fields.stream_params,
    )
