"""What an operator watches: JSON logs that name the item, provider and call of every line, and
Prometheus metrics from the intake and the pipeline, read from the running stack."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from archiver.core.logging import JsonFormatter, SecretRedactingFilter, log_context
from archiver.db.models import ItemState
from tests.support.helpers import wait_state
from tests.support.stack import SECRETS, wait_for


def json_lines(path):
    lines = []
    for line in path.read_text("utf-8", "replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_json_formatter_carries_the_context_and_never_a_secret():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(SecretRedactingFilter(["hunter2-secret"]))
    logger = logging.getLogger("tests.json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        with log_context(item_id=7, provider="bandwidth", call_id="c-1", ignored=None):
            logger.warning("token %s refused", "hunter2-secret")
            try:
                raise RuntimeError("boom hunter2-secret")
            except RuntimeError:
                logger.exception("failed")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "token *** refused" and first["level"] == "WARNING"
    assert (first["item_id"], first["provider"], first["call_id"]) == (7, "bandwidth", "c-1")
    assert "ignored" not in first
    assert "RuntimeError: boom ***" in second["exception"] and "hunter2" not in stream.getvalue()
    assert "item_id" not in third  # the context ends with its block


@pytest.mark.e2e
def test_worker_and_intake_json_logs_name_the_item_provider_and_call(e2e, db):
    stack, simulator, _clock = e2e
    [created] = simulator.create_realtime(1)
    simulator.send_webhooks()
    item = wait_state(db, created["transcriptionId"], ItemState.DELETION_REQUESTED)

    def worker_lines():
        lines = [e for e in json_lines(stack.workdir / "worker.log") if e.get("item_id") == item.id]
        return lines if any(e.get("step") == "request_deletion" for e in lines) else None

    lines = wait_for(worker_lines, 10, "the worker's JSON lines for the item")
    for entry in lines:
        assert entry["provider"] == "bandwidth" and entry["provider_id"] == item.provider_id
        assert entry["call_id"] == item.call_id and entry["task_name"].startswith("archiver.")
        assert entry["task_id"] and entry["level"] and entry["time"]
    intake = [e for e in json_lines(stack.workdir / "intake.log") if e.get("item_id") == item.id]
    assert intake and intake[0]["provider"] == "bandwidth" and intake[0]["call_id"] == item.call_id


def scrape(stack):
    response = httpx.get(stack.metrics_url, timeout=10)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.e2e
def test_metrics_count_intake_requests_rejections_and_the_pipeline(e2e, db):
    stack, simulator, _clock = e2e
    before = scrape(stack)
    refused = httpx.post(stack.intake_url + "/webhooks/bandwidth", json={}, auth=("intake", "wrong"))
    assert refused.status_code == 401
    [created] = simulator.create_realtime(1)
    tid = created["transcriptionId"]
    simulator.set_faults({"status": 429, "retry_after": 1, "method": "GET", "count": 1, "path_contains": tid})
    simulator.send_webhooks()
    wait_state(db, tid, ItemState.DELETION_REQUESTED)
    after = scrape(stack)
    ok = {"provider": "bandwidth", "status": "204"}
    assert (
        value(after, "archiver_intake_requests_total", **ok)
        == value(before, "archiver_intake_requests_total", **ok) + 1
    )
    unauthorized = {"provider": "bandwidth", "reason": "unauthorized"}
    assert value(after, "archiver_intake_rejected_total", **unauthorized) == (
        value(before, "archiver_intake_rejected_total", **unauthorized) + 1
    )
    accepted = {"provider": "bandwidth", "event_type": "realTimeTranscriptionAvailable", "outcome": "new"}
    assert value(after, "archiver_intake_events_accepted_total", **accepted) >= 1
    latency = value(after, "archiver_intake_request_seconds_count", provider="bandwidth")
    assert latency == value(before, "archiver_intake_request_seconds_count", provider="bandwidth") + 2
    assert value(after, "archiver_provider_rate_limited_total", provider="bandwidth") == (
        value(before, "archiver_provider_rate_limited_total", provider="bandwidth") + 1
    )
    assert value(after, "archiver_items", state="deletion_requested") == 1  # the tables start empty
    assert value(after, "archiver_deletions_requested_total") == 1
    assert (
        value(after, "archiver_archived_bytes_total") > 0
        and value(after, "archiver_archived_objects_total") == 1
    )
    assert value(after, "archiver_dead_letters") == 0 and value(after, "archiver_pipeline_metrics_up") == 1
    assert SECRETS["intake_password"] not in httpx.get(stack.metrics_url).text


def test_a_presigned_url_query_never_reaches_the_broker_headers_flower_reads():
    """What Flower shows of a task is its message's ``argsrepr``/``kwargsrepr``: read from the real
    Redis broker, the media URL's query is cut there, and the task's own arguments keep it."""
    import base64

    import redis

    from archiver.core.config import Settings
    from archiver.pipeline.dispatch import QUEUE_LIVE, REQUEST_TWILIO_TRANSCRIPT_TASK_NAME
    from tests.support.helpers import SPARE_BROKER
    from workers.celery_app import create_celery_app

    broker = redis.Redis.from_url(SPARE_BROKER)
    broker.delete(QUEUE_LIVE)
    app = create_celery_app(Settings(broker_url=SPARE_BROKER), include_tasks=False)
    url = "https://bucket.s3.amazonaws.com/call.wav?X-Amz-Credential=AKIA1&X-Amz-Signature=f00d"
    try:
        app.send_task(REQUEST_TWILIO_TRANSCRIPT_TASK_NAME, kwargs={"service_sid": "GA1", "media_url": url})
        [raw] = broker.lrange(QUEUE_LIVE, 0, -1)
    finally:
        broker.delete(QUEUE_LIVE)
        broker.close()
        app.close()
    message = json.loads(raw)
    shown = message["headers"]["kwargsrepr"]
    assert "https://bucket.s3.amazonaws.com/call.wav?…" in shown and "X-Amz" not in shown
    _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert kwargs["media_url"] == url
