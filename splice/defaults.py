"""The default wiring: which model, which tokens, which adapter, which index.

Everything below the composition root takes these as arguments; this module is the
one place that knows the embedded defaults: the SmolLM2 model prepared with the
Splice protocol's tokens and the shipped adapter, and the built-in knowledge base
indexed under ``SPLICE_HOME``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import training
from agent import Agent, Engine, InMemoryRetriever, Passage, Retriever
from agent.confidence import Calibration, Score
from agent.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError
from agent.protocols.splice import SPECIAL_TOKENS
from agent.settings import WebSettings, load, splice_home
from agent.tools import Document
from evals.kb import kb_documents, kb_fingerprint
from evals.reading import reading_documents, reading_fingerprint
from retrieval import Embedder, IndexRetriever, LocalIndex
from retrieval.corpus import read_jsonl_documents
from serving.factory import open_engine
from serving.prepare import PrepareResult, prepare, read_calibration, resolve_model
from serving.vllm_engine import VLLMConfig, VLLMEngine

__all__ = [
    "shipped_adapter",
    "adapter_home",
    "prepare_default",
    "kb_index_path",
    "reading_index_path",
    "ensure_reading_index",
    "ensure_kb_index",
    "open_retriever",
    "close_retriever",
    "load_passages",
    "default_agent",
    "model_calibration",
    "calibrated",
    "engine_session",
]


def adapter_home() -> Path:
    """Where the shipped adapter lives: ``training/adapter``, package data."""
    return Path(training.__file__).resolve().parent / "adapter"


def shipped_adapter() -> Path | None:
    """The fine-tuned adapter shipped with the package, if there is one."""
    path = adapter_home()
    return path if (path / "adapter_model.safetensors").is_file() else None


def prepare_default(
    home: Path | None = None,
    *,
    force: bool = False,
    adapter: Path | None | Literal["shipped"] = "shipped",
    on_step: Callable[[str], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> PrepareResult:
    """Prepare the default model with the Splice protocol's tokens and ``adapter``
    (the shipped one unless told otherwise; ``None`` = untuned)."""
    chosen = shipped_adapter() if adapter == "shipped" else adapter
    return prepare(
        home,
        force=force,
        special_tokens=SPECIAL_TOKENS,
        adapter=chosen,
        on_step=on_step,
        on_notice=on_notice,
    )


def kb_index_path(home: Path | None = None) -> Path:
    return (home or splice_home()) / "kb-index"


def reading_index_path(home: Path | None = None) -> Path:
    return (home or splice_home()) / "reading-index"


def _ensure(
    path: Path,
    label: str,
    documents: Callable[[], list[Document]],
    progress: bool,
    on_stage: Callable[[str], None] | None,
) -> tuple[Path, bool]:
    """Build ``path`` from ``documents`` unless an index with ``label`` is there, whole."""
    try:
        if LocalIndex.read_manifest(path).label == label:
            # Checksums too: a flipped byte in a passage must not be served as a fact.
            LocalIndex.open(path, verify=True).close()
            return path, False
    except (IndexNotFoundError, IndexCorruptError, IndexMismatchError):
        pass
    LocalIndex.build(
        documents(),
        path,
        index_type="flat",
        overwrite=True,
        progress=progress,
        label=label,
        on_stage=on_stage,
    )
    return path, True


def ensure_kb_index(
    home: Path | None = None,
    *,
    progress: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> tuple[Path, bool]:
    """Build the knowledge-base index (what `ask` and `chat` search by default) unless
    an up-to-date one exists. Returns (path, built). A stale or damaged one is rebuilt."""
    label = f"splice-kb:{kb_fingerprint()}"
    return _ensure(kb_index_path(home), label, kb_documents, progress, on_stage)


def ensure_reading_index(
    home: Path | None = None,
    *,
    progress: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> tuple[Path, bool]:
    """The reading corpus's own index (less the passages its dev/test splits remove),
    which evals of the ``reading-*`` sets search. Built on first use."""
    label = f"splice-reading:{reading_fingerprint()}"
    return _ensure(reading_index_path(home), label, reading_documents, progress, on_stage)


def load_passages(path: Path) -> list[Passage]:
    """A JSONL of {"id","title","text"} (or FlashRAG's {"id","contents"}) rows, in memory."""
    return [
        Passage(id=d.id, title=d.title, text=d.text, source=d.source or path.name)
        for d in read_jsonl_documents(path)
    ]


def open_retriever(
    index: Path | None = None,
    *,
    passages: Path | None = None,
    web: bool = False,
    hybrid: bool = False,
    no_cache: bool = False,
    on_building: Callable[[], Any] | None = None,
) -> Retriever:
    """--passages (in memory), --web, --hybrid (index + web), --index DIR, or else the
    built-in knowledge base (indexed on first use; ``on_building`` is a context
    manager factory shown meanwhile)."""
    if passages is not None:
        return InMemoryRetriever(load_passages(passages))
    web_retriever = None
    if web or hybrid:
        from retrieval.web import WebRetriever

        settings = load(WebSettings, **({"no_cache": True} if no_cache else {}))
        web_retriever = WebRetriever(settings, embedder=Embedder())
        if not hybrid:
            return web_retriever
    if index is None:
        if on_building is not None:
            with on_building():
                index, _ = ensure_kb_index()
        else:
            index, _ = ensure_kb_index()
    local = IndexRetriever.open(index)
    if web_retriever is None:
        return local
    from retrieval.web import HybridRetriever

    return HybridRetriever(local, web_retriever)


async def close_retriever(retriever: Any) -> None:
    for part in (retriever, getattr(retriever, "web", None)):
        if hasattr(part, "aclose"):
            await part.aclose()


def default_agent(
    *,
    retriever: Retriever | None = None,
    index: str | Path | None = None,
    tools: Iterable[Any] = (),
    **kwargs: Any,
) -> Agent:
    """The prepared default model in-process, searching ``retriever``, the index
    directory ``index``, or else the built-in knowledge base (built on first use),
    plus any other ``tools``. Other keyword arguments go to :class:`agent.Agent`.
    Close the agent (or use it in a ``with`` block) to stop the engine.
    The model's calibrated ``abstain_below`` applies unless one is given (0 = off)."""
    if retriever is None:
        retriever = IndexRetriever.open(index if index is not None else ensure_kb_index()[0])
    kwargs.update(
        calibrated(
            model_calibration(None),
            kwargs.get("confidence_samples", 0),
            kwargs.get("abstain_below"),
            kwargs.get("confidence_score"),
        )
    )
    return Agent(VLLMEngine.start(), [retriever, *tools], **kwargs)


def model_calibration(model: str | Path | None) -> Calibration | None:
    """The threshold calibrated for ``model`` (None = the prepared default), if any.
    Only a local model directory can carry one."""
    path = Path(resolve_model(model))
    return read_calibration(path) if path.is_dir() else None


def calibrated(
    cal: Calibration | None,
    confidence_samples: int,
    abstain_below: float | None,
    confidence_score: Score | None = None,
) -> dict[str, Any]:
    """The Agent's confidence settings: what was asked, else the model's calibration
    ``cal`` (``confidence_samples``, ``abstain_below``, ``confidence_score`` keywords)."""
    asked = {
        "confidence_samples": confidence_samples,
        "abstain_below": abstain_below,
        "confidence_score": confidence_score or "agreement",
    }
    if abstain_below is not None or cal is None or confidence_score not in (None, cal.score):
        return asked  # told, or no calibration (whose threshold means nothing on another score)
    return {
        "confidence_samples": max(confidence_samples, cal.confidence_samples),
        "abstain_below": cal.abstain_below,
        "confidence_score": confidence_score or cal.score,
    }


@asynccontextmanager
async def engine_session(
    url: str | None = None, config: VLLMConfig | None = None
) -> AsyncIterator[Engine]:
    """Start (or connect to) an engine for the body of a ``with``; always close it."""
    engine = await open_engine(url, config)
    try:
        yield engine
    finally:
        await engine.aclose()
