"""`flowkit ui --key-file`: encrypted values shown in clear with the keys, `<encrypted>` without."""

from __future__ import annotations

import base64
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import flowkit
from flowkit import Encryption, Engine, StepContext, WorkflowResponse, step, workflow
from flowkit.cli import cli
from flowkit.sqlalchemy import SqlStore

with warnings.catch_warnings():  # starlette warns that its TestClient still uses httpx
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

KEY = b"k" * 32
MARK = "MARK-console-input"


@step("keep")
def keep(note: str, ctx: StepContext) -> dict[str, str]:
    """Return the note (stored encrypted)."""
    return {"kept": f"{note}-output"}


@workflow("sealed-note")
def sealed_note(note: flowkit.Ref[str]) -> WorkflowResponse[dict[str, str]]:
    """One step over an encrypted store."""
    return WorkflowResponse(keep(note))


@pytest.fixture
def sealed_db(tmp_path: Path) -> tuple[str, Path]:
    """A database holding one run encrypted under KEY, and the key file that opens it."""
    url = f"sqlite:///{tmp_path}/sealed.db"
    store = SqlStore(url)
    store.create_all()
    with Engine(store, [sealed_note], encryption=Encryption({"k1": KEY}, "k1")) as engine:
        engine.run(sealed_note, MARK, transaction_id="tx-sealed")
    key_file = tmp_path / "keys.json"
    key_file.write_text(
        json.dumps({"primary": "k1", "keys": {"k1": base64.b64encode(KEY).decode()}})
    )
    return url, key_file


def _serve(monkeypatch: pytest.MonkeyPatch, *args: str) -> dict[str, Any]:
    """Run `flowkit ui ARGS`, answering the run's page and JSON instead of serving them."""
    seen: dict[str, Any] = {}

    def fake_run(app: Any, host: str, port: int, log_level: str) -> None:
        with TestClient(app) as test_client:
            seen["json"] = test_client.get("/api/runs/tx-sealed").json()
            seen["page"] = test_client.get("/runs/tx-sealed").text
            seen["list"] = test_client.get("/").text

    monkeypatch.setattr("flowkit.ui.command.uvicorn.run", fake_run)
    shown = CliRunner().invoke(cli, ["ui", *args])
    seen["exit_code"], seen["output"] = shown.exit_code, shown.output
    return seen


def test_without_the_key_file_values_are_shown_encrypted(
    sealed_db: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --key-file the run's input and output are `<encrypted>` (escaped on the page),
    with a note naming the option; ids and statuses still show."""
    url, _ = sealed_db
    seen = _serve(monkeypatch, "--database-url", url)
    assert seen["exit_code"] == 0, seen["output"]
    assert (seen["json"]["input"], seen["json"]["output"]) == ("<encrypted>", "<encrypted>")
    assert seen["json"]["status"] == "done"
    assert "&lt;encrypted&gt;" in seen["page"]
    assert "--key-file" in seen["page"]  # the note says how to read them
    assert MARK not in seen["page"] + seen["list"] + json.dumps(seen["json"])
    assert "tx-sealed" in seen["list"]


def test_with_the_key_file_values_are_shown_decrypted(
    sealed_db: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --key-file the page and its JSON show the input and output in clear."""
    url, key_file = sealed_db
    seen = _serve(monkeypatch, "--database-url", url, "--key-file", str(key_file))
    assert seen["exit_code"] == 0, seen["output"]
    assert seen["json"]["input"] == MARK
    assert seen["json"]["output"] == {"kept": f"{MARK}-output"}
    assert f"{MARK}-output" in seen["page"]
    assert "&lt;encrypted&gt;" not in seen["page"]


def test_a_bad_key_file_is_refused_before_serving(
    sealed_db: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A key file that is not one exits 2 naming --key-file, and serves nothing."""
    url, _ = sealed_db
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    seen = _serve(monkeypatch, "--database-url", url, "--key-file", str(bad))
    assert seen["exit_code"] == 2
    assert "--key-file" in seen["output"]
    assert "json" not in seen
