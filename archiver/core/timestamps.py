"""Lenient parsing of provider timestamps (doc examples carry no zone, or malformed ones)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(value: object) -> datetime | None:
    """An aware UTC datetime, or ``None`` when the value is missing or unreadable (zone-less: UTC)."""
    if not isinstance(value, str):
        return None
    match = _ISO.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        parsed = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=UTC
        )
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        from datetime import timedelta

        try:
            parsed -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        except OverflowError:  # 9999-12-31T23:59:59-23:59: past the last date Python knows
            return None
    return parsed


def iso_millis(ts: datetime) -> str:
    """``ts`` in UTC as ``YYYY-MM-DDTHH:MM:SS.mmmZ``: the form Bandwidth's list bounds take."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def unrepresentable(value: object) -> bool:
    """A timestamp written correctly that names no instant Python can hold (year 9999 at -23:59):
    refused by the intake, not silently dropped."""
    return isinstance(value, str) and bool(_ISO.match(value.strip())) and parse_timestamp(value) is None
