"""A persisted FAISS index: ``index.faiss`` + ``passages.sqlite`` + ``manifest.json``.

FAISS row ``r`` is passage row ``r`` in the store. Flat (exact inner product),
HNSW and IVF-PQ are supported; ``auto`` picks by size. A build is written to a
temporary directory beside the target and renamed into place, so a crash never
leaves a half-written index. Loading checks the manifest against the files (sizes
always, checksums on request) and against the embedder asked for.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from agent.errors import (
    ConfigError,
    CorpusError,
    DependencyMissingError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    first_line,
)
from agent.files import sha256_file

from .chunking import Chunk, ChunkConfig, Document, chunk_document
from .embedder import Embedder
from .store import PassageStore

__all__ = [
    "LocalIndex",
    "IndexManifest",
    "IndexParams",
    "BuildReport",
    "IndexType",
    "choose_type",
    "make_faiss_index",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FAISS_FILE = "index.faiss"
STORE_FILE = "passages.sqlite"
IndexType = Literal["auto", "flat", "hnsw", "ivfpq"]

# Below this many passages exact search is fast enough; above ~2M, HNSW's graph and
# raw vectors outgrow memory and IVF-PQ's compressed codes win.
HNSW_FROM = 50_000
IVFPQ_FROM = 2_000_000
IVFPQ_MIN = 10_000


def _faiss():  # type: ignore[no-untyped-def]
    try:
        import faiss
    except ImportError as exc:
        raise DependencyMissingError("faiss", "pip install faiss-cpu") from exc
    return faiss


class IndexParams(BaseModel):
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nlist: int = 0  # IVF lists; 0 = chosen from the training size
    pq_m: int = 0  # PQ sub-quantizers; 0 = chosen from the dimension
    nprobe: int = 32
    # IVF-PQ re-ranks k_factor * k candidates with 8-bit scalar-quantized vectors:
    # PQ codes alone cap recall@10 near 0.45-0.55 on 384-dim embeddings (measured).
    refine: Literal["SQ8", "none"] = "SQ8"
    k_factor: int = 16


class FileEntry(BaseModel):
    size: int
    sha256: str


class IndexManifest(BaseModel):
    format_version: int = FORMAT_VERSION
    embedder: str
    query_prefix: str = ""
    passage_prefix: str = ""
    dim: int
    metric: Literal["inner_product"] = "inner_product"
    index_type: Literal["flat", "hnsw", "ivfpq"]
    params: IndexParams = Field(default_factory=IndexParams)
    chunking: ChunkConfig = Field(default_factory=ChunkConfig)
    count: int
    documents: int = 0
    files: dict[str, FileEntry] = Field(default_factory=dict)
    created: str = ""
    updated: str = ""
    label: str = ""  # free text, e.g. the built-in knowledge base's content hash
    backend: Literal["faiss", "qdrant"] = "faiss"
    collection: str | None = None  # the Qdrant collection, for backend "qdrant"


class BuildReport(BaseModel):
    documents: int = 0
    passages: int = 0
    duplicates: list[str] = Field(default_factory=list)
    bad_rows: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0


def choose_type(count: int) -> Literal["flat", "hnsw", "ivfpq"]:
    if count >= IVFPQ_FROM:
        return "ivfpq"
    return "hnsw" if count >= HNSW_FROM else "flat"


def _pq_m(dim: int) -> int:
    for m in (64, 48, 32, 24, 16, 12, 8, 4, 2, 1):
        if dim % m == 0 and dim // m >= 4:
            return m
    return 1


def make_faiss_index(kind: str, dim: int, params: IndexParams, train: np.ndarray | None = None):  # type: ignore[no-untyped-def]
    """An empty FAISS index of ``kind`` for normalized vectors (inner product)."""
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, ip)
        index.hnsw.efConstruction = params.ef_construction
        index.hnsw.efSearch = params.ef_search
        return index
    if kind == "ivfpq":
        if train is None or len(train) < IVFPQ_MIN:
            n = 0 if train is None else len(train)
            raise ConfigError(
                f"IVF-PQ needs at least {IVFPQ_MIN:,} passages to train, got "
                f"{n:,}: use --type flat or hnsw"
            )
        nlist = params.nlist or max(16, min(int(4 * math.sqrt(len(train))), len(train) // 39))
        params.nlist = nlist
        params.pq_m = params.pq_m or _pq_m(dim)
        spec = f"IVF{nlist},PQ{params.pq_m}" + (",Refine(SQ8)" if params.refine == "SQ8" else "")
        index = faiss.index_factory(dim, spec, ip)
        index.train(train)
        _set_search_params(index, params)
        return index
    raise ConfigError(f"unknown index type {kind!r}: use flat, hnsw, ivfpq or auto")


def _set_search_params(index: Any, params: IndexParams) -> None:
    faiss = _faiss()
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = params.ef_search
        return
    if hasattr(index, "k_factor"):
        index.k_factor = params.k_factor
    try:
        faiss.extract_index_ivf(index).nprobe = params.nprobe
    except RuntimeError:
        pass  # not an IVF index


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _to_gpu(index):  # type: ignore[no-untyped-def]
    """Clone to all GPUs when faiss-gpu and a GPU are present (HNSW stays on CPU)."""
    faiss = _faiss()
    if isinstance(index, faiss.IndexHNSW) or not hasattr(faiss, "index_cpu_to_all_gpus"):
        return index
    try:
        if faiss.get_num_gpus() > 0:
            return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError:
        pass
    return index


class LocalIndex:
    """An opened index. Search is thread-safe for reads; ``add`` is not concurrent."""

    def __init__(
        self,
        path: Path,
        manifest: IndexManifest,
        faiss_index: Any,
        store: PassageStore,
        embedder: Embedder,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.faiss_index = faiss_index
        self.store = store
        self.embedder = embedder

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    # -- loading -------------------------------------------------------------

    @staticmethod
    def read_manifest(path: Path) -> IndexManifest:
        path = Path(path)
        mfile = path / MANIFEST
        if not path.is_dir() or not mfile.exists():
            if path.is_dir() and any((path / f).exists() for f in (FAISS_FILE, STORE_FILE)):
                raise IndexCorruptError(path, f"{MANIFEST} is missing")
            if path.is_dir() and any(path.iterdir()):
                # A folder of documents, say: it was never an index.
                raise IndexNotFoundError(
                    path, f"to index the files in it, `splice index build {path} --out DIR`"
                )
            raise IndexNotFoundError(path)
        try:
            manifest = IndexManifest.model_validate_json(mfile.read_text())
        except (ValidationError, ValueError, UnicodeDecodeError):
            raise IndexCorruptError(path, f"{MANIFEST} is unreadable") from None
        if manifest.format_version > FORMAT_VERSION:
            raise IndexMismatchError(
                f"the index at {path} has format {manifest.format_version}, newer than this "
                f"Splice reads ({FORMAT_VERSION}): upgrade Splice or rebuild the index"
            )
        return manifest

    @classmethod
    def open(
        cls,
        path: Path | str,
        embedder: Embedder | str | None = None,
        *,
        verify: bool = False,
        gpu: bool = True,
    ) -> LocalIndex:
        """Open ``path``. ``embedder`` (if given) must match the one that built it."""
        path = Path(path)
        m = cls.read_manifest(path)
        if m.backend != "faiss":
            raise ConfigError(f"{path} is a {m.backend} index: open it with retrieval.open_index")
        for name in (FAISS_FILE, STORE_FILE):
            f = path / name
            if not f.exists():
                raise IndexCorruptError(path, f"{name} is missing")
            entry = m.files.get(name)
            if entry is None:
                raise IndexCorruptError(path, f"{MANIFEST} lists no {name}")
            if f.stat().st_size != entry.size:
                raise IndexCorruptError(
                    path, f"{name} is {f.stat().st_size:,} bytes, expected {entry.size:,}"
                )
            if verify and sha256_file(f) != entry.sha256:
                raise IndexCorruptError(path, f"{name} fails its sha256 checksum")
        embedder = matching_embedder(path, m, embedder)
        faiss = _faiss()
        try:
            index = faiss.read_index(str(path / FAISS_FILE))
        except (RuntimeError, MemoryError) as exc:  # a damaged header can ask for GBs
            raise IndexCorruptError(path, f"{FAISS_FILE}: {first_line(exc, 80)}") from None
        if index.d != m.dim:
            raise IndexMismatchError(
                f"the index at {path} holds {index.d}-dim vectors but its "
                f"manifest says {m.dim}: rebuild the index"
            )
        try:
            store = PassageStore(path / STORE_FILE)
            stored = len(store)
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(path, f"{STORE_FILE}: {exc}") from None
        if not index.ntotal == stored == m.count:
            raise IndexCorruptError(
                path, f"{index.ntotal} vectors, {stored} passages, manifest says {m.count}"
            )
        _set_search_params(index, m.params)
        if gpu:
            index = _to_gpu(index)
        return cls(path, m, index, store, embedder)

    def check_dim(self) -> None:
        """Load the embedder and compare its dimension with the index's."""
        if self.embedder.dim != self.manifest.dim:
            raise IndexMismatchError(
                f"embedder {self.embedder.name!r} makes {self.embedder.dim}-dim vectors but the "
                f"index at {self.path} holds {self.manifest.dim}-dim ones: rebuild the index"
            )

    # -- building ------------------------------------------------------------

    @classmethod
    def build(
        cls,
        documents: Iterable[Document],
        out: Path | str,
        *,
        embedder: Embedder | None = None,
        index_type: IndexType = "auto",
        chunking: ChunkConfig | None = None,
        params: IndexParams | None = None,
        overwrite: bool = False,
        progress: bool = False,
        label: str = "",
        on_stage: Callable[[str], None] | None = None,
        corpus: str = "input",
    ) -> tuple[LocalIndex, BuildReport]:
        """Chunk, embed and index ``documents`` into ``out``, atomically.
        ``corpus`` names the documents' origin in errors (the paths given)."""
        out = Path(out)
        embedder = embedder or Embedder()
        chunking = chunking or ChunkConfig()
        params = params or IndexParams()
        tmp = start_build(out, overwrite)
        try:
            report = BuildReport()
            t0 = time.perf_counter()
            chunks, vecs = embedded_chunks(
                documents, embedder, chunking, report, on_stage, progress, corpus
            )
            kind = choose_type(len(chunks)) if index_type == "auto" else index_type
            store = PassageStore(tmp / STORE_FILE, create=True)
            if on_stage:
                on_stage(f"building a {kind} index")
            train = vecs if kind == "ivfpq" else None
            index = make_faiss_index(kind, vecs.shape[1], params, train)
            index.add(vecs)
            store.insert(0, chunks)
            store.commit()
            manifest = new_manifest(
                embedder, vecs, chunking, report, index_type=kind, params=params, label=label
            )
            _write_faiss(index, tmp)
            store.close()
            _write_manifest(manifest, tmp)
            _swap_into_place(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        report.passages = manifest.count
        report.seconds = time.perf_counter() - t0
        return cls.open(out, embedder), report

    @staticmethod
    def _new_chunks(
        documents: Iterable[Document],
        embedder: Embedder,
        chunking: ChunkConfig,
        known: set[str],
        report: BuildReport,
        on_stage: Callable[[str], None] | None,
    ) -> list[Chunk]:
        if on_stage:
            on_stage("reading and chunking documents")
        seen_docs: set[str] = set()
        seen_chunks: set[str] = set()
        chunks: list[Chunk] = []
        for doc in documents:
            if doc.id in seen_docs or doc.id in known:
                report.duplicates.append(doc.id)
                continue
            seen_docs.add(doc.id)
            report.documents += 1
            for chunk in chunk_document(doc, chunking, embedder.token_spans):
                if chunk.id in seen_chunks:  # e.g. document "a#1" beside a's second chunk
                    report.duplicates.append(chunk.id)
                    continue
                seen_chunks.add(chunk.id)
                chunks.append(chunk)
        return chunks

    def add(
        self,
        documents: Iterable[Document],
        *,
        progress: bool = False,
        on_stage: Callable[[str], None] | None = None,
    ) -> BuildReport:
        """Append documents. Ids already in the index are reported and skipped."""
        self.check_dim()
        report = BuildReport()
        t0 = time.perf_counter()
        docs = list(documents)
        known = self.store.existing_docs([d.id for d in docs])
        chunks = self._new_chunks(
            docs, self.embedder, self.manifest.chunking, known, report, on_stage
        )
        if not chunks:
            report.seconds = time.perf_counter() - t0
            return report
        vecs = self.embedder.encode_passages([c.text for c in chunks], progress=progress)
        first = len(self)
        cpu_index = self._cpu_index()
        cpu_index.add(vecs)
        # Order keeps a crash detectable: store rows (uncommitted), new FAISS file,
        # commit, then the manifest. A count mismatch on open reports any torn add.
        try:
            self.store.insert(first, chunks)
            _write_faiss(cpu_index, self.path)
            self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        self.manifest.count = int(cpu_index.ntotal)
        self.manifest.documents += report.documents
        self.manifest.updated = _now()
        _write_manifest(self.manifest, self.path)
        self.faiss_index = _to_gpu(cpu_index) if cpu_index is not self.faiss_index else cpu_index
        report.passages = len(chunks)
        report.seconds = time.perf_counter() - t0
        return report

    def _cpu_index(self):  # type: ignore[no-untyped-def]
        faiss = _faiss()
        if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(self.faiss_index).__name__:
            return faiss.index_gpu_to_cpu(self.faiss_index)
        return self.faiss_index

    # -- searching -----------------------------------------------------------

    def search_vectors(self, vecs: np.ndarray, k: int) -> list[list[tuple[Chunk, float]]]:
        k = max(1, min(k, len(self)))
        scores, rows = self.faiss_index.search(np.ascontiguousarray(vecs, np.float32), k)
        found = self.store.get(sorted({int(r) for r in rows.ravel() if r >= 0}))
        return [
            [(found[int(r)], float(s)) for r, s in zip(row_ids, row_scores) if int(r) in found]
            for row_ids, row_scores in zip(rows, scores)
        ]

    def search(self, queries: Sequence[str], k: int = 5) -> list[list[tuple[Chunk, float]]]:
        """Top-``k`` passages for each query, best first, with inner-product scores."""
        if not queries:
            return []
        return self.search_vectors(self.embedder.encode_queries(list(queries)), k)

    def info(self) -> dict[str, Any]:
        size = sum((self.path / n).stat().st_size for n in (FAISS_FILE, STORE_FILE, MANIFEST))
        return {
            "path": str(self.path),
            **json.loads(self.manifest.model_dump_json()),
            "bytes": size,
        }

    def close(self) -> None:
        self.store.close()


def matching_embedder(path: Path, m: IndexManifest, embedder: Embedder | str | None) -> Embedder:
    """The embedder that built the index at ``path``; a different one is refused."""
    if isinstance(embedder, str):
        embedder = Embedder(embedder)
    if embedder is not None and embedder.name != m.embedder:
        raise IndexMismatchError(
            f"the index at {path} was built with embedder {m.embedder!r}, not "
            f"{embedder.name!r}: drop --embedder or rebuild the index with it"
        )
    return embedder or Embedder(
        m.embedder, query_prefix=m.query_prefix, passage_prefix=m.passage_prefix
    )


def new_manifest(
    embedder: Embedder,
    vecs: np.ndarray,
    chunking: ChunkConfig,
    report: BuildReport,
    **fields: Any,
) -> IndexManifest:
    """The manifest of an index just built from ``report.passages`` passages."""
    return IndexManifest(
        embedder=embedder.name,
        query_prefix=embedder.query_prefix,
        passage_prefix=embedder.passage_prefix,
        dim=int(vecs.shape[1]),
        chunking=chunking,
        count=int(vecs.shape[0]),
        documents=report.documents,
        created=_now(),
        updated=_now(),
        **fields,
    )


def start_build(out: Path, overwrite: bool) -> Path:
    """Refuse to clobber ``out`` unless asked; a fresh directory beside it to build in
    (moved into place at the end, so a crash never leaves half an index)."""
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"{out} already exists: pass --overwrite to replace it, or use `splice index add`"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))


