"""Credentials end to end, through the real worker, against the simulator as the providers are
today: Bandwidth takes only OAuth 2.0 client-credentials tokens, Twilio an API key.

A refused credential is a problem of the account: its items wait without spending an attempt,
nothing is dead-lettered or deleted, status and metrics say why, and the backlog resumes by itself
once the secret file holds a secret the provider accepts."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time

import httpx
import pytest
from sqlalchemy import select

from archiver.db.models import ArchiveItem, ItemState, ProviderAccount
from archiver.local.supervisor import bin_path
from tests.e2e.test_observability import scrape, value
from tests.support.helpers import count
from tests.support.stack import SECRETS, wait_for, wait_while_progressing

pytestmark = pytest.mark.e2e

TOKEN_PATH = "/api/v1/oauth2/token"


def token_requests(simulator):
    return simulator.audit(method="POST", path_contains=TOKEN_PATH)


def api_refusals(simulator):
    return [e for e in simulator.audit() if e["path"].startswith("/api/v2/") and e["status"] in (401, 403)]


def items_in(db, *states):
    with db.sessionmaker() as session:
        return list(session.scalars(select(ArchiveItem).where(ArchiveItem.state.in_(states))))


def all_items(db):
    with db.sessionmaker() as session:
        return list(session.scalars(select(ArchiveItem)))


def send_realtime(simulator, n):
    created = simulator.create_realtime(n)
    ids = [t["transcriptionId"] for t in created]
    simulator.send_webhooks(ids=ids)
    return ids


def wait_all_deleted(db, total, stall=60):
    wait_while_progressing(
        lambda: len(items_in(db, ItemState.DELETION_REQUESTED)), total, stall, "items archived and deleted"
    )


def assert_no_attempt_spent_and_nothing_dead(db):
    items = all_items(db)
    assert items and all(i.attempts == 0 for i in items), [(i.ref, i.attempts, i.last_error) for i in items]
    assert not [i for i in items if i.state == ItemState.DEAD]


def account_row(db):
    with db.sessionmaker() as session:
        return session.scalars(
            select(ProviderAccount).where(ProviderAccount.provider == "bandwidth")
        ).one_or_none()


def status_json(stack):
    out = subprocess.run([bin_path("archiver"), "status", "--json"], env={**os.environ, **stack.env()},
                         capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    return json.loads(out.stdout)


def status_text(stack):
    out = subprocess.run([bin_path("archiver"), "status"], env={**os.environ, **stack.env()},
                         capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    return out.stdout


@pytest.fixture
def secret_file(e2e):
    """The stack's client secret file; written back as it was after the test (the workers read it
    again when the simulator, reset to its own secret, refuses the one they hold)."""
    stack, _simulator, _clock = e2e
    path = stack.secret_path("bandwidth_client_secret")
    original = path.read_text()
    yield path
    path.write_text(original)


def test_archive_and_delete_with_oauth_one_token_per_process(e2e, db):
    _stack, simulator, _clock = e2e
    simulator.revoke_tokens()  # every worker process starts without a valid token
    ids = send_realtime(simulator, 40)
    wait_all_deleted(db, 40)
    assert_no_attempt_spent_and_nothing_dead(db)
    grants = token_requests(simulator)
    # One per worker process at most (4), plus none: one revocation, one token lifetime.
    assert 1 <= len(grants) <= 4 and all(e["status"] == 200 for e in grants)
    assert len(api_refusals(simulator)) <= 4  # each process's revoked token, refused once
    deletes = simulator.audit(method="DELETE")
    assert sorted(e["path"].rsplit("/", 1)[1] for e in deletes) == sorted(ids)


def test_five_second_tokens_over_a_minute_of_200_items(e2e, db):
    _stack, simulator, _clock = e2e
    simulator.oauth(token_lifetime=5)
    simulator.revoke_tokens()
    started = time.monotonic()
    for _ in range(10):  # 20 items every 6 s: a minute of traffic
        send_realtime(simulator, 20)
        time.sleep(max(0.0, 6.0 - (time.monotonic() - started) % 6.0))
    wait_all_deleted(db, 200)
    elapsed = time.monotonic() - started
    assert elapsed >= 55
    assert_no_attempt_spent_and_nothing_dead(db)
    grants = token_requests(simulator)
    # A token serves 3.75 s of its 5 (a quarter kept in reserve): at most one per process that long.
    assert all(e["status"] == 200 for e in grants)
    assert len(grants) <= 4 * (elapsed / 3.75 + 2), len(grants)
    assert count(db, ArchiveItem) == 200


def test_every_token_revoked_mid_run_is_replaced_and_nothing_fails(e2e, db):
    _stack, simulator, _clock = e2e
    simulator.set_faults({"status": 0, "latency_seconds": 0.05, "path_contains": "/transcriptions/"})
    send_realtime(simulator, 120)
    wait_for(lambda: len(items_in(db, ItemState.DELETION_REQUESTED)) >= 20, 60, "the run under way")
    revoked = simulator.revoke_tokens()
    assert revoked >= 1
    wait_for(lambda: len(items_in(db, ItemState.DELETION_REQUESTED)) >= 60, 60, "more of the run")
    simulator.revoke_tokens()
    wait_all_deleted(db, 120)
    assert_no_attempt_spent_and_nothing_dead(db)
    assert account_row(db) is None  # never paused: a revoked token is replaced, not a refusal
    assert len(token_requests(simulator)) <= 4 * 3  # per process: its first, and one per revocation


def test_a_secret_rotated_at_the_provider_is_picked_up_from_the_file_and_the_backlog_completes(
    e2e, db, secret_file
):
    _stack, simulator, _clock = e2e
    simulator.oauth(token_lifetime=5)
    simulator.revoke_tokens()
    send_realtime(simulator, 100)
    wait_for(lambda: len(items_in(db, ItemState.DELETION_REQUESTED)) >= 15, 60, "the run under way")
    simulator.oauth(client_secret="rotated-SECRET-b71c")  # the old secret is refused from now on
    simulator.revoke_tokens()
    time.sleep(2.0)  # the operator is a little late with the file
    secret_file.write_text("rotated-SECRET-b71c\n")
    wait_all_deleted(db, 100)
    assert_no_attempt_spent_and_nothing_dead(db)
    refused = [e for e in token_requests(simulator) if e["status"] == 401]
    assert refused  # the old secret was refused ...
    assert token_requests(simulator)[-1]["status"] == 200  # ... and the new one taken from the file
    row = account_row(db)
    assert row is None or row.state == "active"


@pytest.fixture
def wrong_secret_worker(e2e):
    """The stack's worker replaced by one whose secret file holds a wrong secret; put back after."""
    stack, simulator, _clock = e2e
    worker = next(p for p in reversed(stack.group.processes) if p.name == "worker" and p.alive())
    worker.stop()
    path = stack.write_secret("wrong_client_secret", "not-the-SECRET-0000")
    simulator.revoke_tokens()
    stack.start_worker(
        name="worker-wrong", concurrency=2, env={"ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE": str(path)}
    )
    yield path
    wrong = next(p for p in reversed(stack.group.processes) if p.name == "worker-wrong" and p.alive())
    wrong.stop()
    stack.start_worker(concurrency=4)


