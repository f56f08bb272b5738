"""Values at rest are encrypted (spec §12): nothing of a run's values is readable in the store."""

from __future__ import annotations

import base64
import io
import json
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from rich.console import Console
from sealed_app import ALL, MARKERS, Payload, sealed, sealed_wait

from flowkit import (
    DefinitionError,
    Encryption,
    EncryptionKeyMissing,
    Engine,
    Secret,
    SecretNotProtected,
    TransactionConflict,
    TransactionState,
)
from flowkit.cli import cli
from flowkit.reading import ENCRYPTED
from flowkit.sqlalchemy import SqlStore
from flowkit.testing.faults import Crash, FailurePlan, PlanFaults

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # the examples live beside the packages, not inside one
    sys.path.insert(0, ROOT)

from examples.accept_payment import run_demo  # noqa: E402

K1, K2 = b"1" * 32, b"2" * 32


def keys(primary: str = "k1", **extra: bytes) -> Encryption:
    """An Encryption holding k1 (and `extra` keys)."""
    return Encryption({"k1": K1, **extra}, primary)


@pytest.fixture
def url(database_url: str) -> str:
    """A database with flowkit's tables."""
    store = SqlStore(database_url)
    store.create_all()
    store.close()
    return database_url


def engine(url: str, encryption: Encryption | None) -> Engine:
    """An engine on `url` holding the sealed workflows."""
    return Engine(SqlStore(url), ALL, encryption=encryption)


