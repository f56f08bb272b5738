"""Every public method of PaymentModule and every public workflow, called with hostile
arguments, on SQLite and PostgreSQL.

Each call either succeeds or raises a `PaymentError` subclass (never a raw driver or Python
error), and a rejected call leaves every payment table's row count as it was. Arguments mix
real ids of a small seeded shop with wrong types, empty and huge collections, NUL bytes,
other scripts' digits, over-long strings and bad enum values.

The default run is a few hundred examples per backend (CI). The on-demand run takes its
budget from the environment, e.g. 10,000 examples per backend:

    FLOWKIT_BAD_INPUT_EXAMPLES=10000 pytest tests/properties/test_payment_bad_input.py
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowkit import FlowkitError, Registry, Workflow
from payment import InvalidData, PaymentError, PaymentModule, register, workflows
from payment.adapters.tables import metadata as payment_tables
from payment.cart import CartService
from payment.testing import InMemoryCartService, authorized_payment, payment_module

EXAMPLES = int(os.environ.get("FLOWKIT_BAD_INPUT_EXAMPLES", "150"))
# `close` ends the module and `provider` hands out the provider object: neither takes data
SKIPPED = {"close", "provider"}
METHODS = sorted(
    name
    for name, _ in inspect.getmembers(PaymentModule, inspect.isfunction)
    if not name.startswith("_") and name not in SKIPPED
)

HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(
        ["", "a\x00b", "\u0661\u0660", "x" * 400, "usd", "bogus", "pp_test", "10", "-1"]
    ),
    st.lists(st.text(max_size=4), max_size=3),
    st.just([]),
    st.just(["x"] * 300),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
    st.just({"scenario": "x"}),
    st.just(b"{}"),
)


class Shop:
    """A module with one authorized payment, and the row counts of its tables."""

    def __init__(self, url: str, module: PaymentModule) -> None:
        self.module = module
        self._engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        payment = authorized_payment(module, "50")
        self.ids = [payment.id, payment.payment_collection_id, payment.payment_session_id]

    def rows(self) -> dict[str, int]:
        """The row count of every payment table."""
        with self._engine.connect() as conn:
            return {
                table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).one()[0]
                for table in payment_tables.sorted_tables
            }

    def close(self) -> None:
        """Release the counting engine."""
        self._engine.dispose()


@pytest.fixture
def shop(database_url: str) -> Iterator[Shop]:
    """A seeded shop on a fresh database."""
    with payment_module(database_url) as module:
        built = Shop(database_url, module)
        try:
            yield built
        finally:
            built.close()


def _arguments(method: str) -> list[tuple[str, inspect.Parameter]]:
    signature = inspect.signature(getattr(PaymentModule, method))
    return [(n, p) for n, p in signature.parameters.items() if n != "self"]


@st.composite
def calls(draw: st.DrawFn, ids: list[str]) -> tuple[str, list[Any], dict[str, Any]]:
    """A method, and hostile (or real) values for each of its parameters."""
    method = draw(st.sampled_from(METHODS))
    values = st.one_of(HOSTILE, st.sampled_from(ids), st.just(ids), st.just(Decimal("5")))
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    for name, parameter in _arguments(method):
        has_default = parameter.default is not inspect.Parameter.empty
        if has_default and draw(st.booleans()):
            continue
        value = draw(values)
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            keywords[name] = value
        else:
            positional.append(value)
    return method, positional, keywords


def test_hostile_calls_raise_typed_errors_and_write_nothing(shop: Shop) -> None:
    """Each call succeeds or raises a PaymentError; a rejected call changes no row count."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(call=calls(shop.ids))
    def check(call: tuple[str, list[Any], dict[str, Any]]) -> None:
        method, positional, keywords = call
        before = shop.rows()
        try:
            getattr(shop.module, method)(*positional, **keywords)
        except PaymentError:
            assert shop.rows() == before, f"{method} was refused but changed rows"

    check()


WORKFLOWS: list[Workflow[Any, Any]] = [getattr(workflows, name) for name in workflows.__all__]
KEYS = [
    "cart_id", "payment_collection_id", "payment_id", "provider_id", "amount", "currency_code",
    "action", "data", "context", "sessions", "scenario", "reason_id", "note",
]  # fmt: skip


@st.composite
def workflow_inputs(draw: st.DrawFn, ids: list[str]) -> tuple[Workflow[Any, Any], Any]:
    """A public workflow, and a hostile input for it (a wrong type, or a mapping of mixed keys)."""
    flow = draw(st.sampled_from(WORKFLOWS))
    value = st.one_of(HOSTILE, st.sampled_from(ids))
    mapping = st.dictionaries(st.sampled_from(KEYS), value, max_size=4)
    inp = draw(st.one_of(HOSTILE, mapping, st.lists(mapping, max_size=2)))
    return flow, inp


def test_hostile_workflow_inputs_raise_typed_errors(shop: Shop) -> None:
    """A public workflow given a hostile input succeeds or raises a PaymentError or FlowkitError;
    when it is refused as InvalidData, no row count changed."""
    registry = Registry()
    register(registry, shop.module)
    registry.register_value(CartService, InMemoryCartService())

    @settings(
        max_examples=max(EXAMPLES // 3, 20),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(case=workflow_inputs(shop.ids))
    def check(case: tuple[Workflow[Any, Any], Any]) -> None:
        flow, inp = case
        before = shop.rows()
        try:
            flow.run(inp, container=registry)
        except InvalidData:
            assert shop.rows() == before, f"{flow.name} refused its input but changed rows"
        except (PaymentError, FlowkitError):
            pass

    check()
