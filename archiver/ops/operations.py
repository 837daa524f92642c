"""What an operator asks of a running archive: the dead letters and their reasons, a retry, an
item's full history, the deletion audit, and a reconciliation of every archived object with S3.

Plain functions over a :class:`PipelineContext`; ``archiver items|deletions|reconcile`` print them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import or_, select

from archiver.db.models import ArchivedObject, ArchiveItem, ItemHistory, ItemState
from archiver.ops.status import dead_letters_query
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.dispatch import STATE_STEP, schedule_now
from archiver.pipeline.leases import transition
from archiver.pipeline.tenants import AccountUnknown
from archiver.storage.objects import StoredObject, VerificationFailed


class OperationError(Exception):
    """An operator's request that cannot be carried out (unknown item, wrong state)."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def dead_letters(ctx: PipelineContext, limit: int = 1000) -> list[dict[str, Any]]:
    """Dead-lettered items, newest first, with the step they stopped at and why."""
    with ctx.db.sessionmaker() as session:
        items = session.scalars(dead_letters_query(limit)).all()
        return [
            {
                "id": i.id,
                "ref": i.ref,
                "call_id": i.call_id,
                "stopped_at": i.failed_state,
                "attempts": i.attempts,
                "reason": i.last_error,
                "dead_since": _iso(i.updated_at),
            }
            for i in items
        ]


def find_item(ctx: PipelineContext, key: str) -> int:
    """An item's id from its id or its provider id."""
    with ctx.db.sessionmaker() as session:
        ids = session.scalars(
            select(ArchiveItem.id).where(
                or_(ArchiveItem.provider_id == key, ArchiveItem.id == (int(key) if key.isdigit() else -1))
            )
        ).all()
    if not ids:
        raise OperationError(f"no item {key!r}")
    if len(ids) > 1:
        raise OperationError(f"{key!r} names several items ({sorted(ids)}): use the numeric id")
    return ids[0]


def retry_dead(ctx: PipelineContext, item_ids: list[int] | None = None) -> list[int]:
    """Give dead items (the ones named, or all of them) a fresh set of attempts at the step where
    they stopped; their messages are sent after the commit."""
    now = ctx.clock.now()
    retried: list[int] = []
    with ctx.db.transaction() as uow:
        query = select(ArchiveItem).where(ArchiveItem.state == ItemState.DEAD).with_for_update()
        if item_ids is not None:
            query = query.where(ArchiveItem.id.in_(item_ids))
        items = uow.session.scalars(query).all()
        if item_ids is not None and len(items) != len(set(item_ids)):
            missing = sorted(set(item_ids) - {i.id for i in items})
            raise OperationError(f"not dead letters (or unknown): {missing}")
        for item in items:
            resume = item.failed_state or ItemState.PENDING.value
            if resume not in STATE_STEP:
                raise OperationError(f"{item.ref}: no step to retry from {resume!r}")
            transition(uow.session, item, resume, now, "retried by an operator")
            item.attempts = 0
            item.failed_state = None
            item.lease_owner = item.lease_expires_at = None
            schedule_now(uow, ctx.dispatcher, item, STATE_STEP[resume], now)
            retried.append(item.id)
    return retried


def item_history(ctx: PipelineContext, item_id: int) -> dict[str, Any]:
    """Everything known about one item: its row, every state change, its archived objects."""
    with ctx.db.sessionmaker() as session:
        item = session.get(ArchiveItem, item_id)
        if item is None:
            raise OperationError(f"no item {item_id}")
        history = session.scalars(
            select(ItemHistory).where(ItemHistory.item_id == item_id).order_by(ItemHistory.id)
        ).all()
        objects = session.scalars(
            select(ArchivedObject).where(ArchivedObject.item_id == item_id).order_by(ArchivedObject.id)
        ).all()
        columns = {c.key: getattr(item, c.key) for c in ArchiveItem.__table__.columns}
        return {
            "item": {k: _iso(v) if isinstance(v, datetime) else v for k, v in columns.items()},
            "ref": item.ref,
            "history": [
                {"at": _iso(h.at), "from": h.from_state, "to": h.to_state, "detail": h.detail}
                for h in history
            ],
            "objects": [
                {
                    "role": o.role,
                    "uri": f"s3://{o.s3_bucket}/{o.s3_key}",
                    "size_bytes": o.size_bytes,
                    "sha256": o.sha256,
                    "s3_checksum": o.s3_checksum,
                    "stored_at": _iso(o.stored_at),
                }
                for o in objects
            ],
        }


