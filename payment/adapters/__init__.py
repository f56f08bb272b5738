"""Storage for the payment module: SQLAlchemy 2 tables, the SQL store, Alembic migrations.

Every table is prefixed ``payment_`` and the migrations keep their own version table
(``payment_alembic_version``), so the payment schema can share a database with flowkit's.
"""
