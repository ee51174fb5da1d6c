"""The open-file limit: raised at start towards what maxConnections needs,
a warning when the hard limit is below it (openclaw.core.fd_limit), and
doctor's check."""

from __future__ import annotations

import resource

from twisted.trial.unittest import SynchronousTestCase

from openclaw.cli.doctor import check_fd_limit
from openclaw.core.fd_limit import FD_HEADROOM, descriptors_needed, ensure_fd_limit


class Limits:
    """A process's RLIMIT_NOFILE, as getrlimit/setrlimit see it."""

    def __init__(self, soft: int, hard: int) -> None:
        self.soft, self.hard = soft, hard

    def get(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def set(self, which: int, limits: tuple[int, int]) -> None:
        soft, hard = limits
        if hard != self.hard or soft > hard:
            raise ValueError("not permitted")
        self.soft = soft


class FdLimitTests(SynchronousTestCase):
    def test_needed(self) -> None:
        self.assertEqual(descriptors_needed(1024), 2048 + FD_HEADROOM)

    def test_soft_limit_is_raised_up_to_what_is_needed(self) -> None:
        limits = Limits(1024, 1_048_576)
        self.assertEqual(ensure_fd_limit(2304, get=limits.get, set_=limits.set), (2304, None))
        self.assertEqual(limits.soft, 2304)

    def test_a_low_hard_limit_is_reached_and_reported(self) -> None:
        limits = Limits(64, 512)
        soft, warning = ensure_fd_limit(2304, get=limits.get, set_=limits.set)
        self.assertEqual((soft, limits.soft), (512, 512))
        assert warning is not None
        self.assertIn("the open-file limit is 512 (hard limit 512), below the 2304", warning)

    def test_enough_is_left_alone(self) -> None:
        limits = Limits(4096, 4096)
        self.assertEqual(ensure_fd_limit(2304, get=limits.get, set_=limits.set), (4096, None))
        infinite = Limits(resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        self.assertIsNone(ensure_fd_limit(2304, get=infinite.get, set_=infinite.set)[1])

    def test_doctor(self) -> None:
        """ok when the hard limit reaches it (the gateway raises its soft limit);
        a warning naming maxConnections otherwise."""
        self.assertEqual(check_fd_limit(1024, Limits(1024, 4096).get).status, "ok")
        low = check_fd_limit(1024, Limits(64, 64).get)
        self.assertEqual(low.status, "warn")
        self.assertIn("gateway.maxConnections 1024", low.line())
        self.assertEqual(check_fd_limit(20, Limits(64, 64).get).status, "warn")
        self.assertEqual(check_fd_limit(10, Limits(300, 300).get).status, "ok")
