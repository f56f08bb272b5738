"""Every public payment step driven from a workflow of the application's own (spec §6).

Each step runs in a custom workflow through a durable engine, on SQLite and PostgreSQL, given
(a) its attrs input, (b) the workflow's input as a dict, (c) a dict literal built in the
composition function whose values are refs to another step's output, and (d) a mapping with a
wrong key: a typed `InvalidData` naming the input class, and not one payment row written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
import pytest
from attrs import frozen
from payment_shop import Shop, open_shop

from flowkit import (
    Ref,
    RunResult,
    Step,
    StepContext,
    TransactionState,
    Workflow,
    WorkflowResponse,
    step,
    transform,
    workflow,
)
from payment import CollectionStatus, InvalidData, PaymentSession
from payment import steps as ps
from payment.cart import Cart
from payment.inputs import (
    AuthorizationAttempt,
    AuthorizePaymentSessionInput,
    CancelPaymentCollectionInput,
    CapturePaymentInput,
    CreatePaymentCollectionForCartInput,
    CreatePaymentSessionsInput,
    RefundPaymentInput,
    ReleaseExpiredAuthorizationsInput,
)
from payment.providers import WebhookAction
from payment.testing import authorized_payment


@pytest.fixture
def shop(database_url: str) -> Iterator[Shop]:
    """The payment module, an in-memory cart service and engines on the test database."""
    with open_shop(database_url) as built:
        yield built


# --- one case per public step -------------------------------------------------------------------


@frozen
class Case:
    """A public step, what its input is, and what it must have done.

    Attributes:
        step: The step.
        kind: Its input class (named by `InvalidData`).
        prepare: Builds the state it needs; returns its input as plain data.
        typed: The same input as the attrs input.
        wrong: The plain input with a wrong key.
        check: Asserts on the step's output.
    """

    step: Step[Any, Any]
    kind: Any
    prepare: Callable[[Shop], Any]
    typed: Callable[[Shop, Any], Any]
    wrong: Callable[[Any], Any]
    check: Callable[[Shop, Any, Any], None]


def _flat(kind: type[Any]) -> Callable[[Shop, Any], Any]:
    return lambda shop, plain: kind(**plain)


def _renamed(old: str, new: str) -> Callable[[Any], Any]:
    def rename(plain: dict[str, Any]) -> dict[str, Any]:
        wrong = dict(plain)
        wrong[new] = wrong.pop(old)
        return wrong

    return rename


def _cart(shop: Shop) -> dict[str, Any]:
    return {"cart_id": shop.carts.add_cart("cart_1", "120.00", "usd").id}


def _cart_record(shop: Shop) -> dict[str, Any]:
    shop.carts.add_cart("cart_1", "120.00", "usd")
    return {"id": "cart_1", "total": Decimal("120.00"), "currency_code": "usd"}


def _newer_session(shop: Shop) -> dict[str, Any]:
    old = shop.session()
    new = shop.session(old.payment_collection_id)
    return {**attrs.asdict(new, recurse=False), "data": dict(new.data), "context": {}}


def _attempt(shop: Shop) -> dict[str, Any]:
    return {
        "session_id": shop.session().id,
        "payment": None,
        "waiting_for": "customer",
        "action": {"type": "3ds"},
    }


def _webhook(shop: Shop) -> dict[str, Any]:
    session = shop.session()
    return {"action": "authorized", "session_id": session.id, "event_id": "evt_1"}


def _check_collection_for_cart(shop: Shop, plain: Any, out: Any) -> None:
    assert shop.module.retrieve_payment_collection_for_cart("cart_1").id == out.id
    assert out.amount == Decimal("120.00")


def _check_old_session_deleted(shop: Shop, plain: Any, out: Any) -> None:
    left = shop.module.retrieve_payment_collection(plain["payment_collection_id"]).sessions
    assert [s.id for s in left] == [plain["id"]]
    assert len(out) == 1


def _check_refunded(shop: Shop, plain: Any, out: Any) -> None:
    assert [o.succeeded for o in out] == [True]
    assert shop.module.retrieve_payment(plain[0]["payment_id"]).refunded_amount == Decimal("30")


def _stale_payment(shop: Shop) -> dict[str, Any]:
    authorized_payment(shop.module, "10")
    return {"authorized_before": datetime.now(UTC) + timedelta(seconds=1)}


CASES = [
    Case(
        ps.validate_cart_step,
        CreatePaymentCollectionForCartInput,
        _cart,
        _flat(CreatePaymentCollectionForCartInput),
        _renamed("cart_id", "cart"),
        lambda shop, plain, out: _expect(isinstance(out, Cart) and out.id == plain["cart_id"]),
    ),
    Case(
        ps.create_payment_collection_step,
        Cart,
        _cart_record,
        _flat(Cart),
        _renamed("total", "amount"),
        _check_collection_for_cart,
    ),
    Case(
        ps.retrieve_payment_collection_step,
        str,
        lambda shop: shop.collection(),
        lambda shop, plain: plain,
        lambda plain: {"payment_collection_id": plain},
        lambda shop, plain, out: _expect(out.id == plain),
    ),
    Case(
        ps.cancel_payment_collection_step,
        CancelPaymentCollectionInput,
        lambda shop: {"payment_collection_id": shop.collection()},
        _flat(CancelPaymentCollectionInput),
        _renamed("payment_collection_id", "collection_id"),
        lambda shop, plain, out: _expect(out.status is CollectionStatus.CANCELED),
    ),
    Case(
        ps.create_payment_session_step,
        CreatePaymentSessionsInput,
        lambda shop: {
            "payment_collection_id": shop.collection(),
            "provider_id": "pp_test",
            "data": {"scenario": "approve"},
            "context": {"customer": "cus_1"},
        },
        _flat(CreatePaymentSessionsInput),
        _renamed("provider_id", "provider"),
        lambda shop, plain, out: _expect(
            out.amount == Decimal("120.00") and out.context == {"customer": "cus_1"}
        ),
    ),
    Case(
        ps.delete_old_payment_sessions_step,
        PaymentSession,
        _newer_session,
        lambda shop, plain: shop.module.retrieve_payment_session(plain["id"]),
        _renamed("id", "session_id"),
        _check_old_session_deleted,
    ),
    Case(
        ps.authorize_payment_session_step,
        AuthorizePaymentSessionInput,
        lambda shop: {"id": shop.session().id, "context": {}},
        _flat(AuthorizePaymentSessionInput),
        _renamed("id", "session_id"),
        lambda shop, plain, out: _expect(out.payment_session_id == plain["id"]),
    ),
    Case(
        ps.begin_authorization_step,
        AuthorizePaymentSessionInput,
        lambda shop: {"id": shop.session().id, "context": {}},
        _flat(AuthorizePaymentSessionInput),
        _renamed("id", "session_id"),
        lambda shop, plain, out: _expect(
            out.payment is not None and out.waiting_for is None and out.session_id == plain["id"]
        ),
    ),
    Case(
        ps.await_payment_action_step,
        AuthorizationAttempt,
        _attempt,
        _flat(AuthorizationAttempt),
        _renamed("waiting_for", "waiting"),
        lambda shop, plain, out: None,  # the run waits: checked by the test itself
    ),
    Case(
        ps.capture_payment_step,
        CapturePaymentInput,
        lambda shop: {
            "payment_id": authorized_payment(shop.module, "100").id,
            "amount": Decimal("40"),
            "captured_by": "user_1",
        },
        _flat(CapturePaymentInput),
        _renamed("amount", "value"),
        lambda shop, plain, out: _expect(out.captured_amount == Decimal("40")),
    ),
    Case(
        ps.refund_payment_step,
        RefundPaymentInput,
        lambda shop: {"payment_id": shop.captured().id, "amount": Decimal("30"), "note": "n"},
        _flat(RefundPaymentInput),
        _renamed("note", "comment"),
        lambda shop, plain, out: _expect(out.refunded_amount == Decimal("30")),
    ),
    Case(
        ps.refund_payments_step,
        list[RefundPaymentInput],
        lambda shop: [{"payment_id": shop.captured().id, "amount": Decimal("30")}],
        lambda shop, plain: [RefundPaymentInput(**item) for item in plain],
        lambda plain: [_renamed("amount", "amount_refunded")(item) for item in plain],
        _check_refunded,
    ),
    Case(
        ps.release_expired_authorizations_step,
        ReleaseExpiredAuthorizationsInput,
        _stale_payment,
        _flat(ReleaseExpiredAuthorizationsInput),
        _renamed("authorized_before", "before"),
        lambda shop, plain, out: _expect(
            len(out) == 1 and shop.module.retrieve_payment(out[0]).canceled_at is not None
        ),
    ),
    Case(
        ps.process_webhook_step,
        WebhookAction,
        _webhook,
        _flat(WebhookAction),
        _renamed("session_id", "session"),
        lambda shop, plain, out: _expect(out.payment_session_id == plain["session_id"]),
    ),
]


def _expect(holds: bool) -> None:
    assert holds


def test_every_public_step_has_a_case() -> None:
    """The cases below cover every step `payment.steps` exports."""
    exported = {getattr(ps, name) for name in ps.__all__ if isinstance(getattr(ps, name), Step)}
    assert exported == {case.step for case in CASES}


# --- the custom workflows -----------------------------------------------------------------------


@step("given")
def given_step(value: Any, ctx: StepContext) -> Any:
    """Hands its input on: the "other step" whose output the dict literals refer to."""
    return value


def passing_input(case: Case) -> Workflow[Any, Any]:
    """A workflow that gives the step the workflow's own input."""

    @workflow(f"custom-{case.step.name}")
    def custom(inp: Ref[Any]) -> WorkflowResponse[Any]:
        return WorkflowResponse(case.step(inp))

    return custom


