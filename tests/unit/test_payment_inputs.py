"""`payment.inputs.as_input`: the one strict conversion of step and workflow inputs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from payment import InvalidData, PaymentAction, PaymentSession, SessionStatus, WebhookAction
from payment.inputs import (
    AuthorizationAttempt,
    AuthorizePaymentSessionInput,
    CapturePaymentInput,
    CreatePaymentSessionsInput,
    RefundPaymentInput,
    as_input,
)


def _reason(value: Any, kind: Any) -> str:
    with pytest.raises(InvalidData) as raised:
        as_input(value, kind)
    return raised.value.reason


def test_an_instance_passes_through_unchanged() -> None:
    """An instance of the input class is returned as it is (no copy)."""
    inp = CapturePaymentInput("pay_1", "10")
    assert as_input(inp, CapturePaymentInput) is inp


def test_a_mapping_becomes_the_input_class() -> None:
    """A mapping with the class's keys is converted, defaults filled in."""
    converted = as_input({"id": "ps_1", "context": {"ip": "1.2.3.4"}}, AuthorizePaymentSessionInput)
    assert converted == AuthorizePaymentSessionInput("ps_1", {"ip": "1.2.3.4"})


def test_unknown_and_missing_keys_are_named_with_the_class() -> None:
    """The error's field is the input class; its reason names every fault with its path."""
    with pytest.raises(InvalidData) as raised:
        as_input({"session_id": "ps_1"}, AuthorizePaymentSessionInput)
    assert raised.value.field == "AuthorizePaymentSessionInput"
    assert raised.value.reason == "$.id: missing; unknown keys ['session_id']"
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("value", ["str", 5, None, ["pay_1"], object()])
def test_a_value_of_another_type_is_refused(value: Any) -> None:
    """Anything but an instance or a mapping raises InvalidData, not TypeError."""
    assert _reason(value, CapturePaymentInput) == (
        "expected a CapturePaymentInput or a mapping with its keys"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"payment_id": 5}, "$.payment_id: expected str"),
        ({"payment_id": True}, "$.payment_id: expected str"),
        ({"payment_id": "p", "amount": 1.5}, "$.amount: expected Decimal | int | str | None"),
        ({"payment_id": "p", "amount": True}, "$.amount: expected Decimal | int | str | None"),
        ({"payment_id": "p", "captured_by": 7}, "$.captured_by: expected str | None"),
    ],
)
def test_field_values_are_not_coerced(value: dict[str, Any], reason: str) -> None:
    """An int is not a str and a float is not an amount: nothing is coerced."""
    assert _reason(value, CapturePaymentInput) == reason


def test_a_mapping_field_must_be_a_mapping() -> None:
    """`data` given as a string is refused at its path."""
    value = {"payment_collection_id": "c", "provider_id": "pp_test", "data": "scenario"}
    assert _reason(value, CreatePaymentSessionsInput) == "$.data: expected a mapping"


def test_lists_convert_each_item_and_report_its_index() -> None:
    """A list input converts every item; faults carry the item's index."""
    items = as_input([{"payment_id": "a"}, RefundPaymentInput("b")], list[RefundPaymentInput])
    assert items == [RefundPaymentInput("a"), RefundPaymentInput("b")]
    reason = _reason([{"payment_id": "a"}, {"id": "b"}], list[RefundPaymentInput])
    assert reason == "$[1].payment_id: missing; $[1]: unknown keys ['id']"


@pytest.mark.parametrize("value", ["pay_1", {"payment_id": "pay_1"}, 5, None])
def test_a_list_input_refuses_what_is_not_a_list(value: Any) -> None:
    """A string or a mapping is not a list of refunds (a string is not iterated)."""
    assert _reason(value, list[RefundPaymentInput]) == "expected a list"


def test_enums_take_their_values_and_name_them_on_error() -> None:
    """A str enum field takes its value; a wrong one lists the allowed values, not the input."""
    action = as_input({"action": "captured", "amount": 5}, WebhookAction)
    assert (action.action, action.amount) == (PaymentAction.CAPTURED, Decimal("5"))
    reason = _reason({"action": "card 4242424242424242"}, WebhookAction)
    assert reason.startswith("$.action: expected one of ['authorized', 'captured'")
    assert "4242" not in reason


def test_nested_records_convert_and_report_nested_paths() -> None:
    """A record inside a record is converted from a mapping too, faults at their full path."""
    created = datetime(2026, 1, 1, tzinfo=UTC)
    session = {
        "id": "ps_1",
        "payment_collection_id": "pc_1",
        "provider_id": "pp_test",
        "currency_code": "usd",
        "amount": "10.00",
        "created_at": created,
        "status": "requires_more",
    }
    converted = as_input(session, PaymentSession)
    assert (converted.amount, converted.status) == (Decimal("10.00"), SessionStatus.REQUIRES_MORE)
    reason = _reason({"session_id": "ps_1", "payment": {"id": "pay_1"}}, AuthorizationAttempt)
    assert "$.payment.amount: missing" in reason


@pytest.mark.parametrize("amount", ["\u0661\u0660", "NaN", "Infinity", "ten"])
def test_amount_strings_take_ascii_finite_numbers_only(amount: str) -> None:
    """Arabic-Indic digits, NaN, infinity and words are refused as a record's amount."""
    session = {
        "id": "ps_1",
        "payment_collection_id": "pc_1",
        "provider_id": "pp_test",
        "currency_code": "usd",
        "amount": amount,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    assert _reason(session, PaymentSession) == (
        "$.amount: expected a Decimal, an int or a numeric string"
    )


def test_a_plain_str_input_refuses_a_mapping() -> None:
    """A step whose input is one id refuses a mapping with InvalidData naming `str`."""
    with pytest.raises(InvalidData) as raised:
        as_input({"payment_collection_id": "pc_1"}, str)
    assert (raised.value.field, raised.value.reason) == ("str", "expected str")
