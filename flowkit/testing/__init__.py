"""Test support for applications built on flowkit (fixtures, fault injection, rollback exploration)."""

__all__: list[str] = []
