"""Database: models (``models``), engine and transactions (``session``)."""
