"""The one clock tests move (the only stand-in the tests use besides transports): real time, or a
fixed start, plus an offset the test advances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["TestClock"]


class TestClock:
    """``now()`` is ``start`` (default: the wall clock) plus ``offset``."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, start: datetime | None = None) -> None:
        self.start = start
        self.offset = timedelta()

    def now(self) -> datetime:
        return (self.start or datetime.now(UTC)) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)
