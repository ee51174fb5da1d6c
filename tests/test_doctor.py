"""`openclaw doctor`: one line per check with a fix, and an exit status that
says whether anything failed. Providers are checked against the fake
upstreams on loopback."""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import Site

from openclaw.cli import doctor
from openclaw.cli.doctor import (
    REDIS_TIMEOUT_SECONDS,
    Check,
    check_directory,
    check_port,
    check_provider,
    check_redis,
    check_tls,
    check_token,
    offline_checks,
    run_doctor,
    wanted_models,
)
from openclaw.config.model import (
    AgentDefaults,
    AgentsConfig,
    AuthConfig,
    Config,
    GatewayConfig,
    ProviderConfig,
    RedisConfig,
    SessionConfig,
)
from openclaw.testing import FakeAnthropicUpstream, FakeOpenAIUpstream
from tests.redis_support import RedisServer

KEY = "sk-test-0123456789abcdef"


def with_auth(**auth: Any) -> Config:
    return Config(gateway=GatewayConfig(auth=AuthConfig(**auth)))


class OfflineCheckTests(SynchronousTestCase):
    def test_directory_permissions(self) -> None:
        """0700 is ok; group/other access warns; world-writable fails; a missing
        directory whose parent is writable is created on first use."""
        base = Path(self.mktemp())
        base.mkdir(mode=0o700)
        base.chmod(0o700)
        self.assertEqual(check_directory("state dir", base).status, "ok")
        base.chmod(0o755)
        warned = check_directory("state dir", base)
        self.assertEqual(warned.status, "warn")
        self.assertIn(f"chmod 0700 {base}", warned.line())
        base.chmod(0o777)
        self.assertEqual(check_directory("state dir", base).status, "FAIL")
        base.chmod(0o700)
        self.assertEqual(check_directory("ws", base / "new", create_hint=True).status, "ok")
        self.assertEqual(check_directory("ws", base / "a" / "b").status, "FAIL")
        # Nothing can be created under a file: FAIL, naming the file in the way.
        (base / "file").write_text("x")
        blocked = check_directory("ws", base / "file" / "sub", create_hint=True)
        self.assertEqual(blocked.status, "FAIL")
        self.assertIn(f"{base / 'file'} is not a directory", blocked.line())

    def test_token_strength(self) -> None:
        """Missing, well-known and short tokens fail, medium ones warn, long random ones pass."""
        self.assertEqual(check_token(with_auth(mode="token")).status, "FAIL")
        weak = check_token(with_auth(mode="token", token="dev-token-change-me"))
        self.assertEqual(weak.status, "FAIL")
        self.assertIn("openssl rand -hex 32", weak.line())
        self.assertEqual(check_token(with_auth(mode="token", token="abcdef123")).status, "FAIL")
        self.assertEqual(
            check_token(with_auth(mode="token", token="abcdefgh12345678xy")).status, "warn"
        )
        self.assertEqual(
            check_token(with_auth(mode="token", token="3f9c0a7be41d2c6855aa90f1b7c3de24")).status,
            "ok",
        )
        self.assertEqual(check_token(with_auth(mode="none")).status, "warn")

    def test_port_in_use_is_reported(self) -> None:
        """A port another socket holds is reported with what to do; a free one is ok."""
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            held.listen(1)
            port = held.getsockname()[1]
            busy = check_port("127.0.0.1", port)
        self.assertEqual(busy.status, "warn")
        self.assertIn("openclaw status", busy.line())
        self.assertEqual(check_port("127.0.0.1", port).status, "ok")

    def test_tls_files(self) -> None:
        """An ssl: listener's key and certificate: a matching valid pair is ok, a
        missing file and a mismatched key fail."""
        base = Path(self.mktemp())
        base.mkdir()
        key, cert = _pair(base, "a")
        other_key, _ = _pair(base, "b")
        good = check_tls([f"ssl:8443:privateKey={key}:certKey={cert}", "tcp:1"])
        self.assertEqual([c.status for c in good], ["ok"])
        missing = check_tls([f"ssl:8443:privateKey={base / 'nope.pem'}:certKey={cert}"])
        self.assertEqual(missing[0].status, "FAIL")
        mismatched = check_tls([f"ssl:8443:privateKey={other_key}:certKey={cert}"])
        self.assertEqual(mismatched[0].status, "FAIL")
        self.assertIn("does not match", mismatched[0].detail)

    def test_wanted_models_per_provider(self) -> None:
        """The models agents refer to, grouped by provider."""
        config = Config(
            agents=AgentsConfig(
                defaults=AgentDefaults(model_primary="p/m1", model_fallbacks=("q/m2", "p/m1"))
            )
        )
        self.assertEqual(dict(wanted_models(config)), {"p": ["m1"], "q": ["m2"]})

    def test_line_shape(self) -> None:
        """ok lines carry no fix; others end with it."""
        self.assertEqual(Check("ok", "port", "free", "x").line(), "ok   port: free")
        self.assertEqual(Check("FAIL", "a", "b", "c").line(), "FAIL a: b -> fix: c")


