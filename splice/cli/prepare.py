"""``splice prepare``: the default model and the built-in knowledge-base index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import err, out

__all__ = ["prepare"]

STAGES = [
    "verifying cache",
    "reading tokenizer",
    "dequantizing GGUF weights",
    "adding tool-call tokens",
    "saving safetensors",
    "merging the fine-tuned adapter",
    "hashing files",
]


def prepare(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if up to date.")] = False,
    no_index: Annotated[
        bool, typer.Option("--no-index", help="Skip the built-in knowledge-base index.")
    ] = False,
    home: Annotated[
        Optional[Path], typer.Option("--home", help="Cache directory (env SPLICE_HOME).")
    ] = None,
    adapter: Annotated[
        Optional[str],
        typer.Option(
            help="LoRA adapter directory to merge (default: the shipped fine-tuned adapter, "
            "training/adapter); 'none' = the untuned model."
        ),
    ] = None,
) -> None:
    """Build the default model and the knowledge-base index under SPLICE_HOME.

    The model is SmolLM2-135M-Instruct with the tool-call tokens added and the
    fine-tuned adapter merged in."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from serving.environment import offline_hub
    from splice.defaults import ensure_kb_index, prepare_default

    offline_hub()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        *Progress.get_default_columns()[1:3],
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("prepare", total=len(STAGES))

        def on_step(name: str) -> None:
            done = STAGES.index(name) if name in STAGES else 0
            progress.update(task, completed=done, description=name)

        chosen: Any = (
            "shipped" if adapter is None else (None if adapter == "none" else Path(adapter))
        )
        result = prepare_default(
            home, force=force, adapter=chosen, on_step=on_step, on_notice=err.print
        )
        progress.update(task, completed=len(STAGES))
    state = "built" if result.built else "up to date"
    ids = ", ".join(f"{t}={i}" for t, i in result.manifest.special_tokens.items())
    tuned = (
        f"fine-tuned adapter {result.manifest.adapter}" if result.manifest.adapter else "untuned"
    )
    out.print(f"[green]model {state}[/green] ({tuned}): {result.path}")
    out.print(f"base model: {result.base}")
    out.print(f"tool tokens: {ids}")
    if not no_index:
        with err.status("building the knowledge-base index…") as status:
            path, built = ensure_kb_index(home, on_stage=lambda s: status.update(s + "…"))
        out.print(f"[green]knowledge base {'built' if built else 'up to date'}[/green]: {path}")
