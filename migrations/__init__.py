"""Alembic migrations (applied with ``archiver db upgrade``)."""
