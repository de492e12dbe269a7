"""``splice bench retrieval``: Flat vs HNSW vs IVF-PQ, measured side by side in one run.

The vectors are synthetic but shaped like real embeddings: clusters in a
low-dimensional latent space, projected to ``dim`` and normalized (real sentence
embeddings have a low intrinsic dimension; isotropic noise in 384 dimensions would
make every neighbour equidistant and say nothing about real search). Recall@10 is
measured against Flat's exact results on the same queries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, Field

from retrieval.index import IndexParams, make_faiss_index

from .report import BenchReport

__all__ = ["RetrievalBenchReport", "run_retrieval_bench", "clustered_vectors"]


class IndexRow(BaseModel):
    index: str
    setting: str
    build_s: float
    qps: float
    recall_at_10: float
    speedup_vs_flat: float
    memory_mb: float


class RetrievalBenchReport(BenchReport):
    n: int
    dim: int
    queries: int
    threads: int
    rows: list[IndexRow] = Field(default_factory=list)
    embed_passages_per_s: float = 0.0
    embed_sentences_per_s: float = 0.0
    goal: str = "HNSW >= 20x Flat queries/s at recall@10 >= 0.95"
    goal_met: bool = False
    best_hnsw: str = ""

    left_columns: ClassVar[tuple[int, ...]] = (0, 1)

    def title(self) -> str:
        return f"{self.n:,} x {self.dim} vectors, {self.queries:,} queries, {self.threads} threads"

    def columns(self) -> list[str]:
        return ["index", "setting", "build s", "queries/s", "recall@10", "x Flat", "MB"]

    def table_rows(self) -> list[list[str]]:
        return [
            [
                r.index,
                r.setting,
                f"{r.build_s:.1f}",
                f"{r.qps:,.0f}",
                f"{r.recall_at_10:.3f}",
                f"{r.speedup_vs_flat:.1f}",
                f"{r.memory_mb:,.0f}",
            ]
            for r in self.rows
        ]

    def caption(self) -> str:
        best = f" ({self.best_hnsw})" if self.best_hnsw else ""
        return (
            f"embedding (MiniLM, this CPU): {self.embed_passages_per_s:,.0f} passages/s "
            f"(~128 tokens), {self.embed_sentences_per_s:,.0f} sentences/s. "
            f"Goal {self.goal}: {'met' if self.goal_met else 'NOT met'}{best}."
        )


def clustered_vectors(
    n: int, dim: int, *, clusters: int = 1000, latent: int = 48, seed: int = 0, chunk: int = 100_000
) -> tuple[np.ndarray, Callable[[int], np.ndarray]]:
    """``n`` normalized vectors, and a function drawing fresh queries from the same mixture."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, latent)).astype(np.float32)
    proj = (rng.normal(size=(latent, dim)) / np.sqrt(latent)).astype(np.float32)

    def draw(m: int, r: np.random.Generator) -> np.ndarray:
        z = centers[r.integers(0, clusters, m)] + 0.35 * r.normal(size=(m, latent)).astype(
            np.float32
        )
        x = z @ proj + 0.02 * r.normal(size=(m, dim)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    data = np.empty((n, dim), np.float32)
    for i in range(0, n, chunk):
        data[i : i + chunk] = draw(min(chunk, n - i), rng)
    qrng = np.random.default_rng(seed + 1)
    return data, lambda m: draw(m, qrng)


def _recall(truth: np.ndarray, got: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(truth, got)]))


def _timed_search(index, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, float]:  # type: ignore[no-untyped-def]
    index.search(queries[:10], k)  # warm caches
    t = time.perf_counter()
    _, ids = index.search(queries, k)
    return ids, len(queries) / (time.perf_counter() - t)


def _index_mb(index) -> float:  # type: ignore[no-untyped-def]
    import faiss

    return len(faiss.serialize_index(index)) / 1e6


def _embedding_rates(log: Callable[[str], None]) -> tuple[float, float]:
    from evals.kb import kb_documents
    from retrieval.embedder import Embedder

    emb = Embedder()
    emb.encode_passages(["warm up"])
    docs = kb_documents()[:96]
    passages = [" ".join(d.text.split()[:100]) for d in docs]
    t = time.perf_counter()
    emb.encode_passages(passages)
    per_passage = len(passages) / (time.perf_counter() - t)
    sentences = [s.strip() + "." for d in docs for s in d.text.split(".") if len(s.split()) > 3][
        :320
    ]
    t = time.perf_counter()
    emb.encode_passages(sentences)
    per_sentence = len(sentences) / (time.perf_counter() - t)
    log(f"embedding: {per_passage:,.0f} passages/s, {per_sentence:,.0f} sentences/s")
    return per_passage, per_sentence


