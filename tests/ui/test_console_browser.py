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


def test_run_page_timeline_is_drawn_in_chromium(tmp_path: Path) -> None:
    """Served by uvicorn, the done demo run's page draws every timeline bar wider than zero."""
    _need_chromium()
    shot = tmp_path / "console-run.png"
    widths = save_run_screenshot(f"sqlite:///{tmp_path}/console.db", shot)
    assert len(widths) >= 8
    assert all(width > 0 for width in widths), widths
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
