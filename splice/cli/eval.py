"""``splice eval ...`` and ``splice bench eval``: batch evals over ``Agent``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from .common import (
    RayOpt,
    ReplicaCpusOpt,
    ReplicaGpusOpt,
    ReplicasOpt,
    RunScoreOpt,
    SamplesOpt,
    check_score,
    command_group,
    err,
    out,
    progress_bar,
    quiet,
    replica_pool,
    started_engine,
    vllm_config,
)

__all__ = ["eval_app"]

eval_app = command_group('Measure hallucination versus "I don\'t know".')

RunDir = Annotated[Path, typer.Argument(help="A run directory (runs/NAME).")]


def _print_summaries(summaries: list[dict[str, Any]]) -> None:
    from evals.metrics import Summary

    t = Table(title="results (95% bootstrap intervals)")
    for col in (
        "dataset",
        "condition",
        "n",
        "correct %",
        "hallucinated %",
        "abstained %",
        "S(0.75) %",
        "abst. recall %",
        "search %",
    ):
        t.add_column(col, justify="left" if col in ("dataset", "condition") else "right")
    for raw in summaries:
        s = Summary.model_validate(raw)
        t.add_row(
            s.dataset,
            s.condition,
            str(s.n),
            s.correct.fmt(),
            s.incorrect.fmt(),
            s.not_attempted.fmt(),
            s.s_075.fmt(),
            s.abstention_recall.fmt() if s.unanswerable_n else "–",
            f"{100 * s.search_call_rate:.0f}",
        )
    out.print(t)


@eval_app.command("run", short_help="Run datasets × conditions; write records and report.")
def run(
    datasets: Annotated[
        list[str],
        typer.Argument(
            help="kb-answerable, kb-unanswerable, simpleqa:CSV, nq-open:JSONL, popqa:TSV, "
            "selfaware:JSON, hf:NAME[:SPLIT], or a JSONL/JSON/CSV path."
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory (runs/NAME).")],
    condition: Annotated[
        str, typer.Option(help="Comma-separated: closed-book, tools, retrieval-failure.")
    ] = "closed-book,tools",
    failure_mode: Annotated[
        str,
        typer.Option(help="retrieval-failure: empty (no passages) or distractor (unrelated ones)."),
    ] = "empty",
    index: Annotated[
        Optional[Path],
        typer.Option(help="Index for the tools condition (default: the built-in knowledge base)."),
    ] = None,
    web: Annotated[
        bool,
        typer.Option(
            "--web",
            help="Tools search the web (SPLICE_WEB_MODE=record|replay to reproduce a run offline).",
        ),
    ] = False,
    limit: Annotated[Optional[int], typer.Option(help="First N questions per dataset.")] = None,
    concurrency: Annotated[int, typer.Option(help="Questions in flight at once.")] = 16,
    grader: Annotated[str, typer.Option(help="rule (offline) or judge (LLM).")] = "rule",
    judge_url: Annotated[
        Optional[str], typer.Option(help="OpenAI-compatible server for --grader judge.")
    ] = None,
    judge_model: Annotated[
        Optional[str], typer.Option(help="Judge model name (default: the server's first).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue a run: skip finished questions.")] = False,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    max_tokens: Annotated[int, typer.Option(help="Tokens per generation segment.")] = 256,
    protocol: Annotated[str, typer.Option(help="splice, hermes or search-r1.")] = "splice",
    search_first: Annotated[
        bool, typer.Option(help="Prefill <search> with tools on (an untuned model never searches).")
    ] = False,
    url: Annotated[Optional[str], typer.Option(help="Use a running `splice serve-model`.")] = None,
    model: Annotated[Optional[str], typer.Option(help="HF name or path.")] = None,
    max_model_len: Annotated[int, typer.Option(help="Context window.")] = 4096,
    confidence_samples: SamplesOpt = 0,
    abstain_below: Annotated[
        Optional[float],
        typer.Option(
            "--abstain-below",
            help='Say "I don\'t know" when the confidence is lower (0-1). Default: off, '
            "so the run measures the model itself; `splice eval calibrate` chooses one.",
        ),
    ] = None,
    confidence_score: RunScoreOpt = "agreement",
    ray: RayOpt = None,
    replicas: ReplicasOpt = 2,
    replica_cpus: ReplicaCpusOpt = 1,
    replica_gpus: ReplicaGpusOpt = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show vLLM's logs.")] = False,
) -> None:
    """Run datasets × conditions through the agent; write records, summary and report.

    With --ray, each of --replicas Ray actors runs its own engine, and questions go to
    whichever replica is free; the records, resume and report are the same."""
    quiet(verbose)

    from agent.errors import ConfigError
    from evals.datasets import load_dataset
    from evals.report import write_report
    from evals.runner import EvalConfig, run_eval
    from splice.defaults import close_retriever

    check_score(confidence_score)
    cfg = EvalConfig(
        datasets=datasets,
        conditions=[c.strip() for c in condition.split(",") if c.strip()],
        failure_mode=failure_mode,
        index=str(index) if index else None,
        limit=limit,
        concurrency=concurrency,
        grader=grader,
        judge_url=judge_url,
        judge_model=judge_model,
        seed=seed,
        temperature=temperature,
        max_tokens=max_tokens,
        protocol=protocol,
        search_first=search_first,
        model=model or url or "",
        confidence_samples=confidence_samples,
        abstain_below=abstain_below,
        confidence_score=confidence_score,
    )
    cfg.check()
    if ray is not None:
        from splice.cluster import ray_module

        ray_module()  # a missing extra is named before anything slow
        if replicas < 1:
            raise ConfigError("--replicas must be at least 1")
    # Loaded before the engine starts, so a bad dataset fails in a second, not a minute.
    loaded = [load_dataset(spec).limit(limit) for spec in datasets]
    local_index = retriever = None
    if cfg.needs_index:
        from retrieval import IndexRetriever, LocalIndex, open_index
        from splice.defaults import ensure_kb_index, ensure_reading_index

        if index is None:
            # The reading sets search the reading corpus's own index; the others the
            # knowledge base's. One run, one index.
            reading = [spec.startswith("reading-") for spec in datasets]
            if any(reading) and not all(reading):
                raise ConfigError(
                    "the reading-* sets search their own index: run them apart from the "
                    "other sets, or give one --index for all"
                )
            ensure = ensure_reading_index if all(reading) else ensure_kb_index
            with err.status("checking the built-in index…"):
                index, _ = ensure()
            cfg.index = str(index)
        if ray is None:  # each replica opens its own
            local_index = open_index(index)
            retriever = IndexRetriever(local_index)
        elif replicas > 1 and LocalIndex.read_manifest(Path(index)).backend == "qdrant":
            raise ConfigError(
                f"{index} is an embedded Qdrant collection, which one process at a time "
                "can open: use --replicas 1, or a FAISS index (splice index build)"
            )
    if web and ray is None:
        from retrieval import Embedder
        from retrieval.web import WebRetriever

        retriever = WebRetriever(embedder=Embedder())
    if web:
        cfg.index = "web"

    counts = {"CORRECT": 0, "INCORRECT": 0, "NOT_ATTEMPTED": 0, "other": 0}

    def describe() -> str:
        return (
            f"[green]{counts['CORRECT']} correct[/] [red]{counts['INCORRECT']} "
            f"hallucinated[/] [white]{counts['NOT_ATTEMPTED']} abstained[/]"
            + (f" {counts['other']} ungraded" if counts["other"] else "")
        )

    OnStart = Callable[[int, int], None]
    OnRecord = Callable[[dict[str, Any]], None]

    async def local(on_start: OnStart, on_record: OnRecord) -> list[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(close_retriever, retriever)
            engine = await stack.enter_async_context(
                started_engine(url, vllm_config(model, max_model_len))
            )
            return await run_eval(
                cfg,
                engine,
                out_dir,
                retriever=retriever,
                index=local_index,
                resume=resume,
                datasets=loaded,
                on_record=on_record,
                on_start=on_start,
            )

    async def on_ray(on_start: OnStart, on_record: OnRecord) -> list[dict[str, Any]]:
        from functools import partial

        from evals.records import RecordLog
        from evals.runner import finish_run, open_run
        from serving.prepare import resolve_model
        from splice.replicas import build_eval_worker

        jobs, done = open_run(
            cfg, out_dir, loaded, model=url or resolve_model(model), resume=resume
        )
        build = partial(
            build_eval_worker, cfg, url, vllm_config(model, max_model_len), cfg.index, web
        )
        async with replica_pool(
            build, ray, replicas, cfg.concurrency, replica_cpus, replica_gpus
        ) as pool:
            on_start(len(jobs), done)
            log = RecordLog(out_dir / "records.jsonl")

            def on_result(job: Any, rec: dict[str, Any]) -> None:
                log.append(rec)
                on_record(rec)

            def on_lost(i: int, why: str) -> None:
                err.print(f"replica {i} was lost ({why}): its questions go to the others")

            try:
                await pool.map(jobs, on_result, on_lost)
            finally:
                log.close()
                records = finish_run(out_dir)
        return records

    async def main() -> list[dict[str, Any]]:
        with progress_bar() as progress:
            task = progress.add_task("questions", total=None)

            def on_start(todo: int, done: int) -> None:
                if done:
                    err.print(f"resuming: {done} finished questions skipped")
                progress.update(task, total=todo, description=describe())

            def on_record(rec: dict[str, Any]) -> None:
                counts[rec["grade"] if rec["grade"] in counts else "other"] += 1
                progress.update(task, advance=1, description=describe())

            return await (on_ray if ray else local)(on_start, on_record)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        # Finished records are on disk, each written whole; the engine had its own
        # process group, so it did not see the Ctrl-C and shuts down cleanly.
        err.print(
            f"interrupted: the finished records are kept in {out_dir}; "
            "run the same command with --resume to continue"
        )
        raise typer.Exit(130) from None
    report = write_report(out_dir)
    _print_summaries(json.loads((out_dir / "summary.json").read_text()))
    out.print(
        f"wrote {out_dir / 'records.jsonl'}, {out_dir / 'summary.json'}, {report} and PNG plots"
    )


@eval_app.command("report", short_help="Write report.md and PNG plots for a run.")
def report(
    run_dir: RunDir,
    regrade: Annotated[
        bool, typer.Option(help="Re-grade stored answers with the current rule grader first.")
    ] = False,
) -> None:
    """Write report.md and PNG plots (grades per condition, risk-coverage) for a run."""
    from evals.records import read_records, rewrite_records
    from evals.report import write_report
    from evals.runner import regrade_records

    if regrade:
        changed = rewrite_records(
            run_dir / "records.jsonl", regrade_records(read_records(run_dir / "records.jsonl"))
        )
        err.print(f"re-graded: {changed} grades changed")
    path = write_report(run_dir)
    _print_summaries(json.loads((run_dir / "summary.json").read_text()))
    out.print(f"wrote {path}")


@eval_app.command("compare", short_help="Two runs side by side, with intervals.")
def compare(
    run_a: RunDir,
    run_b: RunDir,
    out_path: Annotated[
        Optional[Path], typer.Option("--out", help="Also write Markdown here.")
    ] = None,
) -> None:
    """Two runs side by side (e.g. before and after fine-tuning), with deltas."""
    from rich.markdown import Markdown

    from evals.report import compare_runs

    text = compare_runs(run_a, run_b)
    out.print(Markdown(text))
    if out_path:
        out_path.write_text(text)
        err.print(f"wrote {out_path}")


@eval_app.command("calibrate", short_help="Choose --abstain-below for a hallucination target.")
def calibrate(
    run_dir: RunDir,
    target: Annotated[
        float, typer.Option(help="Highest acceptable hallucination rate (0-1).")
    ] = 0.15,
    dataset: Annotated[
        Optional[list[str]], typer.Option(help="Only these datasets (default: all).")
    ] = None,
    score: Annotated[
        str,
        typer.Option(
            help="agreement, logprob, or auto: the one with the higher AUROC on this run."
        ),
    ] = "auto",
    at: Annotated[
        Optional[float],
        typer.Option(help="Apply this threshold instead (a test run: no choosing on it)."),
    ] = None,
    save: Annotated[
        Optional[Path],
        typer.Option(
            help="Write the chosen score and threshold into this model or adapter "
            "directory, as its default for ask, chat and serve."
        ),
    ] = None,
) -> None:
    """Choose a confidence score and --abstain-below for a hallucination target, from
    a dev run.

    Self-agreement needs a run with `--confidence-samples N`; the token probability
    (logprob) is in every run. With --at, show what a threshold already chosen (and
    its --score) does on this run, per dataset."""
    from agent.confidence import CALIBRATION_FILE, SCORES, Calibration
    from agent.errors import ConfigError
    from evals.metrics import auroc, choose_threshold, with_score
    from evals.report import load_run

    if score != "auto" and score not in SCORES:
        raise ConfigError(f"--score {score}: use {', '.join(SCORES)} or auto")
    if at is not None and save is not None:
        raise ConfigError("--save records a threshold chosen on this run: drop --at")
    if at is not None and score == "auto":
        raise ConfigError(
            "--at needs the score its threshold was chosen for: --score agreement|logprob"
        )
    if save is not None and not save.is_dir():
        raise ConfigError(f"--save {save}: not a directory (give a model or adapter directory)")
    records, manifest = load_run(run_dir)
    if dataset:
        records = [r for r in records if r["dataset"] in dataset]
    aurocs = {s: auroc(with_score(records, s), "score") for s in SCORES}
    out.print(
        "AUROC, correct vs hallucinated: self-agreement "
        + ("–" if aurocs["agreement"] is None else f"{aurocs['agreement']:.3f}")
        + ", token probability (logprob) "
        + ("–" if aurocs["logprob"] is None else f"{aurocs['logprob']:.3f}")
        + f" ({len(records)} records)"
    )
    if score == "auto":
        score = max(aurocs, key=lambda s: -1.0 if aurocs[s] is None else aurocs[s])
        out.print(f"score: {score} (the higher AUROC)")
    scored = with_score(records, score)
    if not any(r["score"] is not None for r in scored):
        hint = "--confidence-samples 5" if score == "agreement" else "the current splice"
        raise ConfigError(f"{run_dir} has no {score} scores: run it with {hint}")
    if at is not None:
        _print_at(scored, at)
        return
    chosen = choose_threshold(scored, target, key="score")
    if chosen is None:
        raise ConfigError(f"no threshold reaches {target:.0%} hallucinated on {run_dir}")
    out.print(
        f"--abstain-below {chosen.threshold:.3g} --confidence-score {score}: correct "
        f"{100 * chosen.correct:.1f}%, hallucinated {100 * chosen.hallucinated:.1f}%, "
        f"abstained {100 * chosen.abstained:.1f}% (n={chosen.n})"
    )
    if save is not None:
        samples = int(manifest.get("config", {}).get("confidence_samples") or 5)
        cal = Calibration(
            abstain_below=round(chosen.threshold, 4),
            score=score,
            confidence_samples=samples if score == "agreement" else 0,
            target=target,
            dev_run=run_dir.name,
            dev={
                "correct": round(chosen.correct, 4),
                "hallucinated": round(chosen.hallucinated, 4),
                "abstained": round(chosen.abstained, 4),
                **({"auroc": round(a, 4)} if (a := aurocs[score]) is not None else {}),
                "n": chosen.n,
            },
        )
        path = save / CALIBRATION_FILE
        path.write_text(cal.model_dump_json(indent=2) + "\n")
        err.print(f"wrote {path}: run `splice prepare` to carry it into the default model")


def _print_at(records: list[dict], threshold: float) -> None:
    from rich import box

    from evals.metrics import at_threshold

    t = Table(
        title=f"--abstain-below {threshold:.3g}, % before→after",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    t.add_column("dataset", no_wrap=True)
    t.add_column("condition", no_wrap=True)
    for col in ("n", "correct", "halluc.", "abstained"):
        t.add_column(col, justify="right", no_wrap=True)
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["condition"]), []).append(r)
    for (ds, cond), rs in sorted(groups.items()):
        raw, after = at_threshold(rs, 0.0, "score"), at_threshold(rs, threshold, "score")
        if raw is None or after is None:
            continue
        t.add_row(
            ds,
            cond,
            str(after.n),
            *(
                f"{100 * getattr(raw, k):.1f}→{100 * getattr(after, k):.1f}"
                for k in ("correct", "hallucinated", "abstained")
            ),
        )
    out.print(t)


@eval_app.command("agreement", short_help="How often the rule grader and LLM judge agree.")
def agreement(run_dir: RunDir) -> None:
    """How often the rule grader and the LLM judge agree (needs a --grader judge run)."""
    from agent.errors import ConfigError
    from evals.metrics import GRADES, grader_agreement
    from evals.report import load_run

    records, _ = load_run(run_dir)
    result = grader_agreement(records)
    if result is None:
        raise ConfigError(f"{run_dir} has no records graded by both: run it with --grader judge")
    t = Table(title=f"rule grader vs LLM judge, {result.n} answers")
    t.add_column("rule \\ judge")
    for g in GRADES:
        t.add_column(g, justify="right")
    for g in GRADES:
        t.add_row(g, *(str(result.matrix[g][h]) for h in GRADES))
    out.print(t)
    tail = (
        f"; {result.unparseable} unparseable judge replies left out" if result.unparseable else ""
    )
    out.print(f"agreement {100 * result.observed:.1f}%, Cohen's kappa {result.kappa:.3f}{tail}")


@eval_app.command("chat", short_help="Ordinary chat with tools on: how often it searches.")
def chat_check(
    out_path: Annotated[Path, typer.Option("--out", "-o", help="JSONL of replies to write.")],
    split: Annotated[
        str, typer.Option(help="Chat prompts split: heldout (never trained on) or train.")
    ] = "heldout",
    max_tokens: Annotated[int, typer.Option(help="Tokens per generation segment.")] = 192,
    url: Annotated[Optional[str], typer.Option(help="Use a running `splice serve-model`.")] = None,
    model: Annotated[Optional[str], typer.Option(help="HF name or path.")] = None,
) -> None:
    """Ordinary chat with tools on: how often does the model search when it should not?"""
    from agent import Agent, Budgets
    from evals.chat_check import check_chat, write_rows
    from evals.kb import chat_prompts
    from retrieval import IndexRetriever
    from splice.defaults import ensure_kb_index

    quiet(False)
    prompts = chat_prompts(split)

    async def main() -> list[dict[str, Any]]:
        async with started_engine(url, vllm_config(model)) as engine:
            agent = Agent(
                engine,
                [IndexRetriever.open(ensure_kb_index()[0])],
                budgets=Budgets(max_segment_tokens=max_tokens),
            )
            with err.status(f"{len(prompts)} chat prompts…"):
                return await check_chat(agent, prompts)

    rows = asyncio.run(main())
    rate = write_rows(out_path, rows)
    out.print(f"{len(rows)} chat prompts ({split}): no search {rate.fmt()}% -> {out_path}")
