"""The knowledge probe (self-interrogation, step 2): sample the base model closed-book
K times per question, grade every sample, and label the question known or unknown.

A question is *known* when at least ``known_at`` of its samples are correct
(default 0.8, four of five): consistently right, not lucky once. The probe drives
``Agent`` with tools off, so it sees exactly the prompt an eval's closed-book
condition sees; all K x N requests run concurrently over the shared engine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.engine import Engine, SamplingParams
from agent.loop import Budgets
from agent.sdk import Agent
from evals.datasets import EvalItem
from evals.grading import Grade, grade_answer

__all__ = ["ProbeRecord", "probe_questions", "write_probe", "label"]


class ProbeRecord(BaseModel):
    id: str
    question: str
    answers: list[str]
    samples: list[str]
    grades: list[str]
    correct_fraction: float
    label: str  # "known" | "unknown"


def label(grades: Sequence[str], known_at: float) -> tuple[float, str]:
    frac = sum(g == Grade.CORRECT.value for g in grades) / len(grades) if grades else 0.0
    return frac, ("known" if frac >= known_at else "unknown")


async def probe_questions(
    engine: Engine,
    items: Sequence[EvalItem],
    *,
    k: int = 5,
    temperature: float = 0.7,
    seed: int = 0,
    known_at: float = 0.8,
    max_tokens: int = 64,
    concurrency: int = 32,
    on_record: Callable[[ProbeRecord], None] | None = None,
) -> list[ProbeRecord]:
    if k < 1 or temperature <= 0:
        from agent.errors import ConfigError

        raise ConfigError("the probe needs --k >= 1 and --temperature > 0 (it samples)")
    gate = asyncio.Semaphore(concurrency)
    agents = [
        Agent(
            engine,
            [],
            use_tools=False,
            budgets=Budgets(max_segment_tokens=max_tokens),
            sampling=SamplingParams(temperature=temperature, seed=seed * 1000 + i),
        )
        for i in range(k)
    ]

    async def one_sample(agent: Agent, item: EvalItem) -> str:
        async with gate:
            return (await agent.aask(item.question)).text

    async def one(item: EvalItem) -> ProbeRecord:
        samples = await asyncio.gather(*(one_sample(a, item) for a in agents))
        grades = [
            grade_answer(s, item.answers, acceptable_range=item.acceptable_range).value
            for s in samples
        ]
        frac, lab = label(grades, known_at)
        rec = ProbeRecord(
            id=item.id,
            question=item.question,
            answers=item.answers,
            samples=list(samples),
            grades=grades,
            correct_fraction=frac,
            label=lab,
        )
        if on_record:
            on_record(rec)
        return rec

    return list(await asyncio.gather(*(one(it) for it in items)))


def write_probe(path: Path, records: Sequence[ProbeRecord], meta: dict[str, Any]) -> None:
    """JSONL, one record per question, plus ``PATH.meta.json`` with settings and counts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(r.model_dump_json() + "\n" for r in records))
    tmp.replace(path)
    known = sum(r.label == "known" for r in records)
    meta = {**meta, "questions": len(records), "known": known, "unknown": len(records) - known}
    path.with_suffix(path.suffix + ".meta.json").write_text(json.dumps(meta, indent=2))
