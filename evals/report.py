"""Reports: ``report.md`` with tables, PNG plots, and two runs compared side by side."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

from .metrics import Interval, Summary, auroc, group_summaries, risk_coverage, score_key
from .records import read_records

__all__ = ["write_report", "write_summary", "compare_runs", "load_run"]


def load_run(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    records = read_records(run_dir / "records.jsonl")
    if not records:
        raise ConfigError(f"no records in {run_dir}: run `splice eval run ... --out {run_dir}`")
    mpath = run_dir / "manifest.json"
    manifest = json.loads(mpath.read_text()) if mpath.exists() else {}
    return records, manifest


def _save_summary(out_dir: Path, summaries: Sequence[Summary]) -> list[dict[str, Any]]:
    rows = [json.loads(s.model_dump_json()) for s in summaries]
    tmp = out_dir / "summary.json.tmp"
    tmp.write_text(json.dumps(rows, indent=2))
    tmp.replace(out_dir / "summary.json")
    return rows


def write_summary(out_dir: Path, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``summary.json``: metrics per (dataset, condition) with bootstrap intervals."""
    return _save_summary(out_dir, group_summaries(records))


def _row(s: Summary) -> str:
    tih = s.tool_induced_hallucination.fmt() if s.tool_induced_hallucination else "–"
    cells = [
        s.dataset,
        s.condition,
        str(s.n),
        s.correct.fmt(),
        s.incorrect.fmt(),
        s.not_attempted.fmt(),
        s.accuracy_given_attempted.fmt(),
        s.f_score.fmt(),
        s.s_050.fmt(),
        s.s_075.fmt(),
        s.abstention_recall.fmt() if s.unanswerable_n else "–",
        tih,
        f"{100 * s.search_call_rate:.0f}",
        f"{s.mean_turns:.2f}",
        f"{s.mean_tokens:.0f}",
        f"{s.mean_latency_s:.2f} / {s.p95_latency_s:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| dataset | condition | n | correct % | hallucinated % | abstained % | "
    "acc. given attempted % | F % | S(0.5) % | S(0.75) % | abstention recall % | "
    "tool-induced halluc. % | search % | turns | tokens | latency s (mean / p95) |\n"
    "|" + "---|" * 16
)


