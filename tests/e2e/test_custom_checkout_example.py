"""`examples/custom_checkout.py`: a checkout of the user's own from the public payment steps."""

from __future__ import annotations

import importlib
import subprocess
import sys
from decimal import Decimal
from io import StringIO
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # examples/ is run from the repository root, not installed
    sys.path.insert(0, str(ROOT))

example = importlib.import_module("examples.custom_checkout")


def _console() -> Console:
    return Console(file=StringIO(), width=120)


def test_checkout_pays_holds_stock_and_creates_the_order(database_url: str) -> None:
    """Every step succeeds: the order exists, two tees are held, 58.00 authorized."""
    outcome = example.checkout(database_url, _console())
    assert outcome.status == "done"
    assert outcome.order_id is not None
    assert outcome.compensated == ()
    assert outcome.stock == {"tee-black-m": 3}
    assert outcome.has_collection
    assert (outcome.held, outcome.charged) == (Decimal("58.00"), Decimal("0"))


def test_failed_order_undoes_every_step_in_reverse(database_url: str) -> None:
    """The order service down: the authorization is voided, payment records and stock undone."""
    outcome = example.checkout(database_url, _console(), fail_order=True)
    assert outcome.status == "reverted"
    assert outcome.order_id is None
    assert outcome.compensated == (
        "authorize-payment-session",
        "create-payment-session",
        "create-payment-collection",
        "reserve-stock",
    )
    assert outcome.stock == {"tee-black-m": 5}
    assert not outcome.has_collection
    assert (outcome.held, outcome.charged) == (Decimal("0"), Decimal("0"))


def test_the_script_prints_each_step_and_what_was_compensated(tmp_path: Path) -> None:
    """`python examples/custom_checkout.py --fail-order` prints the steps live and the undo."""
    done = subprocess.run(
        [
            sys.executable,
            "examples/custom_checkout.py",
            "--fail-order",
            "--database",
            f"sqlite:///{tmp_path / 'demo.db'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "create-order" in done.stdout
    assert "the order service is unavailable" in done.stdout
    assert done.stdout.count("compensated") == 5  # four steps, and the heading
    assert "the authorization voided at the gateway" in done.stdout
    assert "run reverted" in done.stdout
