"""Property tests of the prompt builder (issue 7 item 3).

Any ``messages`` array, however malformed, becomes an :class:`AgentPrompt` or
one of the two documented refusals (MissingUserMessageError, which the endpoint
answers ``Missing user message in `messages`.``; InvalidImageError, answered
``Invalid image_url content in `messages`.``), never another exception. What
comes out respects the image rules: at most 8 parts, only sniffed allowed
types, sizes within the limits, URLs only when allowed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config.model import ImagesConfig
from openclaw.gateway.http.openai_messages import (
    MAX_IMAGE_PARTS,
    MAX_TOTAL_IMAGE_BYTES,
    AgentPrompt,
    InvalidImageError,
    MissingUserMessageError,
    build_prompt,
    sniff_image_type,
)
from tests.chat_fakes import PNG_1X1

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
MAGIC = st.sampled_from(
    [
        b"",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff",
        b"GIF89a",
        b"GIF87a",
        b"RIFF\x00\x00\x00\x00WEBP",
        b"\x00\x00\x00\x18ftypheic",
        b"\x00\x00\x00\x18ftypmif1",
        b"%PDF-1.7",
        b"<svg",
    ]
)
MIME = st.sampled_from(
    ["image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml", "image/heic", ""]
) | st.text(max_size=8)


@st.composite
def data_uris(draw: st.DrawFn) -> str:
    """``data:`` URLs: right or wrong type, base64 flag, payload and padding."""
    payload = draw(MAGIC) + draw(st.binary(max_size=24))
    encoded = base64.b64encode(payload).decode("ascii")
    encoded = draw(
        st.sampled_from(
            [
                encoded,
                encoded.rstrip("="),
                encoded + "=",
                " " + encoded[:4] + "\n" + encoded[4:],
                encoded.replace("A", "*"),
                "",
                "====",
            ]
        )
    )
    params = draw(st.lists(st.sampled_from(["base64", "BASE64", "charset=utf-8", "x"]), max_size=3))
    scheme = draw(st.sampled_from(["data:", "DATA:", "data: "]))
    comma = draw(st.sampled_from([",", ",", ""]))
    return scheme + ";".join([draw(MIME), *params]) + comma + encoded


_REAL_IMAGES = {
    "image/png": PNG_1X1,
    "image/jpeg": b"\xff\xd8\xff\xe0" + b"\x00" * 16,
    "image/gif": b"GIF89a\x01\x00\x01\x00",
    "image/webp": b"RIFF\x1a\x00\x00\x00WEBPVP8 ",
    "image/heic": b"\x00\x00\x00\x18ftypheic\x00\x00",
}


@st.composite
def good_data_uris(draw: st.DrawFn) -> str:
    """Well-formed image data URLs (declared and real type may differ)."""
    declared = draw(st.sampled_from(sorted(_REAL_IMAGES)))
    real = draw(st.sampled_from([declared, *sorted(_REAL_IMAGES)]))
    encoded = base64.b64encode(_REAL_IMAGES[real]).decode("ascii")
    return f"data:{declared};base64,{encoded}"


IMAGE_URLS = st.one_of(
    good_data_uris(),
    data_uris(),
    st.sampled_from(
        [
            "https://img.example.com/a.png",
            "http://sub.example.com/a",
            "https://evil.test/a.png",
            "ftp://example.com/a.png",
            "https://",
            "http://[::1",
            "javascript:alert(1)",
            "",
            "   ",
        ]
    ),
    st.text(max_size=12),
)
IMAGE_PARTS = st.fixed_dictionaries(
    {"type": st.just("image_url")},
    optional={
        "image_url": IMAGE_URLS
        | st.fixed_dictionaries({}, optional={"url": IMAGE_URLS | JSON_VALUES})
        | JSON_VALUES
    },
)
TEXT_PARTS = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "input_text", "TEXT", "image", "output_text"]) | JSON_VALUES},
    optional={"text": st.text(max_size=10) | JSON_VALUES, "input_text": st.text(max_size=6)},
)
GOOD_IMAGE_PARTS = st.fixed_dictionaries(
    {
        "type": st.just("image_url"),
        "image_url": st.one_of(
            good_data_uris(),
            good_data_uris().map(lambda url: {"url": url}),
            st.sampled_from(["https://img.example.com/a.png", "http://a.example.com/b"]),
        ),
    }
)
PARTS = st.one_of(IMAGE_PARTS, TEXT_PARTS, JSON_VALUES)
CONTENT = st.one_of(
    st.text(max_size=20),
    st.lists(PARTS, max_size=10),
    st.lists(st.lists(PARTS, max_size=2), max_size=2),  # nested arrays of parts
    JSON_VALUES,
)
ROLES = (
    st.sampled_from(
        [
            "user",
            "assistant",
            "system",
            "developer",
            "tool",
            "function",
            " user ",
            "USER",
            "bot",
            "",
        ]
    )
    | JSON_VALUES
)
TOOL_CALLS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.text(max_size=4) | JSON_VALUES,
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {},
                optional={
                    "name": st.text(max_size=4) | JSON_VALUES,
                    "arguments": st.text(max_size=8) | JSON_VALUES,
                },
            )
            | JSON_VALUES,
        },
    )
    | JSON_VALUES,
    max_size=3,
)
MESSAGES = st.fixed_dictionaries(
    {},
    optional={
        "role": ROLES,
        "content": CONTENT,
        "tool_call_id": st.text(max_size=4) | JSON_VALUES,
        "name": st.text(max_size=4) | JSON_VALUES,
        "tool_calls": TOOL_CALLS | JSON_VALUES,
    },
)
MESSAGE_LISTS = st.none() | st.lists(MESSAGES | JSON_VALUES, max_size=6)
IMAGE_CONFIGS = st.builds(
    ImagesConfig,
    allow_url=st.booleans(),
    url_allowlist=st.sampled_from([(), ("img.example.com",), ("*.example.com",)]),
    allowed_mimes=st.sampled_from(
        [
            ImagesConfig().allowed_mimes,
            ("image/png",),
            ("image/heic", "image/heif", "image/svg+xml"),
        ]
    ),
    max_bytes=st.sampled_from([10_485_760, 16, 1]),
)
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG_1X1).decode("ascii")


def _has_plain_text_turn(messages: object) -> bool:
    """True when some message certainly renders (a user/assistant/tool string)."""
    if not isinstance(messages, list):
        return False
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        role = message.get("role")
        content = message.get("content")
        if (
            isinstance(role, str)
            and role.strip() in ("user", "assistant", "tool", "function")
            and isinstance(content, str)
            and content.strip()
        ):
            return True
    return False


class PromptPropertyTests(SynchronousTestCase):
    """``build_prompt`` on arbitrary ``messages``."""

    def build(self, messages: Any, config: ImagesConfig) -> AgentPrompt | None:
        """The prompt, or None after a documented refusal (anything else fails)."""
        try:
            return build_prompt(messages, config)
        except MissingUserMessageError as error:
            self.assertEqual(str(error), "Missing user message in `messages`.")
            self.assertFalse(_has_plain_text_turn(messages), repr(messages))
            return None
        except InvalidImageError as error:
            self.assertTrue(str(error))
            return None
        except Exception as error:  # the property under test
            self.fail(f"build_prompt raised {type(error).__name__}: {error} for {messages!r}")

    def assertImagesWithinRules(self, prompt: AgentPrompt, config: ImagesConfig) -> None:
        """Images and URLs that came out obey the documented limits."""
        self.assertLessEqual(len(prompt.images) + len(prompt.image_urls), MAX_IMAGE_PARTS)
        total = 0
        for image in prompt.images:
            self.assertIn(image.mime_type, config.allowed_mimes)
            try:
                data = base64.b64decode(image.data, validate=True)
            except binascii.Error:
                self.fail(f"image data is not valid base64: {image.data!r}")
            self.assertTrue(data)
            self.assertLessEqual(len(data), config.max_bytes)
            self.assertEqual(sniff_image_type(data), image.mime_type)
            total += len(data)
        self.assertLessEqual(total, MAX_TOTAL_IMAGE_BYTES)
        if prompt.image_urls:
            self.assertTrue(config.allow_url)
        for url in prompt.image_urls:
            self.assertTrue(url.lower().startswith(("http://", "https://")), url)

    @settings(derandomize=True, max_examples=250, deadline=None)
    @given(messages=MESSAGE_LISTS, config=IMAGE_CONFIGS)
    @example(messages=[{"role": "user", "content": [{"type": "image_url"}]}], config=ImagesConfig())
    @example(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": PNG_URI}] * 9}],
        config=ImagesConfig(),
    )
    def test_any_messages(self, messages: Any, config: ImagesConfig) -> None:
        """A prompt with a non-empty message, or a documented refusal."""
        prompt = self.build(messages, config)
        if prompt is None:
            return
        self.assertIsInstance(prompt.message, str)
        self.assertTrue(prompt.message.strip())
        if prompt.extra_system_prompt is not None:
            self.assertTrue(prompt.extra_system_prompt.strip())
        self.assertImagesWithinRules(prompt, config)

    @settings(derandomize=True, max_examples=150, deadline=None)
    @given(
        history=st.lists(MESSAGES, max_size=4),
        parts=st.lists(
            st.one_of(GOOD_IMAGE_PARTS, GOOD_IMAGE_PARTS, TEXT_PARTS, IMAGE_PARTS),
            min_size=1,
            max_size=10,
        ),
        config=IMAGE_CONFIGS,
    )
    def test_image_garbage_in_the_active_turn(
        self, history: list[Any], parts: list[Any], config: ImagesConfig
    ) -> None:
        """Image parts of the answered user turn: accepted within the rules, or
        refused as InvalidImageError; images of earlier turns are never sent."""
        messages = [
            {"role": "user", "content": [{"type": "image_url", "image_url": PNG_URI}]},
            *history,
            {"role": "user", "content": parts},
        ]
        prompt = self.build(messages, config)
        if prompt is None:
            return
        self.assertImagesWithinRules(prompt, config)
        images_sent = sum(
            1 for p in parts if isinstance(p, Mapping) and p.get("type") == "image_url"
        )
        self.assertEqual(len(prompt.images) + len(prompt.image_urls), images_sent)

    @settings(derandomize=True, max_examples=80, deadline=None)
    @given(history=st.lists(MESSAGES | JSON_VALUES, max_size=5), text=st.text(min_size=1))
    def test_a_trailing_user_string_is_always_answered(self, history: list[Any], text: str) -> None:
        """Whatever garbage precedes it, a last user message with text is the turn."""
        if not text.strip():
            text = "x" + text
        prompt = self.build([*history, {"role": "user", "content": text}], ImagesConfig())
        self.assertIsNotNone(prompt)
        assert prompt is not None
        self.assertTrue(prompt.message.endswith(text.strip()))
        self.assertEqual((prompt.images, prompt.image_urls), ((), ()))
