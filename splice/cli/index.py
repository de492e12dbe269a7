"""``splice index ...``: build, extend, search and inspect local FAISS indexes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

__all__ = ["index_app"]

from .common import command_group, err, out

index_app = command_group("Build and search local FAISS indexes.")

InputsArg = Annotated[
    list[Path],
    typer.Argument(
        help="JSONL ({id,title,text} or {id,contents}), .txt/.md/.html files, "
        "or directories of them."
    ),
]
DirArg = Annotated[Path, typer.Argument(help="Index directory.")]
EmbedderOpt = Annotated[
    Optional[str],
    typer.Option(
        "--embedder",
        help="sentence-transformers name or path (default: all-MiniLM-L6-v2, bundled).",
    ),
]


def _report_bad(exc: Exception) -> None:
    err.print(f"[yellow]skipped[/yellow] {escape(str(exc))}", highlight=False)


def _summarise(report, verb: str) -> None:  # type: ignore[no-untyped-def]
    rate = report.passages / report.embed_seconds if report.embed_seconds else 0.0
    out.print(
        f"{verb} {report.passages:,} passages from {report.documents:,} documents in "
        f"{report.seconds:.1f}s (embedding {rate:,.0f} passages/s)"
    )
    if report.duplicates:
        shown = ", ".join(report.duplicates[:5]) + (" …" if len(report.duplicates) > 5 else "")
        err.print(
            f"[yellow]{len(report.duplicates)} duplicate ids skipped[/yellow]: {escape(shown)}"
        )


@index_app.command("build", short_help="Chunk, embed and index documents into --out.")
def build(
    inputs: InputsArg,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to create.")],
    embedder: EmbedderOpt = None,
    index_type: Annotated[
        str, typer.Option("--type", help="flat, hnsw, ivfpq, or auto (by size).")
    ] = "auto",
    chunk_by: Annotated[str, typer.Option(help="sentences or tokens.")] = "sentences",
    chunk_size: Annotated[int, typer.Option(help="Passage length in embedder tokens.")] = 128,
    overlap: Annotated[int, typer.Option(help="Tokens shared by neighbouring passages.")] = 24,
    query_prefix: Annotated[
        Optional[str], typer.Option(help="Prepended to queries (e5: 'query: ').")
    ] = None,
    passage_prefix: Annotated[
        Optional[str], typer.Option(help="Prepended to passages (e5: 'passage: ').")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Embedding batch size.")] = 64,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing index.")] = False,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Report malformed rows and go on.")
    ] = False,
    backend: Annotated[
        str,
        typer.Option(help="faiss, or qdrant (an embedded Qdrant collection in --out)."),
    ] = "faiss",
) -> None:
    """Chunk, embed and index documents into the --out directory (written atomically)."""
    from agent.errors import ConfigError
    from retrieval import ChunkConfig, Embedder, LocalIndex, read_documents

    if backend not in ("faiss", "qdrant"):
        raise ConfigError(f"unknown --backend {backend!r}: use faiss or qdrant")
    if backend == "qdrant":
        from retrieval.qdrant_index import _qdrant

        _qdrant()  # a missing extra is named before anything slow

    if index_type not in ("auto", "flat", "hnsw", "ivfpq"):
        raise ConfigError(f"unknown --type {index_type!r}: use flat, hnsw, ivfpq or auto")
    if chunk_by not in ("sentences", "tokens"):
        raise ConfigError(f"unknown --chunk-by {chunk_by!r}: use sentences or tokens")
    try:
        chunking = ChunkConfig(by=chunk_by, size=chunk_size, overlap=overlap)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[-1].strip()) from None
    emb = Embedder(
        embedder or "all-MiniLM-L6-v2",
        query_prefix=query_prefix,
        passage_prefix=passage_prefix,
        batch_size=batch_size,
    )
    docs = read_documents(inputs, on_bad=_report_bad if skip_bad else None)
    with err.status("reading documents…") as status:
        common: dict[str, Any] = {
            "embedder": emb,
            "chunking": chunking,
            "overwrite": overwrite,
            "progress": True,
            "on_stage": lambda s: status.update(s + "…"),
            "corpus": ", ".join(map(str, inputs)),
        }
        if backend == "qdrant":
            from retrieval.qdrant_index import QdrantIndex

            index, report = QdrantIndex.build(docs, out_dir, **common)
        else:
            index, report = LocalIndex.build(docs, out_dir, index_type=index_type, **common)
    _summarise(report, "indexed")
    out.print(
        f"{index.manifest.index_type} index at {out_dir} ({index.manifest.dim}-dim, "
        f"{index.manifest.embedder})"
    )


@index_app.command("add", short_help="Add documents to an existing index.")
def add(
    index_dir: DirArg,
    inputs: InputsArg,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Report malformed rows and go on.")
    ] = False,
) -> None:
    """Add documents to an existing index; ids already present are reported and skipped."""
    from agent.errors import ConfigError
    from retrieval import LocalIndex, open_index, read_documents

    index = open_index(index_dir)
    if not isinstance(index, LocalIndex):
        raise ConfigError(
            f"adding to a {index.manifest.backend} index is not supported: rebuild it "
            "with `splice index build ... --overwrite`"
        )
    docs = read_documents(inputs, on_bad=_report_bad if skip_bad else None)
    with err.status("adding…") as status:
        report = index.add(docs, progress=True, on_stage=lambda s: status.update(s + "…"))
    _summarise(report, "added")
    out.print(f"{len(index):,} passages in {index_dir}")


@index_app.command("search", short_help="Print the passages nearest to QUERY.")
def search(
    index_dir: DirArg,
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", help="How many passages.")] = 5,
    embedder: EmbedderOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print [{"id","title","text","score"}, ...].')
    ] = False,
) -> None:
    """Print the passages nearest to QUERY."""
    from retrieval import open_index

    index = open_index(index_dir, embedder)
    index.check_dim()
    hits = index.search([query], k)[0]
    if as_json:
        rows = [
            {"id": c.id, "title": c.title, "text": c.text, "score": round(s, 4), "source": c.source}
            for c, s in hits
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for rank, (c, s) in enumerate(hits, 1):
        out.print(
            f"[bold]{rank}. {escape(c.title or c.id)}[/bold] [dim]{escape(c.id)} "
            f"score {s:.3f}[/dim]"
        )
        out.print(escape(c.text), highlight=False)
        out.print()


@index_app.command("info", short_help="Show an index's manifest.")
def info(
    index_dir: DirArg,
    verify: Annotated[bool, typer.Option(help="Also check the files' sha256 checksums.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Show an index's manifest: embedder, type, size, files."""
    from retrieval import open_index

    index = open_index(index_dir, verify=verify)
    data = index.info()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, box=None)
    m = index.manifest
    rows = [
        ("path", str(index_dir)),
        ("passages", f"{m.count:,}"),
        ("documents", f"{m.documents:,}"),
        ("type", m.index_type if m.backend == "faiss" else f"{m.backend} (embedded)"),
        ("embedder", f"{m.embedder} ({m.dim}-dim)"),
        ("chunking", f"{m.chunking.by}, {m.chunking.size} tokens, overlap {m.chunking.overlap}"),
        ("size", f"{data['bytes'] / 1e6:.1f} MB"),
        ("updated", m.updated),
        ("checksums", "verified" if verify else "sizes checked (--verify for sha256)"),
    ]
    if m.label:
        rows.append(("label", m.label))
    for key, val in rows:
        table.add_row(f"[bold]{key}[/bold]", escape(val))
    out.print(table)
