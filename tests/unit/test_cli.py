"""The `flowkit` command line without a populated database: parsing, rendering, error paths."""

from __future__ import annotations

import enum
import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import click
import pytest
from attrs import frozen
from click.testing import CliRunner, Result

from flowkit import RunRecord, StepError, StepRecord, StepState, TransactionState
from flowkit.cli import DEFAULT_DATABASE_URL, cli
from flowkit.cli._options import parse_duration, since_value
from flowkit.cli._reading import timeline
from flowkit.cli._render import jsonable, run_json

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run `flowkit ARGS` in-process."""
    return CliRunner().invoke(cli, list(args), env=env)


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


@pytest.fixture
def empty_sqlite(tmp_path: Path) -> str:
    """The URL of a SQLite database that exists but holds no flowkit schema."""
    path = tmp_path / "other.db"
    sqlite3.connect(path).close()
    return f"sqlite:///{path}"


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h30m", 5400), ("2d", 172_800), ("1w", 604_800), ("0.5h", 1800)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    """Durations combine units from seconds to weeks, decimals included."""
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "7", "d", "1x", "1h 2", "-1h", "2026-01-01"])
def test_non_durations_are_refused(text: str) -> None:
    """Anything but number-unit pairs is not a duration."""
    assert parse_duration(text) is None


def test_since_reads_naive_iso_as_utc() -> None:
    """A datetime without an offset is UTC, the zone the tables print."""
    param = click.Option(["--since"])
    assert since_value(click.Context(cli), param, "2026-01-02T03:04:05") == T0


def test_since_keeps_an_explicit_offset() -> None:
    """A datetime with an offset keeps it."""
    param = click.Option(["--since"])
    moment = since_value(click.Context(cli), param, "2026-01-02T05:04:05+02:00")
    assert moment == T0


def test_since_reads_a_duration_as_that_long_ago() -> None:
    """`--since 2h` means two hours before now."""
    param = click.Option(["--since"])
    moment = since_value(click.Context(cli), param, "2h")
    expected = datetime.now(UTC) - timedelta(hours=2)
    assert abs((moment - expected).total_seconds()) < 5


def test_default_database_is_the_demo_file() -> None:
    """Read-only commands default to the demo's SQLite file in the current directory."""
    assert DEFAULT_DATABASE_URL == "sqlite:///flowkit-demo.db"


# --- rendering ------------------------------------------------------------------------------


class Color(enum.Enum):
    """An enum for the JSON conversion test."""

    RED = "red"


@frozen
class Parcel:
    """An attrs value for the JSON conversion test."""

    weight: Decimal
    tags: frozenset[str]


def test_jsonable_keeps_exact_values_as_strings() -> None:
    """Decimal and UUID become strings, datetimes ISO 8601, attrs objects their fields."""
    ident = uuid.UUID(int=1)
    value = {"amount": Decimal("10.50"), "id": ident, "at": T0, "color": Color.RED}
    value["parcel"] = Parcel(Decimal("1.25"), frozenset({"b", "a"}))
    assert jsonable(value) == {
        "amount": "10.50",
        "id": str(ident),
        "at": "2026-01-02T03:04:05+00:00",
        "color": "red",
        "parcel": {"weight": "1.25", "tags": ["a", "b"]},
    }


def _record(steps: dict[str, StepRecord], errors: tuple[StepError, ...] = ()) -> RunRecord:
    return RunRecord(
        transaction_id="tx",
        workflow="wf",
        status=TransactionState.REVERTED,
        input={"n": Decimal("1")},
        output=None,
        errors=errors,
        steps=steps,
        owner=None,
        lease_expires_at=None,
        created_at=T0,
        updated_at=T0,
    )


def test_timeline_separates_invoke_and_compensation() -> None:
    """A compensated step shows its invoke's state and, apart, its compensation's."""
    later = T0 + timedelta(seconds=1)
    steps = {
        "b": StepRecord("b", StepState.REVERTED, 2, later, later, later, StepState.FAILED),
        "a": StepRecord(
            "a", StepState.REVERTED, 1, T0, T0 + timedelta(milliseconds=5), later, StepState.DONE
        ),
    }
    error = StepError("b", "invoke", "x.Declined", "no")
    lines = timeline(_record(steps, (error,)))
    assert [(line.name, line.state, line.compensation) for line in lines] == [
        ("a", StepState.DONE, StepState.REVERTED),
        ("b", StepState.FAILED, StepState.REVERTED),
    ]
    assert lines[0].duration == pytest.approx(0.005)
    assert lines[1].error == error


