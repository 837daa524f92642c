"""Prometheus metrics, served by the intake on a port of their own (``ARCHIVER_METRICS_PORT``).

Two kinds:

* the intake's own (requests, accepted events, rejections by reason, latency), counted in the
  intake process;
* the pipeline's, read at scrape time from where the truth is, not from worker memory (prefork
  children come and go): items by state, archived bytes, deletions requested and purges
  confirmed, dead letters from the database; provider 429s from counters every worker increments
  in Redis. The database figures are cached for ``cache_seconds`` so that several scrapers cost
  one query.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from archiver.db.models import AccountState, ArchivedObject, ArchiveItem, ItemState, ProviderAccount
from archiver.db.session import Database
from archiver.storage import IntegrityAlarm

#: A dead item's ``last_error`` starts with its error's class name (see :mod:`archiver.pipeline.retry`).
INTEGRITY_ALARM_PREFIX = f"{IntegrityAlarm.__name__}:"

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


class IntakeMetrics:
    """The intake's request metrics, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "archiver_intake_requests", "Webhook requests answered", ["provider", "status"], registry=registry
        )
        self.accepted = Counter(
            "archiver_intake_events_accepted",
            "Events stored (new, duplicate, or stored without an item)",
            ["provider", "event_type", "outcome"],
            registry=registry,
        )
        self.rejected = Counter(
            "archiver_intake_rejected",
            "Requests refused, by reason",
            ["provider", "reason"],
            registry=registry,
        )
        self.batch_events = Histogram(
            "archiver_intake_batch_events",
            "Events committed together in one intake transaction (group commit)",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=registry,
        )
        self.messages = Counter(
            "archiver_intake_messages",
            "Step messages of committed batches: sent directly, relayed through a worker, or failed "
            "(left to the sweeper)",
            ["path"],
            registry=registry,
        )
        self.latency = Histogram(
            "archiver_intake_request_seconds",
            "Time to answer a webhook (the event is durable before the answer)",
            ["provider"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )


class PipelineCollector(Collector):
    """The pipeline's state, read from the database and the shared counters at scrape time."""

    def __init__(self, db: Database, counters: SharedCounters | None, cache_seconds: float = 10.0) -> None:
        self._db = db
        self._counters = counters
        self._cache_seconds = cache_seconds
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < self._cache_seconds:
                return self._cached[1]
            with self._db.sessionmaker() as session:
                states = dict(
                    session.execute(select(ArchiveItem.state, func.count()).group_by(ArchiveItem.state))
                    .tuples()
                    .all()
                )
                archived_bytes = session.scalar(select(func.coalesce(func.sum(ArchivedObject.size_bytes), 0)))
                objects = session.scalar(select(func.count()).select_from(ArchivedObject))
                requested = session.scalar(
                    select(func.count()).where(ArchiveItem.deletion_requested_at.is_not(None))
                )
                confirmed = session.scalar(select(func.count()).where(ArchiveItem.purged_at.is_not(None)))
                paused = (
                    session.execute(
                        select(ProviderAccount.provider, ProviderAccount.pause_reason, func.count())
                        .where(ProviderAccount.state == AccountState.PAUSED)
                        .group_by(ProviderAccount.provider, ProviderAccount.pause_reason)
                    )
                    .tuples()
                    .all()
                )
                alarms = session.scalar(
                    select(func.count()).where(
                        ArchiveItem.state == ItemState.DEAD,
                        ArchiveItem.last_error.startswith(INTEGRITY_ALARM_PREFIX),
                    )
                )
            data = {
                "alarms": int(alarms or 0),
                "paused": paused,
                "states": states,
                "archived_bytes": int(archived_bytes or 0),
                "objects": int(objects or 0),
                "requested": int(requested or 0),
                "confirmed": int(confirmed or 0),
            }
            self._cached = (time.monotonic(), data)
            return data

    def collect(self) -> Iterator[Metric]:
        try:
            data = self._read()
        except Exception as exc:  # a scrape must answer; the gap in the series tells the story
            log.warning("pipeline metrics unavailable: %s", exc)
            up = GaugeMetricFamily("archiver_pipeline_metrics_up", "Pipeline metrics could be read")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("archiver_pipeline_metrics_up", "Pipeline metrics could be read")
        up.add_metric([], 1)
        yield up
        items = GaugeMetricFamily("archiver_items", "Archive items by state", labels=["state"])
        for state in ItemState:
            items.add_metric([state.value], int(data["states"].get(state.value, 0)))
        yield items
        dead = GaugeMetricFamily("archiver_dead_letters", "Items dead-lettered, waiting for an operator")
        dead.add_metric([], int(data["states"].get(ItemState.DEAD.value, 0)))
        yield dead
        alarms = GaugeMetricFamily(
            "archiver_integrity_alarms",
            "Dead-lettered items whose S3 key already held another object (not overwritten): alert on > 0",
        )
        alarms.add_metric([], data["alarms"])
        yield alarms
        archived = CounterMetricFamily("archiver_archived_bytes", "Bytes archived and verified in S3")
        archived.add_metric([], data["archived_bytes"])
        yield archived
        objects = CounterMetricFamily("archiver_archived_objects", "Objects archived and verified in S3")
        objects.add_metric([], data["objects"])
        yield objects
        requested = CounterMetricFamily(
            "archiver_deletions_requested", "Items whose deletion the provider accepted"
        )
        requested.add_metric([], data["requested"])
        yield requested
        confirmed = CounterMetricFamily(
            "archiver_purges_confirmed", "Items the provider no longer serves after the purge window"
        )
        confirmed.add_metric([], data["confirmed"])
        yield confirmed
        paused = GaugeMetricFamily(
            "archiver_accounts_paused",
            "Provider accounts paused (their items wait): credentials refused",
            labels=["provider", "reason"],
        )
        for provider, reason, count in data["paused"]:
            paused.add_metric([provider, reason or ""], int(count))
        yield paused
        limited = CounterMetricFamily(
            "archiver_provider_rate_limited", "Provider answers 429, all workers", labels=["provider"]
        )
        refused = CounterMetricFamily(
            "archiver_provider_auth_failures",
            "Provider refusals of the account's credentials (token endpoint or API 401/403), all workers",
            labels=["provider"],
        )
        try:
            if self._counters is not None:
                for provider, value in sorted(self._counters.read("provider_429").items()):
                    limited.add_metric([provider], value)
                failures = self._counters.read("provider_auth_failures")
                for provider in sorted({"bandwidth", "twilio", *failures}):  # 0 from the start, for alerts
                    refused.add_metric([provider], failures.get(provider, 0))
        except redis.RedisError as exc:
            log.warning("shared counters unavailable: %s", exc)
        yield limited
        yield refused