def run_retrieval_bench(
    *,
    n: int = 1_000_000,
    dim: int = 384,
    queries: int = 1000,
    ef_search: tuple[int, ...] = (16, 32, 64, 128, 256),
    nprobe: tuple[int, ...] = (8, 32, 128),
    hnsw_m: int = 32,
    ef_construction: int = 64,
    embed: bool = True,
    log: Callable[[str], None] = print,
) -> RetrievalBenchReport:
    import faiss

    report = RetrievalBenchReport(
        n=n, dim=dim, queries=queries, threads=faiss.omp_get_max_threads()
    )
    if embed:  # first, before FAISS's OpenMP threads exist beside torch's
        report.embed_passages_per_s, report.embed_sentences_per_s = _embedding_rates(log)
    log(f"generating {n:,} clustered {dim}-dim vectors")
    data, draw_queries = clustered_vectors(n, dim)
    q = draw_queries(queries)

    log("flat: adding")
    t = time.perf_counter()
    flat = make_faiss_index("flat", dim, IndexParams())
    flat.add(data)
    flat_build = time.perf_counter() - t
    truth, flat_qps = _timed_search(flat, q)
    report.rows.append(
        IndexRow(
            index="flat",
            setting="exact",
            build_s=flat_build,
            qps=flat_qps,
            recall_at_10=1.0,
            speedup_vs_flat=1.0,
            memory_mb=data.nbytes / 1e6,
        )
    )
    log(f"flat: {flat_qps:,.0f} queries/s")
    del flat

    params = IndexParams(hnsw_m=hnsw_m, ef_construction=ef_construction)
    log(f"hnsw: building (M={hnsw_m}, efConstruction={ef_construction})")
    t = time.perf_counter()
    hnsw = make_faiss_index("hnsw", dim, params)
    hnsw.add(data)
    hnsw_build = time.perf_counter() - t
    hnsw_mb = data.nbytes / 1e6 + n * hnsw_m * 2 * 4 / 1e6  # vectors + level-0 links
    log(f"hnsw: built in {hnsw_build:.0f}s")
    for ef in ef_search:
        hnsw.hnsw.efSearch = ef
        ids, qps = _timed_search(hnsw, q)
        rec = _recall(truth, ids)
        report.rows.append(
            IndexRow(
                index="hnsw",
                setting=f"efSearch={ef}",
                build_s=hnsw_build,
                qps=qps,
                recall_at_10=rec,
                speedup_vs_flat=qps / flat_qps,
                memory_mb=hnsw_mb,
            )
        )
        log(f"hnsw efSearch={ef}: {qps:,.0f} queries/s, recall@10 {rec:.3f}")
    del hnsw

    log("ivfpq: training and adding")
    t = time.perf_counter()
    sample = data[np.random.default_rng(2).choice(n, min(n, 100_000), replace=False)]
    ivf = make_faiss_index("ivfpq", dim, IndexParams(), train=sample)
    ivf.add(data)
    ivf_build = time.perf_counter() - t
    ivf_mb = _index_mb(ivf)
    ivf_core = faiss.extract_index_ivf(ivf)
    nlist = ivf_core.nlist
    for probe in nprobe:
        ivf_core.nprobe = probe
        ids, qps = _timed_search(ivf, q)
        rec = _recall(truth, ids)
        report.rows.append(
            IndexRow(
                index="ivfpq",
                setting=f"nprobe={probe}/{nlist} +SQ8",
                build_s=ivf_build,
                qps=qps,
                recall_at_10=rec,
                speedup_vs_flat=qps / flat_qps,
                memory_mb=ivf_mb,
            )
        )
        log(f"ivfpq nprobe={probe}: {qps:,.0f} queries/s, recall@10 {rec:.3f}")
    del ivf

    good = [r for r in report.rows if r.index == "hnsw" and r.recall_at_10 >= 0.95]
    if good:
        best = max(good, key=lambda r: r.speedup_vs_flat)
        report.goal_met = best.speedup_vs_flat >= 20
        report.best_hnsw = (
            f"{best.setting}: {best.speedup_vs_flat:.1f}x at recall {best.recall_at_10:.3f}"
        )
    return report
