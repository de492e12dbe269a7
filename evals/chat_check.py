"""The chat check: ordinary prompts with tools on. A model that searches for "write
a haiku" has learned to search, not when to."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.sdk import Agent
from agent.trace import ToolCallStep

from .metrics import Interval, mean_interval

__all__ = ["check_chat", "write_rows"]


async def check_chat(agent: Agent, prompts: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    """One row per prompt: its answer and how many searches it made."""
    answers = await agent.aask_many([p["prompt"] for p in prompts])
    return [
        {
            "id": p["id"],
            "prompt": p["prompt"],
            "answer": a.text,
            "searches": sum(isinstance(s, ToolCallStep) for s in a.trace),
        }
        for p, a in zip(prompts, answers)
    ]


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> Interval:
    """Write the rows as JSONL; return the share answered without a search."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return mean_interval([r["searches"] == 0 for r in rows])
