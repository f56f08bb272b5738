"""Provider fields that must stay out of workflow step and run outputs (a gateway's client secret).

A provider declares them with a `secret_fields` attribute (a collection of data keys; the
Stripe provider declares ``client_secret``); ``client_secret`` is secret for every provider.
The payment steps return records with those keys removed from every ``data`` and ``action``
object, so a durable engine never stores them with a run; the storefront reads them from the
session through `PaymentModule.retrieve_session_secrets`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import attrs

from payment.domain import FrozenJson
from payment.providers.base import PaymentProvider

__all__ = ["ALWAYS_SECRET", "secret_fields", "without_secrets"]

ALWAYS_SECRET = frozenset({"client_secret"})
"""Data keys treated as secret whatever the provider declares."""

T = TypeVar("T")


def secret_fields(providers: Iterable[PaymentProvider]) -> frozenset[str]:
    """`ALWAYS_SECRET` and every key the providers declare in `secret_fields`.

    Args:
        providers: The module's providers.

    Returns:
        The data keys kept out of outputs.
    """
    names = set(ALWAYS_SECRET)
    for provider in providers:
        names.update(str(n) for n in getattr(provider, "secret_fields", ()))
    return frozenset(names)


def _strip(value: Any, names: frozenset[str]) -> Any:
    """`value` without `names` in any of its mappings: the same object when none held one."""
    if isinstance(value, Mapping):
        kept: dict[str, Any] = {}
        changed = False
        for key, item in value.items():
            if key in names:
                changed = True
                continue
            stripped = _strip(item, names) if isinstance(item, Mapping | tuple | list) else item
            changed = changed or stripped is not item
            kept[key] = stripped
        return FrozenJson(kept) if changed else value
    if isinstance(value, tuple | list):
        items = tuple(_strip(v, names) for v in value)
        if isinstance(value, tuple) and all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items
    return value


def without_secrets(value: T, names: frozenset[str]) -> T:
    """`value` (a record, or a list or tuple of them) with `names` removed from its JSON data.

    Args:
        value: A `PaymentSession`, `PaymentCollection`, `Payment`, attempt or any attrs record.
        names: The keys to remove (see `secret_fields`).

    Returns:
        A copy without them (the value itself, not a copy, when it held none).
    """
    if isinstance(value, list):
        return [without_secrets(v, names) for v in value]  # type: ignore[return-value]
    if isinstance(value, tuple):
        items = tuple(without_secrets(v, names) for v in value)
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items  # type: ignore[return-value]
    if not attrs.has(type(value)):
        return value
    changes: dict[str, Any] = {}
    kind: Any = type(value)
    for field in attrs.fields(kind):
        item = getattr(value, field.name)
        if isinstance(item, Mapping):
            stripped = _strip(item, names)
        elif isinstance(item, tuple | list) or attrs.has(type(item)):
            stripped = without_secrets(item, names)
        else:
            continue
        if stripped is not item:  # both walks give the value itself back when nothing went
            changes[field.alias or field.name] = stripped
    return attrs.evolve(value, **changes) if changes else value  # type: ignore[misc]
