"""Untrusted text (a fetched page, a client's file) wrapped before a model reads it.

OpenClaw marks such text with ``<<<EXTERNAL_UNTRUSTED_CONTENT id="...">>>`` and
``<<<END_EXTERNAL_UNTRUSTED_CONTENT id="...">>>`` around a ``Source: External``
line, so the model treats it as data. Two things keep the boundary honest:

* the id is random per block, and any marker-like text inside the content is
  defused, so a page cannot close the block early and speak after it;
* chat-template special tokens (``<|im_start|>``, ``<|start_header_id|>``,
  ``<start_of_turn>``, ``[INST]``, ...) are removed: self-hosted backends may
  tokenize them as real role boundaries inside user content.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

__all__ = ["WRAPPER_CHARS", "strip_template_tokens", "wrap_external"]

_MARKER = re.compile(r"<<<\s*(END_)?EXTERNAL_UNTRUSTED_CONTENT", re.IGNORECASE)
#: ``<|...|>`` tokens (ChatML/Qwen, Llama 3, Phi, GPT-OSS), Gemma's turn
#: markers, Mistral/Llama 2 instruction brackets and system tags.
_TEMPLATE_TOKENS = re.compile(
    r"<\|[A-Za-z0-9_.:-]{1,40}\|>"
    r"|</?(?:start_of_turn|end_of_turn)>"
    r"|\[/?(?:INST|SYS)\]|<</?SYS>>",
)


def strip_template_tokens(text: str) -> str:
    """``text`` without chat-template special tokens."""
    return _TEMPLATE_TOKENS.sub("", text)


def wrap_external(text: str, metadata: Sequence[str] = ()) -> str:
    """``text`` as one untrusted-content block; ``metadata`` lines (``File:
    name``, ``URL: ...``) go after ``Source: External``, sanitised the same way."""
    block_id = secrets.token_hex(8)
    body = _MARKER.sub(lambda m: "[[MARKER_SANITIZED]]", strip_template_tokens(text))
    lines = [f'<<<EXTERNAL_UNTRUSTED_CONTENT id="{block_id}">>>', "Source: External"]
    for line in metadata:
        clean = _MARKER.sub("[[MARKER_SANITIZED]]", strip_template_tokens(line))
        lines.append(" ".join(clean.split()))
    lines += ["---", body, f'<<<END_EXTERNAL_UNTRUSTED_CONTENT id="{block_id}">>>']
    return "\n".join(lines)


#: The length of the wrapper around an empty text without metadata.
WRAPPER_CHARS = len(wrap_external(""))