def embedded_chunks(
    documents: Iterable[Document],
    embedder: Embedder,
    chunking: ChunkConfig,
    report: BuildReport,
    on_stage: Callable[[str], None] | None,
    progress: bool,
    corpus: str,
) -> tuple[list[Chunk], np.ndarray]:
    """The documents' passages and their vectors, for a new index of any backend."""
    chunks = LocalIndex._new_chunks(documents, embedder, chunking, set(), report, on_stage)
    if not chunks:
        raise CorpusError(corpus, "no passages found: the corpus is empty")
    if on_stage:
        on_stage(f"embedding {len(chunks):,} passages with {embedder.name}")
    t0 = time.perf_counter()
    vecs = embedder.encode_passages([c.text for c in chunks], progress=progress)
    report.embed_seconds = time.perf_counter() - t0
    return chunks, vecs


def _write_faiss(index: Any, directory: Path) -> None:
    faiss = _faiss()
    tmp = directory / (FAISS_FILE + ".tmp")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, directory / FAISS_FILE)


def _write_manifest(manifest: IndexManifest, directory: Path) -> None:
    manifest.files = {
        name: FileEntry(
            size=(directory / name).stat().st_size, sha256=sha256_file(directory / name)
        )
        for name in (FAISS_FILE, STORE_FILE)
    }
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(manifest.model_dump_json(indent=2))
    os.replace(tmp, directory / MANIFEST)


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
