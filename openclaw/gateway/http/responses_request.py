# -*- test-case-name: tests.test_responses_request -*-
"""Parse and validate a ``POST /v1/responses`` request (OpenResponses).

:func:`prepare_response` turns the body and headers into a
:class:`PreparedResponse` or raises :class:`ChatRequestError` (status plus the
OpenAI error object). Agent, session and tool rules are the chat endpoint's
(:mod:`.chat_request`); ``input`` items are rewritten into chat messages and
rendered by the same code (:func:`~.openai_messages.build_prompt`), so both
endpoints give an agent the same turn for the same conversation.

Items: ``message`` (roles ``system``/``developer`` join the system prompt;
``user``/``assistant`` with ``input_text``/``output_text``/``input_image``/
``input_file`` parts), ``function_call`` (an earlier client tool call) and
``function_call_output`` (its result). ``reasoning`` and ``item_reference``
are accepted and ignored. ``input_file`` text goes into the system prompt as
untrusted external content, never into the session transcript.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import evolve, frozen

from openclaw.agents.types import AgentRequest, ClientTool, ImageInput
from openclaw.config.model import ResponsesConfig
from openclaw.core.external_content import wrap_external
from openclaw.core.ids import random_uuid4
from openclaw.core.textguard import loads
from openclaw.gateway.http.chat_request import (
    AGENT_HEADERS,
    SESSION_HEADER,
    PreparedChat,
    json_type_name,
    parse_fields,
    prepared_turn,
    resolve_agent,
    resolve_session_key,
)
from openclaw.gateway.http.client_tools import (
    ToolChoice,
    tool_choice_prompt,
)
from openclaw.gateway.http.client_tools import (
    parse_tools as parse_chat_tools,
)
from openclaw.gateway.http.errors import (
    ChatRequestError,
)
from openclaw.gateway.http.model_header import model_override
from openclaw.gateway.http.openai_messages import (
    InvalidImageError,
    MissingUserMessageError,
    build_prompt,
)
from openclaw.sessions.keys import agent_session_key

INVALID_IMAGE_MESSAGE = "Invalid input_image content in `input`."
INVALID_FILE_MESSAGE = "Invalid input_file content in `input`."
MISSING_INPUT_MESSAGE = "Missing user message in `input`."
#: The turn text of a user message with files and no text (OpenClaw's).
FILE_ONLY_MESSAGE = "User sent file(s) with no text."
#: The session-key segment of this endpoint (chat completions uses ``openai``).
SESSION_PREFIX = "openresponses"
#: Fields checked for their JSON type (null always means absent).
_TYPES: tuple[tuple[str, str, type | tuple[type, ...]], ...] = (
    ("instructions", "string", str),
    ("previous_response_id", "string", str),
    ("metadata", "object", dict),
)


@frozen
class PreparedResponse:
    """A validated request: the agent turn (in the chat endpoint's terms) and
    what only the Responses API has."""

    turn: PreparedChat
    #: What routed the session, so ``previous_response_id`` can be scope-checked.
    header_session_key: str | None
    user: str | None
    instructions: str | None
    previous_response_id: str | None
    metadata: Mapping[str, Any]
    #: The request's ``tools`` and ``tool_choice`` as sent (echoed in the response).
    tools_json: tuple[Mapping[str, Any], ...]
    tool_choice_json: object
    #: The request's ``text.format`` as sent (echoed), None for plain text.
    text_format_json: Mapping[str, Any] | None = None

    def agent_request(
        self,
        run_id: str,
        fetched_images: Sequence[ImageInput] = (),
        session_key: str | None = None,
    ) -> AgentRequest:
        """The runtime request (``session_key`` replaces the routed one, for
        ``previous_response_id``)."""
        request = self.turn.agent_request(run_id, fetched_images)
        return evolve(request, session_key=session_key) if session_key else request


def parse_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object through the ingress rule (empty is ``{}``)."""
    if not raw.strip():
        return {}
    try:
        body = loads(raw)
    except ValueError as exc:  # JsonDepthError included
        raise ChatRequestError(str(exc), code="invalid_json") from None
    if not isinstance(body, dict):
        raise ChatRequestError(f"Expected object, received {json_type_name(body)}")
    return body


def _check_types(body: Mapping[str, Any]) -> None:
    for name, expected, kind in _TYPES:
        value = body.get(name)
        if value is not None and not isinstance(value, kind):
            raise ChatRequestError(f"{name}: Expected {expected}", param=name)
    metadata = body.get("metadata")
    for key, item in metadata.items() if isinstance(metadata, dict) else ():
        if not isinstance(item, str):
            raise ChatRequestError(
                f"metadata.{key}: Expected string, received {json_type_name(item)}",
                param="metadata",
            )
    value = body.get("input")
    if value is not None and not isinstance(value, str | list):
        raise ChatRequestError("input: Expected string or array", param="input")


_SCHEMA_KEYS = ("name", "description", "schema", "strict")


def text_format(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """``text.format`` as the chat ``response_format`` the providers send (None
    for plain text); ChatRequestError (``param: "text"``) when malformed."""
    text = body.get("text")
    if text is None:
        return None
    if not isinstance(text, Mapping):
        raise ChatRequestError(
            f"text: Expected object, received {json_type_name(text)}", param="text"
        )
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if not isinstance(fmt, Mapping) or kind not in ("text", "json_object", "json_schema"):
        raise ChatRequestError(
            "Invalid text.format: text.format.type must be text, json_object, or json_schema",
            param="text",
        )
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    name, schema = fmt.get("name"), fmt.get("schema")
    if not isinstance(name, str) or not name.strip() or not isinstance(schema, Mapping):
        raise ChatRequestError(
            "Invalid text.format: json_schema needs a `name` and a `schema` object",
            param="text",
        )
    return {"type": "json_schema", "json_schema": {k: fmt[k] for k in _SCHEMA_KEYS if k in fmt}}


def _chat_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields the chat endpoint's checks understand, under its names."""
    fields: dict[str, Any] = {
        name: body.get(name) for name in ("model", "stream", "user", "temperature", "top_p")
    }
    fields["max_completion_tokens"] = body.get("max_output_tokens")
    fields["response_format"] = text_format(body)
    return fields


_FUNCTION_KEYS = ("name", "description", "parameters", "strict")


def parse_tools(body: Mapping[str, Any]) -> tuple[tuple[ClientTool, ...], ToolChoice]:
    """Flat Responses tools (``{type: "function", name, ...}``) and ``tool_choice``
    (``{type: "function", name}``), checked by the chat endpoint's rules after
    nesting them as chat does (``"none"`` removes the tools before the model
    call; a pinned or required choice narrows them)."""
    tools = body.get("tools")
    if isinstance(tools, list):
        tools = [
            {
                "type": tool.get("type"),
                "function": {k: tool[k] for k in _FUNCTION_KEYS if k in tool},
            }
            if isinstance(tool, Mapping)
            else tool
            for tool in tools
        ]
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        # The flat Responses form, or the Chat Completions one (OpenClaw takes both).
        nested = choice.get("function")
        name = nested.get("name") if isinstance(nested, Mapping) else choice.get("name")
        choice = {"type": "function", "function": {"name": name}}
    try:
        return parse_chat_tools({"tools": tools, "tool_choice": choice})
    except ChatRequestError as error:  # name the fields as this API has them
        error.message = error.message.replace(".function.name", ".name")
        raise


# --- input items -> chat messages ----------------------------------------------------


def _image_part(part: Mapping[str, Any]) -> dict[str, Any]:
    """An ``input_image`` (OpenAI's ``image_url`` or OpenClaw's ``source``) as a
    chat ``image_url`` part."""
    url = part.get("image_url")
    if isinstance(url, Mapping):
        url = url.get("url")
    source = part.get("source")
    if isinstance(source, Mapping):
        if source.get("type") == "url":
            url = source.get("url")
        elif source.get("type") == "base64":
            media, data = source.get("media_type"), source.get("data")
            if isinstance(media, str) and isinstance(data, str):
                url = f"data:{media};base64,{data}"
    if not isinstance(url, str) or not url.strip():
        raise InvalidImageError("input_image without an image_url or source")
    return {"type": "image_url", "image_url": {"url": url.strip()}}


def _utf16_without_bom(data: bytes) -> str | None:
    """``utf-16-le``/``-be`` when the zero bytes fall where mostly-ASCII UTF-16
    text puts them (every other byte), else None."""
    sample = data[:4096]
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even = sum(1 for i in range(0, pairs * 2, 2) if sample[i] == 0)
    odd = sum(1 for i in range(1, pairs * 2, 2) if sample[i] == 0)
    if odd >= pairs * 0.4 and even <= pairs * 0.05:
        return "utf-16-le"
    if even >= pairs * 0.4 and odd <= pairs * 0.05:
        return "utf-16-be"
    return None


def _decode_text(data: bytes, declared: str | None) -> str:
    """File bytes as text: a declared charset, a BOM, UTF-16 by its zero bytes,
    UTF-8, else Windows-1252. Raises ValueError for bytes that are not text
    (a NUL or other C0 control left after decoding: an image, an archive...)."""
    text = _decoded(data, declared)
    if _BINARY.search(text):
        raise ValueError("input_file content is binary, not text")
    return text


#: C0 controls other than tab, line feed, vertical tab, form feed, carriage
#: return and escape (ANSI colours in logs).
_BINARY = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f]")


def _decoded(data: bytes, declared: str | None) -> str:
    if declared:
        try:
            return data.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(encoding, "replace")
    utf16 = _utf16_without_bom(data)
    if utf16 is not None:
        return data.decode(utf16, "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def file_block(part: Mapping[str, Any], config: ResponsesConfig, index: int) -> str:
    """One ``input_file`` (base64 source) as an untrusted-content block, or
    ValueError saying why it is refused (the client gets one generic message)."""
    source = part.get("source")
    if isinstance(source, Mapping):
        kind, media, data = source.get("type"), source.get("media_type"), source.get("data")
        filename = source.get("filename") or part.get("filename")
    else:  # OpenAI's shape: file_data is a data: URI
        kind, filename = "base64", part.get("filename")
        header, _, data = str(part.get("file_data") or "").partition(",")
        media = header.removeprefix("data:").split(";")[0] or None
    if kind != "base64":
        raise ValueError("only base64 input_file sources are supported")
    if not isinstance(data, str) or not data.strip():
        raise ValueError("input_file without data")
    mime, _, params = str(media or "text/plain").partition(";")
    mime = mime.strip().lower()
    if mime not in config.files.allowed_mimes:
        raise ValueError(f"input_file type {mime!r} is not allowed")
    if len(data) * 3 // 4 > config.files.max_bytes + 3:
        raise ValueError("input_file is larger than files.maxBytes")
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64: {exc}") from None
    if len(raw) > config.files.max_bytes:
        raise ValueError("input_file is larger than files.maxBytes")
    charset = params.partition("charset=")[2].strip() or None
    text = _decode_text(raw, charset)
    if len(text) > config.files.max_chars:
        text = text[: config.files.max_chars] + "\n[... truncated ...]"
    name = filename if isinstance(filename, str) and filename.strip() else f"file-{index + 1}"
    return wrap_external(text, [f"File: {name.strip()} ({mime})"])


def _content(raw: object, files: list[Mapping[str, Any]]) -> object:
    """A message's content with Responses parts turned into chat parts
    (``input_file`` parts are collected in ``files``)."""
    if not isinstance(raw, list):
        return raw
    parts: list[object] = []
    for part in raw:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image":
            parts.append(_image_part(part))
        elif kind == "input_file":
            files.append(part)
    return parts


def _only_files(content: object, files: Sequence[Mapping[str, Any]]) -> bool:
    """Whether converted user content (chat parts) has files but no text and no image."""
    if not files or not isinstance(content, list):
        return False
    texts = [str(part.get("text") or "") for part in content if part.get("type") == "text"]
    images = [part for part in content if part.get("type") == "image_url"]
    return not images and not "".join(texts).strip()


def to_chat_messages(input_value: object, files: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``input`` as chat messages; ``files`` gets the ``input_file`` parts of the
    active turn only (the last user message, unless a tool result follows it), as
    OpenClaw reads media: earlier files are neither injected again nor checked."""
    if isinstance(input_value, str):
        return [{"role": "user", "content": input_value}]
    messages: list[dict[str, Any]] = []
    active: int | None = None
    active_files: list[Mapping[str, Any]] = []
    for item in input_value if isinstance(input_value, list) else ():
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        if kind == "function_call":
            arguments = item.get("arguments")
            call = {
                "id": str(item.get("call_id") or item.get("id") or ""),
                "type": "function",
                "function": {
                    "name": str(item.get("name") or ""),
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
            messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(output, str | list):
                raise ChatRequestError(
                    "Invalid `input`: function_call_output.output must be a string "
                    "or an array of content parts.",
                    param="input",
                )
            content = output if isinstance(output, str) else _content(output, [])
            messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id"), "content": content or ""}
            )
            active, active_files = None, []  # a tool result's turn has no media
        elif kind in (None, "message") and isinstance(item.get("role"), str):
            found: list[Mapping[str, Any]] = []
            content = _content(item.get("content"), found)
            if item["role"] == "user":
                active, active_files = len(messages), found
            messages.append({"role": item["role"], "content": content})
    if active is not None and _only_files(messages[active]["content"], active_files):
        messages[active]["content"] = [{"type": "text", "text": FILE_ONLY_MESSAGE}]
    files.extend(active_files)
    return messages


def _url_parts(messages: Sequence[Mapping[str, Any]]) -> int:
    """URL (not ``data:``) images in every message of the request: OpenClaw's
    ``maxUrlParts`` counts them all, also those of earlier turns."""
    count = 0
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else ():
            image = part.get("image_url") if isinstance(part, Mapping) else None
            url = image.get("url") if isinstance(image, Mapping) else None
            if isinstance(url, str) and url[:5].lower() != "data:":
                count += 1
    return count


# --- the whole pipeline ------------------------------------------------------------


def _route(
    agent_id: str,
    headers: Mapping[str, str],
    user: str | None,
    known: Sequence[str],
) -> tuple[str, str, str | None]:
    """``(agent_id, session_key, header key)``: the chat endpoint's rules, with
    this endpoint's own prefix for ``user`` and stateless sessions."""
    header_key = headers.get(SESSION_HEADER)
    if header_key is not None and header_key.strip():
        agent_id, key = resolve_session_key(agent_id, header_key, None, known=known)
        return agent_id, key, header_key.strip()
    if user is not None:
        return agent_id, agent_session_key(agent_id, f"{SESSION_PREFIX}-user:{user}"), None
    return agent_id, agent_session_key(agent_id, f"{SESSION_PREFIX}:{random_uuid4()}"), None


def prepare_response(
    raw_body: bytes,
    headers: Mapping[str, str],
    *,
    agent_ids: Sequence[str],
    default_agent_id: str,
    config: ResponsesConfig,
) -> PreparedResponse:
    """Validate in OpenClaw's order (body, model override, fields, agent and
    session, tools, images and files, a turn to answer); ChatRequestError on refusal."""
    body = parse_body(raw_body)
    override = model_override(headers)
    _check_types(body)
    try:
        fields = parse_fields(_chat_fields(body))
    except ChatRequestError as error:
        if error.param != "max_completion_tokens":
            raise
        raise ChatRequestError(
            "max_output_tokens must be a positive safe integer", param="max_output_tokens"
        ) from None
    params = fields.stream_params
    asks_format = params is not None and params.response_format is not None
    header_agent = next((headers[h] for h in AGENT_HEADERS if headers.get(h, "").strip()), None)
    agent_id = resolve_agent(
        fields.model, header_agent, agent_ids=agent_ids, default_agent_id=default_agent_id
    )
    agent_id, session_key, header_key = _route(
        agent_id, headers, fields.user, [*agent_ids, default_agent_id]
    )
    tools, choice = parse_tools(body)
    files: list[Mapping[str, Any]] = []
    try:
        messages = to_chat_messages(body.get("input"), files)
        prompt = build_prompt(messages, config.images)
    except InvalidImageError:
        raise ChatRequestError(INVALID_IMAGE_MESSAGE, param="input", code="invalid_image") from None
    except MissingUserMessageError:
        raise ChatRequestError(MISSING_INPUT_MESSAGE, param="input") from None
    if _url_parts(messages) > config.max_url_parts:
        raise ChatRequestError(INVALID_IMAGE_MESSAGE, param="input", code="too_many_url_parts")
    try:
        blocks = [file_block(part, config, i) for i, part in enumerate(files)]
    except ValueError:
        raise ChatRequestError(INVALID_FILE_MESSAGE, param="input", code="invalid_file") from None
    instructions = body.get("instructions")
    extra = (
        instructions.strip() if isinstance(instructions, str) else None,
        prompt.extra_system_prompt,
        *blocks,
        tool_choice_prompt(choice, tools),
    )
    turn = prepared_turn(fields, (agent_id, session_key), headers, prompt, (tools, choice), extra)
    raw_tools = body.get("tools")
    return PreparedResponse(
        turn=evolve(turn, model_override=override),
        header_session_key=header_key,
        user=fields.user,
        instructions=instructions if isinstance(instructions, str) else None,
        previous_response_id=body.get("previous_response_id") or None,
        metadata=body.get("metadata") or {},
        tools_json=tuple(t for t in raw_tools or () if isinstance(t, Mapping)),
        tool_choice_json=body.get("tool_choice") or "auto",
        # Echoed as sent when it asks for more than plain text (parsed into the fields).
        text_format_json=body["text"]["format"] if asks_format else None,
    )
