"""Authorizations in time, at the module: providers' windows, and which payments are expired.

`PaymentModule.list_expired_authorizations` is the query behind the release workflow (payment
spec §7); these tests pin what it lists on SQLite and PostgreSQL, with the module's clock a
`ManualClock` so that payments are authorized at chosen instants.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from attrs import define

from flowkit.testing import ManualClock
from payment import InvalidData, PaymentModule, ProviderNotFound, SystemProvider, TestProvider
from payment.providers import ProviderInput, ProviderOutput, authorization_window
from payment.testing import authorized_payment, get_test_provider, payment_module

DAY = timedelta(days=1)


class Crash(BaseException):
    """The process dies in the middle of a provider call (nothing catches it)."""


class DyingCapture(TestProvider):
    """The test gateway, but while `dying` the process dies during a capture: it stays pending."""

    dying = False

    def capture_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Die before the gateway answers, while `dying`."""
        if self.dying:
            raise Crash
        return super().capture_payment(payment)


@define
class World:
    """A module whose clock is a `ManualClock`, and that clock."""

    module: PaymentModule
    clock: ManualClock

    def payment(self, *, provider_id: str = "pp_test", **data: Any) -> str:
        """A new authorized payment of 10.00, authorized now; returns its id."""
        return authorized_payment(self.module, "10", provider_id=provider_id, **data).id


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    """A module on the test database with the system provider and a dying-capture gateway."""
    clock = ManualClock()
    providers = [SystemProvider(), DyingCapture()]
    with payment_module(database_url, providers=providers, clock=clock.now) as module:
        yield World(module, clock)


def _ids(module: PaymentModule, before: datetime, **options: Any) -> list[str]:
    return [p.id for p in module.list_expired_authorizations(before, **options)]


def test_only_old_uncaptured_live_authorizations_at_lapsing_providers_are_listed(
    world: World,
) -> None:
    """Listed: authorized before the instant, not canceled, no capture (not even a pending one),
    at a provider with a window; not listed: captured, canceled, pending capture, system
    provider, newer, or authorized exactly at the instant."""
    module, start = world.module, world.clock.now()
    stale = world.payment()
    captured = world.payment()
    module.capture_payment(captured, "4")
    captured_and_refunded = world.payment()
    module.capture_payment(captured_and_refunded, "10")
    module.refund_payment(captured_and_refunded)
    canceled = world.payment()
    module.cancel_payment(canceled)
    in_flight = world.payment()
    gateway = get_test_provider(module)
    assert isinstance(gateway, DyingCapture)
    gateway.dying = True
    with pytest.raises(Crash):
        module.capture_payment(in_flight, "1")
    gateway.dying = False
    assert module.retrieve_payment(in_flight).pending_capture_amount > 0
    world.payment(provider_id="pp_system_default")
    world.clock.advance(8 * DAY)
    at_the_instant = world.payment()
    world.clock.advance(DAY)
    world.payment()  # newer
    assert _ids(module, start + 8 * DAY) == [stale]
    assert _ids(module, start + 8 * DAY + timedelta(microseconds=1)) == [stale, at_the_instant]


def test_the_instant_is_compared_in_utc_whatever_its_time_zone(world: World) -> None:
    """An aware instant in another time zone means the same moment as its UTC twin."""
    start = world.clock.now()
    paid = world.payment()
    plus_two = timezone(timedelta(hours=2))
    just_after = (start + timedelta(seconds=1)).astimezone(plus_two)
    just_before = (start - timedelta(seconds=1)).astimezone(plus_two)
    assert _ids(world.module, just_after) == [paid]
    assert _ids(world.module, just_before) == []


