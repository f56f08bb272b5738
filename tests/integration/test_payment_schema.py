"""The payment schema: migrations equal the metadata, tables are prefixed, amounts are exact."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from payment.adapters.engine import create_payment_engine
from payment.adapters.schema import VERSION_TABLE, upgrade_schema
from payment.adapters.tables import metadata
from payment.testing import authorized_payment, payment_module


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """An engine on a fresh database, disposed afterwards."""
    built = create_payment_engine(database_url)
    yield built
    built.dispose()


def _options(index: Any) -> str:
    """The index's dialect options (a partial index's WHERE) as comparable text."""
    return str(sorted((k, str(v)) for k, v in index.get("dialect_options", {}).items()))


def _describe(engine: sa.Engine) -> dict[str, Any]:
    """Everything the inspector sees of the payment tables, in a comparable form."""
    inspector = sa.inspect(engine)
    described: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        if not table.startswith("payment_") or table == VERSION_TABLE:
            continue
        described[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(
                (
                    fk["name"],
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    fk.get("options", {}).get("ondelete"),
                )
                for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (
                    ix["name"],
                    tuple(ix["column_names"]),
                    ix["unique"],
                    _options(ix),
                )
                for ix in inspector.get_indexes(table)
            ),
            "uniques": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
        }
    return described


def test_migrations_produce_the_same_schema_as_create_all(engine: sa.Engine) -> None:
    """Upgrading with the shipped migrations gives exactly what metadata.create_all gives."""
    metadata.create_all(engine)
    expected = _describe(engine)
    metadata.drop_all(engine)
    upgrade_schema(engine)
    assert _describe(engine) == expected
    assert set(expected) == set(metadata.tables)


def test_migrated_database_has_no_autogenerate_diff(engine: sa.Engine) -> None:
    """Alembic's autogenerate finds nothing to change after the migrations ran."""
    upgrade_schema(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        assert compare_metadata(context, metadata) == []


def test_schema_shares_a_database_with_flowkit_tables(engine: sa.Engine) -> None:
    """The migrations keep their own version table and leave other tables alone."""
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE flowkit_runs (id INTEGER PRIMARY KEY)")
        connection.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32))")
    upgrade_schema(engine)
    upgrade_schema(engine)  # a second upgrade is a no-op
    tables = set(sa.inspect(engine).get_table_names())
    assert {"flowkit_runs", "alembic_version", VERSION_TABLE} <= tables
    assert all(t.startswith(("payment_", "flowkit_", "alembic_")) for t in tables)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 0
        versions = connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").all()
    assert [v[0] for v in versions] == ["0001"]


def test_amounts_are_stored_exactly(database_url: str) -> None:
    """Stored amounts are exact decimals (text on SQLite, NUMERIC on PostgreSQL), never floats."""
    with payment_module(database_url) as module:
        payment = authorized_payment(module, "87.957975")
        module.capture_payment(payment.id, "0.10")
        module.capture_payment(payment.id, "0.20")
    engine = create_payment_engine(database_url)
    try:
        with engine.connect() as connection:
            raw = connection.exec_driver_sql("SELECT amount FROM payment_capture").all()
            typed = connection.exec_driver_sql(
                "SELECT typeof(amount) FROM payment_capture"
                if engine.dialect.name == "sqlite"
                else "SELECT pg_typeof(amount)::text FROM payment_capture"
            ).all()
    finally:
        engine.dispose()
    assert sorted(Decimal(str(row[0])) for row in raw) == [Decimal("0.10"), Decimal("0.20")]
    assert {row[0] for row in typed} == ({"text"} if "sqlite" in database_url else {"numeric"})


def test_sqlite_runs_in_wal_with_full_sync_and_foreign_keys(sqlite_url: str) -> None:
    """SQLite connections use WAL, synchronous=FULL (2), foreign keys and a busy timeout."""
    engine = create_payment_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            pragmas = [
                connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            ]
    finally:
        engine.dispose()
    assert pragmas == ["wal", 2, 1, 30000]