def _plot_bars(summaries: Sequence[Summary], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{s.dataset}\n{s.condition}" for s in summaries]
    c = [100 * (s.correct.value or 0) for s in summaries]
    i = [100 * (s.incorrect.value or 0) for s in summaries]
    a = [100 * (s.not_attempted.value or 0) for s in summaries]
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(labels)), 4.5))
    ax.bar(labels, c, color="#2e7d32", label="correct")
    ax.bar(labels, i, bottom=c, color="#c62828", label="hallucinated")
    ax.bar(labels, a, bottom=[x + y for x, y in zip(c, i)], color="#9e9e9e", label="abstained")
    ax.set_ylabel("% of questions")
    ax.set_ylim(0, 100)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Correct, hallucinated and abstained, per condition")
    plt.xticks(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_risk_coverage(groups: dict[tuple[str, str], list[dict[str, Any]]], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    drawn = False
    for (ds, cond), recs in sorted(groups.items()):
        pts = risk_coverage(recs)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"{ds} / {cond}")
            drawn = True
    ax.set_xlabel("coverage (answers kept, most confident first)")
    ax.set_ylabel("risk (share of kept answers that are wrong)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    key = score_key([r for recs in groups.values() for r in recs])
    name = "self-agreement confidence" if key == "confidence" else "mean token logprob"
    ax.set_title(f"Risk-coverage by {name}")
    if drawn:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def write_report(run_dir: Path) -> Path:
    """``report.md``, the PNG plots and ``summary.json``, from one computation."""
    records, manifest = load_run(run_dir)
    summaries = group_summaries(records)
    _save_summary(run_dir, summaries)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["condition"]), []).append(r)
    _plot_bars(summaries, run_dir / "grades.png")
    has_rc = _plot_risk_coverage(groups, run_dir / "risk_coverage.png")
    cfg = manifest.get("config", {})
    lines = [
        f"# Eval report: {run_dir.name}",
        "",
        f"- model: `{manifest.get('model', '?')}`, protocol `{cfg.get('protocol', '?')}`, "
        f"grader `{cfg.get('grader', '?')}`, seed {cfg.get('seed', '?')}, "
        f"temperature {cfg.get('temperature', '?')}"
        + (", search prefilled" if cfg.get("search_first") else ""),
        f"- index: `{cfg.get('index') or 'built-in knowledge base'}`; git commit "
        f"`{manifest.get('git_commit', '')[:12]}`",
        f"- records: {len(records)}; started {manifest.get('started', '?')}",
        "",
        "Percentages with 95% bootstrap intervals (1,000 resamples). Hallucinated = "
        "INCORRECT; abstained = NOT_ATTEMPTED.",
        "",
        HEADER,
        *(_row(s) for s in summaries),
        "",
    ]
    odd = [s for s in summaries if s.unparseable or s.errors]
    if odd:
        lines += [
            "Not graded: "
            + "; ".join(
                f"{s.dataset}/{s.condition}: {s.unparseable} "
                f"unparseable judge replies, {s.errors} errors"
                for s in odd
            ),
            "",
        ]
    lines += ["![grades](grades.png)", ""]
    if has_rc:
        key = score_key(records)
        name = "self-agreement confidence" if key == "confidence" else "mean token logprob"
        lines += [f"Confidence score: {name}. AUROC, correct vs hallucinated answers:", ""]
        lines += ["| dataset | condition | AUROC |", "|---|---|---|"]
        for (ds, cond), recs in sorted(groups.items()):
            a = auroc(recs, key)
            lines.append(f"| {ds} | {cond} | {'–' if a is None else f'{a:.3f}'} |")
        lines += ["", "![risk-coverage](risk_coverage.png)", ""]
    out = run_dir / "report.md"
    out.write_text("\n".join(lines))
    return out


def _delta(a: Interval, b: Interval) -> str:
    if a.value is None or b.value is None:
        return "–"
    return f"{100 * (b.value - a.value):+.1f}"


def compare_runs(run_a: Path, run_b: Path) -> str:
    """Markdown: each (dataset, condition) in both runs, A, B and B − A."""
    sa = {(s.dataset, s.condition): s for s in group_summaries(load_run(run_a)[0])}
    sb = {(s.dataset, s.condition): s for s in group_summaries(load_run(run_b)[0])}
    keys = sorted(set(sa) & set(sb))
    if not keys:
        raise ConfigError(f"{run_a} and {run_b} share no dataset and condition to compare")
    lines = [
        f"# {run_a.name} (A) vs {run_b.name} (B)",
        "",
        "| dataset | condition | metric | A | B | B − A (points) |",
        "|---|---|---|---|---|---|",
    ]
    for key in keys:
        a, b = sa[key], sb[key]
        for label, field in (
            ("correct %", "correct"),
            ("hallucinated %", "incorrect"),
            ("abstained %", "not_attempted"),
            ("acc. given attempted %", "accuracy_given_attempted"),
            ("S(0.75) %", "s_075"),
            ("abstention recall %", "abstention_recall"),
        ):
            ia, ib = getattr(a, field), getattr(b, field)
            if ia.value is None and ib.value is None:
                continue
            lines.append(
                f"| {key[0]} | {key[1]} | {label} | {ia.fmt()} | {ib.fmt()} | {_delta(ia, ib)} |"
            )
        lines.append(
            f"| {key[0]} | {key[1]} | search % | {100 * a.search_call_rate:.0f} | "
            f"{100 * b.search_call_rate:.0f} | "
            f"{100 * (b.search_call_rate - a.search_call_rate):+.0f} |"
        )
    return "\n".join(lines) + "\n"
