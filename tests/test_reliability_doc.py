"""docs/reliability.md names a test for every row of the fault matrix: each name must
be a test that exists, so the table cannot drift from the suite."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_the_fault_matrix_names_exists() -> None:
    doc = (ROOT / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"\b(test_\w+?)(?:\[|`|\s)", doc)) - {
        name for name in re.findall(r"\b(test_\w+)\.py", doc)
    }
    defined = {
        m
        for path in (ROOT / "tests").glob("test_*.py")
        for m in re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.M)
    }
    assert len(named) >= 30
    assert not named - defined, sorted(named - defined)
