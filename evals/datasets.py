"""Evaluation datasets: generic files with flexible fields, named loaders, built-in sets.

Every loader yields :class:`EvalItem`. A malformed row raises :class:`DatasetError`
naming ``file:line``.

Names accepted by :func:`load_dataset`:
- ``kb-answerable`` / ``kb-unanswerable``: the built-in knowledge base's held-out
  split (articles and in-corpus fictional entities / fictional entities not in it);
- ``trivia-heldout``: easy general-knowledge questions (``evals/data/trivia.jsonl``)
  that training never saw, to check the model still answers what it knew;
- ``kb-train`` / ``trivia-train``: the training splits, input of the knowledge probe;
- ``reading-{answerable,unanswerable,removed}-{dev,test}``: the reading corpus
  (``evals/data/reading``; see :mod:`evals.reading`), and ``reading-train``;
- ``simpleqa:PATH`` (CSV: problem, answer), ``nq-open:PATH`` (JSONL: question,
  answer list), ``popqa:PATH`` (TSV: question, possible_answers as JSON),
  ``selfaware:PATH`` (JSON: question, answer, answerable);
- ``hf:NAME[:SPLIT]``: a Hugging Face dataset (needs network and ``datasets``);
- any other ``PATH``: JSONL, JSON or CSV with generic field names.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.errors import DatasetError, DependencyMissingError, translate_error
from agent.files import iter_jsonl, sha256_file

__all__ = ["EvalItem", "Dataset", "DatasetError", "load_dataset", "item_from_row", "BUILTIN"]

QUESTION_FIELDS = ("question", "problem", "query")
GOLD_FIELDS = ("answers", "answer", "golden_answers", "possible_answers")
READING = tuple(
    f"reading-{kind}-{split}"
    for split in ("dev", "test")
    for kind in ("answerable", "unanswerable", "removed")
)
BUILTIN = (
    "kb-answerable",
    "kb-unanswerable",
    "kb-train",
    "trivia-train",
    "trivia-heldout",
    *READING,
    "reading-train",
)
# kb-train, trivia-train and reading-train: the knowledge probe's input (training
# data), never evaluated. reading-*-dev is for tuning decisions, reading-*-test for
# the final figures.


class EvalItem(BaseModel):
    id: str
    question: str
    answers: list[str]
    answerable: bool = True
    acceptable_range: tuple[float, float] | None = None


class Dataset(BaseModel):
    name: str
    items: list[EvalItem]
    sha256: str

    def limit(self, n: int | None) -> Dataset:
        return self if n is None else self.model_copy(update={"items": self.items[:n]})


def _golds(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):  # PopQA stores lists as JSON strings
            try:
                return _golds(json.loads(text), where)
            except json.JSONDecodeError:
                pass
        return [text] if text else []
    if isinstance(value, (int, float)):
        return [str(value)]
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v).strip() for v in value if str(v).strip()]
    raise DatasetError(where, "the gold answer must be a string or a list of strings")


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise DatasetError(where, f'"answerable" must be true or false, got {value!r}')


def item_from_row(row: Any, where: str, fallback_id: str) -> EvalItem:
    """An item from a row with flexible field names (see module docstring)."""
    if not isinstance(row, dict):
        raise DatasetError(where, f"expected an object, got {type(row).__name__}")
    q = next((row[f] for f in QUESTION_FIELDS if row.get(f) not in (None, "")), None)
    if not isinstance(q, str) or not q.strip():
        raise DatasetError(where, f"no question: expected one of {', '.join(QUESTION_FIELDS)}")
    gold_field = next((f for f in GOLD_FIELDS if f in row), None)
    golds = _golds(row.get(gold_field), where) if gold_field else []
    answerable = _bool(row["answerable"], where) if "answerable" in row else True
    if answerable and not golds:
        raise DatasetError(
            where,
            f'no gold answer: expected one of {", ".join(GOLD_FIELDS)} (or "answerable": false)',
        )
    rng = _range(row.get("acceptable_range"), where)
    rid = row.get("id", row.get("qid", fallback_id))
    return EvalItem(
        id=str(rid), question=q.strip(), answers=golds, answerable=answerable, acceptable_range=rng
    )


# A minus sign counts only at the start of a number, not between two ("148-152").
_NUMBER = re.compile(r"(?<![\w.,])-?\d[\d,]*(?:\.\d+)?")


def _range(value: Any, where: str) -> tuple[float, float] | None:
    """``[low, high]``, as a list, as JSON text, or as words ("anything between 148 and
    152", "148-152"): the first two numbers written. Empty means no range."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            found = [n.replace(",", "") for n in _NUMBER.findall(value.replace("–", " "))]
            value = [float(found[0]), float(found[1])] if len(found) >= 2 else None
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
    ):
        raise DatasetError(
            where, '"acceptable_range" must be [low, high] or read like "between 148 and 152"'
        )
    low, high = sorted((float(value[0]), float(value[1])))
    return low, high


