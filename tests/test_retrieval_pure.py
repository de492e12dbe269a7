"""Chunking, corpus readers and the fictional-entity generator: pure logic, no model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.errors import CorpusError
from evals.fictional import generate_entities
from retrieval.chunking import ChunkConfig, Document, chunk_document, sentence_spans
from retrieval.corpus import read_documents

TEXT = (
    'Alpha beta gamma. "Delta epsilon!" Zeta eta theta? Iota kappa lambda mu nu xi '
    "omicron pi rho sigma tau upsilon phi chi psi omega. End"
)


def test_sentences_never_lose_text() -> None:
    spans = sentence_spans(TEXT)
    assert [TEXT[s:e] for s, e in spans][:3] == [
        "Alpha beta gamma.",
        '"Delta epsilon!"',
        "Zeta eta theta?",
    ]
    assert " ".join(TEXT[s:e] for s, e in spans) == TEXT


@pytest.mark.parametrize("by", ["sentences", "tokens"])
def test_chunks_respect_size_overlap_and_offsets(by: str) -> None:
    doc = Document(id="d", title="T", text=TEXT, source="s.txt")
    chunks = chunk_document(doc, ChunkConfig(by=by, size=8, overlap=3))  # type: ignore[arg-type]
    assert len(chunks) > 2
    for c in chunks:
        assert c.text == TEXT[c.start : c.end]
        assert len(c.text.split()) <= 8
        assert (c.title, c.source, c.doc_id) == ("T", "s.txt", "d")
    assert [c.id for c in chunks] == [f"d#{i}" for i in range(len(chunks))]
    words = " ".join(c.text for c in chunks).split()
    assert set(TEXT.split()) <= set(words)  # every word is in some chunk
    # Neighbouring chunks share text when the overlap allows.
    assert any(set(a.text.split()) & set(b.text.split()) for a, b in zip(chunks, chunks[1:]))


def test_short_document_is_one_chunk_with_the_document_id() -> None:
    (chunk,) = chunk_document(Document(id="x", text="Short text."))
    assert chunk.id == "x" and chunk.text == "Short text."


def test_bad_chunk_config_is_refused() -> None:
    with pytest.raises(ValueError):
        ChunkConfig(size=16, overlap=16)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_both_layouts_and_unicode(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "c.jsonl",
        [
            json.dumps({"id": "a", "title": "Zürich", "text": "Zürich liegt am Zürichsee. 東京"}),
            json.dumps({"id": 7, "contents": '"Paris"\nParis is the capital of France.'}),
            "",
        ],
    )
    docs = list(read_documents([f]))
    assert [(d.id, d.title) for d in docs] == [("a", "Zürich"), ("7", "Paris")]
    assert docs[0].text.endswith("東京") and docs[1].text == "Paris is the capital of France."


def test_malformed_row_names_file_and_line(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "bad.jsonl",
        [
            json.dumps({"id": "a", "text": "ok"}),
            "{not json",
            json.dumps({"id": "c", "title": "no text"}),
        ],
    )
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: not valid UTF-8 JSON"):
        list(read_documents([f]))
    skipped: list[str] = []
    docs = list(read_documents([f], on_bad=lambda e: skipped.append(str(e))))
    assert [d.id for d in docs] == ["a"]
    assert [s.split(": ")[0].rsplit(":", 1)[1] for s in skipped] == ["2", "3"]


def test_text_markdown_html_and_directories(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "note.md").write_text("# Harbour Lights\n\nThe lamp burns oil.\n")
    (tmp_path / "plain.txt").write_text("Just text.\n")
    (tmp_path / "page.html").write_text(
        "<html><head><title>Tide Tables</title></head><body><nav>menu</nav><article>"
        "<h1>Tide Tables</h1><p>"
        + "High tide in Fyvrmere comes twice a day. " * 8
        + "</p></article></body></html>"
    )
    (tmp_path / "skip.bin").write_bytes(b"\x00")
    docs = {d.id: d for d in read_documents([tmp_path])}
    assert set(docs) == {"sub/note.md", "plain.txt", "page.html"}
    assert docs["sub/note.md"].title == "Harbour Lights"
    assert docs["page.html"].title == "Tide Tables"
    assert "High tide in Fyvrmere" in docs["page.html"].text
    assert "menu" not in docs["page.html"].text
    with pytest.raises(CorpusError, match="unsupported file type"):
        list(read_documents([tmp_path / "skip.bin"]))
    with pytest.raises(CorpusError, match="no such file"):
        list(read_documents([tmp_path / "missing.jsonl"]))


def test_fictional_entities_are_deterministic_and_unique() -> None:
    a, b = generate_entities(20, seed=3), generate_entities(20, seed=3)
    assert a == b and len(a) == 80
    assert generate_entities(20, seed=4) != a
    assert len({e.id for e in a}) == 80 and len({e.name for e in a}) == 80
    for e in a:
        for qa in e.qa:
            assert qa.answer in e.text, (e.id, qa)


def test_kb_splits_are_fixed_and_disjoint() -> None:
    from evals.kb import kb_documents, kb_entries, kb_questions

    entries = kb_entries()
    articles = [e for e in entries if not e.fictional]
    assert len(articles) >= 150
    held = {e.id for e in entries if e.split == "heldout"}
    assert 0.1 < len(held) / len(entries) < 0.3
    train_q = kb_questions(split="train")
    held_q = kb_questions(split="heldout")
    assert not {q.source_id for q in train_q} & {q.source_id for q in held_q}
    unanswerable = kb_questions(answerable=False)
    assert unanswerable and all(q.fictional for q in unanswerable)
    in_index = {d.id for d in kb_documents()}
    assert not {q.source_id for q in unanswerable} & in_index
    for e in articles:
        for qa in e.qa:
            assert qa["answer"].lower() in e.text.lower(), (e.id, qa)
