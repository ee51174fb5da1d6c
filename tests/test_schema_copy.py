"""The providers' memo of JSON-ready tool schemas (``schema_copy``)."""

from __future__ import annotations

import gc
from types import MappingProxyType
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.providers import http
from openclaw.agents.providers.base import ModelCall, ModelMessage
from openclaw.agents.providers.openai_completions import request_body
from openclaw.agents.types import ClientTool


def _schema(name: str) -> MappingProxyType[str, Any]:
    return MappingProxyType(
        {"type": "object", "properties": MappingProxyType({name: {"type": "string"}})}
    )


class SchemaCopyTests(SynchronousTestCase):
    def test_same_source_is_copied_once(self) -> None:
        """A frozen schema becomes plain dicts once; later turns reuse that copy."""
        schema = _schema("path")
        first = http.schema_copy(schema)
        self.assertEqual(first, {"type": "object", "properties": {"path": {"type": "string"}}})
        self.assertIs(type(first["properties"]), dict)
        self.assertIs(http.schema_copy(schema), first)

    def test_new_object_never_gets_a_stale_copy(self) -> None:
        """A schema created after another one died (perhaps at the same
        address) gets its own content, and the memo stays bounded."""
        for i in range(http._SCHEMA_COPIES_MAX * 3):
            schema = _schema(f"field{i}")
            self.assertEqual(
                http.schema_copy(schema)["properties"], {f"field{i}": {"type": "string"}}
            )
            del schema
            gc.collect(0)
        self.assertLessEqual(len(http._SCHEMA_COPIES), http._SCHEMA_COPIES_MAX)

    def test_request_body_unchanged_across_calls(self) -> None:
        """Two calls with the same tools send the same tool list."""
        tool = ClientTool(name="read", description="Read a file", parameters=_schema("path"))
        call = ModelCall(
            model="m", system_prompt="s", messages=(ModelMessage("user", "hi"),), tools=(tool,)
        )
        first = request_body(call)["tools"]
        second = request_body(call)["tools"]
        self.assertEqual(first, second)
        self.assertEqual(
            first[0]["function"]["parameters"],
            {"type": "object", "properties": {"path": {"type": "string"}}},
        )
