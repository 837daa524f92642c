"""The accounts registry: what a file may say, what each error names, the single-account
environment as a registry, the intake's choice of account, and reloading on change."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from archiver.accounts import (
    ANY_ACCOUNT,
    Accounts,
    AccountsFileError,
    load_registry,
    registry_from_file,
    registry_from_settings,
)
from archiver.core.config import Settings
from archiver.intake.auth import bandwidth_account, twilio_account
from archiver.intake.untrusted import EventRejected

SID_A = "AC" + "a" * 32
SID_B = "AC" + "b" * 32
KEY = "SK" + "1" * 32


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, s3_bucket="env-bucket", s3_prefix="env/prefix", **values)


def write(tmp_path: Path, text: str, name: str = "accounts.toml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in {
        "bw1": "s3cret-one\n",
        "bw2": "s3cret-two",
        "hook": "hook-pass",
        "tok": "twilio-tok",
    }.items():
        (tmp_path / name).write_text(value)
    monkeypatch.setenv("HOOK2_PASSWORD", "hook-two-pass")
    return tmp_path


def two_bandwidth_one_twilio(d: Path) -> str:
    return f"""
        [defaults]
        deletion_policy = "delete_media"
        [defaults.storage]
        bucket = "shared-archive"

        [[bandwidth]]
        account_id = "9900001"
        client_id = "client-1"
        client_secret = {{ file = "{d}/bw1" }}
        callback_username = "hooks-1"
        callback_password = {{ file = "{d}/hook" }}
        requests_per_second = 7

        [[bandwidth]]
        account_id = "9900002"
        client_id = "client-2"
        client_secret = {{ file = "{d}/bw2" }}
        callback_username = "hooks-2"
        callback_password = {{ env = "HOOK2_PASSWORD" }}
        deletion_policy = "archive_only"
        [bandwidth.storage]
        bucket = "customer-b"
        prefix = "/calls/"
        role_arn = "arn:aws:iam::123456789012:role/archiver"
        external_id = "customer-b-7f3e"
        kms_key_id = "alias/customer-b"

        [[twilio]]
        account_sid = "{SID_A}"
        api_key_sid = "{KEY}"
        api_key_secret = {{ file = "{d}/bw2" }}
        auth_token = {{ file = "{d}/tok" }}
        """


def test_a_registry_file_gives_each_account_its_credentials_bucket_and_rules(secrets: Path, tmp_path: Path):
    registry = registry_from_file(write(tmp_path, two_bandwidth_one_twilio(secrets)), settings())
    one, two = registry.bandwidth["9900001"], registry.bandwidth["9900002"]
    assert (one.client_id, one.client_secret and one.client_secret.get()) == ("client-1", "s3cret-one")
    assert (
        one.client_secret is not None and one.client_secret.path == f"{secrets}/bw1"
    )  # read again if refused
    assert two.callback_password is not None and two.callback_password.get() == "hook-two-pass"
    assert (one.storage.bucket, one.storage.prefix, one.deletion_policy) == (
        "shared-archive",
        "env/prefix",
        "delete_media",
    )
    assert (two.storage.bucket, two.storage.prefix, two.deletion_policy) == (
        "customer-b",
        "calls",
        "archive_only",
    )
    assert two.storage.role_arn and two.storage.external_id == "customer-b-7f3e"
    assert one.requests_per_second == 7 and two.requests_per_second is None
    assert registry.twilio[SID_A].signing_tokens() == ["twilio-tok"]
    assert registry.bandwidth_account("9900003") is None  # a file names its accounts: no wildcard
    assert registry.named("bandwidth") == ["9900001", "9900002"]
    assert "s3cret" not in repr(registry)
    assert one.fingerprint() != two.fingerprint()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda t: t.replace('client_secret = { file = "{d}/bw1" }', 'client_secret = "inline"'),
         ["bandwidth account 9900001", "client_secret", "never written inline"]),
        (lambda t: t.replace('"9900002"', '"99-02"'), ["bandwidth account 99-02", "account_id"]),
        (lambda t: t.replace('"9900002"', '"9900001"'), ["bandwidth account 9900001", "listed twice"]),
        (lambda t: t.replace("HOOK2_PASSWORD", "NOT_SET_ANYWHERE"),
         ["bandwidth account 9900002", "callback_password", "env:NOT_SET_ANYWHERE"]),
        (lambda t: t.replace("requests_per_second = 7", "requests_per_second = -1"),
         ["bandwidth account 9900001", "requests_per_second"]),
        (lambda t: t.replace('external_id = "customer-b-7f3e"', 'external_ids = "x"'),
         ["bandwidth account 9900002", "storage.external_ids", "Extra inputs"]),
        (lambda t: t.replace('api_key_secret = { file = "{d}/bw2" }', ""),
         [f"twilio account {SID_A}", "api_key_sid and api_key_secret go together"]),
        (lambda t: t.replace('role_arn = "arn:aws:iam::123456789012:role/archiver"', 'role_arn = "archiver"'),
         ["bandwidth account 9900002", "storage.role_arn"]),
    ],
)  # fmt: skip
def test_every_error_names_the_file_the_account_and_the_field(secrets, tmp_path, change, named):
    template = two_bandwidth_one_twilio(Path("{d}")).replace("{d}", "{d}")
    text = change(template).replace("{d}", str(secrets))
    path = write(tmp_path, text)
    with pytest.raises(AccountsFileError) as refused:
        registry_from_file(path, settings())
    message = str(refused.value)
    assert message.startswith(f"accounts file {path}: ")
    for part in named:
        assert part in message
    assert "s3cret" not in message


def test_a_missing_file_bad_toml_and_an_empty_registry_are_clear(tmp_path: Path):
    with pytest.raises(AccountsFileError, match="cannot read"):
        registry_from_file(str(tmp_path / "absent.toml"), settings())
    with pytest.raises(AccountsFileError, match="not valid TOML"):
        registry_from_file(write(tmp_path, "[[bandwidth]\n"), settings())
    with pytest.raises(AccountsFileError, match="no \\[\\[bandwidth\\]\\] or \\[\\[twilio\\]\\] account"):
        registry_from_file(write(tmp_path, "[defaults]\n"), settings())
    with pytest.raises(AccountsFileError, match="unknown table"):
        registry_from_file(write(tmp_path, "[[bandwith]]\naccount_id = '1'\n"), settings())


def test_the_single_account_environment_is_a_one_account_registry():
    env = settings(
        bandwidth_client_id="cid", bandwidth_client_secret="csecret", intake_username="u", intake_password="hook-pw",
        twilio_account_sid=SID_B, twilio_auth_token="tok-b",
    )  # fmt: skip
    registry = registry_from_settings(env)
    assert not registry.from_file and registry.named("bandwidth") is None  # any account id
    assert registry.bandwidth_account("1234567") is registry.bandwidth[ANY_ACCOUNT]
    assert registry.twilio_account(SID_B) is not None and registry.twilio_account(SID_A) is None
    named = registry_from_settings(env.model_copy(update={"bandwidth_account_id": "9900000"}))
    assert named.named("bandwidth") == ["9900000"] and named.bandwidth_account("1234567") is None


def test_a_registry_file_beside_the_single_account_settings_is_refused(secrets, tmp_path):
    path = write(tmp_path, two_bandwidth_one_twilio(secrets))
    with pytest.raises(AccountsFileError, match="unset ARCHIVER_BANDWIDTH_CLIENT_ID"):
        load_registry(settings(accounts_file=path, bandwidth_client_id="cid"))
    assert load_registry(settings(accounts_file=path)).from_file


def test_the_intake_takes_the_account_from_the_path_and_only_that_one(secrets, tmp_path):
    registry = registry_from_file(write(tmp_path, two_bandwidth_one_twilio(secrets)), settings())
    assert bandwidth_account(registry, "9900002").callback_username == "hooks-2"
    assert twilio_account(registry, SID_A).account_id == SID_A
    # An account not served is answered as wrong credentials are: no answer tells which ids exist.
    for provider, account, status in (
        ("bandwidth", "9900003", 401),
        ("bandwidth", "../x", 401),
        ("twilio", SID_B, 403),
        (None, None, 404),  # the path without an account: not served with a registry file
    ):
        with pytest.raises(EventRejected) as refused:
            (twilio_account if provider == "twilio" else bandwidth_account)(registry, account)
        assert refused.value.status == status


def test_two_accounts_with_the_same_webhook_credentials_are_refused(secrets, tmp_path):
    """Each would accept the other's events on its path."""
    text = two_bandwidth_one_twilio(secrets).replace(
        'callback_password = { env = "HOOK2_PASSWORD" }', f'callback_password = {{ file = "{secrets}/hook" }}'
    )
    text = text.replace('callback_username = "hooks-2"', 'callback_username = "hooks-1"')
    with pytest.raises(AccountsFileError, match="9900001 and 9900002 have the same callback credentials"):
        registry_from_file(write(tmp_path, text), settings())
    prefix = two_bandwidth_one_twilio(secrets).replace('prefix = "/calls/"', 'prefix = "calls?x=1"')
    with pytest.raises(AccountsFileError, match=r"storage\.prefix"):
        registry_from_file(write(tmp_path, prefix), settings())


