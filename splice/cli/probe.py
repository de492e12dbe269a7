"""``splice probe``: the knowledge probe of the self-interrogation recipe."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import out, progress_bar, quiet, started_engine, untuned_base, vllm_config

__all__ = ["probe"]


def probe(
    datasets: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="Questions with gold answers (default: kb-train trivia-train, the training "
            "splits)."
        ),
    ] = None,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="JSONL to write.")] = Path(
        "runs/probe.jsonl"
    ),
    k: Annotated[int, typer.Option("--k", help="Samples per question.")] = 5,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (> 0).")] = 0.7,
    known_at: Annotated[
        float, typer.Option(help="Share of correct samples that makes a question known.")
    ] = 0.2,
    rule: Annotated[
        str,
        typer.Option(
            help="greedy: the greedy answer is correct and --known-at of the samples; "
            "sampled: --known-at of the samples only."
        ),
    ] = "greedy",
    limit: Annotated[Optional[int], typer.Option(help="First N questions per dataset.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    max_tokens: Annotated[int, typer.Option(help="Tokens per answer.")] = 64,
    concurrency: Annotated[int, typer.Option(help="Requests in flight.")] = 32,
    url: Annotated[Optional[str], typer.Option(help="Use a running `splice serve-model`.")] = None,
    model: Annotated[
        Optional[str],
        typer.Option(
            help="HF name or path (default: the prepared untuned base model; the probe "
            "asks what the model knew before fine-tuning)."
        ),
    ] = None,
) -> None:
    """Knowledge probe: label each question known or unknown to the model.

    Samples the model closed-book K times per question and grades each sample
    (the self-interrogation recipe)."""

    from evals.datasets import load_dataset
    from training.probe import probe_questions, write_probe

    if rule not in ("greedy", "sampled"):
        raise typer.BadParameter(f"--rule must be greedy or sampled, not {rule!r}")
    quiet(False)
    if url is None and model is None:
        model = str(untuned_base())
    names = datasets or ["kb-train", "trivia-train"]
    loaded = [load_dataset(name).limit(limit) for name in names]
    items = [it for ds in loaded for it in ds.items]
    known = [0]

    async def main() -> list[Any]:
        async with started_engine(url, vllm_config(model)) as engine:
            with progress_bar() as progress:
                task = progress.add_task("probing", total=len(items))

                def on_record(rec: Any) -> None:
                    known[0] += rec.label == "known"
                    progress.update(task, advance=1, description=f"probing: {known[0]} known")

                return await probe_questions(
                    engine,
                    items,
                    k=k,
                    temperature=temperature,
                    seed=seed,
                    known_at=known_at,
                    rule=rule,  # type: ignore[arg-type]
                    max_tokens=max_tokens,
                    concurrency=concurrency,
                    on_record=on_record,
                )

    records = asyncio.run(main())
    write_probe(
        out_path,
        records,
        {
            "datasets": names,
            "sha256": [ds.sha256 for ds in loaded],
            "k": k,
            "temperature": temperature,
            "known_at": known_at,
            "rule": rule,
            "seed": seed,
            "model": model or url,
        },
    )
    out.print(
        f"{len(records)} questions: {known[0]} known, {len(records) - known[0]} unknown "
        f"-> {out_path}"
    )
