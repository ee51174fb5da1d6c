"""OpenAI ``messages`` -> one agent turn, rendered the way OpenClaw renders it.

An OpenAI client re-sends the whole conversation on every call; an OpenClaw
agent takes one user turn (plus its own session history). So the client's
transcript is flattened into text: ``system``/``developer`` messages become the
extra system prompt, the earlier turns are quoted between OpenClaw's two
markers, and the latest user (or tool) turn is what the agent answers. Images
are taken from that latest turn only, after checking and sniffing each one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from attrs import frozen

from openclaw.agents.types import ImageInput
from openclaw.config.model import ImagesConfig

HISTORY_MARKER = "[Chat messages since your last reply - for context]"
CURRENT_MARKER = "[Current message - respond to this]"
#: The text of an active user turn that carries images and no words.
IMAGE_ONLY_PLACEHOLDER = "User sent image(s) with no text."
#: At most this many ``image_url`` parts in the active turn.
MAX_IMAGE_PARTS = 8
#: Decoded bytes of all images of one request together.
MAX_TOTAL_IMAGE_BYTES = 20 * 1024 * 1024

_SENDERS = {"user": "User", "assistant": "Assistant"}
_WHITESPACE = re.compile(r"\s+")


class PromptError(ValueError):
    """The messages cannot become an agent turn."""


class MissingUserMessageError(PromptError):
    """No user (or other renderable) turn in ``messages``."""


class InvalidImageError(PromptError):
    """An ``image_url`` part of the active turn is malformed, too big or not an image.

    The message says why (for logs); clients get one generic message.
    """


@frozen
class AgentPrompt:
    """The pieces of an ``AgentRequest`` that come from ``messages``."""

    message: str
    extra_system_prompt: str | None = None
    images: tuple[ImageInput, ...] = ()
    #: Non-data image URLs still to fetch (only when ``images.allowUrl`` is on).
    image_urls: tuple[str, ...] = ()
    #: Decoded bytes the fetched images may still use (what ``images`` left of
    #: the request's :data:`MAX_TOTAL_IMAGE_BYTES`).
    image_budget: int = MAX_TOTAL_IMAGE_BYTES


@frozen
class _Entry:
    role: str
    sender: str
    body: str


def extract_text(content: object) -> str | None:
    """The text of a message ``content``; None when it has no text at all.

    A string is used as is; in an array, ``text``/``input_text`` parts (and any
    part with a string ``input_text``) are joined with newlines. The result is
    trimmed.
    """
    if isinstance(content, str):
        return content.strip()
    if not isinstance(content, list):
        return None
    pieces: list[str] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        text = part.get("text")
        if part.get("type") in ("text", "input_text") and isinstance(text, str):
            pieces.append(text)
        elif isinstance(part.get("input_text"), str):
            pieces.append(part["input_text"])
    if not pieces:
        return None
    return "\n".join(pieces).strip()


def _role(message: Mapping[str, Any]) -> str | None:
    role = message.get("role")
    if not isinstance(role, str):
        return None
    role = role.strip()
    return "tool" if role == "function" else role


def _non_blank(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _tool_call_lines(message: Mapping[str, Any]) -> list[str]:
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return []
    lines: list[str] = []
    for call in calls:
        if not isinstance(call, Mapping):
            continue
        call_id = _non_blank(call.get("id"))
        function = call.get("function")
        if call_id is None or not isinstance(function, Mapping):
            continue
        name = _non_blank(function.get("name"))
        if name is None:
            continue
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            try:
                arguments = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
            except (TypeError, ValueError, RecursionError):
                arguments = ""
        lines.append(f"tool_call id={call_id} name={name} arguments={arguments}")
    return lines


def _tool_sender(message: Mapping[str, Any], legacy_function: bool) -> tuple[str, bool]:
    """``Tool:<tool_call_id>`` else ``Tool:<name>`` else ``Tool``; and whether it has an id."""
    call_id = _non_blank(message.get("tool_call_id"))
    if call_id is not None:
        return f"Tool:{call_id}", True
    name = _non_blank(message.get("name"))
    if name is not None:
        return f"Tool:{name}", legacy_function
    return "Tool", False


def build_prompt(messages: Sequence[object] | None, images: ImagesConfig) -> AgentPrompt:
    """Render OpenAI ``messages`` into one agent turn (OpenClaw's rendering).

    Raises MissingUserMessageError when nothing can be answered and
    InvalidImageError for a bad image in the active user turn.
    """
    messages = messages or ()
    active_index = _active_turn_index(messages)
    system_parts: list[str] = []
    entries: list[_Entry] = []
    prompt_images: tuple[ImageInput, ...] = ()
    image_urls: tuple[str, ...] = ()
    image_budget = MAX_TOTAL_IMAGE_BYTES

    for index, raw in enumerate(messages):
        if not isinstance(raw, Mapping):
            continue
        role = _role(raw)
        if role in ("system", "developer"):
            text = extract_text(raw.get("content"))
            if text:
                system_parts.append(text)
        elif role == "user":
            text = extract_text(raw.get("content")) or ""
            if index == active_index:
                prompt_images, image_urls, image_budget = _active_images(raw.get("content"), images)
                if not text and (prompt_images or image_urls):
                    text = IMAGE_ONLY_PLACEHOLDER
            if text:
                entries.append(_Entry("user", "User", text))
        elif role == "assistant":
            text = extract_text(raw.get("content")) or ""
            body = "\n".join(part for part in [text, *_tool_call_lines(raw)] if part)
            if body:
                entries.append(_Entry("assistant", "Assistant", body))
        elif role == "tool":
            legacy = isinstance(raw.get("role"), str) and raw["role"].strip() == "function"
            sender, has_id = _tool_sender(raw, legacy)
            text = extract_text(raw.get("content")) or ""
            if text or has_id:
                entries.append(_Entry("tool", sender, text))

    if not entries:
        raise MissingUserMessageError("Missing user message in `messages`.")
    current_at = max(
        (i for i, entry in enumerate(entries) if entry.role in ("user", "tool")),
        default=len(entries) - 1,
    )
    current = entries[current_at]
    history = entries[:current_at]
    if history:
        lines = [HISTORY_MARKER]
        lines.extend(f"{entry.sender}: {entry.body}" for entry in history)
        lines.extend(["", CURRENT_MARKER, f"{current.sender}: {current.body}"])
        message = "\n".join(lines)
    elif current.role == "tool":
        message = f"{current.sender}: {current.body}"
    else:
        message = current.body
    return AgentPrompt(
        message=message,
        extra_system_prompt="\n\n".join(system_parts) or None,
        images=prompt_images,
        image_urls=image_urls,
        image_budget=image_budget,
    )


def _active_turn_index(messages: Sequence[object]) -> int | None:
    """Index of the last ``user`` or ``tool`` message: the turn being answered."""
    for index in range(len(messages) - 1, -1, -1):
        raw = messages[index]
        if isinstance(raw, Mapping) and _role(raw) in ("user", "tool"):
            return index
    return None


def _image_url_of(part: Mapping[str, Any]) -> str:
    value = part.get("image_url")
    if isinstance(value, Mapping):
        value = value.get("url")
    if not isinstance(value, str) or not value.strip():
        raise InvalidImageError("image_url part without a URL")
    return value.strip()


def _active_images(
    content: object, config: ImagesConfig
) -> tuple[tuple[ImageInput, ...], tuple[str, ...], int]:
    """Check and decode the ``image_url`` parts of the active user turn; also
    the budget the decoded ones leave for the URLs to fetch."""
    if not isinstance(content, list):
        return (), (), MAX_TOTAL_IMAGE_BYTES
    urls = [
        _image_url_of(part)
        for part in content
        if isinstance(part, Mapping) and part.get("type") == "image_url"
    ]
    if len(urls) > MAX_IMAGE_PARTS:
        raise InvalidImageError(f"{len(urls)} image parts (at most {MAX_IMAGE_PARTS})")
    decoded: list[ImageInput] = []
    remote: list[str] = []
    budget = MAX_TOTAL_IMAGE_BYTES
    for url in urls:
        if url[:5].lower() == "data:":
            image, size = decode_data_uri(url, config, budget)
            budget -= size
            decoded.append(image)
        else:
            remote.append(check_image_url(url, config))
    return tuple(decoded), tuple(remote), budget


def decode_data_uri(url: str, config: ImagesConfig, budget: int) -> tuple[ImageInput, int]:
    """Validate a ``data:`` image URI; returns the image and its decoded size.

    It must declare ``;base64``, carry a non-empty valid payload no bigger than
    ``images.maxBytes`` (and the remaining request ``budget``), name an allowed
    image type, and its bytes must really be an allowed image.
    """
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise InvalidImageError("data URI without a comma")
    segments = [segment.strip().lower() for segment in header.split(";")]
    if "base64" not in segments:
        raise InvalidImageError("data URI is not base64")
    declared = next((segment for segment in segments if "/" in segment), None)
    allowed = {mime.lower() for mime in config.allowed_mimes}
    if declared is None or declared not in allowed:
        raise InvalidImageError(f"data URI type {declared!r} is not allowed")
    payload = _WHITESPACE.sub("", payload)
    if not payload:
        raise InvalidImageError("data URI has an empty payload")
    estimated = len(payload) * 3 // 4 - payload[-2:].count("=")
    limit = min(config.max_bytes, budget)
    if estimated > limit:
        raise InvalidImageError(f"image of about {estimated} bytes exceeds {limit}")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImageError(f"invalid base64: {exc}") from exc
    if not data:
        raise InvalidImageError("data URI decodes to nothing")
    sniffed = sniff_image_type(data)
    if sniffed is None or sniffed not in allowed:
        raise InvalidImageError(f"content is not an allowed image (sniffed {sniffed!r})")
    return ImageInput(data=payload, mime_type=sniffed), len(data)


_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"heif"}


def sniff_image_type(data: bytes) -> str | None:
    """The image type the bytes really are (by magic number), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _HEIC_BRANDS:
            return "image/heic"
        if brand in _HEIF_BRANDS:
            return "image/heif"
    return None


def check_image_url(url: str, config: ImagesConfig) -> str:
    """A remote image URL the gateway may fetch, or InvalidImageError.

    Refused unless ``images.allowUrl``; only http(s); the host must match
    ``images.urlAllowlist`` when it is set (exact host or ``*.example.com``).
    """
    if not config.allow_url:
        raise InvalidImageError("image URLs are disabled (images.allowUrl is false)")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError as exc:
        raise InvalidImageError(f"unparseable image URL: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise InvalidImageError("image URL must be http(s) with a host")
    if config.url_allowlist and not host_allowed(host, config.url_allowlist):
        raise InvalidImageError(f"image host {host!r} is not in images.urlAllowlist")
    return url


def host_allowed(host: str, allowlist: Sequence[str]) -> bool:
    """Exact host match, or ``*.example.com`` matching any subdomain of it."""
    host = host.lower().rstrip(".")
    for pattern in allowlist:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False
