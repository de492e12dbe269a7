"""Metrics over graded records (docs/design.md, "Metrics"), with bootstrap intervals.

Pure: records in, numbers out. A record is a dict with at least ``grade``
(CORRECT / INCORRECT / NOT_ATTEMPTED, or UNPARSEABLE from the judge, which is
counted apart and never folded into the three) and ``answerable``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from agent.confidence import SCORES

__all__ = [
    "Interval",
    "Summary",
    "summarize",
    "group_summaries",
    "tool_induced_hallucination",
    "rates",
    "risk_coverage",
    "auroc",
    "Threshold",
    "at_threshold",
    "withhold_below",
    "with_score",
    "choose_threshold",
    "cohen_kappa",
    "mean_interval",
    "delta_interval",
    "Agreement",
    "grader_agreement",
]

GRADES = ("CORRECT", "INCORRECT", "NOT_ATTEMPTED")


class Interval(BaseModel):
    value: float | None
    low: float | None = None
    high: float | None = None

    def fmt(self, pct: bool = True) -> str:
        if self.value is None:
            return "–"
        f = (lambda x: f"{100 * x:.1f}") if pct else (lambda x: f"{x:.3f}")
        if self.low is None or self.high is None:
            return f(self.value)
        return f"{f(self.value)} [{f(self.low)}, {f(self.high)}]"


class Summary(BaseModel):
    dataset: str
    condition: str
    n: int
    unparseable: int = 0
    errors: int = 0
    correct: Interval
    incorrect: Interval
    not_attempted: Interval
    accuracy_given_attempted: Interval
    f_score: Interval
    s_050: Interval
    s_075: Interval
    unanswerable_n: int = 0
    abstention_recall: Interval
    false_answer_rate: Interval
    tool_induced_hallucination: Interval | None = None
    search_call_rate: float
    mean_turns: float
    mean_tokens: float
    mean_latency_s: float
    p95_latency_s: float


def rates(grades: np.ndarray) -> dict[str, float | None]:
    """grades: int array, 0=correct 1=incorrect 2=not attempted."""
    n = len(grades)
    if n == 0:
        return {k: None for k in ("c", "i", "a", "acc", "f", "s50", "s75")}
    c, i, a = (float(np.mean(grades == k)) for k in range(3))
    acc = c / (c + i) if c + i > 0 else None
    f = 2 * c * acc / (c + acc) if acc is not None and c + acc > 0 else 0.0
    return {"c": c, "i": i, "a": a, "acc": acc, "f": f, "s50": c - i * 1.0, "s75": c - i * 3.0}


def _bootstrap(
    values: np.ndarray,
    stat: Callable[[np.ndarray], float | None],
    rounds: int,
    rng: np.random.Generator,
) -> tuple[float | None, float | None]:
    if len(values) == 0:
        return None, None
    samples = []
    for _ in range(rounds):
        s = stat(values[rng.integers(0, len(values), len(values))])
        if s is not None:
            samples.append(s)
    if not samples:
        return None, None
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return float(lo), float(hi)


def _interval(values: np.ndarray, key: str, rounds: int, seed: int) -> Interval:
    stat = lambda v: rates(v)[key]  # noqa: E731
    point = stat(values)
    lo, hi = _bootstrap(values, stat, rounds, np.random.default_rng(seed))
    return Interval(value=point, low=lo, high=hi)


def mean_interval(
    values: Sequence[float] | np.ndarray, *, rounds: int = 1000, seed: int = 0
) -> Interval:
    """A share (mean of 0/1 values) with its 95% bootstrap interval."""
    x = np.asarray(values, float)
    if len(x) == 0:
        return Interval(value=None)
    lo, hi = _bootstrap(x, lambda v: float(np.mean(v)), rounds, np.random.default_rng(seed))
    return Interval(value=float(np.mean(x)), low=lo, high=hi)


def delta_interval(
    a: np.ndarray, b: np.ndarray, key: str, *, paired: bool, rounds: int = 1000, seed: int = 0
) -> Interval:
    """B − A of one rate (a key of :func:`rates`), with a 95% bootstrap interval.

    ``paired``: a[i] and b[i] grade the same question, so both are resampled with
    the same indices (a much narrower interval when most answers do not change)."""
    stat = lambda v: rates(v)[key]  # noqa: E731
    pa, pb = stat(a), stat(b)
    if pa is None or pb is None:
        return Interval(value=None)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(rounds):
        ia = rng.integers(0, len(a), len(a))
        ib = ia if paired else rng.integers(0, len(b), len(b))
        sa, sb = stat(a[ia]), stat(b[ib])
        if sa is not None and sb is not None:
            samples.append(sb - sa)
    lo, hi = np.percentile(samples, [2.5, 97.5]) if samples else (None, None)
    return Interval(value=pb - pa, low=lo, high=hi)


def _codes(records: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.array([GRADES.index(r["grade"]) for r in records if r["grade"] in GRADES], int)


def summarize(
    records: Sequence[dict[str, Any]],
    dataset: str,
    condition: str,
    *,
    rounds: int = 1000,
    seed: int = 0,
) -> Summary:
    graded = [r for r in records if r["grade"] in GRADES]
    codes = _codes(graded)
    unans = _codes([r for r in graded if not r.get("answerable", True)])
    # Abstention recall: share of unanswerable items not attempted (code 2).
    abst = (unans == 2).astype(float)

    def mean_ci(x: np.ndarray) -> Interval:
        return mean_interval(x, rounds=rounds, seed=seed)

    lat = np.array([r.get("latency_s", 0.0) for r in records], float)
    return Summary(
        dataset=dataset,
        condition=condition,
        n=len(graded),
        unparseable=sum(r["grade"] == "UNPARSEABLE" for r in records),
        errors=sum(r["grade"] == "ERROR" for r in records),
        correct=_interval(codes, "c", rounds, seed),
        incorrect=_interval(codes, "i", rounds, seed),
        not_attempted=_interval(codes, "a", rounds, seed),
        accuracy_given_attempted=_interval(codes, "acc", rounds, seed),
        f_score=_interval(codes, "f", rounds, seed),
        s_050=_interval(codes, "s50", rounds, seed),
        s_075=_interval(codes, "s75", rounds, seed),
        unanswerable_n=len(unans),
        abstention_recall=mean_ci(abst),
        false_answer_rate=mean_ci(1.0 - abst),
        search_call_rate=float(np.mean([r.get("searches", 0) > 0 for r in records]))
        if records
        else 0.0,
        mean_turns=float(np.mean([r.get("turns", 0) for r in records])) if records else 0.0,
        mean_tokens=float(np.mean([r.get("tokens", 0) for r in records])) if records else 0.0,
        mean_latency_s=float(lat.mean()) if len(lat) else 0.0,
        p95_latency_s=float(np.percentile(lat, 95)) if len(lat) else 0.0,
    )


def tool_induced_hallucination(
    closed: Iterable[dict[str, Any]],
    tools: Iterable[dict[str, Any]],
    *,
    rounds: int = 1000,
    seed: int = 0,
) -> Interval:
    """Share of questions right or abstained closed-book but wrong with tools (paired by id)."""
    before = {r["id"]: r["grade"] for r in closed if r["grade"] in GRADES}
    flags = [
        float(before[r["id"]] in ("CORRECT", "NOT_ATTEMPTED") and r["grade"] == "INCORRECT")
        for r in tools
        if r["grade"] in GRADES and r["id"] in before
    ]
    x = np.array(flags, float)
    if len(x) == 0:
        return Interval(value=None)
    lo, hi = _bootstrap(x, lambda v: float(np.mean(v)), rounds, np.random.default_rng(seed))
    return Interval(value=float(np.mean(x)), low=lo, high=hi)


def group_summaries(
    records: Sequence[dict[str, Any]], *, rounds: int = 1000, seed: int = 0
) -> list[Summary]:
    """One summary per (dataset, condition), with tool-induced hallucination set on each
    tool-using condition that has a closed-book twin."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["condition"]), []).append(r)
    out = []
    for (ds, cond), recs in sorted(groups.items()):
        s = summarize(recs, ds, cond, rounds=rounds, seed=seed)
        if cond != "closed-book" and (ds, "closed-book") in groups:
            s.tool_induced_hallucination = tool_induced_hallucination(
                groups[(ds, "closed-book")], recs, rounds=rounds, seed=seed
            )
        out.append(s)
    return out


