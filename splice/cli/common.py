"""What every ``splice`` subcommand module shares: consoles, the options that several
commands take (defined once here), and small helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from serving.environment import quiet_libraries, verbose_logs

__all__ = [
    "check_fits",
    "command_group",
    "source_lines",
    "err",
    "out",
    "quiet",
    "started_engine",
    "print_report",
    "vllm_config",
    "untuned_base",
    "dim",
    "ModelOpt",
    "MaxLenOpt",
    "DtypeOpt",
    "KVOpt",
    "TPOpt",
    "VerboseOpt",
    "UrlOpt",
    "PassagesOpt",
    "WebOpt",
    "HybridOpt",
    "NoCacheOpt",
    "IndexOpt",
    "ProtocolOpt",
    "SegmentOpt",
    "TempOpt",
    "JsonOutOpt",
    "SamplesOpt",
    "AbstainOpt",
    "ScoreOpt",
    "RunScoreOpt",
    "check_score",
    "RayOpt",
    "ReplicasOpt",
    "ReplicaCpusOpt",
    "ReplicaGpusOpt",
    "replica_pool",
    "progress_bar",
]


def command_group(help: str, **kwargs: Any) -> typer.Typer:
    """A Typer app with Splice's help style: click's plain layout, which wraps at
    80 columns, where rich's option table cut descriptions to a word per line."""
    return typer.Typer(
        help=help,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_show_locals=False,
        **kwargs,
    )


err = Console(stderr=True)
out = Console()

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
    Optional[Path],
    typer.Option("--passages", help="JSONL of {id,title,text} to search (in memory)."),
]
WebOpt = Annotated[
    bool,
    typer.Option(
        "--web", help="Search the web (backend from SPLICE_WEB_* or ~/.config/splice/web.toml)."
    ),
]
HybridOpt = Annotated[
    bool,
    typer.Option(
        "--hybrid", help="Search the index and the web, merged by reciprocal-rank fusion."
    ),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Bypass the web cache.")]
IndexOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--index",
        help="Index directory to search (`splice index build`); "
        "default: the built-in knowledge base.",
    ),
]
ProtocolOpt = Annotated[
    str,
    typer.Option(
        help="Tool-call protocol: splice, hermes (Qwen-style JSON calls) or "
        "search-r1 (plain-text tags of Search-R1 checkpoints)."
    ),
]
SegmentOpt = Annotated[int, typer.Option("--max-tokens", help="Tokens per generation segment.")]
TempOpt = Annotated[float, typer.Option(help="0 = greedy.")]
SamplesOpt = Annotated[
    int,
    typer.Option(
        "--confidence-samples",
        help="Score each answer by the agreement of N resampled answers (0 = off).",
    ),
]
AbstainOpt = Annotated[
    Optional[float],
    typer.Option(
        "--abstain-below",
        help='Say "I don\'t know" when the confidence is lower (0-1; 0 = off). '
        "Default: the model's calibrated threshold, if it has one.",
    ),
]
ScoreOpt = Annotated[
    Optional[str],
    typer.Option(
        "--confidence-score",
        help="What --abstain-below compares: agreement (of resampled answers) or "
        "logprob (the sampled ids' probability; free). Default: the model's, else "
        "agreement.",
    ),
]
RunScoreOpt = Annotated[
    str,
    typer.Option("--confidence-score", help="What --abstain-below compares: agreement or logprob."),
]
"""For commands that measure a run (eval run, train report): the default is fixed."""
RayOpt = Annotated[
    Optional[str],
    typer.Option(
        "--ray",
        help="Run on Ray: auto (a running cluster, else a local one) or a cluster ADDRESS.",
    ),
]
ReplicasOpt = Annotated[int, typer.Option(help="With --ray: engines, one per Ray actor.")]
ReplicaCpusOpt = Annotated[float, typer.Option(help="With --ray: CPUs per replica.")]
ReplicaGpusOpt = Annotated[float, typer.Option(help="With --ray: GPUs per replica.")]
JsonOutOpt = Annotated[
    Optional[Path], typer.Option("--out", help="Write the figures as JSON here.")
]


