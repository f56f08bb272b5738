"""List filters of PaymentModule: every combination of optional arguments, and bad values.

The compiled-statement cache keys each query on its shape; these tests pin that no argument
can make the key and the bound values disagree (which poisoned the cache for later calls).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from payment import CollectionStatus, InvalidData, PaymentModule
from payment.testing import payment_module


@pytest.fixture
def module(database_url: str) -> Iterator[PaymentModule]:
    """A payment module on a fresh database holding five collections."""
    with payment_module(database_url) as built:
        for i in range(5):
            built.create_payment_collection("usd", Decimal(10 + i))
        yield built


LIMITS: list[int | None] = [None, 0, 2, 10]
OFFSETS = [0, 1, 4, 9]


def test_every_limit_and_offset_combination_pages_like_slicing(module: PaymentModule) -> None:
    """limit alone, offset alone and both together page exactly like a slice of all rows."""
    everything = module.list_payment_collections()
    assert len(everything) == 5
    for limit, offset in itertools.product(LIMITS, OFFSETS):
        page = module.list_payment_collections(limit=limit, offset=offset)
        end = None if limit is None else offset + limit
        assert page == everything[offset:end], (limit, offset)


def test_combinations_of_filters_and_paging_agree_with_filtering_in_python(
    module: PaymentModule,
) -> None:
    """Each mix of ids, status and paging returns what filtering the full list returns."""
    everything = module.list_payment_collections()
    some_ids = [c.id for c in everything[1:4]]
    for ids, status, limit, offset in itertools.product(
        [None, some_ids, [], [everything[0].id]],
        [None, CollectionStatus.NOT_PAID, "canceled"],
        [None, 1],
        [0, 1],
    ):
        kept = [
            c
            for c in everything
            if (ids is None or c.id in ids) and (status is None or c.status.value == str(status))
        ][offset:]
        expected = kept if limit is None else kept[:limit]
        found = module.list_payment_collections(ids=ids, status=status, limit=limit, offset=offset)
        assert found == expected, (ids, status, limit, offset)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"offset": -1},
        {"offset": None},
        {"offset": 1.5},
        {"offset": True},
        {"limit": -1},
        {"limit": ""},
        {"limit": 10**30},
        {"limit": False},
        {"status": "bogus"},
        {"status": 3},
        {"ids": [1, 2]},
        {"ids": [Decimal(1)]},
        {"ids": [{"a": 1}]},
        {"ids": ["a\x00b"]},
        {"cart_id": 5},
        {"cart_id": "cart\x00"},
    ],
)
def test_bad_filters_are_invalid_data_and_do_not_poison_later_calls(
    module: PaymentModule, kwargs: dict[str, Any]
) -> None:
    """A bad filter raises InvalidData; the plain listing still works afterwards."""
    before = module.list_payment_collections()
    with pytest.raises(InvalidData):
        module.list_payment_collections(**kwargs)
    assert module.list_payment_collections() == before
    assert module.list_payment_collections(limit=2) == before[:2]
    assert module.list_payment_collections(offset=1) == before[1:]


def test_empty_id_lists_return_nothing(module: PaymentModule) -> None:
    """An empty id list matches nothing, for collections, payments and sessions."""
    assert module.list_payment_collections(ids=[]) == []
    assert module.list_payments(ids=[]) == []
    assert module.list_payment_sessions(ids=[]) == []
    assert len(module.list_payment_collections()) == 5


def test_bad_session_status_filter_is_invalid_data(module: PaymentModule) -> None:
    """A session status that is not one of SessionStatus's raises InvalidData naming status."""
    with pytest.raises(InvalidData) as caught:
        module.list_payment_sessions(status="bogus")
    assert caught.value.field == "status"


@pytest.mark.parametrize("data", [None, "pay", {"currency_code": "usd", "amount": 1}, 5])
def test_create_payment_collections_needs_a_list(module: PaymentModule, data: Any) -> None:
    """Anything but a list of records or mappings is InvalidData, and nothing is created."""
    with pytest.raises(InvalidData):
        module.create_payment_collections(data)
    assert len(module.list_payment_collections()) == 5


@pytest.mark.parametrize(("body", "headers"), [(b"{}", None), (b"{}", ["x"]), (None, {}), (5, {})])
def test_webhook_arguments_of_the_wrong_type_are_invalid_data(
    module: PaymentModule, body: Any, headers: Any
) -> None:
    """Headers that are not a mapping, or a body that is not bytes or text: InvalidData."""
    with pytest.raises(InvalidData):
        module.get_webhook_action_and_data("pp_system_default", body, headers)


def test_strings_longer_than_their_column_are_invalid_data(module: PaymentModule) -> None:
    """An over-long email or refund reason label is InvalidData on both backends; none is kept."""
    with pytest.raises(InvalidData) as caught:
        module.create_account_holder("pp_system_default", "cus_1", "e" * 400)
    assert caught.value.field == "email"
    with pytest.raises(InvalidData) as caught:
        module.create_refund_reasons([{"code": "x", "label": "l" * 300}])
    assert caught.value.field == "label"
    assert module.list_refund_reasons() == []


@pytest.mark.parametrize("bad", ["pay_col_\x00", 5, ["pay_col_1"], Decimal(1)])
def test_ids_of_the_wrong_kind_are_invalid_data(module: PaymentModule, bad: Any) -> None:
    """retrieve_* with an id holding a NUL, or not a string, is InvalidData on both backends."""
    with pytest.raises(InvalidData):
        module.retrieve_payment_collection(bad)


def test_a_nul_in_a_stored_string_is_invalid_data(module: PaymentModule) -> None:
    """A NUL in a string column (a cart id) is InvalidData on both backends, nothing written."""
    with pytest.raises(InvalidData):
        module.create_payment_collection("usd", Decimal(5), cart_id="a\x00b")
    assert len(module.list_payment_collections()) == 5
