"""Migrations apply on PostgreSQL and SQLite and produce exactly the models' schema."""

from __future__ import annotations

import os
import subprocess

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from archiver.db.migrate import current_revision_is_head, upgrade
from archiver.db.models import Base
from archiver.local.supervisor import bin_path


def assert_schema_matches_models(url: str) -> None:
    engine = create_engine(url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()


def test_postgres_upgrade_is_idempotent_and_matches_models(fresh_postgres):
    upgrade(fresh_postgres)
    upgrade(fresh_postgres)
    assert current_revision_is_head(fresh_postgres)
    assert_schema_matches_models(fresh_postgres)


def test_cli_db_upgrade_on_the_default_sqlite_file(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    result = subprocess.run([bin_path("archiver"), "db", "upgrade"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    url = f"sqlite:///{tmp_path / 'archiver.db'}"
    assert current_revision_is_head(url)
    assert_schema_matches_models(url)


def test_migrations_run_with_a_role_of_their_own_and_the_runtime_role_changes_only_rows(fresh_postgres):
    """deploy/postgres-roles.sql, applied as the operator would: ``archiver db upgrade`` connects as the
    migrator (ARCHIVER_MIGRATIONS_DATABASE_URL), which owns the tables; the runtime role reads and
    writes rows, and is refused any change of the schema."""
    from datetime import UTC, datetime
    from pathlib import Path

    import psycopg
    import pytest
    from sqlalchemy import func, select
    from sqlalchemy.engine import make_url

    from archiver.db.models import WebhookEvent
    from archiver.db.session import Database

    url = make_url(fresh_postgres)
    roles_sql = (Path(__file__).resolve().parents[2] / "deploy" / "postgres-roles.sql").read_text()
    admin_dsn = f"host={url.host} port={url.port} user={url.username} dbname={url.database}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(roles_sql)
        admin.execute(roles_sql)  # safe to run again
    migrator = url.set(username="archiver_migrator").render_as_string(hide_password=False)
    runtime = url.set(username="archiver_app").render_as_string(hide_password=False)

    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    env |= {"ARCHIVER_DATABASE_URL": runtime, "ARCHIVER_MIGRATIONS_DATABASE_URL": migrator}
    result = subprocess.run([bin_path("archiver"), "db", "upgrade"], env=env, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert current_revision_is_head(runtime)
    with psycopg.connect(admin_dsn) as admin:
        owners = {r[0] for r in admin.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
    assert owners == {"archiver_migrator"}

    database = Database(runtime)
    with database.sessionmaker.begin() as session:  # rows: yes
        session.add(WebhookEvent(provider="bandwidth", event_type="t", dedupe_key="k", received_at=datetime.now(UTC),
                                 payload="{}"))  # fmt: skip
    with database.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 1
    database.dispose()
    runtime_dsn = f"host={url.host} port={url.port} user=archiver_app dbname={url.database}"
    for ddl in (
        "CREATE TABLE intruder (i int)",
        "ALTER TABLE archive_items ADD COLUMN intruder int",
        "DROP TABLE webhook_events",
        "CREATE TEMPORARY TABLE intruder (i int)",
        "CREATE SCHEMA intruder",
    ):
        with psycopg.connect(runtime_dsn) as connection, pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(ddl)
