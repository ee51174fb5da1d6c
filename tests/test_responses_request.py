"""Parsing ``POST /v1/responses`` bodies: input items, tools, files, limits, errors."""

from __future__ import annotations

import base64
import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import StreamParams
from openclaw.config.model import ImagesConfig, ResponsesConfig, ResponsesFilesConfig
from openclaw.gateway.http.client_tools import (
    PinnedTool,
)
from openclaw.gateway.http.errors import (
    ChatRequestError,
)
from openclaw.gateway.http.responses_request import (
    INVALID_FILE_MESSAGE,
    INVALID_IMAGE_MESSAGE,
    MISSING_INPUT_MESSAGE,
    PreparedResponse,
    prepare_response,
)
from tests.chat_fakes import PNG_1X1

PNG_B64 = base64.b64encode(PNG_1X1).decode("ascii")


def user_turn(*parts: dict[str, Any]) -> dict[str, Any]:
    """A body whose input is one user message of ``parts``."""
    return {"input": [{"role": "user", "content": list(parts)}]}


def prepare(
    body: object, headers: dict[str, str] | None = None, config: ResponsesConfig | None = None
) -> PreparedResponse:
    """Parse ``body`` for agents main (default) and beta."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    return prepare_response(
        raw,
        headers or {},
        agent_ids=("main", "beta"),
        default_agent_id="main",
        config=config or ResponsesConfig(enabled=True),
    )


class RequestTests(SynchronousTestCase):
    """What a valid request becomes."""

    def refused(self, body: object, **kwargs: Any) -> ChatRequestError:
        """The ChatRequestError ``body`` is refused with."""
        error: ChatRequestError = self.assertRaises(ChatRequestError, prepare, body, **kwargs)
        return error

    def test_string_input(self) -> None:
        """A string input is the user turn; the session is a fresh openresponses one."""
        p = prepare({"model": "openclaw", "input": "hi"})
        self.assertEqual(p.turn.message, "hi")
        self.assertEqual(p.turn.agent_id, "main")
        self.assertRegex(p.turn.session_key, r"^agent:main:openresponses:[0-9a-f-]{36}$")
        self.assertFalse(p.turn.stream)
        self.assertIsNone(p.turn.extra_system_prompt)

    def test_user_session_and_agent_target(self) -> None:
        """``user`` gives a stable per-user session; ``openclaw/beta`` picks the agent."""
        p = prepare({"model": "openclaw/beta", "input": "hi", "user": "Alice"})
        self.assertEqual(p.turn.session_key, "agent:beta:openresponses-user:alice")
        self.assertEqual(p.user, "Alice")

    def test_session_header_wins(self) -> None:
        """The session header is canonicalised under the agent, as on chat completions."""
        p = prepare({"input": "hi", "user": "u"}, {"x-openclaw-session-key": "my-chat"})
        self.assertEqual(p.turn.session_key, "agent:main:my-chat")
        self.assertEqual(p.header_session_key, "my-chat")

    def test_items_render_history(self) -> None:
        """Earlier items are history; system/developer/instructions join the system prompt."""
        p = prepare(
            {
                "instructions": "Be brief.",
                "input": [
                    {"role": "developer", "content": "Speak French."},
                    {"type": "message", "role": "user", "content": "Capital of Italy?"},
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": "Rome."}],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "And"},
                            {"type": "input_text", "text": "France?"},
                        ],
                    },
                    {"type": "reasoning", "summary": []},
                    {"type": "item_reference", "id": "x"},
                ],
            }
        )
        self.assertIn("Assistant: Rome.", p.turn.message)
        self.assertTrue(p.turn.message.endswith("User: And\nFrance?"))
        self.assertEqual(p.turn.extra_system_prompt, "Be brief.\n\nSpeak French.")
        self.assertEqual(p.instructions, "Be brief.")

    def test_function_call_output_is_the_turn(self) -> None:
        """A function_call_output (even empty) is the current message, after its call."""
        p = prepare(
            {
                "input": [
                    {"role": "user", "content": "Weather?"},
                    {"type": "function_call", "call_id": "call_1", "name": "w", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": ""},
                ]
            }
        )
        self.assertIn("tool_call id=call_1 name=w arguments={}", p.turn.message)
        self.assertTrue(p.turn.message.endswith("Tool:call_1: "))
        only = prepare({"input": [{"type": "function_call_output", "call_id": "c", "output": "7"}]})
        self.assertEqual(only.turn.message, "Tool:c: 7")

    def test_sampling_and_metadata(self) -> None:
        """max_output_tokens, temperature, top_p reach the model; metadata is kept."""
        p = prepare(
            {
                "input": "hi",
                "max_output_tokens": 50,
                "temperature": 0.5,
                "top_p": 0.9,
                "metadata": {"k": "v"},
                "stream": True,
                "previous_response_id": "resp_1",
                "store": True,
                "truncation": "auto",
            }
        )
        self.assertEqual(
            p.turn.stream_params, StreamParams(max_tokens=50, temperature=0.5, top_p=0.9)
        )
        self.assertEqual(dict(p.metadata), {"k": "v"})
        self.assertTrue(p.turn.stream)
        self.assertEqual(p.previous_response_id, "resp_1")

    def test_model_override_header(self) -> None:
        """``x-openclaw-model`` is carried to the agent request."""
        p = prepare({"input": "hi"}, {"x-openclaw-model": "demo/other"})
        self.assertEqual(p.agent_request("resp_1").model_override, "demo/other")

    def test_images(self) -> None:
        """input_image as a data URL or a base64 source is decoded; URLs are kept to fetch."""
        base64_source = {"type": "base64", "media_type": "image/png", "data": PNG_B64}
        p = prepare(
            user_turn(
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}"},
                {"type": "input_image", "source": base64_source},
                {
                    "type": "input_image",
                    "source": {"type": "url", "url": "https://img.example/a.png"},
                },
            )
        )
        self.assertEqual(p.turn.message, "look")
        self.assertEqual([i.mime_type for i in p.turn.images], ["image/png", "image/png"])
        self.assertEqual(p.turn.image_urls, ("https://img.example/a.png",))

    def test_file_goes_to_system_prompt(self) -> None:
        """A text input_file is wrapped as untrusted content in the system prompt only."""
        data = base64.b64encode("Hello, Wörld".encode()).decode()
        source = {
            "type": "base64",
            "media_type": "text/plain",
            "data": data,
            "filename": "hello.txt",
        }
        p = prepare(
            user_turn(
                {"type": "input_text", "text": "summarise"},
                {"type": "input_file", "source": source},
            )
        )
        self.assertEqual(p.turn.message, "summarise")
        assert p.turn.extra_system_prompt is not None
        self.assertRegex(
            p.turn.extra_system_prompt, r'<<<EXTERNAL_UNTRUSTED_CONTENT id="[0-9a-f]{16}">>>'
        )
        self.assertIn("Source: External", p.turn.extra_system_prompt)
        self.assertIn("Hello, Wörld", p.turn.extra_system_prompt)
        self.assertIn("File: hello.txt (text/plain)", p.turn.extra_system_prompt)

    def test_file_limits(self) -> None:
        """Files over maxBytes, of a refused type, or by URL are a 400; text is cut at maxChars."""
        config = ResponsesConfig(files=ResponsesFilesConfig(max_bytes=10, max_chars=4))

        def with_file(source: dict[str, Any]) -> dict[str, Any]:
            return user_turn(
                {"type": "input_file", "source": source}, {"type": "input_text", "text": "x"}
            )

        small = base64.b64encode(b"abcdefgh").decode()
        p = prepare(
            with_file({"type": "base64", "media_type": "text/plain", "data": small}), config=config
        )
        assert p.turn.extra_system_prompt is not None
        self.assertIn("abcd\n[... truncated ...]", p.turn.extra_system_prompt)
        big = base64.b64encode(b"x" * 11).decode()
        for source in (
            {"type": "base64", "media_type": "text/plain", "data": big},
            {"type": "base64", "media_type": "application/pdf", "data": small},
            {"type": "url", "url": "https://example.com/a.txt"},
            {"type": "base64", "media_type": "text/plain", "data": "%%%"},
        ):
            error = self.refused(with_file(source), config=config)
            self.assertEqual((error.message, error.param), (INVALID_FILE_MESSAGE, "input"))
        # Bytes that are not text (an image, NULs) are refused, whatever the declared type.
        for raw in (PNG_1X1, b"text\x00with a NUL"):
            data = base64.b64encode(raw).decode()
            error = self.refused(
                with_file({"type": "base64", "media_type": "text/plain", "data": data})
            )
            self.assertEqual((error.message, error.code), (INVALID_FILE_MESSAGE, "invalid_file"))

    def test_file_encodings(self) -> None:
        """UTF-16 without a BOM is recognised by its zero bytes; a BOM, a declared
        charset and Windows-1252 still decode."""

        def system_prompt(data: bytes, media: str = "text/plain") -> str:
            source = {
                "type": "base64",
                "media_type": media,
                "data": base64.b64encode(data).decode(),
            }
            p = prepare(
                user_turn(
                    {"type": "input_text", "text": "x"}, {"type": "input_file", "source": source}
                )
            )
            assert p.turn.extra_system_prompt is not None
            return p.turn.extra_system_prompt

        for encoding in ("utf-16-le", "utf-16-be", "utf-16"):
            self.assertIn("hello utf16 Wörld", system_prompt("hello utf16 Wörld".encode(encoding)))
        self.assertIn("café", system_prompt("café".encode("cp1252")))
        self.assertIn("ключ", system_prompt("ключ".encode("koi8-r"), "text/plain; charset=koi8-r"))
        self.assertIn("tab\there\x1b[0m", system_prompt(b"tab\there\x1b[0m"))

    def test_tools_and_choice(self) -> None:
        """Flat function tools; a pinned choice keeps only that tool; none drops them."""
        tools = [
            {"type": "function", "name": "a", "description": "A", "parameters": {"type": "object"}},
            {"type": "function", "name": "b", "strict": True},
        ]
        p = prepare({"input": "hi", "tools": tools})
        self.assertEqual([t.name for t in p.turn.tools], ["a", "b"])
        self.assertEqual(p.turn.tools[0].parameters, {"type": "object"})
        pinned = prepare(
            {"input": "hi", "tools": tools, "tool_choice": {"type": "function", "name": "b"}}
        )
        self.assertEqual([t.name for t in pinned.turn.tools], ["b"])
        self.assertEqual(pinned.turn.tool_choice, PinnedTool("b"))
        # The Chat Completions form of a pinned choice is taken too.
        chat_style = {"type": "function", "function": {"name": "b"}}
        self.assertEqual(
            prepare({"input": "hi", "tools": tools, "tool_choice": chat_style}).turn.tool_choice,
            PinnedTool("b"),
        )
        self.assertIn("You must call the b tool", pinned.turn.extra_system_prompt or "")
        none = prepare({"input": "hi", "tools": tools, "tool_choice": "none"})
        self.assertEqual(none.turn.tools, ())
        self.assertEqual(len(none.tools_json), 2)

    def test_surrogates_are_replaced(self) -> None:
        """A lone surrogate in the body becomes U+FFFD (the ingress rule)."""
        p = prepare(b'{"input": "a\\ud800b"}')
        self.assertEqual(p.turn.message, "a\ufffdb")


class RefusalTests(SynchronousTestCase):
    """Bad requests are 400s in OpenAI's shape, naming the field."""

    def refused(self, body: object, **kwargs: Any) -> ChatRequestError:
        """The ChatRequestError ``body`` is refused with."""
        error: ChatRequestError = self.assertRaises(ChatRequestError, prepare, body, **kwargs)
        return error

    def test_json_and_shape(self) -> None:
        """Broken JSON, a non-object (named by its JSON type, as on chat), deep
        nesting: 400 with the parser's message."""
        self.assertEqual(self.refused(b"{nope").code, "invalid_json")
        self.assertEqual(self.refused(b"[1]").message, "Expected object, received array")
        self.assertEqual(self.refused(b"null").message, "Expected object, received null")
        self.assertIn(
            "too deep", self.refused(b'{"input": ' + b"[" * 100 + b"]" * 100 + b"}").message
        )

    def test_missing_input(self) -> None:
        """No turn to answer: 400 naming ``input``."""
        bodies: list[dict[str, Any]] = [
            {},
            {"input": []},
            {"input": [{"role": "system", "content": "x"}]},
        ]
        for body in bodies:
            error = self.refused(body)
            self.assertEqual((error.message, error.param), (MISSING_INPUT_MESSAGE, "input"))

    def test_field_types(self) -> None:
        """Wrong types are named: input, instructions, stream, max_output_tokens, ranges."""
        self.assertEqual(self.refused({"input": 5}).param, "input")
        self.assertEqual(self.refused({"input": "x", "instructions": 1}).param, "instructions")
        self.assertEqual(self.refused({"input": "x", "stream": "yes"}).param, "stream")
        error = self.refused({"input": "x", "max_output_tokens": 0})
        self.assertEqual(
            (error.message, error.param),
            ("max_output_tokens must be a positive safe integer", "max_output_tokens"),
        )
        self.assertEqual(self.refused({"input": "x", "temperature": 3}).param, "temperature")
        self.assertEqual(self.refused({"input": "x", "metadata": []}).param, "metadata")

    def test_agents_and_sessions(self) -> None:
        """Unknown agents, backend model names and reserved session keys are refused."""
        self.assertEqual(
            self.refused({"model": "openclaw/zeta", "input": "x"}).message, "Unknown agent 'zeta'."
        )
        self.assertIn("Invalid `model`", self.refused({"model": "gpt-4o", "input": "x"}).message)
        self.assertIn(
            "reserved",
            self.refused({"input": "x"}, headers={"x-openclaw-session-key": "cron:x"}).message,
        )

    def test_bad_model_header(self) -> None:
        """A malformed ``x-openclaw-model`` is OpenClaw's 400."""
        for value in ("openai/", "/gpt", "a b"):
            error = self.refused({"input": "x"}, headers={"x-openclaw-model": value})
            self.assertEqual(error.message, "Invalid `x-openclaw-model`.")

    def test_function_call_output_must_be_text(self) -> None:
        """A tool result that is a number, an object or missing is a 400, not an
        empty result the agent would take as the tool's answer."""
        for output in (123, {"a": 1}, None, True):
            item = {"type": "function_call_output", "call_id": "c", "output": output}
            error = self.refused({"input": [item]})
            self.assertEqual(error.param, "input")
            self.assertIn("function_call_output.output", error.message)

    def test_tools(self) -> None:
        """Chat-style nested tools, unknown pinned tools, required without tools: 400."""
        nested = {"type": "function", "function": {"name": "a"}}
        self.assertIn(
            "tool.name is required", self.refused({"input": "x", "tools": [nested]}).message
        )
        self.assertIn(
            "unknown tool: b",
            self.refused(
                {
                    "input": "x",
                    "tools": [{"type": "function", "name": "a"}],
                    "tool_choice": {"type": "function", "name": "b"},
                }
            ).message,
        )
        self.assertIn("no tools", self.refused({"input": "x", "tool_choice": "required"}).message)
        self.assertEqual(self.refused({"input": "x", "tools": {}}).param, "tools")

    def test_images(self) -> None:
        """A bad image, a URL while URLs are off, too many URL parts: one message."""
        off = ResponsesConfig(images=ImagesConfig(allow_url=False))
        few = ResponsesConfig(max_url_parts=1)
        url = {"type": "input_image", "image_url": "https://img.example/a.png"}
        bad = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
        for body, config in (
            ({"input": [{"role": "user", "content": [bad]}]}, None),
            ({"input": [{"role": "user", "content": [url]}]}, off),
            ({"input": [{"role": "user", "content": [url, url]}]}, few),
            # maxUrlParts counts every message of the request, not only the turn's.
            (
                {
                    "input": [
                        {"role": "user", "content": [url]},
                        {"role": "assistant", "content": "seen"},
                        {"role": "user", "content": [url]},
                    ]
                },
                few,
            ),
        ):
            error = self.refused(body, config=config)
            self.assertEqual(error.message, INVALID_IMAGE_MESSAGE)
