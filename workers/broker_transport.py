"""kombu's Redis transport, with two changes.

**A lost broker must not stop the worker.**

When Redis goes away, Celery's consumer closes the broken connection in two passes
(``Connection.collect``, then ``Connection.close``), and the first detaches the transport from its
channels. A channel the first pass could not finish closing (its pending BRPOP raised, then another
channel's close raised first), or the late acknowledgement of a task that finished just then, still
uses its channel afterwards; kombu 5.7 then builds a Redis client from the detached transport and
raises ``AttributeError: 'NoneType' object has no attribute 'hostname'`` (or ``… 'client'``), which
Celery treats as an unrecoverable error: the worker stops. Found by the fault suite, which restarts
Redis under load; reproduced by ``tests/integration/test_broker_transport.py``.

Here a detached channel raises a Redis ``ConnectionError`` instead, which kombu and Celery handle as
the connection error it is: the worker reconnects. Nothing is lost: the messages that could not be
restored or acknowledged stay in Redis's unacknowledged set, which a worker restores after the
visibility timeout (our steps are idempotent); if Redis lost them with a restart, their items are due
in the database and the sweeper sends them again.

**One Redis client per channel for publishing.** kombu builds a new ``redis.Redis`` for every
message it publishes (``Channel.conn_or_acquire``), and redis-py 8 copies its table of ~170 reply
callbacks into each: about 0.1 ms of CPU per message, and Celery publishes two per task sent (the
message and its ``task-sent`` event) and several events per task run. A client holds no connection
of its own (each command takes one from the channel's pool and gives it back) and is thread-safe, so
the channel keeps one, built again when the channel's pool is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kombu.transport
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport is None or transport.client is None:
            raise RedisConnectionError("this broker channel's connection is closed")
        params: dict[str, Any] = super()._connparams(asynchronous)  # type: ignore[misc]
        return params

    _publishing_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool  # a detached channel raises here (``_connparams``) if it has no pool
        publishing = self._publishing_client
        if publishing is None or publishing.connection_pool is not pool:
            publishing = self._publishing_client = self._create_client()  # type: ignore[attr-defined]
        yield publishing


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"


def use_for_redis_urls() -> None:
    """``redis://`` and ``rediss://`` broker URLs get this transport; the URL is unchanged (what
    Celery prints and what Flower reads)."""
    for scheme in ("redis", "rediss"):
        kombu.transport.TRANSPORT_ALIASES[scheme] = TRANSPORT
