"""Fault injection: rules that make matching API requests fail, slow down, or break their bodies,
and per-account rate limits (token buckets) answered with 429.

A rule matches by provider, method and a path substring; it fires for a ``share`` of matching
requests, at most ``count`` times (``None``: unlimited). What it does:

* ``status`` 4xx/5xx: answer that error at once (429s carry ``Retry-After`` as seconds, as an
  HTTP-date, or not at all; Twilio's carry its 20429 body). ``status`` 0: the request proceeds;
* ``latency_seconds``: wait first;
* ``reset_after_bytes``: send that much of the body, then drop the connection;
* ``truncate_to_bytes``: serve only that much, with a matching Content-Length (a short file);
* ``corrupt``: flip one byte (at ``corrupt_offset``, default the middle) of the body (same length).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal

RetryAfterFormat = Literal["seconds", "http-date", "absent"]


@dataclass
class FaultRule:
    status: int = 429
    share: float = 1.0
    count: int | None = None
    provider: str | None = None
    method: str | None = None
    path_contains: str | None = None
    retry_after: float | None = 1.0
    retry_after_format: RetryAfterFormat = "seconds"
    latency_seconds: float = 0.0
    reset_after_bytes: int | None = None
    truncate_to_bytes: int | None = None
    corrupt: bool = False
    corrupt_offset: int | None = None  # default: the middle of the body
    fired: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        unknown = set(data) - set(cls.__dataclass_fields__) - {"fired"}
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        rule = cls(**{k: v for k, v in data.items() if k != "fired"})
        if not (0.0 <= rule.share <= 1.0):
            raise ValueError("share must be within [0, 1]")
        if rule.status != 0 and not (400 <= rule.status <= 599):
            raise ValueError("status must be a 4xx/5xx code, or 0 to let the request proceed")
        if rule.retry_after_format not in ("seconds", "http-date", "absent"):
            raise ValueError("retry_after_format must be seconds, http-date or absent")
        return rule

    @property
    def breaks_body(self) -> bool:
        return self.reset_after_bytes is not None or self.truncate_to_bytes is not None or self.corrupt

    def matches(self, provider: str, method: str, path: str, rng: random.Random) -> bool:
        if self.count is not None and self.fired >= self.count:
            return False
        if self.provider and self.provider != provider:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path_contains and self.path_contains not in path:
            return False
        return rng.random() < self.share


def retry_after_header(delay: float | None, fmt: RetryAfterFormat, now: datetime) -> str | None:
    if delay is None or fmt == "absent":
        return None
    if fmt == "http-date":
        return format_datetime(now + timedelta(seconds=math.ceil(delay)), usegmt=True)
    return str(math.ceil(delay))


@dataclass
class TokenBucket:
    """``rate`` requests per second, ``burst`` at once, on the real (monotonic) clock."""

    rate: float
    burst: float
    retry_after_format: RetryAfterFormat = "seconds"
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)
    limited: int = 0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.tokens = self.burst

    def take(self) -> float | None:
        """``None`` if the request may proceed, else the seconds until a token is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        self.limited += 1
        return (1 - self.tokens) / self.rate

    def as_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "burst": self.burst,
            "retry_after_format": self.retry_after_format,
            "limited": self.limited,
        }


@dataclass
class Faults:
    rules: list[FaultRule] = field(default_factory=list)
    #: Keyed "bandwidth:{accountId}" or "twilio:{AccountSid}".
    rate_limits: dict[str, TokenBucket] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def pick(self, provider: str, method: str, path: str) -> FaultRule | None:
        for rule in self.rules:
            if rule.matches(provider, method, path, self.rng):
                rule.fired += 1
                return rule
        return None

    def clear(self) -> None:
        self.rules.clear()
        self.rate_limits.clear()

    def as_dict(self) -> dict[str, Any]:
        return {
            "rules": [rule.__dict__.copy() for rule in self.rules],
            "rate_limits": {key: bucket.as_dict() for key, bucket in self.rate_limits.items()},
        }
