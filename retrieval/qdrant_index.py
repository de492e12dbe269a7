"""A Qdrant collection as a Splice index, in qdrant-client's embedded (local) mode.

The directory holds the collection's storage beside the same ``manifest.json`` a
FAISS index has (``backend: qdrant``), so ``--index DIR`` opens either, with the same
embedder and dimension checks, passages and citations. qdrant-client is imported
lazily and is an extra: ``pip install 'splice[qdrant]'``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import (
    ConfigError,
    DependencyMissingError,
    IndexCorruptError,
)

from .chunking import Chunk, ChunkConfig, Document
from .embedder import Embedder
from .index import (
    MANIFEST,
    BuildReport,
    IndexManifest,
    LocalIndex,
    _swap_into_place,
    embedded_chunks,
    matching_embedder,
    new_manifest,
    start_build,
)

__all__ = ["QdrantIndex", "QDRANT_INSTALL"]

QDRANT_INSTALL = "pip install 'splice[qdrant]'"
STORAGE = "qdrant"
COLLECTION = "passages"
PAYLOAD = ("id", "doc_id", "title", "text", "source", "start", "end")


def _qdrant() -> tuple[Any, Any]:
    try:
        from qdrant_client import QdrantClient, models
    except ImportError as exc:
        raise DependencyMissingError("qdrant-client", QDRANT_INSTALL) from exc
    return QdrantClient, models


def _client(storage: Path) -> Any:
    client_cls, _ = _qdrant()
    try:
        return client_cls(path=str(storage))
    except RuntimeError as exc:  # local mode allows one client per directory
        raise ConfigError(
            f"the Qdrant storage at {storage} is open in another process: close it, or "
            "serve the collection from a Qdrant server"
        ) from exc


class QdrantIndex:
    """Same surface as :class:`LocalIndex` for searching: ``search``, ``manifest``,
    ``embedder``, ``info``, ``close``."""

    def __init__(
        self, path: Path, manifest: IndexManifest, client: Any, embedder: Embedder
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.client = client
        self.embedder = embedder
        self.collection = manifest.collection or COLLECTION

    def __len__(self) -> int:
        return int(self.client.count(self.collection).count)

    @classmethod
    def open(cls, path: Path | str, embedder: Embedder | str | None = None) -> QdrantIndex:
        path = Path(path)
        m = LocalIndex.read_manifest(path)
        embedder = matching_embedder(path, m, embedder)
        if not (path / STORAGE).is_dir():
            raise IndexCorruptError(path, f"{STORAGE}/ is missing")
        client = _client(path / STORAGE)
        index = cls(path, m, client, embedder)
        try:
            info = client.get_collection(index.collection)
            stored = len(index)
        except (ValueError, KeyError) as exc:
            client.close()
            raise IndexCorruptError(path, f"no collection {index.collection!r}") from exc
        size = info.config.params.vectors.size
        if size != m.dim or stored != m.count:
            client.close()
            raise IndexCorruptError(
                path, f"{stored} points of {size} dims, manifest says {m.count} of {m.dim}"
            )
        return index

    @classmethod
    def build(
        cls,
        documents: Iterable[Document],
        out: Path | str,
        *,
        embedder: Embedder | None = None,
        chunking: ChunkConfig | None = None,
        overwrite: bool = False,
        progress: bool = False,
        on_stage: Callable[[str], None] | None = None,
        corpus: str = "input",
        batch_size: int = 256,
    ) -> tuple[QdrantIndex, BuildReport]:
        """Chunk, embed and upsert ``documents`` into an embedded collection in ``out``,
        atomically (built beside it, then moved into place)."""
        _qdrant()  # name the missing extra before anything slow
        out = Path(out)
        embedder = embedder or Embedder()
        chunking = chunking or ChunkConfig()
        tmp = start_build(out, overwrite)
        try:
            report = BuildReport()
            t0 = time.perf_counter()
            chunks, vecs = embedded_chunks(
                documents, embedder, chunking, report, on_stage, progress, corpus
            )
            client = _client(tmp / STORAGE)
            try:
                _upsert(client, chunks, vecs, batch_size, on_stage)
            finally:
                client.close()
            manifest = new_manifest(
                embedder,
                vecs,
                chunking,
                report,
                index_type="flat",  # the embedded mode searches exhaustively
                backend="qdrant",
                collection=COLLECTION,
            )
            (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2))
            _swap_into_place(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        report.passages = manifest.count
        report.seconds = time.perf_counter() - t0
        return cls.open(out, embedder), report

    check_dim = LocalIndex.check_dim

    def search_vectors(self, vecs: np.ndarray, k: int) -> list[list[tuple[Chunk, float]]]:
        _, models = _qdrant()
        requests = [
            models.QueryRequest(query=v.tolist(), limit=max(1, k), with_payload=True)
            for v in np.asarray(vecs, np.float32)
        ]
        results = self.client.query_batch_points(self.collection, requests=requests)
        return [
            [(Chunk(**{f: p.payload[f] for f in PAYLOAD}), float(p.score)) for p in r.points]
            for r in results
        ]

    def search(self, queries: Sequence[str], k: int = 5) -> list[list[tuple[Chunk, float]]]:
        """Top-``k`` passages for each query, best first, with inner-product scores."""
        if not queries:
            return []
        return self.search_vectors(self.embedder.encode_queries(list(queries)), k)

    def info(self) -> dict[str, Any]:
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        return {
            "path": str(self.path),
            **json.loads(self.manifest.model_dump_json()),
            "bytes": size,
        }

    def close(self) -> None:
        self.client.close()


def _upsert(
    client: Any,
    chunks: Sequence[Chunk],
    vecs: np.ndarray,
    batch_size: int,
    on_stage: Callable[[str], None] | None,
) -> None:
    _, models = _qdrant()
    client.create_collection(
        COLLECTION,
        vectors_config=models.VectorParams(size=int(vecs.shape[1]), distance=models.Distance.DOT),
    )
    for start in range(0, len(chunks), batch_size):
        part = range(start, min(start + batch_size, len(chunks)))
        client.upsert(
            COLLECTION,
            points=[
                models.PointStruct(
                    id=i,
                    vector=vecs[i].tolist(),
                    payload=chunks[i].model_dump(include=set(PAYLOAD)),
                )
                for i in part
            ],
        )
        if on_stage:
            on_stage(f"writing passages to Qdrant: {part.stop:,}/{len(chunks):,}")
