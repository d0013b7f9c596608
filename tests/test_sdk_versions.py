from __future__ import annotations

from pathlib import Path

import pytest
from sdk_versions import ANTHROPIC_MID_STREAM, anthropic_wraps_stream_errors

SDKS_PAGE = Path(__file__).parent.parent / "docs" / "sdks.md"


def table_rows(page: str, marker: str) -> list[tuple[str, ...]]:
    """The body rows of the table between `<!-- marker: ... -->` and `<!-- end of marker -->`."""
    start = page.index(f"<!-- {marker}:")
    end = page.index(f"<!-- end of {marker} -->")
    lines = page[start:end].splitlines()[1:]
    rows = [tuple(cell.strip() for cell in line.strip("|").split(" | ")) for line in lines if line]
    return rows[2:]  # past the header and the separator


def test_the_anthropic_mid_stream_table_is_the_one_the_tests_use() -> None:
    assert table_rows(SDKS_PAGE.read_text(), "anthropic-mid-stream") == ANTHROPIC_MID_STREAM


@pytest.mark.parametrize(
    ("version", "wraps"), [("2.0.0", False), ("2.16.3", False), ("2.17.0", True), ("3.1", True)]
)
def test_anthropic_wraps_stream_errors_from_2_17(version: str, wraps: bool) -> None:
    assert anthropic_wraps_stream_errors(version) is wraps
