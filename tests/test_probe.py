"""The knowledge probe: K samples per question, graded, labelled known or unknown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.errors import ConfigError
from evals.datasets import EvalItem, load_dataset
from serving.scripted import ScriptedEngine
from training.probe import label, probe_questions, write_probe


def test_label_threshold() -> None:
    assert label(["CORRECT"] * 4 + ["INCORRECT"], 0.8) == (0.8, "known")
    assert label(["CORRECT"] * 3 + ["NOT_ATTEMPTED"] * 2, 0.8) == (0.6, "unknown")
    # The greedy rule: the greedy answer must be right, and a lower share of samples.
    one = ["CORRECT"] + ["INCORRECT"] * 4
    assert label(one, 0.2, greedy_grade="CORRECT", rule="greedy") == (0.2, "known")
    assert label(one, 0.2, greedy_grade="INCORRECT", rule="greedy") == (0.2, "unknown")
    assert label(["INCORRECT"] * 5, 0.2, greedy_grade="CORRECT", rule="greedy")[1] == "unknown"


async def test_probe_samples_k_times_with_distinct_seeds(tokenizer, tmp_path: Path) -> None:
    # The scripted "model" knows Paris always, and Berlin only under some seeds.
    def handler(prompt, params):
        text = tokenizer.decode(prompt)
        if "France" in text:
            return tokenizer.encode("<answer>Paris</answer>", add_special_tokens=False)
        if params.seed is None:  # greedy: says the wrong city
            return tokenizer.encode("<answer>Bonn</answer>", add_special_tokens=False)
        good = params.seed % 2 == 0
        return tokenizer.encode(
            f"<answer>{'Berlin' if good else 'Bonn'}</answer>", add_special_tokens=False
        )

    engine = ScriptedEngine(handler, tokenizer)
    items = [
        EvalItem(id="fr", question="Capital of France?", answers=["Paris"]),
        EvalItem(id="de", question="Capital of Germany?", answers=["Berlin"]),
    ]
    records = await probe_questions(
        engine, items, k=5, temperature=0.7, seed=1, rule="sampled", known_at=0.8
    )
    assert [r.label for r in records] == ["known", "unknown"]
    assert records[1].grades.count("CORRECT") == 3  # seeds 1000..1004: three even
    assert len(engine.requests) == 10
    assert {p.seed for _, p in engine.requests} == {1000, 1001, 1002, 1003, 1004}
    assert all(p.temperature == 0.7 for _, p in engine.requests)
    out = tmp_path / "probe.jsonl"
    write_probe(out, records, {"k": 5})
    assert [json.loads(line)["label"] for line in out.read_text().splitlines()] == [
        "known",
        "unknown",
    ]
    assert json.loads((tmp_path / "probe.jsonl.meta.json").read_text())["known"] == 1
    # Default rule: 3 of 5 samples know Berlin, but the greedy answer does not.
    greedy = await probe_questions(engine, items, k=5, temperature=0.7, seed=1)
    assert [r.label for r in greedy] == ["known", "unknown"]
    assert [r.greedy_grade for r in greedy] == ["CORRECT", "INCORRECT"]
    assert greedy[1].correct_fraction == 0.6
    with pytest.raises(ConfigError, match="temperature"):
        await probe_questions(engine, items, temperature=0)


def test_kb_train_never_overlaps_the_eval_sets() -> None:
    train = {i.id.split("/")[0] for i in load_dataset("kb-train").items}
    held = {
        i.id.split("/")[0]
        for name in ("kb-answerable", "kb-unanswerable")
        for i in load_dataset(name).items
    }
    assert train and not train & held
