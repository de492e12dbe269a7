"""What each Ray replica holds for a batch job: its own engine, and the eval's
question runner or the probe over it. Built inside the replica by the factories
below (picklable with ``functools.partial``), so nothing heavy crosses the wire."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.engine import Engine
from evals.runner import EvalConfig, Job, QuestionRunner
from serving.factory import open_engine
from serving.vllm_engine import VLLMConfig

__all__ = ["EvalWorker", "ProbeWorker", "build_eval_worker", "build_probe_worker"]


class EvalWorker:
    def __init__(self, engine: Engine, runner: QuestionRunner, retriever: Any) -> None:
        self.engine = engine
        self.runner = runner
        self.retriever = retriever

    async def run(self, job: Job) -> dict[str, Any]:
        return await self.runner.run(job)

    async def aclose(self) -> None:
        from splice.defaults import close_retriever

        await close_retriever(self.retriever)
        await self.engine.aclose()


async def build_eval_worker(
    cfg: EvalConfig, url: str | None, config: VLLMConfig, index: str | None, web: bool
) -> EvalWorker:
    local_index = retriever = None
    if index is not None and not web:
        from retrieval import IndexRetriever, open_index

        local_index = open_index(Path(index))
        retriever = IndexRetriever(local_index)
    if web:
        from retrieval import Embedder
        from retrieval.web import WebRetriever

        retriever = WebRetriever(embedder=Embedder())
    engine = await open_engine(url, config)
    runner = QuestionRunner(cfg, engine, retriever=retriever, index=local_index)
    await runner.check()
    return EvalWorker(engine, runner, retriever)


class ProbeWorker:
    def __init__(self, engine: Engine, options: dict[str, Any]) -> None:
        self.engine = engine
        self.options = options

    async def run(self, item: Any) -> Any:
        from training.probe import probe_questions

        (record,) = await probe_questions(self.engine, [item], **self.options)
        return record

    async def aclose(self) -> None:
        await self.engine.aclose()


async def build_probe_worker(
    url: str | None, config: VLLMConfig, options: dict[str, Any]
) -> ProbeWorker:
    return ProbeWorker(await open_engine(url, config), options)
