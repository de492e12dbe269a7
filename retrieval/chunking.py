"""Split documents into passages by tokens or by sentences, with overlap.

Pure logic: the tokenizer is injected as a function returning character spans, so
chunks line up with the embedder's own word pieces when one is given and with
whitespace words otherwise. Every chunk keeps its document's title and source and
its character offsets into the document text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

from pydantic import BaseModel

from agent.tools import Document

__all__ = [
    "Document",
    "Chunk",
    "ChunkConfig",
    "chunk_document",
    "chunk_documents",
    "word_spans",
    "sentence_spans",
    "doc_id_of",
]

Spans = list[tuple[int, int]]
SpanFn = Callable[[str], Spans]

_WORD = re.compile(r"\S+")
# A sentence ends at . ! or ? (optionally followed by a closing quote or bracket)
# before whitespace; good enough for encyclopedia prose, and never loses text.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+")


class Chunk(BaseModel):
    id: str
    doc_id: str
    title: str = ""
    text: str
    source: str = ""
    start: int
    end: int


class ChunkConfig(BaseModel):
    by: Literal["tokens", "sentences"] = "sentences"
    size: int = 128
    overlap: int = 24

    def model_post_init(self, _: object) -> None:
        if self.size < 8:
            raise ValueError("chunk size must be at least 8 tokens")
        if not 0 <= self.overlap < self.size:
            raise ValueError("chunk overlap must be >= 0 and smaller than the size")


def word_spans(text: str) -> Spans:
    return [m.span() for m in _WORD.finditer(text)]


def sentence_spans(text: str) -> Spans:
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((start, m.start() + len(m.group().rstrip())))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def _token_windows(tokens: Spans, size: int, overlap: int) -> Iterator[tuple[int, int]]:
    """Windows of ``size`` tokens, stepping by ``size - overlap``, as token indices."""
    step = size - overlap
    i = 0
    while True:
        yield i, min(i + size, len(tokens))
        if i + size >= len(tokens):
            return
        i += step


def _sentence_windows(
    sentences: Spans, tokens: Spans, size: int, overlap: int
) -> Iterator[tuple[int, int]]:
    """Pack whole sentences up to ``size`` tokens, carrying up to ``overlap`` tokens of
    trailing sentences into the next window. Yields character spans."""
    # Token count of each sentence, by token start offsets.
    counts, t = [], 0
    for s, e in sentences:
        n = 0
        while t < len(tokens) and tokens[t][0] < e:
            if tokens[t][0] >= s:
                n += 1
            t += 1
        counts.append(n)

    i = 0
    while i < len(sentences):
        if counts[i] > size:  # one long sentence: split it by tokens
            s, e = sentences[i]
            inner = [sp for sp in tokens if s <= sp[0] < e]
            for a, b in _token_windows(inner, size, overlap):
                yield inner[a][0], inner[b - 1][1]
            i += 1
            continue
        j, total = i, 0
        while j < len(sentences) and total + counts[j] <= size:
            total += counts[j]
            j += 1
        yield sentences[i][0], sentences[j - 1][1]
        if j >= len(sentences):
            return
        # Step back over trailing sentences that fit in the overlap, but always advance.
        k, carried = j, 0
        while k - 1 > i and carried + counts[k - 1] <= overlap:
            carried += counts[k - 1]
            k -= 1
        # Carry only if the next window still reaches a new sentence.
        i = k if carried + counts[j] <= size else j


def chunk_document(
    doc: Document, config: ChunkConfig | None = None, spans: SpanFn = word_spans
) -> list[Chunk]:
    config = config or ChunkConfig()
    text = doc.text
    tokens = spans(text)
    if not tokens:
        return []
    if config.by == "tokens":
        windows = [
            (tokens[a][0], tokens[b - 1][1])
            for a, b in _token_windows(tokens, config.size, config.overlap)
        ]
    else:
        windows = list(_sentence_windows(sentence_spans(text), tokens, config.size, config.overlap))
    single = len(windows) == 1
    return [
        Chunk(
            id=doc.id if single else f"{doc.id}#{n}",
            doc_id=doc.id,
            title=doc.title,
            text=text[s:e],
            source=doc.source,
            start=s,
            end=e,
        )
        for n, (s, e) in enumerate(windows)
    ]


def doc_id_of(chunk_id: str) -> str:
    """The document a chunk id belongs to (``doc`` or ``doc#n``, as made above)."""
    return chunk_id.split("#", 1)[0]


def chunk_documents(
    docs: Iterable[Document], config: ChunkConfig | None = None, spans: SpanFn = word_spans
) -> Iterator[Chunk]:
    for doc in docs:
        yield from chunk_document(doc, config, spans)
