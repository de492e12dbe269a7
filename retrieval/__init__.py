"""Local retrieval: sentence-transformers embeddings, FAISS indexes, a SQLite passage
store, chunking and corpus readers; an embedded Qdrant collection as an alternative
backend (``retrieval.qdrant_index``, the ``qdrant`` extra). The built-in knowledge
base is a dataset: see ``evals.kb``; ``splice.defaults.ensure_kb_index`` indexes it.

FAISS and sentence-transformers are imported lazily, on first build or search.
"""

from .chunking import Chunk, ChunkConfig, Document, chunk_document
from .corpus import read_documents
from .embedder import DEFAULT_EMBEDDER, Embedder
from .index import BuildReport, IndexManifest, IndexParams, LocalIndex
from .opening import open_index
from .retriever import IndexRetriever

__all__ = [
    "Document",
    "Chunk",
    "ChunkConfig",
    "chunk_document",
    "read_documents",
    "Embedder",
    "DEFAULT_EMBEDDER",
    "LocalIndex",
    "IndexManifest",
    "IndexParams",
    "BuildReport",
    "IndexRetriever",
    "open_index",
]
