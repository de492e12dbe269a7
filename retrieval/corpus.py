"""Read documents from JSONL, text/Markdown and HTML files, or directories of them.

JSONL rows are ``{"id","title","text"}`` or FlashRAG's ``{"id","contents"}`` (the
title on the first line of ``contents``). A malformed row raises
:class:`CorpusError` naming ``file:line``; ``skip_bad`` reports it and goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from agent.errors import CorpusError, first_line
from agent.files import iter_jsonl

from .chunking import Document

__all__ = ["read_documents", "read_jsonl_documents", "iter_jsonl", "SUFFIXES"]

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
SUFFIXES = {".jsonl"} | TEXT_SUFFIXES | HTML_SUFFIXES

OnBad = Callable[[CorpusError], None]


def _row_document(row: object, where: str, fallback_id: str) -> Document:
    if not isinstance(row, dict):
        raise CorpusError(where, f"expected a JSON object, got {type(row).__name__}")
    rid = row.get("id", row.get("_id", fallback_id))
    if not isinstance(rid, (str, int)) or str(rid).strip() == "":
        raise CorpusError(where, '"id" must be a non-empty string or integer')
    if "text" in row:
        text, title = row["text"], row.get("title", "")
    elif "contents" in row:
        # FlashRAG: '"Title"\nbody'; the quotes are optional.
        head, _, body = str(row["contents"]).partition("\n")
        title, text = (head.strip().strip('"'), body) if body else ("", head)
        title = row.get("title", title)
    else:
        raise CorpusError(where, 'row has no "text" or "contents" field')
    if not isinstance(text, str) or not isinstance(title, str):
        raise CorpusError(where, '"text" and "title" must be strings')
    if not text.strip():
        raise CorpusError(where, 'empty "text"')
    source = row.get("source") or row.get("url") or ""
    return Document(id=str(rid), title=title.strip(), text=text.strip(), source=str(source))


def read_jsonl_documents(path: Path, on_bad: OnBad | None = None) -> Iterator[Document]:
    """Documents from one JSONL file, whatever its suffix."""
    if not path.is_file():
        raise CorpusError(str(path), "no such file")
    for lineno, row in iter_jsonl(path):
        where = f"{path}:{lineno}"
        try:
            if isinstance(row, (UnicodeDecodeError, json.JSONDecodeError)):
                raise CorpusError(
                    where, f"not valid UTF-8 JSON ({row.__class__.__name__}: {first_line(row)})"
                )
            yield _row_document(row, where, f"{path.stem}-{lineno}")
        except CorpusError as exc:
            if on_bad is None:
                raise
            on_bad(exc)


def _read_text(path: Path, doc_id: str) -> Document | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(str(path), f"not UTF-8 text (byte {exc.start})") from None
    title = path.stem.replace("_", " ").replace("-", " ")
    for line in text.splitlines():
        if line.strip():
            if line.lstrip().startswith("#"):
                title = line.lstrip("# ").strip()
            break
    text = text.strip()
    return Document(id=doc_id, title=title, text=text, source=str(path)) if text else None


def _read_html(path: Path, doc_id: str) -> Document | None:
    import trafilatura

    raw = path.read_bytes()
    extracted = trafilatura.extract(
        raw, output_format="json", with_metadata=True, include_comments=False
    )
    if not extracted:
        return None
    data = json.loads(extracted)
    text = (data.get("text") or "").strip()
    if not text:
        return None
    return Document(
        id=doc_id,
        title=(data.get("title") or path.stem).strip(),
        text=text,
        source=data.get("source") or str(path),
    )


def _files(inputs: Sequence[Path]) -> Iterator[tuple[Path, Path]]:
    """(file, root) pairs: a directory is walked in sorted order for known suffixes."""
    for item in inputs:
        if not item.exists():
            raise CorpusError(str(item), "no such file or directory")
        if item.is_dir():
            for f in sorted(item.rglob("*")):
                if f.is_file() and f.suffix.lower() in SUFFIXES:
                    yield f, item
        elif item.suffix.lower() in SUFFIXES:
            yield item, item.parent
        else:
            raise CorpusError(
                str(item),
                f"unsupported file type {item.suffix or '(none)'}: "
                f"use {', '.join(sorted(SUFFIXES))}",
            )


def read_documents(inputs: Sequence[Path | str], on_bad: OnBad | None = None) -> Iterator[Document]:
    """Documents from every input, in order. Text and HTML ids are relative paths."""
    for path, root in _files([Path(p) for p in inputs]):
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            yield from read_jsonl_documents(path, on_bad)
            continue
        doc_id = path.relative_to(root).as_posix()
        try:
            doc = _read_text(path, doc_id) if suffix in TEXT_SUFFIXES else _read_html(path, doc_id)
        except CorpusError as exc:
            if on_bad is None:
                raise
            on_bad(exc)
            continue
        if doc is not None:
            yield doc
