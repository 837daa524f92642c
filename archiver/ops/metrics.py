"""The pipeline's Prometheus metrics, served with the intake's own (:mod:`archiver.intake.metrics`)
on a port of their own (``ARCHIVER_METRICS_PORT``). They are read at scrape time from where the
truth is, not from worker memory (prefork children come and go): items by state, archived bytes,
deletions requested and purges confirmed, dead letters, integrity alarms and paused accounts from
the database; provider 429s and credential refusals from counters every worker increments in Redis
(:mod:`archiver.core.counters`). The database figures are cached for ``cache_seconds`` so that
several scrapers cost one query.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from archiver.core.counters import SharedCounters
from archiver.db.models import (
    ACTIVE_STATES,
    AccountState,
    ArchivedObject,
    ArchiveItem,
    ItemState,
    ProviderAccount,
)
from archiver.db.session import Database
from archiver.storage.objects import IntegrityAlarm

#: A dead item's ``last_error`` starts with its error's class name (see :mod:`archiver.pipeline.retry`).
INTEGRITY_ALARM_PREFIX = f"{IntegrityAlarm.__name__}:"

log = logging.getLogger(__name__)


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
                # Per account, only what needs a look: items still on their way, and dead ones
                # (two series per account; terminal states are not labelled by account).
                by_account = (
                    session.execute(
                        select(ArchiveItem.provider, ArchiveItem.account_id, ArchiveItem.state, func.count())
                        .where(
                            ArchiveItem.state.in_([*(s.value for s in ACTIVE_STATES), ItemState.DEAD.value])
                        )
                        .group_by(ArchiveItem.provider, ArchiveItem.account_id, ArchiveItem.state)
                    )
                    .tuples()
                    .all()
                )
                paused_accounts = (
                    session.execute(
                        select(
                            ProviderAccount.provider, ProviderAccount.account_id, ProviderAccount.pause_reason
                        ).where(ProviderAccount.state == AccountState.PAUSED)
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
                "by_account": by_account,
                "paused_accounts": paused_accounts,
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
            "Provider accounts paused (their items wait), by reason: credentials, storage, removed",
            labels=["provider", "reason"],
        )
        for provider, reason, count in data["paused"]:
            paused.add_metric([provider, reason or ""], int(count))
        yield paused
        yield from self._per_account(data)
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

    @staticmethod
    def _per_account(data: dict[str, Any]) -> Iterator[Metric]:
        """Per-account series, bounded: two gauges per account that has items on their way or dead,
        and one per paused account (docs/operations.md, "Metrics per account")."""
        items = GaugeMetricFamily(
            "archiver_account_items",
            "Items per account: on their way (active) or dead-lettered (dead)",
            labels=["provider", "account", "state"],
        )
        totals: dict[tuple[str, str, str], int] = {}
        for provider, account, state, count in data["by_account"]:
            kind = "dead" if state == ItemState.DEAD.value else "active"
            totals[(provider, account, kind)] = totals.get((provider, account, kind), 0) + int(count)
        for (provider, account, kind), count in sorted(totals.items()):
            items.add_metric([provider, account, kind], count)
        yield items
        paused = GaugeMetricFamily(
            "archiver_account_paused",
            "1 for each paused provider account, with the reason (credentials, storage, removed)",
            labels=["provider", "account", "reason"],
        )
        for provider, account, reason in data["paused_accounts"]:
            paused.add_metric([provider, account, reason or ""], 1)
        yield paused
