"""Counters every worker process increments and the metrics endpoint reads, kept in Redis (prefork
children come and go; their memory is no place for a count)."""

from __future__ import annotations

import logging

import redis

__all__ = ["SHARED_COUNTER_KEY", "SharedCounters"]

log = logging.getLogger(__name__)

SHARED_COUNTER_KEY = "archiver:metrics:{name}"


class SharedCounters:
    """Counters kept in Redis, incremented by every worker process, read by the metrics endpoint.
    Never in the way: a Redis error is logged and the count skipped."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def incr(self, name: str, amount: int = 1) -> None:
        try:
            self._client.incrby(SHARED_COUNTER_KEY.format(name=name), amount)
        except redis.RedisError as exc:
            log.debug("shared counter %s not incremented: %s", name, exc)

    def read(self, prefix: str) -> dict[str, int]:
        """``{suffix: value}`` of every counter named ``prefix:suffix``."""
        pattern = SHARED_COUNTER_KEY.format(name=f"{prefix}:*")
        keys = list(self._client.scan_iter(match=pattern, count=100))
        if not keys:
            return {}
        values = self._client.mget(keys)
        start = len(SHARED_COUNTER_KEY.format(name=f"{prefix}:"))
        return {k.decode()[start:]: int(v or 0) for k, v in zip(keys, values, strict=True)}
