"""One step of the accept-payment flow per process, to prove the 3-D Secure wait is durable.

    python accept_process.py DB_URL start CART_ID   # runs until the wait, prints the status, exits
    python accept_process.py DB_URL finish CART_ID  # the customer passed 3-D Secure: resume

Each process builds its own module, gateway, carts and engine, as separate servers would.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

from accept_payment import accept_payment_workflow

import flowkit
from flowkit.sqlalchemy import SqlStore
from payment import make_payment_module, register
from payment.cart import CartService
from payment.testing import InMemoryCartService, get_test_provider


def main(url: str, mode: str, cart_id: str) -> dict[str, object]:
    """Start or finish one cart's accept-payment run; returns what the test checks."""
    store = SqlStore(url)
    store.create_all()
    module = make_payment_module(url)
    carts = InMemoryCartService()
    carts.add_cart(cart_id, Decimal("25.00"), "eur")
    registry = flowkit.Registry()
    register(registry, module)
    registry.register_value(CartService, carts)
    engine = flowkit.Engine(store, [accept_payment_workflow], container=registry)
    tx = f"accept-{cart_id}"
    try:
        if mode == "start":
            request = {"cart_id": cart_id, "data": {"scenario": "requires_more"}}
            result = engine.run(accept_payment_workflow, request, transaction_id=tx)
            return {"status": result.status.value}
        session = module.retrieve_payment_collection_for_cart(cart_id).sessions[-1]
        get_test_provider(module).complete_action(session.id)
        result = engine.set_step_success(tx, "await-payment-action", {"3ds": "passed"})
        payment = result.result
        return {"status": result.status.value, "payment": payment.id, "amount": str(payment.amount)}
    finally:
        engine.close()
        module.close()


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
