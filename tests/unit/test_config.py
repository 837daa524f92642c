"""Settings: names, defaults, clear errors, masked secrets."""

from __future__ import annotations

import logging
import os
import subprocess

import pytest

from archiver.core.config import ConfigError, load_settings
from archiver.core.logging import SecretRedactingFilter
from archiver.local.supervisor import bin_path
from tests.support.stack import SPARE_REDIS_URL


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("ARCHIVER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return monkeypatch


def test_defaults(clean_env):
    settings = load_settings()
    assert settings.database_url == "sqlite:///archiver.db"
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.bandwidth_base_url == "https://voice.bandwidth.com/api/v2"
    assert settings.deletion_policy == "delete"
    assert settings.purge_delay_seconds == 48 * 3600


def test_env_file_is_read(clean_env, tmp_path):
    (tmp_path / ".env").write_text("ARCHIVER_S3_BUCKET=from-dotenv\nARCHIVER_S3_PREFIX=/a/b/\n")
    settings = load_settings()
    assert settings.s3_bucket == "from-dotenv"
    assert settings.s3_prefix == "a/b"


def test_postgres_urls_use_psycopg(clean_env):
    clean_env.setenv("ARCHIVER_DATABASE_URL", "postgresql://u:p@db/archive")
    assert load_settings().database_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ARCHIVER_MAX_ATTEMPTS", "many"),
        ("ARCHIVER_DATABASE_URL", "mysql://x/y"),
        ("ARCHIVER_BANDWIDTH_BASE_URL", "ftp://voice"),
        ("ARCHIVER_S3_PREFIX", "../escape"),
        ("ARCHIVER_DELETION_POLICY", "sometimes"),
        ("ARCHIVER_MAX_COUNTDOWN_SECONDS", "7200"),
        ("ARCHIVER_MEDIA_SPOOL_DIR", "/nonexistent/spool"),
        ("ARCHIVER_MEDIA_SPOOL_MAX_BYTES", str(6 * 2**30)),  # more than one PutObject takes
    ],
)
def test_invalid_values_name_the_variable(clean_env, name, value):
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_require_names_every_missing_variable(clean_env):
    with pytest.raises(ConfigError) as raised:
        load_settings().require("s3_bucket", "bandwidth_client_id", "bandwidth_client_secret")
    for name in ("ARCHIVER_S3_BUCKET", "ARCHIVER_BANDWIDTH_CLIENT_ID", "ARCHIVER_BANDWIDTH_CLIENT_SECRET"):
        assert name in str(raised.value)
    assert "decommissioned" not in str(raised.value)


def test_bandwidth_defaults_to_its_token_endpoint(clean_env):
    assert load_settings().bandwidth_token_url == "https://api.bandwidth.com/api/v1/oauth2/token"


def test_legacy_api_user_credentials_alone_stop_with_the_decommission_message(clean_env):
    clean_env.setenv("ARCHIVER_BANDWIDTH_USERNAME", "api-user")
    clean_env.setenv("ARCHIVER_BANDWIDTH_PASSWORD", "api-password-1")
    with pytest.raises(ConfigError) as raised:
        load_settings().require("s3_bucket", "bandwidth_client_id", "bandwidth_client_secret")
    message = str(raised.value)
    assert "decommissioned API users" in message and "2026-12-02" in message
    assert "ARCHIVER_BANDWIDTH_CLIENT_ID" in message and "ARCHIVER_BANDWIDTH_CLIENT_SECRET" in message
    assert "api-password-1" not in message


@pytest.mark.parametrize(
    "name",
    [
        "ARCHIVER_BANDWIDTH_CLIENT_SECRET",
        "ARCHIVER_TWILIO_AUTH_TOKEN",
        "ARCHIVER_TWILIO_SECONDARY_AUTH_TOKEN",
        "ARCHIVER_TWILIO_API_KEY_SECRET",
        "ARCHIVER_INTAKE_PASSWORD",
    ],
)
def test_every_secret_can_come_from_a_file(clean_env, tmp_path, name):
    path = tmp_path / "secret"
    path.write_text("from-a-file-42\n")  # the trailing newline of `echo` is not part of it
    clean_env.setenv(f"{name}_FILE", str(path))
    settings = load_settings()
    field = name.removeprefix("ARCHIVER_").lower()
    assert getattr(settings, field).get_secret_value() == "from-a-file-42"
    assert settings.secret_file(field) == str(path)
    assert "from-a-file-42" in settings.secret_values() and "from-a-file-42" not in repr(settings)


def test_a_secret_and_its_file_at_once_is_an_error(clean_env, tmp_path):
    path = tmp_path / "secret"
    path.write_text("x-secret")
    clean_env.setenv("ARCHIVER_BANDWIDTH_CLIENT_SECRET", "y-secret")
    clean_env.setenv("ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE", str(path))
    with pytest.raises(
        ConfigError, match="ARCHIVER_BANDWIDTH_CLIENT_SECRET or ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE"
    ):
        load_settings()


@pytest.mark.parametrize("content", [None, ""], ids=["missing", "empty"])
def test_an_unreadable_or_empty_secret_file_names_its_variable(clean_env, tmp_path, content):
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    clean_env.setenv("ARCHIVER_TWILIO_AUTH_TOKEN_FILE", str(path))
    with pytest.raises(ConfigError, match="ARCHIVER_TWILIO_AUTH_TOKEN_FILE"):
        load_settings()


