"""``splice eval ...`` and ``splice bench eval``: batch evals over ``Agent``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

__all__ = ["eval_app", "bench_eval"]

eval_app = typer.Typer(help="Measure hallucination versus \"I don't know\".", no_args_is_help=True)
from .cli_common import err, out, print_report, quiet_vllm

RunDir = Annotated[Path, typer.Argument(help="A run directory (runs/NAME).")]


def _engine_config(model: str | None, max_model_len: int) -> Any:
    from serving.vllm_engine import VLLMConfig

    return VLLMConfig(model=model, max_model_len=max_model_len)


def _print_summaries(summaries: list[dict[str, Any]]) -> None:
    from evals.metrics import Summary

    t = Table(title="results (95% bootstrap intervals)")
    for col in ("dataset", "condition", "n", "correct %", "hallucinated %", "abstained %",
                "S(0.75) %", "abst. recall %", "search %"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("dataset", "condition") else "right")
    for raw in summaries:
        s = Summary.model_validate(raw)
        t.add_row(s.dataset, s.condition, str(s.n), s.correct.fmt(), s.incorrect.fmt(),
                  s.not_attempted.fmt(), s.s_075.fmt(),
                  s.abstention_recall.fmt() if s.unanswerable_n else "–",
                  f"{100 * s.search_call_rate:.0f}")  # fmt: skip
    out.print(t)


@eval_app.command("run")
def run(
    datasets: Annotated[list[str], typer.Argument(
        help="kb-answerable, kb-unanswerable, simpleqa:CSV, nq-open:JSONL, popqa:TSV, "
             "selfaware:JSON, hf:NAME[:SPLIT], or a JSONL/JSON/CSV path.")],  # fmt: skip
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory (runs/NAME).")],
    condition: Annotated[str, typer.Option(
        help="Comma-separated: closed-book, tools, retrieval-failure.")] = "closed-book,tools",
    failure_mode: Annotated[str, typer.Option(
        help="retrieval-failure: empty (no passages) or distractor (unrelated ones).")] = "empty",
    index: Annotated[Optional[Path], typer.Option(
        help="Index for the tools condition [default: the built-in knowledge base].")] = None,
    web: Annotated[bool, typer.Option(
        "--web", help="Tools search the web (SPLICE_WEB_MODE=record|replay to reproduce "
        "a run offline).")] = False,
    limit: Annotated[Optional[int], typer.Option(help="First N questions per dataset.")] = None,
    concurrency: Annotated[int, typer.Option(help="Questions in flight at once.")] = 16,
    grader: Annotated[str, typer.Option(help="rule (offline) or judge (LLM).")] = "rule",
    judge_url: Annotated[Optional[str], typer.Option(
        help="OpenAI-compatible server for --grader judge.")] = None,
    judge_model: Annotated[Optional[str], typer.Option(
        help="Judge model name [default: the server's first].")] = None,
    resume: Annotated[bool, typer.Option(help="Continue a run: skip finished questions.")] = False,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    max_tokens: Annotated[int, typer.Option(help="Tokens per generation segment.")] = 256,
    protocol: Annotated[str, typer.Option(help="splice, hermes or search-r1.")] = "splice",
    search_first: Annotated[bool, typer.Option(
        help="Prefill <search> with tools on (an untuned model never searches).")] = False,
    url: Annotated[Optional[str], typer.Option(help="Use a running `splice serve-model`.")] = None,
    model: Annotated[Optional[str], typer.Option(help="HF name or path.")] = None,
    max_model_len: Annotated[int, typer.Option(help="Context window.")] = 4096,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show vLLM's logs.")] = False,
) -> None:
    """Run datasets × conditions through the agent; write records, summary and report."""
    quiet_vllm(verbose)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from evals.datasets import load_dataset
    from evals.report import write_report
    from evals.runner import EvalConfig, run_eval
    from serving.factory import open_engine

    cfg = EvalConfig(datasets=datasets, conditions=[c.strip() for c in condition.split(",") if c.strip()],
                     failure_mode=failure_mode, index=str(index) if index else None, limit=limit,
                     concurrency=concurrency, grader=grader, judge_url=judge_url,
                     judge_model=judge_model, seed=seed, temperature=temperature,
                     max_tokens=max_tokens, protocol=protocol, search_first=search_first,
                     model=model or url or "")  # fmt: skip
    cfg.check()
    # Loaded before the engine starts, so a bad dataset fails in a second, not a minute.
    loaded = [load_dataset(spec).limit(limit) for spec in datasets]
    needs_index = "tools" in cfg.conditions or (
        "retrieval-failure" in cfg.conditions and failure_mode == "distractor")
    local_index = retriever = None
    if needs_index:
        from retrieval import IndexRetriever, LocalIndex
        from retrieval.kb import ensure_kb_index

        if index is None:
            with err.status("checking the built-in knowledge base index…"):
                index, _ = ensure_kb_index()
            cfg.index = str(index)
        local_index = LocalIndex.open(index)
        retriever = IndexRetriever(local_index)
    if web:
        from retrieval import Embedder
        from retrieval.web import WebRetriever

        retriever = WebRetriever(embedder=Embedder())
        cfg.index = "web"

    counts = {"CORRECT": 0, "INCORRECT": 0, "NOT_ATTEMPTED": 0, "other": 0}

    async def main() -> list[dict[str, Any]]:
        with err.status("starting the engine (about a minute on CPU)…"):
            engine = await open_engine(url, _engine_config(model, max_model_len))
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=err) as progress:  # fmt: skip
                task = progress.add_task("questions", total=None)

                def describe() -> str:
                    return (f"[green]{counts['CORRECT']} correct[/] [red]{counts['INCORRECT']} "
                            f"hallucinated[/] [white]{counts['NOT_ATTEMPTED']} abstained[/]"
                            + (f" {counts['other']} ungraded" if counts["other"] else ""))

                def on_start(todo: int, done: int) -> None:
                    if done:
                        err.print(f"resuming: {done} finished questions skipped")
                    progress.update(task, total=todo, description=describe())

                def on_record(rec: dict[str, Any]) -> None:
                    counts[rec["grade"] if rec["grade"] in counts else "other"] += 1
                    progress.update(task, advance=1, description=describe())

                return await run_eval(cfg, engine, out_dir, retriever=retriever,
                                      index=local_index, resume=resume, datasets=loaded,
                                      on_record=on_record, on_start=on_start)  # fmt: skip
        finally:
            await engine.aclose()
            if hasattr(retriever, "aclose"):
                await retriever.aclose()

    asyncio.run(main())
    report = write_report(out_dir)
    _print_summaries(json.loads((out_dir / "summary.json").read_text()))
    out.print(f"wrote {out_dir / 'records.jsonl'}, {out_dir / 'summary.json'}, {report} "
              "and PNG plots")  # fmt: skip


@eval_app.command("report")
def report(
    run_dir: RunDir,
    regrade: Annotated[bool, typer.Option(
        help="Re-grade stored answers with the current rule grader first.")] = False,
) -> None:
    """Write report.md and PNG plots (grades per condition, risk-coverage) for a run."""
    from evals.records import read_records, rewrite_records
    from evals.report import write_report
    from evals.runner import regrade_records

    if regrade:
        changed = rewrite_records(run_dir / "records.jsonl",
                                  regrade_records(read_records(run_dir / "records.jsonl")))  # fmt: skip
        err.print(f"re-graded: {changed} grades changed")
    path = write_report(run_dir)
    _print_summaries(json.loads((run_dir / "summary.json").read_text()))
    out.print(f"wrote {path}")


@eval_app.command("compare")
def compare(
    run_a: RunDir,
    run_b: RunDir,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Also write Markdown here.")] = None,
) -> None:
    """Two runs side by side (e.g. before and after fine-tuning), with deltas."""
    from rich.markdown import Markdown

    from evals.report import compare_runs

    text = compare_runs(run_a, run_b)
    out.print(Markdown(text))
    if out_path:
        out_path.write_text(text)
        err.print(f"wrote {out_path}")


@eval_app.command("agreement")
def agreement(run_dir: RunDir) -> None:
    """How often the rule grader and the LLM judge agree (needs a --grader judge run)."""
    from evals.metrics import cohen_kappa
    from evals.report import load_run
    from serving.errors import ConfigError

    records, _ = load_run(run_dir)
    grades = ("CORRECT", "INCORRECT", "NOT_ATTEMPTED")
    pairs = [(r["rule_grade"], r["judge_grade"]) for r in records
             if r.get("rule_grade") in grades and r.get("judge_grade") in grades]  # fmt: skip
    if not pairs:
        raise ConfigError(f"{run_dir} has no records graded by both: run it with --grader judge")
    po, kappa = cohen_kappa([a for a, _ in pairs], [b for _, b in pairs])
    unparseable = sum(r.get("judge_grade") == "UNPARSEABLE" for r in records)
    t = Table(title=f"rule grader vs LLM judge, {len(pairs)} answers")
    t.add_column("rule \\ judge")
    for g in grades:
        t.add_column(g, justify="right")
    for g in grades:
        t.add_row(g, *(str(sum(1 for a, b in pairs if a == g and b == h)) for h in grades))
    out.print(t)
    out.print(f"agreement {100 * po:.1f}%, Cohen's kappa {kappa:.3f}"
              + (f"; {unparseable} unparseable judge replies left out" if unparseable else ""))


def bench_eval(
    questions: Annotated[int, typer.Option(help="Questions (built-in kb-answerable set).")] = 32,
    concurrency: Annotated[int, typer.Option(help="In flight with continuous batching.")] = 32,
    model: Annotated[Optional[str], typer.Option(help="HF name or path.")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Write JSON here.")] = None,
) -> None:
    """Questions per minute: continuous batching against one question at a time."""
    from evals.bench import run_eval_bench

    quiet_vllm(False)

    result = run_eval_bench(questions=questions, concurrency=concurrency, model=model,
                            log=lambda s: err.print(f"[dim]{escape(s)}[/dim]"))  # fmt: skip
    print_report(result, out_path)


def probe(
    datasets: Annotated[Optional[list[str]], typer.Argument(
        help="Questions with gold answers [default: kb-train trivia-train, the training "
             "splits].")] = None,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="JSONL to write.")] = Path(
        "runs/probe.jsonl"),
    k: Annotated[int, typer.Option("--k", help="Samples per question.")] = 5,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (> 0).")] = 0.7,
    known_at: Annotated[float, typer.Option(
        help="Share of correct samples that makes a question known.")] = 0.8,
    limit: Annotated[Optional[int], typer.Option(help="First N questions per dataset.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    max_tokens: Annotated[int, typer.Option(help="Tokens per answer.")] = 64,
    concurrency: Annotated[int, typer.Option(help="Requests in flight.")] = 32,
    url: Annotated[Optional[str], typer.Option(help="Use a running `splice serve-model`.")] = None,
    model: Annotated[Optional[str], typer.Option(help="HF name or path.")] = None,
) -> None:
    """Knowledge probe: sample the model closed-book K times per question, grade each
    sample, label every question known or unknown (self-interrogation)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from evals.datasets import load_dataset
    from serving.factory import open_engine
    from training.probe import probe_questions, write_probe

    quiet_vllm(False)
    names = datasets or ["kb-train", "trivia-train"]
    loaded = [load_dataset(name).limit(limit) for name in names]
    items = [it for ds in loaded for it in ds.items]
    known = [0]

    async def main() -> list[Any]:
        with err.status("starting the engine (about a minute on CPU)…"):
            engine = await open_engine(url, _engine_config(model, 4096))
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=err) as progress:  # fmt: skip
                task = progress.add_task("probing", total=len(items))

                def on_record(rec: Any) -> None:
                    known[0] += rec.label == "known"
                    progress.update(task, advance=1, description=f"probing: {known[0]} known")

                return await probe_questions(engine, items, k=k, temperature=temperature,
                                             seed=seed, known_at=known_at, max_tokens=max_tokens,
                                             concurrency=concurrency, on_record=on_record)  # fmt: skip
        finally:
            await engine.aclose()

    records = asyncio.run(main())
    write_probe(out_path, records, {"datasets": names, "sha256": [ds.sha256 for ds in loaded],
                                    "k": k,
                                    "temperature": temperature, "known_at": known_at,
                                    "seed": seed, "model": model or url or "default"})  # fmt: skip
    out.print(f"{len(records)} questions: {known[0]} known, {len(records) - known[0]} unknown "
              f"-> {out_path}")  # fmt: skip


