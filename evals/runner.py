"""The batch runner: datasets × conditions through ``Agent``, records as they finish.

Every question is its own task over the shared engine (continuous batching), at most
``concurrency`` in flight. Each finished question is graded and appended to
``records.jsonl`` (fsynced) at once; ``resume`` skips what is already there.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.confidence import Score
from agent.engine import Engine, SamplingParams
from agent.errors import ConfigError, SpliceError
from agent.loop import Budgets
from agent.sdk import Agent
from agent.tools import Passage, Retriever
from agent.trace import GenerationStep, ToolResultStep

from .datasets import Dataset, load_dataset
from .grading import grade_answer
from .judge import Judge
from .records import RecordLog, is_final, read_records, record_key
from .report import write_summary

__all__ = [
    "EvalConfig",
    "Job",
    "QuestionRunner",
    "open_run",
    "finish_run",
    "run_eval",
    "CONDITIONS",
    "EmptyRetriever",
    "DistractorRetriever",
    "regrade_records",
    "manifest_differences",
]

CONDITIONS = ("closed-book", "tools", "retrieval-failure")
FAILURE_MODES = ("empty", "distractor")


class EvalConfig(BaseModel):
    datasets: list[str]
    conditions: list[str] = Field(default_factory=lambda: ["closed-book", "tools"])
    failure_mode: str = "empty"
    index: str | None = None
    limit: int | None = None
    concurrency: int = 16
    grader: str = "rule"
    judge_url: str | None = None
    judge_model: str | None = None
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int = 256
    protocol: str = "splice"
    search_first: bool = False
    model: str = ""
    confidence_samples: int = 0
    """Score each answer by self-agreement of this many resamples (0 = off)."""
    abstain_below: float | None = None
    """Abstain when the confidence is lower (implies 5 samples when none are set)."""
    confidence_score: Score = "agreement"
    """What ``abstain_below`` compares: self-agreement, or the token probability."""

    @property
    def needs_index(self) -> bool:
        """The tools condition searches an index; distractors are drawn from one."""
        return "tools" in self.conditions or (
            "retrieval-failure" in self.conditions and self.failure_mode == "distractor"
        )

    def check(self) -> None:
        bad = [c for c in self.conditions if c not in CONDITIONS]
        if bad:
            raise ConfigError(f"unknown condition {bad[0]!r}: use {', '.join(CONDITIONS)}")
        if self.failure_mode not in FAILURE_MODES:
            raise ConfigError(
                f"unknown --failure-mode {self.failure_mode!r}: use empty or distractor"
            )
        if self.grader not in ("rule", "judge"):
            raise ConfigError(f"unknown --grader {self.grader!r}: use rule or judge")
        if self.grader == "judge" and not self.judge_url:
            raise ConfigError("--grader judge needs --judge-url (an OpenAI-compatible server)")
        if self.concurrency < 1:
            raise ConfigError("--concurrency must be at least 1")

    def condition_label(self, condition: str) -> str:
        return f"{condition}:{self.failure_mode}" if condition == "retrieval-failure" else condition


class EmptyRetriever(Retriever):
    """Retrieval failure: the search runs and finds nothing."""

    async def search(self, query: str, k: int = 3) -> list[Passage]:
        return []


class DistractorRetriever(Retriever):
    """Retrieval failure: passages from documents unrelated to the query.

    Random passages of the index (seeded by the query) that are not among the real
    top ``exclude`` hits for it, so the answer's source is withheld."""

    def __init__(self, index: Any, exclude: int = 20) -> None:
        self.index = index
        self.exclude = exclude

    async def search(self, query: str, k: int = 3) -> list[Passage]:
        hits = await asyncio.to_thread(self.index.search, [query], self.exclude)
        related = {c.doc_id for c, _ in hits[0]}
        rng = random.Random(query)
        out: list[Passage] = []
        for _ in range(50 * k):
            if len(out) >= k:
                break
            row = rng.randrange(len(self.index))
            chunk = self.index.store.get([row])[row]
            if chunk.doc_id not in related and all(p.id != chunk.id for p in out):
                out.append(
                    Passage(
                        id=chunk.id,
                        title=chunk.title,
                        text=chunk.text,
                        source=chunk.source,
                        score=0.0,
                    )
                )
        return out


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _item_fields(item: Any, dataset: str, condition: str) -> dict[str, Any]:
    """What every record says about its question, answered or failed."""
    return {
        "dataset": dataset,
        "condition": condition,
        "id": item.id,
        "question": item.question,
        "answers": item.answers,
        "answerable": item.answerable,
        "acceptable_range": item.acceptable_range,
    }


