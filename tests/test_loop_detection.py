"""Tool-loop detection (openclaw.agents.tools.loop_detection)."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.tools.loop_detection import (
    GUARD_REPEATS,
    LoopDetector,
    LoopVerdict,
    call_signature,
)
from openclaw.config.model import LoopDetectionConfig

ON = LoopDetectionConfig(enabled=True, warning_threshold=3, critical_threshold=5)


def run_calls(
    detector: LoopDetector, calls: list[tuple[str, dict[str, Any]]], result: str = "same"
) -> list[LoopVerdict]:
    """Feed calls one batch each, recording the same result; return the verdicts."""
    verdicts = []
    for name, args in calls:
        verdict = detector.check_batch([(name, args)])
        verdicts.append(verdict)
        if verdict.action in ("ok", "warn"):
            detector.record_result(name, args, result, False)
    return verdicts


class LoopDetectorTests(SynchronousTestCase):
    def test_disabled_by_default(self) -> None:
        """With enabled unset the rolling detectors never fire."""
        detector = LoopDetector(LoopDetectionConfig())
        verdicts = run_calls(detector, [("read", {"path": "a"})] * 50)
        self.assertEqual({v.action for v in verdicts}, {"ok"})

    def test_generic_repeat_warns_then_blocks_then_aborts(self) -> None:
        """Identical calls warn at the warning threshold, block at the critical one,
        and a second critical verdict in the run ends it."""
        detector = LoopDetector(ON)
        verdicts = run_calls(detector, [("read", {"path": "a"})] * 6)
        actions = [v.action for v in verdicts]
        self.assertEqual(actions[:2], ["ok", "ok"])
        self.assertEqual(actions[2], "warn")
        self.assertEqual(actions[4], "block")
        self.assertEqual(verdicts[4].detector, "generic_repeat")
        self.assertEqual(actions[5], "abort")
        self.assertEqual(detector.critical_count, 2)

    def test_argument_order_does_not_matter(self) -> None:
        """The same arguments in another key order (or as JSON text) are one call."""
        self.assertEqual(
            call_signature("exec", {"a": 1, "b": 2}), call_signature("exec", '{"b":2,"a":1}')
        )
        self.assertNotEqual(call_signature("exec", {"a": 1}), call_signature("exec", {"a": 2}))
        self.assertEqual(call_signature("exec", "not json"), call_signature("exec", "not json"))

    def test_different_arguments_are_not_a_loop(self) -> None:
        """Varying arguments never trip the detector."""
        detector = LoopDetector(ON)
        verdicts = run_calls(detector, [("read", {"path": str(i)}) for i in range(30)])
        self.assertEqual({v.action for v in verdicts}, {"ok"})

    def test_polling_without_progress(self) -> None:
        """A polling tool returning the same result repeatedly is flagged by its detector."""
        config = LoopDetectionConfig(
            enabled=True, warning_threshold=3, critical_threshold=50, generic_repeat=False
        )
        detector = LoopDetector(config)
        verdicts = run_calls(detector, [("process", {"action": "poll", "sessionId": "x"})] * 3)
        self.assertEqual(verdicts[2].action, "warn")
        self.assertEqual(verdicts[2].detector, "known_poll_no_progress")

    def test_polling_with_progress_is_fine(self) -> None:
        """A changing poll result resets the no-progress streak."""
        config = LoopDetectionConfig(
            enabled=True, warning_threshold=3, critical_threshold=50, generic_repeat=False
        )
        detector = LoopDetector(config)
        for i in range(10):
            args = {"action": "poll", "sessionId": "x"}
            self.assertEqual(detector.check_batch([("process", args)]).action, "ok")
            detector.record_result("process", args, f"output {i}", False)

    def test_ping_pong(self) -> None:
        """Alternating between two calls is detected."""
        config = LoopDetectionConfig(
            enabled=True, warning_threshold=4, critical_threshold=50, generic_repeat=False
        )
        detector = LoopDetector(config)
        calls = [("read", {"path": "a"}), ("read", {"path": "b"})] * 3
        verdicts = run_calls(detector, calls)
        self.assertIn("ping_pong", {v.detector for v in verdicts})

    def test_warning_is_given_once_per_call(self) -> None:
        """The warning is not repeated on every later identical call."""
        config = LoopDetectionConfig(enabled=True, warning_threshold=2, critical_threshold=50)
        verdicts = run_calls(LoopDetector(config), [("read", {"path": "a"})] * 6)
        self.assertEqual([v.action for v in verdicts].count("warn"), 1)

    def test_a_block_covers_the_whole_batch(self) -> None:
        """One looping call in a batch makes the batch verdict block."""
        detector = LoopDetector(ON)
        run_calls(detector, [("read", {"path": "a"})] * 4)
        verdict = detector.check_batch([("write", {"path": "b"}), ("read", {"path": "a"})])
        self.assertEqual(verdict.action, "block")
        self.assertEqual(verdict.tool, "read")

    def test_post_compaction_guard(self) -> None:
        """After a compaction retry, the same call and result repeating aborts the run,
        even with the rolling detectors left unset."""
        detector = LoopDetector(LoopDetectionConfig())
        detector.arm_post_compaction()
        args = {"command": "make"}
        results = [detector.record_result("exec", args, "fail", True) for _ in range(GUARD_REPEATS)]
        self.assertEqual(results[-1].action, "abort")
        self.assertEqual(results[-1].detector, "compaction_loop_persisted")
        self.assertEqual({r.action for r in results[:-1]}, {"ok"})

    def test_post_compaction_guard_sees_progress(self) -> None:
        """Different results after compaction do not abort."""
        detector = LoopDetector(LoopDetectionConfig())
        detector.arm_post_compaction()
        for i in range(5):
            self.assertEqual(detector.record_result("exec", {}, f"r{i}", False).action, "ok")

    def test_explicit_false_disables_the_guard(self) -> None:
        """enabled: false turns the post-compaction guard off too."""
        detector = LoopDetector(LoopDetectionConfig(enabled=False))
        detector.arm_post_compaction()
        for _ in range(5):
            self.assertEqual(detector.record_result("exec", {}, "same", False).action, "ok")

    def test_global_circuit_breaker(self) -> None:
        """Many identical calls with identical results trip the breaker even with the
        named detectors off."""
        config = LoopDetectionConfig(
            enabled=True,
            history_size=10,
            global_circuit_breaker_threshold=4,
            generic_repeat=False,
            known_poll_no_progress=False,
            ping_pong=False,
        )
        verdicts = run_calls(LoopDetector(config), [("read", {"path": "a"})] * 6)
        self.assertEqual(verdicts[4].action, "block")
        self.assertEqual(verdicts[4].detector, "global_circuit_breaker")
