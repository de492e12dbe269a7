"""The ``splice`` command line.

User mistakes (a missing model, an unreachable server, a prompt that does not fit)
are :class:`SpliceError`; :func:`main` prints their one-line message, with no
traceback, and exits 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from serving.errors import SpliceError

from .cli_eval import bench_eval, eval_app, probe
from .cli_index import bench_retrieval, bench_web, index_app
from .cli_train import train_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="splice",
    help="Agentic RAG that splices tool results into the token stream, "
    "and says \"I don't know\" when it should.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
bench_app = typer.Typer(help="Benchmarks that print side-by-side ratios.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(index_app, name="index")
bench_app.command("retrieval")(bench_retrieval)
app.add_typer(eval_app, name="eval")
app.add_typer(train_app, name="train")
app.command("probe")(probe)
bench_app.command("eval")(bench_eval)
bench_app.command("web")(bench_web)

from .cli_common import err, out, print_report, quiet_vllm

# Engine options shared by every command that runs the model.
ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", help="HF name or path; default: the prepared SmolLM2 model."),
]
MaxLenOpt = Annotated[int, typer.Option("--max-model-len", help="Context window in tokens.")]
DtypeOpt = Annotated[
    Optional[str], typer.Option("--dtype", help="float32 on CPU, auto on GPU by default.")
]
KVOpt = Annotated[
    Optional[float], typer.Option("--kv-cache-gib", help="CPU KV-cache size in GiB (default 2).")
]
TPOpt = Annotated[int, typer.Option("--tensor-parallel-size", "-tp", help="GPUs per model.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show vLLM's own logs.")]
UrlOpt = Annotated[
    Optional[str], typer.Option("--url", help="Use a running `splice serve-model` server.")
]
PassagesOpt = Annotated[
    Optional[Path], typer.Option("--passages", help="JSONL of {id,title,text} to search (in memory).")
]
WebOpt = Annotated[bool, typer.Option(
    "--web", help="Search the web (backend from SPLICE_WEB_* or ~/.config/splice/web.toml).")]
HybridOpt = Annotated[bool, typer.Option(
    "--hybrid", help="Search the index and the web, merged by reciprocal-rank fusion.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Bypass the web cache.")]
IndexOpt = Annotated[
    Optional[Path],
    typer.Option("--index", help="Index directory to search (`splice index build`); "
                 "default: the built-in knowledge base."),  # fmt: skip
]
ProtocolOpt = Annotated[
    str, typer.Option(help="Tool-call protocol: splice, hermes (Qwen-style JSON calls) or "
                      "search-r1 (plain-text tags of Search-R1 checkpoints).")
]
SegmentOpt = Annotated[int, typer.Option("--max-tokens", help="Tokens per generation segment.")]
TempOpt = Annotated[float, typer.Option(help="0 = greedy.")]


def _vllm_config(model: str | None, max_model_len: int, dtype: str | None,
                 kv_cache_gib: float | None, tensor_parallel_size: int):  # fmt: skip
    from serving.vllm_engine import VLLMConfig

    return VLLMConfig(
        model=model,
        max_model_len=max_model_len,
        dtype=dtype,
        kv_cache_gib=kv_cache_gib,
        tensor_parallel_size=tensor_parallel_size,
    )


@app.command()
def prepare(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if up to date.")] = False,
    no_index: Annotated[
        bool, typer.Option("--no-index", help="Skip the built-in knowledge-base index.")
    ] = False,
    home: Annotated[
        Optional[Path], typer.Option("--home", help="Cache directory (env SPLICE_HOME).")
    ] = None,
    adapter: Annotated[Optional[str], typer.Option(
        help="LoRA adapter directory to merge [default: the shipped fine-tuned adapter, "
             "training/adapter]; 'none' = the untuned model.")] = None,
) -> None:
    """Build the default model (SmolLM2-135M-Instruct + tool-call tokens, with the
    fine-tuned adapter merged in) and the built-in knowledge-base index under SPLICE_HOME."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from serving.prepare import prepare as run_prepare

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    stages = ["verifying cache", "reading tokenizer", "dequantizing GGUF weights",
              "adding tool-call tokens", "saving safetensors", "merging the fine-tuned adapter",
              "hashing files"]  # fmt: skip
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), *Progress.get_default_columns()[1:3],
        TimeElapsedColumn(), console=err, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("prepare", total=len(stages))

        def on_step(name: str) -> None:
            done = stages.index(name) if name in stages else 0
            progress.update(task, completed=done, description=name)

        chosen: Any = "shipped" if adapter is None else (None if adapter == "none" else Path(adapter))
        result = run_prepare(home, force=force, adapter=chosen, on_step=on_step,
                             on_notice=err.print)  # fmt: skip
        progress.update(task, completed=len(stages))
    state = "built" if result.built else "up to date"
    ids = ", ".join(f"{t}={i}" for t, i in result.manifest.special_tokens.items())
    tuned = f"fine-tuned adapter {result.manifest.adapter}" if result.manifest.adapter \
        else "untuned"  # fmt: skip
    out.print(f"[green]model {state}[/green] ({tuned}): {result.path}")
    out.print(f"base model: {result.base}")
    out.print(f"tool tokens: {ids}")
    if not no_index:
        from retrieval.kb import ensure_kb_index

        with err.status("building the knowledge-base index…") as status:
            path, built = ensure_kb_index(home, on_stage=lambda s: status.update(s + "…"))
        out.print(f"[green]knowledge base {'built' if built else 'up to date'}[/green]: {path}")


