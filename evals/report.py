"""Reports: ``report.md`` with tables, PNG plots, and two runs compared side by side."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import ConfigError

from .metrics import (
    GRADES,
    Interval,
    Summary,
    auroc,
    delta_interval,
    group_summaries,
    risk_coverage,
    score_key,
)
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


def _plot_risk_coverage(
    groups: dict[tuple[str, str], list[dict[str, Any]]], path: Path
) -> list[str]:
    """Draw one curve per (dataset, condition); return the legend's labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for (ds, cond), recs in sorted(groups.items()):
        pts = risk_coverage(recs)
        if pts:  # markers when there are few answers, so two points do not pass for a curve
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o" if len(pts) < 30 else None,
                markersize=3,
                label=f"{ds} / {cond} ({len(pts)} answered)",
            )
        else:  # every question abstained: say so instead of dropping the condition
            ax.plot([], [], linestyle="none", label=f"{ds} / {cond}: no answer attempted")
    ax.set_xlabel("coverage (answers kept, most confident first)")
    ax.set_ylabel("risk (share of kept answers that are wrong)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    key = score_key([r for recs in groups.values() for r in recs])
    name = "self-agreement confidence" if key == "confidence" else "mean token logprob"
    ax.set_title(f"Risk-coverage by {name}")
    labels = [str(line.get_label()) for line in ax.get_lines()]
    if labels:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return labels


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


# (label, key of metrics.rates, the Summary field holding it with its interval)
_COMPARED = (
    ("correct %", "c", "correct"),
    ("hallucinated %", "i", "incorrect"),
    ("abstained %", "a", "not_attempted"),
    ("acc. given attempted %", "acc", "accuracy_given_attempted"),
    ("S(0.75) %", "s75", "s_075"),
)


def _by_group(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, str]]:
    """(dataset, condition) → question id → grade, graded records only."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for r in records:
        if r["grade"] in GRADES:
            out.setdefault((r["dataset"], r["condition"]), {})[str(r["id"])] = r["grade"]
    return out


def _settings_diff(ma: dict[str, Any], mb: dict[str, Any]) -> list[str]:
    ca, cb = ma.get("config", {}), mb.get("config", {})
    rows = [
        f"| {k} | {ca.get(k)} | {cb.get(k)} |"
        for k in sorted(set(ca) | set(cb))
        # The manifest's model is the resolved one; the config's is None for the default.
        if k not in ("datasets", "conditions", "model") and ca.get(k) != cb.get(k)
    ]
    if ma.get("model") != mb.get("model"):
        rows.insert(0, f"| model | {ma.get('model')} | {mb.get('model')} |")
    return rows


def compare_runs(run_a: Path, run_b: Path, *, changed: int = 10) -> str:
    """Markdown: for each (dataset, condition) in both runs, A, B and B − A with a
    95% bootstrap interval (paired when both graded the same questions), then the
    settings that differ and the questions whose grade changed."""
    ra, ma = load_run(run_a)
    rb, mb = load_run(run_b)
    ga, gb = _by_group(ra), _by_group(rb)
    sa = {(s.dataset, s.condition): s for s in group_summaries(ra)}
    sb = {(s.dataset, s.condition): s for s in group_summaries(rb)}
    keys = sorted(set(ga) & set(gb))
    if not keys:
        raise ConfigError(f"{run_a} and {run_b} share no dataset and condition to compare")
    lines = [
        f"# {run_a.name} (A) vs {run_b.name} (B)",
        "",
        "| dataset | condition | metric | A | B | B − A (points) |",
        "|---|---|---|---|---|---|",
    ]
    flips: list[str] = []
    for key in keys:
        qa, qb = ga[key], gb[key]
        paired = set(qa) == set(qb)
        ids = sorted(qa) if paired else []
        order_a = ids if paired else list(qa)
        order_b = ids if paired else list(qb)
        ca = np.array([GRADES.index(qa[q]) for q in order_a], int)
        cb = np.array([GRADES.index(qb[q]) for q in order_b], int)
        for label, stat, field in _COMPARED:
            d = delta_interval(ca, cb, stat, paired=paired)
            if d.value is None:
                continue
            ia, ib = getattr(sa[key], field), getattr(sb[key], field)
            lines.append(
                f"| {key[0]} | {key[1]} | {label} | {ia.fmt()} | {ib.fmt()} | {_signed(d)} |"
            )
        a, b = sa[key], sb[key]
        lines.append(
            f"| {key[0]} | {key[1]} | search % | {100 * a.search_call_rate:.0f} | "
            f"{100 * b.search_call_rate:.0f} | "
            f"{100 * (b.search_call_rate - a.search_call_rate):+.0f} |"
        )
        if paired:
            moved = [(q, qa[q], qb[q]) for q in ids if qa[q] != qb[q]]
            counts: dict[tuple[str, str], int] = {}
            for _, x, y in moved:
                counts[(x, y)] = counts.get((x, y), 0) + 1
            summary = ", ".join(f"{x} → {y}: {n}" for (x, y), n in sorted(counts.items()))
            flips.append(
                f"- **{key[0]} / {key[1]}**: {len(moved)} of {len(ids)} changed"
                + (f" ({summary})" if summary else "")
            )
            flips += [f"  - `{q}`: {x} → {y}" for q, x, y in moved[:changed]]
            if len(moved) > changed:
                flips.append(f"  - … {len(moved) - changed} more")
        else:
            flips.append(
                f"- **{key[0]} / {key[1]}**: the runs graded different questions "
                "(intervals are unpaired)"
            )
    settings = _settings_diff(ma, mb)
    lines += ["", "## Settings that differ", ""]
    lines += ["| setting | A | B |", "|---|---|---|", *settings] if settings else ["None."]
    lines += ["", "## Questions whose grade changed", "", *flips]
    return "\n".join(lines) + "\n"


def _signed(d: Interval) -> str:
    assert d.value is not None
    text = f"{100 * d.value:+.1f}"
    if d.low is not None and d.high is not None:
        text += f" [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
    return text
