"""A worker stopped with SIGTERM (as Kubernetes and systemd stop it, REMAP_SIGTERM=SIGQUIT): the
soft shutdown lets a running task finish, or hands it back to the broker when it takes longer;
either way, once a worker runs again, the item is archived and deleted exactly once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest
import redis

from archiver.db.models import ItemState
from archiver.local.supervisor import bin_path
from tests.support.helpers import history, item_by_provider_id, objects, wait_state
from tests.support.stack import TEST_REDIS_URL, wait_for

pytestmark = pytest.mark.e2e

SOFT_SHUTDOWN = 3.0  # ARCHIVER_WORKER_SOFT_SHUTDOWN_SECONDS of the test stack


def worker_process(stack):
    return next(p for p in reversed(stack.group.processes) if p.name == "worker" and p.alive())


@pytest.mark.parametrize(
    ("latency", "finishes"), [(1.0, True), (SOFT_SHUTDOWN + 4.0, False)], ids=["finishes", "handed-back"]
)
def test_sigterm_mid_task_finishes_or_hands_back_and_nothing_is_lost_or_doubled(e2e, db, latency, finishes):
    stack, simulator, _clock = e2e
    [created] = simulator.create_realtime(1)
    tid = created["transcriptionId"]
    simulator.set_faults(
        {"status": 0, "latency_seconds": latency, "method": "GET", "count": 1, "path_contains": tid}
    )
    simulator.send_webhooks()
    wait_for(lambda: (i := item_by_provider_id(db, tid)) and i.lease_owner, 20, "the task under way")
    worker = worker_process(stack)
    os.kill(worker.pid, signal.SIGTERM)  # the main process only, as an orchestrator does
    stopped = time.monotonic()
    worker.proc.wait(timeout=30)
    took = time.monotonic() - stopped
    item = item_by_provider_id(db, tid)
    if finishes:
        assert item.state in (ItemState.ARCHIVED, ItemState.DELETION_REQUESTED)  # done before the exit
    else:
        assert item.state == ItemState.PENDING and SOFT_SHUTDOWN <= took < latency + 5
        queued = redis.Redis.from_url(TEST_REDIS_URL)
        waiting = queued.llen("archiver.live") + queued.hlen("unacked")
        assert waiting >= 1  # handed back, not dropped
    restarted = time.monotonic()
    stack.start_worker()
    item = wait_state(db, tid, ItemState.DELETION_REQUESTED, timeout=60)
    if not finishes:
        # From the handed-back message, not the sweeper's re-send (20 s after the first send).
        assert time.monotonic() - restarted < 20
    assert len(objects(db, item.id)) == 1
    gets = simulator.audit(method="GET", path_contains=tid)
    assert len(simulator.audit(method="DELETE", path_contains=tid)) == 1
    if finishes:
        assert len(gets) == 1  # finished once, not repeated by another worker


def test_worker_health_answers_for_a_live_worker_only(stack):
    """The liveness probe of the deployment files: the worker's main process answers a ping."""
    env = {**os.environ, **stack.env()}
    alive = subprocess.run(
        [bin_path("archiver"), "worker-health"], env=env, capture_output=True, text=True, timeout=60
    )
    assert alive.returncode == 0 and f"worker@{socket.gethostname()}: alive" in alive.stdout
    absent = subprocess.run(
        [bin_path("archiver"), "worker-health", "--hostname", "worker@nowhere", "--timeout", "1"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert absent.returncode == 1 and "worker@nowhere: no answer" in absent.stdout


def test_broker_connections_lost_mid_task_archive_once_without_parallel_runs(e2e, db):
    """Every client connection of the broker dropped while a task is at work: the worker reconnects,
    cancels the task it was running rather than let a redelivered copy run beside it, and the item
    is archived and deleted exactly once."""
    stack, simulator, _clock = e2e
    [created] = simulator.create_realtime(1)
    tid = created["transcriptionId"]
    simulator.set_faults(
        {"status": 0, "latency_seconds": 4.0, "method": "GET", "count": 1, "path_contains": tid}
    )
    simulator.send_webhooks()
    wait_for(lambda: (i := item_by_provider_id(db, tid)) and i.lease_owner, 20, "the task under way")
    broker = redis.Redis.from_url(TEST_REDIS_URL)
    killed = broker.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    item = wait_state(db, tid, ItemState.DELETION_REQUESTED, timeout=90)
    assert len(objects(db, item.id)) == 1
    assert len(simulator.audit(method="DELETE", path_contains=tid)) == 1
    archived = [h for h in history(db, item.id) if h.to_state == ItemState.ARCHIVED]
    assert len(archived) == 1
    worker_process(stack)  # the worker is still up (reconnected), not restarted
