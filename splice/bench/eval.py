"""``splice bench eval``: questions per minute, continuous batching vs one at a time.

Both arms run the same held-out knowledge-base questions through the same Agent
(default model in-process, tools on over the built-in index, greedy), with the prefix
cache reset before each arm, so the ratio is the scheduler's alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .report import BenchReport

__all__ = ["EvalBench", "run_eval_bench"]


class EvalBench(BenchReport):
    questions: int
    concurrency: int
    sequential_s: float
    batched_s: float
    sequential_qpm: float
    batched_qpm: float
    speedup: float
    same_answers: int

    def title(self) -> str:
        return f"splice bench eval: {self.questions} questions"

    def columns(self) -> list[str]:
        return ["arm", "wall s", "questions/min"]

    def table_rows(self) -> list[list[str]]:
        return [
            ["one at a time", f"{self.sequential_s:.1f}", f"{self.sequential_qpm:.1f}"],
            [
                f"continuous batching ({self.concurrency} in flight)",
                f"{self.batched_s:.1f}",
                f"{self.batched_qpm:.1f}",
            ],
        ]

    def caption(self) -> str:
        return (
            f"speed-up {self.speedup:.2f}x (goal >= 5x); identical answers in both "
            f"arms: {self.same_answers}/{self.questions}"
        )


def run_eval_bench(
    *,
    questions: int = 32,
    concurrency: int = 32,
    model: str | None = None,
    log: Callable[[str], None] = print,
) -> EvalBench:
    from agent.loop import Budgets
    from agent.sdk import Agent
    from evals.kb import kb_questions
    from retrieval import IndexRetriever
    from serving.vllm_engine import VLLMConfig, VLLMEngine
    from splice.defaults import ensure_kb_index

    qs = [q.question for q in kb_questions(split="heldout", answerable=True)][:questions]

    async def main() -> EvalBench:
        log("building or checking the knowledge-base index…")
        path, _ = ensure_kb_index()
        log("starting the engine…")
        engine = VLLMEngine.start(VLLMConfig(model=model))
        try:
            agent = Agent(
                engine, [IndexRetriever.open(path)], budgets=Budgets(max_segment_tokens=64)
            )
            await agent.aask(qs[0])  # warm-up
            await engine.reset_prefix_cache()
            log(f"{len(qs)} questions one at a time…")
            t0 = time.perf_counter()
            seq = [await agent.aask(q) for q in qs]
            seq_s = time.perf_counter() - t0
            await engine.reset_prefix_cache()
            log(f"{len(qs)} questions, {concurrency} in flight…")
            t0 = time.perf_counter()
            bat = await agent.aask_many(qs, concurrency=concurrency)
            bat_s = time.perf_counter() - t0
        finally:
            await engine.aclose()
        return EvalBench(
            questions=len(qs),
            concurrency=concurrency,
            sequential_s=seq_s,
            batched_s=bat_s,
            sequential_qpm=60 * len(qs) / seq_s,
            batched_qpm=60 * len(qs) / bat_s,
            speedup=seq_s / bat_s,
            same_answers=sum(a.text == b.text for a, b in zip(seq, bat)),
        )

    return asyncio.run(main())
