"""Bandwidth's backfill: an account's recordings in ``[since, until)``, and for the calls found,
their real-time transcriptions.

The list is capped at 1000 with no paging, in an order Bandwidth does not document. A page of fewer
than 1000 is the whole window. A full page in start order (oldest or newest first) is a cursor from
its end of the window: about one request per 1000 recordings. A full page in no order is split at
its median. Each recording is counted from the one page that proves it complete
(:func:`split_window`). When 1000 share one millisecond, that millisecond cannot be split: it is
reported (``truncated_windows``), its 1000 are kept, and the run goes on around it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from archiver.backfill.progress import commit_progress, list_request, load_run
from archiver.backfill.runs import CAP, ms_iso, to_ms
from archiver.core.ids import InvalidId, validate
from archiver.core.timestamps import parse_timestamp
from archiver.db.models import ArtifactKind, Provider
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.items import Action, AnnouncedItem

log = logging.getLogger(__name__)


def recording_item(account_id: str, r: dict[str, Any]) -> AnnouncedItem | None:
    try:
        call_id = validate("bandwidth_call", r.get("callId"))
        recording_id = validate("bandwidth_recording", r.get("recordingId"))
    except InvalidId as exc:
        log.warning("backfill: skipped a recording with an invalid id: %s", exc)
        return None
    status = str(r.get("status") or "").lower()
    action = (
        Action.REJECT if status == "error" else Action.ARCHIVE if r.get("mediaUrl") else Action.ARCHIVE_LATER
    )
    return AnnouncedItem(
        provider=Provider.BANDWIDTH,
        account_id=account_id,
        kind=ArtifactKind.RECORDING,
        provider_id=recording_id,
        call_id=call_id,
        action=action,
        outcome="recording status 'error': no media to fetch" if action is Action.REJECT else None,
        provider_started_at=parse_timestamp(r.get("startTime")),
        provider_completed_at=parse_timestamp(r.get("endTime")),
        partial=status == "partial",
    )


@dataclass(frozen=True)
class Split:
    """What one page of ``[since, until)`` settles: the start times it proves complete (``keep``,
    half-open, in milliseconds), the windows still to list, and the millisecond the cap hid."""

    keep: tuple[int, int] | None
    windows: list[list[int]]
    finished: int = 0
    truncated: list[list[int]] = field(default_factory=list)

    def keeps(self, start: int) -> bool:
        return self.keep is not None and self.keep[0] <= start < self.keep[1]


def split_window(since: int, until: int, starts: list[int], *, full: bool) -> Split:
    """How a page answered for ``[since, until)`` moves the listing on (pure: tested on its own).

    Bandwidth caps the list at 1000 and documents no order, so each recording is counted from the
    one page that proves it complete, and from no other:

    * a page of fewer than 1000 is the whole window: all of it is kept;
    * a full page in start order is the window's oldest 1000: those before its last millisecond are
      complete; the window goes on from that millisecond (a cursor);
    * a full page in reverse start order is the newest 1000: those after its first millisecond are
      complete; the window goes on up to and including that millisecond (the cursor from the end);
    * a full page in no order proves nothing: none of it is kept, the window is split at its median;
    * a full page all in one millisecond cannot be split: its 1000 are kept, the millisecond reported.
    """
    if not full:
        return Split((since, until), [], finished=1)
    # A start outside the window (a provider's rounding) says nothing about it: read as its edge.
    starts = [min(max(s, since), until - 1) for s in starts]
    lo, hi = min(starts), max(starts)
    if lo == hi:
        windows = [w for w in ([lo + 1, until], [since, lo]) if w[0] < w[1]]
        return Split((lo, lo + 1), windows, truncated=[[lo, lo + 1]])
    if starts == sorted(starts):
        return Split((since, hi), [[hi, until]])
    if starts == sorted(starts, reverse=True):
        return Split((lo + 1, until), [[since, lo + 1]])
    middle = min(max(sorted(starts)[len(starts) // 2], since + 1), until - 1)
    return Split(None, [[middle, until], [since, middle]])


def bandwidth_step(ctx: PipelineContext, run_id: int, owner: str) -> bool:
    account, params, checkpoint = load_run(ctx, run_id)
    windows: list[list[int]] = checkpoint["windows"]
    if not windows:
        return commit_progress(ctx, run_id, owner, [], checkpoint, requests=0, done=True)
    since, until = windows.pop()
    client = ctx.bandwidth_for(account)
    with list_request(ctx, run_id, client) as answered:
        page = client.list_recordings(
            account, ms_iso(since), ms_iso(until), to=params.get("to"), from_=params.get("from")
        )
    starts = [
        to_ms(parse_timestamp(r.get("startTime")) or datetime.fromtimestamp(since / 1000, UTC)) for r in page
    ]
    split = split_window(since, until, starts, full=len(page) >= CAP)
    if split.truncated:
        log.warning(
            "backfill run %d: more than %d recordings start at %s; the cap hides the rest",
            run_id,
            CAP - 1,
            ms_iso(split.truncated[0][0]),
        )
    keep = [r for r, s in zip(page, starts, strict=True) if split.keeps(s)]
    windows += split.windows
    truncated, finished_window = split.truncated, split.finished
    found = [a for r in keep if (a := recording_item(account, r)) is not None]
    if params.get("realtime", True):
        for call_id in sorted({a.call_id for a in found if a.call_id}):
            for t in client.list_realtime_transcriptions(account, call_id):
                try:
                    tid = validate("bandwidth_transcription", t.get("transcriptionId"))
                except InvalidId:
                    continue
                found.append(
                    AnnouncedItem(
                        provider=Provider.BANDWIDTH,
                        account_id=account,
                        kind=ArtifactKind.REALTIME_TRANSCRIPTION,
                        provider_id=tid,
                        call_id=call_id,
                        action=Action.ARCHIVE,
                    )
                )
    checkpoint["windows"] = windows
    return commit_progress(
        ctx,
        run_id,
        owner,
        found,
        checkpoint,
        windows_done=finished_window,
        requests=answered.count,
        truncated=truncated,
        done=not windows,
    )
