"""The tagged-JSON codec of durable runs: exact round trips, never pickle (spec §6)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from codec_types import Basket, Color, Level, Money, Shipment
from hypothesis import given, settings
from hypothesis import strategies as st

from flowkit import NotSerializable
from flowkit.codec import Codec

codec = Codec()

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.datetimes(timezones=st.just(UTC))
    | st.dates()
    | st.uuids()
    | st.sampled_from(list(Color))
    | st.sampled_from(list(Level))
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.builds(Money, st.decimals(allow_nan=False, allow_infinity=False), st.text(max_size=3))
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(values)
def test_every_supported_value_round_trips(value: Any) -> None:
    """Any mix of JSON, Decimal, datetime, UUID, enums, tuples and attrs classes decodes equal."""
    decoded = codec.loads(codec.dumps(value))
    assert decoded == value
    assert type(decoded) is type(value)


def test_nested_classes_keep_their_types() -> None:
    """attrs and dataclasses nested in untyped fields come back as themselves."""
    shipment = Shipment(
        Basket([Money(Decimal("1.10"), "usd", "gift")], extra={"when": date(2026, 1, 2)}),
        Color.BLUE,
        Level.HIGH,
        (3, 4),
    )
    again = codec.loads(codec.dumps(shipment))
    assert again == shipment
    assert isinstance(again.basket.items[0].amount, Decimal)
    assert again.basket.items[0]._note == "gift"
    assert isinstance(again.dims, tuple)


def test_special_scalars_round_trip() -> None:
    """Sets, frozensets, non-string keys, time, timedelta, NaN and infinities are kept."""
    value = {
        "set": {1, 2},
        "frozen": frozenset({"a"}),
        "keys": {1: "one", (2, 3): "pair"},
        "$dollar": "a key that looks like a tag",
        "time": time(12, 30),
        "delta": timedelta(days=1, seconds=5, microseconds=7),
        "uuid": uuid.UUID(int=5),
        "aware": datetime(2026, 1, 1, tzinfo=UTC),
        "naive": datetime(2026, 1, 1),
        "inf": float("inf"),
    }
    assert codec.loads(codec.dumps(value)) == value
    assert str(codec.loads(codec.dumps(float("nan")))) == "nan"


def test_output_is_plain_json_never_pickle() -> None:
    """The encoded text is JSON that names types by import path."""
    text = codec.dumps(Money(Decimal("2.50"), "eur"))
    data = json.loads(text)
    assert data == {
        "$type": "codec_types:Money",
        "fields": {"amount": {"$decimal": "2.50"}, "currency": "eur", "_note": "n/a"},
    }


def test_unstorable_values_raise_not_serializable() -> None:
    """Objects of other classes, and classes not importable by path, raise NotSerializable."""

    class Local:
        pass

    with pytest.raises(NotSerializable, match="Local"):
        codec.dumps(Local(), "the run's input")
    with pytest.raises(NotSerializable, match="the run's input"):
        codec.dumps({"x": object()}, "the run's input")

    import attrs

    @attrs.frozen
    class Inner:
        x: int

    with pytest.raises(NotSerializable, match="importable"):
        codec.dumps(Inner(1))
