"""Acceptance of issue 13: which ``input_file`` parts of a ``POST /v1/responses``
request reach the agent, and ``metadata``'s shape, as OpenClaw's OpenResponses
endpoint has them.

OpenClaw reads media (files and images) only from the active user message (the
last user message, unless a ``function_call_output`` comes after it): files of
earlier messages are neither injected again nor checked, a tool result's turn
inherits no earlier media, and a user message of files only is answered as
``User sent file(s) with no text.`` instead of being "missing".
"""

from __future__ import annotations

import base64
import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from openclaw.config.model import ResponsesConfig
from openclaw.gateway.http.errors import ChatRequestError
from openclaw.gateway.http.responses_request import (
    FILE_ONLY_MESSAGE,
    INVALID_FILE_MESSAGE,
    PreparedResponse,
    prepare_response,
)


def prepare(body: dict[str, Any]) -> PreparedResponse:
    """Parse ``body`` for agent main with the default responses config."""
    return prepare_response(
        json.dumps(body).encode("utf-8"),
        {},
        agent_ids=("main",),
        default_agent_id="main",
        config=ResponsesConfig(enabled=True),
    )


def text_file(text: str, name: str = "notes.txt") -> dict[str, Any]:
    """An ``input_file`` part of plain text (OpenClaw's base64 source)."""
    data = base64.b64encode(text.encode()).decode()
    source = {"type": "base64", "media_type": "text/plain", "data": data, "filename": name}
    return {"type": "input_file", "source": source}


#: A file OpenClaw refuses (a type outside files.allowedMimes).
REFUSED_FILE = {
    "type": "input_file",
    "source": {"type": "base64", "media_type": "application/x-msdownload", "data": "TVqQ"},
}


class FileOnlyTurnTests(SynchronousTestCase):
    """A user message made only of files is a turn to answer."""

    def test_file_only_message_gets_placeholder(self) -> None:
        """The agent gets OpenClaw's placeholder text and the file in its system prompt."""
        p = prepare({"input": [{"role": "user", "content": [text_file("alpha beta")]}]})
        self.assertEqual(p.turn.message, FILE_ONLY_MESSAGE)
        self.assertEqual(FILE_ONLY_MESSAGE, "User sent file(s) with no text.")
        assert p.turn.extra_system_prompt is not None
        self.assertIn("alpha beta", p.turn.extra_system_prompt)

    def test_refused_file_only_message_names_the_file(self) -> None:
        """A refused file alone is reported as a bad input_file, not a missing message."""
        body = {"input": [{"role": "user", "content": [REFUSED_FILE]}]}
        error = self.assertRaises(ChatRequestError, prepare, body)
        self.assertEqual((error.status, error.message), (400, INVALID_FILE_MESSAGE))


class HistoryFileTests(SynchronousTestCase):
    """Files of messages before the active turn are left out."""

    def test_earlier_files_are_not_injected(self) -> None:
        """A client resending its history does not re-inject the old file."""
        p = prepare(
            {
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_text", "text": "read"}, text_file("OLD-FILE")],
                    },
                    {"role": "assistant", "content": "done"},
                    {
                        "role": "user",
                        "content": [{"type": "input_text", "text": "now"}, text_file("NEW-FILE")],
                    },
                ]
            }
        )
        assert p.turn.extra_system_prompt is not None
        self.assertIn("NEW-FILE", p.turn.extra_system_prompt)
        self.assertNotIn("OLD-FILE", p.turn.extra_system_prompt)
        self.assertEqual(p.turn.extra_system_prompt.count("<<<EXTERNAL_UNTRUSTED_CONTENT id="), 1)

    def test_refused_file_in_history_is_ignored(self) -> None:
        """A file of an earlier message is not checked, so it cannot fail the turn."""
        p = prepare(
            {
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_text", "text": "x"}, REFUSED_FILE],
                    },
                    {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": "next"},
                ]
            }
        )
        self.assertIn("next", p.turn.message)

    def test_tool_result_turn_inherits_no_file(self) -> None:
        """A function_call_output turn does not carry the earlier user's file."""
        p = prepare(
            {
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_text", "text": "x"}, text_file("SECRET-DOC")],
                    },
                    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c1", "output": "r"},
                ]
            }
        )
        self.assertNotIn("SECRET-DOC", p.turn.extra_system_prompt or "")
        self.assertIn("Tool:c1: r", p.turn.message)


class MetadataTests(SynchronousTestCase):
    """``metadata`` is a map of strings (OpenClaw's schema, and OpenAI's)."""

    def test_non_string_value_is_refused(self) -> None:
        """A number as a metadata value is a 400 naming metadata."""
        body = {"input": "hi", "metadata": {"n": 1}}
        error = self.assertRaises(ChatRequestError, prepare, body)
        self.assertEqual((error.status, error.param), (400, "metadata"))
        self.assertIn("metadata.n", error.message)

    def test_string_values_are_echoed(self) -> None:
        """String values pass and are kept for the response."""
        self.assertEqual(prepare({"input": "hi", "metadata": {"k": "v"}}).metadata, {"k": "v"})


class FileOnlyHistoryTests(SynchronousTestCase):
    """Only the active turn gets the file placeholder."""

    def test_file_only_history_message_is_skipped(self) -> None:
        """An earlier files-only message adds no placeholder line to the history."""
        p = prepare(
            {
                "input": [
                    {"role": "user", "content": [text_file("old")]},
                    {"role": "assistant", "content": "seen"},
                    {"role": "user", "content": "and now?"},
                ]
            }
        )
        self.assertNotIn(FILE_ONLY_MESSAGE, p.turn.message)
        self.assertIn("Assistant: seen", p.turn.message)