@eval_app.command("chat")
def chat_check(
    out_path: Annotated[Path, typer.Option("--out", "-o", help="JSONL of replies to write.")],
    split: Annotated[str, typer.Option(help="Chat prompts split: heldout (never trained on) "
                                       "or train.")] = "heldout",  # fmt: skip
    max_tokens: Annotated[int, typer.Option(help="Tokens per generation segment.")] = 192,
    url: Annotated[Optional[str], typer.Option(help="Use a running `splice serve-model`.")] = None,
    model: Annotated[Optional[str], typer.Option(help="HF name or path.")] = None,
) -> None:
    """Ordinary chat with tools on: how often does the model search when it should not?"""
    import json

    from agent.loop import Budgets
    from agent.sdk import Agent
    from agent.trace import ToolCallStep
    from evals.metrics import mean_interval
    from retrieval import IndexRetriever
    from retrieval.kb import ensure_kb_index
    from serving.factory import open_engine
    from training.data import chat_prompts

    quiet_vllm(False)
    prompts = chat_prompts(split)

    async def main() -> list[Any]:
        with err.status("starting the engine (about a minute on CPU)…"):
            engine = await open_engine(url, _engine_config(model, 4096))
        try:
            agent = Agent(engine, [IndexRetriever.open(ensure_kb_index()[0])],
                          budgets=Budgets(max_segment_tokens=max_tokens))  # fmt: skip
            with err.status(f"{len(prompts)} chat prompts…"):
                return await agent.aask_many([p["prompt"] for p in prompts])
        finally:
            await engine.aclose()

    answers = asyncio.run(main())
    rows = [{"id": p["id"], "prompt": p["prompt"], "answer": a.text,
             "searches": sum(isinstance(s, ToolCallStep) for s in a.trace)}
            for p, a in zip(prompts, answers)]  # fmt: skip
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    rate = mean_interval([r["searches"] == 0 for r in rows])
    out.print(f"{len(rows)} chat prompts ({split}): no search {rate.fmt()}% -> {out_path}")