def test_run_json_has_stable_keys() -> None:
    """`--json` objects carry the same keys in the same order for every run."""
    data = run_json(_record({}), steps=[])
    assert list(data) == [
        "transaction_id",
        "workflow",
        "status",
        "version",
        "fingerprint",
        "created_at",
        "updated_at",
        "owner",
        "lease_expires_at",
        "queue",
        "wake_at",
        "start_at",
        "input",
        "output",
        "errors",
        "steps",
    ]
    assert json.loads(json.dumps(data))["input"] == {"n": "1"}


# --- commands without a database ------------------------------------------------------------


def test_help_lists_every_command() -> None:
    """`flowkit --help` names each command."""
    result = invoke("--help")
    assert result.exit_code == 0
    for name in ("runs", "graph", "recover", "signal", "cancel", "purge"):
        assert name in result.stdout


def test_missing_sqlite_file_is_one_line_not_an_empty_new_database(tmp_path: Path) -> None:
    """A SQLite path that does not exist is reported, and no empty file is left behind."""
    path = tmp_path / "absent.db"
    result = invoke("runs", "list", "--database-url", f"sqlite:///{path}")
    assert_one_line_error(result, 1, "no SQLite database", str(path))
    assert not path.exists()


def test_unusable_url_is_one_line() -> None:
    """A URL SQLAlchemy cannot use is one line naming it."""
    result = invoke("runs", "list", "--database-url", "nosuchdb://somewhere")
    assert_one_line_error(result, 1, "cannot use database URL")


def test_database_without_schema_is_one_line(empty_sqlite: str) -> None:
    """A database without flowkit's tables says so and points to the migrations."""
    result = invoke("runs", "show", "tx", "--database-url", empty_sqlite)
    assert_one_line_error(result, 1, "no flowkit schema")


def test_database_url_comes_from_the_environment(empty_sqlite: str) -> None:
    """`FLOWKIT_DATABASE_URL` is read when `--database-url` is absent."""
    result = invoke("purge", env={"FLOWKIT_DATABASE_URL": empty_sqlite})
    assert_one_line_error(result, 1, "no flowkit schema")


@pytest.mark.parametrize("since", ["yesterday", "1x", "2026-13-01"])
def test_bad_since_is_a_one_line_usage_error(since: str) -> None:
    """An unreadable `--since` exits 2 before touching the database."""
    result = invoke("runs", "list", "--since", since)
    assert_one_line_error(result, 2, "--since", repr(since))


def test_bad_older_than_is_a_one_line_usage_error() -> None:
    """`purge --older-than` takes a duration only."""
    result = invoke("purge", "--older-than", "2026-01-01")
    assert_one_line_error(result, 2, "--older-than")


def test_malformed_data_is_a_one_line_usage_error() -> None:
    """`signal --data` must be JSON; the error says where it broke."""
    result = invoke("signal", "tx", "step", "--success", "--data", "{oops", "--app", "m:engine")
    assert_one_line_error(result, 2, "--data", "malformed JSON")


def test_signal_needs_an_outcome() -> None:
    """`signal` without --success or --failure is a usage error."""
    result = invoke("signal", "tx", "step", "--app", "m:engine")
    assert result.exit_code == 2
    assert "give --success or --failure" in result.stderr


@pytest.mark.parametrize("app", ["engine", "m:", ":engine", "my-app:engine", "m:1x"])
def test_malformed_app_string_is_a_one_line_usage_error(app: str) -> None:
    """`--app` must look like MODULE:ATTR."""
    assert_one_line_error(invoke("cancel", "tx", "--app", app), 2, "not MODULE:ATTR")


def test_app_from_a_missing_module_is_a_usage_error() -> None:
    """A module that does not exist is named."""
    result = invoke("recover", "--app", "no_such_module_here:engine")
    assert_one_line_error(result, 2, "no module named 'no_such_module_here'")


def test_app_with_a_missing_attribute_is_a_usage_error() -> None:
    """An attribute the module lacks is named."""
    result = invoke("recover", "--app", "os:no_such_engine")
    assert_one_line_error(result, 2, "has no attribute 'no_such_engine'")


def test_app_that_is_not_an_engine_is_a_usage_error() -> None:
    """A non-callable attribute that is not an Engine is refused, naming its type."""
    result = invoke("recover", "--app", "os:sep")
    assert_one_line_error(result, 2, "builtins.str", "not an Engine")


def test_app_factory_that_raises_is_one_line() -> None:
    """A factory that raises is reported with its exception, exit 1."""
    result = invoke("recover", "--app", "json:dumps")
    assert_one_line_error(result, 1, "calling 'json:dumps' failed: TypeError")


def test_graph_of_something_that_is_not_a_workflow() -> None:
    """`graph` refuses an attribute that is not a Workflow."""
    result = invoke("graph", "flowkit:Engine")
    assert_one_line_error(result, 2, "not a flowkit Workflow")