def test_a_changed_file_is_read_again_and_a_broken_one_keeps_the_last_good(secrets, tmp_path, caplog):
    path = write(tmp_path, two_bandwidth_one_twilio(secrets))
    now = [0.0]
    accounts = Accounts(settings(accounts_file=path), monotonic=lambda: now[0])
    assert accounts.current().named("bandwidth") == ["9900001", "9900002"]
    Path(path).write_text(Path(path).read_text().replace('"9900002"', '"9900005"'))
    assert accounts.current().named("bandwidth") == ["9900001", "9900002"]  # not looked at yet
    now[0] += 5
    assert accounts.current().named("bandwidth") == ["9900001", "9900005"] and accounts.generation == 1
    Path(path).write_text("[[bandwidth]\n")
    now[0] += 5
    assert accounts.current().named("bandwidth") == ["9900001", "9900005"]
    assert "not reloaded, the last good one stays in use" in caplog.text
    # A secret file it references, rotated in place, is a change too.
    Path(path).write_text(two_bandwidth_one_twilio(secrets))
    now[0] += 5
    accounts.current()
    (secrets / "hook").write_text("rotated-hook-pass")
    os.utime(secrets / "hook", (1, 1))
    now[0] += 5
    entry = accounts.current().bandwidth["9900001"]
    assert entry.callback_password is not None and entry.callback_password.get() == "rotated-hook-pass"
