"""`flowkit.logging` hides client secrets, `flowkit.Secret` values and card numbers."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import structlog

import flowkit.logging
from flowkit import Secret
from flowkit.logging import REDACTED, mask_card_numbers


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """Each test starts and ends with structlog unconfigured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.mark.parametrize("dev", [True, False])
def test_client_secret_secret_values_and_cards_never_reach_a_line(dev: bool) -> None:
    """client_secret, a Secret, and card numbers in values, the message and errors are hidden."""
    out = io.StringIO()
    flowkit.logging.configure(dev=dev, stream=out)
    log = structlog.get_logger()
    log.info(
        "paying with 4000 0566 5566 5556",
        data={"client_secret": "pi_123_secret_XYZMARK"},
        token=Secret("tok_SECRETMARK"),
        note="card 5555-5555-5555-4444 order 1234567890123",
        items=[Secret(1)],
    )
    try:
        raise ValueError("declined 4242424242424242")
    except ValueError:
        log.exception("failed")
    text = out.getvalue()
    for leaked in ("XYZMARK", "SECRETMARK", "5556", "5555-5555", "4242424242424242"):
        assert leaked not in text
    assert "Secret(***)" in text
    assert "1234567890123" in text  # a Luhn-invalid reference is kept


def test_mask_card_numbers_keeps_other_digits() -> None:
    """Only Luhn-valid 13-19 digit runs are masked."""
    assert mask_card_numbers("a 4242 4242 4242 4242 b") == f"a {REDACTED} b"
    assert mask_card_numbers("ref 4242424242424241") == "ref 4242424242424241"
    assert mask_card_numbers("short 42") == "short 42"


def test_secret_repr_and_reveal() -> None:
    """A Secret shows as Secret(***) and gives its value back with reveal()."""
    secret = Secret("pw")
    assert repr(secret) == str(secret) == f"{secret}" == "Secret(***)"
    assert secret.reveal() == "pw"
    assert secret == Secret("pw")
    assert secret != Secret("other")
    assert repr({"k": secret}) == "{'k': Secret(***)}"
