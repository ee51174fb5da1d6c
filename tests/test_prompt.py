"""How OpenAI ``messages`` become the agent's turn (reference §1.4, §1.5, §7 15-35)."""

from __future__ import annotations

import base64
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.types import ImageInput
from openclaw.config.model import ImagesConfig
from openclaw.gateway.http.openai_messages import (
    CURRENT_MARKER,
    HISTORY_MARKER,
    IMAGE_ONLY_PLACEHOLDER,
    MAX_TOTAL_IMAGE_BYTES,
    InvalidImageError,
    MissingUserMessageError,
    build_prompt,
    check_image_url,
    extract_text,
    host_allowed,
    sniff_image_type,
)
from tests.chat_fakes import PNG_1X1, ChatHarness, ChatTestCase, chat_body

PNG_B64 = base64.b64encode(PNG_1X1).decode("ascii")
PNG_URI = f"data:image/png;base64,{PNG_B64}"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
WEATHER_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Taipei"}'},
}
DEFAULT_IMAGES = ImagesConfig()


def image_part(url: Any) -> dict[str, Any]:
    """An ``image_url`` content part."""
    return {"type": "image_url", "image_url": {"url": url}}


def user(content: Any) -> dict[str, Any]:
    """A user message."""
    return {"role": "user", "content": content}


def render(*messages: Any, images: ImagesConfig = DEFAULT_IMAGES) -> Any:
    """build_prompt over these messages."""
    return build_prompt(list(messages), images)


class TextTests(SynchronousTestCase):
    """Text extraction and the rendering of the conversation."""

    def test_text_and_input_text_parts(self) -> None:
        """``text`` and ``input_text`` parts join with a newline (case 15)."""
        prompt = render(
            user([{"type": "text", "text": "hello"}, {"type": "input_text", "text": "world"}])
        )
        self.assertEqual(prompt.message, "hello\nworld")

    def test_extract_text_forms(self) -> None:
        """Strings are trimmed; arrays without text parts have no text; other parts add none."""
        self.assertEqual(extract_text("  hi  "), "hi")
        self.assertIsNone(extract_text([{"type": "image_url", "image_url": "x"}]))
        self.assertIsNone(extract_text(None))
        self.assertIsNone(extract_text(42))
        self.assertEqual(extract_text([{"input_text": "legacy"}, "junk", 3]), "legacy")

    def test_single_user_message_without_markers(self) -> None:
        """System + one user message: exactly the user text, no markers (case 27)."""
        prompt = render({"role": "system", "content": "You are helpful."}, user("Hello"))
        self.assertEqual(prompt.message, "Hello")
        self.assertEqual(prompt.extra_system_prompt, "You are helpful.")

    def test_history_markers(self) -> None:
        """Earlier turns are quoted between OpenClaw's two markers (case 26)."""
        prompt = render(
            {"role": "system", "content": "You are helpful."},
            user("Hello, who are you?"),
            {"role": "assistant", "content": "I am Claude."},
            user("What did I just ask you?"),
        )
        self.assertEqual(
            prompt.message,
            f"{HISTORY_MARKER}\nUser: Hello, who are you?\nAssistant: I am Claude.\n\n"
            f"{CURRENT_MARKER}\nUser: What did I just ask you?",
        )

    def test_system_and_developer_join(self) -> None:
        """System and developer texts join with a blank line wherever they are (case 28)."""
        prompt = render(
            {"role": "developer", "content": "Dev rules."},
            user("Hi"),
            {"role": "system", "content": [{"type": "text", "text": "Sys rules."}]},
        )
        self.assertEqual(prompt.extra_system_prompt, "Dev rules.\n\nSys rules.")
        self.assertEqual(prompt.message, "Hi")

    def test_trailing_tool_message(self) -> None:
        """A lone tool result is rendered with its sender (case 29)."""
        prompt = render({"role": "tool", "content": "Sunny, 70F."})
        self.assertEqual(prompt.message, "Tool: Sunny, 70F.")

    def test_tool_round_trip(self) -> None:
        """Assistant tool calls become lines; the tool result is the current turn (case 35)."""
        prompt = render(
            user("Weather in Taipei?"),
            {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "content": [{"type": "text", "text": "Sunny, 70F."}],
            },
        )
        self.assertEqual(
            prompt.message,
            f"{HISTORY_MARKER}\nUser: Weather in Taipei?\n"
            'Assistant: tool_call id=call_1 name=get_weather arguments={"city":"Taipei"}\n\n'
            f"{CURRENT_MARKER}\nTool:call_1: Sunny, 70F.",
        )

    def test_tool_call_arguments_not_string(self) -> None:
        """Non-string tool-call arguments are JSON-encoded; calls without id/name dropped."""
        prompt = render(
            user("a"),
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {"id": "c1", "function": {"name": "f", "arguments": {"x": 1}}},
                    {"id": "c2", "function": {}},
                    {"function": {"name": "g"}},
                ],
            },
            user("b"),
        )
        self.assertIn(
            'Assistant: Let me check.\ntool_call id=c1 name=f arguments={"x":1}\n', prompt.message
        )
        self.assertNotIn("c2", prompt.message)

    def test_legacy_function_role(self) -> None:
        """``function`` is a tool; its ``name`` identifies it even with empty output."""
        prompt = render(user("a"), {"role": "function", "name": "lookup", "content": ""})
        self.assertTrue(prompt.message.endswith(f"{CURRENT_MARKER}\nTool:lookup: "))

    def test_empty_tool_result_without_id_skipped(self) -> None:
        """A tool message with no output and no id adds nothing."""
        prompt = render(user("a"), {"role": "tool", "content": ""})
        self.assertEqual(prompt.message, "a")

    def test_trailing_assistant_prefill_discarded(self) -> None:
        """Entries after the last user/tool turn are dropped."""
        prompt = render(user("a"), {"role": "assistant", "content": "prefill"})
        self.assertEqual(prompt.message, "a")

    def test_unknown_roles_and_junk_skipped(self) -> None:
        """Non-objects, missing and unknown roles are skipped; roles are trimmed."""
        prompt = render(
            "junk",
            {"content": "no role"},
            {"role": "wizard", "content": "x"},
            {"role": " user ", "content": "ok"},
        )
        self.assertEqual(prompt.message, "ok")

    def test_only_assistant_is_current(self) -> None:
        """Without user or tool turns, the last entry is answered."""
        self.assertEqual(render({"role": "assistant", "content": "hm"}).message, "hm")

    def test_missing_user_message(self) -> None:
        """No messages, or only system ones: MissingUserMessageError."""
        for messages in ([], [{"role": "system", "content": "x"}], [user("   ")]):
            with self.assertRaises(MissingUserMessageError):
                build_prompt(messages, DEFAULT_IMAGES)
        with self.assertRaises(MissingUserMessageError):
            build_prompt(None, DEFAULT_IMAGES)


