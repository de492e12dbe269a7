"""What every ``splice`` subcommand module shares: consoles and small helpers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console

__all__ = ["err", "out", "quiet_vllm", "print_report"]

err = Console(stderr=True)
out = Console()


def quiet_vllm(verbose: bool) -> None:
    # stdout is for answers (and --json); vLLM logs to stdout by default.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    # vLLM logs every step at INFO; users of `ask` want the answer, not the logs.
    if not verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def print_report(report: Any, out_path: Path | None) -> None:
    """A benchmark's table on stdout and, if asked, its figures as JSON."""
    out.print(report.table())
    if out_path:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(report.model_dump_json(indent=2))
        err.print(f"wrote {out_path}")
