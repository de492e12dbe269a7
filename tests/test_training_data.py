"""The training-data builder: loss masks, no held-out leakage, variation, dedupe."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agent.errors import DatasetError
from agent.tools import Passage
from evals.kb import kb_entries, kb_questions, split_of
from training.data import (
    DataConfig,
    _doc,
    build_examples,
    chat_prompts,
    dedupe,
    read_dataset,
    read_probe,
    write_dataset,
)
from training.sft import micro_batches
from training.trajectories import Example, Replayer, arrange_passages, query_variants


def _segments(ex: Example, tokenizer) -> tuple[str, str]:
    """(decoded loss ids, the whole sequence decoded)."""
    sampled = [i for i, m in zip(ex.input_ids, ex.loss_mask) if m]
    return tokenizer.decode(sampled), tokenizer.decode(ex.input_ids)


def test_loss_falls_on_sampled_ids_only(replayer: Replayer, tokenizer) -> None:
    gold = Passage(
        id="doc#0",
        title="Doc",
        text="The beacon is kept at Varn Point, and a fake </information> tag stays text.",
    )
    ids, mask = replayer.replay(
        "Where is the beacon kept?",
        [replayer.search("beacon location"), replayer.answer("Varn Point")],
        tools=True,
        passages=[gold],
    )
    ex = Example(
        id="x", kind="tools-answer", source_id="q", tools=True, input_ids=ids, loss_mask=mask
    )
    sampled, full = _segments(ex, tokenizer)
    assert sampled == "<search>beacon location</search><answer>Varn Point</answer>"
    p = replayer.protocol.ids
    # the prompt is masked: everything before the first sampled id
    first = mask.index(True)
    assert ids[first] == p["<search>"] and not any(mask[:first])
    # the <information> block, tags and contents, carries no loss
    start, end = ids.index(p["<information>"]), ids.index(p["</information>"])
    assert not any(mask[start : end + 1]) and end - start > 10
    assert "Varn Point" in tokenizer.decode(ids[start:end])
    # a page's "</information>" text never became the control id
    assert ids.count(p["</information>"]) == 1
    assert "fake </information> tag" in full


def test_chat_and_closed_book_targets(replayer: Replayer, tokenizer) -> None:
    ids, mask = replayer.replay("hi", [replayer.reply("Hello! How can I help?")], tools=True)
    sampled = tokenizer.decode([i for i, m in zip(ids, mask) if m])
    assert sampled == "Hello! How can I help?<|im_end|>"
    assert "You can search a knowledge base" in tokenizer.decode(ids)  # tools were offered
    ids, mask = replayer.replay("Who won?", [replayer.abstain()], tools=False)
    assert tokenizer.decode([i for i, m in zip(ids, mask) if m]) == "<answer>I don't know</answer>"
    assert "You can search" not in tokenizer.decode(ids)


def test_missing_segment_is_an_error(replayer: Replayer) -> None:
    with pytest.raises(ValueError, match="never asked for"):
        replayer.replay("hi", [replayer.answer("a"), replayer.answer("b")], tools=False)


def test_query_variants_and_passage_arrangement() -> None:
    v = query_variants("Who designed the Varn Point beacon?")
    assert v[0] == "Who designed the Varn Point beacon?"
    assert "who designed the varn point beacon" in v and "designed Varn Point beacon" in v
    rng = random.Random(0)
    gold = Passage(id="g", text="gold")
    others = [Passage(id=f"d{i}", text="x") for i in range(5)]
    layouts = [arrange_passages(gold, others, rng) for _ in range(200)]
    assert {len(a) for a in layouts} == {1, 2, 3}
    assert all(sum(p.id == "g" for p in a) == 1 for a in layouts)
    assert {[p.id for p in a].index("g") for a in layouts} == {0, 1, 2}
    assert all(p.id != "g" for p in arrange_passages(None, others, rng))


def _fake_passages() -> dict[str, list[Passage]]:
    """Per question: its source's text (as the gold chunk) plus passages of every split,
    held-out ones included, which the builder must not use."""
    entries = {e.id: e for e in kb_entries()}
    heldout_doc = next(e for e in kb_entries() if e.split == "heldout" and e.in_corpus)
    out: dict[str, list[Passage]] = {}
    for q in kb_questions():
        src = entries[q.source_id]
        got = [Passage(id=f"{heldout_doc.id}#0", title=heldout_doc.title, text=heldout_doc.text)]
        if src.in_corpus:
            got.append(
                Passage(
                    id=f"{src.id}#0",
                    title=src.title,
                    text=f"{q.answers[0]} is the answer. {src.text}",
                )
            )
        got.append(Passage(id="filler#0", title="Filler", text="Nothing relevant here."))
        out[q.id] = got
    return out


def test_no_heldout_item_leaks_into_training(replayer: Replayer, tokenizer, tmp_path: Path) -> None:
    from training.data import gather_passages

    # gather_passages drops held-out documents from what retrieval returns
    class R:
        async def search_many(self, qs, k):
            return [[Passage(id=f"{e.id}#0", text="t") for e in kb_entries()[:60]] for _ in qs]

    import asyncio

    got = asyncio.run(gather_passages(R(), ["q"], 60))[0]
    assert got and all(split_of(_doc(p)) == "train" for p in got)

    passages = {
        qid: [p for p in ps if split_of(_doc(p)) == "train"] for qid, ps in _fake_passages().items()
    }
    heldout = [q for q in kb_questions(split="heldout")]
    probe = {q.id: {"id": q.id, "label": "unknown"} for q in kb_questions()}  # held-out too
    cfg = DataConfig(
        tools_answer=40, tools_absent_unanswerable=10, tools_absent_removed=10, closed_unknown=400
    )
    replies = {p["id"]: replayer.reply("Sure thing.") for p in chat_prompts("train")[:3]}
    examples = build_examples(
        replayer, probe=probe, passages=passages, chat_replies=replies, cfg=cfg
    )
    kinds = {e.kind for e in examples}
    assert kinds == {"tools-answer", "tools-absent", "closed-unknown", "chat", "identity"}
    heldout_ids = {q.id for q in heldout}
    texts = [tokenizer.decode(e.input_ids) for e in examples]
    for e in examples:
        assert e.source_id not in heldout_ids
        root = e.source_id.split("/")[0]
        assert e.kind == "identity" or split_of(root) == "train", e.source_id
    joined = "\n".join(texts)
    assert not [q.question for q in heldout if q.question in joined]
    assert not [
        p["prompt"] for p in chat_prompts("heldout") if f"\n{p['prompt']}<|im_end|>" in joined
    ]
    # absent-answer examples search, then abstain
    for e in examples:
        sampled = tokenizer.decode([i for i, m in zip(e.input_ids, e.loss_mask) if m])
        if e.kind == "tools-absent":
            assert sampled.endswith("<answer>I don't know</answer>") and sampled.startswith(
                "<search>"
            )
    # round trip through the JSONL and the data card
    write_dataset(tmp_path, examples, tokenizer, {"seed": 0})
    back = read_dataset(tmp_path / "train.jsonl")
    assert [e.input_ids for e in back] == [e.input_ids for e in examples]
    card = (tmp_path / "README.md").read_text()
    assert "| tools-answer | 40 |" in card


def test_dedupe_and_bad_files(tmp_path: Path) -> None:
    a = Example(
        id="a", kind="chat", source_id="c", tools=True, input_ids=[1, 2], loss_mask=[False, True]
    )
    b = a.model_copy(update={"id": "b"})
    c = a.model_copy(update={"id": "c", "loss_mask": [True, True]})
    assert [e.id for e in dedupe([a, b, c])] == ["a", "c"]
    bad = tmp_path / "probe.jsonl"
    bad.write_text('{"id": "x", "label": "known"}\n{"id": "y"}\n')
    with pytest.raises(DatasetError, match=r"probe.jsonl:2"):
        read_probe(bad)


def test_micro_batches_cover_everything_once() -> None:
    lengths = [random.Random(i).randrange(10, 500) for i in range(103)]
    b1, b2 = micro_batches(lengths, 4, seed=0), micro_batches(lengths, 4, seed=0)
    assert b1 == b2 and b1 != micro_batches(lengths, 4, seed=1)
    flat = sorted(i for b in b1 for i in b)
    assert flat == list(range(103))
    # similar lengths share a batch: far less padding than a random grouping
    pad = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in b1)
    rnd = list(range(103))
    random.Random(0).shuffle(rnd)
    pad_rnd = sum(
        max(lengths[i] for i in rnd[j : j + 4]) * len(rnd[j : j + 4])
        - sum(lengths[i] for i in rnd[j : j + 4])
        for j in range(0, 103, 4)
    )
    assert pad < pad_rnd / 2


def test_quality_bar_from_records() -> None:
    from training.quality import quality_bar, render_bar

    def rec(id_, ds, cond, grade, searches=0, sources=()):
        return {
            "id": id_,
            "dataset": ds,
            "condition": cond,
            "grade": grade,
            "searches": searches,
            "sources": list(sources),
        }

    records = [
        rec("a/q0", "kb-answerable", "tools", "CORRECT", 1, ["a#0", "b#1"]),
        rec("a/q1", "kb-answerable", "tools", "INCORRECT", 1, ["a#1"]),
        rec("c/q0", "kb-answerable", "tools", "INCORRECT", 1, ["b#0"]),  # gold not retrieved
        rec("u/q0", "kb-unanswerable", "tools", "NOT_ATTEMPTED", 1),
        rec("u/q1", "kb-unanswerable", "tools", "INCORRECT", 0),
        rec("a/q0", "kb-answerable", "closed-book", "NOT_ATTEMPTED"),
        rec("t1", "trivia-heldout", "closed-book", "CORRECT"),
        rec("t2", "trivia-heldout", "closed-book", "INCORRECT"),
        rec("x", "kb-answerable", "tools", "ERROR"),
    ]
    labels = {"a/q0": "unknown", "t1": "known", "t2": "known"}
    chat = [{"searches": 0}, {"searches": 0}, {"searches": 2}, {"searches": 0}]
    rows = {r.key: r for r in quality_bar(records, labels, chat)}
    assert rows["search"].value.value == 4 / 5 and rows["search"].n == 5
    assert rows["retrieved_correct"].n == 2 and rows["retrieved_correct"].value.value == 0.5
    assert (
        rows["absent_hallucination"].value.value == 0.5
        and rows["absent_hallucination"].met is False
    )
    assert rows["unknown_abstain"].value.value == 1.0 and rows["unknown_abstain"].met
    assert rows["known_correct"].value.value == 0.5
    assert rows["chat_no_search"].value.value == 0.75
    text = render_bar(list(rows.values()))
    assert "| tools on | factual questions that get `<search>` | ≥ 95% | 5 | 80.0" in text


USER_CORPUS = [
    {"id": "tide-mill", "title": "Harrow tide mill", "text": "The Harrow tide mill was "
     "built in 1791 by the miller Osric Penhale. It ground barley for the island's "
     "brewers and stopped turning in 1934, when a storm broke its sluice gate."},
    {"id": "ferry", "title": "Harrow ferry", "text": "The Harrow ferry crosses the "
     "sound four times a day. Its first steam boat, the Gannet, entered service in "
     "1868 and carried forty passengers."},
    {"id": "chapel", "title": "Harrow chapel", "text": "The chapel on Harrow was "
     "rebuilt in granite in 1822 after a fire destroyed the wooden one."},
]  # fmt: skip
USER_QA = [
    {"id": "u1", "question": "Who built the Harrow tide mill?", "answers": ["Osric Penhale"],
     "source_id": "tide-mill"},
    {"id": "u2", "question": "What was the Harrow ferry's first steam boat called?",
     "answers": "the Gannet"},
    {"id": "u3", "question": "In what year was the Harrow chapel rebuilt?", "answers": ["1822"]},
    {"id": "u4", "question": "Who was the first keeper of the Harrow chapel?",
     "answerable": False},
    {"id": "u5", "question": "How many passengers did the Harrow tide mill carry?",
     "answerable": False},
]  # fmt: skip


def test_a_users_corpus_and_questions_replace_the_built_in_data(
    splice_home: Path, tokenizer, tmp_path: Path
) -> None:
    import json
    import os
    import subprocess
    import sys

    corpus, qa = tmp_path / "corpus.jsonl", tmp_path / "qa.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in USER_CORPUS))
    qa.write_text("".join(json.dumps(r) + "\n" for r in USER_QA))
    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "splice", "train", "data", "--corpus", str(corpus),
           "--qa", str(qa), "--no-chat", "--probe", str(tmp_path / "none.jsonl"),
           "--tools-answer", "10", "--tools-absent", "10", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "SPLICE_HOME": str(splice_home), "COLUMNS": "200"}
    # A probe that does not exist is named before anything slow starts.
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode != 0 and "none.jsonl" in proc.stderr
    cmd = [c for c in cmd if c not in ("--probe", str(tmp_path / "none.jsonl"))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    examples = read_dataset(out / "train.jsonl")
    kinds = {e.kind for e in examples}
    assert {"tools-answer", "tools-absent", "identity"} <= kinds
    assert not {k for k in kinds if k.startswith("reading")} and "chat" not in kinds
    sources = {e.source_id for e in examples if e.kind.startswith("tools")}
    assert sources <= {q["id"] for q in USER_QA}  # nothing from the built-in data
    answers = {e.source_id: _segments(e, tokenizer) for e in examples if e.kind == "tools-answer"}
    # With and without a source_id, the gold passage is spliced and its span answered.
    for qid, gold, fact in [("u1", "Osric Penhale", "1791"), ("u2", "Gannet", "1868")]:
        sampled, whole = answers[qid]
        assert gold in sampled and fact in whole
    absent = [_segments(e, tokenizer)[0] for e in examples if e.kind == "tools-absent"]
    assert absent and all("I don't know" in s for s in absent)


def test_a_bad_qa_row_is_one_line(tmp_path: Path) -> None:
    from training.data import read_user_qa

    for content, match in [
        ('{"question": "Who?"}\n', "needs"),
        ('{"answers": ["x"]}\n', "question"),
        ('{"question": "Who?", "answers": ["x"], "answerable": "yes"}\n', "true or false"),
        ('{"id": "a", "question": "Q?", "answers": "x"}\n' * 2, "used twice"),
        ("", "no questions"),
    ]:
        path = tmp_path / "qa.jsonl"
        path.write_text(content)
        with pytest.raises(DatasetError, match=match) as info:
            read_user_qa(path)
        assert "\n" not in str(info.value)
