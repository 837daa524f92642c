"""Each account's clients and storage (archiver/pipeline/tenants.py), and what tells an account's
storage problem from an item's (archiver/storage/objects.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from archiver.accounts import Accounts
from archiver.core.clock import SystemClock
from archiver.core.config import Settings
from archiver.pipeline.retry import PauseAccount, RetryPolicy
from archiver.pipeline.tenants import AccountClients, AccountUnknown
from archiver.storage.objects import kms_matches, storage_refused

ACCOUNTS = """
[defaults.storage]
bucket = "shared"
[[bandwidth]]
account_id = "{a}"
client_id = "client-{a}"
client_secret = {{ file = "{d}/secret" }}
callback_username = "hooks"
callback_password = {{ file = "{d}/secret" }}
[[bandwidth]]
account_id = "9900002"
client_id = "client-2"
client_secret = {{ file = "{d}/secret" }}
callback_username = "hooks-2"
callback_password = {{ file = "{d}/secret" }}
deletion_policy = "archive_only"
[bandwidth.storage]
bucket = "other"
prefix = "two"
kms_key_id = "arn:aws:kms:us-east-1:123456789012:key/1234abcd"
"""


@pytest.fixture
def tenants(tmp_path: Path) -> tuple[AccountClients, Path, list[float]]:
    (tmp_path / "secret").write_text("a-SECRET-value")
    path = tmp_path / "accounts.toml"
    path.write_text(ACCOUNTS.format(a="9900001", d=tmp_path))
    settings = Settings(_env_file=None, accounts_file=str(path), deletion_policy="delete")
    now = [0.0]
    accounts = Accounts(settings, monotonic=lambda: now[0])
    return AccountClients(settings, accounts, SystemClock(), None, None), path, now


def test_each_account_has_its_client_and_store_sharing_the_pool_and_s3_clients(tenants):
    clients, _path, _now = tenants
    one, two = clients.bandwidth("9900001"), clients.bandwidth("9900002")
    assert one is not two and one is clients.bandwidth("9900001")
    assert one.tokens._client_id == "client-9900001" and two.tokens._client_id == "client-2"
    store_one, store_two = clients.store("bandwidth", "9900001"), clients.store("bandwidth", "9900002")
    assert (store_one.bucket, store_one.prefix, store_one.kms_key_id) == ("shared", "", None)
    assert (store_two.bucket, store_two.prefix) == ("other", "two")
    assert store_two.write_args == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": store_two.kms_key_id}
    assert store_one.client is store_two.client  # one S3 client: same region, endpoint, no role
    assert clients.deletion_policy("bandwidth", "9900002") == "archive_only"
    assert clients.deletion_policy("bandwidth", "9900001") == "delete"
    clients.close()


def test_an_edited_entry_gets_new_clients_and_a_removed_account_none(tenants):
    clients, path, now = tenants
    before = clients.bandwidth("9900001")
    path.write_text(
        ACCOUNTS.format(a="9900001", d=path.parent).replace(
            'client_id = "client-9900001"', 'client_id = "new"'
        )
    )
    now[0] += 10
    after = clients.bandwidth("9900001")
    assert after is not before and after.tokens._client_id == "new"
    path.write_text(ACCOUNTS.format(a="9900005", d=path.parent))
    now[0] += 10
    with pytest.raises(AccountUnknown):
        clients.bandwidth("9900001")
    decision = RetryPolicy(5, 1, 10).decide(AccountUnknown("bandwidth", "9900001"), 0)
    assert isinstance(decision, PauseAccount) and decision.cause == "removed"


def s3_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"
    )


@pytest.mark.parametrize(
    ("error", "account_problem"),
    [
        (s3_error("AccessDenied", 403), True),
        (s3_error("NoSuchBucket", 404), True),
        (s3_error("ExpiredToken", 400), True),
        (s3_error("KMS.DisabledException", 400), True),
        (s3_error("403", 403), True),  # a HEAD refused: no body, no code but the status
        (NoCredentialsError(), True),
        (s3_error("PreconditionFailed", 412), False),
        (s3_error("NoSuchKey", 404), False),
        (s3_error("SlowDown", 503), False),
        (ValueError("x"), False),
    ],
)
def test_a_refused_bucket_pauses_the_account_an_item_error_does_not(error, account_problem):
    assert (storage_refused(error) is not None) == account_problem
    decision = RetryPolicy(5, 1, 10).decide(error, 0)
    assert isinstance(decision, PauseAccount) == account_problem
    if account_problem:
        assert decision.cause == "storage"


def test_sse_kms_is_verified_by_key_id_and_an_alias_only_as_sse_kms():
    arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd"
    head = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": arn}
    assert kms_matches(head, "1234abcd") and kms_matches(head, arn)
    assert not kms_matches(head, "99999999")
    assert not kms_matches({"ServerSideEncryption": "AES256"}, "1234abcd")
    assert kms_matches(head, "alias/customer") and not kms_matches({}, "alias/customer")