def test_a_twilio_api_key_sid_must_look_like_one(clean_env):
    clean_env.setenv("ARCHIVER_TWILIO_API_KEY_SID", "AC" + "0" * 32)
    with pytest.raises(ConfigError, match="ARCHIVER_TWILIO_API_KEY_SID"):
        load_settings()


def test_repr_masks_secrets(clean_env):
    clean_env.setenv("ARCHIVER_BANDWIDTH_CLIENT_SECRET", "bw-secret-123")
    clean_env.setenv("ARCHIVER_INTAKE_PASSWORD", "in-secret-456")
    clean_env.setenv("ARCHIVER_DATABASE_URL", "postgresql://arch:db-secret-789@db/archive")
    clean_env.setenv("ARCHIVER_BROKER_URL", "redis://:redis-secret-000@cache:6379/0")
    settings = load_settings()
    text = repr(settings) + str(settings)
    for secret in ("bw-secret-123", "in-secret-456", "db-secret-789", "redis-secret-000"):
        assert secret not in text
        assert secret in settings.secret_values()


def test_redis_url_and_aws_keys_are_redacted_too(clean_env):
    clean_env.setenv("ARCHIVER_REDIS_URL", "redis://:r%40dis-pass-111@budget:6379/2")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-222")
    clean_env.setenv("AWS_SESSION_TOKEN", "aws-session-333")
    values = load_settings().secret_values()
    for secret in ("r%40dis-pass-111", "r@dis-pass-111", "aws-secret-222", "aws-session-333"):
        assert secret in values


def test_libraries_that_log_signed_requests_stay_at_info_under_debug():
    import logging

    from archiver.core.logging import CHATTY_LIBRARIES, configure_logging

    root = logging.getLogger()
    saved = root.level, {name: logging.getLogger(name).level for name in CHATTY_LIBRARIES}
    try:
        configure_logging("DEBUG", [])
        root.setLevel(logging.DEBUG)
        for name in CHATTY_LIBRARIES:
            assert not logging.getLogger(f"{name}.endpoint").isEnabledFor(logging.DEBUG), name
        assert logging.getLogger("archiver").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)


def test_presigned_url_queries_are_cut_from_what_flower_shows():
    from archiver.core.logging import mask_url_queries

    shown = "{'service_sid': 'GA1', 'media_url': 'https://b.s3.amazonaws.com/r.wav?X-Amz-Signature=abc&X-Amz-Credential=k'}"
    masked = mask_url_queries(shown)
    assert "X-Amz" not in masked and "abc" not in masked
    assert "'https://b.s3.amazonaws.com/r.wav?…'" in masked
    assert mask_url_queries("no url here") == "no url here"


def test_redacting_filter_scrubs_messages_and_tracebacks():
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Collect()
    handler.addFilter(SecretRedactingFilter(["hunter22"]))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("password is %s", "hunter22")
    try:
        raise RuntimeError("failed with hunter22")
    except RuntimeError:
        logger.exception("oops")
    assert records and all("hunter22" not in r for r in records)
    assert "***" in records[0]


def test_cli_reports_a_bad_setting_and_exits_2(tmp_path):
    env = {**os.environ, "ARCHIVER_MAX_ATTEMPTS": "zero"}
    result = subprocess.run(
        [bin_path("archiver"), "status"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "ARCHIVER_MAX_ATTEMPTS" in result.stderr


def test_serve_refuses_to_start_without_intake_credentials(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    result = subprocess.run([bin_path("archiver"), "serve"], env=env, capture_output=True, text=True, cwd=tmp_path,
                            timeout=30)  # fmt: skip
    assert result.returncode == 2
    assert "ARCHIVER_INTAKE_USERNAME" in result.stderr and "ARCHIVER_INTAKE_PASSWORD" in result.stderr


def test_worker_refuses_to_start_without_provider_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    env["ARCHIVER_BROKER_URL"] = SPARE_REDIS_URL  # it stops before it consumes anything
    result = subprocess.run([bin_path("celery"), "-A", "workers", "worker", "--pool", "solo"], env=env,
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)  # fmt: skip
    assert result.returncode != 0
    output = result.stderr + result.stdout
    for name in ("ARCHIVER_S3_BUCKET", "ARCHIVER_BANDWIDTH_CLIENT_ID", "ARCHIVER_BANDWIDTH_CLIENT_SECRET"):
        assert name in output


def test_a_worker_with_only_the_legacy_api_user_refuses_to_start_saying_why(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    env.update(ARCHIVER_BROKER_URL=SPARE_REDIS_URL, ARCHIVER_S3_BUCKET="b",
               ARCHIVER_BANDWIDTH_USERNAME="api-user", ARCHIVER_BANDWIDTH_PASSWORD="legacy-pw-77")  # fmt: skip
    result = subprocess.run([bin_path("celery"), "-A", "workers", "worker", "--pool", "solo"], env=env,
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)  # fmt: skip
    output = result.stderr + result.stdout
    assert result.returncode == 2
    assert "Bandwidth decommissioned API users" in output and "2026-12-02" in output
    assert "ARCHIVER_BANDWIDTH_CLIENT_ID" in output and "legacy-pw-77" not in output
