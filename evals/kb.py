"""The built-in knowledge base: the articles under ``evals/data/kb`` plus fictional
entities, and the other built-in prompt sets (trivia, chat) under ``evals/data``.

Every article and entity has a fixed split, ``train`` or ``heldout`` (one in five,
by a hash of its id), so evaluation never uses what training saw. Fictional
entities are also split into those written into the corpus (answerable from it)
and those left out (nobody can answer: the right reply is "I don't know").
The files are package data, so an installed wheel finds them. Indexing the knowledge
base is the composition root's job (``splice.defaults.ensure_kb_index``); no binary
index is committed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from agent.errors import DatasetError
from agent.files import iter_jsonl
from agent.tools import Document

from .fictional import GENERATOR_VERSION, generate_entities

__all__ = [
    "KBEntry",
    "KBQuestion",
    "kb_entries",
    "kb_documents",
    "kb_questions",
    "kb_fingerprint",
    "split_of",
    "data_dir",
    "builtin_file",
    "chat_prompts",
]

Split = Literal["train", "heldout"]
ENTITIES_PER_KIND = 60


DATA_DIR = Path(__file__).resolve().parent / "data"


def data_dir() -> Path:
    return DATA_DIR / "kb"


def builtin_file(name: str) -> Path:
    """A built-in prompt file (``trivia.jsonl``, ``chat.jsonl``)."""
    return DATA_DIR / name


def split_of(item_id: str) -> Split:
    return (
        "heldout" if int(hashlib.sha256(item_id.encode()).hexdigest()[:8], 16) % 5 == 0 else "train"
    )


def _in_corpus(entity_id: str) -> bool:
    # 3 in 5 entities are written into the corpus; the rest exist only as questions.
    return int(hashlib.sha256(("corpus:" + entity_id).encode()).hexdigest()[:8], 16) % 5 < 3


class KBQuestion(BaseModel):
    id: str
    question: str
    answers: list[str]
    answerable: bool
    source_id: str
    split: Split
    fictional: bool
    category: str


class KBEntry(BaseModel):
    id: str
    title: str
    category: str
    text: str
    qa: list[dict[str, str]]
    split: Split
    fictional: bool = False
    in_corpus: bool = True


def _article_files() -> list[Path]:
    files = sorted((data_dir() / "articles").glob("*.jsonl"))
    if not files:
        raise DatasetError(
            str(data_dir() / "articles"),
            "no article files: the checkout is incomplete (evals/data/kb/articles/*.jsonl)",
        )
    return files


@lru_cache(maxsize=1)
def kb_entries() -> tuple[KBEntry, ...]:
    entries: list[KBEntry] = []
    for path in _article_files():
        for lineno, row in iter_jsonl(path):
            try:
                if isinstance(row, ValueError):  # not UTF-8 JSON
                    raise row
                entries.append(
                    KBEntry(
                        id=row["id"],
                        title=row["title"],
                        category=row.get("category", path.stem),
                        text=row["text"],
                        qa=row.get("qa", []),
                        split=split_of(row["id"]),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise DatasetError(f"{path}:{lineno}", f"bad article row ({exc})") from None
    for ent in generate_entities(ENTITIES_PER_KIND):
        entries.append(
            KBEntry(
                id=ent.id,
                title=ent.name,
                category=f"fictional-{ent.kind}",
                text=ent.text,
                qa=[q.model_dump() for q in ent.qa],
                split=split_of(ent.id),
                fictional=True,
                in_corpus=_in_corpus(ent.id),
            )
        )
    return tuple(entries)


def kb_documents() -> list[Document]:
    """What the knowledge-base index holds: every article and the in-corpus entities."""
    return [
        Document(id=e.id, title=e.title, text=e.text, source=f"kb:{e.id}")
        for e in kb_entries()
        if e.in_corpus
    ]


def kb_questions(split: Split | None = None, answerable: bool | None = None) -> list[KBQuestion]:
    out = []
    for e in kb_entries():
        if split is not None and e.split != split:
            continue
        if answerable is not None and e.in_corpus != answerable:
            continue
        for n, qa in enumerate(e.qa):
            out.append(
                KBQuestion(
                    id=f"{e.id}/q{n}",
                    question=qa["question"],
                    answers=[qa["answer"]],
                    answerable=e.in_corpus,
                    source_id=e.id,
                    split=e.split,
                    fictional=e.fictional,
                    category=e.category,
                )
            )
    return out


def kb_fingerprint() -> str:
    """Changes whenever the indexed content would: article files or generator."""
    h = hashlib.sha256(f"generator:{GENERATOR_VERSION}:{ENTITIES_PER_KIND}".encode())
    for path in _article_files():
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def read_rows(path: Path, fields: Sequence[str]) -> list[dict[str, Any]]:
    """JSONL rows that must have ``fields``; a bad line is a one-line DatasetError."""
    if not path.is_file():
        raise DatasetError(str(path), "no such file")
    rows = []
    for lineno, row in iter_jsonl(path):
        if not isinstance(row, dict) or any(f not in row for f in fields):
            raise DatasetError(
                f"{path}:{lineno}", f"expected a JSON object with {', '.join(fields)}"
            )
        rows.append(row)
    return rows


def chat_prompts(split: Split = "train") -> list[dict[str, str]]:
    """Ordinary chat prompts (no search needed), by the same fixed split."""
    return [
        r
        for r in read_rows(builtin_file("chat.jsonl"), ("id", "prompt"))
        if split_of(r["id"]) == split
    ]
