"""The storefront API's OpenAPI document: it loads and validates, and fuzzing it finds no 500.

schemathesis loads the document from the app in-process (ASGI) and validates it as OpenAPI
while doing so; then it generates requests for every operation (valid and invalid ones,
deterministically, a modest number each) and checks that no answer is a server error and
that every answer is one the document declares.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from storefront_support import ADMIN, Harness, storefront_harness

OPERATIONS = {
    ("post", "/store/payment-collections"),
    ("post", "/store/payment-collections/{collection_id}/payment-sessions"),
    ("post", "/store/carts/{cart_id}/complete"),
    ("post", "/admin/payments/{payment_id}/capture"),
    ("post", "/admin/payments/{payment_id}/refund"),
    ("post", "/admin/payments/{payment_id}/cancel"),
    ("post", "/hooks/payment/{provider_id}"),
    ("get", "/admin/workflows/runs/{transaction_id}"),
}


@pytest.fixture
def api_schema(tmp_path: Path) -> Iterator[Any]:
    """The app's OpenAPI document, loaded (and validated as OpenAPI) by schemathesis."""
    with storefront_harness(f"sqlite:///{tmp_path / 'shop.db'}", run_worker=False) as shop:
        yield schemathesis.openapi.from_asgi("/openapi.json", shop.app)


def test_openapi_document_lists_every_route(api_schema: Any) -> None:
    """The document validates as OpenAPI 3.1 and holds exactly the issue's routes."""
    api_schema.validate()  # against the OpenAPI 3.1 meta-schema (raises when invalid)
    document = api_schema.raw_schema
    assert document["openapi"].startswith("3.1")
    found = {(method, path) for path, item in document["paths"].items() for method in item}
    assert found == OPERATIONS
    for path, item in document["paths"].items():
        for operation in item.values():
            assert operation["summary"]
            assert (
                "200" in operation["responses"]
                or "201" in operation["responses"]
                or ("202" in operation["responses"])
            )
            secured = bool(operation.get("security"))
            assert secured == path.startswith("/admin/"), path
    schemes = document["components"]["securitySchemes"]
    broken = copy.deepcopy(document)
    broken["paths"]["/store/carts/{cart_id}/complete"]["post"]["responses"] = "none"
    with pytest.raises(jsonschema_rs.ValidationError):  # the validation above is a real one
        schemathesis.openapi.from_dict(broken).validate()
    assert schemes["AdminKey"] == {
        "type": "apiKey", "in": "header", "name": "X-Admin-Key",
        "description": "The admin API key (STOREFRONT_ADMIN_API_KEY).",
    }  # fmt: skip


def real_ids(shop: Harness) -> dict[str, str]:
    """Path parameters that exist: an authorized payment, its cart, collection and run."""
    order = shop.paid_order()
    collection = shop.storefront.module.retrieve_payment_collection_for_cart(order["cart_id"])
    return {
        "payment_id": order["payment_id"],
        "cart_id": order["cart_id"],
        "collection_id": collection.id,
        "transaction_id": str(shop.storefront.carts.state(order["cart_id"]).checkout_run),
        "provider_id": "pp_test",
    }


def strategies(schema: Any, ids: dict[str, str]) -> Iterator[tuple[str, Any]]:
    """Per operation: valid requests, invalid requests, and valid ones on ids that exist."""
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        yield f"{label} positive", operation.as_strategy(GenerationMode.POSITIVE)
        yield f"{label} negative", operation.as_strategy(GenerationMode.NEGATIVE)
        names = {p.name for p in operation.path_parameters}
        if names:
            real = {name: ids[name] for name in names}
            yield f"{label} real ids", operation.as_strategy(path_parameters=real)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_fuzzed_requests_never_get_a_server_error(tmp_path: Path) -> None:
    """Fuzzed requests never get a 5xx, and every answer is one the document declares."""
    with storefront_harness(f"sqlite:///{tmp_path / 'shop.db'}", run_worker=False) as shop:
        ids = real_ids(shop)
        schema = schemathesis.openapi.from_asgi("/openapi.json", shop.app)
        checked = []
        for label, strategy in strategies(schema, ids):

            @given(case=strategy)
            @settings(max_examples=25, derandomize=True, database=None, deadline=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            def call(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=ADMIN, checks=CHECKS)

            call()
            checked.append(label)
        assert len(checked) == 8 * 2 + 7
