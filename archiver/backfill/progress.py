"""A run's progress, committed with the items it found: a killed worker loses at most one list
request; list requests are counted as the provider counts them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from archiver.db.models import ArchiveItem, BackfillRun, BackfillState
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.dispatch import QUEUE_BACKFILL
from archiver.pipeline.items import AnnouncedItem, get_or_create_item
from archiver.providers.errors import ProviderError
from archiver.providers.http import ProviderHttp

log = logging.getLogger(__name__)


def commit_progress(
    ctx: PipelineContext,
    run_id: int,
    owner: str,
    found: list[AnnouncedItem],
    checkpoint: Any,
    *,
    windows_done: int = 0,
    requests: int = 0,
    truncated: list[list[int]] | None = None,
    done: bool = False,
) -> bool:
    """Create the items found (or count them, in a dry run) and move the checkpoint, in one
    transaction; ``False`` if the run is no longer ours or no longer running."""
    now = ctx.clock.now()
    with ctx.db.transaction() as uow:
        session = uow.session
        run = session.scalars(
            select(BackfillRun)
            .where(BackfillRun.id == run_id, BackfillRun.lease_owner == owner)
            .with_for_update()
        ).one_or_none()
        if run is None or run.state != BackfillState.RUNNING:
            # Superseded (the lease expired and another worker took the run) or paused: the
            # progress is not ours to commit, but the request was made and counts.
            count_requests(session, run_id, requests)
            return False
        new = known = 0
        for announced in found:
            if run.dry_run:
                exists = session.scalar(
                    select(func.count())
                    .select_from(ArchiveItem)
                    .where(
                        ArchiveItem.provider == announced.provider,
                        ArchiveItem.account_id == announced.account_id,
                        ArchiveItem.kind == announced.kind,
                        ArchiveItem.provider_id == announced.provider_id,
                    )
                )
                known += 1 if exists else 0
                continue
            _item, is_new = get_or_create_item(
                uow, ctx, announced, now, backfill_run_id=run_id, queue=QUEUE_BACKFILL
            )
            new, known = new + int(is_new), known + int(not is_new)
        run.found += len(found)
        run.enqueued += new
        run.skipped_known += known
        run.windows_done += windows_done
        run.list_requests += requests
        if truncated:
            run.truncated_windows = json.dumps([*json.loads(run.truncated_windows), *truncated])
        run.checkpoint = json.dumps(checkpoint)
        run.updated_at = now
        run.lease_expires_at = now + timedelta(seconds=ctx.settings.lease_seconds)  # heartbeat
        if done:
            run.state, run.finished_at = BackfillState.DONE, now
            log.info(
                "backfill run %d done: %d found, %d enqueued, %d already known, %d list requests",
                run_id,
                run.found,
                run.enqueued,
                run.skipped_known,
                run.list_requests,
            )
    return not done


def count_requests(session: Session, run_id: int, requests: int) -> None:
    if requests:
        session.execute(
            update(BackfillRun)
            .where(BackfillRun.id == run_id)
            .values(list_requests=BackfillRun.list_requests + requests)
        )


@dataclass
class Answered:
    """How many responses the provider client received during a list request (set at its end)."""

    count: int = 0


@contextmanager
def list_request(ctx: PipelineContext, run_id: int, client: ProviderHttp) -> Iterator[Answered]:
    """Counts the list requests the provider answered, retries in place and errors (a 429, a 5xx)
    included, as the provider counts them; one that never got an answer (a timeout, a refused
    connection, the shared budget spent) is not counted. A failed request is counted at once."""
    start, answered = client.answered, Answered()
    try:
        yield answered
    except ProviderError:
        answered.count = client.answered - start
        if answered.count:
            with ctx.db.transaction() as uow:
                count_requests(uow.session, run_id, answered.count)
        raise
    answered.count = client.answered - start


def load_run(ctx: PipelineContext, run_id: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The run's scope (account or Service), parameters and checkpoint."""
    with ctx.db.sessionmaker() as session:
        run = session.get(BackfillRun, run_id)
        assert run is not None
        return run.scope, json.loads(run.params), json.loads(run.checkpoint)
