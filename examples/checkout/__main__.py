"""The checkout example, end to end: one success and two failures that revert.

Run it from the repository root:

    python -m examples.checkout [--database sqlite:///checkout.db]

Without ``--database`` it uses a fresh SQLite file in a temporary directory (removed at exit);
with one, each run adds fresh carts to that database. Three carts are checked out:

1. approved card, everything in stock: the order is created, the payment stays authorized;
2. approved card, a poster out of stock: reserve-inventory fails after the authorization, so
   the payment is canceled, the order deleted and the cart reopened;
3. a card the gateway captures at authorization, the same poster: the payment is refunded in
   full with the note "Refunded due to cart completion failure".

It prints each outcome and exits with status 0 when all three end as described (1 otherwise).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

from flowkit import RunResult
from payment import to_amount

from .app import CheckoutApp, CheckoutOutcome
from .carts import LineItem, Order

TEE = LineItem("tee-black", 2, Decimal("25.00"))
MUG = LineItem("mug", 1, Decimal("12.50"))
POSTER = LineItem("poster", 1, Decimal("40.00"))


def _stock(app: CheckoutApp) -> None:
    app.database.set_stock("tee-black", 100)
    app.database.set_stock("mug", 100)
    app.database.set_stock("poster", 0)


def _checkout(
    app: CheckoutApp, items: Sequence[LineItem], scenario: str
) -> tuple[RunResult[Order], CheckoutOutcome]:
    cart = app.database.create_cart("usd", items, email="ada@example.com")
    app.start_payment(cart.id, {"scenario": scenario})
    result = app.complete_cart(cart.id, throw_on_error=False)
    return result, app.outcome(cart.id)


def _report(title: str, result: RunResult[Order], outcome: CheckoutOutcome) -> None:
    print(f"\n{title}")
    print(f"  run {result.status.value}", end="")
    if result.errors:
        error = result.errors[0]
        kind = error.type_name.rsplit(".", 1)[-1]
        print(f" at {error.step}: {kind}: {error.message}", end="")
    print()
    payment = outcome.payment
    if payment is not None:
        captured, refunded = (
            to_amount(amount, payment.currency_code, positive=False)
            for amount in (payment.captured_amount, payment.refunded_amount)
        )
        print(
            f"  payment {payment.id}: {outcome.payment_state}, {payment.amount} "
            f"{payment.currency_code.upper()}, captured {captured}, refunded {refunded}"
        )
    if outcome.refund_note:
        print(f'  refund note: "{outcome.refund_note}"')
    order = outcome.order.id if outcome.order else "none"
    cart = "completed" if outcome.cart_completed_at else "open"
    print(f"  order: {order}; cart: {cart}")


Expectation = Callable[[RunResult[Order], CheckoutOutcome], bool]


def _placed(result: RunResult[Order], outcome: CheckoutOutcome) -> bool:
    return result.succeeded and outcome.order is not None and outcome.payment_state == "authorized"


def _reverted(state: str) -> Expectation:
    def check(result: RunResult[Order], outcome: CheckoutOutcome) -> bool:
        reverted = result.status.value == "reverted" and outcome.order is None
        return reverted and outcome.cart_completed_at is None and outcome.payment_state == state

    return check


SCENARIOS: list[tuple[str, list[LineItem], str, Expectation]] = [
    ("1. success: tee and mug in stock, card approved", [TEE, MUG], "approve", _placed),
    ("2. failure after authorization: poster out of stock", [POSTER], "approve",
     _reverted("canceled")),
    ("3. failure after auto-capture: poster out of stock", [POSTER], "auto_capture",
     _reverted("refunded")),
]  # fmt: skip


def run_example(database_url: str) -> bool:
    """Check out the three carts on `database_url`, print each outcome; True when all three
    ended as the module doc says."""
    print(f"Checkout example on {database_url}")
    with CheckoutApp(database_url) as app:
        _stock(app)
        ok = True
        for title, items, scenario, expected in SCENARIOS:
            result, outcome = _checkout(app, items, scenario)
            _report(title, result, outcome)
            ok = expected(result, outcome) and ok
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run the example; the exit status is 0 when every outcome is the expected one."""
    parser = argparse.ArgumentParser(prog="python -m examples.checkout", description=__doc__)
    parser.add_argument("--database", help="a SQLAlchemy URL (default: a fresh SQLite file)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="checkout-") as tmp:
        url = args.database or f"sqlite:///{Path(tmp) / 'checkout.db'}"
        ok = run_example(url)
    print(f"\n{'all outcomes as expected' if ok else 'UNEXPECTED OUTCOME'}", end="")
    print(f" ({time.perf_counter() - started:.2f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
