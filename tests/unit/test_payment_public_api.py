"""The public surface of `payment` and the purity of its domain."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import payment

EXPECTED = {
    "AccountHolder", "AccountHolderInput", "AccountHolderOutput", "AmountInput", "Capture",
    "CaptureExceedsAuthorized", "Cart", "CartNotEligible", "CartService", "CollectionStatus",
    "FrozenJson",
    "InvalidAmount", "InvalidCurrency", "InvalidData", "NewPaymentCollection", "NewRefundReason",
    "NotFound", "OperationState", "Payment", "PaymentAction", "PaymentActionRequired",
    "PaymentAlreadyAuthorized", "PaymentAlreadyCaptured", "PaymentCanceled", "PaymentCollection",
    "PaymentError", "PaymentModule", "PaymentNotAuthorized", "PaymentProvider",
    "PaymentProviderInfo", "PaymentSession", "ProviderCall", "ProviderContext",
    "ProviderCustomer", "ProviderDisabled", "ProviderError", "ProviderInput", "ProviderNotFound",
    "ProviderOutput", "ProviderStatus", "Refund", "RefundExceedsCaptured", "RefundReason",
    "SessionStatus", "SupportsAccountHolders", "SystemProvider", "TestProvider", "Webhook",
    "WebhookAction", "WebhookSignatureError", "currency_digits", "make_payment_module",
    "normalize_currency", "register", "release_expired_authorizations_schedule", "to_amount",
}  # fmt: skip


def test_all_is_sorted_and_pinned() -> None:
    """`payment.__all__` is sorted and lists exactly the public names."""
    assert payment.__all__ == sorted(payment.__all__)
    assert set(payment.__all__) == EXPECTED
    assert all(hasattr(payment, name) for name in payment.__all__)


def test_public_names_are_documented() -> None:
    """Every exported class and function has a docstring."""
    undocumented = [
        name
        for name in payment.__all__
        if callable(getattr(payment, name)) and not (getattr(payment, name).__doc__ or "").strip()
    ]
    assert undocumented == []


def _imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def _module_file(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None
    assert spec.origin is not None
    return Path(spec.origin)


def _imports_of(name: str) -> set[str]:
    """The modules `name`'s own source imports (what import-linter looks at)."""
    tree = ast.parse(_module_file(name).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_domain_and_money_import_neither_sqlalchemy_nor_flowkit() -> None:
    """payment.domain and payment.money, and all they import from payment, stay pure."""
    todo = ["payment.domain", "payment.money"]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for imported in _imports_of(name):
            assert imported.split(".")[0] not in {"sqlalchemy", "flowkit", "alembic"}, name
            if imported.startswith("payment"):
                todo.append(imported)
    assert {"payment.domain.records", "payment.exceptions"} <= seen


def test_importing_payment_connects_to_nothing() -> None:
    """Importing the package opens no database driver."""
    loaded = _imported_after("payment")
    assert "psycopg" not in loaded
    assert "sqlite3" not in loaded
