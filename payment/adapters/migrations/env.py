"""Alembic environment of the payment migrations.

Run programmatically by `payment.adapters.schema.upgrade_schema`, which passes an open
connection in ``config.attributes["connection"]``; from the command line, set
``sqlalchemy.url`` in the configuration instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from payment.adapters.schema import VERSION_TABLE
from payment.adapters.tables import metadata


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    """Only compare the payment tables (a shared database holds flowkit's too)."""
    return type_ != "table" or (name or "").startswith("payment_")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_name=_include_name,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations() -> None:
    """Migrate the connection given by the caller, or the configured URL."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as own_connection:
            _run(own_connection)
    finally:
        engine.dispose()


run_migrations()
