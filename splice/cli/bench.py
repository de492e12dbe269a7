"""``splice bench ...``: benchmarks that print side-by-side ratios measured in one run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import ModelOpt, VerboseOpt, command_group, dim, err, print_report, quiet

__all__ = ["bench_app"]

bench_app = command_group("Benchmarks that print side-by-side ratios.")


@bench_app.command("engines", short_help="In-process vLLM vs `vllm serve` over HTTP.")
def bench_engines(
    prompts: Annotated[int, typer.Option(help="Parallel prompts per run.")] = 16,
    max_tokens: Annotated[int, typer.Option(help="Tokens generated per prompt.")] = 64,
    model: ModelOpt = None,
    out_path: Annotated[
        Optional[Path], typer.Option("--out", help="Write the figures as JSON here.")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """In-process vLLM vs `vllm serve` over HTTP: start time and tokens/s, side by side."""
    from splice.bench.engines import run_engine_bench

    quiet(verbose)
    report = run_engine_bench(prompts=prompts, max_tokens=max_tokens, model=model, log=err.print)
    print_report(report, out_path)


@bench_app.command("loop", short_help="Orchestrator overhead; async vs step-synchronous.")
def bench_loop(
    questions: Annotated[int, typer.Option(help="Questions for (a) and (c), one at a time.")] = 8,
    batch: Annotated[int, typer.Option(help="Questions for (b), all at once.")] = 32,
    rounds: Annotated[int, typer.Option(help="Most searches per question in (b).")] = 4,
    latency_median: Annotated[float, typer.Option(help="(b) tool latency median, s.")] = 0.3,
    latency_sigma: Annotated[float, typer.Option(help="(b) log-normal sigma.")] = 1.0,
    model: ModelOpt = None,
    out_path: Annotated[
        Optional[Path], typer.Option("--out", help="Write the figures as JSON here.")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Orchestrator overhead, async vs step-synchronous, and resume prefill, side by side."""
    from serving.vllm_engine import VLLMConfig, VLLMEngine
    from splice.bench.loop import Latency, run_loop_bench

    quiet(verbose)
    report = run_loop_bench(
        lambda: VLLMEngine.start(VLLMConfig(model=model)),
        questions=questions,
        batch=batch,
        rounds=rounds,
        latency=Latency(median_s=latency_median, sigma=latency_sigma),
        log=err.print,
    )
    print_report(report, out_path)


@bench_app.command("retrieval", short_help="Flat vs HNSW vs IVF-PQ indexes.")
def bench_retrieval(
    n: Annotated[int, typer.Option("--n", help="Vectors in the index.")] = 1_000_000,
    dim: Annotated[int, typer.Option(help="Vector dimension.")] = 384,
    queries: Annotated[int, typer.Option(help="Queries per measurement.")] = 1000,
    hnsw_m: Annotated[int, typer.Option(help="HNSW links per node.")] = 32,
    ef_construction: Annotated[int, typer.Option(help="HNSW build beam width.")] = 64,
    no_embed: Annotated[
        bool, typer.Option("--no-embed", help="Skip the embedding-throughput measurement.")
    ] = False,
    out_path: Annotated[
        Optional[Path], typer.Option("--out", help="Write the figures as JSON here.")
    ] = None,
) -> None:
    """Flat vs HNSW vs IVF-PQ: build time, queries/s and recall@10 against Flat."""
    from splice.bench.retrieval import run_retrieval_bench

    report = run_retrieval_bench(
        n=n,
        dim=dim,
        queries=queries,
        hnsw_m=hnsw_m,
        ef_construction=ef_construction,
        embed=not no_embed,
        log=dim,
    )
    print_report(report, out_path)


@bench_app.command("web", short_help="Concurrent page fetching against local servers.")
def bench_web(
    pages: Annotated[int, typer.Option(help="Pages fetched at once.")] = 20,
    slowest: Annotated[float, typer.Option(help="Latency of the slowest page, s.")] = 1.0,
    hang_timeout: Annotated[
        float, typer.Option(help="Total timeout for the hanging page, s.")
    ] = 2.0,
    out_path: Annotated[
        Optional[Path], typer.Option("--out", help="Write the figures as JSON here.")
    ] = None,
) -> None:
    """Concurrent page fetching against local servers, and a hanging one.

    Wall time against the slowest page, and what a never-finishing server costs."""
    from splice.bench.web import run_web_bench

    report = run_web_bench(pages=pages, slowest_s=slowest, hang_timeout_s=hang_timeout, log=dim)
    print_report(report, out_path)


@bench_app.command("eval", short_help="Questions per minute: batched vs one at a time.")
def bench_eval(
    questions: Annotated[int, typer.Option(help="Questions (built-in kb-answerable set).")] = 32,
    concurrency: Annotated[int, typer.Option(help="In flight with continuous batching.")] = 32,
    model: Annotated[Optional[str], typer.Option(help="HF name or path.")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Write JSON here.")] = None,
) -> None:
    """Questions per minute: continuous batching against one question at a time."""
    from splice.bench.eval import run_eval_bench

    quiet(False)

    result = run_eval_bench(questions=questions, concurrency=concurrency, model=model, log=dim)
    print_report(result, out_path)


@bench_app.command("ray", short_help="An eval on one local engine vs on Ray replicas.")
def bench_ray(
    questions: Annotated[int, typer.Option(help="Questions (built-in kb-answerable set).")] = 64,
    replicas: Annotated[int, typer.Option(help="Replicas in the last arm.")] = 2,
    cpus: Annotated[int, typer.Option(help="CPUs per arm, split among its replicas.")] = 2,
    concurrency: Annotated[int, typer.Option(help="Questions in flight per engine.")] = 16,
    model: ModelOpt = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Write JSON here.")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """An eval's questions on one local engine, on one Ray replica, and on N replicas
    sharing the same CPUs: start-up, questions/min and per-replica throughput."""
    from splice.bench.ray import run_ray_bench

    quiet(verbose)
    report = run_ray_bench(
        questions=questions,
        replicas=replicas,
        cpus=cpus,
        concurrency=concurrency,
        model=model,
        log=dim,
    )
    print_report(report, out_path)


@bench_app.command("serve", short_help="`splice serve` under concurrent chat sessions.")
def bench_serve(
    sessions: Annotated[int, typer.Option(help="Concurrent chat sessions.")] = 50,
    turns: Annotated[int, typer.Option(help="Turns per session.")] = 3,
    model: ModelOpt = None,
    out_path: Annotated[
        Optional[Path], typer.Option("--out", help="Write the figures as JSON here.")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """`splice serve` under concurrent sessions vs the same chats in-process."""
    from splice.bench.serve import run_serve_bench

    from .ask import agent_session
    from .common import vllm_config

    quiet(verbose)

    def make_agent():
        return agent_session(url=None, config=vllm_config(model))  # the built-in KB

    report = run_serve_bench(make_agent, sessions=sessions, turns=turns, log=err.print)
    print_report(report, out_path)