def literal_of_refs(shape: Any, ref: Ref[Any]) -> Any:
    """A dict (or list of dicts) literal with the keys of `shape` and refs into `ref` as values."""
    if isinstance(shape, dict):
        return {key: ref[key] for key in shape}
    if isinstance(shape, list):
        return [literal_of_refs(item, ref[i]) for i, item in enumerate(shape)]
    return ref  # an id: the ref to the other step's output itself


def passing_refs(case: Case, shape: Any) -> Workflow[Any, Any]:
    """A workflow that gives the step a literal built from another step's output."""

    @workflow(f"custom-refs-{case.step.name}")
    def custom(inp: Ref[Any]) -> WorkflowResponse[Any]:
        given = given_step(inp)
        return WorkflowResponse(case.step(literal_of_refs(shape, given)))

    return custom


def _finished(case: Case, result: RunResult[Any]) -> None:
    if case.step is ps.await_payment_action_step:
        assert result.status is TransactionState.WAITING
    else:
        assert result.status is TransactionState.DONE


IDS = [case.step.name for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_step_takes_its_attrs_input(shop: Shop, case: Case) -> None:
    """(a) The step, given its attrs input as the workflow's input, does its work."""
    plain = case.prepare(shop)
    result = shop.run(passing_input(case), case.typed(shop, plain), "tx-typed")
    _finished(case, result)
    case.check(shop, plain, result.result)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_step_takes_the_workflows_dict_input(shop: Shop, case: Case) -> None:
    """(b) The step, given the workflow's input as plain dicts, converts it and does its work."""
    plain = case.prepare(shop)
    result = shop.run(passing_input(case), plain, "tx-dict")
    _finished(case, result)
    case.check(shop, plain, result.result)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_step_takes_a_dict_literal_holding_refs(shop: Shop, case: Case) -> None:
    """(c) The step, given a literal whose values are refs to another step's output, works."""
    plain = case.prepare(shop)
    result = shop.run(passing_refs(case, plain), plain, "tx-refs")
    _finished(case, result)
    case.check(shop, plain, result.result)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_step_takes_a_transform(shop: Shop, case: Case) -> None:
    """The step, given a transform that builds its plain input, converts it and works."""
    plain = case.prepare(shop)

    @workflow(f"custom-transform-{case.step.name}")
    def custom(inp: Ref[Any]) -> WorkflowResponse[Any]:
        return WorkflowResponse(case.step(transform(inp, lambda v: v)))

    result = shop.run(custom, plain, "tx-transform")
    _finished(case, result)
    case.check(shop, plain, result.result)


def refusal(shop: Shop, flow: Workflow[Any, Any], inp: Any, tx: str) -> BaseException:
    """The error a run of `flow` fails with: raised, or recorded when the step lets the run go
    on (`retrieve_payment_collection_step` continues on a failed read)."""
    try:
        result = shop.run(flow, inp, tx)
    except Exception as exc:
        return exc
    assert result.status is TransactionState.DONE
    assert result.result is None
    return result.errors[0].exception


def _name(kind: Any) -> str:
    if isinstance(kind, type):
        return kind.__name__
    return f"list[{kind.__args__[0].__name__}]"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_step_refuses_a_wrong_key_and_writes_nothing(shop: Shop, case: Case) -> None:
    """(d) A mapping with a wrong key raises InvalidData naming the input class; no row moves."""
    wrong = case.wrong(case.prepare(shop))
    before = shop.rows()
    error = refusal(shop, passing_input(case), wrong, "tx-wrong")
    assert isinstance(error, InvalidData)
    assert error.field == _name(case.kind)
    assert shop.rows() == before


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_step_refuses_a_wrong_key_in_a_literal_of_refs(shop: Shop, case: Case) -> None:
    """(d) A wrong key in a literal of refs is refused the same way, before any write."""
    wrong = case.wrong(case.prepare(shop))
    before = shop.rows()
    error = refusal(shop, passing_refs(case, wrong), wrong, "tx-wrong-refs")
    assert isinstance(error, InvalidData)
    assert error.field == _name(case.kind)
    assert shop.rows() == before
