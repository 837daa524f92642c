"""Paused accounts on a real PostgreSQL database: a pause, its back-off, a relapse right after a
resume (the same pause going on, not a fresh one), and a process's view of the paused accounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from archiver.core.config import Settings
from archiver.pipeline.accounts import PausedAccounts, pause_account

T0 = datetime(2026, 12, 2, 12, tzinfo=UTC)
SETTINGS = Settings(_env_file=None, account_pause_seconds=30, account_pause_max_seconds=300)


def pause(db, at, message="invalid_client: Bad client credentials"):
    with db.transaction() as uow:
        row = pause_account(uow.session, SETTINGS, "bandwidth", "9900000", message, at)
        return row.state, row.paused_since, row.checks, row.check_at, row.logged_at


def resume(db, at):
    from archiver.pipeline.accounts import _locked

    with db.transaction() as uow:
        row = _locked(uow.session, "bandwidth", "9900000", at)
        row.state, row.check_at, row.resumed_at = "active", None, at
        row.checks = 3  # as after three refused checks


def test_a_pause_starts_with_the_first_back_off_and_one_error(rolled_back_db):
    state, since, checks, check_at, logged = pause(rolled_back_db, T0)
    assert (state, since, checks, check_at, logged) == ("paused", T0, 0, T0 + timedelta(seconds=30), T0)
    again = pause(rolled_back_db, T0 + timedelta(seconds=5))  # another item refused: the same pause
    assert again[1:] == (T0, 0, T0 + timedelta(seconds=30), T0)


def test_a_refusal_soon_after_a_resume_continues_the_pause_and_its_back_off(rolled_back_db):
    pause(rolled_back_db, T0)
    resume(rolled_back_db, T0 + timedelta(minutes=4))
    relapse = T0 + timedelta(minutes=4, seconds=30)
    state, since, checks, check_at, logged = pause(rolled_back_db, relapse)
    assert state == "paused" and since == T0 and checks == 3 and logged == T0  # within the interval: no ERROR
    assert check_at == relapse + timedelta(seconds=240)  # 30 s x 2^3, not 30 s again


def test_a_refusal_long_after_a_resume_is_a_new_pause(rolled_back_db):
    pause(rolled_back_db, T0)
    resume(rolled_back_db, T0 + timedelta(minutes=4))
    later = T0 + timedelta(hours=1)
    assert pause(rolled_back_db, later)[1:] == (later, 0, later + timedelta(seconds=30), later)


def test_a_process_sees_paused_accounts_within_its_ttl(rolled_back_db):
    view = PausedAccounts(ttl=0.0)
    with rolled_back_db.sessionmaker() as session:
        view.refresh(session)
        assert ("bandwidth", "9900000") not in view
    pause(rolled_back_db, T0)
    with rolled_back_db.sessionmaker() as session:
        view.refresh(session)
        assert ("bandwidth", "9900000") in view


def test_what_a_rolled_back_test_commits_is_seen_by_no_other_connection(rolled_back_db):
    """The fixture these tests run in: the code's commits are savepoints of one outer transaction,
    invisible elsewhere and gone when the test ends."""
    from sqlalchemy import func, select

    from archiver.db.models import ProviderAccount
    from archiver.db.session import Database

    pause(rolled_back_db, T0)
    with rolled_back_db.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(ProviderAccount)) == 1
    other = Database(rolled_back_db.url)
    try:
        with other.sessionmaker() as session:
            assert session.scalar(select(func.count()).select_from(ProviderAccount)) == 0
    finally:
        other.dispose()


def test_an_accounts_own_retention_decides_which_of_its_recordings_are_at_risk(rolled_back_db):
    """Account 9900001 keeps recordings 10 days, the others the default 30 (margin 7): a recording
    that ended 5 days ago is at risk in the first only."""
    from archiver.db.models import ArchiveItem
    from archiver.pipeline.retention import at_risk

    ended = T0 - timedelta(days=5)
    with rolled_back_db.transaction() as uow:
        for account in ("9900001", "9900002"):
            uow.session.add(
                ArchiveItem(
                    provider="bandwidth", account_id=account, kind="recording", provider_id=f"r-{account}",
                    call_id="c-1", state="pending", attempts=0, deletion_requests=0, created_at=ended,
                    updated_at=ended, provider_started_at=ended, provider_completed_at=ended,
                )
            )  # fmt: skip
    settings = Settings(_env_file=None, retention_days=30, retention_margin_days=7)
    with rolled_back_db.sessionmaker() as session:
        risk = at_risk(session, settings, T0, retention={"9900001": 10.0})
        default = at_risk(session, settings, T0)
    assert [i["ref"].rsplit("/", 1)[-1] for i in risk["items"]] == ["r-9900001"]
    assert risk["items"][0]["provider_deletes_at"] == (ended + timedelta(days=10)).isoformat()
    assert default["count"] == 0
