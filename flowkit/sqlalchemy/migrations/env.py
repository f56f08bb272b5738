"""Alembic environment for flowkit's own tables (its version table is flowkit's own)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from flowkit.sqlalchemy.tables import VERSION_TABLE, metadata


def run_migrations() -> None:
    """Run against the connection handed over in `config.attributes`, or the configured URL."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as conn:
            _run(conn)
        engine.dispose()
    else:
        _run(connection)


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
