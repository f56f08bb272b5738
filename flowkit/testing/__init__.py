"""Test support for applications built on flowkit: fixtures, fault injection, rollback paths."""

__all__: list[str] = []