def test_a_wrong_secret_pauses_the_account_then_fixing_the_file_completes_the_backlog(
    e2e, db, wrong_secret_worker
):
    stack, simulator, _clock = e2e
    before = scrape(stack)
    ids = send_realtime(simulator, 12)
    wait_for(lambda: (row := account_row(db)) is not None and row.state == "paused", 30, "the account paused")
    paused_at = time.monotonic()
    wait_for(lambda: count(db, ArchiveItem) == 12, 30, "every event stored")
    # several checks of the credentials, refused (a loaded CI machine may take longer than the interval)
    wait_for(lambda: account_row(db).checks >= 2, 60, "the credentials checked again")
    items = all_items(db)
    assert {i.state for i in items} == {ItemState.PENDING}  # nothing archived without credentials ...
    assert all(i.attempts == 0 for i in items)  # ... no attempt spent, nothing dead-lettered
    assert simulator.audit(method="DELETE") == [] and simulator.audit(path_contains="/transcriptions/") == []
    row = account_row(db)
    assert row.pause_reason == "credentials" and "invalid_client" in row.message and row.checks >= 2

    status = status_json(stack)
    [paused] = status["paused_accounts"]
    assert paused["provider"] == "bandwidth" and paused["items_waiting"] >= 1
    assert "invalid_client: Bad client credentials" in paused["message"]
    text = status_text(stack)
    assert f"Bandwidth credentials refused since {paused['since']}" in text
    assert status["items_by_state"]["dead"] == 0

    failures = "archiver_provider_auth_failures_total"
    floor = value(before, failures, provider="bandwidth") + 2
    wait_for(lambda: value(scrape(stack), failures, provider="bandwidth") >= floor, 30, "failures counted")
    after = scrape(stack)
    assert value(after, "archiver_accounts_paused", provider="bandwidth", reason="credentials") == 1

    log = (stack.workdir / "worker-wrong.log").read_text("utf-8", "replace")
    errors = [line for line in log.splitlines() if '"ERROR"' in line and "credentials refused since" in line]
    assert errors  # said at once, then once per interval (ARCHIVER_ACCOUNT_PAUSE_MAX_SECONDS=3)
    assert len(errors) <= (time.monotonic() - paused_at) / 3 + 2, len(errors)

    wrong_secret_worker.write_text(SECRETS["bandwidth_client_secret"] + "\n")  # the operator fixes it
    wait_all_deleted(db, 12)
    assert sorted(e["path"].rsplit("/", 1)[1] for e in simulator.audit(method="DELETE")) == sorted(ids)
    assert_no_attempt_spent_and_nothing_dead(db)
    assert account_row(db).state == "active" and status_json(stack)["paused_accounts"] == []


