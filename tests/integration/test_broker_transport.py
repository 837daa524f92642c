"""A Redis restart at the wrong moment must not stop the worker (``workers/broker_transport.py``).

The broker is lost while the task channel has a BRPOP pending and an unacknowledged message, and a
second channel (remote control) has a fanout queue to delete on close: the state in which Celery's
consumer stopped the worker with kombu's own Redis transport. The consumer's teardown is run here as
Celery runs it (``Consumer.on_connection_error_after_connected``), on a real Redis server killed with
SIGKILL, and a task finishing then is acknowledged on its closed channel; then the same connection settings
must consume again from the restarted server.
"""

from __future__ import annotations

import contextlib
import logging

from kombu import Connection, Consumer, Exchange, Queue
from kombu.common import ignore_errors

from archiver.core.config import Settings
from tests.support.private_services import PrivateRedis
from workers.broker_transport import Transport
from workers.celery_app import create_celery_app

TASKS = Queue("archiver.test-tasks", Exchange("archiver.test-tasks", type="direct"), routing_key="t")
CONTROL = Queue("archiver.test-control", Exchange("archiver.test-control", type="fanout"), auto_delete=True)


def celery_connection(url: str) -> Connection:
    app = create_celery_app(Settings(broker_url=url, database_url="sqlite://"), include_tasks=False)
    return app.connection_for_write()


def consume_one(connection: Connection) -> list[object]:
    """Publish a task message and receive it without acknowledging it, as a late-ack worker does."""
    with connection.Producer() as producer:
        producer.publish({"n": 1}, exchange=TASKS.exchange, routing_key="t", declare=[TASKS])
    received: list[object] = []
    Consumer(connection.default_channel, [TASKS], callbacks=[lambda _b, m: received.append(m)]).consume()
    connection.drain_events(timeout=5)
    return received


def test_losing_redis_mid_poll_leaves_the_consumer_able_to_reconnect(tmp_path):
    redis_server = PrivateRedis(tmp_path).start()
    try:
        connection = celery_connection(redis_server.url(0))
        assert isinstance(connection.transport, Transport)
        connection_errors = connection.connection_errors  # what Celery hands to ack_log_error
        assert connection.as_uri().startswith("redis://")  # what Celery prints and Flower reads
        received = consume_one(connection)
        assert len(received) == 1
        tasks = connection.default_channel
        assert tasks.qos._delivered  # unacknowledged
        control = connection.channel()
        Consumer(control, [CONTROL], callbacks=[lambda _b, _m: None], no_ack=True).consume()
        assert control.client is not None  # cached: closing it deletes the fanout queue
        tasks._brpop_start()  # the event loop's pending BRPOP

        redis_server.kill()  # SIGKILL; started again only after the teardown below
        # Celery's teardown after a connection error (celery/worker/consumer/consumer.py): collect,
        # then close, ignoring only connection errors. kombu 5.7's transport raises AttributeError.
        with contextlib.suppress(Exception):
            connection.collect(socket_timeout=1)
        ignore_errors(connection, connection.close)
        # A task that finishes now is acknowledged on its closed channel, as Celery does it.
        late = received[0]
        late.ack_log_error(logging.getLogger(__name__), connection_errors)
        assert late.acknowledged is False  # Redis redelivers it after the visibility timeout

        redis_server.start()
        again = celery_connection(redis_server.url(0))
        assert len(consume_one(again)) == 1
        again.close()
    finally:
        redis_server.stop()


def test_a_channel_publishes_through_one_client_until_its_pool_changes(tmp_path):
    redis_server = PrivateRedis(tmp_path).start()
    try:
        connection = celery_connection(redis_server.url(0))
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second  # not a new redis.Redis (and its callback table) per message
            assert first.connection_pool is channel.pool
        given = object()
        with channel.conn_or_acquire(given) as passed:
            assert passed is given
        with connection.Producer() as producer:
            for n in range(3):
                producer.publish({"n": n}, exchange=TASKS.exchange, routing_key="t", declare=[TASKS])
        assert channel.client.llen(TASKS.name) == 3  # published, through the one client

        channel._pool = None  # as kombu leaves it after closing its connections
        with channel.conn_or_acquire() as after:
            assert after is not first
            assert after.connection_pool is channel.pool
            assert after.llen(TASKS.name) == 3
        connection.release()
    finally:
        redis_server.stop()
