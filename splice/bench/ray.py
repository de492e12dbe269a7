"""``splice bench ray``: an eval's questions in one local engine against the same
questions on Ray replicas, side by side in one run.

Every arm builds the same worker (engine, index, question runner) that
``splice eval run --ray`` gives each replica, and every arm has the same CPUs in all
(``--cpus``): the local engine; one replica holding all of them (what Ray itself
costs); and ``--replicas`` replicas sharing them (what splitting one machine costs).
Start-up and answering are timed apart, because start-up is paid once per run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pydantic import BaseModel

from .report import BenchReport

__all__ = ["RayBench", "run_ray_bench"]


class Arm(BaseModel):
    name: str
    replicas: int
    startup_s: float
    answer_s: float
    qpm: float
    same_answers: int


class RayBench(BenchReport):
    questions: int
    concurrency: int
    cpus: int
    arms: list[Arm]

    def title(self) -> str:
        return f"splice bench ray: {self.questions} questions, tools on, {self.cpus} CPUs per arm"

    def columns(self) -> list[str]:
        return ["arm", "start s", "answer s", "questions/min", "per replica", "vs local"]

    def table_rows(self) -> list[list[str]]:
        base = self.arms[0].qpm
        return [
            [
                a.name,
                f"{a.startup_s:.1f}",
                f"{a.answer_s:.1f}",
                f"{a.qpm:.1f}",
                f"{a.qpm / a.replicas:.1f}",
                f"{a.qpm / base:.2f}x",
            ]
            for a in self.arms
        ]

    def caption(self) -> str:
        same = ", ".join(f"{a.name} {a.same_answers}/{self.questions}" for a in self.arms[1:])
        return f"answers identical to the local arm's: {same}"


def run_ray_bench(
    *,
    questions: int = 64,
    replicas: int = 2,
    cpus: int = 2,
    concurrency: int = 16,
    model: str | None = None,
    log: Callable[[str], None] = print,
) -> RayBench:
    from evals.datasets import load_dataset
    from evals.runner import EvalConfig
    from serving.vllm_engine import VLLMConfig
    from splice.cluster import ReplicaPool, connect
    from splice.defaults import ensure_kb_index
    from splice.replicas import build_eval_worker

    items = load_dataset("kb-answerable").items[:questions]
    jobs = [("kb-answerable", "tools", item) for item in items]
    log("building or checking the knowledge-base index…")
    index, _ = ensure_kb_index()
    cfg = EvalConfig(datasets=["kb-answerable"], conditions=["tools"], index=str(index))
    build = partial(build_eval_worker, cfg, None, VLLMConfig(model=model), str(index), False)

    async def local() -> tuple[float, float, dict[str, str]]:
        t0 = time.perf_counter()
        worker = await build()
        started = time.perf_counter() - t0
        try:
            gate = asyncio.Semaphore(concurrency)

            async def one(job: Any) -> dict[str, Any]:
                async with gate:
                    return await worker.run(job)

            t0 = time.perf_counter()
            recs = await asyncio.gather(*(one(j) for j in jobs))
            return started, time.perf_counter() - t0, {r["id"]: r["answer"] for r in recs}
        finally:
            await worker.aclose()

    async def on_ray(n: int) -> tuple[float, float, dict[str, str]]:
        t0 = time.perf_counter()
        pool = ReplicaPool(build, replicas=n, per_replica=concurrency, num_cpus=cpus / n)
        try:
            await pool.start()
            started = time.perf_counter() - t0
            answers: dict[str, str] = {}
            t0 = time.perf_counter()
            await pool.map(jobs, lambda job, rec: answers.__setitem__(rec["id"], rec["answer"]))
            return started, time.perf_counter() - t0, answers
        finally:
            await pool.close()

    async def main() -> RayBench:
        arms: list[Arm] = []
        reference: dict[str, str] = {}
        plan: list[tuple[str, int]] = [("local engine", 0), (f"Ray, 1 replica x {cpus} CPUs", 1)]
        if replicas > 1:
            plan.append((f"Ray, {replicas} replicas x {cpus / replicas:g} CPUs", replicas))
        connect("auto", num_cpus=cpus)
        for name, n in plan:
            log(f"{name}: {len(jobs)} questions…")
            started, took, answers = await (on_ray(n) if n else local())
            reference = reference or answers
            arms.append(
                Arm(
                    name=name,
                    replicas=max(n, 1),
                    startup_s=started,
                    answer_s=took,
                    qpm=60 * len(jobs) / took,
                    same_answers=sum(answers.get(k) == v for k, v in reference.items()),
                )
            )
        return RayBench(questions=len(jobs), concurrency=concurrency, cpus=cpus, arms=arms)

    return asyncio.run(main())
