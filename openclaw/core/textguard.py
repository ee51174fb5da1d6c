"""The one ingress rule for text: lone surrogates become U+FFFD, nesting is bounded.

JSON allows ``"\\ud800"``: Python decodes it to a ``str`` holding a lone UTF-16
surrogate, which no UTF-8 writer (socket, file, log) can encode. Rather than
refuse such requests, every string taken from a client or the config has each
surrogate code point replaced with U+FFFD (the replacement character), the
same thing a UTF-8 decoder does with broken input:

- valid text is untouched (lossless), so well-behaved clients never notice;
- it never fails, so one rule fits HTTP bodies, WebSocket params and config
  alike (headers are decoded from bytes as UTF-8 or Latin-1 and cannot carry
  surrogates);
- every later layer (session keys, transcripts, the index, logs, comparisons
  of secrets) only ever sees text it can encode.

The same pass bounds nesting depth: a value nested deeper than ``max_depth``
is refused with :class:`JsonDepthError`, whose message names the JSON path
where the limit was crossed (``tools[0].function.parameters.properties...``).
For JSON text (:func:`loads`) both are done on the text, with regular
expressions, before and after the parse; :func:`guard_value` walks values
parsed elsewhere (the config), iteratively, so depth cannot exhaust the
Python stack.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any, Final

#: Default nesting limit of any JSON value taken from a client.
MAX_JSON_DEPTH: Final = 64
#: What a lone surrogate becomes.
REPLACEMENT: Final = "\ufffd"

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
#: A JSON escape that can decode to a surrogate (case-insensitive hex).
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
#: Path segments shown before the rest is elided.
_MAX_PATH_SEGMENTS: Final = 12


class JsonDepthError(ValueError):
    """A JSON value nested deeper than allowed; ``path`` says where."""

    def __init__(self, path: str, limit: int) -> None:
        self.path = path
        self.limit = limit
        #: The parsed value when the parser itself succeeded (a WebSocket
        #: frame's ``id`` can then still be answered); None otherwise.
        self.value: Any = None
        where = f" at `{path}`" if path else ""
        super().__init__(f"JSON nesting is too deep{where} (limit {limit} levels)")


def scrub_text(text: str) -> str:
    """``text`` with every surrogate code point replaced by U+FFFD (fast for ASCII)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(REPLACEMENT, text)
    return text


def has_surrogates(text: str) -> bool:
    """True when ``text`` cannot be encoded as UTF-8 (it holds a surrogate)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def _format_path(parts: list[str | int]) -> str:
    shown = parts if len(parts) <= _MAX_PATH_SEGMENTS else parts[:_MAX_PATH_SEGMENTS]
    out: list[str] = []
    for part in shown:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            name = scrub_text(part)
            if len(name) > 40:
                name = name[:39] + "\u2026"
            out.append(f".{name}" if out else name)
    text = "".join(out)
    if len(parts) > _MAX_PATH_SEGMENTS:
        text += "..."
    return text


def _path_of(node: _Frame | None) -> list[str | int]:
    parts: list[str | int] = []
    while node is not None and node.key is not None:
        parts.append(node.key)
        node = node.parent
    parts.reverse()
    return parts


class _Frame:
    """One container on the walk, with a link to its parent (for the error path)."""

    __slots__ = ("depth", "key", "parent")

    def __init__(self, key: str | int | None, parent: _Frame | None, depth: int) -> None:
        self.key = key
        self.parent = parent
        self.depth = depth


def guard_value(value: Any, *, max_depth: int = MAX_JSON_DEPTH, scrub: bool = True) -> Any:
    """``value`` (parsed JSON) with surrogates replaced and depth checked.

    Containers are fixed in place (a dict whose key holds a surrogate is
    rebuilt in place too); the returned value is ``value`` itself unless it is
    a bare string. Raises :class:`JsonDepthError` past ``max_depth`` levels of
    containers (the top-level object is level 1).
    """
    if isinstance(value, str):
        return scrub_text(value) if scrub else value
    if not isinstance(value, dict | list):
        return value
    stack: list[tuple[dict[str, Any] | list[Any], _Frame]] = [(value, _Frame(None, None, 1))]
    if max_depth < 1:
        raise JsonDepthError("", max_depth)
    while stack:
        container, frame = stack.pop()
        child_depth = frame.depth + 1
        if isinstance(container, list):
            for index, item in enumerate(container):
                if isinstance(item, str):
                    if scrub and not item.isascii():
                        container[index] = scrub_text(item)
                elif isinstance(item, dict | list):
                    child = _Frame(index, frame, child_depth)
                    if child_depth > max_depth:
                        raise JsonDepthError(_format_path(_path_of(child)), max_depth)
                    stack.append((item, child))
            continue
        if scrub and not all(key.isascii() for key in container):
            _scrub_keys(container)
        for key, item in container.items():
            if isinstance(item, str):
                if scrub and not item.isascii():
                    container[key] = scrub_text(item)
            elif isinstance(item, dict | list):
                child = _Frame(key, frame, child_depth)
                if child_depth > max_depth:
                    raise JsonDepthError(_format_path(_path_of(child)), max_depth)
                stack.append((item, child))
    return value


def _scrub_keys(container: dict[str, Any]) -> None:
    """Rebuild ``container`` in place with its keys scrubbed (order kept)."""
    items = [(scrub_text(key), item) for key, item in container.items()]
    container.clear()
    container.update(items)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"Unexpected token {name} in JSON")


#: One decoder for every call (``json.loads`` with options builds a new one each time).
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


#: A JSON string literal (unrolled; linear on text that parsed, see loads).
_STRING_LITERAL: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
#: Every byte but the four brackets (deleted with ``bytes.translate``).
_NOT_BRACKETS: Final = bytes(c for c in range(256) if c not in b"[]{}")
#: The depth step of each byte of a bracket skeleton.
_DEPTH_STEP: Final = tuple(1 if c in b"[{" else -1 if c in b"]}" else 0 for c in range(256))
#: A surrogate escape, with the run of backslashes before it (an odd run is an
#: escape, an even one is literal backslashes), and a high surrogate's low half.
_ESCAPED_SURROGATE: Final = re.compile(
    r"(?<!\\)(\\++)u([dD][89abAB][0-9a-fA-F]{2})(\\u[dD][c-fC-F][0-9a-fA-F]{2})?"
    r"|(?<!\\)(\\++)u[dD][c-fC-F][0-9a-fA-F]{2}"
)
#: Above this size a depth error does not walk the value for its path: the
#: walk costs a Python step per container, and the refusal must stay cheap.
_PATH_WALK_MAX_CHARS: Final = 1 << 20


def deeper_than(text: str, max_depth: int) -> bool:
    """Whether the JSON ``text``, which must have parsed, nests containers deeper
    than ``max_depth``.

    Done on the text at C speed, whatever the number of containers: string
    literals are removed, the brackets left are the structure, and their
    running sum is the depth.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return False
    skeleton = _STRING_LITERAL.sub("", text).encode("utf-8", "surrogatepass")
    steps = map(_DEPTH_STEP.__getitem__, skeleton.translate(None, _NOT_BRACKETS))
    return max(accumulate(steps), default=0) > max_depth


