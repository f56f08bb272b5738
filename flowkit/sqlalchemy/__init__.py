"""flowkit on SQL databases: the only part of flowkit that imports SQLAlchemy."""

from flowkit.sqlalchemy.store import SqlStore

__all__ = ["SqlStore"]
