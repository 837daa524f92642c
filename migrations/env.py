"""Alembic environment.

On PostgreSQL every migration runs under a lock timeout and a statement timeout (a migration that
waits behind a long transaction fails instead of queueing every writer behind it), and under an
advisory lock, so two deployments starting at once do not migrate concurrently.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from archiver.db.models import Base
from archiver.db.session import make_engine

MIGRATION_ADVISORY_LOCK = 0x61726368  # "arch"

config = context.config
url = config.get_main_option("sqlalchemy.url") or ""
assert url, "the caller sets sqlalchemy.url"


def run_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(text("SET lock_timeout = '4s'"))
            connection.execute(text("SET statement_timeout = '5min'"))
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_ADVISORY_LOCK})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if postgres:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_ADVISORY_LOCK})
                connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