def test_pages_follow_the_id_cursor_and_cover_every_payment_once(world: World) -> None:
    """`limit` and `after_id` page through the expired payments in id order, each once, even
    when the payments of an earlier page were canceled in between."""
    made = [world.payment() for _ in range(5)]
    world.clock.advance(DAY)
    now = world.clock.now()
    first = _ids(world.module, now, limit=2)
    assert first == made[:2]
    world.module.cancel_payment(first[0])  # releasing a page never moves the cursor
    second = _ids(world.module, now, limit=2, after_id=first[-1])
    third = _ids(world.module, now, limit=2, after_id=second[-1])
    assert (second, third) == (made[2:4], made[4:])
    assert _ids(world.module, now, limit=2, after_id=third[-1]) == []


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ((datetime(2026, 1, 1),), "authorized_before"),  # naive
        (("2026-01-01T00:00:00+00:00",), "authorized_before"),
        ((None,), "authorized_before"),
        ((datetime(2026, 1, 1, tzinfo=UTC), 0), "limit"),
        ((datetime(2026, 1, 1, tzinfo=UTC), 1001), "limit"),
        ((datetime(2026, 1, 1, tzinfo=UTC), True), "limit"),
        ((datetime(2026, 1, 1, tzinfo=UTC), 100, 5), "after_id"),
        ((datetime(2026, 1, 1, tzinfo=UTC), 100, ""), "after_id"),
        ((datetime(2026, 1, 1, tzinfo=UTC), 100, "pay_\x00"), "after_id"),
    ],
)
def test_bad_arguments_are_invalid_data_naming_the_argument(
    world: World, arguments: tuple[Any, ...], field: str
) -> None:
    """A naive or non-datetime instant, a limit outside 1..1000, or a malformed cursor is a
    typed `InvalidData` naming the argument."""
    names = ("authorized_before", "limit", "after_id")
    options = dict(zip(names[1:], arguments[1:], strict=False))
    with pytest.raises(InvalidData) as caught:
        world.module.list_expired_authorizations(arguments[0], **options)
    assert caught.value.field == field


def test_cancel_with_an_idempotency_key_sends_it_to_the_provider(world: World) -> None:
    """`cancel_payment(id, idempotency_key=k)` reaches the provider as ``{id}:cancel:{k}``;
    without a key the provider gets ``{id}:cancel``; a second cancel calls nothing."""
    keyed, plain = world.payment(), world.payment()
    world.module.cancel_payment(keyed, idempotency_key="job-1")
    world.module.cancel_payment(plain)
    world.module.cancel_payment(keyed, idempotency_key="job-2")
    keys = [c.idempotency_key for c in get_test_provider(world.module).calls_to("cancel_payment")]
    assert keys == [f"{keyed}:cancel:job-1", f"{plain}:cancel"]


def test_a_gateway_without_a_window_keeps_its_authorizations_off_the_list(
    sqlite_url: str,
) -> None:
    """A `TestProvider(authorization_window=None)` never lapses: its old payments are not
    listed, and the module reports its window as None."""
    clock = ManualClock()
    gateway = TestProvider(authorization_window=None)
    with payment_module(sqlite_url, providers=[gateway], clock=clock.now) as module:
        authorized_payment(module, "10")
        clock.advance(30 * DAY)
        assert module.list_expired_authorizations(clock.now()) == []
        assert module.authorization_window("pp_test") is None


def test_providers_declare_their_windows() -> None:
    """Stripe and the test gateway hold an authorization 7 days; the system provider's never
    lapse; a provider that declares nothing counts as never lapsing."""
    stripe_provider = pytest.importorskip("payment.providers.stripe").StripeProvider
    assert stripe_provider.authorization_window == timedelta(days=7)
    assert authorization_window(TestProvider()) == timedelta(days=7)
    assert authorization_window(TestProvider(authorization_window=2 * DAY)) == 2 * DAY
    assert authorization_window(SystemProvider()) is None
    assert authorization_window(object()) is None


def test_the_module_reports_each_providers_window(world: World) -> None:
    """`PaymentModule.authorization_window` gives each registered provider's window and
    refuses an unknown provider."""
    assert world.module.authorization_window("pp_test") == timedelta(days=7)
    assert world.module.authorization_window("pp_system_default") is None
    with pytest.raises(ProviderNotFound):
        world.module.authorization_window("pp_nope")


@pytest.mark.parametrize("window", [timedelta(0), -DAY, 7, "7 days"])
def test_a_malformed_window_is_refused_when_the_module_is_built(
    sqlite_url: str, window: Any
) -> None:
    """A provider declaring a window that is not a positive timedelta (or None) is refused by
    the composition root with a `ValueError` naming the provider."""
    with (
        pytest.raises(ValueError, match=r"pp_test.*authorization_window"),
        payment_module(sqlite_url, providers=[TestProvider(authorization_window=window)]),
    ):
        pass