class ImageTests(SynchronousTestCase):
    """Images of the active user turn (§1.5)."""

    def test_png_data_uri(self) -> None:
        """A PNG data URI is passed as base64 plus its type (case 16)."""
        prompt = render(user([{"type": "text", "text": "describe this"}, image_part(PNG_URI)]))
        self.assertEqual(prompt.message, "describe this")
        self.assertEqual(prompt.images, (ImageInput(PNG_B64, "image/png"),))

    def test_charset_parameter_and_string_form(self) -> None:
        """Extra metadata segments and the bare-string ``image_url`` form are accepted."""
        uri = f"data:image/png;charset=utf-8;BASE64,{PNG_B64}"
        prompt = render(
            user([{"type": "text", "text": "x"}, {"type": "image_url", "image_url": uri}])
        )
        self.assertEqual(prompt.images[0].mime_type, "image/png")

    def test_image_only_turn(self) -> None:
        """An image without text gets the placeholder text (case 20)."""
        prompt = render(user([image_part(PNG_URI)]))
        self.assertEqual(prompt.message, IMAGE_ONLY_PLACEHOLDER)
        self.assertEqual(len(prompt.images), 1)

    def test_earlier_image_not_replayed(self) -> None:
        """An image in an earlier turn is not sent and gets no placeholder (case 21)."""
        prompt = render(
            user([image_part(PNG_URI)]), {"role": "assistant", "content": "nice"}, user("and now?")
        )
        self.assertEqual(prompt.images, ())
        self.assertNotIn(IMAGE_ONLY_PLACEHOLDER, prompt.message)

    def test_malformed_history_images_ignored(self) -> None:
        """Broken images in history are ignored, with a user or tool follow-up (case 22)."""
        for follow_up in (user("next"), {"role": "tool", "tool_call_id": "c", "content": "r"}):
            prompt = render(
                user([{"type": "text", "text": "look"}, image_part(None)]),
                {"role": "assistant", "content": "ok"},
                follow_up,
            )
            self.assertEqual(prompt.images, ())
            self.assertIn("User: look", prompt.message)

    def test_only_latest_turn_images(self) -> None:
        """Two user turns with images: only the latest one's (case 23)."""
        jpeg_uri = "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
        prompt = render(
            user([{"type": "text", "text": "a"}, image_part(jpeg_uri)]),
            user([{"type": "text", "text": "b"}, image_part(PNG_URI)]),
        )
        self.assertEqual([i.mime_type for i in prompt.images], ["image/png"])

    def test_tool_turn_sends_no_images(self) -> None:
        """When a tool result is current, no image (not even a refused URL) counts (case 30)."""
        prompt = render(
            user([{"type": "text", "text": "see"}, image_part("https://example.com/a.png")]),
            {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        )
        self.assertEqual(prompt.images, ())
        self.assertTrue(prompt.message.endswith("Tool:call_1: Sunny"))

    def test_malformed_parts_in_active_turn(self) -> None:
        """Eight malformed ``image_url`` shapes, in three placements, are refused (case 18)."""
        shapes: list[Any] = [
            {"type": "image_url"},
            {"type": "image_url", "image_url": None},
            {"type": "image_url", "image_url": 7},
            {"type": "image_url", "image_url": {}},
            {"type": "image_url", "image_url": {"url": None}},
            {"type": "image_url", "image_url": {"url": ""}},
            {"type": "image_url", "image_url": {"url": "   "}},
            {"type": "image_url", "image_url": ""},
        ]
        for shape in shapes:
            placements = [
                [user([shape])],
                [user([{"type": "text", "text": "x"}, shape])],
                [
                    user("earlier"),
                    {"role": "assistant", "content": "ok"},
                    user([shape, image_part(PNG_URI)]),
                ],
            ]
            for messages in placements:
                with self.assertRaises(InvalidImageError, msg=repr(shape)):
                    build_prompt(messages, DEFAULT_IMAGES)

    def test_malformed_data_uris(self) -> None:
        """No base64, empty, invalid base64, SVG, PDF, PDF bytes labelled PNG (cases 19, 25)."""
        pdf = base64.b64encode(b"%PDF-1.4 fake").decode()
        svg = base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg'/>").decode()
        for uri in (
            f"data:image/png,{PNG_B64}",
            "data:image/png;base64,",
            "data:image/png;base64,%%%",
            f"data:image/svg+xml;base64,{svg}",
            f"data:application/pdf;base64,{pdf}",
            f"data:image/png;base64,{pdf}",
            "data:image/png;base64",
            f"data:;base64,{PNG_B64}",
        ):
            with self.assertRaises(InvalidImageError, msg=uri):
                render(user([image_part(uri)]))

    def test_mislabelled_image_gets_sniffed_type(self) -> None:
        """JPEG bytes labelled PNG are passed as what they are."""
        uri = "data:image/png;base64," + base64.b64encode(JPEG).decode()
        self.assertEqual(render(user([image_part(uri)])).images[0].mime_type, "image/jpeg")

    def test_sniffing(self) -> None:
        """Magic numbers of the allowed types; anything else is unknown."""
        self.assertEqual(sniff_image_type(PNG_1X1), "image/png")
        self.assertEqual(sniff_image_type(JPEG), "image/jpeg")
        self.assertEqual(sniff_image_type(b"GIF89a..."), "image/gif")
        self.assertEqual(sniff_image_type(b"RIFF\x00\x00\x00\x00WEBPVP8 "), "image/webp")
        self.assertEqual(sniff_image_type(b"\x00\x00\x00\x18ftypheic"), "image/heic")
        self.assertEqual(sniff_image_type(b"\x00\x00\x00\x18ftypmif1"), "image/heif")
        self.assertIsNone(sniff_image_type(b"%PDF-1.7"))

    def test_nine_parts_refused(self) -> None:
        """At most eight images per turn (case 25)."""
        with self.assertRaises(InvalidImageError):
            render(user([image_part(PNG_URI)] * 9))
        self.assertEqual(len(render(user([image_part(PNG_URI)] * 8)).images), 8)

    def test_per_image_limit(self) -> None:
        """An image over ``images.maxBytes`` is refused before decoding."""
        small = ImagesConfig(max_bytes=40)
        with self.assertRaises(InvalidImageError):
            render(user([image_part(PNG_URI)]), images=small)
        self.assertEqual(
            len(
                render(
                    user([image_part(PNG_URI)]), images=ImagesConfig(max_bytes=len(PNG_1X1))
                ).images
            ),
            1,
        )

    def test_total_limit(self) -> None:
        """All images of a turn together stay under 20 MB."""
        each = (MAX_TOTAL_IMAGE_BYTES // 3) + 1024
        blob = base64.b64encode(PNG_1X1 + b"\x00" * (each - len(PNG_1X1))).decode()
        uri = f"data:image/png;base64,{blob}"
        with self.assertRaises(InvalidImageError):
            render(user([image_part(uri)] * 3))
        self.assertEqual(len(render(user([image_part(uri)] * 2)).images), 2)

    def test_urls_refused_by_default(self) -> None:
        """Remote URLs need ``images.allowUrl`` (case 17)."""
        with self.assertRaises(InvalidImageError):
            render(user([image_part("https://example.com/cat.png")]))

    def test_urls_allowed_when_configured(self) -> None:
        """With ``allowUrl`` an allowed http(s) URL is left for the fetcher."""
        config = ImagesConfig(allow_url=True, url_allowlist=("*.example.com",))
        prompt = render(user([image_part("https://img.example.com/cat.png")]), images=config)
        self.assertEqual(prompt.image_urls, ("https://img.example.com/cat.png",))
        self.assertEqual(prompt.message, IMAGE_ONLY_PLACEHOLDER)
        for bad in ("https://evil.com/x.png", "ftp://img.example.com/x.png", "https:///x"):
            with self.assertRaises(InvalidImageError, msg=bad):
                check_image_url(bad, config)

    def test_host_allowlist(self) -> None:
        """Exact hosts, and ``*.`` patterns for subdomains only."""
        self.assertTrue(host_allowed("example.com", ["example.com"]))
        self.assertTrue(host_allowed("a.b.example.com", ["*.example.com"]))
        self.assertFalse(host_allowed("example.com", ["*.example.com"]))
        self.assertFalse(host_allowed("badexample.com", ["*.example.com"]))
        self.assertFalse(host_allowed("example.org", ["example.com"]))


class PromptOverHTTPTests(ChatTestCase):
    """The rendered prompt is what reaches the runtime; image errors are 400s."""

    def test_rendered_request(self) -> None:
        """The AgentRequest carries the rendered message, system prompt and images."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("ok")
        body = chat_body()
        body["messages"] = [
            {"role": "developer", "content": "Be kind."},
            user([{"type": "text", "text": "describe this"}, image_part(PNG_URI)]),
        ]
        self.assertEqual(self.call(h, body).status, 200)
        request = h.runtime.requests[0]
        self.assertEqual(request.message, "describe this")
        self.assertEqual(request.extra_system_prompt, "Be kind.")
        self.assertEqual(request.images, (ImageInput(PNG_B64, "image/png"),))

    def test_image_errors_are_400(self) -> None:
        """A refused image: 400 with OpenClaw's generic message; the agent is not run."""
        for part in (image_part("https://example.com/x.png"), image_part(None)):
            h = ChatHarness()
            body = chat_body()
            body["messages"] = [user([{"type": "text", "text": "x"}, part])]
            reply = self.call(h, body)
            error = self.assertError(reply, 400, "Invalid image_url content in `messages`.")
            self.assertEqual(error["param"], "messages")
            self.assertEqual(h.runtime.requests, [])

    def test_large_message(self) -> None:
        """A 1.2-million-character message is accepted (case 24)."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("ok")
        reply = self.call(h, chat_body("x" * 1_200_000))
        self.assertEqual(reply.status, 200)
        self.assertEqual(len(h.runtime.requests[0].message), 1_200_000)

    def test_only_system_message(self) -> None:
        """Only a system message: 400 missing user message (case 40)."""
        h = ChatHarness()
        body = chat_body()
        body["messages"] = [{"role": "system", "content": "x"}]
        self.assertError(self.call(h, body), 400, "Missing user message in `messages`.")
