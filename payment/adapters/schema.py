"""Create or upgrade the payment schema with the Alembic migrations shipped in this package.

The migrations keep their own version table, ``payment_alembic_version``, so they never touch
flowkit's tables or version table in a shared database.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

__all__ = ["SCRIPT_LOCATION", "VERSION_TABLE", "alembic_config", "upgrade_schema"]

SCRIPT_LOCATION = "payment.adapters:migrations"
"""Where the migration scripts live (an Alembic ``package:directory`` location)."""

VERSION_TABLE = "payment_alembic_version"
"""The table that records which payment migration a database is at."""


def alembic_config() -> Config:
    """An Alembic configuration for the payment migrations (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Run the payment migrations up to `revision` in one transaction.

    Args:
        engine: The database to migrate.
        revision: The target revision (default: the latest).
    """
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
