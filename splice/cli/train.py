"""``splice train data`` and ``splice train sft``: the fine-tuning recipe's commands."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from .common import (
    RunScoreOpt,
    check_score,
    command_group,
    err,
    out,
    progress_bar,
    quiet,
    untuned_base,
)

__all__ = ["train_app"]

train_app = command_group("Build self-interrogation data and fine-tune the model.")

BaseOpt = Annotated[
    Optional[Path],
    typer.Option("--base", help="Model to start from (default: the prepared untuned base model)."),
]


@train_app.command("data", short_help="Build the training trajectories.")
def data(
    probe: Annotated[
        Optional[Path],
        typer.Option(
            help="`splice probe` output (known/unknown labels) (default: runs/probe.jsonl; "
            "without it no closed-book known/unknown examples are made)."
        ),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path(
        "runs/train-data"
    ),
    seed: Annotated[int, typer.Option(help="Sampling seed for the mix.")] = 0,
    tools_answer: Annotated[int, typer.Option(help="Search→read→answer examples.")] = 450,
    tools_absent: Annotated[
        int, typer.Option(help='Search→no answer in the passages→"I don\'t know" examples.')
    ] = 200,
    closed_unknown: Annotated[int, typer.Option(help='Closed-book "I don\'t know".')] = 250,
    reading_answer: Annotated[
        int, typer.Option(help="Reading corpus: search→dense paragraph→span answer.")
    ] = 900,
    reading_absent: Annotated[
        int,
        typer.Option(help='Reading corpus: adversarial question→"I don\'t know".'),
    ] = 500,
    reading_removed: Annotated[
        int, typer.Option(help='Reading corpus: source paragraph removed→"I don\'t know".')
    ] = 250,
    known_variants: Annotated[
        int, typer.Option(help="Wordings per question the model knew (1-3).")
    ] = 1,
    chat: Annotated[
        bool, typer.Option(help="Ordinary chat examples (runs the base model for its own replies).")
    ] = True,
    corpus: Annotated[
        Optional[list[Path]],
        typer.Option(
            help="Your own corpus instead of the built-in data: JSONL, .txt/.md/.html "
            "files or folders, as for `splice index build` (repeatable; needs --qa)."
        ),
    ] = None,
    qa: Annotated[
        Optional[Path],
        typer.Option(
            help='Your questions on --corpus: JSONL {"question", "answers", '
            '"answerable"?, "source_id"?}.'
        ),
    ] = None,
    base: BaseOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show vLLM's logs.")] = False,
) -> None:
    """Build the training trajectories from the training splits.

    The knowledge base's and the reading corpus's training splits, the probe's
    labels, and chat prompts; dev and test items never enter. With --corpus and
    --qa, your corpus and questions replace the built-in knowledge base and reading
    corpus (chat and identity examples stay)."""
    quiet(verbose)
    from transformers import AutoTokenizer

    from evals.kb import chat_prompts
    from splice.defaults import ensure_kb_index, ensure_reading_index
    from training.data import (
        DataConfig,
        build_examples,
        cached_chat_replies,
        generate_chat_replies,
        read_probe,
        read_user_qa,
        run_gather,
        training_questions,
        write_dataset,
    )
    from training.trajectories import Replayer

    if (corpus is None) != (qa is None):
        raise typer.BadParameter("--corpus and --qa go together: give both, or neither")
    user_qa = read_user_qa(qa) if qa is not None else None  # checked before anything slow
    model = untuned_base(base)
    probe_path = probe or Path("runs/probe.jsonl")
    labels: dict[str, Any] = {}
    if probe_path.is_file():
        labels = read_probe(probe_path)
    elif probe is not None:
        raise typer.BadParameter(f"{probe} does not exist (run `splice probe` first)")
    else:
        err.print(
            f"[yellow]no probe at {probe_path}: no closed-book known/unknown examples "
            "(run `splice probe` first)[/yellow]"
        )
    cfg = DataConfig.from_counts(
        seed=seed,
        tools_answer=tools_answer,
        closed_unknown=closed_unknown,
        tools_absent=tools_absent,
        known_variants=known_variants,
        reading_answer=reading_answer,
        reading_absent=reading_absent,
        reading_removed=reading_removed,
    )
    t0 = time.perf_counter()
    if user_qa is not None and corpus is not None:
        from retrieval import LocalIndex
        from retrieval.corpus import read_documents

        index_dir = out_dir / "corpus-index"
        LocalIndex.build(
            read_documents(corpus), index_dir, index_type="flat", overwrite=True, progress=True
        )
        with err.status("retrieving passages for your questions…"):
            passages = run_gather(index_dir, user_qa, cfg.retrieve_k, keep=lambda _doc: True)
    else:
        with err.status("retrieving passages for the training questions…"):
            # Each corpus's questions search that corpus's own index, as at inference.
            kb_qs, reading_qs = training_questions()
            passages = {
                **run_gather(ensure_kb_index()[0], kb_qs, cfg.retrieve_k),
                **run_gather(ensure_reading_index()[0], reading_qs, cfg.retrieve_k),
            }
    replies: dict[str, list[int]] = {}
    if chat:
        from serving.vllm_engine import VLLMConfig, VLLMEngine

        async def gen() -> dict[str, list[int]]:
            engine = VLLMEngine.start(VLLMConfig(model=str(model)))
            try:
                return await generate_chat_replies(engine, chat_prompts("train"))
            finally:
                await engine.aclose()

        def generate() -> dict[str, list[int]]:
            with err.status("the base model writes its own chat replies (about a minute)…"):
                return asyncio.run(gen())

        # Greedy replies of one base model: reusable across data builds.
        cache = out_dir / "chat_replies.json"
        replies, reused = cached_chat_replies(cache, model, generate)
        if reused:
            err.print(f"[dim]reusing the base model's chat replies from {cache}[/dim]")
    tokenizer = AutoTokenizer.from_pretrained(model)
    replayer = Replayer(tokenizer)
    with err.status("replaying trajectories through the agent loop…"):
        examples = build_examples(
            replayer,
            probe=labels,
            passages=passages,
            chat_replies=replies,
            cfg=cfg,
            user_qa=user_qa,
            log=lambda m: err.print(f"[dim]{escape(m)}[/dim]"),
        )
    replayer.close()
    meta = {
        "config": cfg.model_dump(),
        "probe": str(probe_path) if labels else None,
        "corpus": [str(c) for c in corpus] if corpus else None,
        "qa": str(qa) if qa else None,
        "base_model": str(model),
        "chat_replies": len(replies),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    path = write_dataset(out_dir, examples, tokenizer, meta)
    out.print(f"{len(examples)} examples -> {path} (data card: {out_dir / 'README.md'})")


@train_app.command("sft", short_help="LoRA fine-tuning; uses a GPU when there is one.")
def sft(
    data_path: Annotated[
        Path, typer.Option("--data", help="train.jsonl from `splice train data`.")
    ] = Path("runs/train-data/train.jsonl"),
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path(
        "runs/sft"
    ),
    epochs: Annotated[float, typer.Option(help="Passes over the data.")] = 1.0,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after N optimizer steps.")] = None,
    micro_batch: Annotated[int, typer.Option(help="Examples per forward pass.")] = 4,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step.")] = 4,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    save_every: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed for order and initialisation.")] = 0,
    resume: Annotated[
        bool, typer.Option(help="Continue from the last checkpoint in --out.")
    ] = False,
    ship: Annotated[
        bool,
        typer.Option(help="Copy the adapter to training/adapter (what `splice prepare` merges)."),
    ] = False,
    base: BaseOpt = None,
) -> None:
    """LoRA fine-tuning; uses a GPU when there is one.

    LoRA on attention and MLP, plus the tool tokens' embedding rows; the loss is on
    sampled ids only."""

    from training.data import read_dataset
    from training.sft import SFTConfig, train

    model = untuned_base(base)
    if not data_path.is_file():
        raise typer.BadParameter(f"{data_path} does not exist (run `splice train data`)")
    examples = read_dataset(data_path)
    cfg = SFTConfig(
        epochs=epochs,
        max_steps=max_steps,
        micro_batch=micro_batch,
        grad_accum=grad_accum,
        lr=lr,
        lora_r=lora_r,
        lora_alpha=2 * lora_r,
        save_every=save_every,
        seed=seed,
    )
    with progress_bar(eta=True) as progress:
        task = progress.add_task("training", total=None)
        t0 = time.perf_counter()

        def on_step(step: int, total: int, loss: float, tokens: int) -> None:
            rate = tokens / max(1e-9, time.perf_counter() - t0)
            progress.update(
                task,
                completed=step,
                total=total,
                description=f"training: loss {loss:.3f}, {rate:.0f} ids/s",
            )
            if not err.is_terminal:
                err.print(f"step {step}/{total} loss {loss:.4f} ({rate:.0f} ids/s)")

        result = train(
            model,
            examples,
            out_dir,
            cfg,
            resume=resume,
            on_step=on_step,
            log=lambda m: err.print(escape(m)),
        )
    out.print(
        f"{result.steps} steps on {result.examples} examples in {result.seconds:.0f} s "
        f"({result.device}); final loss {result.final_loss:.3f} -> {result.adapter}"
    )
    if ship:
        from splice.defaults import adapter_home
        from training.sft import ship_adapter

        dest = ship_adapter(result.adapter, out_dir / "train_log.json", adapter_home())
        out.print(
            f"shipped to {dest}: run `splice prepare` to merge it, then calibrate its "
            "threshold on dev (`splice eval calibrate RUN --save` it there; see `make train`)"
        )
    else:
        out.print(f"try it: splice prepare --adapter {result.adapter}")


@train_app.command("report", short_help="The fine-tuning quality bar, with 95% intervals.")
def report(
    run_dir: Annotated[Path, typer.Argument(help="`splice eval run` directory of the model.")],
    base_probe: Annotated[
        Path,
        typer.Option(
            help="The base model's probe of the same held-out questions "
            "(`splice probe kb-answerable trivia-heldout --model BASE`)."
        ),
    ],
    chat: Annotated[Path, typer.Option(help="`splice eval chat` output.")],
    out_path: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="Markdown to write (default: RUN/quality.md)."),
    ] = None,
    abstain_below: Annotated[
        Optional[float],
        typer.Option(
            "--abstain-below",
            help="Score the run as this threshold would have left it.",
        ),
    ] = None,
    confidence_score: RunScoreOpt = "agreement",
) -> None:
    """The fine-tuning quality bar (issue #7) with 95% bootstrap intervals."""
    from agent.errors import ConfigError
    from evals.kb import read_rows
    from evals.metrics import with_score, withhold_below
    from evals.records import read_records
    from training.data import read_probe
    from training.quality import quality_bar, render_bar

    for p in (run_dir / "records.jsonl", base_probe, chat):
        if not p.is_file():
            raise typer.BadParameter(f"{p} does not exist")
    labels = {k: v["label"] for k, v in read_probe(base_probe).items()}
    chat_rows = read_rows(chat, ("id", "searches"))
    records = read_records(run_dir / "records.jsonl")
    title = f"Quality bar: {run_dir.name}"
    if abstain_below is not None:
        check_score(confidence_score)
        records = with_score(records, confidence_score)
        if not any(r["score"] is not None for r in records):
            raise ConfigError(f"{run_dir} has no {confidence_score} scores")
        records = withhold_below(records, abstain_below, key="score")
        title += f", --abstain-below {abstain_below:.3g} ({confidence_score})"
    rows = quality_bar(records, labels, chat_rows)
    text = render_bar(rows, title)
    dest = out_path or run_dir / "quality.md"
    dest.write_text(text)
    out.print(text)
    err.print(f"wrote {dest}")
