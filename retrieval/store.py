"""The passage store: SQLite, keyed by the FAISS row number.

Search reads only the rows it returns, so an index of millions of passages opens
instantly and never loads its text whole.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

from .chunking import Chunk

__all__ = ["PassageStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS passages (
    row INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL
);
"""


class PassageStore:
    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        # Quoted: a '#' or '?' in the path would otherwise end the file name early
        # and open (or create) another file.
        uri = f"file:{quote(str(path))}?mode={'rwc' if create else 'rw'}"
        self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        if create:
            self.db.executescript(_SCHEMA)
        # Fails here, not at the first search, when the file is not a store.
        self.db.execute("SELECT count(*) FROM passages").fetchone()

    def __len__(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM passages").fetchone()[0])

    def existing_docs(self, doc_ids: Iterable[str]) -> set[str]:
        """Which of ``doc_ids`` already have passages here (500 per query: SQLite's
        variable limit)."""
        found: set[str] = set()
        batch = list(doc_ids)
        for i in range(0, len(batch), 500):
            part = batch[i : i + 500]
            marks = ",".join("?" * len(part))
            found.update(
                r[0]
                for r in self.db.execute(
                    f"SELECT DISTINCT doc_id FROM passages WHERE doc_id IN ({marks})", part
                )
            )
        return found

    def insert(self, first_row: int, chunks: Sequence[Chunk]) -> None:
        """Rows ``first_row ..`` in order; the caller commits (see :meth:`commit`)."""
        self.db.executemany(
            'INSERT INTO passages (row, id, doc_id, title, text, source, start, "end") '
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (first_row + n, c.id, c.doc_id, c.title, c.text, c.source, c.start, c.end)
                for n, c in enumerate(chunks)
            ],
        )

    def commit(self) -> None:
        self.db.commit()

    def rollback(self) -> None:
        self.db.rollback()

    def get(self, rows: Sequence[int]) -> dict[int, Chunk]:
        if not rows:
            return {}
        marks = ",".join("?" * len(rows))
        cur = self.db.execute(
            f'SELECT row, id, doc_id, title, text, source, start, "end" FROM passages '
            f"WHERE row IN ({marks})",
            [int(r) for r in rows],
        )
        return {
            r[0]: Chunk(
                id=r[1], doc_id=r[2], title=r[3], text=r[4], source=r[5], start=r[6], end=r[7]
            )
            for r in cur
        }

    def close(self) -> None:
        self.db.close()