def everything_stored(url: str) -> bytes:
    """The raw bytes of a SQLite file and its WAL, or every column of every table on PG."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    db = sa.create_engine(url)
    try:
        with db.connect() as conn:
            tables = conn.execute(
                sa.text(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                )
            ).scalars()
            rows = [
                str(row)
                for table in list(tables)
                for row in conn.execute(sa.text(f'SELECT CAST(t AS text) FROM "{table}" t'))
            ]
    finally:
        db.dispose()
    return "\n".join(rows).encode()


def test_no_value_is_readable_at_rest(url: str) -> None:
    """Inputs, outputs, compensate inputs, errors, signals and secrets leave no marker behind."""
    with engine(url, keys()) as eng:
        done = eng.run(
            sealed, Payload("MARK-INPUT-a", Secret("MARK-SECRET-pw")), transaction_id="tx-done"
        )
        failed = eng.run(
            sealed,
            Payload("MARK-INPUT-b", fail=True),
            transaction_id="tx-fail",
            throw_on_error=False,
        )
        eng.run(sealed_wait, Payload("MARK-INPUT-c"), transaction_id="tx-wait")
        eng.set_step_success("tx-wait", "wait", "MARK-SIGNAL-ok")
        eng.faults["tx-early"] = PlanFaults(FailurePlan(crash=Crash("take", "invoke", "after")))
        with pytest.raises(BaseException, match="simulated crash"):
            eng.run(sealed_wait, Payload("MARK-INPUT-d"), transaction_id="tx-early")
        eng.set_step_failure("tx-early", "wait", "MARK-SIGNAL-early")  # kept in the inbox
    assert done.status is TransactionState.DONE
    assert failed.status is TransactionState.REVERTED
    assert "MARK-ERROR" in failed.errors[0].message
    stored = everything_stored(url)
    assert b"tx-done" in stored or url.startswith("postgres")  # ids stay in clear
    for marker in MARKERS:
        assert marker.encode() not in stored, marker
    with engine(url, keys()) as again:
        record = again.get("tx-done")
        assert record is not None
        assert record.input == Payload("MARK-INPUT-a", Secret("MARK-SECRET-pw"))
        assert record.output == {"taken": "MARK-OUTPUT MARK-INPUT-a", "checked": "checked"}
        assert again.get("tx-wait").status is TransactionState.DONE  # type: ignore[union-attr]
        assert again.get("tx-fail").errors[0].message.startswith("MARK-ERROR")  # type: ignore[union-attr]


def test_ids_names_statuses_and_times_stay_queryable(url: str) -> None:
    """Lists by status and workflow work on encrypted runs, and the same id is idempotent."""
    with engine(url, keys()) as eng:
        eng.run(sealed, Payload("MARK-INPUT"), transaction_id="tx-1")
        again = eng.run(sealed, Payload("MARK-INPUT"), transaction_id="tx-1")
        assert again.status is TransactionState.DONE
        with pytest.raises(TransactionConflict):
            eng.run(sealed, Payload("other"), transaction_id="tx-1")
        [listed] = eng.list(status="done", workflow="sealed")
        assert listed.input == Payload("MARK-INPUT")


def test_restart_continues_parked_and_crashed_runs(url: str) -> None:
    """With the same keys, a new engine signals a parked run and recovers a crashed one."""
    with engine(url, keys()) as first:
        first.run(sealed_wait, Payload("MARK-INPUT-p"), transaction_id="tx-park")
        first.faults["tx-crash"] = PlanFaults(FailurePlan(crash=Crash("take", "invoke", "after")))
        with pytest.raises(BaseException, match="simulated crash"):
            first.run(sealed, Payload("MARK-INPUT-c"), transaction_id="tx-crash")
    with engine(url, keys()) as second:
        second.store.expire_lease("tx-crash")
        [recovered] = second.recover()
        assert recovered.result == {"taken": "MARK-OUTPUT MARK-INPUT-c", "checked": "checked"}
        signalled = second.set_step_success("tx-park", "wait", {"answer": "MARK-SIGNAL"})
        assert signalled.status is TransactionState.DONE
        assert signalled.result == {"answer": "MARK-SIGNAL"}
    for marker in MARKERS:
        assert marker.encode() not in everything_stored(url), marker


def test_only_an_empty_error_list_stays_in_clear(url: str) -> None:
    """A done run's errors column is the constant `[]`; a failed run's errors are sealed."""
    with engine(url, keys()) as eng:
        eng.run(sealed, Payload("MARK-INPUT-a"), transaction_id="tx-ok")
        eng.run(
            sealed,
            Payload("MARK-INPUT-b", fail=True),
            transaction_id="tx-bad",
            throw_on_error=False,
        )
        inner = eng.store.inner  # type: ignore[attr-defined]
        assert inner.get_run("tx-ok").errors == "[]"
        assert inner.get_run("tx-bad").errors.startswith("fk1:k1:")
        assert eng.get("tx-bad").errors  # type: ignore[union-attr]


def test_rotation_reads_old_values_and_writes_with_the_new_primary(url: str) -> None:
    """After adding k2 as primary, runs under k1 are read and new values name k2."""
    with engine(url, keys()) as old:
        old.run(sealed_wait, Payload("MARK-INPUT-old"), transaction_id="tx-old")
    with engine(url, keys("k2", k2=K2)) as rotated:
        done = rotated.set_step_success("tx-old", "wait", "late")
        assert done.result == "late"
        rotated.run(sealed, Payload("MARK-INPUT-new"), transaction_id="tx-new")
        raw = rotated.store.inner.get_run("tx-new")  # type: ignore[attr-defined]
        assert raw.input.startswith("fk1:k2:")
        assert rotated.store.inner.get_run("tx-old").input.startswith("fk1:k1:")  # type: ignore[attr-defined]
        assert rotated.get("tx-old").input == Payload("MARK-INPUT-old")  # type: ignore[union-attr]


def test_missing_key_is_named_and_changes_nothing(url: str) -> None:
    """Without the key a run was written with, reading or continuing it names the key id."""
    with engine(url, keys()) as eng:
        eng.run(sealed_wait, Payload("MARK-INPUT"), transaction_id="tx-k1")
    with engine(url, Encryption({"k2": K2}, "k2")) as other:
        with pytest.raises(EncryptionKeyMissing, match="'k1'") as caught:
            other.get("tx-k1")
        assert caught.value.key_id == "k1"
        with pytest.raises(EncryptionKeyMissing, match="'k1'"):
            other.set_step_success("tx-k1", "wait", "x")
    with engine(url, None) as plain:
        with pytest.raises(EncryptionKeyMissing, match="no encryption"):
            plain.get("tx-k1")
        record = plain.get("tx-k1", decode=False)
        assert record is not None
        assert (record.input, record.status) == (ENCRYPTED, TransactionState.WAITING)
    with engine(url, keys()) as back:
        assert back.get("tx-k1").status is TransactionState.WAITING  # type: ignore[union-attr]
        assert back.set_step_success("tx-k1", "wait", "x").status is TransactionState.DONE


def test_a_secret_without_encryption_is_refused_and_nothing_stored(url: str) -> None:
    """Starting a run that carries a Secret on a plain engine raises and writes no row."""
    with engine(url, None) as plain:
        with pytest.raises(SecretNotProtected, match="the run's input"):
            plain.run(
                sealed, Payload("MARK-INPUT", Secret("MARK-SECRET-pw")), transaction_id="tx-s"
            )
        with pytest.raises(SecretNotProtected):
            plain.enqueue(sealed, {"s": Secret(1)}, transaction_id="tx-q")
        assert plain.get("tx-s") is None
        assert plain.get("tx-q") is None
    assert b"MARK-SECRET" not in everything_stored(url)


def test_key_file_and_bad_keys(tmp_path: Path) -> None:
    """Keys load from a JSON key file; malformed keys and files are DefinitionErrors."""
    path = tmp_path / "keys.json"
    path.write_text(
        json.dumps({"primary": "k2", "keys": {"k1": base64.b64encode(K1).decode(), "k2": "Mg=="}})
    )
    with pytest.raises(DefinitionError, match="16, 24 or 32 bytes"):
        Encryption.from_key_file(path)
    good = {"k1": base64.b64encode(K1).decode(), "k2": base64.b64encode(K2).decode()}
    path.write_text(json.dumps({"primary": "k2", "keys": good}))
    loaded = Encryption.from_key_file(path)
    assert (loaded.primary, loaded.key_ids) == ("k2", frozenset({"k1", "k2"}))
    assert loaded.open(loaded.seal("x")) == "x"
    path.write_text("{}")
    with pytest.raises(DefinitionError, match="key file"):
        Encryption.from_key_file(path)
    with pytest.raises(DefinitionError, match="primary"):
        Encryption({"k1": K1}, "k9")
    with pytest.raises(DefinitionError, match="key ids"):
        Encryption({"k:1": K1}, "k:1")
    assert len(Encryption.new_key()) == 32
    assert "1111" not in repr(keys())


def test_cli_shows_encrypted_without_key_file_and_clear_with_it(url: str, tmp_path: Path) -> None:
    """`runs show`/`runs list` print <encrypted> without --key-file and the values with it."""
    with engine(url, keys()) as eng:
        eng.run(
            sealed,
            Payload("MARK-INPUT-cli", fail=True),
            transaction_id="tx-cli",
            throw_on_error=False,
        )
    key_file = tmp_path / "keys.json"
    key_file.write_text(
        json.dumps({"primary": "k1", "keys": {"k1": base64.b64encode(K1).decode()}})
    )
    runner = CliRunner()
    hidden = runner.invoke(cli, ["runs", "show", "tx-cli", "--json", "--database-url", url])
    assert hidden.exit_code == 0, hidden.output
    shown = json.loads(hidden.stdout)
    assert (shown["input"], shown["status"]) == (ENCRYPTED, "reverted")
    assert "MARK" not in hidden.output
    listed = runner.invoke(cli, ["runs", "list", "--database-url", url])
    assert listed.exit_code == 0
    assert "tx-cli" in listed.output
    assert "MARK" not in listed.output
    clear = runner.invoke(
        cli,
        ["runs", "show", "tx-cli", "--json", "--database-url", url, "--key-file", str(key_file)],
    )
    assert clear.exit_code == 0, clear.output
    assert "MARK-INPUT-cli" in clear.stdout
    assert "MARK-ERROR" in clear.stdout
    bad = runner.invoke(cli, ["runs", "list", "--database-url", url, "--key-file", str(tmp_path)])
    assert bad.exit_code == 2
    assert "--key-file" in bad.output


def test_whole_demo_flow_with_encryption(tmp_path: Path) -> None:
    """The accept-payment demo (3-D Secure, resume, capture, refund) runs with encryption on and
    leaves no run value readable in the flowkit tables."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    collection = run_demo(url, Console(file=io.StringIO()), keys())
    assert (collection.captured_amount, collection.refunded_amount) == (
        Decimal("80.00"),
        Decimal("30.00"),
    )
    db = sa.create_engine(url)
    with db.connect() as conn:
        names = [n for n in sa.inspect(conn).get_table_names() if n.startswith("flowkit_")]
        stored = repr([list(conn.execute(sa.text(f'SELECT * FROM "{n}"'))) for n in names])
    db.dispose()
    assert "accept-cart_" in stored  # ids in clear
    for marker in ("customer returned an item", "requires_more", "3ds", "80.00", "pay_col_"):
        assert marker not in stored, marker
