"""Backfill: manually started sweeps of what the providers still hold.

A run is a row of ``backfill_runs``: its parameters, progress and a checkpoint (what is left to
list); the same parameters are the same run, so starting it again continues where it stopped
(:mod:`~archiver.backfill.runs`). One task at a time works on it, a slice at a time
(:mod:`~archiver.backfill.runner`), committing its checkpoint with the items it found
(:mod:`~archiver.backfill.progress`), so a killed worker loses at most one list request. What a
run lists is the provider's: :mod:`~archiver.backfill.bandwidth`, :mod:`~archiver.backfill.twilio`.
Every artifact found becomes an item exactly as if its webhook had arrived, on the backfill queue.
"""

from archiver.backfill.bandwidth import Split, split_window
from archiver.backfill.runner import SliceResult, run_backfill
from archiver.backfill.runs import (
    CAP,
    DONE_STATES,
    BackfillError,
    backfill_status,
    enqueue_backfill,
    fail_run,
    resume_orphaned_runs,
    run_account,
    set_state,
    start_bandwidth_backfill,
    start_twilio_backfill,
    wait_for_account,
)

__all__ = [
    "CAP",
    "DONE_STATES",
    "BackfillError",
    "SliceResult",
    "Split",
    "backfill_status",
    "enqueue_backfill",
    "fail_run",
    "resume_orphaned_runs",
    "run_account",
    "run_backfill",
    "set_state",
    "split_window",
    "start_bandwidth_backfill",
    "start_twilio_backfill",
    "wait_for_account",
]
