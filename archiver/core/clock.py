"""The one place that reads the time.

Everything that decides whether a step is due asks a :class:`Clock`. Production uses the wall clock;
tests and the demo may point ``ARCHIVER_CLOCK_OFFSET_FILE`` at a file holding an offset in seconds, so
that a real worker, beat and intake all jump past a 48 h purge window without anybody sleeping.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetFileClock:
    """Wall clock plus an offset read from a file (re-read when the file changes)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._offset = 0.0

    def _read_offset(self) -> float:
        try:
            stat = os.stat(self._path)
        except FileNotFoundError:
            return 0.0
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            with open(self._path, encoding="utf-8") as handle:
                text = handle.read().strip()
            self._offset = float(text) if text else 0.0
            self._stamp = stamp
        return self._offset

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._read_offset())


def clock_from_settings(offset_file: str | None) -> Clock:
    return OffsetFileClock(offset_file) if offset_file else SystemClock()
