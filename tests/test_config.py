"""Settings: names, defaults, clear errors, masked secrets."""

from __future__ import annotations

import logging
import os
import subprocess

import pytest

from archiver.config import ConfigError, load_settings
from archiver.logging import SecretRedactingFilter
from archiver.supervisor import bin_path


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
        load_settings().require("s3_bucket", "bandwidth_password")
    assert "ARCHIVER_S3_BUCKET" in str(raised.value) and "ARCHIVER_BANDWIDTH_PASSWORD" in str(raised.value)


def test_repr_masks_secrets(clean_env):
    clean_env.setenv("ARCHIVER_BANDWIDTH_PASSWORD", "bw-secret-123")
    clean_env.setenv("ARCHIVER_INTAKE_PASSWORD", "in-secret-456")
    clean_env.setenv("ARCHIVER_DATABASE_URL", "postgresql://arch:db-secret-789@db/archive")
    clean_env.setenv("ARCHIVER_BROKER_URL", "redis://:redis-secret-000@cache:6379/0")
    settings = load_settings()
    text = repr(settings) + str(settings)
    for secret in ("bw-secret-123", "in-secret-456", "db-secret-789", "redis-secret-000"):
        assert secret not in text
        assert secret in settings.secret_values()


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
    env["ARCHIVER_BROKER_URL"] = "redis://127.0.0.1:6379/9"
    result = subprocess.run([bin_path("celery"), "-A", "workers", "worker", "--pool", "solo"], env=env,
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert "ARCHIVER_S3_BUCKET" in result.stderr + result.stdout
