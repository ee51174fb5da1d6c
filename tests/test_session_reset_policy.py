"""Automatic session resets (``session.reset``, ``resetByType``, ``resetByChannel``).

The real gateway on a scripted model, over raw HTTP, on a controllable clock:
a session the policy finds stale when the next message comes starts over under
a new sessionId (the model sees none of the old history; the old transcript is
archived ``.reset.<time>`` as by ``/reset``); a fresh one continues.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config.errors import ConfigError
from openclaw.config.live import as_running, restart_pending
from openclaw.config.loader import load_config_text
from openclaw.config.model import Config, SessionConfig, SessionResetConfig
from openclaw.sessions.reset_policy import (
    ResetPolicy,
    daily_boundary_ms,
    reset_type,
    resolve_policy,
    stale_reason,
)
from openclaw.testing import TEST_TOKEN, GatewayHarness, Reply, http_test_config

#: A Tuesday, mid-November 2023 (UTC); the tests work in the machine's local time.
START = 1_700_000_000
KEY = "agent:main:alice"


def local_time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds)


def next_local_hour(after: float, hour: int) -> float:
    """Epoch seconds of the first ``hour``:00 local time after ``after``."""
    now = local_time(after)
    at = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if at <= now:
        at = (now + timedelta(days=1)).replace(hour=hour, minute=0, second=0, microsecond=0)
    return at.timestamp()


class ResetGateway:
    """A harness on a clock set to ``START`` with ``session`` as configured."""

    def __init__(self, state: str, session: SessionConfig) -> None:
        clock = MemoryReactorClock()
        clock.advance(START)
        config: Config = attrs.evolve(http_test_config(state), session=session)
        self.h = GatewayHarness.create(state, config, clock=clock)
        self.state = Path(state)

    def chat(self, text: str, *, headers: dict[str, str] | None = None) -> None:
        """One chat completion on ``KEY``; asserts it answered."""
        exchange = self.h.request(
            b"POST",
            b"/v1/chat/completions",
            body={"model": "openclaw", "messages": [{"role": "user", "content": text}]},
            token=TEST_TOKEN,
            headers={"x-openclaw-session-key": KEY, **(headers or {})},
        )
        self.h.run_due()
        status, _, body = exchange.response()
        assert status == 200, body

    def advance_to(self, seconds: float) -> None:
        self.h.advance(seconds - self.h.clock.seconds())

    def history_seen(self) -> list[str]:
        """The user texts the model saw on its last call."""
        call = self.h.provider.calls[-1]
        return [str(m.content) for m in call.messages if m.role == "user"]

    def row(self) -> dict[str, Any]:
        self.h.gateway.runtime.store.flush()  # type: ignore[attr-defined]
        path = self.state / "agents" / "main" / "sessions" / "sessions.json"
        rows: dict[str, Any] = json.loads(path.read_text())
        return dict(rows[KEY])

    def archives(self) -> list[str]:
        directory = self.state / "agents" / "main" / "sessions"
        return sorted(p.name for p in directory.iterdir() if ".jsonl.reset." in p.name)


def idle(minutes: int) -> SessionResetConfig:
    return SessionResetConfig(mode="idle", idle_minutes=minutes)


class ResetPolicyGatewayTests(SynchronousTestCase):
    """Chat completions with a stable session key, per policy."""

    def gateway(self, session: SessionConfig) -> ResetGateway:
        return ResetGateway(self.mktemp(), session)

    def test_none_is_the_default(self) -> None:
        """Without session.reset a session continues however long it sat idle
        and across any number of daily boundaries."""
        g = self.gateway(SessionConfig())
        g.chat("one")
        first = g.row()["sessionId"]
        g.advance_to(START + 10 * 86400)
        g.chat("two")
        self.assertEqual(g.row()["sessionId"], first)
        self.assertEqual(g.history_seen(), ["one", "two"])
        self.assertEqual(g.archives(), [])

    def test_idle_expiry(self) -> None:
        """idleMinutes 30: a message 29 minutes after the last continues the
        session; one 31 minutes later starts a new sessionId, the model sees no
        old history and the old transcript is archived as by /reset."""
        g = self.gateway(SessionConfig(reset=idle(30)))
        g.chat("one")
        first = g.row()
        self.assertEqual(first["sessionStartedAt"], START * 1000)
        self.assertEqual(first["lastInteractionAt"], START * 1000)
        g.advance_to(START + 29 * 60)
        g.chat("two")
        self.assertEqual(g.row()["sessionId"], first["sessionId"])
        self.assertEqual(g.history_seen(), ["one", "two"])
        self.assertEqual(g.row()["lastInteractionAt"], (START + 29 * 60) * 1000)
        g.advance_to(START + 60 * 60)
        g.chat("three")
        row = g.row()
        self.assertNotEqual(row["sessionId"], first["sessionId"])
        self.assertEqual(g.history_seen(), ["three"])
        self.assertEqual(row["sessionStartedAt"], (START + 3600) * 1000)
        self.assertEqual(len(g.archives()), 1)
        self.assertTrue(g.archives()[0].startswith(first["sessionId"] + ".jsonl.reset."))

    def test_daily_at_hour(self) -> None:
        """mode daily, atHour 4 (local time): messages before the next 04:00
        continue; the first after it starts a new session."""
        g = self.gateway(SessionConfig(reset=SessionResetConfig(mode="daily")))
        four = next_local_hour(START, 4)
        g.advance_to(four - 3600)
        g.chat("one")
        first = g.row()["sessionId"]
        g.advance_to(four - 60)
        g.chat("two")
        self.assertEqual(g.row()["sessionId"], first)
        g.advance_to(four + 60)
        g.chat("three")
        self.assertNotEqual(g.row()["sessionId"], first)
        self.assertEqual(g.history_seen(), ["three"])

    def test_daily_counts_from_the_session_start_not_later_turns(self) -> None:
        """Daily freshness is the sessionId's start: a session started before
        04:00 resets after it even when it was busy until just before."""
        g = self.gateway(SessionConfig(reset=SessionResetConfig(mode="daily", at_hour=6)))
        six = next_local_hour(START, 6)
        g.advance_to(six - 7200)
        g.chat("one")
        first = g.row()["sessionId"]
        g.advance_to(six - 1)
        g.chat("two")
        g.advance_to(six + 1)
        g.chat("three")
        self.assertNotEqual(g.row()["sessionId"], first)

    def test_both_whichever_first(self) -> None:
        """daily with idleMinutes: the idle limit resets within the day, the
        daily boundary resets a session kept busy."""
        g = self.gateway(
            SessionConfig(reset=SessionResetConfig(mode="daily", at_hour=4, idle_minutes=60))
        )
        four = next_local_hour(START, 4)
        g.advance_to(four + 60)
        g.chat("one")
        first = g.row()["sessionId"]
        g.advance_to(four + 60 + 2 * 3600)  # idle for two hours, same day
        g.chat("two")
        second = g.row()["sessionId"]
        self.assertNotEqual(second, first)
        # Busy every 50 minutes until past the next 04:00: daily resets it.
        t = four + 60 + 2 * 3600
        while t + 3000 < four + 86400:
            t += 3000
            g.advance_to(t)
            g.chat("busy")
            self.assertEqual(g.row()["sessionId"], second)
        g.advance_to(four + 86400 + 60)
        g.chat("next day")
        self.assertNotEqual(g.row()["sessionId"], second)

    def test_end_of_turn_does_not_refresh_idle(self) -> None:
        """The end of a slow turn writes the row (updatedAt) but is no user
        interaction: idle time counts from the user's message."""
        g = self.gateway(SessionConfig(reset=idle(10)))
        g.h.provider.add(Reply.text("slow", delay=300))
        exchange = g.h.request(
            b"POST",
            b"/v1/chat/completions",
            body={"model": "openclaw", "messages": [{"role": "user", "content": "one"}]},
            token=TEST_TOKEN,
            headers={"x-openclaw-session-key": KEY},
        )
        g.h.run_due()
        g.h.advance(300)
        self.assertEqual(exchange.response()[0], 200)
        first = g.row()
        self.assertEqual(first["updatedAt"], (START + 300) * 1000)
        self.assertEqual(first["lastInteractionAt"], START * 1000)
        g.advance_to(START + 11 * 60)  # 6 minutes after the write, 11 after the message
        g.chat("two")
        self.assertNotEqual(g.row()["sessionId"], first["sessionId"])
        self.assertEqual(g.history_seen(), ["two"])

    def test_by_type_and_channel(self) -> None:
        """HTTP sessions are ``direct``: resetByType.direct applies to them;
        resetByChannel for the request's channel (x-openclaw-message-channel,
        default webchat) wins over it."""
        session = SessionConfig(
            reset=idle(600),
            reset_by_type={"direct": idle(10), "group": idle(1)},
            reset_by_channel={"ops": idle(120), "discord": idle(1)},
        )
        g = self.gateway(session)
        g.chat("one")
        first = g.row()["sessionId"]
        g.advance_to(START + 11 * 60)  # past direct's 10 minutes
        g.chat("two")
        second = g.row()["sessionId"]
        self.assertNotEqual(second, first)
        channel = {"x-openclaw-message-channel": "ops"}
        g.advance_to(START + 22 * 60)  # past direct's, within ops' 120
        g.chat("three", headers=channel)
        self.assertEqual(g.row()["sessionId"], second)

    def test_legacy_rows_without_lifecycle_fields(self) -> None:
        """A row written before sessionStartedAt/lastInteractionAt existed is
        judged by its updatedAt, and gets both fields on its next message."""
        state = self.mktemp()
        sessions = Path(state) / "agents" / "main" / "sessions"
        sessions.mkdir(parents=True)
        legacy = "0b4a2d7e-1111-4222-8333-444455556666"
        updated = (START - 20 * 60) * 1000
        rows = {KEY: {"sessionId": legacy, "updatedAt": updated, "model": "x"}}
        (sessions / "sessions.json").write_text(json.dumps(rows))
        g = ResetGateway(state, SessionConfig(reset=idle(30)))
        g.chat("one")  # 20 minutes after updatedAt: fresh
        row = g.row()
        self.assertEqual(row["sessionId"], legacy)
        self.assertEqual(row["sessionStartedAt"], updated)
        self.assertEqual(row["lastInteractionAt"], START * 1000)
        g.advance_to(START + 31 * 60)
        g.chat("two")
        self.assertNotEqual(g.row()["sessionId"], legacy)


