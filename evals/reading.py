"""The reading corpus: realistic encyclopedia-style passages on real-world subjects,
written for this project, each with answerable questions (gold answer: a short span
of the passage) and adversarial unanswerable ones (same entities, a fact the
subject's passages never state).

Splits are by *subject* (every passage of a subject shares its split), so a dev or
test subject is never a training subject: about 70% train, 15% dev, 15% test, by a
hash of the subject. One dev/test passage in four is *removed*: it is left out of
the built-in index, and its answerable questions test what the model says when the
passage that held the answer is gone (its sibling passages, on the same subject,
remain: they almost answer).

Files: ``evals/data/reading/<domain>.jsonl`` (package data), one passage per line::

    {"id", "domain", "subject", "title", "text",
     "qa": [{"q", "a", "type"}], "unanswerable": [{"q", "type"}]}
"""

from __future__ import annotations

import hashlib
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from agent.errors import DatasetError
from agent.files import iter_jsonl
from agent.tools import Document

from .kb import DATA_DIR, KBQuestion

__all__ = [
    "ReadingSplit",
    "ReadingPassage",
    "reading_dir",
    "reading_passages",
    "reading_documents",
    "reading_questions",
    "reading_fingerprint",
    "subject_split",
    "is_removed",
    "reading_card",
]

ReadingSplit = Literal["train", "dev", "test"]
QuestionSet = Literal["answerable", "unanswerable", "removed"]
SOURCE_PREFIX = "reading:"


def reading_dir() -> Path:
    return DATA_DIR / "reading"


def _bucket(key: str, n: int) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % n


def subject_split(subject: str) -> ReadingSplit:
    b = _bucket("reading-subject:" + subject, 20)
    return "test" if b < 3 else "dev" if b < 6 else "train"


def is_removed(passage_id: str, split: ReadingSplit) -> bool:
    """Dev and test only: one passage in four is left out of the index."""
    return split != "train" and _bucket("reading-removed:" + passage_id, 4) == 0


class QA(BaseModel):
    q: str
    a: str
    type: str


class Unanswerable(BaseModel):
    q: str
    type: str


class ReadingPassage(BaseModel):
    id: str
    domain: str
    subject: str
    title: str
    text: str
    qa: list[QA]
    unanswerable: list[Unanswerable]
    split: ReadingSplit = "train"
    removed: bool = False


@lru_cache(maxsize=1)
def reading_passages() -> tuple[ReadingPassage, ...]:
    """Every passage, validated (a malformed row is a one-line DatasetError)."""
    out: list[ReadingPassage] = []
    seen: set[str] = set()
    for path in sorted(reading_dir().glob("*.jsonl")):
        for lineno, row in iter_jsonl(path):
            where = f"{path}:{lineno}"
            if isinstance(row, ValueError):
                raise DatasetError(where, "not UTF-8 JSON")
            try:
                p = ReadingPassage.model_validate(row)
            except ValidationError as exc:
                raise DatasetError(where, f"bad passage ({exc.errors()[0]['msg']})") from None
            if p.id in seen:
                raise DatasetError(where, f"duplicate id {p.id!r}")
            seen.add(p.id)
            split = subject_split(p.subject)
            out.append(p.model_copy(update={"split": split, "removed": is_removed(p.id, split)}))
    return tuple(out)


def reading_documents() -> list[Document]:
    """What the built-in index holds of the corpus: every passage not removed."""
    return [
        Document(id=p.id, title=p.title, text=p.text, source=SOURCE_PREFIX + p.id)
        for p in reading_passages()
        if not p.removed
    ]


def reading_questions(split: ReadingSplit, kind: QuestionSet) -> list[KBQuestion]:
    """Questions of one split: ``answerable`` (passage in the index), ``unanswerable``
    (adversarial, passage in the index) or ``removed`` (answerable only from a passage
    left out of the index)."""
    out = []
    for p in reading_passages():
        if p.split != split:
            continue
        if kind == "unanswerable" and not p.removed:
            rows = [(f"{p.id}/u{n}", u.q, []) for n, u in enumerate(p.unanswerable)]
        elif kind == "answerable" and not p.removed or kind == "removed" and p.removed:
            rows = [(f"{p.id}/q{n}", qa.q, [qa.a]) for n, qa in enumerate(p.qa)]
        else:
            continue
        for qid, question, answers in rows:
            out.append(
                KBQuestion(
                    id=qid,
                    question=question,
                    answers=answers,
                    answerable=kind != "unanswerable",
                    source_id=p.id,
                    split="train" if split == "train" else "heldout",
                    fictional=False,
                    category=f"reading-{p.domain}",
                )
            )
    return out


def reading_fingerprint() -> str:
    """Changes whenever the indexed passages would."""
    h = hashlib.sha256(b"reading:v1")
    for path in sorted(reading_dir().glob("*.jsonl")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def reading_card() -> str:
    """The data card: counts per domain, per split and per question type (Markdown)."""
    passages = reading_passages()
    lines = [
        "# The reading corpus: data card",
        "",
        "Written for this project (no sentence copied from any source, no public QA",
        "benchmark used). Generated from the files: `python -m evals.reading > README.md`",
        "(a test keeps it in step). Splits are by subject: a dev or test subject is never",
        "a training subject. A removed passage is left out of the built-in index, so its",
        "questions test what the model says when the source is gone.",
        "",
        f"{len(passages)} passages on {len({p.subject for p in passages})} subjects in "
        f"{len({p.domain for p in passages})} domains; "
        f"{sum(len(p.qa) for p in passages)} answerable and "
        f"{sum(len(p.unanswerable) for p in passages)} adversarial unanswerable questions.",
        "",
        "| split | subjects | passages | removed from the index | answerable | unanswerable |",
        "|---|---|---|---|---|---|",
    ]
    for split in ("train", "dev", "test"):
        ps = [p for p in passages if p.split == split]
        lines.append(
            f"| {split} | {len({p.subject for p in ps})} | {len(ps)} | "
            f"{sum(p.removed for p in ps)} | {sum(len(p.qa) for p in ps)} | "
            f"{sum(len(p.unanswerable) for p in ps)} |"
        )
    lines += ["", "| domain | subjects | passages | words (mean) |", "|---|---|---|---|"]
    for domain in sorted({p.domain for p in passages}):
        ps = [p for p in passages if p.domain == domain]
        words = sum(len(p.text.split()) for p in ps) / len(ps)
        lines.append(f"| {domain} | {len({p.subject for p in ps})} | {len(ps)} | {words:.0f} |")
    qtypes = Counter(qa.type for p in passages for qa in p.qa)
    utypes = Counter(u.type for p in passages for u in p.unanswerable)
    lines += ["", "| answerable type | n |", "|---|---|"]
    lines += [f"| {t} | {n} |" for t, n in qtypes.most_common()]
    lines += ["", "| unanswerable type | n |", "|---|---|"]
    lines += [f"| {t} | {n} |" for t, n in utypes.most_common()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reading_card(), end="")
