"""`python -m flowkit` is the command line."""

from __future__ import annotations

import subprocess
import sys


def test_python_m_flowkit_runs_the_cli() -> None:
    """`python -m flowkit --help` prints the CLI's usage and its commands."""
    done = subprocess.run(
        [sys.executable, "-m", "flowkit", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: " in done.stdout
    assert "runs" in done.stdout
