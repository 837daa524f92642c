"""Flower against the test broker: tasks the real worker runs appear in Flower's HTTP API under
names that say what they do, with the item they work on, and in their states (succeeded, retried,
failed), and the queues are listed with their lengths."""

from __future__ import annotations

import httpx
import pytest
from celery import Celery

from archiver.db.models import ItemState
from archiver.pipeline.dispatch import ALL_QUEUES, BACKFILL_TASK_NAME, QUEUE_MAINTENANCE
from tests.support.helpers import item_by_provider_id, wait_state
from tests.support.stack import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def flower(stack):
    process = stack.start_flower()
    client = httpx.Client(base_url=stack.flower_url, timeout=10)
    # Flower learns of workers from their events; wait until it has seen ours.
    wait_for(
        lambda: client.get("/api/workers", params={"refresh": "true"}).json(), 60, "Flower to see the worker"
    )
    yield client
    client.close()
    process.stop()


def flower_tasks(flower, **params):
    response = flower.get("/api/tasks", params=params)
    response.raise_for_status()
    return response.json()


def test_tasks_run_by_the_worker_appear_in_flower_with_their_item_and_state(e2e, db, flower):
    stack, simulator, _clock = e2e
    [created] = simulator.create_realtime(1)
    tid = created["transcriptionId"]
    # One 429 with a short Retry-After: the archive task is retried (a countdown), then succeeds and
    # goes on to the deletion, whose own 429 makes it a request_deletion task of its own.
    simulator.set_faults(
        {"status": 429, "retry_after": 1, "method": "GET", "count": 1, "path_contains": tid},
        {"status": 429, "retry_after": 1, "method": "DELETE", "count": 1, "path_contains": tid},
    )
    simulator.send_webhooks()
    item = wait_state(db, tid, ItemState.DELETION_REQUESTED)
    ref = item_by_provider_id(db, tid).ref
    Celery(broker=stack.broker_url).send_task(BACKFILL_TASK_NAME, args=[987654321], queue=QUEUE_MAINTENANCE)

    def ours():
        tasks = flower_tasks(flower).values()
        mine = [t for t in tasks if ref in (t.get("kwargs") or "")]
        failed = [t for t in tasks if t["name"] == BACKFILL_TASK_NAME and t["state"] == "FAILURE"]
        names = {t["name"] for t in mine if t["state"] == "SUCCESS"}
        return (
            (mine, failed)
            if {"archiver.archive_item", "archiver.request_deletion"} <= names and failed
            else None
        )

    mine, failed = wait_for(ours, 30, "the item's tasks and the failed task in Flower")
    archive = [t for t in mine if t["name"] == "archiver.archive_item"]
    assert any(t["retries"] >= 1 for t in archive)  # the retry (429) is visible
    # The archive's result shows the deletion it went on to, and that deletion's wait.
    assert any("'request_deletion': {'outcome': 'retry'" in (t.get("result") or "") for t in archive)
    assert all(str(item.id) in t["args"] for t in mine)  # the item's id and ref are the arguments
    assert "no backfill run 987654321" in failed[0]["exception"]
    assert {t["worker"] for t in mine} and all(t["worker"].startswith("worker@") for t in mine)
    info = flower.get(f"/api/task/info/{archive[-1]['uuid']}").json()
    assert info["state"] == "SUCCESS" and info["routing_key"] == "archiver.live"
    lengths = flower.get("/api/queues/length").json()["active_queues"]
    assert set(ALL_QUEUES) <= {q["name"] for q in lengths}


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        ({}, "FLOWER_BASIC_AUTH (user:password) is not set"),
        ({"FLOWER_BASIC_AUTH": "admin:CHANGE-ME"}, "placeholder"),
        ({"FLOWER_BASIC_AUTH": "admin:short"}, "shorter than 12"),
        ({"FLOWER_BASIC_AUTH": "admin"}, "must be user:password"),
    ],
    ids=["unset", "placeholder", "short", "malformed"],
)
def test_flower_refuses_to_start_without_real_credentials(env, refusal):
    import os
    import subprocess

    from archiver.local.supervisor import bin_path

    base = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    out = subprocess.run(
        [bin_path("archiver"), "flower", "--port", "1"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and refusal in out.stderr, out.stderr
    out = subprocess.run(
        [bin_path("archiver"), "flower", "--address", "0.0.0.0", "--local-unauthenticated"],  # noqa: S104
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "only on a loopback address" in out.stderr


def test_flower_credentials_from_a_file_are_checked_too(tmp_path):
    from archiver.cli.flower import FlowerRefused, basic_auth

    path = tmp_path / "flower_auth"
    path.write_text("ops:a-long-enough-password\n")
    assert basic_auth({"FLOWER_BASIC_AUTH_FILE": str(path)}) == "ops:a-long-enough-password"
    path.write_text("ops:CHANGE-ME-please\n")
    with pytest.raises(FlowerRefused, match="placeholder"):
        basic_auth({"FLOWER_BASIC_AUTH_FILE": str(path)})
    with pytest.raises(FlowerRefused, match="not both"):
        basic_auth({"FLOWER_BASIC_AUTH_FILE": str(path), "FLOWER_BASIC_AUTH": "a:b"})


def test_flower_requires_the_credentials_it_was_started_with(stack):
    """Started as production starts it, Flower answers nothing without them."""
    from archiver.local.supervisor import ManagedProcess, bin_path, free_port, http_ok, wait_until

    port = free_port()
    env = {**stack.env(), "FLOWER_BASIC_AUTH": "ops:flower-SECRET-9a8b7c"}
    process = ManagedProcess(
        "flower-auth", [bin_path("archiver"), "flower", "--port", str(port)], env=env,
        log_path=stack.workdir / "flower-auth.log",
    ).start()  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url + "/healthcheck"), 60, "Flower")
        assert httpx.get(url + "/api/workers", timeout=10).status_code == 401
        ok = httpx.get(url + "/api/workers", auth=("ops", "flower-SECRET-9a8b7c"), timeout=10)
        assert ok.status_code == 200
    finally:
        process.stop()
