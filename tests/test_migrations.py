"""Migrations apply on PostgreSQL and SQLite and produce exactly the models' schema."""

from __future__ import annotations

import os
import subprocess

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from archiver.db.migrate import current_revision_is_head, upgrade
from archiver.db.models import Base
from archiver.supervisor import bin_path


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
