"""The knowledge probe (self-interrogation, step 2): sample the base model closed-book
K times per question, grade every sample, and label the question known or unknown.

The default rule (``greedy``) calls a question *known* when the greedy answer is
correct and at least ``known_at`` of the samples are too (default 0.2: one of five),
so the label matches what the model says at temperature 0, where it is evaluated,
and a lucky greedy guess is not enough. The older ``sampled`` rule asks only for
``known_at`` of the samples (it was 0.8, four of five): measured, it called 54 of
1,372 questions known and the tuned model then abstained on almost everything
closed-book, including what it knew. The probe drives
``Agent`` with tools off, so it sees exactly the prompt an eval's closed-book
condition sees; all K x N requests run concurrently over the shared engine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

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
    greedy: str | None = None
    greedy_grade: str | None = None


KnownRule = Literal["greedy", "sampled"]


def label(
    grades: Sequence[str],
    known_at: float,
    *,
    greedy_grade: str | None = None,
    rule: KnownRule = "sampled",
) -> tuple[float, str]:
    frac = sum(g == Grade.CORRECT.value for g in grades) / len(grades) if grades else 0.0
    known = frac >= known_at
    if rule == "greedy":
        known = known and greedy_grade == Grade.CORRECT.value
    return frac, ("known" if known else "unknown")


async def probe_questions(
    engine: Engine,
    items: Sequence[EvalItem],
    *,
    k: int = 5,
    temperature: float = 0.7,
    seed: int = 0,
    known_at: float = 0.2,
    rule: KnownRule = "greedy",
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
    greedy_agent = Agent(
        engine, [], use_tools=False, budgets=Budgets(max_segment_tokens=max_tokens)
    )

    async def one_sample(agent: Agent, item: EvalItem) -> str:
        async with gate:
            return (await agent.aask(item.question)).text

    async def one(item: EvalItem) -> ProbeRecord:
        wanted = [*agents, greedy_agent] if rule == "greedy" else agents
        outputs = await asyncio.gather(*(one_sample(a, item) for a in wanted))
        graded = [
            grade_answer(s, item.answers, acceptable_range=item.acceptable_range).value
            for s in outputs
        ]
        samples, grades = outputs[:k], graded[:k]
        greedy, greedy_grade = (outputs[k], graded[k]) if rule == "greedy" else (None, None)
        frac, lab = label(grades, known_at, greedy_grade=greedy_grade, rule=rule)
        rec = ProbeRecord(
            id=item.id,
            question=item.question,
            answers=item.answers,
            samples=list(samples),
            grades=grades,
            correct_fraction=frac,
            label=lab,
            greedy=greedy,
            greedy_grade=greedy_grade,
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
