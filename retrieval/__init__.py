"""Local retrieval: sentence-transformers embeddings, FAISS indexes, a SQLite passage
store, chunking, corpus readers, and the built-in knowledge base.

FAISS and sentence-transformers are imported lazily, on first build or search.
"""

from .chunking import Chunk, ChunkConfig, Document, chunk_document
from .corpus import read_documents
from .embedder import DEFAULT_EMBEDDER, Embedder
from .index import BuildReport, IndexManifest, IndexParams, LocalIndex
from .kb import ensure_kb_index, kb_documents, kb_index_path, kb_questions
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
    "ensure_kb_index",
    "kb_documents",
    "kb_index_path",
    "kb_questions",
]
