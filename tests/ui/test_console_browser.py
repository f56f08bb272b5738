"""The run page in a real browser: headless Chromium (Debian's) driven by Selenium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from console_support import save_run_screenshot


def _need_chromium() -> None:
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI expects the browser: {reason}")
    pytest.skip(reason)


def test_run_page_timeline_and_graph_are_drawn_in_chromium(tmp_path: Path) -> None:
    """Served by uvicorn, the done demo run's page draws every timeline bar wider than zero,
    and the vendored mermaid.js draws the workflow's graph as an SVG holding its steps."""
    _need_chromium()
    shot = tmp_path / "console-run.png"
    drawn = save_run_screenshot(f"sqlite:///{tmp_path}/console.db", shot)
    assert len(drawn.widths) >= 8
    assert all(width > 0 for width in drawn.widths), drawn.widths
    assert drawn.graph == "svg"
    assert "validate-cart" in drawn.nodes
    assert any(node.startswith("await-payment-action") for node in drawn.nodes), drawn.nodes
    assert len(drawn.nodes) >= 10  # start, end, two nested workflows and their steps
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