def check_score(score: str | None) -> None:
    """A --confidence-score value, named in one line when it is not one we have."""
    from agent.confidence import SCORES
    from agent.errors import ConfigError

    if score is not None and score not in SCORES:
        raise ConfigError(f"--confidence-score {score}: use {' or '.join(SCORES)}")


def quiet(verbose: bool) -> None:
    """Library logs to stderr, and only errors unless -v (or SPLICE_LOG_LEVEL=INFO/DEBUG)."""
    from agent.settings import SpliceSettings, load

    quiet_libraries(verbose or load(SpliceSettings).log_level in ("INFO", "DEBUG"))


def check_fits(question: str, config: Any, reserve: int = 256) -> None:
    """Refuse a question the context window cannot hold, before the engine starts
    (a minute on CPU); ``reserve`` covers the system prompt and the tool list."""
    from transformers import AutoTokenizer

    from agent.errors import ConfigError
    from serving.prepare import resolve_model

    model = resolve_model(config.model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError):
        return  # not a model here: the engine's start says so in one line
    n = len(tokenizer.encode(question, add_special_tokens=False))
    if n + reserve > config.max_model_len:
        raise ConfigError(
            f"the question is {n:,} tokens, too long for a {config.max_model_len:,}-token "
            "context: shorten it, or pass a larger --max-model-len"
        )


def source_lines(citations: Any) -> list[str]:
    """One line per cited source, the same for every index: ``[1] Title — where``."""
    from rich.markup import escape

    return [
        f"  [{i}] {escape(c.title or c.id)} — {escape(c.locator)}"
        for i, c in enumerate(citations, 1)
    ]


def dim(message: str) -> None:
    from rich.markup import escape

    err.print(f"[dim]{escape(message)}[/dim]")


def vllm_config(
    model: str | None,
    max_model_len: int = 4096,
    dtype: str | None = None,
    kv_cache_gib: float | None = None,
    tensor_parallel_size: int = 1,
) -> Any:
    from serving.vllm_engine import VLLMConfig

    return VLLMConfig(
        model=model,
        max_model_len=max_model_len,
        dtype=dtype,
        kv_cache_gib=kv_cache_gib,
        tensor_parallel_size=tensor_parallel_size,
    )


@asynccontextmanager
async def started_engine(url: str | None, config: Any) -> AsyncIterator[Any]:
    """An engine (in-process, or the server at ``url``) for a ``with`` body, then closed."""
    from splice.defaults import engine_session

    async with AsyncExitStack() as stack:
        with err.status("starting the engine (about a minute on CPU)…"):
            engine = await stack.enter_async_context(engine_session(url, config))
        yield engine


@asynccontextmanager
async def replica_pool(
    build: Any, address: str, replicas: int, per_replica: int, cpus: float, gpus: float
) -> AsyncIterator[Any]:
    """Started Ray replicas (each with its own engine) for a ``with`` body, then closed."""
    from splice.cluster import ReplicaPool, connect

    with err.status(f"starting {replicas} Ray replicas (about a minute on CPU)…"):
        connect(address, verbose=verbose_logs())
        pool = ReplicaPool(
            build, replicas=replicas, per_replica=per_replica, num_cpus=cpus, num_gpus=gpus
        )
        try:
            await pool.start()
        except BaseException:
            await pool.close()
            raise
    try:
        yield pool
    finally:
        await pool.close()


def progress_bar(*, eta: bool = False) -> Any:
    """The bar long commands share: description, bar, done/total, elapsed (and ETA)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    if eta:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=err)


def print_report(report: Any, out_path: Path | None) -> None:
    """A benchmark's table on stdout and, if asked, its figures as JSON."""
    out.print(report.table())
    if out_path:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(report.model_dump_json(indent=2))
        err.print(f"wrote {out_path}")


def untuned_base(base: Path | None = None) -> Path:
    """``base``, or the prepared untuned base model: what the recipe starts from and
    what the knowledge probe asks (what the model knew before any fine-tuning)."""
    from serving.prepare import base_model_dir, verify

    path = base or base_model_dir()
    if base is None:
        verify(path, full=False)  # one-line error naming `splice prepare` when absent
    return path