class ResetPolicyRuleTests(SynchronousTestCase):
    """The resolution and freshness rules (OpenClaw's)."""

    def test_reset_types(self) -> None:
        """Keys are direct unless they name a group/channel or a thread."""
        self.assertEqual(reset_type("agent:main:main"), "direct")
        self.assertEqual(reset_type("agent:main:openai-user:bob"), "direct")
        self.assertEqual(reset_type("agent:main:discord:group:42"), "group")
        self.assertEqual(reset_type("agent:main:slack:channel:c1"), "group")
        self.assertEqual(reset_type("agent:main:slack:channel:c1:thread:99"), "thread")

    def test_resolution(self) -> None:
        """A type entry without a mode inherits the base mode (daily when the
        base is none); a channel entry wins outright; nothing set is none."""
        self.assertFalse(resolve_policy(SessionConfig(), KEY, "webchat").active)
        base = SessionConfig(
            reset=SessionResetConfig(mode="idle", idle_minutes=5),
            reset_by_type={"direct": SessionResetConfig(idle_minutes=9)},
            reset_by_channel={"ops": SessionResetConfig(at_hour=7)},
        )
        self.assertEqual(resolve_policy(base, KEY, None), ResetPolicy("idle", 4, 9))
        self.assertEqual(resolve_policy(base, KEY, "OPS"), ResetPolicy("daily", 7, None))
        none_base = SessionConfig(
            reset=SessionResetConfig(mode="none"),
            reset_by_type={"direct": SessionResetConfig(at_hour=2)},
        )
        self.assertEqual(resolve_policy(none_base, KEY, None), ResetPolicy("daily", 2, None))

    def test_daily_boundary_in_a_given_zone(self) -> None:
        """The boundary is atHour in the zone given (the store's tz)."""
        zone = timezone(timedelta(hours=-5))
        now = int(datetime(2024, 3, 1, 3, 30, tzinfo=zone).timestamp() * 1000)
        boundary = daily_boundary_ms(now, 4, zone)
        self.assertEqual(
            datetime.fromtimestamp(boundary / 1000, UTC),
            datetime(2024, 2, 29, 9, 0, tzinfo=UTC),
        )
        policy = ResetPolicy("daily", 4, None)
        started = {"updatedAt": now, "sessionStartedAt": boundary - 1}
        self.assertEqual(stale_reason(policy, started, now, zone), "daily")
        self.assertIsNone(
            stale_reason(policy, {**started, "sessionStartedAt": boundary}, now, zone)
        )

    def test_future_timestamps_are_ignored(self) -> None:
        """A lastInteractionAt in the future falls back to the session start."""
        policy = ResetPolicy("idle", 4, 10)
        row = {"updatedAt": 0, "sessionStartedAt": 0, "lastInteractionAt": 10**15}
        self.assertEqual(stale_reason(policy, row, 11 * 60_000), "idle")


