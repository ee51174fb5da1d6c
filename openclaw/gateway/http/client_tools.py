"""Step 14 of a chat request: the client's ``tools`` and ``tool_choice``.

Client tools are OpenAI function tools the model may call; the gateway hands
the calls back to the client instead of running them. A forced choice
(``required`` or one pinned function) becomes an instruction to the agent and
is checked against the run's result (:func:`.run_support.tool_choice_failure`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from attrs import frozen

from openclaw.agents.types import ClientTool
from openclaw.gateway.http.errors import ChatRequestError

REQUIRED_TOOL_PROMPT = "You must call one of the available tools before responding."


@frozen
class PinnedTool:
    """``tool_choice: {"type": "function", "function": {"name": ...}}``."""

    name: str


ToolChoice = Literal["auto", "none", "required"] | PinnedTool


def _tools_error(reason: str) -> ChatRequestError:
    return ChatRequestError(f"Invalid tools/tool_choice: {reason}", param="tools")


def _choice_error(reason: str) -> ChatRequestError:
    return ChatRequestError(f"Invalid tools/tool_choice: {reason}", param="tool_choice")


def parse_tools(body: Mapping[str, Any]) -> tuple[tuple[ClientTool, ...], ToolChoice]:
    """``tools`` and ``tool_choice`` as client tools plus the enforced choice."""
    raw_tools = body.get("tools")
    tools: list[ClientTool] = []
    if raw_tools is not None:
        if not isinstance(raw_tools, list):
            raise _tools_error("tools must be an array")
        for raw in raw_tools:
            tools.append(_parse_tool(raw))
    choice = _parse_choice(body.get("tool_choice"))
    if choice == "none":
        return (), "none"
    if choice == "required" and not tools:
        raise _choice_error("tool_choice=required but no tools were provided")
    if isinstance(choice, PinnedTool):
        pinned = [tool for tool in tools if tool.name == choice.name]
        if not pinned:
            raise _choice_error(f"tool_choice requested unknown tool: {choice.name}")
        return tuple(pinned[:1]), choice
    return tuple(tools), choice


def _parse_tool(raw: object) -> ClientTool:
    if not isinstance(raw, Mapping):
        raise _tools_error("each tool must be an object")
    if raw.get("type") != "function":
        raise _tools_error("only function tools are supported")
    function = raw.get("function")
    if not isinstance(function, Mapping):
        raise _tools_error("tool.function is required")
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _tools_error("tool.function.name is required")
    description = function.get("description")
    parameters = function.get("parameters")
    strict = function.get("strict")
    return ClientTool(
        name=name.strip(),
        description=description if isinstance(description, str) else None,
        parameters=dict(parameters) if isinstance(parameters, Mapping) else None,
        strict=strict if isinstance(strict, bool) else None,
    )


def _parse_choice(raw: object) -> ToolChoice:
    if raw is None or raw == "auto":
        return "auto"
    if raw == "none":
        return "none"
    if raw == "required":
        return "required"
    if isinstance(raw, str):
        raise _choice_error("unsupported tool_choice type")
    if not isinstance(raw, Mapping):
        raise _choice_error("tool_choice must be a string or object")
    kind = raw.get("type")
    if kind == "function":
        function = raw.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name.strip():
            raise _choice_error("tool_choice.function.name is required")
        return PinnedTool(name.strip())
    if kind in ("allowed_tools", "custom"):
        raise _choice_error(f"tool_choice {kind} is not supported")
    raise _choice_error("unsupported tool_choice type")


def tool_choice_prompt(choice: ToolChoice, tools: Sequence[ClientTool] = ()) -> str | None:
    """The instruction appended to the extra system prompt for a forced choice.

    ``required`` names the client's tools: the agent's built-in tools are
    available too, and a model that calls one of those and then answers in
    prose has not met the client's requirement.
    """
    if choice == "required":
        if not tools:
            return REQUIRED_TOOL_PROMPT
        names = ", ".join(tool.name for tool in tools)
        return (
            f"You must call one of these client tools before responding: {names}. "
            "Other tools do not count."
        )
    if isinstance(choice, PinnedTool):
        return f"You must call the {choice.name} tool before responding."
    return None
