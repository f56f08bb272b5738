"""`flowkit.logging.configure`: dev and JSON rendering, levels, redaction, and flowkit's events."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import structlog
from attrs import frozen

import flowkit
import flowkit.logging
from flowkit import Engine, StepContext, WorkflowResponse, step
from flowkit.logging import REDACTED, RedactSecrets


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """Each test starts and ends with structlog unconfigured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line written, parsed as JSON."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@frozen
class Card:
    """An attrs value with a secret field."""

    brand: str
    card_number: str


@step("greet")
def greet(name: str, ctx: StepContext) -> str:
    """Say hello."""
    return f"hello {name}"


@flowkit.workflow("greeting")
def greeting(name: flowkit.Ref[str]) -> WorkflowResponse[str]:
    """One step."""
    return WorkflowResponse(greet(name))


def test_production_lines_are_json_with_level_and_timestamp() -> None:
    """`dev=False` writes one JSON object per line with level and an ISO 8601 UTC timestamp."""
    out = io.StringIO()
    flowkit.logging.configure(dev=False, stream=out)
    structlog.get_logger().info("paid", amount=Decimal("10.50"))
    [line] = json_lines(out)
    assert line["event"] == "paid"
    assert line["level"] == "info"
    assert line["amount"] == "10.50"
    assert line["timestamp"].endswith("Z")


def test_dev_output_contains_the_event_without_colour_off_a_terminal() -> None:
    """`dev=True` renders a readable line; no ANSI codes when the stream is not a terminal."""
    out = io.StringIO()
    flowkit.logging.configure(dev=True, stream=out)
    structlog.get_logger().warning("refund_failed", payment="pay_1")
    text = out.getvalue()
    assert "refund_failed" in text
    assert "payment=pay_1" in text
    assert "\x1b[" not in text


def test_level_filters_lower_events() -> None:
    """Events below the configured level are dropped."""
    out = io.StringIO()
    flowkit.logging.configure(dev=False, level="WARNING", stream=out)
    log = structlog.get_logger()
    log.info("quiet")
    log.error("loud")
    assert [line["event"] for line in json_lines(out)] == ["loud"]


def test_unknown_level_is_refused() -> None:
    """A level name that does not exist raises at configuration."""
    with pytest.raises(ValueError, match="unknown log level"):
        flowkit.logging.configure(level="CHATTY")


def test_secrets_are_redacted_in_nested_structures() -> None:
    """Secret keys are hidden at any depth, in dicts, lists and attrs values."""
    out = io.StringIO()
    flowkit.logging.configure(dev=False, stream=out)
    headers = {"Authorization": "Bearer abc", "Accept": "json"}
    structlog.get_logger().info(
        "call",
        password="hunter2",
        request={"headers": headers, "items": [{"stripe_api_key": "sk_live"}]},
        card=Card("visa", "4242424242424242"),
    )
    [line] = json_lines(out)
    assert line["password"] == REDACTED
    assert line["request"]["headers"] == {"Authorization": REDACTED, "Accept": "json"}
    assert line["request"]["items"] == [{"stripe_api_key": REDACTED}]
    assert line["card"] == {"brand": "visa", "card_number": REDACTED}
    assert "4242424242424242" not in out.getvalue()  # (a timestamp may hold "4242")
    assert headers["Authorization"] == "Bearer abc"  # the caller's dict is not modified


def test_redaction_keys_are_configurable() -> None:
    """`redact=` replaces the default keys."""
    out = io.StringIO()
    flowkit.logging.configure(dev=False, redact=("iban",), stream=out)
    structlog.get_logger().info("payout", iban="DE89", password="kept")
    [line] = json_lines(out)
    assert (line["iban"], line["password"]) == (REDACTED, "kept")


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("DB_PASSWORD", True),
        ("X-Api-Key", True),
        ("client_secret", True),
        ("transaction_id", False),
        ("passwords_reset_count", False),
        ("secretary", False),
    ],
)
def test_which_keys_are_secret(key: str, secret: bool) -> None:
    """A key matches a secret name exactly or as its `_`-separated suffix, in any case."""
    assert RedactSecrets().is_secret(key) is secret


def test_exception_tracebacks_leave_out_local_variables() -> None:
    """Logged exceptions never carry the frame's locals (they may hold secrets)."""
    out = io.StringIO()
    flowkit.logging.configure(dev=False, stream=out)
    api_token_value = "tok_very_secret"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger().exception("failed")
    assert api_token_value not in out.getvalue()
    [line] = json_lines(out)
    assert line["exception"][0]["exc_type"] == "RuntimeError"


def test_flowkit_events_reach_both_structlog_and_subscribers() -> None:
    """Once configured, run events go to the log and still to `Engine.subscribe` handlers."""
    out = io.StringIO()
    flowkit.logging.configure(dev=False, level="DEBUG", stream=out)
    seen: list[str] = []
    with Engine() as engine:
        engine.subscribe(lambda event: seen.append(event.name))
        engine.run(greeting, "ada", transaction_id="tx-log")
    logged = [line for line in json_lines(out) if line.get("transaction_id") == "tx-log"]
    assert [line["event"] for line in logged] == seen
    assert {"run_started", "step_succeeded", "run_finished"} <= set(seen)
    finished = logged[-1]
    assert (finished["workflow"], finished["level"]) == ("greeting", "info")


def test_info_level_logs_run_outcomes_but_not_step_events() -> None:
    """At INFO, step events (DEBUG) are left out and the run's outcome is logged."""
    out = io.StringIO()
    flowkit.logging.configure(dev=False, level="INFO", stream=out)
    with Engine() as engine:
        engine.run(greeting, "ada")
    events = [line["event"] for line in json_lines(out)]
    assert "run_finished" in events
    assert "step_succeeded" not in events


def test_library_stays_silent_when_not_configured(capsys: pytest.CaptureFixture[str]) -> None:
    """Without `configure()`, a run writes nothing anywhere."""
    with Engine() as engine:
        engine.run(greeting, "ada")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")