def _escape_fixed(match: re.Match[str]) -> str:
    high_run, high, low, low_run = match.group(1, 2, 3, 4)
    if high_run is not None:
        if len(high_run) % 2 == 0:  # literal backslashes, then "u" and hex
            return f"{high_run}u{high}" + ("\\ufffd" if low else "")
        return match.group(0) if low else high_run[:-1] + "\\ufffd"
    if len(low_run) % 2 == 0:
        return match.group(0)
    return low_run[:-1] + "\\ufffd"


def scrub_json_text(text: str) -> str:
    """JSON ``text`` whose strings will decode without lone surrogates: raw
    surrogate code points and lone ``\\uD800``-style escapes become U+FFFD,
    valid escape pairs (emoji) stay."""
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub(REPLACEMENT, text)
    if _SURROGATE_ESCAPE.search(text):
        text = _ESCAPED_SURROGATE.sub(_escape_fixed, text)
    return text


def loads(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` under the ingress rule: NaN/Infinity refused, depth bounded,
    surrogates replaced.

    Raises :class:`JsonDepthError` (a ``ValueError``) for deep values, and
    ``ValueError`` for anything the parser refuses (``RecursionError`` from a
    value deep enough to exhaust the parser itself becomes a JsonDepthError).
    The cost is the parse plus a few passes of regular expressions over the
    text: nothing walks the parsed value, so a body of millions of tiny
    containers cannot hold the event loop.
    """
    if isinstance(raw, bytes | bytearray):
        raw = bytes(raw)
        # A UnicodeDecodeError (a ValueError) goes up as it is: callers word it.
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    else:
        text = raw
    if text.startswith("\ufeff"):
        raise ValueError("Unexpected UTF-8 BOM (decode using utf-8-sig)")
    text = scrub_json_text(text)
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise JsonDepthError("", max_depth) from None
    # After the parse, never before: on text that parsed, every quote outside a
    # string opens a complete one, so the string scan is linear. On malformed
    # text (an unterminated string full of escaped quotes) it could retry from
    # every quote: quadratic.
    if not deeper_than(text, max_depth):
        return value
    if len(text) > _PATH_WALK_MAX_CHARS:
        error = JsonDepthError("", max_depth)
        error.value = value
        raise error
    try:
        guard_value(value, max_depth=max_depth, scrub=False)
    except JsonDepthError as exc:
        exc.value = value
        raise
    raise JsonDepthError("", max_depth)  # pragma: no cover - scan and walk agree