def _record(item: Any, dataset: str, condition: str, answer: Any, seconds: float) -> dict[str, Any]:
    gens = [s for s in answer.trace if isinstance(s, GenerationStep)]
    sources = [c.id for s in answer.trace if isinstance(s, ToolResultStep) for c in s.sources]
    return {
        **_item_fields(item, dataset, condition),
        "answer": answer.text,
        "abstained": answer.abstained,
        "searches": answer.searches,
        "turns": len(gens),
        "tokens": len(answer.token_ids),
        "sampled_tokens": sum(answer.mask),
        "latency_s": round(seconds, 3),
        "answer_logprob": answer.mean_logprob,
        "confidence": answer.confidence,
        "withheld": answer.withheld,
        "sources": sources,
    }


def distinct_names(datasets: Sequence[Dataset], specs: Sequence[str]) -> list[Dataset]:
    """Datasets named by file stem keep it unless two share one: then each of those is
    named by its path as given, so neither one's records are taken for the other's."""
    if len(specs) != len(datasets):
        return list(datasets)
    seen: dict[str, int] = {}
    for d in datasets:
        seen[d.name] = seen.get(d.name, 0) + 1
    clash = {name for name, n in seen.items() if n > 1}
    out = [
        d.model_copy(update={"name": spec}) if d.name in clash else d
        for d, spec in zip(datasets, specs)
    ]
    if len({d.name for d in out}) != len(out):
        dup = sorted(name for name in clash)
        raise ConfigError(f"dataset {dup[0]!r} is given twice: list each dataset once")
    return out


# What may change between a run and its resume without changing any record's meaning.
RESUMABLE_CHANGES = frozenset({"concurrency", "limit"})