class ResetConfigTests(SynchronousTestCase):
    """session.reset* in the config file: read, and refused when wrong."""

    def load(self, text: str) -> Config:
        return load_config_text(text, None, env={}).config

    def problems(self, text: str) -> str:
        with self.assertRaises(ConfigError) as caught:
            self.load(text)
        return str(caught.exception)

    def test_read(self) -> None:
        """OpenClaw's keys are read into the session config."""
        config = self.load(
            '{session: {reset: {mode: "daily", atHour: 0, idleMinutes: 90},'
            ' resetByType: {group: {mode: "idle", idleMinutes: 120}},'
            ' resetByChannel: {Discord: {mode: "idle", idleMinutes: 10080}}}}'
        )
        self.assertEqual(config.session.reset, SessionResetConfig("daily", 0, 90))
        self.assertEqual(config.session.reset_by_type["group"], idle(120))
        self.assertEqual(config.session.reset_by_channel["discord"], idle(10080))

    def test_bad_values(self) -> None:
        """atHour outside 0-23, a negative idleMinutes, an unknown mode, an
        unknown key or chat type are each named (idleMinutes 0 is OpenClaw's
        "no idle limit")."""
        text = self.problems(
            '{session: {reset: {mode: "weekly", atHour: 24, idleMinutes: -5, every: 1},'
            " resetByType: {room: {}, direct: {atHour: -1}}}}"
        )
        for line in (
            'session.reset.mode: expected one of none, daily, idle, got "weekly"',
            "session.reset.atHour: expected an integer 0..23, got 24",
            "session.reset.idleMinutes: expected an integer >= 0, got -5",
            "session.reset.every: not a reset policy key",
            "session.resetByType.room: expected one of direct, group, thread",
            "session.resetByType.direct.atHour: expected an integer 0..23, got -1",
        ):
            self.assertIn(line, text)

    def test_retired_forms(self) -> None:
        """session.idleMinutes and resetByType.dm are refused with the new place."""
        text = self.problems("{session: {idleMinutes: 30, resetByType: {dm: {mode: 'idle'}}}}")
        self.assertIn("session.idleMinutes: retired", text)
        self.assertIn("session.reset.idleMinutes", text)
        self.assertIn("session.resetByType.dm: retired", text)

    def test_reset_reloads_live(self) -> None:
        """A reload that changes only session.reset* needs no restart; a change
        of the store's own session settings still does."""
        running = self.load("{session: {fsync: 'turn'}}")
        new = self.load("{session: {reset: {mode: 'idle', idleMinutes: 5}}}")
        self.assertEqual(restart_pending(running, new), ())
        self.assertEqual(as_running(running, new).session.reset, idle(5))
        moved = self.load("{session: {fsync: 'never'}}")
        self.assertEqual(restart_pending(running, moved), ("session",))
