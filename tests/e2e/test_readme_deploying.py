"""The README's "Deploying a changed workflow" section: its code blocks run, in order, and do
what its text says, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from flowkit import Engine, TransactionState

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Deploying a changed workflow"
README_URL = "sqlite:///deploy.db"


def section_blocks() -> list[str]:
    """The ```python blocks of the section, in order."""
    text = README.read_text()
    start = text.index(f"\n{SECTION}\n")
    end = text.index("\n## ", start + 1)
    return re.findall(r"^```python\n(.*?)^```$", text[start:end], flags=re.DOTALL | re.MULTILINE)


def test_the_recipe_runs_and_keeps_each_run_on_its_version(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The parked v1 run finishes on v1 (no inserted step), the new run is v2, and the v1 run
    of a release without v1 is refused, listed, and left as it was."""
    blocks = section_blocks()
    assert len(blocks) == 2
    assert all(README_URL in block for block in blocks)
    namespace: dict[str, Any] = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block.replace(README_URL, database_url), str(README), "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    pay_v1, pay_v2 = namespace["pay_v1"], namespace["pay_v2"]
    assert pay_v1.fingerprint in printed[0]
    assert pay_v2.fingerprint in printed[0]
    assert printed[1] == "['pay-o-3']"
    with Engine(namespace["SqlStore"](database_url), [pay_v1, pay_v2]) as engine:
        first, second, third = (engine.get(f"pay-o-{n}") for n in (1, 2, 3))
        assert first is not None
        assert second is not None
        assert third is not None
        assert (first.version, first.status) == (1, TransactionState.DONE)
        assert "fraud-check" not in first.steps
        assert (second.version, second.fingerprint) == (2, pay_v2.fingerprint)
        assert (third.version, third.status) == (1, TransactionState.WAITING)
        done = engine.set_step_success("pay-o-3", "await-3ds", {"3ds": "passed"})
        assert done.status is TransactionState.DONE
