"""A tiny app for the CLI tests: workflows with named steps and an `engine()` factory.

`flowkit ... --app cli_app:engine` loads it; the factory reads the database URL from
`FLOWKIT_CLI_TEST_URL`. The other attributes exist to exercise `--app` errors; the last
section holds the tests' shared helpers.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from attrs import frozen
from click.testing import Result

import flowkit
from flowkit import Engine, RetryPolicy, StepContext, StepResponse, WorkflowResponse, step
from flowkit.sqlalchemy import SqlStore

URL_ENV = "FLOWKIT_CLI_TEST_URL"


@frozen
class Order:
    """An order; `fail_at` names the step that fails on purpose."""

    order_id: str
    amount: Decimal
    fail_at: str | None = None


class CardDeclined(Exception):
    """The test card was declined."""


@step("reserve")
def reserve(order: Order, ctx: StepContext) -> StepResponse[str, str]:
    """Reserve stock; the reservation id is the compensate input."""
    return StepResponse(f"res-{order.order_id}", compensate_input=f"res-{order.order_id}")


@reserve.compensate
def release(reservation: str | None, ctx: StepContext) -> None:
    """Release the reservation (nothing to undo in this test app)."""


@step("charge", retry=RetryPolicy(max_retries=1))
def charge(order: Order, ctx: StepContext) -> dict[str, Any]:
    """Charge the card, once retried; declines when the order says so."""
    if order.fail_at == "charge":
        # brackets and colons as a provider might send them: they must print as they are
        raise CardDeclined(f"{order.order_id} declined [do_not_honor] :x:")
    return {"charged": order.amount}


@charge.compensate
def refund(receipt: dict[str, Any] | None, ctx: StepContext) -> None:
    """Refund the charge (nothing to undo in this test app)."""


@step("ship")
def ship(order: Order, ctx: StepContext) -> str:
    """Ship the order."""
    return f"parcel-{order.order_id}"


@flowkit.workflow("checkout")
def checkout(order: flowkit.Ref[Order]) -> WorkflowResponse[Any]:
    """Reserve, charge, ship."""
    reserve(order)
    receipt = charge(order)
    parcel = ship(order)
    return WorkflowResponse({"receipt": receipt, "parcel": parcel, "amount": order.amount})


@step("wait-for-approval", async_completion=True)
def wait_for_approval(order: Order, ctx: StepContext) -> StepResponse[None, str]:
    """Ask a person; the answer comes as a signal."""
    return StepResponse(None, compensate_input=f"ask-{order.order_id}")


@wait_for_approval.compensate
def withdraw(question: str | None, ctx: StepContext) -> None:
    """Withdraw the question (nothing to undo in this test app)."""


@flowkit.workflow("approval")
def approval(order: flowkit.Ref[Order]) -> WorkflowResponse[Any]:
    """Reserve, wait for approval, ship."""
    reserve(order)
    answer = wait_for_approval(order)
    ship(order)
    return WorkflowResponse(answer)


WORKFLOWS = (checkout, approval)


def make_engine(url: str) -> Engine:
    """An engine holding the test workflows on the database at `url`."""
    store = SqlStore(url)
    try:
        return Engine(store, WORKFLOWS)
    except BaseException:
        store.close()
        raise


def engine() -> Engine:
    """The `--app` factory: the database URL comes from `FLOWKIT_CLI_TEST_URL`."""
    return make_engine(os.environ[URL_ENV])


def broken() -> Engine:
    """A factory that fails, as one missing its configuration would."""
    raise RuntimeError("no configuration found")


def not_a_factory() -> int:
    """A callable returning something other than an Engine."""
    return 42


ANSWER = 42


# --- test support ---------------------------------------------------------------------------

DONE, REVERTED, WAITING = "ord_done", "ord_reverted", "ord_waiting"


def create_schema(url: str) -> None:
    """Create flowkit's tables in the database at `url`."""
    with SqlStore(url) as store:
        store.create_all()


def populate(url: str) -> None:
    """A fresh database with three runs: one done, one reverted, one waiting for a signal."""
    create_schema(url)
    with make_engine(url) as eng:
        eng.run(checkout, Order("o-1", Decimal("12.50")), transaction_id=DONE)
        failing = Order("o-2", Decimal("99.00"), fail_at="charge")
        eng.run(checkout, failing, transaction_id=REVERTED, throw_on_error=False)
        eng.run(approval, Order("o-3", Decimal("5")), transaction_id=WAITING)


def assert_one_line_error(result: Result, exit_code: int, *fragments: str) -> None:
    """The command failed with `exit_code`: one `Error:` line on stderr, no traceback."""
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]
