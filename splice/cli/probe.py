"""``splice probe``: the knowledge probe of the self-interrogation recipe."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import (
    RayOpt,
    ReplicaCpusOpt,
    ReplicaGpusOpt,
    ReplicasOpt,
    out,
    progress_bar,
    quiet,
    replica_pool,
    started_engine,
    untuned_base,
    vllm_config,
)

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
    ray: RayOpt = None,
    replicas: ReplicasOpt = 2,
    replica_cpus: ReplicaCpusOpt = 1,
    replica_gpus: ReplicaGpusOpt = 0,
) -> None:
    """Knowledge probe: label each question known or unknown to the model.

    Samples the model closed-book K times per question and grades each sample
    (the self-interrogation recipe). With --ray, questions are spread over
    --replicas engines."""

    from evals.datasets import load_dataset
    from training.probe import probe_questions, write_probe

    if rule not in ("greedy", "sampled"):
        raise typer.BadParameter(f"--rule must be greedy or sampled, not {rule!r}")
    if ray is not None:
        from splice.cluster import ray_module

        ray_module()  # a missing extra is named before anything slow
    quiet(False)
    if url is None and model is None:
        model = str(untuned_base())
    names = datasets or ["kb-train", "trivia-train"]
    loaded = [load_dataset(name).limit(limit) for name in names]
    items = [it for ds in loaded for it in ds.items]
    known = [0]

    options = {
        "k": k,
        "temperature": temperature,
        "seed": seed,
        "known_at": known_at,
        "rule": rule,
        "max_tokens": max_tokens,
    }

    async def main() -> list[Any]:
        with progress_bar() as progress:
            task = progress.add_task("probing", total=len(items))

            def on_record(rec: Any) -> None:
                known[0] += rec.label == "known"
                progress.update(task, advance=1, description=f"probing: {known[0]} known")

            if ray is None:
                async with started_engine(url, vllm_config(model)) as engine:
                    return await probe_questions(
                        engine, items, **options, concurrency=concurrency, on_record=on_record
                    )
            from functools import partial

            from splice.replicas import build_probe_worker

            build = partial(build_probe_worker, url, vllm_config(model), options)
            by_item: dict[int, Any] = {}  # the driver's own item objects, by identity
            # Each question is k + 1 requests: a replica keeps about --concurrency in flight.
            per_replica = max(1, concurrency // (k + 1))
            async with replica_pool(
                build, ray, replicas, per_replica, replica_cpus, replica_gpus
            ) as pool:

                def on_result(item: Any, rec: Any) -> None:
                    by_item[id(item)] = rec
                    on_record(rec)

                await pool.map(items, on_result)
            return [by_item[id(it)] for it in items]

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
