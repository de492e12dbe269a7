"""Open any index directory: FAISS (the default) or an embedded Qdrant collection,
as its manifest says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .embedder import Embedder
from .index import LocalIndex

__all__ = ["open_index"]


def open_index(path: Path | str, embedder: Embedder | str | None = None, **kwargs: Any) -> Any:
    """A :class:`LocalIndex` or a :class:`~retrieval.qdrant_index.QdrantIndex`.
    ``kwargs`` (``verify``, ``gpu``) apply to FAISS indexes."""
    path = Path(path)
    if LocalIndex.read_manifest(path).backend == "qdrant":
        from .qdrant_index import QdrantIndex

        return QdrantIndex.open(path, embedder)
    return LocalIndex.open(path, embedder, **kwargs)
