"""An embedded Qdrant collection as an index: built, opened wherever an index is
accepted, searched with the same passages and citations as FAISS (issue #17)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from agent.errors import ConfigError, IndexMismatchError
from retrieval import Document, IndexRetriever, LocalIndex, open_index
from retrieval.qdrant_index import QdrantIndex

DOCS = [
    Document(id="fr", title="France", text="Paris is the capital and largest city of France."),
    Document(id="de", title="Germany", text="Berlin is the capital of Germany."),
    Document(id="pe", title="Peru", text="Lima is the capital of Peru, on the Pacific coast."),
]


def test_qdrant_and_faiss_return_the_same_passages(tmp_path: Path) -> None:
    q, report = QdrantIndex.build(DOCS, tmp_path / "q")
    f, _ = LocalIndex.build(DOCS, tmp_path / "f")
    assert report.passages == len(q) == len(f) == 3
    queries = ["capital of Peru", "largest French city", "German capital"]
    got_q, got_f = q.search(queries, 2), f.search(queries, 2)
    for hq, hf in zip(got_q, got_f):
        assert [c.id for c, _ in hq] == [c.id for c, _ in hf]
        assert [round(s, 4) for _, s in hq] == [round(s, 4) for _, s in hf]
        assert hq[0][0] == hf[0][0]  # the same passage: text, title, source, offsets
    q.close()
    reopened = open_index(tmp_path / "q")
    assert isinstance(reopened, QdrantIndex) and reopened.manifest.backend == "qdrant"
    with pytest.raises(IndexMismatchError, match="embedder"):
        open_index(tmp_path / "q", "some-other-embedder")
    with pytest.raises(ConfigError, match="qdrant index"):
        LocalIndex.open(tmp_path / "q")
    reopened.close()


async def test_the_agent_retriever_searches_a_qdrant_index(tmp_path: Path) -> None:
    QdrantIndex.build(DOCS, tmp_path / "q")[0].close()
    retriever = IndexRetriever.open(tmp_path / "q")
    hits = await retriever.search("What is the capital of Peru?", 1)
    assert hits[0].id.startswith("pe") and "Lima" in hits[0].text
    retriever.index.close()


def test_cli_builds_searches_and_describes_a_qdrant_index(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d.model_dump()) + "\n" for d in DOCS))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}

    def splice(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "splice", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)

    out = tmp_path / "idx"
    built = splice("index", "build", str(corpus), "--out", str(out), "--backend", "qdrant")
    assert built.returncode == 0, built.stderr
    found = splice("index", "search", str(out), "Lima Pacific", "--json", "-k", "1")
    assert json.loads(found.stdout)[0]["id"].startswith("pe"), found.stderr
    shown = splice("index", "info", str(out))
    assert "qdrant (embedded)" in shown.stdout and "3" in shown.stdout
    added = splice("index", "add", str(out), str(corpus))
    assert added.returncode == 1 and "not supported" in added.stderr


@pytest.mark.vllm
def test_ask_reads_from_a_qdrant_index(tmp_path: Path, splice_home: Path) -> None:
    QdrantIndex.build(DOCS, tmp_path / "q")[0].close()
    env = {**os.environ, "SPLICE_HOME": str(splice_home), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "splice", "ask", "--index", str(tmp_path / "q"),
           "--search-first", "--json", "--max-model-len", "1024",
           "What is the capital of Peru?"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    results = [s for s in got["trace"] if s["type"] == "tool_result"]
    assert results and results[0]["ok"]
    assert any(c["id"].startswith("pe") for c in results[0]["sources"]), results[0]
    assert all(c["id"].startswith("pe") for c in got["citations"]), got["citations"]
