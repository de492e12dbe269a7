"""The append-only record log: one JSON line per finished question, fsynced.

A run killed with ``kill -9`` loses at most the questions in flight: every finished
record is on disk before the next starts writing, and a torn last line (killed
mid-write) is cut off on resume, so no question is ever counted twice.

Records are split on the newline byte alone. ``json.dumps`` escapes every control
character but writes Unicode line separators (U+2028, U+0085, ...) raw, and
``str.splitlines`` would split a record on them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["RecordLog", "read_records", "record_key", "rewrite_records", "is_final", "RETRIED"]

# Grades a resume tries again: the question was not answered (an engine or tool
# failure) or the judge's reply could not be read. Any other grade is final.
RETRIED = frozenset({"ERROR", "UNPARSEABLE"})


def record_key(rec: dict[str, Any]) -> tuple[str, str, str]:
    return rec["dataset"], rec["condition"], rec["id"]


def is_final(rec: dict[str, Any]) -> bool:
    return rec.get("grade") not in RETRIED


def read_records(path: Path) -> list[dict[str, Any]]:
    """Complete records, one per question: a torn final line is ignored; of several
    records of one question the first final one wins, else the latest retry."""
    if not path.exists():
        return []
    by_key: dict[tuple[str, str, str], dict[str, Any]] = {}
    with path.open("rb") as fh:
        for raw in fh:  # binary iteration splits on b"\n" only
            if not raw.endswith(b"\n"):
                break  # torn by a kill mid-write
            try:
                rec = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                continue
            key = record_key(rec)
            if key not in by_key or not is_final(by_key[key]):
                by_key[key] = rec  # dicts keep first-insertion order
    return list(by_key.values())


class RecordLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_torn_tail()
        self._fh = path.open("a", encoding="utf-8")

    def _truncate_torn_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(end)

    def append(self, rec: dict[str, Any]) -> None:
        self._fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def rewrite_records(path: Path, records: list[dict[str, Any]]) -> int:
    """Replace the log atomically (after re-grading); returns how many grades changed."""
    old = {record_key(r): r.get("grade") for r in read_records(path)}
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return sum(old.get(record_key(r)) != r.get("grade") for r in records)
