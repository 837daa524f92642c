"""kombu's Redis transport, with one fix: a lost broker must not stop the worker.

When Redis goes away, Celery's consumer closes the broken connection in two passes
(``Connection.collect``, then ``Connection.close``). If the first pass gave up on the channel that
consumes tasks (its pending BRPOP raised) and then, on another channel (remote control: deleting its
fanout queue raised), left that channel open, the transport is already detached when the second pass
closes it. Restoring its unacknowledged messages then builds a Redis client from the detached
transport, kombu 5.7 raises ``AttributeError: 'NoneType' object has no attribute 'hostname'``, and
Celery stops the worker as an "unrecoverable error". Found by the fault suite, which restarts Redis
under load; reproduced by ``tests/test_broker_transport.py``.

Skipping the restore there loses nothing: Redis keeps those messages in its unacknowledged set,
which any worker restores after the visibility timeout; and if Redis lost them with a restart, their
items are due in the database and the sweeper sends them again.
"""

from __future__ import annotations

import logging
from typing import Any

import kombu.transport
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    def restore_unacked(self, client: Any = None) -> None:
        transport = self.channel.connection
        if client is None and (transport is None or transport.client is None):
            delivered = self._delivered
            if delivered:
                log.warning(
                    "broker connection already closed: %d unacknowledged message(s) left to Redis's "
                    "visibility timeout (or, if Redis lost them, to the sweeper)",
                    len(delivered),
                )
                delivered.clear()
            return
        super().restore_unacked(client)


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    QoS = QoS


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"


def use_for_redis_urls() -> None:
    """``redis://`` and ``rediss://`` broker URLs get this transport; the URL is unchanged (what
    Celery prints and what Flower reads)."""
    for scheme in ("redis", "rediss"):
        kombu.transport.TRANSPORT_ALIASES[scheme] = TRANSPORT
