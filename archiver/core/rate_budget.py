"""A provider's request budget, shared by every worker process on every host: a token bucket in
Redis, one per provider account.

Celery's ``rate_limit`` counts per worker instance, so ten workers would each spend the whole
budget and draw 429s. Here every request first reserves a slot in a bucket kept in Redis
(atomically, by a Lua script on Redis's own clock, so hosts need not agree on the time). A slot a
short wait away is waited for; a longer wait is returned to the caller, which reschedules the step
instead of holding a worker. Refilled at ``rate`` per second, holding at most ``burst`` tokens.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

# Reservation (GCRA-like): tokens may go negative down to what ``max_wait`` allows; the caller sleeps
# until its reserved slot. Returns the wait in milliseconds, or -wait when nothing was reserved.
_RESERVE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait_ms = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
local wait = 0
if tokens < 1 then
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
if wait > max_wait_ms then
  return -wait
end
redis.call('HSET', KEYS[1], 'tokens', tokens - 1, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 60000)
return wait
"""


@dataclass(frozen=True)
class Reservation:
    """``wait`` seconds until the reserved slot, or, when ``granted`` is false, until one could be."""

    granted: bool
    wait: float


class RateBudget:
    """One provider account's shared budget of ``rate`` requests per second."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        rate: float,
        burst: float | None = None,
        max_wait: float = 5.0,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._client = client
        self.key = key
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.max_wait = max_wait
        self._script = client.register_script(_RESERVE)

    @classmethod
    def for_account(
        cls, client: redis.Redis, provider: str, account: str, rate: float, **options: float
    ) -> RateBudget:
        """The budget every worker of ``provider``'s ``account`` shares."""
        return cls(client, f"archiver:rate-budget:{provider}:{account}", rate, **options)

    @classmethod
    def from_url(cls, url: str, provider: str, account: str, rate: float, **options: float) -> RateBudget:
        client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls.for_account(client, provider, account, rate, **options)

    def reserve(self) -> Reservation:
        """Reserve the next slot, if it is at most ``max_wait`` away. Redis being unreachable
        grants at once (the provider's 429 and Retry-After remain the backstop) and says so."""
        try:
            millis = int(
                self._script(keys=[self.key], args=[self.rate, self.burst, int(self.max_wait * 1000)])
            )
        except redis.RedisError as exc:
            log.warning("rate budget %s unavailable (%s): request sent without it", self.key, exc)
            return Reservation(True, 0.0)
        return Reservation(millis >= 0, abs(millis) / 1000.0)

    def acquire(self) -> Reservation:
        """Reserve and wait for the slot; a slot too far away is returned ungranted, not waited for."""
        reservation = self.reserve()
        if reservation.granted and reservation.wait > 0:
            time.sleep(reservation.wait)
        return reservation