def _jsonl_rows(path: Path) -> Iterator[tuple[Any, str]]:
    for lineno, row in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if isinstance(row, UnicodeDecodeError):
            raise DatasetError(where, "not UTF-8")
        if isinstance(row, json.JSONDecodeError):
            raise DatasetError(where, f"not valid JSON ({row.msg})")
        yield row, where


def _json_rows(path: Path) -> Iterator[tuple[Any, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(str(path), f"not valid JSON ({exc})") from None
    if isinstance(data, dict):  # {"data": [...]} or {id: row, ...} (SelfAware variants)
        data = (
            data.get("data")
            or data.get("example")
            or [{"id": k, **v} if isinstance(v, dict) else v for k, v in data.items()]
        )
    if not isinstance(data, list):
        raise DatasetError(str(path), "expected a list of objects")
    for n, row in enumerate(data, 1):
        yield row, f"{path}:item {n}"


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[Any, str]]:
    data = path.read_bytes()
    try:
        # utf-8-sig: a byte-order mark would otherwise join the first header's name.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetError(f"{path}:{line}", "not UTF-8: save the file as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for row in reader:
            # The header is line 1; a record's line is where it ends.
            yield row, f"{path}:{reader.line_num}"
    except csv.Error as exc:  # a field over the csv module's limit, a stray NUL...
        raise DatasetError(f"{path}:{reader.line_num}", f"malformed CSV ({exc})") from None


def _rows(path: Path) -> Iterator[tuple[Any, str]]:
    if not path.exists():
        raise DatasetError(str(path), "no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_rows(path)
    if suffix == ".json":
        return _json_rows(path)
    if suffix in (".csv", ".tsv"):
        return _csv_rows(path, "\t" if suffix == ".tsv" else ",")
    raise DatasetError(
        str(path), f"unsupported dataset type {suffix or '(none)'}: use .jsonl, .json, .csv or .tsv"
    )


def _from_file(path: Path, name: str) -> Dataset:
    items = [
        item_from_row(row, where, f"{path.stem}-{n}")
        for n, (row, where) in enumerate(_rows(path), 1)
    ]
    if not items:
        raise DatasetError(str(path), "no questions in the file")
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise DatasetError(str(path), f"duplicate id {it.id!r}: ids must be unique")
        seen.add(it.id)
    return Dataset(name=name, items=items, sha256=sha256_file(path))


def _builtin(name: str) -> Dataset:
    from .kb import builtin_file, kb_fingerprint, kb_questions, split_of

    if name.startswith("trivia-"):  # easy general knowledge: what a small model may know
        path = builtin_file("trivia.jsonl")
        ds = _from_file(path, name)
        split = name.removeprefix("trivia-")
        return ds.model_copy(update={"items": [i for i in ds.items if split_of(i.id) == split]})
    if name.startswith("reading-"):
        from .reading import reading_fingerprint, reading_questions

        if name == "reading-train":
            qs = reading_questions("train", "answerable")
        else:
            _, kind, split = name.split("-")
            qs = reading_questions(split, kind)  # type: ignore[arg-type]
        items = [
            EvalItem(id=q.id, question=q.question, answers=q.answers, answerable=q.answerable)
            for q in qs
        ]
        if not items:
            raise DatasetError(name, "the reading corpus holds no such questions yet")
        return Dataset(name=name, items=items, sha256=f"reading:{reading_fingerprint()}")
    if name == "kb-train":  # answerable training-split questions: the knowledge probe's input
        qs = kb_questions(split="train", answerable=True)
    else:
        qs = kb_questions(split="heldout", answerable=(name == "kb-answerable"))
    items = [
        EvalItem(id=q.id, question=q.question, answers=q.answers, answerable=q.answerable)
        for q in qs
    ]
    return Dataset(name=name, items=items, sha256=f"kb:{kb_fingerprint()}")


def _huggingface(spec: str) -> Dataset:
    try:
        import datasets
    except ImportError as exc:
        raise DependencyMissingError("datasets", "pip install datasets") from exc
    name, _, split = spec.partition(":")
    try:
        data = datasets.load_dataset(name, split=split or "test")
    except Exception as exc:  # network, unknown name: one line, the fix
        raise translate_error(
            exc, f"hf:{spec}", kind=DatasetError, fix="check the name and network access"
        ) from None
    items = [
        item_from_row(dict(row), f"hf:{spec}:row {n}", f"{name}-{n}")
        for n, row in enumerate(data, 1)
    ]
    return Dataset(name=f"hf:{spec}", items=items, sha256=f"hf:{data._fingerprint}")


def load_dataset(spec: str) -> Dataset:
    """Load by name or path (see the module docstring)."""
    if spec in BUILTIN:
        return _builtin(spec)
    kind, sep, rest = spec.partition(":")
    if sep and kind == "hf":
        return _huggingface(rest)
    if sep and kind in ("simpleqa", "nq-open", "popqa", "selfaware"):
        # SelfAware: {"example": [{question, answer (null if unanswerable), answerable}]}
        return _from_file(Path(rest), kind)
    path = Path(spec)
    if not path.exists():
        raise DatasetError(
            spec, f"no such file or built-in set: use a path or one of {', '.join(BUILTIN)}"
        )
    return _from_file(path, path.stem)
