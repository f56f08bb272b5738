"""Every public payment workflow answers bad input with `InvalidData` and writes nothing.

Wrong types (a string, a number, None, a list), unknown keys, missing keys and fields of the
wrong type, through a durable engine on SQLite and PostgreSQL, with payment rows already in
the tables: the run raises `InvalidData` (a `PaymentError` and `ValueError`) naming the input
class, and every payment table keeps its row count.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from payment_shop import Shop, open_shop

from flowkit import Workflow
from payment import InvalidData, PaymentError
from payment.workflows import (
    cancel_payment_collection_workflow,
    capture_payment_workflow,
    create_payment_collection_for_cart_workflow,
    create_payment_sessions_workflow,
    mark_payment_collection_as_paid_workflow,
    process_payment_workflow,
    refund_payment_workflow,
    refund_payments_workflow,
)

# Each workflow with its input class and the first key it requires.
SINGLE: list[tuple[Workflow[Any, Any], str, str]] = [
    (create_payment_collection_for_cart_workflow, "CreatePaymentCollectionForCartInput", "cart_id"),
    (create_payment_sessions_workflow, "CreatePaymentSessionsInput", "payment_collection_id"),
    (capture_payment_workflow, "CapturePaymentInput", "payment_id"),
    (refund_payment_workflow, "RefundPaymentInput", "payment_id"),
    (cancel_payment_collection_workflow, "CancelPaymentCollectionInput", "payment_collection_id"),
    (
        mark_payment_collection_as_paid_workflow,
        "MarkPaymentCollectionAsPaidInput",
        "payment_collection_id",
    ),
    (process_payment_workflow, "WebhookAction", "action"),
]


def _bad_inputs(key: str) -> list[Any]:
    return ["str", 5, None, [], {"scenario": "x"}, {}, {key: 5}, {key: ["id"]}]


SINGLE_CASES = [
    pytest.param(flow, kind, bad, id=f"{flow.name}-{i}")
    for flow, kind, key in SINGLE
    for i, bad in enumerate(_bad_inputs(key))
]
LIST_CASES = [
    pytest.param(bad, id=f"refund-payments-{i}")
    for i, bad in enumerate(
        ["str", 5, None, {"payment_id": "pay_1"}, [5], [{"bogus": 1}], [{"payment_id": 5}]]
    )
]


@pytest.fixture
def shop(database_url: str) -> Iterator[Shop]:
    """A shop whose payment tables already hold a captured payment and an open collection."""
    with open_shop(database_url) as built:
        built.captured()
        built.session()
        yield built


def _refused(shop: Shop, flow: Workflow[Any, Any], bad: Any) -> InvalidData:
    before = shop.rows()
    with pytest.raises(InvalidData) as raised:
        shop.run(flow, bad, "tx-bad")
    assert shop.rows() == before
    return raised.value


@pytest.mark.parametrize(("flow", "kind", "bad"), SINGLE_CASES)
def test_workflow_refuses_bad_input_with_invalid_data(
    shop: Shop, flow: Workflow[Any, Any], kind: str, bad: Any
) -> None:
    """A bad input raises InvalidData naming the workflow's input class; no row is written."""
    error = _refused(shop, flow, bad)
    assert error.field == kind
    assert isinstance(error, PaymentError)
    assert isinstance(error, ValueError)


@pytest.mark.parametrize("bad", LIST_CASES)
def test_refund_payments_refuses_what_is_not_a_list_of_refunds(shop: Shop, bad: Any) -> None:
    """refund_payments_workflow given a non-list or bad items raises InvalidData, writes nothing."""
    error = _refused(shop, refund_payments_workflow, bad)
    assert error.field == "list[RefundPaymentInput]"


def test_process_payment_with_a_scenario_mapping_names_the_unknown_key(shop: Shop) -> None:
    """`process_payment_workflow.run({'scenario': 'x'})` says which key is unknown and missing."""
    with pytest.raises(InvalidData) as raised:
        process_payment_workflow.run({"scenario": "x"}, container=shop.registry)
    assert raised.value.reason == "$.action: missing; unknown keys ['scenario']"


def test_process_payment_with_a_string_in_memory_raises_invalid_data(shop: Shop) -> None:
    """`process_payment_workflow.run('str')` in memory raises InvalidData, not TypeError."""
    with pytest.raises(InvalidData, match="expected a WebhookAction or a mapping"):
        process_payment_workflow.run("str", container=shop.registry)