DELETION_COLUMNS = (
    "item_id",
    "provider",
    "account_id",
    "kind",
    "provider_id",
    "call_id",
    "deletion_scope",
    "archived_at",
    "deletion_requested_at",
    "deletion_requests",
    "purge_due_at",
    "purged_at",
    "state",
    "objects",
)


def deletion_audit(
    ctx: PipelineContext,
    since: datetime | None = None,
    until: datetime | None = None,
    account: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Every provider deletion we requested (of ``account`` only, if given), in order: what, when,
    when its purge was confirmed, and the verified objects it was deleted against. Streamed, for
    archives of any size."""
    query = select(ArchiveItem).where(ArchiveItem.deletion_requested_at.is_not(None))
    if account is not None:
        query = query.where(ArchiveItem.account_id == account)
    if since is not None:
        query = query.where(ArchiveItem.deletion_requested_at >= since)
    if until is not None:
        query = query.where(ArchiveItem.deletion_requested_at < until)
    with ctx.db.sessionmaker() as session:
        for batch in session.scalars(
            query.order_by(ArchiveItem.deletion_requested_at, ArchiveItem.id).execution_options(yield_per=500)
        ).partitions():
            keys: dict[int, list[str]] = {}
            for obj in session.scalars(
                select(ArchivedObject).where(ArchivedObject.item_id.in_([i.id for i in batch]))
            ):
                keys.setdefault(obj.item_id, []).append(f"s3://{obj.s3_bucket}/{obj.s3_key}")
            for item in batch:
                yield {
                    "item_id": item.id,
                    "provider": item.provider,
                    "account_id": item.account_id,
                    "kind": item.kind,
                    "provider_id": item.provider_id,
                    "call_id": item.call_id,
                    "deletion_scope": item.deletion_scope,
                    "archived_at": _iso(item.archived_at),
                    "deletion_requested_at": _iso(item.deletion_requested_at),
                    "deletion_requests": item.deletion_requests,
                    "purge_due_at": _iso(item.purge_due_at),
                    "purged_at": _iso(item.purged_at),
                    "state": item.state,
                    "objects": sorted(keys.get(item.id, [])),
                }


def deletion_audit_csv(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=DELETION_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "objects": " ".join(row["objects"])})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


@dataclass
class ReconcileReport:
    checked: int = 0
    bytes: int = 0
    mismatches: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "bytes": self.bytes, "mismatches": self.mismatches or []}


def reconcile(ctx: PipelineContext, *, read_back: bool = False, batch: int = 500) -> ReconcileReport:
    """Re-read every archived object's length and checksums from S3 (and, with ``read_back``, its
    bytes) and report each that differs from what we recorded or is missing."""
    report = ReconcileReport(mismatches=[])
    assert report.mismatches is not None
    last_id = 0
    while True:
        with ctx.db.sessionmaker() as session:
            rows = session.execute(
                select(
                    ArchivedObject,
                    ArchiveItem.provider,
                    ArchiveItem.kind,
                    ArchiveItem.provider_id,
                    ArchiveItem.account_id,
                )
                .join(ArchiveItem, ArchiveItem.id == ArchivedObject.item_id)
                .where(ArchivedObject.id > last_id)
                .order_by(ArchivedObject.id)
                .limit(batch)
            ).all()
        if not rows:
            return report
        for obj, provider, kind, provider_id, account_id in rows:
            last_id = obj.id
            stored = StoredObject(obj.s3_bucket, obj.s3_key, obj.size_bytes, obj.sha256, obj.s3_checksum)
            report.checked += 1
            report.bytes += obj.size_bytes
            try:
                ctx.store_for(provider, account_id).verify(stored, read_back=read_back)
            except (VerificationFailed, ClientError, BotoCoreError, AccountUnknown) as exc:
                report.mismatches.append(
                    {
                        "item_id": obj.item_id,
                        "ref": f"{provider}/{kind}/{provider_id}",
                        "role": obj.role,
                        "uri": f"s3://{obj.s3_bucket}/{obj.s3_key}",
                        "problem": _describe(exc),
                    }
                )


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "?")
        return "missing from S3" if code in ("404", "NoSuchKey", "NotFound") else f"S3 error {code}"
    return str(exc)
