"""Provider secrets (a client secret) stay out of the payment steps' outputs (issue 24)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from attrs import evolve

from flowkit import Engine, Registry
from flowkit.sqlalchemy import SqlStore
from payment import PaymentModule
from payment.providers import ProviderInput, ProviderOutput, TestProvider
from payment.testing import payment_module
from payment.workflows import create_payment_sessions_workflow


class SecretiveProvider(TestProvider):
    """The test gateway, answering with a client secret and a declared secret field."""

    secret_fields = frozenset({"ephemeral_key"})

    def initiate_payment(self, payment: ProviderInput) -> ProviderOutput:
        """The test provider's answer plus secret fields."""
        answer = super().initiate_payment(payment)
        data: dict[str, Any] = {
            **answer.data,
            "client_secret": "cs_MARK",
            "ephemeral_key": "ek_MARK",
            "nested": {"client_secret": "cs2_MARK", "kept": 1},
        }
        return evolve(answer, data=data)


@pytest.fixture
def module(tmp_path: Path) -> Iterator[PaymentModule]:
    """A module whose pp_test gateway returns secrets."""
    with payment_module(f"sqlite:///{tmp_path / 'p.db'}", providers=[SecretiveProvider()]) as built:
        yield built


def test_session_outputs_hold_no_secret_and_the_module_gives_it(
    module: PaymentModule, tmp_path: Path
) -> None:
    """A durable run's stored values hold no secret field; retrieve_session_secrets has them."""
    collection = module.create_payment_collection("usd", Decimal("10"))
    registry = Registry()
    registry.register_value(PaymentModule, module)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = SqlStore(url)
    store.create_all()
    with Engine(store, [create_payment_sessions_workflow], container=registry) as engine:
        result = engine.run(
            create_payment_sessions_workflow,
            {"payment_collection_id": collection.id, "provider_id": "pp_test"},
            transaction_id="tx-sess",
        )
        loaded = engine.store.load("tx-sess")
    session = result.result
    assert "client_secret" not in session.data
    assert "ephemeral_key" not in session.data
    assert session.data["nested"] == {"kept": 1}
    assert loaded is not None
    stored = repr(loaded)
    assert "MARK" not in stored
    assert module.retrieve_session_secrets(session.id) == {
        "client_secret": "cs_MARK",
        "ephemeral_key": "ek_MARK",
    }
    assert module.retrieve_payment_session(session.id).data["client_secret"] == "cs_MARK"
