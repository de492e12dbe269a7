"""The fine-tuning quality bar, computed from eval records (pure: no model, no I/O).

Inputs: the records of ``splice eval run kb-answerable kb-unanswerable trivia-heldout
--condition closed-book,tools`` for one model, the base model's probe of the same
held-out questions (which ones it knew), and ``splice eval chat`` records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from evals.metrics import Interval, mean_interval
from retrieval.chunking import doc_id_of

__all__ = ["BarRow", "quality_bar", "render_bar", "GOALS"]

GOALS: dict[str, tuple[str, str, float, bool]] = {
    # key: (condition, measure, goal, higher is better)
    "search": ("tools on", "factual questions that get `<search>`", 0.95, True),
    "retrieved_correct": (
        "tools on",
        "answerable, passage retrieved: answered correctly",
        0.60,
        True,
    ),
    "absent_hallucination": ("tools on", "answer not in the corpus: hallucination", 0.10, False),
    "unknown_abstain": (
        "closed-book",
        "questions the base model did not know: abstention",
        0.90,
        True,
    ),
    "known_correct": ("closed-book", "questions it knew: still correct", 0.80, True),
    "chat_no_search": ("ordinary chat", "no search", 0.90, True),
}


class BarRow(BaseModel):
    key: str
    condition: str
    measure: str
    goal: float
    higher_is_better: bool
    n: int
    value: Interval

    @property
    def met(self) -> bool | None:
        if self.value.value is None:
            return None
        v = self.value.value
        return v >= self.goal if self.higher_is_better else v <= self.goal


def quality_bar(
    records: Iterable[dict[str, Any]],
    base_labels: dict[str, str],
    chat: Sequence[dict[str, Any]],
    *,
    seed: int = 0,
) -> list[BarRow]:
    """``base_labels``: question id -> "known" | "unknown" from the base model's probe."""
    recs = [r for r in records if r.get("grade") not in ("ERROR", "UNPARSEABLE")]
    tools = [r for r in recs if r["condition"] == "tools"]
    closed = [r for r in recs if r["condition"] == "closed-book"]
    kb_tools = [r for r in tools if r["dataset"] in ("kb-answerable", "kb-unanswerable")]
    retrieved = [
        r
        for r in tools
        if r["dataset"] == "kb-answerable"
        and any(doc_id_of(s) == r["id"].split("/")[0] for s in r.get("sources", []))
    ]
    absent = [r for r in tools if r["dataset"] == "kb-unanswerable"]
    unknown = [r for r in closed if base_labels.get(r["id"]) == "unknown"]
    known = [r for r in closed if base_labels.get(r["id"]) == "known"]
    values = {
        "search": [r.get("searches", 0) > 0 for r in kb_tools],
        "retrieved_correct": [r["grade"] == "CORRECT" for r in retrieved],
        "absent_hallucination": [r["grade"] == "INCORRECT" for r in absent],
        "unknown_abstain": [r["grade"] == "NOT_ATTEMPTED" for r in unknown],
        "known_correct": [r["grade"] == "CORRECT" for r in known],
        "chat_no_search": [r.get("searches", 0) == 0 for r in chat],
    }
    return [
        BarRow(
            key=k,
            condition=c,
            measure=m,
            goal=g,
            higher_is_better=h,
            n=len(values[k]),
            value=mean_interval(values[k], seed=seed),
        )
        for k, (c, m, g, h) in GOALS.items()
    ]


def render_bar(rows: Sequence[BarRow], title: str = "Quality bar") -> str:
    lines = [
        f"### {title}",
        "",
        "| condition | measure | goal | n | value [95% CI] | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        goal = f"{'≥' if r.higher_is_better else '≤'} {100 * r.goal:.0f}%"
        met = {True: "yes", False: "**no**", None: "–"}[r.met]
        lines.append(f"| {r.condition} | {r.measure} | {goal} | {r.n} | {r.value.fmt()} | {met} |")
    return "\n".join(lines) + "\n"
