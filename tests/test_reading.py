"""The reading corpus: its shape, its splits, its card, and that training never sees
a dev or test subject."""

from __future__ import annotations

import asyncio
import re

from agent.tools import Passage
from evals.datasets import load_dataset
from evals.reading import (
    reading_card,
    reading_dir,
    reading_documents,
    reading_passages,
    reading_questions,
)
from training.data import (
    DataConfig,
    _doc,
    build_examples,
    gather_passages,
    is_training_document,
)
from training.trajectories import Replayer


def test_corpus_shape() -> None:
    passages = reading_passages()
    assert len(passages) >= 1000
    assert len({p.domain for p in passages}) >= 40
    for p in passages:
        assert 150 <= len(p.text.split()) <= 260, p.id
        assert len(p.qa) >= 3 and len(p.unanswerable) >= 2, p.id
        for qa in p.qa:
            assert qa.a.lower() in p.text.lower(), (p.id, qa.a)
            assert qa.q.endswith("?")
        assert all(u.q.endswith("?") for u in p.unanswerable)


def test_splits_are_by_subject_and_only_heldout_passages_are_removed() -> None:
    passages = reading_passages()
    splits: dict[str, set[str]] = {}
    for p in passages:
        splits.setdefault(p.subject, set()).add(p.split)
        assert not p.removed or p.split != "train"
    assert all(len(s) == 1 for s in splits.values())
    counts = {s: sum(p.split == s for p in passages) for s in ("train", "dev", "test")}
    assert counts["dev"] >= 100 and counts["test"] >= 100 and counts["train"] >= 600
    indexed = {d.id for d in reading_documents()}
    assert indexed == {p.id for p in passages if not p.removed}
    removed = reading_questions("test", "removed")
    assert removed and not {q.source_id for q in removed} & indexed
    assert {q.source_id for q in reading_questions("test", "answerable")} <= indexed


def test_builtin_reading_sets_load() -> None:
    for name in ("reading-answerable-dev", "reading-unanswerable-test", "reading-removed-test"):
        ds = load_dataset(name)
        assert ds.items and ds.sha256.startswith("reading:")
        assert all(it.answerable == ("unanswerable" not in name) for it in ds.items)


def test_the_committed_card_is_up_to_date() -> None:
    card = (reading_dir() / "README.md").read_text(encoding="utf-8")
    assert card == reading_card(), (
        "regenerate: python -m evals.reading > evals/data/reading/README.md"
    )


def test_training_never_sees_a_dev_or_test_subject(replayer: Replayer, tokenizer) -> None:
    passages = reading_passages()
    heldout = [p for p in passages if p.split != "train"]
    as_passage = {p.id: Passage(id=f"{p.id}#0", title=p.title, text=p.text) for p in passages}

    class Retriever:
        """Returns, for every question, its own passage and a held-out one first."""

        async def search_many(self, queries, k):
            return [
                [as_passage[heldout[i % len(heldout)].id], *own.get(q, [])]
                for i, q in enumerate(queries)
            ]

    questions = [
        *reading_questions("train", "answerable"),
        *reading_questions("train", "unanswerable"),
    ]
    by_id = {p.id: p for p in passages}
    own = {}
    for q in questions:
        siblings = [s for s in passages if s.subject == by_id[q.source_id].subject]
        own[q.question] = [as_passage[s.id] for s in siblings]
    got = asyncio.run(gather_passages(Retriever(), [q.question for q in questions], 8))
    assert all(is_training_document(_doc(p)) for ps in got for p in ps)
    gathered = {q.id: ps for q, ps in zip(questions, got)}
    cfg = DataConfig(
        tools_answer=0,
        tools_absent_unanswerable=0,
        tools_absent_removed=0,
        closed_unknown=0,
        reading_answer=60,
        reading_absent=30,
        reading_removed=20,
    )
    examples = build_examples(replayer, probe={}, passages=gathered, chat_replies={}, cfg=cfg)
    kinds = {e.kind for e in examples}
    assert {"reading-answer", "reading-absent", "reading-removed"} <= kinds
    text = "\n".join(tokenizer.decode(e.input_ids) for e in examples)
    leaked = [p.id for p in heldout if p.text[:80] in text]
    assert leaked == []
    heldout_questions = [qa.q for p in heldout for qa in p.qa]
    assert not [q for q in heldout_questions if q in text]
    # Adversarial examples read their own paragraph (when retrieved), then abstain.
    for e in examples:
        sampled = tokenizer.decode([i for i, m in zip(e.input_ids, e.loss_mask) if m])
        if e.kind in ("reading-absent", "reading-removed"):
            assert sampled.endswith("<answer>I don't know</answer>")
        if e.kind == "reading-answer":
            assert re.search(r"<answer>.+</answer>$", sampled)
