"""``GET /v1/models`` and ``GET /v1/models/{id}``."""

from __future__ import annotations

from openclaw.config.model import RateLimitConfig
from tests.chat_fakes import ChatHarness, ChatTestCase, chat_body, token_auth

AUTH = {"authorization": "Bearer secret"}


def model(model_id: str) -> dict[str, object]:
    """One expected model object."""
    return {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": "openclaw",
        "permission": [],
    }


class ListTests(ChatTestCase):
    """The list of agents-as-models."""

    def test_list(self) -> None:
        """``openclaw``, ``openclaw/default``, the default agent, then every agent, once."""
        h = ChatHarness(auth=token_auth(), agent_ids=("main", "beta"))
        reply = self.call(h, method="GET", path="/v1/models", headers=AUTH)
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.headers["content-type"], "application/json; charset=utf-8")
        self.assertEqual(
            reply.json(),
            {
                "object": "list",
                "data": [
                    model("openclaw"),
                    model("openclaw/default"),
                    model("openclaw/main"),
                    model("openclaw/beta"),
                ],
            },
        )

    def test_default_agent_first(self) -> None:
        """A default agent that is not first in the list still comes third."""
        h = ChatHarness(agent_ids=("alpha", "beta"), default_agent="beta")
        ids = [m["id"] for m in self.call(h, method="GET", path="/v1/models").json()["data"]]
        self.assertEqual(ids, ["openclaw", "openclaw/default", "openclaw/beta", "openclaw/alpha"])

    def test_every_listed_id_is_a_valid_model(self) -> None:
        """Each listed id is accepted as ``model`` by chat completions."""
        h = ChatHarness()
        h.runtime.on_start = lambda run: run.finish("ok")
        for entry in self.call(h, method="GET", path="/v1/models").json()["data"]:
            self.assertEqual(self.call(h, chat_body(model=entry["id"])).status, 200, entry)

    def test_post_is_405_before_auth(self) -> None:
        """Non-GET: 405 ``Allow: GET`` even without credentials."""
        h = ChatHarness(auth=token_auth())
        for path in ("/v1/models", "/v1/models/openclaw"):
            reply = self.call(h, b"{}", method="POST", path=path)
            self.assertEqual(reply.status, 405)
            self.assertEqual(reply.headers["allow"], "GET")

    def test_unauthorized(self) -> None:
        """Without the token: 401 in OpenClaw's shape."""
        h = ChatHarness(auth=token_auth())
        for path in ("/v1/models", "/v1/models/openclaw"):
            self.assertError(
                self.call(h, method="GET", path=path), 401, "Unauthorized", "unauthorized"
            )

    def test_rate_limited(self) -> None:
        """The failed-auth limiter applies here too."""
        limiter = RateLimitConfig(max_attempts=1, exempt_loopback=False)
        h = ChatHarness(auth=token_auth(rate_limit=limiter))
        self.call(h, method="GET", path="/v1/models", headers={"authorization": "Bearer x"})
        reply = self.call(h, method="GET", path="/v1/models", headers=AUTH)
        self.assertEqual(reply.status, 429)
        self.assertTrue(reply.headers["retry-after"].isdigit())


class RetrieveTests(ChatTestCase):
    """One model by (URL-encoded) id."""

    def test_retrieve(self) -> None:
        """Listed ids are found, with the slash raw or percent-encoded."""
        h = ChatHarness()
        for path, model_id in (
            ("/v1/models/openclaw", "openclaw"),
            ("/v1/models/openclaw/beta", "openclaw/beta"),
            ("/v1/models/openclaw%2Fbeta", "openclaw/beta"),
            ("/v1/models/openclaw%2fdefault", "openclaw/default"),
        ):
            reply = self.call(h, method="GET", path=path)
            self.assertEqual(reply.status, 200, path)
            self.assertEqual(reply.json(), model(model_id))

    def test_not_found(self) -> None:
        """A well-formed id of an unknown agent: 404 ``Model '<id>' not found.``;
        an id that is no agent target at all: 400 ``Invalid model id.``"""
        h = ChatHarness()
        reply = self.call(h, method="GET", path="/v1/models/openclaw%2Fzeta")
        error = self.assertError(reply, 404, "Model 'openclaw/zeta' not found.")
        self.assertEqual(error["code"], "model_not_found")
        self.assertEqual(error["param"], "model")
        self.assertError(
            self.call(h, method="GET", path="/v1/models/gpt-4o"), 400, "Invalid model id."
        )
        # As OpenClaw: other spellings of a configured agent pick it in a chat
        # request but are not model ids (only the listed ids are found).
        for path, shown in (
            ("/v1/models/agent:beta", "agent:beta"),
            ("/v1/models/openclaw:beta", "openclaw:beta"),
            ("/v1/models/OPENCLAW", "OPENCLAW"),
            ("/v1/models/openclaw%2Fbeta%20", "openclaw/beta "),
        ):
            self.assertError(
                self.call(h, method="GET", path=path), 404, f"Model '{shown}' not found."
            )

    def test_bad_ids(self) -> None:
        """Missing id, broken escapes, non-UTF-8 and control characters: 400."""
        h = ChatHarness()
        for path, message in (
            ("/v1/models/", "Missing model id."),
            ("/v1/models/openclaw%ZZ", "Invalid model id encoding."),
            ("/v1/models/a%00b", "Invalid model id."),
            ("/v1/models/%20%20", "Invalid model id."),
        ):
            self.assertError(self.call(h, method="GET", path=path), 400, message)

    def test_non_utf8_id(self) -> None:
        """A percent-encoded id that is not UTF-8: 400 (Klein's router refuses such
        paths itself, so this calls the endpoint directly)."""
        from typing import Any

        from twisted.web.test.requesthelper import DummyRequest

        h = ChatHarness()
        request: Any = DummyRequest([b"v1", b"models", b"%FF%FE"])
        request.method = b"GET"
        request.path = b"/v1/models/%FF%FE"
        body = h.models.handle(request)
        self.assertEqual(request.responseCode, 400)
        self.assertIn(b"Invalid model id encoding.", body)