@app.command("serve-model")
def serve_model(
    model: ModelOpt = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_model_len: MaxLenOpt = 4096,
    dtype: DtypeOpt = None,
    kv_cache_gib: KVOpt = None,
    tensor_parallel_size: TPOpt = 1,
    vllm_args: Annotated[
        Optional[list[str]], typer.Argument(help="Extra `vllm serve` flags, after `--`.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for health.")] = 600.0,
) -> None:
    """Run vLLM's OpenAI-compatible server for the model and wait until it is healthy."""
    from serving.model_server import ModelServer

    config = _vllm_config(model, max_model_len, dtype, kv_cache_gib, tensor_parallel_size)
    # Foreground: the server's own logs stream to this terminal.
    server = ModelServer(config, host=host, port=port, extra_args=vllm_args, stream_logs=True)
    err.print(f"starting: {' '.join(server.command())}")
    try:
        server.start(timeout=timeout)
        err.print(f"[green]ready[/green] at {server.url}/v1  (Ctrl-C stops it)")
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _load_passages(path: Path) -> list:
    """A JSONL of {"id","title","text"} (or FlashRAG's {"id","contents"}) rows, in memory."""
    from agent.tools import Passage
    from retrieval.corpus import read_jsonl_documents

    return [Passage(id=d.id, title=d.title, text=d.text, source=d.source or path.name)
            for d in read_jsonl_documents(path)]  # fmt: skip


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    no_tools: Annotated[bool, typer.Option("--no-tools", help="Closed-book: no search.")] = False,
    index: IndexOpt = None,
    passages: PassagesOpt = None,
    web: WebOpt = False,
    hybrid: HybridOpt = False,
    no_cache: NoCacheOpt = False,
    protocol: ProtocolOpt = "splice",
    search_first: Annotated[
        bool, typer.Option("--search-first", help="Prefill <search>: makes an untuned model search.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"answer","abstained","citations","trace"}.')
    ] = False,
    url: UrlOpt = None,
    model: ModelOpt = None,
    max_tokens: SegmentOpt = 256,
    temperature: TempOpt = 0.0,
    max_model_len: MaxLenOpt = 4096,
    dtype: DtypeOpt = None,
    kv_cache_gib: KVOpt = None,
    tensor_parallel_size: TPOpt = 1,
    verbose: VerboseOpt = False,
) -> None:
    """Answer a question, searching when the model asks to; print the answer and sources."""
    import json

    from agent.trace import ToolCallEvent, ToolResultEvent
    from serving.errors import ConfigError

    quiet_vllm(verbose)
    if search_first and no_tools:
        raise ConfigError("--search-first needs search: drop --no-tools")
    config = _vllm_config(model, max_model_len, dtype, kv_cache_gib, tensor_parallel_size)

    async def run() -> None:
        retriever = _open_retriever(index, passages, web, hybrid, no_cache, no_tools)
        agent = await _open_agent(url, config, retriever, protocol, no_tools, temperature,
                                  max_tokens)  # fmt: skip
        try:
            prefill = agent.protocol.prompt_prefill_ids("search") if search_first else []
            answer = None
            async for ev in agent.stream(question, prefill=prefill):
                if isinstance(ev, ToolCallEvent) and not as_json:
                    err.print(f"[cyan]search[/cyan] {escape(json.dumps(ev.arguments))}")
                elif isinstance(ev, ToolResultEvent) and not as_json:
                    ids = ", ".join(c.id for c in ev.step.sources) or "no sources"
                    err.print(f"[cyan]results[/cyan] {escape(ids)} ({ev.step.seconds:.2f}s)")
                answer = getattr(ev, "answer", answer)
            assert answer is not None
            if as_json:
                # Plain print: rich would wrap long strings and break the JSON.
                print(json.dumps({
                    "answer": answer.text, "abstained": answer.abstained,
                    "citations": [c.model_dump() for c in answer.citations],
                    "trace": [s.model_dump() for s in answer.trace],
                }, ensure_ascii=False, indent=2))  # fmt: skip
            else:
                out.print(answer.text, markup=False, highlight=False)
                for c in answer.citations:
                    out.print(f"  [{escape(c.id)}] {escape(c.title)} {escape(c.source)}",
                              highlight=False)  # fmt: skip
        finally:
            await _close(agent, retriever)

    asyncio.run(run())


