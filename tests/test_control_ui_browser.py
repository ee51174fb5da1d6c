"""The Control UI in a real headless Chromium against the real ``twistd
openclaw`` process and a scripted upstream (:mod:`tests.browser_upstream`).

One browser and one gateway serve the whole class; every test starts from a
fresh page with empty browser storage and its own chat. Waits are
``WebDriverWait`` on DOM conditions.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select
from twisted.trial.unittest import SynchronousTestCase

from tests.browser_support import (
    TOKEN,
    UiGateway,
    by_id,
    conn_state,
    message_texts,
    save_screenshot,
    sign_in,
    start_chrome,
    visible,
    wait_for,
)

#: Where the page keeps the token (see storage.js).
KEY = "openclaw.controlUi.secret"
#: The reply's state as the page shows it (see chat.js).
_LAST_REPLY = """
const items = document.querySelectorAll('#messages .msg.assistant');
const last = items[items.length - 1];
if (!last) return null;
return {text: last.querySelector('.body').innerText,
        html: last.querySelector('.body').innerHTML,
        state: last.dataset.state || '',
        streaming: last.classList.contains('streaming')};
"""


class ControlUiBrowserTests(SynchronousTestCase):
    gateway: ClassVar[UiGateway]
    driver: ClassVar[Chrome]
    profile: ClassVar[Path]

    @classmethod
    def setUpClass(cls) -> None:
        cls.gateway = UiGateway()
        try:
            cls.driver, cls.profile = start_chrome()
        except BaseException:
            cls.gateway.close()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            cls.driver.quit()
        finally:
            shutil.rmtree(cls.profile, ignore_errors=True)
            cls.gateway.close()

    def setUp(self) -> None:
        if self.gateway.process is None:
            self.gateway.start()
        d = self.driver
        d.set_window_size(1280, 860)
        d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        # Clear the origin's storage from a page that is not the app, so no
        # running app can write its token back before the reload.
        d.get(self.gateway.url + "healthz")
        d.execute_script("sessionStorage.clear(); localStorage.clear();")
        d.get(self.gateway.url)
        wait_for(d, lambda d: visible(d, "secret"), "the sign-in form")

    # -- helpers ---------------------------------------------------------------

    def signed_in(self) -> None:
        sign_in(self.driver)
        wait_for(self.driver, lambda d: conn_state(d) == "online", "connected")
        wait_for(self.driver, lambda d: visible(d, "input"), "the composer")

    def new_chat(self) -> str:
        d = self.driver
        if visible(d, "toggle-sessions"):  # a phone: the list is a drawer
            by_id(d, "toggle-sessions").click()
            wait_for(d, lambda d: self.drawer_open(), "the session drawer open")
        by_id(d, "new-session").click()
        wait_for(d, lambda d: not message_texts(d), "an empty conversation")
        return self.current_key()

    def current_key(self) -> str:
        """The open session's key (one script: the list may be redrawn meanwhile)."""
        key: str = self.driver.execute_script(
            "const e = document.querySelector('.session[aria-current=\"true\"]');"
            "return e ? e.dataset.key : '';"
        )
        return key

    def drawer_open(self) -> bool:
        return bool(
            self.driver.execute_script(
                "const r = document.getElementById('sidebar').getBoundingClientRect();"
                "return r.left >= 0 && r.right > 0;"
            )
        )

    def send(self, text: str) -> None:
        box = by_id(self.driver, "input")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def last_reply(self) -> dict[str, Any]:
        reply: dict[str, Any] | None = self.driver.execute_script(_LAST_REPLY)
        return reply or {"text": "", "html": "", "state": "", "streaming": False}

    def finished_reply(self, needle: str) -> dict[str, Any]:
        """Wait until the latest reply is final and contains ``needle``."""

        def done(_d: WebDriver) -> dict[str, Any] | None:
            reply = self.last_reply()
            if reply["state"] == "final" and needle in reply["text"]:
                return reply
            return None

        return wait_for(self.driver, done, f"a final reply containing {needle!r}")

    def open_session(self, key: str) -> None:
        """Click the session's row (found and clicked in one script: the list is redrawn)."""
        wait_for(
            self.driver,
            lambda d: d.execute_script(
                "const row = document.querySelector(arguments[0]); row?.click(); return !!row;",
                f".session[data-key='{key}']",
            ),
            f"the row of {key}",
        )

    def streaming(self, needle: str = "tick tick") -> None:
        """Wait until the latest reply is streaming and shows ``needle``."""
        wait_for(
            self.driver,
            lambda d: self.last_reply()["streaming"] and needle in self.last_reply()["text"],
            "the answer streaming in",
        )

    def tool_boxes(self) -> list[dict[str, Any]]:
        """Each tool box: its arguments, state, status and whether a result shows."""
        boxes: list[dict[str, Any]] = self.driver.execute_script(
            "return [...document.querySelectorAll('#messages details.tool')].map((t) => ({"
            "args: t.querySelector('.tool-args').textContent, state: t.dataset.state || '',"
            "status: t.querySelector('.tool-status').textContent,"
            "result: !t.querySelector('.tool-result').parentElement.hidden}));"
        )
        return boxes

    def open_tab(self) -> tuple[str, str]:
        """A second tab on the app, signed in (closed at cleanup): (first, second) handles."""
        d = self.driver
        first = d.current_window_handle
        d.switch_to.new_window("tab")
        second = d.current_window_handle

        def close() -> None:
            d.switch_to.window(second)
            d.close()
            d.switch_to.window(first)

        self.addCleanup(close)
        d.get(self.gateway.url)
        wait_for(d, lambda d: visible(d, "secret"), "the sign-in form")
        self.signed_in()
        return first, second

    def idle(self) -> bool:
        """No answer is running: Send is back (and the page says it is not busy)."""
        busy = self.driver.execute_script("return document.getElementById('app').dataset.busy")
        return busy == "false" and visible(self.driver, "send")

    def scroll(self, top: int | None = None) -> dict[str, int]:
        """The conversation's scroll position (moved to ``top`` first when given)."""
        where: dict[str, int] = self.driver.execute_script(
            "const m = document.getElementById('messages');"
            "if (arguments[0] !== null) m.scrollTop = arguments[0];"
            "return {top: m.scrollTop, height: m.scrollHeight, view: m.clientHeight,"
            "        below: m.scrollHeight - m.scrollTop - m.clientHeight};",
            top,
        )
        return where

    def assert_no_alert(self) -> None:
        try:
            alert = self.driver.switch_to.alert
        except NoAlertPresentException:
            return
        text = alert.text
        alert.dismiss()
        self.fail(f"an alert opened: {text!r}")

    # -- tests -----------------------------------------------------------------

    def test_wrong_token_is_refused_with_a_clear_message(self) -> None:
        """A wrong token shows "Wrong token", keeps the sign-in form and stores
        nothing; the token offered as a password is accepted."""
        d = self.driver
        sign_in(d, "not-the-token")
        error = wait_for(
            d, lambda d: by_id(d, "login-error") if visible(d, "login-error") else None, "an error"
        )
        self.assertIn("Wrong token", error.text)
        self.assertEqual(conn_state(d), "auth-failed")
        self.assertFalse(visible(d, "workspace"))
        stored = d.execute_script(
            "return [sessionStorage.length, localStorage.getItem('openclaw.controlUi.secret')]"
        )
        self.assertEqual(stored, [0, None])
        # The right secret chosen as the wrong kind still signs in: OpenClaw
        # takes the shared secret in either field.
        sign_in(d, TOKEN, kind="password")
        wait_for(d, lambda d: conn_state(d) == "online", "signed in with the token as password")

    def test_unreachable_gateway_is_said_and_retried(self) -> None:
        """Signing in while the gateway is down says so and keeps retrying; the
        page connects by itself once the gateway is back."""
        d = self.driver
        self.gateway.stop()
        sign_in(d)
        error = wait_for(
            d, lambda d: by_id(d, "login-error") if visible(d, "login-error") else None, "an error"
        )
        self.assertIn("cannot reach the gateway", error.text)
        self.assertEqual(conn_state(d), "connecting")
        self.gateway.start()
        wait_for(d, lambda d: conn_state(d) == "online", "connected once it is back")
        wait_for(d, lambda d: visible(d, "input"), "the composer")

    def test_sign_in_send_and_watch_the_answer_stream(self) -> None:
        """Enter sends; the streamed answer renders Markdown and highlighted code;
        the token is kept for this tab only (sessionStorage)."""
        d = self.driver
        self.signed_in()
        self.assertEqual(
            d.execute_script(
                "return JSON.parse(sessionStorage.getItem('openclaw.controlUi.secret')).secret"
            ),
            TOKEN,
        )
        self.assertIsNone(
            d.execute_script("return localStorage.getItem('openclaw.controlUi.secret')")
        )
        self.new_chat()
        self.send("hello there")
        reply = self.finished_reply("You said: hello there")
        self.assertIn("<strong>hello there</strong>", reply["html"])
        self.send("code please")
        reply = self.finished_reply("Done.")
        self.assertIn('class="hljs-keyword">def</span>', reply["html"])
        self.assertEqual(message_texts(d, ".msg.user .body"), ["hello there", "code please"])
        self.assertEqual(by_id(d, "session-title").text, "hello there")
        save_screenshot(d, "control-ui-chat")

    def test_shift_enter_makes_a_new_line(self) -> None:
        """Shift+Enter adds a line to the message instead of sending it."""
        self.signed_in()
        self.new_chat()
        box = by_id(self.driver, "input")
        box.send_keys("line one")
        box.send_keys(Keys.SHIFT, Keys.ENTER)
        box.send_keys("line two")
        self.assertEqual(box.get_attribute("value"), "line one\nline two")
        self.assertEqual(message_texts(self.driver), [])
        box.send_keys(Keys.ENTER)
        self.finished_reply("You said: line one")
        self.assertEqual(message_texts(self.driver, ".msg.user .body"), ["line one\nline two"])

    def test_escape_stops_a_running_answer(self) -> None:
        """Escape aborts mid-stream: the partial answer stays, marked Stopped."""
        d = self.driver
        self.signed_in()
        self.new_chat()
        self.send("slow please")
        wait_for(
            d,
            lambda d: self.last_reply()["streaming"] and "tick tick" in self.last_reply()["text"],
            "the answer streaming in",
        )
        self.assertTrue(visible(d, "stop"))
        by_id(d, "input").send_keys(Keys.ESCAPE)
        wait_for(d, lambda d: self.last_reply()["state"] == "aborted", "the answer stopped")
        text = self.last_reply()["text"]
        self.assertIn("tick", text)
        self.assertLess(text.count("tick"), 400)
        self.assertIn("Stopped", message_texts(d, ".msg.assistant")[-1])
        wait_for(d, lambda d: visible(d, "send") and not visible(d, "stop"), "Send is back")

    def test_stop_is_offered_for_an_answer_started_before_a_switch_or_reload(self) -> None:
        """Back on a chat whose answer is still streaming (after opening another
        chat, or after a reload) the page offers Stop, and Escape aborts it."""
        d = self.driver
        self.signed_in()
        key = self.new_chat()
        self.send("hello first")
        self.finished_reply("You said: hello first")
        self.send("slow please")
        self.streaming()
        self.new_chat()
        self.assertTrue(visible(d, "send"))
        self.open_session(key)
        self.streaming()
        wait_for(d, lambda d: visible(d, "stop"), "Stop after switching back")
        d.refresh()
        wait_for(d, lambda d: conn_state(d) == "online", "connected again")
        self.streaming()
        wait_for(d, lambda d: visible(d, "stop") and not visible(d, "send"), "Stop after a reload")
        by_id(d, "input").send_keys(Keys.ESCAPE)
        wait_for(d, lambda d: self.last_reply()["state"] == "aborted", "the answer stopped")
        self.assertLess(self.last_reply()["text"].count("tick"), 400)
        self.assertIn("Stopped", message_texts(d, ".msg.assistant")[-1])
        wait_for(d, lambda d: visible(d, "send") and not visible(d, "stop"), "Send is back")
        self.assertEqual(message_texts(d, ".msg.user .body"), ["hello first", "slow please"])

    def test_stop_is_offered_after_a_reload_during_a_tool_call(self) -> None:
        """A tool call sends nothing while it runs: after a reload the history,
        which ends on the unanswered call, shows it running and offers Stop."""
        d = self.driver
        self.signed_in()
        self.new_chat()
        self.send("sleeper please")
        wait_for(d, lambda d: self.tool_boxes(), "the tool box")
        d.refresh()
        wait_for(d, lambda d: conn_state(d) == "online", "connected again")
        wait_for(
            d,
            lambda d: (
                [b["status"] for b in self.tool_boxes()] == ["running"] and visible(d, "stop")
            ),
            "the call running and Stop",
        )
        by_id(d, "stop").click()
        wait_for(d, lambda d: self.last_reply()["state"] == "aborted", "the run stopped")
        wait_for(d, lambda d: visible(d, "send") and not visible(d, "stop"), "Send is back")
        # One box (the live events filled the history's), no longer running.
        wait_for(
            d,
            lambda d: [b["state"] for b in self.tool_boxes()] in (["error"], ["ended"]),
            "one call, ended",
        )

    def test_a_second_tab_shows_the_other_tabs_turns_and_can_stop_them(self) -> None:
        """A second tab on the same chat shows the first tab's turns whole (its
        message above the answer, once the answer ends) and offers Stop for an
        answer the first tab started."""
        d = self.driver
        self.signed_in()
        key = self.new_chat()
        self.send("from the first tab")
        self.finished_reply("You said: from the first tab")
        first, second = self.open_tab()
        wait_for(
            d,
            lambda d: message_texts(d, ".msg.user .body") == ["from the first tab"],
            "the chat's history in the second tab",
        )
        self.assertEqual(self.current_key(), key)
        d.switch_to.window(first)
        self.send("again from the first tab")
        self.finished_reply("You said: again from the first tab")
        d.switch_to.window(second)
        self.finished_reply("You said: again from the first tab")
        wait_for(
            d,
            lambda d: (
                message_texts(d, ".msg.user .body")
                == ["from the first tab", "again from the first tab"]
            ),
            "the first tab's message in the second tab",
        )
        self.assertEqual(len(message_texts(d, ".msg.assistant")), 2)
        d.switch_to.window(first)
        self.send("slow please")
        self.streaming()
        d.switch_to.window(second)
        self.streaming()
        wait_for(d, lambda d: visible(d, "stop"), "Stop in the second tab")
        by_id(d, "input").send_keys(Keys.ESCAPE)
        wait_for(
            d,
            lambda d: (
                self.last_reply()["state"] == "aborted"
                and message_texts(d, ".msg.user .body")[-1:] == ["slow please"]
            ),
            "the stopped turn, whole, in the second tab",
        )
        self.assertEqual(len(message_texts(d, ".msg.assistant")), 3)
        d.switch_to.window(first)
        wait_for(d, lambda d: self.last_reply()["state"] == "aborted", "stopped in the first tab")
        wait_for(d, lambda d: visible(d, "send"), "Send is back in the first tab")
        # The first tab starts the session over: the second shows it under its new title.
        self.send("/new beta after new")
        self.finished_reply("You said: beta after new")
        d.switch_to.window(second)
        wait_for(
            d,
            lambda d: (
                message_texts(d, ".msg.user .body") == ["beta after new"]
                and by_id(d, "session-title").text == "beta after new"
            ),
            "the reset session, retitled, in the second tab",
        )

    def test_a_stop_word_while_nothing_runs_leaves_the_chat_usable(self) -> None:
        """A stop word ("please stop", "exit", "/stop") sent while nothing runs
        is OpenClaw's out-of-band abort: the gateway starts no turn and answers
        with nothing aborted. The page drops the word and the empty answer,
        says nothing was running, gives Send back, and the word titles nothing."""
        d = self.driver
        self.signed_in()
        self.new_chat()

        def notices(count: int) -> Callable[[WebDriver], list[str] | None]:
            """The notices, once there are ``count`` and Send is back."""

            def shown(d: WebDriver) -> list[str] | None:
                texts = message_texts(d, ".msg.notice")
                return texts if len(texts) == count and self.idle() else None

            return shown

        self.send("please stop")
        shown = wait_for(d, notices(1), "a notice, and Send back")
        self.assertIn("Nothing to stop", shown[0])
        self.assertEqual(message_texts(d, ".msg.user"), [])
        self.assertEqual(message_texts(d, ".msg.assistant"), [])
        self.assertEqual(by_id(d, "session-title").text, "New chat")
        self.send("hello")
        self.finished_reply("You said: hello")
        self.assertEqual(by_id(d, "session-title").text, "hello")
        for count, word in enumerate(("exit", "/stop"), start=2):
            self.send(word)
            wait_for(d, notices(count), f"a notice for {word!r}")
            self.assertEqual(message_texts(d, ".msg.user .body"), ["hello"])
            self.assertEqual(len(message_texts(d, ".msg.assistant")), 1)
            self.assertEqual(message_texts(d, ".msg.streaming"), [])
        self.send("after the stop words")
        self.finished_reply("You said: after the stop words")
        d.refresh()
        wait_for(
            d,
            lambda d: (
                message_texts(d, ".msg.user .body") == ["hello", "after the stop words"]
                and not message_texts(d, ".msg.notice")
            ),
            "the transcript without the stop words",
        )

    def test_a_reader_who_scrolled_up_is_not_moved(self) -> None:
        """Scrolled up in a second tab, the view stays put while the first tab's
        turns stream in and end (also a failing one); in the tab that sends, a
        streaming answer leaves a reader who scrolled up where they are, and is
        followed again once they are back at the end."""
        d = self.driver
        self.signed_in()
        self.new_chat()
        for n in range(3):
            self.send(f"essay {n}")
            self.finished_reply("Paragraph 11")
        first, second = self.open_tab()
        wait_for(d, lambda d: len(message_texts(d, ".msg.user")) == 3, "the history")
        where = self.scroll(100)
        self.assertEqual(where["top"], 100)
        self.assertGreater(where["below"], 1000)  # far from the end

        def last_message(text: str) -> Callable[[WebDriver], bool]:
            def shown(d: WebDriver) -> bool:
                return message_texts(d, ".msg.user .body")[-1:] == [text]

            return shown

        for text in ("from the first tab", "please fail"):
            d.switch_to.window(first)
            wait_for(d, lambda d: self.idle(), "the first tab idle")
            self.send(text)
            d.switch_to.window(second)
            wait_for(d, last_message(text), f"{text!r} in the second tab")
            self.assertEqual(self.scroll()["top"], 100, text)
        wait_for(d, lambda d: message_texts(d, ".msg.error"), "the failure in the second tab")
        self.assertEqual(self.scroll()["top"], 100)
        d.switch_to.window(first)
        wait_for(d, lambda d: self.idle(), "the first tab idle")
        self.send("slow please")
        self.streaming()
        self.assertLess(self.scroll()["below"], 48)  # the sender sees the answer come
        self.scroll(100)
        before = self.scroll()["height"]
        wait_for(d, lambda d: self.scroll()["height"] > before + 20, "the answer growing")
        self.assertEqual(self.scroll()["top"], 100)
        end = self.scroll(10**6)
        wait_for(d, lambda d: self.scroll()["height"] > end["height"] + 20, "growing more")
        self.assertLess(self.scroll()["below"], 48)
        by_id(d, "input").send_keys(Keys.ESCAPE)
        wait_for(d, lambda d: self.idle(), "stopped")

    def test_new_and_reset_commands_show_the_fresh_session(self) -> None:
        """/new and /reset reset the open session (in place, as this gateway
        does): the page redraws it from the transcript, keeps the gateway's
        acknowledgement as a notice, and titles the session afresh; text after
        "/new " is the fresh session's first turn."""
        d = self.driver
        self.signed_in()
        key = self.new_chat()
        self.send("first topic")
        self.finished_reply("You said: first topic")
        self.assertEqual(by_id(d, "session-title").text, "first topic")

        def fresh(notice: str) -> bool:
            return (
                message_texts(d, ".msg.notice .body") == [notice]
                and not message_texts(d, ".msg.user, .msg.assistant")
                and by_id(d, "session-title").text == "New chat"
                and self.idle()
            )

        self.send("/new")
        wait_for(d, lambda d: fresh("✅ New session started."), "the fresh session")
        self.send("/new second topic")
        wait_for(
            d,
            lambda d: (
                message_texts(d, ".msg.user .body") == ["second topic"]
                and "You said: second topic" in self.last_reply()["text"]
                and by_id(d, "session-title").text == "second topic"
                and self.idle()
            ),
            "the turn after /new, alone",
        )
        row = f".session[data-key='{key}'] .session-title"
        wait_for(
            d,
            lambda d: (
                d.execute_script("return document.querySelector(arguments[0])?.textContent;", row)
                == "second topic"
            ),
            "the sidebar's title",
        )
        self.send("/reset")
        wait_for(d, lambda d: fresh("✅ Session reset."), "the reset session")
        self.assertEqual(self.current_key(), key)
        # "/new <text>" whose turn calls a tool: the answer once, no notice.
        self.send("/new use a tool")
        wait_for(
            d,
            lambda d: (
                message_texts(d, ".msg.user .body") == ["use a tool"]
                and by_id(d, "session-title").text == "use a tool"
                and len(self.tool_boxes()) == 1
                and self.idle()
            ),
            "the tool turn after /new",
        )
        self.assertEqual(message_texts(d, ".msg.notice .body"), [])
        # "/new <text>" whose turn fails: the fresh session all the same, with the error.
        self.send("/new please fail")
        wait_for(
            d,
            lambda d: (
                message_texts(d, ".msg.user .body") == ["please fail"]
                and by_id(d, "session-title").text == "please fail"
                and message_texts(d, ".msg.error")
                and not self.tool_boxes()
                and self.idle()
            ),
            "the failed turn after /new, in the fresh session",
        )

    def test_agent_errors_appear_in_the_conversation(self) -> None:
        """An upstream failure shows as an error item in the chat."""
        self.signed_in()
        self.new_chat()
        self.send("please fail")
        errors = wait_for(
            self.driver, lambda d: message_texts(d, ".msg.error"), "an error in the chat"
        )
        self.assertIn("refused", errors[-1])

    def test_sessions_are_listed_titled_and_switch_history(self) -> None:
        """Two chats: each is titled by its first message, newest first, and
        opening one shows its own history; reset empties one, delete removes it."""
        d = self.driver
        self.signed_in()
        first = self.new_chat()
        self.send("alpha topic")
        self.finished_reply("You said: alpha topic")
        second = self.new_chat()
        self.send("beta topic")
        self.finished_reply("You said: beta topic")

        def titles(d: WebDriver) -> list[str]:
            found: list[str] = d.execute_script(
                "return [...document.querySelectorAll('.session .session-title')]"
                ".map((e) => e.textContent);"
            )
            return found

        wait_for(d, lambda d: titles(d)[:2] == ["beta topic", "alpha topic"], "both titles")
        d.find_element(By.CSS_SELECTOR, f".session[data-key='{first}']").click()
        wait_for(
            d,
            lambda d: message_texts(d, ".msg.user .body") == ["alpha topic"],
            "the first chat's history",
        )
        self.assertEqual(by_id(d, "session-title").text, "alpha topic")
        d.find_element(By.CSS_SELECTOR, f".session[data-key='{second}']").click()
        wait_for(
            d,
            lambda d: message_texts(d, ".msg.user .body") == ["beta topic"],
            "the second chat's history",
        )
        by_id(d, "reset-session").click()
        by_id(d, "reset-session").click()  # confirm
        wait_for(d, lambda d: not message_texts(d), "the reset chat is empty")
        by_id(d, "delete-session").click()
        by_id(d, "delete-session").click()  # confirm
        wait_for(
            d,
            lambda d: not d.find_elements(By.CSS_SELECTOR, f".session[data-key='{second}']"),
            "the deleted chat leaves the list",
        )

    def test_history_and_session_survive_a_reload(self) -> None:
        """After a reload the page signs in again and reopens the same chat."""
        d = self.driver
        self.signed_in()
        key = self.new_chat()
        self.send("remember me")
        self.finished_reply("You said: remember me")
        d.refresh()
        wait_for(d, lambda d: conn_state(d) == "online", "connected again")
        wait_for(
            d,
            lambda d: message_texts(d, ".msg.user .body") == ["remember me"],
            "the same chat's history",
        )
        self.assertEqual(self.current_key(), key)

    def test_reconnects_after_the_gateway_restarts(self) -> None:
        """Stopping the gateway shows Reconnecting; when it is back the page is
        online again by itself and chatting works."""
        d = self.driver
        self.signed_in()
        self.new_chat()
        self.gateway.stop()
        wait_for(d, lambda d: conn_state(d) == "reconnecting", "reconnecting state")
        self.assertTrue(visible(d, "banner"))
        self.gateway.start()
        wait_for(d, lambda d: conn_state(d) == "online", "online again")
        wait_for(d, lambda d: not visible(d, "banner"), "the banner gone")
        self.send("after restart")
        self.finished_reply("You said: after restart")

    def test_a_changed_token_after_a_restart_asks_to_sign_in_again(self) -> None:
        """When the gateway comes back with another token, the page stops
        retrying, forgets the old token and shows the sign-in form with why."""
        d = self.driver
        self.signed_in()
        self.gateway.stop()
        self.gateway.set_token("a-new-token")
        self.addCleanup(self.gateway.stop)
        self.addCleanup(self.gateway.set_token, TOKEN)
        self.gateway.start()
        error = wait_for(
            d, lambda d: by_id(d, "login-error") if visible(d, "login-error") else None, "an error"
        )
        self.assertIn("no longer accepts", error.text)
        self.assertFalse(visible(d, "workspace"))
        self.assertIsNone(d.execute_script("return sessionStorage.getItem(arguments[0])", KEY))
        sign_in(d, "a-new-token")
        wait_for(d, lambda d: conn_state(d) == "online", "signed in with the new token")

    def test_untrusted_markup_executes_nothing(self) -> None:
        """<script>, <img onerror>, javascript: links, raw HTML handlers, iframes
        and SVG scripts in a reply (and in the user's own text) run nothing,
        live or from history after a reload."""
        d = self.driver
        self.signed_in()
        self.new_chat()
        d.get_log("browser")  # start with an empty console
        self.send("xss <img src=x onerror=\"window.__xss='user'\"> <script>window.__xss=1</script>")
        self.finished_reply("XSS probe end")
        for phase in ("live", "history"):
            if phase == "history":
                d.refresh()
                wait_for(d, lambda d: "XSS probe end" in self.last_reply()["text"], "history")
            self.assert_no_alert()
            self.assertIsNone(d.execute_script("return window.__xss"), phase)
            found = d.execute_script(
                """
                const root = document.getElementById('messages');
                const bad = [];
                for (const el of root.querySelectorAll('*')) {
                  for (const a of el.attributes) {
                    if (/^on/i.test(a.name) || /javascript:/i.test(a.value)
                        || ['background', 'ping', 'poster'].includes(a.name)) bad.push(a.name);
                  }
                }
                return {bad, tags: [...root.querySelectorAll('script,img,iframe,svg,object')]
                                   .map(e => e.tagName)};
                """
            )
            self.assertEqual(found, {"bad": [], "tags": []}, phase)
            reply = self.last_reply()
            self.assertIn("raw html bold", reply["text"].replace("\n", " "))
            self.assertIn("click me", reply["text"])
            user = message_texts(d, ".msg.user .body")[-1]
            self.assertIn("<img src=x onerror=", user)
        links = d.find_elements(By.CSS_SELECTOR, "#messages a")
        self.assertTrue(links)
        for link in links:
            self.assertIsNone(link.get_attribute("href"))
            link.click()
        self.assert_no_alert()
        self.assertIsNone(d.execute_script("return window.__xss"))
        # Chromium reports the handlers it sees while DOMPurify parses the reply
        # in its inert document; nothing that reached the page tripped the policy.
        blocked = [e["message"] for e in d.get_log("browser") if "Security Policy" in e["message"]]
        self.assertEqual([m for m in blocked if "/vendor/dompurify-3.5.0/" not in m], [])

    def test_tool_activity_is_shown_collapsed(self) -> None:
        """A tool call streams in as a collapsed box with its name; opening it
        shows the arguments as text (markup in them is not rendered)."""
        d = self.driver
        self.signed_in()
        self.new_chat()
        self.send("use a tool")
        box = wait_for(
            d,
            lambda d: d.execute_script(
                "const t = document.querySelector('#messages details.tool');"
                "return t && {open: t.open, name: t.querySelector('.tool-name').textContent,"
                "state: t.dataset.state || '', args: t.querySelector('.tool-args').textContent,"
                "bold: t.querySelectorAll('b').length};"
            ),
            "a tool box",
        )
        self.assertEqual((box["open"], box["name"]), (False, "web_search"))
        self.assertFalse(
            d.find_element(By.CSS_SELECTOR, "#messages details.tool .tool-args").is_displayed()
        )
        d.find_element(By.CSS_SELECTOR, "#messages details.tool summary").click()
        args = d.find_element(By.CSS_SELECTOR, "#messages details.tool .tool-args")
        wait_for(d, lambda d: args.is_displayed(), "the arguments shown")
        self.assertIn('"query": "<b>weather</b> in Paris"', args.text)
        self.assertEqual(box["bold"], 0)
        wait_for(d, lambda d: self.last_reply()["state"] == "final", "the turn ended")
        status = d.find_element(By.CSS_SELECTOR, "#messages details.tool .tool-status").text
        self.assertIn(status, ("done", "failed"))
        save_screenshot(d, "control-ui-tool")
        d.refresh()
        names = wait_for(
            d,
            lambda d: d.execute_script(
                "return [...document.querySelectorAll('#messages details.tool .tool-name')]"
                ".map((e) => e.textContent);"
            ),
            "the tool call again, from the transcript",
        )
        self.assertEqual(names, ["web_search"])
        # chat.history carries the tool result (web_search is no tool of this
        # agent, so it failed): the box shows it as it did live, not running.
        self.assertEqual(
            [(b["state"], b["status"], b["result"]) for b in self.tool_boxes()],
            [("error", "failed", True)],
        )

    def test_tool_calls_reusing_an_id_keep_their_own_boxes(self) -> None:
        """Two turns whose tool calls have the same id (the fake upstream's
        call_fake_0) keep a box each, live and from the transcript."""
        d = self.driver
        self.signed_in()
        self.new_chat()
        self.send("use a tool")
        self.finished_reply("The tool has answered.")
        self.send("lookup again")
        wait_for(d, lambda d: len(message_texts(d, ".msg.user")) == 2, "the second message")
        self.finished_reply("The tool has answered.")
        seen: dict[str, list[tuple[str, bool]]] = {}
        for phase in ("live", "history"):
            if phase == "history":
                d.refresh()
                wait_for(d, lambda d: len(self.tool_boxes()) == 2, "the calls from the transcript")
            boxes = self.tool_boxes()
            self.assertEqual(len(boxes), 2, phase)
            self.assertIn("Paris", boxes[0]["args"], phase)
            self.assertIn("Rome", boxes[1]["args"], phase)
            self.assertLessEqual({b["state"] for b in boxes}, {"done", "error"}, phase)
            seen[phase] = [(b["state"], b["result"]) for b in boxes]
        # Each box gets its own turn's result back from chat.history.
        self.assertEqual(seen["history"], seen["live"])

    def test_agent_choice_scopes_sessions(self) -> None:
        """Choosing another agent lists its sessions and chats with it."""
        d = self.driver
        self.signed_in()
        Select(by_id(d, "agent-select")).select_by_value("helper")
        wait_for(
            d,
            lambda d: self.current_key().startswith("agent:helper:"),
            "the helper agent's main session",
        )
        self.send("hi helper")
        self.finished_reply("You said: hi helper")
        keys: list[str] = d.execute_script(
            "return [...document.querySelectorAll('.session')].map((e) => e.dataset.key);"
        )
        self.assertTrue(keys)
        self.assertTrue(all(str(k).startswith("agent:helper:") for k in keys), keys)

    def test_phone_sized_screen_and_dark_mode(self) -> None:
        """At 390x844 nothing scrolls sideways, the session list is a drawer
        behind a button, and chatting works; dark mode switches the colours."""
        d = self.driver
        d.set_window_size(390, 844)
        d.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
        )
        self.signed_in()
        self.new_chat()
        self.send("small screen")
        self.finished_reply("You said: small screen")
        width = d.execute_script("return [document.documentElement.scrollWidth, innerWidth]")
        self.assertLessEqual(width[0], width[1])
        self.assertTrue(visible(d, "toggle-sessions"))
        self.assertTrue(visible(d, "send"))
        background = d.execute_script("return getComputedStyle(document.body).backgroundColor")
        self.assertEqual(background, "rgb(17, 19, 23)")
        save_screenshot(d, "control-ui-phone-dark")
        self.assertFalse(self.drawer_open())
        by_id(d, "toggle-sessions").click()
        wait_for(d, lambda d: self.drawer_open(), "the session drawer open")
        self.assertEqual(by_id(d, "toggle-sessions").get_attribute("aria-expanded"), "true")

    def test_password_sign_in_under_a_base_path(self) -> None:
        """With basePath /openclaw and password auth, the page at /openclaw/
        signs in with the password (never stored) and chats over the WebSocket."""
        d = self.driver
        other = UiGateway(auth={"mode": "password", "password": "pw-for-ui"}, basePath="/openclaw")
        self.addCleanup(other.close)
        d.get(other.url)
        wait_for(d, lambda d: visible(d, "secret"), "the sign-in form")
        sign_in(d, "pw-for-ui", kind="password")
        wait_for(d, lambda d: conn_state(d) == "online", "connected")
        self.send("via base path")
        self.finished_reply("You said: via base path")
        stored = d.execute_script(
            "return JSON.stringify({...sessionStorage}) + JSON.stringify({...localStorage})"
        )
        self.assertNotIn("pw-for-ui", stored)
