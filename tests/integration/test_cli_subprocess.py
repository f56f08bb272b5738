"""The installed `flowkit` console script, run once as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cli_app import DONE, REVERTED, WAITING, populate


def test_console_script_lists_runs(tmp_path: Path) -> None:
    """`flowkit runs list --database-url URL` runs as a process and prints the runs' table."""
    script = Path(sys.executable).with_name("flowkit")
    assert script.exists(), f"no console script at {script}: pip install -e . first"
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    populate(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKIT_")}
    completed = subprocess.run(
        [str(script), "runs", "list", "--database-url", url],
        cwd=Path(__file__).parent,  # where the runs' input classes (cli_app) are importable
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    statuses = {line.split()[0]: line.split()[2] for line in completed.stdout.splitlines()[1:]}
    assert statuses == {DONE: "done", REVERTED: "reverted", WAITING: "waiting"}
