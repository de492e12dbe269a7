"""The built-in knowledge base's index: built once, reused, rebuilt when damaged."""

from __future__ import annotations

import shutil
from pathlib import Path

from evals.kb import kb_documents, kb_questions
from retrieval import LocalIndex
from splice.defaults import ensure_kb_index


def test_kb_index_is_reused_and_searchable(kb_index: Path) -> None:
    path, built = ensure_kb_index(kb_index.parent)
    assert path == kb_index and not built
    index = LocalIndex.open(kb_index)
    assert index.manifest.label.startswith("splice-kb:")
    assert index.manifest.documents == len(kb_documents())
    # Held-out questions about real articles: the source article is usually top-3.
    questions = [q for q in kb_questions(split="heldout") if not q.fictional]
    hits = index.search([q.question for q in questions], k=3)
    found = sum(any(c.doc_id == q.source_id for c, _ in h) for q, h in zip(questions, hits))
    assert found / len(questions) >= 0.8, found / len(questions)


def test_damaged_kb_index_is_rebuilt(kb_index: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(kb_index, home / "kb-index")
    faiss_file = home / "kb-index" / "index.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:64])
    path, built = ensure_kb_index(home)
    assert built and LocalIndex.open(path, verify=True).manifest.count > 0


def test_a_flipped_byte_in_a_kb_passage_is_rebuilt_not_served(
    kb_index: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(kb_index, home / "kb-index")
    store = home / "kb-index" / "passages.sqlite"
    data = bytearray(store.read_bytes())
    at = data.find(b"Things Fall Apart")
    assert at > 0
    data[at] ^= 0x01  # same size, one bit: only the checksum can tell
    store.write_bytes(bytes(data))
    path, built = ensure_kb_index(home)
    assert built and b"Things Fall Apart" in (path / "passages.sqlite").read_bytes()
