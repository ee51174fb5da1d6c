"""The one exception the configuration loader raises."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(Exception):
    """A configuration that cannot be used, with every problem found at once.

    Each problem is one self-contained line (key path, what was expected, the
    bad value with secrets redacted) so a user can fix them all in one pass.
    ``warnings`` carries what the loader noticed before giving up, so a CLI can
    show both.
    """

    def __init__(self, problems: Iterable[str], warnings: Iterable[str] = ()) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        self.warnings: tuple[str, ...] = tuple(warnings)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)
