"""The flowkit pytest plugin (registered through the `pytest11` entry point)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flowkit.container import Registry


@pytest.fixture
def flowkit_registry() -> Iterator[Registry]:
    """A fresh `flowkit.Registry`, closed (singleton cleanups run) after the test."""
    registry = Registry()
    try:
        yield registry
    finally:
        registry.close()
