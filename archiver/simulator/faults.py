"""Fault rules: make matching API requests answer 429 / 5xx, or answer slowly.

A rule matches by method and a path substring; it fires for a ``share`` of matching requests, at most
``count`` times (``None``: unlimited). 429s carry ``Retry-After`` as seconds, as an HTTP-date, or
not at all, as the rule says.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal


@dataclass
class FaultRule:
    status: int = 429
    share: float = 1.0
    count: int | None = None
    method: str | None = None
    path_contains: str | None = None
    retry_after: float | None = 1.0
    retry_after_format: Literal["seconds", "http-date", "absent"] = "seconds"
    latency_seconds: float = 0.0
    fired: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        allowed = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "fired"}
        rule = cls(**allowed)
        if not (0.0 <= rule.share <= 1.0):
            raise ValueError("share must be within [0, 1]")
        if rule.status != 0 and not (400 <= rule.status <= 599):
            raise ValueError("status must be a 4xx/5xx code, or 0 for latency only")
        return rule

    def matches(self, method: str, path: str, rng: random.Random) -> bool:
        if self.count is not None and self.fired >= self.count:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path_contains and self.path_contains not in path:
            return False
        return rng.random() < self.share

    def retry_after_header(self, now: datetime) -> str | None:
        if self.retry_after is None or self.retry_after_format == "absent":
            return None
        if self.retry_after_format == "http-date":
            return format_datetime(now + timedelta(seconds=self.retry_after), usegmt=True)
        return str(round(self.retry_after))


@dataclass
class Faults:
    rules: list[FaultRule] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def pick(self, method: str, path: str) -> FaultRule | None:
        for rule in self.rules:
            if rule.matches(method, path, self.rng):
                rule.fired += 1
                return rule
        return None

    def as_list(self) -> list[dict[str, Any]]:
        return [rule.__dict__.copy() for rule in self.rules]