def manifest_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What a resume would change: settings, dataset contents or the model, by name."""
    out = []
    old_cfg, new_cfg = old.get("config", {}), new.get("config", {})
    # A setting added since the old run was made is the default it ran with.
    defaults = {k: f.default for k, f in EvalConfig.model_fields.items()}
    for key in sorted(set(old_cfg) | set(new_cfg)):
        was, now = old_cfg.get(key, defaults.get(key)), new_cfg.get(key, defaults.get(key))
        if key not in RESUMABLE_CHANGES and was != now:
            out.append(f"{key} {was!r} → {now!r}")
    if old.get("model") != new.get("model"):
        out.append(f"model {old.get('model')!r} → {new.get('model')!r}")
    old_ds, new_ds = old.get("datasets", {}), new.get("datasets", {})
    for name in sorted(set(old_ds) | set(new_ds)):
        a, b = old_ds.get(name, {}), new_ds.get(name, {})
        if a.get("sha256") != b.get("sha256"):
            out.append(f"dataset {name} changed" if a and b else f"dataset {name} differs")
    return out


Job = tuple[str, str, Any]
"""One question to answer: (dataset name, condition, item)."""


class QuestionRunner:
    """Answers and grades one question at a time over one engine: what the local
    runner runs for every question, and what each Ray replica holds."""

    def __init__(
        self,
        cfg: EvalConfig,
        engine: Engine,
        *,
        retriever: Retriever | None = None,
        index: Any = None,
    ) -> None:
        cfg.check()
        if "tools" in cfg.conditions and retriever is None:
            raise ConfigError(
                "the tools condition needs an index: pass --index DIR (or run "
                "`splice prepare` for the built-in knowledge base)"
            )
        if (
            "retrieval-failure" in cfg.conditions
            and cfg.failure_mode == "distractor"
            and index is None
        ):
            raise ConfigError("--failure-mode distractor needs an index to draw passages from")
        self.cfg = cfg
        self.judge = Judge(cfg.judge_url or "", cfg.judge_model) if cfg.grader == "judge" else None
        tools_for: dict[str, list[Retriever]] = {
            "closed-book": [],
            "tools": [retriever] if retriever is not None else [],
            "retrieval-failure": [
                EmptyRetriever() if cfg.failure_mode == "empty" else DistractorRetriever(index)
            ],
        }
        self.agents = {
            c: Agent(
                engine,
                tools_for[c],
                protocol=cfg.protocol,
                sampling=SamplingParams(temperature=cfg.temperature, seed=cfg.seed, logprobs=0),
                budgets=Budgets(max_segment_tokens=cfg.max_tokens),
                use_tools=c != "closed-book",
                confidence_samples=cfg.confidence_samples,
                confidence_score=cfg.confidence_score,
                abstain_below=cfg.abstain_below,
            )
            for c in cfg.conditions
        }

    async def check(self) -> None:
        """Fail before any question when the judge cannot be reached."""
        if self.judge is not None:
            await self.judge.check()

    async def run(self, job: Job) -> dict[str, Any]:
        """The graded record of one question; a Splice error is recorded, not raised."""
        dataset, cond, item = job
        agent = self.agents[cond]
        prefill = (
            agent.protocol.prompt_prefill_ids("search")
            if self.cfg.search_first and cond != "closed-book"
            else []
        )
        t0 = time.perf_counter()
        label = self.cfg.condition_label(cond)
        try:
            answer = await agent.aask(item.question, prefill=prefill)
        except SpliceError as exc:  # e.g. an oversized question: recorded, not fatal
            return {
                **_item_fields(item, dataset, label),
                "answer": "",
                "grade": "ERROR",
                "error": str(exc),
                "latency_s": round(time.perf_counter() - t0, 3),
            }
        rec = _record(item, dataset, label, answer, time.perf_counter() - t0)

        def rule(text: str) -> str:
            return grade_answer(
                text,
                item.answers,
                answerable=item.answerable,
                acceptable_range=item.acceptable_range,
            ).value

        rec["rule_grade"] = rec["grade"] = rule(answer.text)
        if answer.withheld:  # what the answer would have scored: for calibration
            rec["withheld_grade"] = rule(answer.withheld)
        if self.judge is not None:
            rec["judge_grade"], rec["judge_reply"] = await self.judge.grade(
                item.question, item.answers, answer.text, item.answerable
            )
            rec["grade"] = rec["judge_grade"]
        return rec


def open_run(
    cfg: EvalConfig,
    out_dir: Path,
    datasets: Sequence[Dataset] | None = None,
    *,
    model: str = "",
    resume: bool = False,
) -> tuple[list[Job], int]:
    """Check and write the run's manifest; return the questions still to answer and
    how many are already finished. ``datasets``, when given, are ``cfg.datasets``
    already loaded (and limited)."""
    cfg.check()
    if datasets is None:
        datasets = [load_dataset(d).limit(cfg.limit) for d in cfg.datasets]
    datasets = distinct_names(datasets, cfg.datasets)
    out_dir.mkdir(parents=True, exist_ok=True)
    records_path = out_dir / "records.jsonl"
    if records_path.exists() and not resume and read_records(records_path):
        raise ConfigError(
            f"{out_dir} already has records: pass --resume to continue it, or choose another --out"
        )
    manifest = {
        "config": cfg.model_dump(),
        "model": cfg.model or model,
        "datasets": {
            d.name: {"spec": spec, "sha256": d.sha256, "n": len(d.items)}
            for d, spec in zip(datasets, cfg.datasets)
        },
        "git_commit": _git_commit(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    mpath = out_dir / "manifest.json"
    if resume and mpath.exists():
        old = json.loads(mpath.read_text())
        differences = manifest_differences(old, manifest)
        if differences:
            raise ConfigError(
                f"{out_dir} was run with other settings ({'; '.join(differences)}): resume "
                "with the same ones or choose another --out"
            )
        manifest["resumed"] = manifest.pop("started")
        manifest["started"] = old.get("started")
    mpath.write_text(json.dumps(manifest, indent=2))
    done = {record_key(r) for r in read_records(records_path) if is_final(r)}
    jobs = [
        (d.name, c, item)
        for d in datasets
        for c in cfg.conditions
        for item in d.items
        if (d.name, cfg.condition_label(c), item.id) not in done
    ]
    return jobs, len(done)


def finish_run(out_dir: Path) -> list[dict[str, Any]]:
    """Every record of the run, with its summary written (also after an interruption)."""
    records = read_records(out_dir / "records.jsonl")
    if records:
        write_summary(out_dir, records)
    return records


async def run_eval(
    cfg: EvalConfig,
    engine: Engine,
    out_dir: Path,
    *,
    retriever: Retriever | None = None,
    index: Any = None,
    resume: bool = False,
    datasets: Sequence[Dataset] | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every (dataset, condition, item) not yet recorded; return all records.
    ``datasets``, when given, are ``cfg.datasets`` already loaded (and limited)."""
    cfg.check()
    runner = QuestionRunner(cfg, engine, retriever=retriever, index=index)
    jobs, done = open_run(cfg, out_dir, datasets, model=getattr(engine, "model", ""), resume=resume)
    await runner.check()
    if on_start:
        on_start(len(jobs), done)
    gate = asyncio.Semaphore(cfg.concurrency)
    log = RecordLog(out_dir / "records.jsonl")

    async def one(job: Job) -> None:
        async with gate:
            rec = await runner.run(job)
            log.append(rec)
            if on_record:
                on_record(rec)

    try:
        await asyncio.gather(*(one(job) for job in jobs))
    finally:
        log.close()
        records = finish_run(out_dir)
    return records


def regrade_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rule grades recomputed from the stored answers; the judge's grade, where one was
    given, stays the main grade."""
    out = []
    for rec in records:
        rec = dict(rec)
        if rec.get("grade") != "ERROR":
            rng = rec.get("acceptable_range")
            rec["rule_grade"] = grade_answer(
                rec.get("answer", ""),
                rec.get("answers", []),
                answerable=rec.get("answerable", True),
                acceptable_range=tuple(rng) if rng else None,
            ).value
            if "judge_grade" not in rec:
                rec["grade"] = rec["rule_grade"]
        out.append(rec)
    return out
