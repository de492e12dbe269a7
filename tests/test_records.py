"""The record log keeps every finished record whatever its fields hold."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from evals.records import RecordLog, read_records, rewrite_records

# Every code point a JSON string can hold, the line and paragraph separators
# (U+2028, U+2029, U+0085, \x1c-\x1e) included: str.splitlines splits on them.
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
SEPARATORS = "\u2028\u2029\u0085\x1c\x1d\x1e\x0b\x0c\r"


def _record(i: int, question: str, answer: str) -> dict[str, str]:
    return {
        "dataset": "d",
        "condition": "tools",
        "id": f"q{i}",
        "question": question,
        "answer": answer,
        "grade": "CORRECT",
    }


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(text, text), min_size=1, max_size=12))
def test_round_trip_over_arbitrary_unicode(tmp_path_factory, rows) -> None:
    path = tmp_path_factory.mktemp("log") / "records.jsonl"
    written = [_record(i, q, a) for i, (q, a) in enumerate(rows)]
    log = RecordLog(path)
    for rec in written:
        log.append(rec)
    log.close()
    assert read_records(path) == written
    # A rewrite (after re-grading) keeps them all, and reading again is stable.
    assert rewrite_records(path, written) == 0
    assert read_records(path) == written


def test_line_separators_inside_fields_split_nothing(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    log = RecordLog(path)
    recs = [_record(i, f"before{sep}after", sep) for i, sep in enumerate(SEPARATORS)]
    for rec in recs:
        log.append(rec)
    log.close()
    assert read_records(path) == recs
    # A resume reopens the log: nothing to cut, nothing lost.
    RecordLog(path).close()
    assert read_records(path) == recs


def test_torn_tail_is_dropped_and_cut_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    good = _record(0, "q\u2028", "a")
    path.write_bytes(
        (json.dumps(good, ensure_ascii=False) + "\n").encode() + b'{"dataset": "d", "cond'
    )
    assert read_records(path) == [good]
    RecordLog(path).close()
    assert path.read_bytes().endswith(b"\n") and read_records(path) == [good]


def test_a_failed_record_is_replaced_by_its_retry_and_a_final_one_never(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    log = RecordLog(path)
    failed = {**_record(0, "q", ""), "grade": "ERROR"}
    unreadable = {**_record(1, "q", "a"), "grade": "UNPARSEABLE"}
    final = _record(2, "q", "a")
    for rec in (
        failed,
        unreadable,
        final,
        _record(0, "q", "retried"),
        {**final, "answer": "a second, later answer"},
    ):
        log.append(rec)
    log.close()
    got = read_records(path)
    assert [r["id"] for r in got] == ["q0", "q1", "q2"]
    assert got[0]["answer"] == "retried" and got[1]["grade"] == "UNPARSEABLE"
    assert got[2]["answer"] == "a"
