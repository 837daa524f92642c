"""Many accounts in one deployment, through a real intake, worker and beat: three Bandwidth accounts
and two Twilio accounts from a registry file, two buckets (one reached by AssumeRole), each item
archived in its account's bucket and prefix with its account's credentials; one account's problem
(a revoked secret, a bucket denying access) pauses that account only; an account added to the
file is served without a restart."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from sqlalchemy import func, select

from archiver.db.migrate import upgrade
from archiver.db.models import ArchivedObject, ArchiveItem, ItemState, ProviderAccount
from archiver.db.session import Database
from archiver.local.devstack import LOCAL_AWS, LocalStack
from archiver.local.supervisor import bin_path, free_port, wait_until
from tests.support.private_services import PrivateRedis
from tests.support.stack import (
    SECRETS,
    TEST_PIPELINE_ENV,
    SharedClock,
    Simulator,
    new_postgres_database,
    start_s3_fault_proxy,
)

pytestmark = pytest.mark.e2e


BANDWIDTH = ("9900001", "9900002", "9900003")
TWILIO = ("AC" + "a1" * 16, "AC" + "b2" * 16)
TWILIO_KEYS = {TWILIO[0]: "SK" + "a1" * 16, TWILIO[1]: "SK" + "b2" * 16}
LOCAL_KEYS = {
    "aws_access_key_id": LOCAL_AWS["AWS_ACCESS_KEY_ID"],
    "aws_secret_access_key": LOCAL_AWS["AWS_SECRET_ACCESS_KEY"],
}
ROLE = "arn:aws:iam::123456789012:role/customer-two-archiver"
#: Where each account's archive goes: (bucket, prefix).
TARGETS = {
    "9900001": ("bucket-one", "tenant-1"),
    "9900002": ("bucket-two", "tenant-2"),  # by AssumeRole with an external id
    "9900003": ("bucket-three", "tenant-3"),
    TWILIO[0]: ("bucket-one", "twilio-a"),
    TWILIO[1]: ("bucket-two", "twilio-b"),
}


@dataclass
class AccountsStack:
    stack: LocalStack
    db: Database
    secrets: Path
    proxy_url: str
    clock: SharedClock
    admin: httpx.Client

    @property
    def simulator(self) -> Simulator:
        return Simulator(self.admin)

    def proxy(self, **body: Any) -> dict[str, Any]:
        response = (
            httpx.put(f"{self.proxy_url}/__faults__", json=body)
            if body
            else httpx.get(f"{self.proxy_url}/__faults__")
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


def secret(d: Path, name: str, value: str) -> str:
    path = d / name
    path.write_text(value + "\n")
    return str(path)


def client_secret(account: str) -> str:
    return f"client-SECRET-{account}"


def hook_password(account: str) -> str:
    return f"hook-SECRET-{account}"


def registry_text(d: Path, bandwidth: tuple[str, ...] = BANDWIDTH) -> str:
    parts = ['[defaults.storage]\nbucket = "bucket-one"\n']
    for account in bandwidth:
        bucket, prefix = TARGETS.get(account, ("bucket-one", f"tenant-{account[-1]}"))
        role = f'role_arn = "{ROLE}"\nexternal_id = "customer-two-x7"\n' if account == "9900002" else ""
        if account == "9900003":  # a locked bucket, every object encrypted with the customer's key
            role = f'object_lock = true\nkms_key_id = "{(d / "kms-key-id").read_text()}"\n'
        parts.append(
            f'[[bandwidth]]\naccount_id = "{account}"\nclient_id = "client-{account}"\n'
            f'client_secret = {{ file = "{d}/client-{account}" }}\n'
            f'callback_username = "hooks-{account}"\n'
            f'callback_password = {{ file = "{d}/hook-{account}" }}\n'
            f'[bandwidth.storage]\nbucket = "{bucket}"\nprefix = "{prefix}"\n{role}'
        )
    for sid in TWILIO:
        bucket, prefix = TARGETS[sid]
        parts.append(
            f'[[twilio]]\naccount_sid = "{sid}"\napi_key_sid = "{TWILIO_KEYS[sid]}"\n'
            f'api_key_secret = {{ file = "{d}/key-{sid}" }}\nauth_token = {{ file = "{d}/token-{sid}" }}\n'
            f'[twilio.storage]\nbucket = "{bucket}"\nprefix = "{prefix}"\n'
        )
    return "\n".join(parts)


def add_simulator_account(admin: httpx.Client, account: str) -> None:
    admin.post(
        "/admin/bandwidth/clients",
        json={
            "client_id": f"client-{account}",
            "client_secret": client_secret(account),
            "accounts": [account],
        },
    ).raise_for_status()


@pytest.fixture(scope="module")
def accounts_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccountsStack]:
    workdir = tmp_path_factory.mktemp("accounts")
    secrets = workdir / "account-secrets"
    secrets.mkdir()
    for account in (*BANDWIDTH, "9900004"):
        secret(secrets, f"client-{account}", client_secret(account))
        secret(secrets, f"hook-{account}", hook_password(account))
    for sid in TWILIO:
        secret(secrets, f"key-{sid}", f"key-SECRET-{sid[-4:]}")
        secret(secrets, f"token-{sid}", f"token-SECRET-{sid[-4:]}")
    registry = workdir / "accounts.toml"
    clock_file = workdir / "clock-offset"
    clock_file.write_text("0")
    proxy_port = free_port()
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    redis_server = PrivateRedis(workdir)
    with new_postgres_database("archiver_accounts") as database_url:
        upgrade(database_url)
        stack = LocalStack(
            workdir=workdir,
            database_url=database_url,
            broker_url="",
            intake_password=SECRETS["intake_password"],
            client_secret=SECRETS["bandwidth_client_secret"],
            twilio_auth_token=SECRETS["twilio_auth_token"],
            twilio_api_key_secret=SECRETS["twilio_api_key_secret"],
            bucket="bucket-one",
            accounts_file=registry,
        )
        database = Database(database_url)
        try:
            redis_server.start()
            stack.broker_url = redis_server.url(0)
            stack.extra_env = {
                **TEST_PIPELINE_ENV,
                "ARCHIVER_CLOCK_OFFSET_FILE": str(clock_file),
                "ARCHIVER_S3_ENDPOINT_URL": proxy_url,  # S3 and STS, through the proxy that can deny
                "ARCHIVER_ACCOUNTS_RELOAD_SECONDS": "1",
                "ARCHIVER_ACCOUNT_PAUSE_SECONDS": "1",
                "ARCHIVER_ACCOUNT_PAUSE_MAX_SECONDS": "2",
            }
            stack.start_s3()
            s3 = stack.object_store().client
            s3.create_bucket(Bucket="bucket-two")
            s3.create_bucket(Bucket="bucket-three", ObjectLockEnabledForBucket=True)
            s3.put_object_lock_configuration(
                Bucket="bucket-three",
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
                },
            )
            kms = boto3.client("kms", region_name="us-east-1", endpoint_url=stack.s3_url, **LOCAL_KEYS)
            (secrets / "kms-key-id").write_text(
                kms.create_key(Description="customer three")["KeyMetadata"]["KeyId"]
            )
            registry.write_text(registry_text(secrets))
            start_s3_fault_proxy(stack, proxy_port)
            stack.start_simulator()
            with stack.admin() as admin:
                for account in BANDWIDTH:
                    add_simulator_account(admin, account)
                for sid in TWILIO:
                    admin.post(
                        "/admin/twilio/accounts",
                        json={"account_sid": sid, "auth_token": f"token-SECRET-{sid[-4:]}",
                              "api_keys": {TWILIO_KEYS[sid]: f"key-SECRET-{sid[-4:]}"}},
                    ).raise_for_status()  # fmt: skip
                stack.start_intake()
                stack.start_worker(concurrency=4)
                stack.start_beat()
                yield AccountsStack(stack, database, secrets, proxy_url, SharedClock(clock_file), admin)
        finally:
            database.dispose()
            stack.stop()
            redis_server.stop()


# --- helpers -----------------------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def realtime_for(s: AccountsStack, account: str, count: int) -> list[str]:
    created = s.simulator.create_realtime(count, account_id=account)
    return [t["transcriptionId"] for t in created]


def announce_realtime(s: AccountsStack, account: str, ids: list[str]) -> None:
    delivered = s.simulator.send_webhooks(
        event="available",
        ids=ids,
        intake_url=f"{s.stack.intake_url}/webhooks/bandwidth/{account}",
        username=f"hooks-{account}",
        password=hook_password(account),
    )
    assert [d["status"] for d in delivered] == [204] * len(ids), delivered


def twilio_transcripts_for(s: AccountsStack, sid: str, count: int) -> list[str]:
    response = s.admin.post(
        "/admin/twilio/transcripts",
        json={"account_sid": sid, "count": count, "sentences": 3, "operator_results": 0,
              "queued_seconds": 0, "processing_seconds": 0, "media_duration": 1},
    )  # fmt: skip
    response.raise_for_status()
    sids = [t["sid"] for t in response.json()["created"]]
    delivered = s.simulator.send_webhooks(
        event="twilio", ids=sids, intake_url=f"{s.stack.intake_url}/webhooks/twilio/{sid}"
    )
    assert [d["status"] for d in delivered] == [204] * count, delivered
    return sids


def states(s: AccountsStack, ids: list[str]) -> dict[str, str]:
    with s.db.sessionmaker() as session:
        rows = session.execute(
            select(ArchiveItem.provider_id, ArchiveItem.state).where(ArchiveItem.provider_id.in_(ids))
        ).all()
    return {provider_id: state for provider_id, state in rows}


def wait_deleted(s: AccountsStack, ids: list[str], timeout: float = 120.0) -> None:
    wait_until(
        lambda: list(states(s, ids).values()).count(ItemState.DELETION_REQUESTED) == len(ids),
        timeout,
        f"{len(ids)} items deletion_requested (now {states(s, ids)})",
        interval=0.5,
    )


def objects_of(s: AccountsStack, ids: list[str]) -> list[tuple[str, str, str]]:
    """(provider id, bucket, key) of every archived object of these items."""
    with s.db.sessionmaker() as session:
        rows = session.execute(
            select(ArchiveItem.provider_id, ArchivedObject.s3_bucket, ArchivedObject.s3_key)
            .join(ArchivedObject, ArchivedObject.item_id == ArchiveItem.id)
            .where(ArchiveItem.provider_id.in_(ids))
        ).all()
    return [(p, b, k) for p, b, k in rows]


def account_row(s: AccountsStack, account: str) -> ProviderAccount | None:
    with s.db.sessionmaker() as session:
        return session.scalars(
            select(ProviderAccount).where(ProviderAccount.account_id == account)
        ).one_or_none()


def wait_paused(s: AccountsStack, account: str, reason: str) -> ProviderAccount:
    def paused() -> bool:
        row = account_row(s, account)
        return row is not None and row.state == "paused" and row.pause_reason == reason

    wait_until(paused, 30, f"{account} paused ({reason})")
    row = account_row(s, account)
    assert row is not None
    return row


def count_items(s: AccountsStack) -> int:
    with s.db.sessionmaker() as session:
        return int(session.scalar(select(func.count()).select_from(ArchiveItem)) or 0)


# --- the tests ---------------------------------------------------------------------------------------


def test_every_item_lands_in_its_accounts_bucket_and_prefix_with_its_accounts_credentials(accounts_stack):
    s = accounts_stack
    ids = {account: realtime_for(s, account, 4) for account in BANDWIDTH}
    for account, created in ids.items():
        announce_realtime(s, account, created)
    ids |= {sid: twilio_transcripts_for(s, sid, 2) for sid in TWILIO}
    everything = [i for created in ids.values() for i in created]
    wait_deleted(s, everything)

    owner = {i: account for account, created in ids.items() for i in created}
    stored = objects_of(s, everything)
    assert {p for p, _, _ in stored} == set(everything)
    for provider_id, bucket, key in stored:
        account = owner[provider_id]
        expected_bucket, prefix = TARGETS[account]
        assert bucket == expected_bucket and key.startswith(f"{prefix}/") and f"/{account}/" in key, key
        s.stack.object_store().client.head_object(Bucket=bucket, Key=key)  # really there
    # Every provider request carried its own account's credential, as the simulator saw it.
    audit = s.simulator.audit(tokens=False)
    for account in BANDWIDTH:
        mine = [e for e in audit if f"/accounts/{account}/" in e["path"]]
        assert mine and {e["credential"] for e in mine} == {f"client-{account}"}
        assert {e["status"] for e in mine} <= {200, 204}
    for sid in TWILIO:
        paths = [e for e in audit if any(f"/v2/Transcripts/{t}" in e["path"] for t in ids[sid])]
        assert paths and {e["credential"] for e in paths} == {TWILIO_KEYS[sid]}
    # The role was assumed (through the proxy, to moto's STS) for the customer's bucket only.
    assert s.proxy()["assume_role"] >= 1


def test_cross_account_credentials_and_signatures_are_refused_and_nothing_is_stored(accounts_stack):
    s = accounts_stack
    before = count_items(s)
    [t1] = s.simulator.create_realtime(1, account_id="9900001")
    intake = s.stack.intake_url
    attempts = {
        # account 1's event, on account 1's path, with account 2's credentials
        ("9900001", "9900002"): 401,
        # account 1's event, on account 2's path, with account 2's credentials
        ("9900002", "9900002"): 422,
        # an account not in the registry, with account 1's credentials: as wrong credentials are
        ("9900009", "9900001"): 401,
    }
    for (path_account, credentials_of), status in attempts.items():
        delivered = s.simulator.send_webhooks(
            event="available", ids=[t1["transcriptionId"]],
            intake_url=f"{intake}/webhooks/bandwidth/{path_account}",
            username=f"hooks-{credentials_of}", password=hook_password(credentials_of),
        )  # fmt: skip
        assert [d["status"] for d in delivered] == [status], (path_account, credentials_of, delivered)
    # The path without an account is not served with a registry.
    answer = httpx.post(f"{intake}/webhooks/bandwidth", json={},
                        headers={"Authorization": basic("hooks-9900001", hook_password("9900001"))})  # fmt: skip
    assert answer.status_code == 404 and answer.json()["error"] == "per_account_path"
    # Twilio: account A's transcript signed with account B's token on A's path; on B's path.
    response = s.admin.post(
        "/admin/twilio/transcripts",
        json={"account_sid": TWILIO[0], "count": 1, "queued_seconds": 0, "processing_seconds": 0},
    )
    response.raise_for_status()
    [transcript] = response.json()["created"]
    b_token = f"token-SECRET-{TWILIO[1][-4:]}"
    for path_sid, status in ((TWILIO[0], 403), (TWILIO[1], 422)):
        delivered = s.simulator.send_webhooks(
            event="twilio", ids=[transcript["sid"]], signing_token=b_token,
            intake_url=f"{intake}/webhooks/twilio/{path_sid}",
        )  # fmt: skip
        assert [d["status"] for d in delivered] == [status], (path_sid, delivered)
    assert count_items(s) == before


def test_one_revoked_secret_pauses_only_its_account_and_fixing_it_completes_the_rest(accounts_stack):
    s = accounts_stack
    # Account 3's secret is rotated at the provider; our file still holds the old one.
    s.admin.put(
        "/admin/bandwidth/oauth", json={"client_id": "client-9900003", "client_secret": "rotated-SECRET-3"}
    ).raise_for_status()
    s.admin.post("/admin/bandwidth/oauth/revoke", json={"client_id": "client-9900003"}).raise_for_status()
    ids = {account: realtime_for(s, account, 3) for account in BANDWIDTH}
    for account, created in ids.items():
        announce_realtime(s, account, created)
    wait_deleted(s, ids["9900001"] + ids["9900002"])
    wait_paused(s, "9900003", "credentials")
    assert set(states(s, ids["9900003"]).values()) == {ItemState.PENDING}
    # The operator writes the new secret into the file: the pause's next check reads it again.
    secret(s.secrets, "client-9900003", "rotated-SECRET-3")
    wait_deleted(s, ids["9900003"])
    with s.db.sessionmaker() as session:
        attempts = session.scalars(
            select(ArchiveItem.attempts).where(ArchiveItem.provider_id.in_(ids["9900003"]))
        ).all()
        dead = session.scalar(
            select(func.count()).select_from(ArchiveItem).where(ArchiveItem.state == ItemState.DEAD)
        )
    assert set(attempts) == {0} and dead == 0
    row = account_row(s, "9900003")
    assert row is not None and row.state == "active"


def test_a_bucket_denying_access_pauses_only_its_account_until_allowed_again(accounts_stack):
    s = accounts_stack
    s.proxy(deny_buckets=["bucket-three"])
    try:
        ids = {account: realtime_for(s, account, 3) for account in BANDWIDTH}
        for account, created in ids.items():
            announce_realtime(s, account, created)
        wait_deleted(s, ids["9900001"] + ids["9900002"])
        row = wait_paused(s, "9900003", "storage")
        assert "AccessDenied" in (row.message or "")
        assert ItemState.DELETION_REQUESTED not in set(states(s, ids["9900003"]).values())
        deletes = [
            e for e in s.simulator.audit(method="DELETE") if any(i in e["path"] for i in ids["9900003"])
        ]
        assert deletes == []  # nothing deleted at the provider while the copy cannot be made
    finally:
        s.proxy(deny_buckets=[])
    wait_deleted(s, ids["9900003"])
    with s.db.sessionmaker() as session:
        dead = session.scalar(
            select(func.count()).select_from(ArchiveItem).where(ArchiveItem.state == ItemState.DEAD)
        )
    assert dead == 0


def test_an_account_added_to_the_registry_is_served_without_a_restart(accounts_stack):
    s = accounts_stack
    add_simulator_account(s.admin, "9900004")
    [t] = s.simulator.create_realtime(1, account_id="9900004")
    refused = s.simulator.send_webhooks(
        event="available", ids=[t["transcriptionId"]],
        intake_url=f"{s.stack.intake_url}/webhooks/bandwidth/9900004",
        username="hooks-9900004", password=hook_password("9900004"),
    )  # fmt: skip
    assert [d["status"] for d in refused] == [401]  # not in the registry yet
    registry = s.stack.accounts_file
    assert registry is not None
    registry.write_text(registry_text(s.secrets, (*BANDWIDTH, "9900004")))
    time.sleep(1.5)  # the intake looks at the file every second (ARCHIVER_ACCOUNTS_RELOAD_SECONDS)
    announce_realtime(s, "9900004", [t["transcriptionId"]])
    wait_deleted(s, [t["transcriptionId"]])
    [(_, bucket, key)] = objects_of(s, [t["transcriptionId"]])
    assert bucket == "bucket-one" and key.startswith("tenant-4/bandwidth/9900004/")


def test_the_assumed_roles_session_expiring_mid_run_is_renewed_and_nothing_fails(accounts_stack):
    s = accounts_stack
    first = realtime_for(s, "9900002", 3)
    announce_realtime(s, "9900002", first)
    wait_deleted(s, first)
    assumed = s.proxy()["assume_role"]
    # The session lasts an hour (role_session_seconds): past it, on the worker's clock.
    s.clock.advance(3700)
    s.admin.post("/admin/clock/advance", json={"seconds": 3700}).raise_for_status()
    later = realtime_for(s, "9900002", 3)
    announce_realtime(s, "9900002", later)
    wait_deleted(s, later)
    assert s.proxy()["assume_role"] > assumed
    assert {b for _, b, _ in objects_of(s, later)} == {"bucket-two"}


def archiver_cli(s: AccountsStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_path("archiver"), *args],
        env={**os.environ, **s.stack.env()},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_accounts_list_and_check_show_each_accounts_credentials_bucket_lock_and_state(accounts_stack):
    s = accounts_stack
    listed = json.loads(archiver_cli(s, "accounts", "list", "--json").stdout)
    by_id = {a["account_id"]: a for a in listed["accounts"]}
    assert set(BANDWIDTH) | set(TWILIO) <= set(by_id)
    assert by_id["9900002"]["role"] == ROLE and by_id["9900003"]["object_lock"] is True
    assert by_id[TWILIO[1]]["credential"] == TWILIO_KEYS[TWILIO[1]]
    checked = archiver_cli(s, "accounts", "check", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    results = {r["account_id"]: r for r in json.loads(checked.stdout)}
    assert all(r["ok"] for r in results.values())
    lock = next(c for c in results["9900003"]["checks"] if c["check"] == "object lock")
    assert lock["detail"] == "GOVERNANCE 1 days"
    bucket = next(c for c in results["9900003"]["checks"] if c["check"] == "bucket")
    assert "SSE-KMS" in bucket["detail"] and "tenant-3/.archiver-check/" in bucket["detail"]
    # A bucket that refuses us, and credentials the provider refuses: named, exit status 1.
    s.proxy(deny_buckets=["bucket-three"])
    try:
        refused = archiver_cli(s, "accounts", "check", "bandwidth/9900003")
    finally:
        s.proxy(deny_buckets=[])
    assert refused.returncode == 1 and "FAIL bucket" in refused.stdout and "AccessDenied" in refused.stdout
    s.admin.put(
        "/admin/bandwidth/oauth", json={"client_id": "client-9900001", "client_secret": "other-SECRET"}
    )
    try:
        refused = archiver_cli(s, "accounts", "check", "9900001")
    finally:
        s.admin.put(
            "/admin/bandwidth/oauth",
            json={"client_id": "client-9900001", "client_secret": client_secret("9900001")},
        )
    assert refused.returncode == 1 and "FAIL credentials" in refused.stdout
    assert client_secret("9900001") not in refused.stdout + refused.stderr
    assert archiver_cli(s, "accounts", "check", "9900077").returncode == 2


def test_status_metrics_deletion_report_and_backfill_work_per_account(accounts_stack):
    s = accounts_stack
    # A backfill without --account: one run per Bandwidth account, each listing with its credentials.
    since = "2026-11-20T00:00:00Z"
    made = {}
    for account in ("9900001", "9900002"):
        response = s.admin.post(
            "/admin/recordings",
            json={"account_id": account, "count": 2, "start_time": "2026-11-20T10:00:00Z", "spread_seconds": 60,
                  "duration": 1, "with_transcription": False},
        )  # fmt: skip
        response.raise_for_status()
        made[account] = [r["recordingId"] for r in response.json()["created"]]
    ran = archiver_cli(s, "backfill", "bandwidth", "--since", since, "--until", "2026-11-21T00:00:00Z",
                       "--no-realtime", "--json")  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    finals = {f["scope"]: f for f in json.loads(ran.stdout)}
    assert set(BANDWIDTH) <= set(finals) <= {*BANDWIDTH, "9900004"}  # 9900004: if added by another test
    assert finals["9900001"]["found"] == 2 and finals["9900002"]["found"] == 2
    wait_deleted(s, made["9900001"] + made["9900002"])
    lists = [e for e in s.simulator.audit(method="GET") if e["path"].endswith("/recordings")]
    assert {(e["path"].split("/")[4], e["credential"]) for e in lists} >= {
        ("9900001", "client-9900001"),
        ("9900002", "client-9900002"),
    }
    # Status: items per account.
    status = json.loads(archiver_cli(s, "status", "--json").stdout)
    assert status["items_by_account"]["bandwidth/9900001"]["deletion_requested"] >= 2
    # The deletion report of one account holds that account's deletions only.
    report = json.loads(
        archiver_cli(s, "deletions", "report", "--format", "json", "--account", "9900002").stdout
    )
    assert report and {r["account_id"] for r in report} == {"9900002"}
    assert set(made["9900002"]) <= {r["provider_id"] for r in report}
    # Metrics: per-account series, bounded (active and dead per account; paused accounts).
    s.proxy(deny_buckets=["bucket-three"])
    try:
        ids = realtime_for(s, "9900003", 1)
        announce_realtime(s, "9900003", ids)
        wait_paused(s, "9900003", "storage")
        metrics = ""
        deadline = time.monotonic() + 30
        while 'archiver_account_paused{account="9900003"' not in metrics and time.monotonic() < deadline:
            time.sleep(1)
            metrics = httpx.get(s.stack.metrics_url).text
    finally:
        s.proxy(deny_buckets=[])
    assert 'archiver_account_paused{account="9900003",provider="bandwidth",reason="storage"} 1.0' in metrics
    assert 'archiver_account_items{account="9900003",provider="bandwidth",state="active"}' in metrics
    wait_deleted(s, ids)


def test_one_accounts_429s_hold_back_that_account_only(accounts_stack):
    s = accounts_stack
    limits = {"limits": {"bandwidth:9900001": {"rate": 0.5, "burst": 1}}}
    s.admin.put("/admin/rate-limits", json=limits).raise_for_status()
    try:
        throttled = realtime_for(s, "9900001", 4)
        free = realtime_for(s, "9900002", 8)
        since = max((e["seq"] for e in s.simulator.audit()), default=0)
        announce_realtime(s, "9900001", throttled)
        announce_realtime(s, "9900002", free)
        wait_deleted(s, free, timeout=60)
        audit = [e for e in s.simulator.audit(tokens=False) if e["seq"] > since]
        limited = {e["path"].split("/")[4] for e in audit if e["status"] == 429}
        assert limited == {"9900001"}  # only the throttled account was answered 429
    finally:
        s.admin.put("/admin/rate-limits", json={"limits": {}}).raise_for_status()
    wait_deleted(s, throttled)
    with s.db.sessionmaker() as session:
        attempts = session.scalars(
            select(ArchiveItem.attempts).where(ArchiveItem.provider_id.in_(throttled))
        ).all()
    assert set(attempts) == {0}  # a 429 is the provider asking us to wait, not the item's fault


def test_a_removed_account_gets_no_work_keeps_its_items_and_resumes_when_it_comes_back(accounts_stack):
    s = accounts_stack
    registry = s.stack.accounts_file
    assert registry is not None
    everyone = (*BANDWIDTH, "9900004") if "9900004" in registry.read_text() else BANDWIDTH
    # Items of account 3 held up (its bucket refuses us), then the account leaves the registry.
    s.proxy(deny_buckets=["bucket-three"])
    try:
        waiting = realtime_for(s, "9900003", 2)
        announce_realtime(s, "9900003", waiting)
        wait_paused(s, "9900003", "storage")
        registry.write_text(registry_text(s.secrets, tuple(a for a in everyone if a != "9900003")))
    finally:
        s.proxy(deny_buckets=[])
    row = wait_paused(s, "9900003", "removed")  # its next check finds it gone from the registry
    assert "not in the accounts registry" in (row.message or "")
    [late] = s.simulator.create_realtime(1, account_id="9900003")
    refused = s.simulator.send_webhooks(
        event="available", ids=[late["transcriptionId"]],
        intake_url=f"{s.stack.intake_url}/webhooks/bandwidth/9900003",
        username="hooks-9900003", password=hook_password("9900003"),
    )  # fmt: skip
    assert [d["status"] for d in refused] == [401]  # no new work for it
    status = json.loads(archiver_cli(s, "status", "--json").stdout)
    assert status["items_by_account"]["bandwidth/9900003"].get("pending", 0) >= 2  # still visible
    assert set(states(s, waiting).values()) == {ItemState.PENDING}
    # Back in the registry: its items resume and complete; nothing was dead-lettered.
    registry.write_text(registry_text(s.secrets, everyone))
    wait_deleted(s, waiting)
    row = account_row(s, "9900003")
    assert row is not None and row.state == "active"


def test_credentials_changed_while_a_body_arrives_refuse_the_event(accounts_stack):
    """A webhook whose body takes seconds is judged by the registry as it is once the body is in:
    its account's callback password rotated meanwhile, it is refused and nothing is stored."""
    s = accounts_stack
    call = "c-11111111-2222-3333-4444-555555555555"
    body = json.dumps({
        "eventType": "realTimeTranscriptionAvailable", "eventTime": "2026-12-01T10:00:02.489Z",
        "accountId": "9900001", "callId": call, "startTime": "2026-12-01T10:00:00.000Z",
        "realTimeTranscription": {"id": "t-11111111-aaaa-bbbb-cccc-dddddddddddd", "status": "available",
                                  "tracks": ["inbound"], "completedTime": "2026-12-01T10:00:02.489Z"},
    }).encode()  # fmt: skip
    before = count_items(s)
    port = int(s.stack.intake_url.rsplit(":", 1)[1])
    auth = basic("hooks-9900001", hook_password("9900001"))
    head = (f"POST /webhooks/bandwidth/9900001 HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            # The intake has just looked at the registry (this refused request), so it looks again
            # only after ARCHIVER_ACCOUNTS_RELOAD_SECONDS: the credentials are checked with the old
            # password when the headers come, and the rotation is seen once the body is in.
            httpx.post(f"{s.stack.intake_url}/webhooks/bandwidth/9900001", content=b"{}")
            sock.sendall(head + body[:20])
            time.sleep(0.3)
            secret(s.secrets, "hook-9900001", "rotated-hook-SECRET-1")
            time.sleep(1.5)  # past ARCHIVER_ACCOUNTS_RELOAD_SECONDS
            sock.sendall(body[20:])
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert count_items(s) == before
    finally:
        secret(s.secrets, "hook-9900001", hook_password("9900001"))
        time.sleep(1.5)
