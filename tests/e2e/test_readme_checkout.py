"""The README's "Compose your own checkout" section: every code block runs, in order, and does
what its text says (so the section cannot rot), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from payment import PaymentModule, SessionStatus

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Compose your own checkout"
README_URL = "sqlite:///shop.db"


def section_blocks() -> list[str]:
    """The ```python blocks of the section, in order."""
    text = README.read_text()
    start = text.index(f"\n{SECTION}\n")
    end = text.index("\n## ", start + 1)
    return re.findall(r"^```python\n(.*?)^```$", text[start:end], flags=re.DOTALL | re.MULTILINE)


@pytest.fixture
def snapshots(database_url: str, capsys: pytest.CaptureFixture[str]) -> Iterator[list[Any]]:
    """What each block left in the shared namespace, the blocks run on the test database;
    the last item is what they printed."""
    namespace: dict[str, Any] = {"__name__": "readme"}
    after: list[Any] = []
    try:
        for block in section_blocks():
            code = compile(block.replace(README_URL, database_url), str(README), "exec")
            exec(code, namespace)
            after.append(dict(namespace))
        after.append(capsys.readouterr().out)
        yield after
    finally:
        module = namespace.get("module")
        if isinstance(module, PaymentModule):
            module.close()


def test_the_section_has_its_five_blocks_and_the_setup_names_the_database() -> None:
    """Setup, collection and session, authorize, capture/refund, and the module way."""
    blocks = section_blocks()
    assert len(blocks) == 5
    assert README_URL in blocks[0]


def test_workflow_way_walks_the_four_stages(snapshots: list[Any]) -> None:
    """Collection for the cart, a requires_more session, authorized after the action,
    80.00 captured and 30.00 refunded."""
    collection = snapshots[1]["collection"]
    assert collection.cart_id == "cart_123"
    assert collection.amount == Decimal("120.00")
    authorized = snapshots[2]
    assert authorized["waiting"].status is SessionStatus.REQUIRES_MORE
    assert authorized["payment"].payment_session_id == authorized["session"].id
    refunded = snapshots[3]["refunded"]
    assert (refunded.captured_amount, refunded.refunded_amount) == (Decimal("80"), Decimal("30"))
    assert "three_d_secure" in snapshots[-1]  # the printed action


def test_module_way_takes_the_additional_action_path(snapshots: list[Any]) -> None:
    """authorize raises, the listed session says requires_more, authorizing again pays."""
    done = snapshots[4]
    assert done["session"].status is SessionStatus.REQUIRES_MORE  # as listed in the except
    payment = done["payment"]
    assert payment.payment_session_id == done["session"].id
    assert (payment.captured_amount, payment.refunded_amount) == (Decimal("80"), Decimal("30"))
    assert payment.refunds[0].note == "a tee came back"
