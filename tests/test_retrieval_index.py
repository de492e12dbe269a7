"""Real MiniLM + real FAISS: build, search, persist, reload, add, and every way an
index directory can be wrong."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.errors import (
    ConfigError,
    CorpusError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
)
from retrieval import Document, Embedder, IndexRetriever, LocalIndex
from retrieval.index import IndexParams, make_faiss_index

DOCS = [
    Document(
        id="whale",
        title="Blue whale",
        text="The blue whale is the largest animal known "
        "to have lived. Adults can reach about 30 metres in length.",
        source="bio.txt",
    ),
    Document(
        id="everest",
        title="Mount Everest",
        text="Mount Everest, on the border of Nepal "
        "and China, is the highest mountain above sea level at 8,849 metres.",
    ),
    Document(
        id="python",
        title="Python",
        text="Python is a programming language created by "
        "Guido van Rossum and first released in 1991.",
    ),
    Document(
        id="tea",
        title="Tea",
        text="Tea is brewed from the leaves of Camellia sinensis, "
        "a shrub first cultivated in China.",
    ),
]


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    path = tmp_path_factory.mktemp("idx") / "small"
    index, report = LocalIndex.build(DOCS, path, embedder=embedder)
    assert report.passages == 4 and report.documents == 4 and not report.duplicates
    assert index.manifest.index_type == "flat"
    index.close()
    return path


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_paraphrased_query_finds_the_gold_passage(small_index: Path, embedder: Embedder) -> None:
    index = LocalIndex.open(small_index, embedder)
    hits = index.search(
        ["tallest peak on Earth", "who invented the Python language?", "biggest creature ever"], k=2
    )
    assert [h[0][0].id for h in hits] == ["everest", "python", "whale"]
    assert hits[2][0][0].source == "bio.txt" and hits[2][0][1] > hits[2][1][1]


def test_reload_from_disk_gives_the_same_results(small_index: Path) -> None:
    a = LocalIndex.open(small_index).search(["green leaves brewed in hot water"], k=4)
    b = LocalIndex.open(small_index, verify=True).search(["green leaves brewed in hot water"], k=4)
    assert [(c.id, round(s, 5)) for c, s in a[0]] == [(c.id, round(s, 5)) for c, s in b[0]]
    assert a[0][0][0].id == "tea"


def test_add_appends_and_reports_duplicates(
    small_index: Path, tmp_path: Path, embedder: Embedder
) -> None:
    path = _copy(small_index, tmp_path)
    index = LocalIndex.open(path, embedder)
    report = index.add(
        [
            DOCS[0],
            Document(
                id="nile",
                title="Nile",
                text="The Nile flows north through Egypt into the Mediterranean Sea.",
            ),
        ]
    )
    assert report.duplicates == ["whale"] and report.passages == 1
    reopened = LocalIndex.open(path, verify=True)
    assert len(reopened) == 5 and reopened.manifest.documents == 5
    assert reopened.search(["river through Egypt"], k=1)[0][0][0].id == "nile"


def test_duplicate_ids_in_one_build_are_reported(tmp_path: Path, embedder: Embedder) -> None:
    docs = [DOCS[0], DOCS[1], Document(id="whale", text="Another whale text.")]
    index, report = LocalIndex.build(docs, tmp_path / "dup", embedder=embedder)
    assert report.duplicates == ["whale"] and len(index) == 2


def test_unicode_round_trip(tmp_path: Path, embedder: Embedder) -> None:
    docs = [
        Document(
            id="zürich-1",
            title="Zürich",
            text="Zürich liegt am Zürichsee in der Schweiz. 苏黎世是瑞士最大的城市。",
        ),
        DOCS[2],
    ]
    index, _ = LocalIndex.build(docs, tmp_path / "u", embedder=embedder)
    (chunk, _), *_ = LocalIndex.open(tmp_path / "u").search(["Zürichsee Schweiz"], k=1)[0]
    assert chunk.id == "zürich-1" and "苏黎世" in chunk.text


def test_passage_longer_than_the_embedder_window_is_split(
    tmp_path: Path, embedder: Embedder
) -> None:
    sentences = [f"Fact number {i} says the lighthouse keeper logged ship {i}." for i in range(120)]
    long_doc = Document(id="long", title="Logbook", text=" ".join(sentences))
    assert len(embedder.token_spans(long_doc.text)) > embedder.max_tokens
    index, report = LocalIndex.build([long_doc], tmp_path / "long", embedder=embedder)
    assert report.passages > 1
    chunks = index.store.get(list(range(len(index))))
    for c in chunks.values():
        assert len(embedder.token_spans(c.text)) <= index.manifest.chunking.size
    assert "ship 119." in " ".join(c.text for c in chunks.values())


def test_empty_corpus_is_an_error_and_leaves_nothing(tmp_path: Path, embedder: Embedder) -> None:
    with pytest.raises(CorpusError, match="empty"):
        LocalIndex.build([], tmp_path / "empty", embedder=embedder)
    assert list(tmp_path.iterdir()) == []


def test_crash_mid_build_leaves_no_half_written_index(tmp_path: Path, embedder: Embedder) -> None:
    class Boom(Embedder):
        def encode_passages(self, texts, progress=False):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt  # like Ctrl-C during embedding

    boom = Boom()
    boom._model = embedder.model  # reuse the loaded weights
    with pytest.raises(KeyboardInterrupt):
        LocalIndex.build(DOCS, tmp_path / "crash", embedder=boom)
    assert list(tmp_path.iterdir()) == []


def test_rebuild_over_an_existing_index_needs_overwrite(
    small_index: Path, tmp_path: Path, embedder: Embedder
) -> None:
    path = _copy(small_index, tmp_path)
    with pytest.raises(ConfigError, match="--overwrite"):
        LocalIndex.build(DOCS[:1], path, embedder=embedder)
    index, _ = LocalIndex.build(DOCS[:2], path, embedder=embedder, overwrite=True)
    assert len(LocalIndex.open(path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]


def test_wrong_embedder_and_wrong_dimension_are_refused(
    small_index: Path, tmp_path: Path, embedder: Embedder
) -> None:
    with pytest.raises(IndexMismatchError, match="built with embedder 'all-MiniLM-L6-v2'"):
        LocalIndex.open(small_index, Embedder("intfloat/e5-small-v2"))
    path = _copy(small_index, tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["dim"] = 768
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="768"):
        LocalIndex.open(path)


@pytest.mark.parametrize(
    "damage, match",
    [
        (
            lambda p: (p / "index.faiss").write_bytes((p / "index.faiss").read_bytes()[:100]),
            "index.faiss is 100 bytes",
        ),
        (lambda p: (p / "passages.sqlite").unlink(), "passages.sqlite is missing"),
        (lambda p: (p / "manifest.json").write_text("{"), "manifest.json is unreadable"),
        (lambda p: (p / "manifest.json").unlink(), "manifest.json is missing"),
    ],
)
def test_damaged_index_gets_a_one_line_error(
    small_index: Path, tmp_path: Path, damage, match: str
) -> None:
    path = _copy(small_index, tmp_path)
    damage(path)
    with pytest.raises(IndexCorruptError, match=match) as info:
        LocalIndex.open(path)
    assert "\n" not in str(info.value) and "rebuild" in str(info.value)


def test_flipped_bytes_are_caught_by_verify(small_index: Path, tmp_path: Path) -> None:
    path = _copy(small_index, tmp_path)
    data = bytearray((path / "index.faiss").read_bytes())
    data[-5] ^= 0xFF
    (path / "index.faiss").write_bytes(bytes(data))
    LocalIndex.open(path)  # same size: only the checksum can tell
    with pytest.raises(IndexCorruptError, match="sha256"):
        LocalIndex.open(path, verify=True)


def test_a_folder_that_was_never_an_index_says_so(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# Notes\nThe ferry leaves at noon.")
    with pytest.raises(IndexNotFoundError, match="splice index build") as info:
        LocalIndex.open(notes)
    assert "damaged" not in str(info.value) and "missing" not in str(info.value)


def test_missing_index_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="splice index build"):
        LocalIndex.open(tmp_path / "nowhere")


def test_hnsw_and_ivfpq_recall_against_flat() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(50, 64)).astype(np.float32)
    data = centers[rng.integers(0, 50, 20_000)] + 0.3 * rng.normal(size=(20_000, 64))
    data = (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)
    queries = data[:200] + 0.05 * rng.normal(size=(200, 64)).astype(np.float32)
    flat = make_faiss_index("flat", 64, IndexParams())
    flat.add(data)
    _, truth = flat.search(queries, 10)
    for kind, floor in (("hnsw", 0.9), ("ivfpq", 0.8)):
        index = make_faiss_index(kind, 64, IndexParams(), train=data)
        index.add(data)
        _, got = index.search(queries, 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, got)])
        assert recall >= floor, (kind, recall)
    with pytest.raises(ConfigError, match="IVF-PQ needs at least"):
        make_faiss_index("ivfpq", 64, IndexParams(), train=data[:100])


async def test_concurrent_searches_share_batches(small_index: Path, embedder: Embedder) -> None:
    retriever = IndexRetriever(LocalIndex.open(small_index, embedder))
    queries = ["tallest mountain", "largest animal", "programming language", "a hot drink"] * 5
    results = await asyncio.gather(*(retriever.search(q, k=1) for q in queries))
    assert [r[0].id for r in results[:4]] == ["everest", "whale", "python", "tea"]
    assert retriever.batches < len(queries)
    assert all(r[0].title for r in results) and results[1][0].score > 0


def _splice(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "splice.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_builds_1000_passages_and_finds_a_paraphrase(tmp_path: Path) -> None:
    from evals.fictional import generate_entities

    entities = generate_entities(250, seed=11)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": e.id, "title": e.name, "text": e.text}) + "\n" for e in entities)
    )
    out = tmp_path / "idx"
    root = Path(__file__).resolve().parent.parent
    res = _splice("index", "build", str(corpus), "--out", str(out), cwd=root)
    assert res.returncode == 0, res.stderr
    assert "indexed 1,000 passages from 1,000 documents" in res.stdout
    target = next(e for e in entities if e.kind == "invention")
    query = f"what was the {target.name} made for and who built it"
    res = _splice("index", "search", str(out), query, "-k", "3", "--json", cwd=root)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert set(rows[0]) >= {"id", "title", "text", "score"}
    assert rows[0]["id"] == target.id
    info = _splice("index", "info", str(out), "--json", cwd=root)
    assert json.loads(info.stdout)["count"] == 1000


def test_cli_reports_a_malformed_row_and_writes_nothing(tmp_path: Path) -> None:
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "fine"}) + "\n{oops\n")
    root = Path(__file__).resolve().parent.parent
    res = _splice("index", "build", str(corpus), "--out", str(tmp_path / "idx"), cwd=root)
    assert res.returncode == 1
    assert "bad.jsonl:2" in res.stderr and "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_a_path_with_hash_or_question_mark_opens_its_own_files(
    tmp_path: Path, embedder: Embedder
) -> None:
    parent = tmp_path / "odd"
    path = parent / "notes#2?draft"
    built, _ = LocalIndex.build(DOCS, path, embedder=embedder)
    built.close()
    index = LocalIndex.open(path, verify=True)
    assert index.search(["Who created Python?"], k=1)[0][0][0].doc_id == "python"
    index.close()
    assert sorted(p.name for p in parent.iterdir()) == ["notes#2?draft"]  # no stray file


def test_a_header_that_asks_for_too_much_memory_is_one_line(
    small_index: Path, tmp_path: Path, monkeypatch
) -> None:
    import retrieval.index as index_module

    class Faiss:
        @staticmethod
        def read_index(_path):
            raise MemoryError("std::bad_alloc")

    monkeypatch.setattr(index_module, "_faiss", lambda: Faiss)
    with pytest.raises(IndexCorruptError, match="index.faiss") as info:
        LocalIndex.open(_copy(small_index, tmp_path))
    assert "\n" not in str(info.value)
