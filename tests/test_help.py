"""Every command's --help reads well in an 80-column terminal (issue #15, item 9)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from splice.cli import app


def _paths(cmd: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    if hasattr(cmd, "commands"):  # a group (typer bundles its own click)
        for name, sub in cmd.commands.items():
            paths += _paths(sub, (*prefix, name))
    return paths


PATHS = _paths(typer.main.get_command(app))


def test_every_command_is_covered() -> None:
    assert len(PATHS) > 25 and ("eval", "run") in PATHS and ("serve",) in PATHS


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "splice")
def test_help_fits_80_columns_without_cut_words(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    text = result.output
    assert all(len(line) <= 80 for line in text.splitlines()), text
    # Cut text: click's "..." on a shortened description, rich's "…", a dropped
    # default leaving " .", a raw type on a flag.
    assert not re.search(r"\w\.\.\.$", text, re.M), text
    assert "…" not in text and "<bool>" not in text, text
    assert not re.search(r"\s\.(\s|$)", text, re.M), text
    first = text.split("\n\n")[1].strip()  # the command's own description
    assert first.endswith((".", ")", ":", "?")), first