def _pair(base: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = base / f"{name}.key", base / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class ProviderCheckTests(TestCase):
    """Against real fake upstreams on 127.0.0.1 (the real reactor)."""

    def _serve(self, upstream: FakeOpenAIUpstream | FakeAnthropicUpstream) -> str:
        real: Any = reactor
        port = real.listenTCP(0, Site(upstream), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}"

    def _check(self, provider: ProviderConfig, wanted: list[str]) -> Deferred[Check]:
        return ensureDeferred(check_provider(reactor, provider.id, provider, wanted))

    async def test_openai_upstream_ok_when_key_and_models_match(self) -> None:
        """Reachable, key accepted, the agent's model listed: ok."""
        upstream = FakeOpenAIUpstream(reactor, api_key=KEY)
        upstream.model_ids = ("gpt-test", "other")
        base = self._serve(upstream)
        provider = ProviderConfig(
            id="up", api="openai-completions", base_url=base + "/v1", api_key=KEY
        )
        check = await self._check(provider, ["gpt-test"])
        self.assertEqual(check.status, "ok", check.line())
        self.assertIn("2 models listed", check.detail)

    async def test_credentials_in_the_url_are_neither_sent_nor_shown(self) -> None:
        """A baseUrl with user:password@ is probed as the gateway reaches it
        (without them) and printed without the password."""
        upstream = FakeOpenAIUpstream(reactor, api_key=KEY)
        upstream.model_ids = ("gpt-test",)
        base = self._serve(upstream).replace("http://", "http://user:URLPASSSECRET@")
        provider = ProviderConfig(
            id="up", api="openai-completions", base_url=base + "/v1", api_key=KEY
        )
        check = await self._check(provider, ["gpt-test"])
        self.assertEqual(check.status, "ok", check.line())
        self.assertNotIn("URLPASSSECRET", check.line())

    async def test_wrong_key_fails(self) -> None:
        """A 401 from the upstream: FAIL, fix names the apiKey."""
        base = self._serve(FakeOpenAIUpstream(reactor, api_key=KEY))
        provider = ProviderConfig(
            id="up", api="openai-completions", base_url=base + "/v1", api_key="sk-wrong-key-xx"
        )
        check = await self._check(provider, [])
        self.assertEqual(check.status, "FAIL")
        self.assertIn("apiKey", check.line())
        self.assertNotIn("sk-wrong-key-xx", check.line())

    async def test_missing_model_warns(self) -> None:
        """The agent's model is not in the upstream's list: warn."""
        base = self._serve(FakeAnthropicUpstream(reactor, api_key=KEY))
        provider = ProviderConfig(id="ant", api="anthropic-messages", base_url=base, api_key=KEY)
        check = await self._check(provider, ["claude-nope"])
        self.assertEqual(check.status, "warn")
        self.assertIn("claude-nope not listed", check.detail)

    async def test_unreachable_fails(self) -> None:
        """Nothing listening: FAIL with the reason."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        provider = ProviderConfig(
            id="gone", api="openai-completions", base_url=f"http://127.0.0.1:{port}/v1"
        )
        check = await self._check(provider, [])
        self.assertEqual(check.status, "FAIL")
        self.assertIn("not reachable", check.detail)


class RedisCheckTests(TestCase):
    """Against a real redis-server (the real reactor)."""

    def _config(self, url: str | None) -> Config:
        base = Config(session=SessionConfig(store="redis"), state_dir=Path(self.mktemp()))
        return attrs.evolve(base, gateway=attrs.evolve(base.gateway, redis=RedisConfig(url=url)))

    async def test_reachable_redis_and_its_eviction_policy(self) -> None:
        """ok with the version and settings; an evicting policy is a warning."""
        server = RedisServer()
        server.start()
        self.addCleanup(server.cleanup)
        check = await ensureDeferred(check_redis(reactor, self._config(server.url)))
        assert check is not None
        self.assertEqual(check.status, "ok", check.line())
        self.assertIn("maxmemory-policy noeviction", check.detail)
        server.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        check = await ensureDeferred(check_redis(reactor, self._config(server.url)))
        assert check is not None
        self.assertEqual(check.status, "warn", check.line())
        self.assertIn("noeviction", check.fix or "")

    async def test_unreachable_or_unset_redis_fails(self) -> None:
        """Nothing listening, or no URL: FAIL, the password never shown; the file
        store has no Redis check."""
        # Nothing listening is never answered, only retried until the timeout:
        # a short one proves the same without waiting 3 s.
        self.patch(doctor, "REDIS_TIMEOUT_SECONDS", 0.3)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = self._config(f"redis://:hunter2@127.0.0.1:{port}/0")
        check = await ensureDeferred(check_redis(reactor, config))
        assert check is not None
        self.assertEqual(check.status, "FAIL", check.line())
        self.assertNotIn("hunter2", check.line())
        unset = await ensureDeferred(check_redis(reactor, self._config(None)))
        assert unset is not None
        self.assertEqual(unset.status, "FAIL")
        self.assertIn("gateway.redis.url", unset.detail)
        file_store = Config(state_dir=Path(self.mktemp()))
        self.assertIsNone(await ensureDeferred(check_redis(reactor, file_store)))

    async def test_refused_credentials_fail_at_once_as_such(self) -> None:
        """A wrong password is reported as refused credentials (WRONGPASS) at the
        first handshake, not as "no connection" after the timeout; the
        password never shown."""
        server = RedisServer(password="right-password")
        server.start()
        self.addCleanup(server.cleanup)
        wrong = f"unix://{server.socket_path}?db=0&password=wrong-password"
        began = reactor.seconds()
        check = await ensureDeferred(check_redis(reactor, self._config(wrong)))
        assert check is not None
        self.assertLess(reactor.seconds() - began, REDIS_TIMEOUT_SECONDS)
        self.assertEqual(check.status, "FAIL", check.line())
        self.assertIn("refuses the credentials: WRONGPASS", check.detail)
        self.assertIn("password in gateway.redis.url", check.fix)
        self.assertNotIn("password=", check.line())
        self.assertNotIn("wrong-password", check.line())

    async def test_an_acl_user_that_cannot_run_the_gateway_fails(self) -> None:
        """A user kept off the key prefix, off scripts, off writes, off pub/sub or
        off SUBSCRIBE FAILs with NOPERM naming what it may not do and the ACL to
        grant; a user with what the gateway needs (but not INFO) passes with a
        warning that the eviction policy went unchecked, and the probe leaves
        no key behind."""
        server = RedisServer()
        server.start()
        self.addCleanup(server.cleanup)
        users = {
            "other": ["~other:*", "&*", "+@all"],
            "noscripts": ["~openclaw:*", "&*", "+@all", "-@scripting"],
            "nowrite": ["~*", "&*", "+@all", "-@write"],
            "nopubsub": ["~openclaw:*", "+@all", "-@pubsub", "resetchannels"],
            "nosubscribe": ["~openclaw:*", "&*", "+@all", "-subscribe"],
            "fine": ["~openclaw:*", "&*", "+@all", "-@dangerous"],
        }
        for user, rules in users.items():
            server.command("ACL", "SETUSER", user, "on", ">pw", *rules)
        checks = {}
        for user in users:
            url = f"unix://{user}:pw@{server.socket_path}?db=0"
            check = await ensureDeferred(check_redis(reactor, self._config(url)))
            assert check is not None
            checks[user] = check
        cannot = {
            "other": "run the gateway's scripts writing keys openclaw:*",
            "noscripts": "run the gateway's scripts writing keys openclaw:*",
            "nowrite": "run the gateway's scripts writing keys openclaw:*",
            "nopubsub": "PUBLISH to openclaw:0:bus from the gateway's scripts",
            "nosubscribe": "SUBSCRIBE to openclaw:0:bus",
        }
        for user, what in cannot.items():
            self.assertEqual(checks[user].status, "FAIL", checks[user].line())
            self.assertIn(f"user {user} may not {what}: NOPERM", checks[user].detail)
            self.assertIn(f"ACL SETUSER {user} ~openclaw:*", checks[user].fix)
        self.assertIn("'eval'", checks["noscripts"].detail)
        self.assertIn("can't run this command", checks["nowrite"].detail)
        self.assertIn("'subscribe'", checks["nosubscribe"].detail)
        self.assertEqual(checks["fine"].status, "warn", checks["fine"].line())
        self.assertIn("INFO is not allowed", checks["fine"].detail)
        self.assertEqual(server.command("KEYS", "openclaw:doctor*"), b"*0\r\n")


class DoctorCommandTests(SynchronousTestCase):
    def test_exit_status_and_one_line_per_check(self) -> None:
        """`openclaw doctor` on a config with a weak token and an unreachable
        provider: names the config path, one line per check, exit 1."""
        home = Path(self.mktemp()).resolve()
        home.mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        config = home / "gw.json"
        config.write_text(
            json.dumps(
                {
                    "gateway": {"auth": {"token": "short"}, "port": 1},
                    "models": {
                        "providers": {
                            "up": {
                                "api": "openai-completions",
                                "baseUrl": f"http://127.0.0.1:{dead}/v1",
                            }
                        }
                    },
                    "agents": {"defaults": {"model": {"primary": "up/m"}}},
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        env |= {"HOME": str(home), "OPENCLAW_STATE_DIR": str(home / "state")}
        result = subprocess.run(
            [sys.executable, "-c", "import sys; from openclaw.cli import main; sys.exit(main())",
             "doctor", "--config", str(config)],
            env=env, cwd=home, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        lines = result.stdout.splitlines()
        self.assertEqual(lines[0], f"ok   config: {config} is valid")
        self.assertTrue(any(line.startswith("FAIL auth:") for line in lines))
        self.assertTrue(any(line.startswith("FAIL provider up:") for line in lines))
        self.assertRegex(lines[-1], r"^\d+ failed, \d+ warnings$")
        self.assertEqual(result.stderr, "")


class OfflineReportTests(SynchronousTestCase):
    def _config(self, document: dict[str, Any]) -> tuple[Path, dict[str, str]]:
        home = Path(self.mktemp()).resolve()
        home.mkdir(mode=0o700)
        path = home / "gw.json"
        path.write_text(json.dumps(document))
        state = home / "state"
        state.mkdir(mode=0o700)
        return path, {"HOME": str(home), "OPENCLAW_STATE_DIR": str(state)}

    def test_offline_run_reports_every_check_and_exit_status(self) -> None:
        """--offline: config, state dir, workspace, auth, port lines and a
        summary; exit 0 when nothing failed."""
        path, env = self._config(
            {"gateway": {"auth": {"token": "3f9c0a7be41d2c6855aa90f1b7c3de24"}, "port": 1}}
        )
        checks, config = offline_checks(str(path), env, [])
        self.assertIsNotNone(config)
        names = [c.name for c in checks]
        self.assertEqual(names[:2], ["config", "state dir"])
        self.assertIn("auth", names)
        self.assertIn("port", names)
        self.assertTrue(any(n.startswith("workspace ") for n in names))
        self.assertFalse([c for c in checks if c.status == "FAIL"], [c.line() for c in checks])

    def test_an_allow_list_matching_no_tool_fails(self) -> None:
        """tools.allow (global or an agent's) that names no built-in tool would stop
        every run: doctor fails it with the key; a valid allow-list passes."""
        path, env = self._config(
            {
                "tools": {"allow": ["no_such_tool"]},
                "agents": {
                    "list": [
                        {"id": "main", "default": True, "tools": {"allow": ["group:fs"]}},
                        {"id": "ops", "tools": {"allow": ["nothing_*"]}},
                    ]
                },
            }
        )
        checks, _config = offline_checks(str(path), env, [])
        failed = {c.name: c.detail for c in checks if c.status == "FAIL"}
        self.assertIn("tools.allow", failed)
        self.assertIn("agents.list[ops].tools.allow", failed)
        self.assertNotIn("agents.list[main].tools.allow", failed)
        self.assertIn("matches no tool", failed["tools.allow"])

    def _session_check(self, maintenance: dict[str, object], files: dict[str, int]) -> Check:
        """The ``sessions main`` check for a state dir holding ``files`` (name -> size)."""
        path, env = self._config({"session": {"maintenance": maintenance}})
        directory = Path(env["OPENCLAW_STATE_DIR"]) / "agents" / "main" / "sessions"
        directory.mkdir(parents=True)
        for name, size in files.items():
            (directory / name).write_bytes(b"x" * size)
        checks, _config = offline_checks(str(path), env, [])
        [check] = [c for c in checks if c.name == "sessions main"]
        return check

    def test_sessions_disk_use_against_the_budget(self) -> None:
        """Each agent's sessions directory is measured against maxDiskBytes:
        within it, over it with archives to trim, over it with live sessions
        alone (a warning with the fix), and with no budget."""
        archived = "a.jsonl.deleted.2026-12-07T10-00-00.000Z"
        check = self._session_check({}, {"s.jsonl": 2048, archived: 1024})
        self.assertEqual(
            (check.status, check.detail), ("ok", "3.0 KiB, 1.0 KiB of it archives; budget 10.0 GiB")
        )
        check = self._session_check({"maxDiskBytes": "2kb"}, {"s.jsonl": 1024, archived: 2048})
        self.assertEqual(check.status, "ok")
        self.assertIn("over 2.0 KiB: the gateway trims archives", check.detail)
        check = self._session_check({"maxDiskBytes": 1000}, {"s.jsonl": 1500})
        self.assertEqual(check.status, "warn")
        self.assertIn("live sessions alone are over maxDiskBytes (1000 B)", check.detail)
        self.assertIn("raise session.maintenance.maxDiskBytes", check.line())
        check = self._session_check({"maxDiskBytes": False}, {"s.jsonl": 10})
        self.assertEqual(
            check.detail, "10 B, 0 B of it archives; no disk budget (maxDiskBytes false)"
        )

    def test_invalid_config_fails_with_its_problems_and_hints(self) -> None:
        """A config that does not load: each problem and each "did you mean" is a line."""
        path, env = self._config(
            {"gateway": {"port": "x", "http": {"endpoints": {"chatCompletion": {}}}}}
        )
        checks, config = offline_checks(str(path), env, [])
        self.assertIsNone(config)
        lines = [c.line() for c in checks]
        self.assertTrue(any(line.startswith("FAIL config: gateway.port") for line in lines))
        self.assertTrue(any('did you mean "chatCompletions"' in line for line in lines))

    def test_run_doctor_offline_exit_status(self) -> None:
        """run_doctor --offline: one line per check, the summary, exit 1 on a failure."""
        path, env = self._config({"gateway": {"auth": {"token": "short"}}})
        out, err = io.StringIO(), io.StringIO()
        args = argparse.Namespace(config=str(path), listen=[], offline=True)
        saved = dict(os.environ)
        # Cleanups run last-in first-out: clear, then restore.
        self.addCleanup(os.environ.update, saved)
        self.addCleanup(os.environ.clear)
        os.environ.update(env)
        code = run_doctor(args, out, err)
        self.assertEqual(code, 1)
        lines = out.getvalue().splitlines()
        self.assertTrue(lines[-1].startswith("1 failed"), lines)
        self.assertTrue(any(line.startswith("FAIL auth:") for line in lines))