def score_key(records: Sequence[dict[str, Any]]) -> str:
    """The confidence score a run carries: self-agreement when it was measured, else
    the mean token logprob."""
    return (
        "confidence"
        if any(r.get("confidence") is not None for r in records)
        else ("answer_logprob")
    )


def _attempted(records: Sequence[dict[str, Any]], key: str) -> list[tuple[float, str]]:
    """(score, grade) of answers the model committed to (before any withholding)."""
    out = []
    for r in records:
        grade = r.get("withheld_grade") or r["grade"]
        if r.get(key) is not None and grade in ("CORRECT", "INCORRECT"):
            out.append((float(r[key]), grade))
    return out


def auroc(records: Sequence[dict[str, Any]], key: str | None = None) -> float | None:
    """How well the score ranks correct answers above hallucinated ones (0.5 = chance;
    ties count half). None without both kinds."""
    scored = _attempted(records, key or score_key(records))
    pos = [s for s, g in scored if g == "CORRECT"]
    neg = [s for s, g in scored if g == "INCORRECT"]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


class Threshold(BaseModel):
    threshold: float
    correct: float
    hallucinated: float
    abstained: float
    n: int


def with_score(records: Sequence[dict[str, Any]], score: str) -> list[dict[str, Any]]:
    """The records with ``score`` set to the named confidence: ``agreement`` (the
    recorded self-agreement) or ``logprob`` (exp of the mean token logprob, the
    sampled ids' geometric-mean probability, as the agent computes it)."""
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}: {' or '.join(SCORES)}")
    out = []
    for r in records:
        lp = r.get("answer_logprob")
        value = (
            r.get("confidence") if score == "agreement" else (None if lp is None else math.exp(lp))
        )
        out.append({**r, "score": value})
    return out