def test_twilio_rest_uses_the_api_key_and_a_revoked_key_pauses_the_account(e2e, db):
    stack, simulator, _clock = e2e
    simulator.twilio_credentials(api_keys={})  # the archiver's API key revoked
    created = simulator.client.post(
        "/admin/twilio/transcripts", json={"count": 2, "queued_seconds": 0, "processing_seconds": 0}
    ).json()
    sids = [t["sid"] for t in created["created"]]
    simulator.send_webhooks(event="twilio", ids=sids)
    wait_for(
        lambda: (row := account_twilio(db)) is not None and row.state == "paused",
        30,
        "the Twilio account paused",
    )
    assert simulator.audit(method="DELETE") == []
    assert all(i.attempts == 0 and i.state == ItemState.PENDING for i in all_items(db))
    simulator.twilio_credentials(api_keys={stack.twilio_api_key_sid: stack.twilio_api_key_secret})
    wait_for(lambda: len(items_in(db, ItemState.DELETION_REQUESTED)) == 2, 60, "both archived and deleted")
    assert_no_attempt_spent_and_nothing_dead(db)


def account_twilio(db):
    with db.sessionmaker() as session:
        return session.scalars(
            select(ProviderAccount).where(ProviderAccount.provider == "twilio")
        ).one_or_none()


@pytest.mark.parametrize(
    ("signing", "expected"),
    [({"sign_with": "secondary"}, 204), ({"signing_token": "a-third-token-never-configured"}, 403)],
    ids=["secondary-accepted", "third-refused"],
)
def test_a_webhook_signed_with_the_secondary_token_is_accepted_and_no_other(e2e, db, signing, expected):
    stack, simulator, _clock = e2e
    simulator.client.put("/admin/callbacks", json={"drop": True}).raise_for_status()  # only ours below
    created = simulator.client.post(
        "/admin/twilio/transcripts", json={"count": 1, "queued_seconds": 0, "processing_seconds": 0}
    ).json()
    [delivery] = simulator.send_webhooks(
        event="twilio", intake_url=f"{stack.intake_url}/webhooks/twilio", format="form", **signing
    )
    assert delivery["status"] == expected
    stored = count(db, ArchiveItem)
    assert stored == (1 if expected == 204 else 0)
    assert created["created"]


def test_no_token_client_secret_or_api_key_secret_reaches_any_log(e2e, db):
    stack, simulator, _clock = e2e
    simulator.revoke_tokens()
    send_realtime(simulator, 3)
    wait_all_deleted(db, 3)
    fingerprints = set(simulator.oauth()["token_sha256"])
    assert fingerprints  # the worker's tokens: the check below is not vacuous
    texts = {p.name: p.read_text("utf-8", "replace") for p in stack.workdir.glob("*.log")}
    assert {"worker.log", "intake.log", "simulator.log", "beat.log"} <= set(texts)
    for name, text in texts.items():
        for secret in SECRETS.values():
            assert secret not in text, f"a configured secret in {name}"
        for run in set(re.findall(r"[A-Za-z0-9_-]{43,}", text)):  # every 43-character window of each run
            for start in range(len(run) - 42):
                digest = hashlib.sha256(run[start : start + 43].encode()).hexdigest()
                assert digest not in fingerprints, f"a token in {name}"
        assert "Bearer " not in text, name
    metrics = httpx.get(stack.metrics_url, timeout=10).text
    assert SECRETS["bandwidth_client_secret"] not in metrics
