"""Grading, metrics and dataset loading: pure logic, hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evals.datasets import DatasetError, load_dataset
from evals.grading import Grade, grade_answer, is_abstention, normalize, parse_number
from evals.judge import parse_judge_reply
from evals.metrics import cohen_kappa, group_summaries, rates, risk_coverage, summarize

C, I, N = Grade.CORRECT, Grade.INCORRECT, Grade.NOT_ATTEMPTED  # noqa: E741


@pytest.mark.parametrize(
    "answer, golds, want",
    [
        ("Paris", ["Paris"], C),
        ("It is Paris.", ["Paris"], C),
        ("the city of Paris, France", ["Paris"], C),
        ("Lyon", ["Paris"], I),
        ("van Rossum", ["Guido van Rossum"], C),
        ("Guido", ["Guido van Rossum"], I),  # too small a part of the gold
        ("NYC", ["New York City", "NYC"], C),  # an alias
        ("Paris or Lyon", ["Paris"], N),  # a hedge naming candidates
        ("either 1912 or 1913", ["1912"], N),
        ("Trinidad and Tobago", ["Trinidad and Tobago"], C),
        ("I don't know", ["Paris"], N),
        ("I'm not sure.", ["Paris"], N),
        ("", ["Paris"], N),
        ("The text does not contain the answer.", ["Paris"], N),
        ("1869", ["1869"], C),
        ("in 1869", ["1869"], C),
        ("1868", ["1869"], I),
        ("about 8,849 metres", ["8,849 metres"], C),
        ("8850 m", ["8,849 metres"], I),
        ("2.1 million", ["2 million"], C),
        ("2,000,000 people", ["2 million"], C),
        ("3 million", ["2 million"], I),
        ("two", ["2"], C),
        ("It has 2 humps.", ["two"], C),
    ],
)
def test_rule_grader(answer: str, golds: list[str], want: Grade) -> None:
    assert grade_answer(answer, golds) is want


def test_acceptable_range_and_unanswerable() -> None:
    assert grade_answer("about 340 m/s", ["343"], acceptable_range=(330, 350)) is C
    assert grade_answer("300", ["343"], acceptable_range=(330, 350)) is I
    assert grade_answer("Berlin", [], answerable=False) is I
    assert grade_answer("I don't know", [], answerable=False) is N


def test_normalize_and_numbers() -> None:
    assert normalize("The  Eiffel-Tower!") == "eiffeltower"
    assert parse_number("8,849 metres") == (8849.0, 0.5)
    assert parse_number("2.5 million") == (2_500_000.0, 50_000.0)
    assert is_abstention("I do not know.") and not is_abstention("Paris")


def test_judge_reply_parsing() -> None:
    assert parse_judge_reply("A") == "CORRECT"
    # Negation: the word "correct" in "not correct" is not a CORRECT grade.
    for negated in (
        "The answer is not correct.",
        "It isn't correct",
        "never CORRECT",
        "not really correct",
    ):
        assert parse_judge_reply(negated) == "UNPARSEABLE", negated
    assert parse_judge_reply("B) not correct") == "INCORRECT"
    assert parse_judge_reply("not attempted") == "NOT_ATTEMPTED"
    assert parse_judge_reply("correct or incorrect") == "UNPARSEABLE"
    assert parse_judge_reply(" B) INCORRECT") == "INCORRECT"
    assert parse_judge_reply("NOT_ATTEMPTED") == "NOT_ATTEMPTED"
    assert parse_judge_reply("The answer seems fine to me") == "UNPARSEABLE"


def _recs(grades: str, answerable: bool = True, **extra) -> list[dict]:
    code = {"c": "CORRECT", "i": "INCORRECT", "a": "NOT_ATTEMPTED", "u": "UNPARSEABLE"}
    return [
        {
            "id": f"q{n}",
            "grade": code[g],
            "answerable": answerable,
            "dataset": "d",
            "condition": "closed-book",
            **extra,
        }
        for n, g in enumerate(grades)
    ]


def test_metric_math_by_hand() -> None:
    # 6 correct, 2 incorrect, 2 not attempted out of 10.
    r = rates(np.array([0] * 6 + [1] * 2 + [2] * 2))
    assert (r["c"], r["i"], r["a"]) == (0.6, 0.2, 0.2)
    assert r["acc"] == pytest.approx(0.75)
    assert r["f"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert r["s50"] == pytest.approx(0.6 - 0.2)
    assert r["s75"] == pytest.approx(0.6 - 0.6)
    s = summarize(_recs("ccccccii" + "aa" + "u"), "d", "closed-book", rounds=200)
    assert s.n == 10 and s.unparseable == 1
    assert s.correct.value == pytest.approx(0.6)
    assert s.correct.low <= 0.6 <= s.correct.high and s.correct.low < s.correct.high


def test_abstention_recall_and_tool_induced_hallucination() -> None:
    closed = _recs("ca", answerable=True) + [
        {
            "id": "u1",
            "grade": "NOT_ATTEMPTED",
            "answerable": False,
            "dataset": "d",
            "condition": "closed-book",
        }
    ]
    tools = [dict(r, condition="tools") for r in closed]
    tools[0]["grade"] = "INCORRECT"  # was correct closed-book: tool-induced
    tools[1]["grade"] = "INCORRECT"  # was abstained closed-book: tool-induced
    summaries = {s.condition: s for s in group_summaries(closed + tools, rounds=100)}
    assert summaries["closed-book"].abstention_recall.value == 1.0
    assert summaries["tools"].tool_induced_hallucination.value == pytest.approx(2 / 3)
    assert summaries["closed-book"].tool_induced_hallucination is None


def test_risk_coverage_and_kappa() -> None:
    recs = [
        {"grade": "CORRECT", "answer_logprob": -0.1},
        {"grade": "INCORRECT", "answer_logprob": -2.0},
        {"grade": "CORRECT", "answer_logprob": -0.5},
        {"grade": "NOT_ATTEMPTED", "answer_logprob": -1},
    ]
    assert risk_coverage(recs) == [(0.25, 0.0), (0.5, 0.0), (0.75, 1 / 3)]
    po, kappa = cohen_kappa(["C", "C", "I", "N"], ["C", "C", "I", "N"])
    assert (po, kappa) == (1.0, 1.0)
    po, kappa = cohen_kappa(["C", "I", "C", "I"], ["C", "C", "I", "I"])
    assert po == 0.5 and kappa == pytest.approx(0.0)


def test_generic_and_named_datasets(tmp_path: Path) -> None:
    (tmp_path / "g.jsonl").write_text(
        json.dumps({"id": 1, "question": "Capital of France?", "answers": ["Paris"]})
        + "\n"
        + json.dumps({"query": "Who is Zorblat?", "answerable": False})
        + "\n"
        + json.dumps(
            {"problem": "Speed of sound?", "answer": "343", "acceptable_range": [330, 350]}
        )
        + "\n"
    )
    ds = load_dataset(str(tmp_path / "g.jsonl"))
    assert [i.answerable for i in ds.items] == [True, False, True]
    assert ds.items[2].acceptable_range == (330.0, 350.0) and ds.items[0].id == "1"
    (tmp_path / "s.csv").write_text(
        'metadata,problem,answer\n"{}","Who wrote Hamlet?",Shakespeare\n'
    )
    assert load_dataset(f"simpleqa:{tmp_path / 's.csv'}").items[0].answers == ["Shakespeare"]
    (tmp_path / "p.tsv").write_text('id\tquestion\tpossible_answers\n7\tQ?\t["A", "B"]\n')
    assert load_dataset(f"popqa:{tmp_path / 'p.tsv'}").items[0].answers == ["A", "B"]
    (tmp_path / "sa.json").write_text(
        json.dumps(
            {
                "example": [
                    {"question_id": 1, "question": "Why?", "answer": None, "answerable": False}
                ]
            }
        )
    )
    assert not load_dataset(f"selfaware:{tmp_path / 'sa.json'}").items[0].answerable
    held = load_dataset("kb-unanswerable")
    assert held.items and not any(i.answerable for i in held.items)


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"question": "Q?", "answers": ["A"]}\n{broken\n', r"d\.jsonl:2: not valid JSON"),
        ('{"question": "Q?"}\n', r"d\.jsonl:1: no gold answer"),
        ('{"answers": ["A"]}\n', r"d\.jsonl:1: no question"),
        ('{"question": "Q?", "answers": ["A"], "answerable": "maybe"}\n', "answerable"),
        (
            '{"id": 1, "question": "Q?", "answers": ["A"]}\n'
            '{"id": 1, "question": "R?", "answers": ["B"]}\n',
            "duplicate id",
        ),
    ],
)
def test_malformed_dataset_rows(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "d.jsonl").write_text(content)
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset(str(tmp_path / "d.jsonl"))
    assert "\n" not in str(info.value)


def test_gold_in_the_first_sentence_of_a_long_answer() -> None:
    long_right = (
        "The first governor-general of Pakistan was Muhammad Ali Jinnah, who became "
        "the first Muslim to be appointed as the first Governor-General of Pakistan."
    )
    assert grade_answer(long_right, ["Muhammad Ali Jinnah"]) is C
    long_wrong = (
        "The Declaration was written by John Locke, a British philosopher. Thomas "
        "Jefferson later read it aloud to a crowd of people in the city square."
    )
    assert grade_answer(long_wrong, ["Thomas Jefferson"]) is I


def test_csv_loaders_give_one_line_and_read_what_public_sets_write(tmp_path: Path) -> None:
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffproblem,answer\nWho wrote Hamlet?,Shakespeare\n".encode())
    assert load_dataset(str(bom)).items[0].question == "Who wrote Hamlet?"
    latin = tmp_path / "latin.csv"
    latin.write_bytes("problem,answer\nQ?,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin\.csv:2: not UTF-8"):
        load_dataset(str(latin))
    huge = tmp_path / "huge.csv"
    huge.write_text("problem,answer\nQ?," + "x" * 200_000 + "\n")
    with pytest.raises(DatasetError, match="malformed CSV"):
        load_dataset(str(huge))
    words = tmp_path / "range.jsonl"
    rows = [
        {"question": "Q1?", "answer": "150", "acceptable_range": "anything between 148 and 152"},
        {"question": "Q2?", "answer": "1,500", "acceptable_range": "1,480-1,520"},
        {"question": "Q3?", "answer": "3", "acceptable_range": ""},
    ]
    words.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = [i.acceptable_range for i in load_dataset(str(words)).items]
    assert got == [(148.0, 152.0), (1480.0, 1520.0), None]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "Q?", "answer": "1", "acceptable_range": "soon"}))
    with pytest.raises(DatasetError, match="acceptable_range"):
        load_dataset(str(bad))


def _write_run(path, grades, config, model="m"):
    import json

    path.mkdir()
    with (path / "records.jsonl").open("w") as fh:
        for i, g in enumerate(grades):
            rec = {"dataset": "d", "condition": "tools", "id": f"q{i}", "question": "?"}
            rec |= {"answers": ["x"], "answer": "x", "grade": g, "searches": 1}
            fh.write(json.dumps(rec) + "\n")
    (path / "manifest.json").write_text(json.dumps({"config": config, "model": model}))


def test_compare_gives_paired_delta_intervals_settings_and_changed_questions(tmp_path) -> None:
    from evals.report import compare_runs

    a = ["CORRECT"] * 20 + ["INCORRECT"] * 20 + ["NOT_ATTEMPTED"] * 20
    b = ["CORRECT"] * 20 + ["NOT_ATTEMPTED"] * 15 + ["INCORRECT"] * 5 + ["NOT_ATTEMPTED"] * 20
    _write_run(tmp_path / "a", a, {"seed": 0, "limit": 60})
    _write_run(tmp_path / "b", b, {"seed": 1, "limit": 60})
    text = compare_runs(tmp_path / "a", tmp_path / "b")
    row = next(ln for ln in text.splitlines() if "hallucinated %" in ln)
    # 15 of 60 answers moved from hallucinated to abstained: −25 points, and the
    # paired interval excludes zero.
    delta = row.rsplit("|", 2)[1].strip()
    assert delta.startswith("-25.0 [")
    low, high = (float(x) for x in delta.split("[")[1].rstrip("]").split(","))
    assert low < -25.0 < high < 0
    assert "| seed | 0 | 1 |" in text and "| limit |" not in text
    assert "15 of 60 changed (INCORRECT → NOT_ATTEMPTED: 15)" in text
    assert "`q20`: INCORRECT → NOT_ATTEMPTED" in text and "… 5 more" in text


def test_compare_names_a_changed_model_once(tmp_path) -> None:
    from evals.report import compare_runs

    # Run A used the default model (config None, resolved in the manifest).
    _write_run(tmp_path / "a", ["CORRECT"], {"model": None}, model="default-m")
    _write_run(tmp_path / "b", ["CORRECT"], {"model": "/x/m2"}, model="/x/m2")
    rows = compare_runs(tmp_path / "a", tmp_path / "b").splitlines()
    assert [ln for ln in rows if ln.startswith("| model |")] == ["| model | default-m | /x/m2 |"]


def test_risk_coverage_plot_keeps_a_condition_that_never_answered(tmp_path) -> None:
    from evals.report import _plot_risk_coverage

    def rec(grade: str, lp: float) -> dict:
        return {"grade": grade, "answer_logprob": lp, "abstained": grade == "NOT_ATTEMPTED"}

    groups = {
        ("d", "closed-book"): [rec("NOT_ATTEMPTED", -0.1)] * 5,
        ("d", "tools"): [rec("CORRECT", -0.1), rec("INCORRECT", -0.9), rec("NOT_ATTEMPTED", 0)],
    }
    labels = _plot_risk_coverage(groups, tmp_path / "rc.png")
    assert labels == ["d / closed-book: no answer attempted", "d / tools (2 answered)"]
    assert (tmp_path / "rc.png").stat().st_size > 1000
