"""The README's "Time" section: every code block runs, in order, and prints what its comments
say (so the section cannot rot), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Time"
README_URL = "sqlite:///time.db"


def section_blocks() -> list[str]:
    """The ```python blocks of the section, in order."""
    text = README.read_text()
    start = text.index(f"\n{SECTION}\n")
    end = text.index("\n## ", start + 1)
    return re.findall(r"^```python\n(.*?)^```$", text[start:end], flags=re.DOTALL | re.MULTILINE)


def printed_comments(block: str) -> list[str]:
    """What a block's `print(...)  # expected` lines say they print (the text before `,` or
    `:` when the comment explains further)."""
    found = []
    for line in block.splitlines():
        if line.startswith("print(") and "#" in line:
            comment = line.split("#", 1)[1].strip()
            found.append(re.split(r"[,:] (?=[a-z])", comment, maxsplit=1)[0])
    return found


@pytest.fixture
def printed(database_url: str, capsys: pytest.CaptureFixture[str]) -> Iterator[list[str]]:
    """The lines every block printed, the blocks run in one namespace on the test database."""
    namespace: dict[str, Any] = {"__name__": "readme"}
    try:
        for block in section_blocks():
            exec(compile(block.replace(README_URL, database_url), str(README), "exec"), namespace)
        yield capsys.readouterr().out.splitlines()
    finally:
        for name in ("payments", "engine", "module"):
            opened = namespace.get(name)
            if opened is not None:
                opened.close()


def test_the_section_has_a_block_per_feature_and_names_the_database() -> None:
    """Deadlines, sleep, delayed runs, schedules and payments each have a block; the first
    opens the database."""
    blocks = section_blocks()
    assert len(blocks) == 5
    assert README_URL in blocks[0]


def test_every_block_prints_what_its_comments_say(printed: list[str]) -> None:
    """The deadline expires the run and releases the stock; the sleep wakes; the delayed run
    and the schedule show the instants the comments give."""
    expected = [c for block in section_blocks() for c in printed_comments(block)]
    assert "released stock-cart-1" in printed
    others = [line for line in printed if not line.startswith("released")]
    assert others == expected
