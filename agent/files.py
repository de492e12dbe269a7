"""File helpers shared by model preparation, indexes, datasets and eval runs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["sha256_file", "iter_jsonl"]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (indexes and weights can be GBs)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed row) for each non-blank line; a line that is not UTF-8 JSON
    yields its ``UnicodeDecodeError``/``JSONDecodeError`` instead, so the caller decides
    whether to stop or skip it."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8").strip()
                if line:
                    yield lineno, json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                yield lineno, exc
