"""The operator's commands, run as a person would (``archiver …``) against the running stack:
dead letters and their retry, an item's history, the deletion audit, and reconciliation with S3."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess

import pytest

from archiver.db.models import ItemState
from archiver.local.supervisor import bin_path
from tests.support.helpers import objects, wait_state

pytestmark = pytest.mark.e2e

PURGE_WINDOW = 48 * 3600


def run(stack, *args):
    env = {**os.environ, **stack.env()}
    return subprocess.run([bin_path("archiver"), *args], env=env, capture_output=True, text=True, timeout=120)


def archiver(stack, *args, expect=0):
    out = run(stack, *args)
    assert out.returncode == expect, out.stderr
    return out.stdout


def dead_letter(simulator, db):
    """A real-time transcription the provider never serves (503s), dead-lettered: (its id, the item)."""
    [created] = simulator.create_realtime(1)
    tid = created["transcriptionId"]
    simulator.set_faults({"status": 503, "method": "GET", "path_contains": tid})
    simulator.send_webhooks()
    return tid, wait_state(db, tid, ItemState.DEAD)


def test_dead_letters_are_listed_shown_and_retried(e2e, db):
    stack, simulator, _clock = e2e
    tid, dead = dead_letter(simulator, db)
    [listed] = json.loads(archiver(stack, "items", "dead", "--json"))
    assert listed["id"] == dead.id and listed["ref"].endswith(tid) and listed["stopped_at"] == "pending"
    assert "503" in listed["reason"] and listed["attempts"] == dead.attempts
    assert f"{dead.id}\tbandwidth/realtime_transcription/{tid}\tstopped at pending" in archiver(
        stack, "items", "dead"
    )
    shown = json.loads(archiver(stack, "items", "show", tid, "--json"))
    assert [h["to"] for h in shown["history"]][-1] == "dead" and shown["item"][
        "last_error"
    ] == dead.last_error
    simulator.set_faults()  # the provider recovered
    assert f"[{dead.id}]" in archiver(stack, "items", "retry", "--all-dead")
    item = wait_state(db, tid, ItemState.DELETION_REQUESTED)
    assert item.attempts == 0 and json.loads(archiver(stack, "items", "dead", "--json")) == []
    text = archiver(stack, "items", "show", str(item.id))
    assert "dead -> pending  retried by an operator" in text and "object transcription: s3://" in text


def test_unknown_items_are_clear_errors(e2e, db):
    stack, _simulator, _clock = e2e
    out = run(stack, "items", "retry", "424242")
    assert out.returncode == 2 and "not dead letters (or unknown): [424242]" in out.stderr
    out = run(stack, "items", "show", "t-nope")
    assert out.returncode == 2 and "no item 't-nope'" in out.stderr


def test_deletion_audit_says_what_was_deleted_when_and_when_its_purge_was_confirmed(e2e, db):
    stack, simulator, clock = e2e
    created = simulator.create_realtime(2)
    simulator.send_webhooks()
    items = [wait_state(db, c["transcriptionId"], ItemState.DELETION_REQUESTED) for c in created]
    clock.advance(PURGE_WINDOW + 60)
    purged = [wait_state(db, c["transcriptionId"], ItemState.PURGED) for c in created]
    rows = list(csv.DictReader(io.StringIO(archiver(stack, "deletions", "report"))))
    assert sorted(r["provider_id"] for r in rows) == sorted(i.provider_id for i in items)
    for row in rows:
        item = next(p for p in purged if p.provider_id == row["provider_id"])
        assert row["deletion_scope"] == "transcription" and row["state"] == "purged"
        assert row["deletion_requested_at"] == item.deletion_requested_at.isoformat()
        assert row["purged_at"] == item.purged_at.isoformat() and row["deletion_requests"] == "1"
        assert row["archived_at"] <= row["deletion_requested_at"] < row["purged_at"]
        assert (
            row["objects"]
            == f"s3://{objects(db, item.id)['transcription'].s3_bucket}/"
            + objects(db, item.id)["transcription"].s3_key
        )
    as_json = json.loads(archiver(stack, "deletions", "report", "--format", "json"))
    assert {r["provider_id"] for r in as_json} == {r["provider_id"] for r in rows}
    later = json.loads(archiver(stack, "deletions", "report", "--format", "json", "--since", "2999-01-01"))
    assert later == []


def test_reconcile_finds_changed_and_missing_objects(e2e, db):
    stack, simulator, _clock = e2e
    created = simulator.create_realtime(3)
    simulator.send_webhooks()
    items = [wait_state(db, c["transcriptionId"], ItemState.DELETION_REQUESTED) for c in created]
    clean = json.loads(archiver(stack, "reconcile", "--json"))
    assert clean["checked"] == 3 and clean["mismatches"] == [] and clean["bytes"] > 0
    assert json.loads(archiver(stack, "reconcile", "--read-back", "--json"))["mismatches"] == []
    client = stack.object_store().client
    changed, missing = (objects(db, i.id)["transcription"] for i in items[:2])
    client.put_object(Bucket=changed.s3_bucket, Key=changed.s3_key, Body=b"{}")
    client.delete_object(Bucket=missing.s3_bucket, Key=missing.s3_key)
    report = json.loads(archiver(stack, "reconcile", "--json", expect=1))
    problems = {m["uri"]: m["problem"] for m in report["mismatches"]}
    assert problems[f"s3://{missing.s3_bucket}/{missing.s3_key}"] == "missing from S3"
    assert "length 2 !=" in problems[f"s3://{changed.s3_bucket}/{changed.s3_key}"]
    assert len(problems) == 2 and report["checked"] == 3
    text = archiver(stack, "reconcile", expect=1)
    assert f"MISMATCH item {items[1].id}" in text and "3 object(s)" in text and "2 mismatch(es)" in text


HOSTILE = "HTTP 503 \x1b[2J\x1b[31mall good\nFAKE\tline \u202eevil\u202c \x07 \\x1b"


def test_text_output_escapes_what_a_provider_wrote(e2e, db):
    """A provider's message reaches the operator's terminal as text, never as escape sequences,
    forged lines or reordered characters; ``--json`` keeps the value exact."""
    from sqlalchemy import update

    from archiver.db.models import ArchiveItem, ItemHistory

    stack, simulator, _clock = e2e
    tid, dead = dead_letter(simulator, db)
    with db.sessionmaker.begin() as session:  # as if the provider's message had said so
        session.execute(update(ArchiveItem).where(ArchiveItem.id == dead.id).values(last_error=HOSTILE))
        session.execute(update(ItemHistory).where(ItemHistory.item_id == dead.id).values(detail=HOSTILE))
    outputs = {
        "items dead": archiver(stack, "items", "dead"),
        "items show": archiver(stack, "items", "show", tid),
        "status": archiver(stack, "status"),
    }
    for name, text in outputs.items():
        assert (
            "HTTP 503 \\x1b[2J\\x1b[31mall good\\x0aFAKE\\x09line \\u202eevil\\u202c \\x07 \\\\x1b" in text
        ), name
        assert not any(c in text for c in "\x1b\x07\u202e\u202c"), name
        assert "\nFAKE" not in text, name
    [listed] = json.loads(archiver(stack, "items", "dead", "--json"))
    assert listed["reason"] == HOSTILE
