"""Card numbers are refused in payment session data and context (PCI DSS: never store a PAN)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payment import InvalidData, PaymentModule
from payment.domain.cards import CARD_REFUSAL, has_card_number, is_luhn_valid
from payment.inputs import AuthorizePaymentSessionInput, CreatePaymentSessionsInput, SessionSpec
from payment.testing import payment_module

CARDS = ["4242424242424242", "4000 0566 5566 5556", "5555-5555-5555-4444", "378282246310005"]


def _with_check_digit(body: str) -> str:
    """`body` followed by the digit that makes it pass Luhn."""
    return next(body + d for d in "0123456789" if is_luhn_valid(body + d))


@pytest.fixture
def module(tmp_path: Path) -> Iterator[PaymentModule]:
    """A payment module on a fresh SQLite database."""
    with payment_module(f"sqlite:///{tmp_path / 'p.db'}") as built:
        yield built


def test_luhn_known_values() -> None:
    """The Luhn check accepts the test cards and refuses a changed digit."""
    assert all(is_luhn_valid(c.replace(" ", "").replace("-", "")) for c in CARDS)
    assert not is_luhn_valid("4242424242424241")


@pytest.mark.parametrize("card", CARDS)
def test_cards_found_anywhere(card: str) -> None:
    """A card number is found in text, nested values, keys and integers."""
    assert has_card_number({"note": f"card {card} exp 12/30"})
    assert has_card_number({"a": [{"b": (card,)}]})
    assert has_card_number({card: 1})
    assert has_card_number({"n": int(card.replace(" ", "").replace("-", ""))})


def test_card_followed_by_more_digit_groups_is_found() -> None:
    """A card number followed by an expiry group is still a card number."""
    assert has_card_number("4242 4242 4242 4242 12 30")


@pytest.mark.parametrize(
    "value",
    ["4242424242424241", "order 1234567890123", "424242424242", "12345678901234567890123", True],
)
def test_not_cards(value: object) -> None:
    """Luhn-invalid, short and over-long digit runs, and booleans, are not card numbers."""
    assert not has_card_number(value)


@given(st.text(alphabet="0123456789", min_size=12, max_size=18))
def test_any_luhn_valid_run_is_refused(body: str) -> None:
    """Every 13-19 digit run with a valid check digit is a card number, with any grouping."""
    card = _with_check_digit(body)
    grouped = " ".join(card[i : i + 4] for i in range(0, len(card), 4))
    assert has_card_number(card)
    assert has_card_number(f"ref:{grouped};")
    assert has_card_number(grouped.replace(" ", "-"))


@given(st.text(alphabet="0123456789", min_size=13, max_size=19))
def test_luhn_invalid_runs_pass(digits: str) -> None:
    """A lone 13-19 digit run that fails Luhn is fine (an order reference)."""
    assert has_card_number(digits) is is_luhn_valid(digits)


@pytest.mark.parametrize("field", ["data", "context"])
def test_create_session_refuses_card(module: PaymentModule, field: str) -> None:
    """create_payment_session refuses a card number in data or context and stores nothing."""
    collection = module.create_payment_collection("usd", "10")
    with pytest.raises(InvalidData, match=CARD_REFUSAL) as caught:
        module.create_payment_session(
            collection.id, "pp_test", "usd", "10", **{field: {"card": CARDS[1]}}
        )
    assert "4000" not in str(caught.value)
    assert module.retrieve_payment_collection(collection.id).sessions == ()


def test_update_and_authorize_refuse_card(module: PaymentModule) -> None:
    """update_payment_session and authorize_payment_session refuse card numbers too."""
    collection = module.create_payment_collection("usd", "10")
    session = module.create_payment_session(
        collection.id, "pp_test", "usd", "10", data={"order": "1234567890123"}
    )
    with pytest.raises(InvalidData, match=CARD_REFUSAL):
        module.update_payment_session(session.id, data={"pan": CARDS[0]})
    with pytest.raises(InvalidData, match=CARD_REFUSAL):
        module.authorize_payment_session(session.id, context={"pan": CARDS[2]})
    assert module.retrieve_payment_session(session.id).data == session.data
    assert module.retrieve_payment_collection(collection.id).payments == ()


def test_workflow_inputs_refuse_card() -> None:
    """The workflow input classes refuse card numbers when they are built."""
    with pytest.raises(InvalidData, match=CARD_REFUSAL):
        CreatePaymentSessionsInput("pay_col_1", "pp_test", data={"card": CARDS[0]})
    with pytest.raises(InvalidData, match=CARD_REFUSAL):
        AuthorizePaymentSessionInput("payses_1", context={"card": CARDS[0]})
    with pytest.raises(InvalidData, match=CARD_REFUSAL):
        SessionSpec("pay_col_1", "pp_test", "usd", Decimal(1), context={"c": CARDS[0]})
    assert CreatePaymentSessionsInput("c", "p", data={"ref": "1234567890123"}).data