def withhold_below(
    records: Sequence[dict[str, Any]], threshold: float, key: str = "confidence"
) -> list[dict[str, Any]]:
    """The records as ``abstain_below=threshold`` would have left them: an answer
    scored under it becomes an abstention, its own grade kept as ``withheld_grade``
    (and one withheld at a higher threshold comes back). Unscored answers stay."""
    out = []
    for r in records:
        grade = r.get("withheld_grade") or r["grade"]
        score = r.get(key)
        if grade not in ("CORRECT", "INCORRECT") or score is None:
            out.append(r)
        elif float(score) < threshold:
            out.append({**r, "grade": "NOT_ATTEMPTED", "withheld_grade": grade})
        else:
            out.append({k: v for k, v in r.items() if k != "withheld_grade"} | {"grade": grade})
    return out


def at_threshold(
    records: Sequence[dict[str, Any]], threshold: float, key: str = "confidence"
) -> Threshold | None:
    """The rates had ``abstain_below=threshold`` been set; None without graded records."""
    graded = [r["grade"] for r in withhold_below(records, threshold, key) if r["grade"] in GRADES]
    if not graded:
        return None
    n = len(graded)
    right, wrong = graded.count("CORRECT"), graded.count("INCORRECT")
    return Threshold(
        threshold=threshold,
        correct=right / n,
        hallucinated=wrong / n,
        abstained=1 - (right + wrong) / n,
        n=n,
    )


def choose_threshold(
    records: Sequence[dict[str, Any]], target: float, key: str = "confidence"
) -> Threshold | None:
    """The lowest ``abstain_below`` threshold whose hallucination rate, over all graded
    records, is at most ``target`` (an answer below it becomes an abstention). The
    lowest such threshold keeps the most correct answers. None when none reaches it."""
    candidates = sorted({0.0, *(s for s, _ in _attempted(records, key)), 1.01})

    def reaches(t: float) -> bool:
        rates = at_threshold(records, t, key)
        return rates is not None and rates.hallucinated <= target

    # A higher threshold only withholds more, so the rate never rises: bisect rather
    # than rescore the records at every distinct score (one per record for logprob).
    i = bisect.bisect_left(candidates, True, key=reaches)
    return at_threshold(records, candidates[i], key) if i < len(candidates) else None


def risk_coverage(
    records: Sequence[dict[str, Any]], key: str | None = None
) -> list[tuple[float, float]]:
    """(coverage, risk) points: attempted answers sorted by the run's confidence score
    (:func:`score_key`), most confident first; risk = share wrong among those kept."""
    scored = _attempted(records, key or score_key(records))
    scored.sort(key=lambda x: -x[0])
    total = len([r for r in records if r["grade"] in GRADES])
    points, wrong = [], 0
    for k, (_, g) in enumerate(scored, 1):
        wrong += g == "INCORRECT"
        points.append((k / total, wrong / k))
    return points


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> tuple[float, float]:
    """(observed agreement, Cohen's kappa) of two graders over the same items."""
    if not a or len(a) != len(b):
        raise ValueError("need two equally long, non-empty lists of grades")
    labels = sorted(set(a) | set(b))
    n = len(a)
    po = sum(x == y for x, y in zip(a, b)) / n
    pe = sum((a.count(lab) / n) * (b.count(lab) / n) for lab in labels)
    kappa = 1.0 if pe == 1 else (po - pe) / (1 - pe)
    return po, kappa


class Agreement(BaseModel):
    """The rule grader against the LLM judge over the records both graded."""

    n: int
    matrix: dict[str, dict[str, int]]
    """rule grade → judge grade → count."""
    observed: float
    kappa: float
    unparseable: int


def grader_agreement(records: Sequence[dict[str, Any]]) -> Agreement | None:
    """None when no record carries both a rule and a judge grade."""
    pairs = [
        (r["rule_grade"], r["judge_grade"])
        for r in records
        if r.get("rule_grade") in GRADES and r.get("judge_grade") in GRADES
    ]
    if not pairs:
        return None
    po, kappa = cohen_kappa([a for a, _ in pairs], [b for _, b in pairs])
    matrix = {g: {h: sum(1 for a, b in pairs if a == g and b == h) for h in GRADES} for g in GRADES}
    unparseable = sum(r.get("judge_grade") == "UNPARSEABLE" for r in records)
    return Agreement(n=len(pairs), matrix=matrix, observed=po, kappa=kappa, unparseable=unparseable)