def _open_retriever(index: Path | None, passages: Path | None, web: bool, hybrid: bool,
                    no_cache: bool, no_tools: bool) -> Any:  # fmt: skip
    """--passages (in memory), --web, --hybrid, --index DIR, or the built-in knowledge base."""
    from agent.tools import InMemoryRetriever

    if no_tools:
        return None
    if passages is not None:
        return InMemoryRetriever(_load_passages(passages))
    web_retriever = None
    if web or hybrid:
        from retrieval import Embedder
        from retrieval.web import WebRetriever, WebSettings

        web_retriever = WebRetriever(WebSettings(**({"no_cache": True} if no_cache else {})),
                                     embedder=Embedder())  # fmt: skip
        if not hybrid:
            return web_retriever
    from retrieval import IndexRetriever
    from retrieval.kb import ensure_kb_index

    if index is None:
        with err.status("checking the built-in knowledge base index…"):
            index, _ = ensure_kb_index()
    local = IndexRetriever.open(index)
    if web_retriever is None:
        return local
    from retrieval.web import HybridRetriever

    return HybridRetriever(local, web_retriever)


async def _close(agent: Any, retriever: Any) -> None:
    await agent.engine.aclose()
    for part in (retriever, getattr(retriever, "web", None)):
        if hasattr(part, "aclose"):
            await part.aclose()


async def _open_agent(url: str | None, config: Any, retriever: Any, protocol: str,
                      no_tools: bool, temperature: float, max_tokens: int) -> Any:  # fmt: skip
    """Start (or connect to) the engine and wrap it in an Agent."""
    from agent.loop import Budgets
    from agent.sdk import Agent
    from serving.engine import SamplingParams
    from serving.factory import open_engine

    with err.status("starting the engine (about a minute on CPU)…"):
        engine = await open_engine(url, config)
    try:
        return Agent(
            engine, [retriever] if retriever else [], protocol=protocol,
            sampling=SamplingParams(temperature=temperature),
            budgets=Budgets(max_segment_tokens=max_tokens), use_tools=not no_tools,
        )  # fmt: skip
    except BaseException:
        await engine.aclose()
        raise


@app.command()
def chat(
    no_tools: Annotated[bool, typer.Option("--no-tools", help="Start closed-book.")] = False,
    index: IndexOpt = None,
    passages: PassagesOpt = None,
    web: WebOpt = False,
    hybrid: HybridOpt = False,
    no_cache: NoCacheOpt = False,
    protocol: ProtocolOpt = "splice",
    url: UrlOpt = None,
    model: ModelOpt = None,
    max_tokens: SegmentOpt = 256,
    temperature: TempOpt = 0.0,
    max_model_len: MaxLenOpt = 4096,
    dtype: DtypeOpt = None,
    kv_cache_gib: KVOpt = None,
    tensor_parallel_size: TPOpt = 1,
    verbose: VerboseOpt = False,
) -> None:
    """Chat in a REPL: streaming answers, live tool calls, /tools /trace /reset /exit."""
    from agent.repl import run_repl
    from serving.settings import splice_home

    quiet_vllm(verbose)
    config = _vllm_config(model, max_model_len, dtype, kv_cache_gib, tensor_parallel_size)

    async def run() -> None:
        retriever = _open_retriever(index, passages, web, hybrid, no_cache, no_tools)
        agent = await _open_agent(url, config, retriever, protocol, no_tools, temperature,
                                  max_tokens)  # fmt: skip
        try:
            await run_repl(agent, out, history_file=splice_home() / "chat_history")
        finally:
            await _close(agent, retriever)

    asyncio.run(run())


@bench_app.command("engines")
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
    from serving.bench import run_engine_bench

    quiet_vllm(verbose)
    report = run_engine_bench(prompts=prompts, max_tokens=max_tokens, model=model, log=err.print)
    print_report(report, out_path)


@bench_app.command("loop")
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
    from agent.bench_loop import Latency, run_loop_bench
    from serving.vllm_engine import VLLMConfig, VLLMEngine

    quiet_vllm(verbose)
    report = run_loop_bench(lambda: VLLMEngine.start(VLLMConfig(model=model)),
                            questions=questions, batch=batch, rounds=rounds,
                            latency=Latency(median_s=latency_median, sigma=latency_sigma),
                            log=err.print)  # fmt: skip
    print_report(report, out_path)


def main() -> None:
    """Console-script entry: one line, no traceback, for user errors."""
    try:
        app()
    except SpliceError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
